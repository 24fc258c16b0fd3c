import { describe, it, expect } from 'vitest';

/** The kernel bridge's low-level pieces: only under 'mptls/kernel', never at the root. */
const KERNEL_ONLY = [
  'ffi',
  'loadFfi',
  'ffiStatus',
  'errnoName',
  'FfiUnavailableError',
  'SyscallError',
  'AF_INET',
  'AF_INET6',
  'IPPROTO_MPTCP',
  'SOL_MPTCP',
  'SOCK_STREAM',
  'MPTCP_INFO',
  'getMptcpInfo',
  'getTcpInfo',
  'socketFd',
  'openMptcpFd',
  'connectKernel',
  'listenKernel',
  'useKernelListener',
  'kernelSupport',
  'KernelInfo',
  'watchKernelSubflows',
  'KERNEL_EXPORTER_TOKENS',
  'createTcpProbe',
];

describe('the package', () => {
  it("resolves 'mptls' by self-reference to the built entry (npm run build first)", async () => {
    const m = await import('mptls');
    for (const name of ['decodeOption', 'encodeOption', 'tokenFromKey', 'joinSynAckHmac', 'joinAckHmac', 'addAddrHmac', 'MptcpWireError', 'Endpoint']) {
      expect(typeof (m as Record<string, unknown>)[name], name).toBe('function');
    }
    expect(m.decodeOption(Uint8Array.from([30, 8, 0x01, 0x03, 0xde, 0xad, 0xbe, 0xef]))).toEqual({
      subtype: 'MP_CAPABLE',
      version: 1,
      flags: 3,
      senderToken: 0xdeadbeef,
    });
  });

  it("names at the root what README's 'Using it' and the examples use, and the error classes", async () => {
    const m = (await import('mptls')) as Record<string, unknown>;
    for (const name of ['createServer', 'connect', 'haproxyConfig', 'generateSelfSigned', 'checkServerPin', 'spkiSha256', 'exportMptcpKeys', 'keyFingerprints', 'timingSafeEqual', 'Connection', 'FrameParser']) {
      expect(typeof m[name], name).toBe('function');
    }
    expect(typeof (m.https as Record<string, unknown>).createServer).toBe('function');
    expect(typeof (m.https as Record<string, unknown>).get).toBe('function');
    expect(typeof (m.undici as Record<string, unknown>).connector).toBe('function');
    for (const name of ['MptlsTlsError', 'PinMismatchError', 'MptcpClosedError', 'NoMultipathError', 'KernelMptcpUnavailableError', 'HaproxyConfigError', 'MptcpWireError', 'FrameError']) {
      const E = m[name] as { prototype: object } | undefined;
      expect(typeof E, name).toBe('function');
      expect(E?.prototype instanceof Error, `${name} is an Error`).toBe(true);
    }
  });

  it("has no raw FFI and no kernel namespace at the root: those are 'mptls/kernel'", async () => {
    const m = (await import('mptls')) as Record<string, unknown>;
    expect(m.kernel).toBeUndefined();
    for (const name of KERNEL_ONLY) expect(m[name], name).toBeUndefined();
    // Nothing at the root is a namespace of kernel pieces under another name.
    for (const [name, value] of Object.entries(m)) {
      if (value && typeof value === 'object') expect(Object.keys(value), name).not.toContain('ffi');
    }

    const k = (await import('mptls/kernel')) as Record<string, unknown>;
    for (const name of KERNEL_ONLY) expect(k[name], name).toBeDefined();
    expect(typeof k.ffi).toBe('function');
    expect(k.AF_INET).toBe(2);
    expect(typeof (k.kernelSupport as () => { ok: boolean })().ok).toBe('boolean');
  });

  it('throws coded errors on API misuse', async () => {
    const m = await import('mptls');
    expect(() => m.connect({ port: 70000 })).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_MPTLS_INVALID_PORT', message: 'bad port 70000' }));
    expect(() => m.connect({ port: 443, mptcp: { transport: 'quic' as 'kernel' } })).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_MPTLS_INVALID_TRANSPORT' }));
  });
});
