import { describe, it, expect } from 'vitest';

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
});
