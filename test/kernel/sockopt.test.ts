/**
 * The Linux kernel MPTCP bridge on loopback (root namespace, 127.0.0.1 only):
 * IPPROTO_MPTCP sockets through koffi, the MPTCP/TCP socket options and
 * their decoders, and `connect({ mptcp: { transport: 'kernel' } })` /
 * `createServer({ mptcp: { kernel: true } })`.
 *
 * Needs Linux, koffi and kernel MPTCP (`net.mptcp.enabled=1`). Without them
 * the suite is skipped with the reason printed, except under CI
 * (process.env.CI), where a missing prerequisite fails the run. (Loopback
 * MPTCP needs no privileges, so root is not required here.)
 */
import { describe, it, expect, afterEach } from 'vitest';
import net from 'node:net';
import { release } from 'node:os';
import tls from 'node:tls';
import { createServer as createMptlsServer, connect, type ConnectOptions, type MptlsSocket } from '../../src/api/index.js';
import {
  connectKernel,
  decodeMptcpInfo,
  decodeSockaddr,
  decodeTcpInfo,
  encodeSockaddr,
  ffiStatus,
  getFullInfo,
  getMptcpInfo,
  getNotsentLowat,
  getSockProtocol,
  getSubflowAddrs,
  getSubflowTcpInfo,
  getTcpInfo,
  IPPROTO_MPTCP,
  IPPROTO_TCP,
  kernelListenState,
  kernelStructSizes,
  kernelSupport,
  listenKernel,
  MPTCP_FULL_INFO_HEADER_SIZE,
  MPTCP_INFO_SIZE,
  MPTCP_SUBFLOW_ADDRS_SIZE,
  MPTCP_SUBFLOW_DATA_SIZE,
  MPTCP_SUBFLOW_INFO_SIZE,
  PEER_NO_MPTCP,
  setNotsentLowat,
  socketFd,
  SyscallError,
  type KernelConnection,
} from '../../src/transport/kernel/index.js';
import { resetFfiForTests } from '../../src/transport/kernel/ffi.js';
import { fixtures, listen, close, sendBulk, receiveAll, until } from '../support/servers.js';

const IN_CI = Boolean(process.env.CI);
const MiB = 1024 * 1024;

function prerequisites(): string | undefined {
  if (process.platform !== 'linux') return `platform is ${process.platform}, not linux`;
  const f = ffiStatus();
  if (!f.ok) return `koffi: ${f.reason}`;
  const k = kernelSupport();
  if (!k.ok) return `kernel MPTCP: ${k.reason}`;
  return undefined;
}
const unmet = prerequisites();
if (unmet && !IN_CI) console.warn(`[kernel bridge] skipped: ${unmet}`);

// Under CI this must run: a missing prerequisite is a failure, never a skip.
describe('kernel bridge prerequisites', () => {
  it('are all present whenever CI is set', () => {
    if (unmet !== undefined && IN_CI) throw new Error(`kernel bridge tests cannot run under CI: ${unmet}`);
    expect(unmet === undefined || !IN_CI).toBe(true);
  });
});

const servers: net.Server[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => close(s)));
});

/** A sink server listening on an MPTCP socket (listenKernel) on 127.0.0.1. */
async function kernelSink(): Promise<{ server: net.Server; port: number; accepted: net.Socket[]; received: () => number }> {
  const accepted: net.Socket[] = [];
  let received = 0;
  const server = net.createServer((s) => {
    accepted.push(s);
    s.on('data', (d: Buffer) => (received += d.length));
    s.on('error', () => {});
  });
  servers.push(server);
  const listening = new Promise<void>((r) => server.once('listening', r));
  const res = await listenKernel(server, { port: 0, host: '127.0.0.1' });
  expect(res).toEqual({ mode: 'kernel' });
  expect(kernelListenState(server)).toEqual({ mode: 'kernel' });
  await listening;
  return { server, port: (server.address() as net.AddressInfo).port, accepted, received: () => received };
}

function connected(k: KernelConnection): Promise<void> {
  sockets.push(k.socket);
  return new Promise((resolve, reject) => {
    k.socket.once('connect', resolve);
    k.socket.once('error', reject);
  });
}

function writeAll(s: net.Socket, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => s.write(data, (e) => (e ? reject(e) : resolve())));
}

describe('socket option decoders (no kernel needed)', () => {
  it('decode only the bytes the kernel returned', () => {
    const b = Buffer.alloc(MPTCP_INFO_SIZE);
    b[0] = 1; // subflows
    b[3] = 8; // subflows_max
    b.writeUInt32LE(0b01, 8); // flags: fallback
    b.writeUInt32LE(0xdeadbeef, 12);
    b.writeBigUInt64LE(0x0102030405060708n, 16);
    b.writeBigUInt64LE(12345n, 56); // bytes_sent
    b.writeUInt32LE(777, 92); // last_ack_recv
    const full = decodeMptcpInfo(b, MPTCP_INFO_SIZE);
    expect(full).toMatchObject({ size: 96, subflows: 1, subflowsMax: 8, fallback: true, token: 0xdeadbeef, writeSeq: 0x0102030405060708n, bytesSent: 12345, lastAckRecv: 777 });
    // A 5.9 kernel returned 40 bytes: the later fields stay undefined.
    const old = decodeMptcpInfo(b, 40);
    expect(old.token).toBe(0xdeadbeef);
    expect(old.bytesSent).toBeUndefined();
    expect(old.localAddrUsed).toBeUndefined();
    expect(() => decodeMptcpInfo(b, 39)).toThrow(RangeError);

    const t = Buffer.alloc(280);
    t[0] = 1;
    t[6] = 0x97; // snd_wscale 7, rcv_wscale 9
    t.writeUInt32LE(1234, 68); // rtt
    t.writeUInt32LE(10, 80); // snd_cwnd
    t.writeBigUInt64LE(99n, 200); // bytes_sent
    const ti = decodeTcpInfo(t, 280);
    expect(ti).toMatchObject({ state: 1, sndWscale: 7, rcvWscale: 9, rtt: 1234, sndCwnd: 10, bytesSent: 99 });
    expect(decodeTcpInfo(t, 104).bytesSent).toBeUndefined();
  });

  it('sockaddr_in / sockaddr_in6 round trip', () => {
    expect(decodeSockaddr(encodeSockaddr('127.0.0.2', 8443))).toEqual({ family: 4, address: '127.0.0.2', port: 8443 });
    expect(decodeSockaddr(encodeSockaddr('2001:db8::1', 443))).toEqual({ family: 6, address: '2001:db8::1', port: 443, flowinfo: 0, scopeId: 0 });
    expect(decodeSockaddr(encodeSockaddr('fe80::1%3', 1))).toMatchObject({ address: 'fe80::1', scopeId: 3 });
    expect(encodeSockaddr('10.0.0.1', 0).length).toBe(16);
    expect(encodeSockaddr('::', 0).length).toBe(28);
    expect(() => encodeSockaddr('example.test', 1)).toThrow(TypeError);
  });
});

describe.skipIf(unmet !== undefined)('kernel MPTCP socket options on 127.0.0.1', () => {
  it('an MPTCP socket through the bridge: SO_PROTOCOL, MPTCP_INFO, struct sizes, MPTCP_TCPINFO, MPTCP_SUBFLOW_ADDRS, MPTCP_FULL_INFO', async () => {
    const sink = await kernelSink();
    const k = connectKernel({ host: '127.0.0.1', port: sink.port });
    await connected(k);
    expect(k.mode).toBe('kernel');
    expect(k.fallbackReason).toBeUndefined();
    const fd = socketFd(k.socket)!;
    expect(fd).toBeGreaterThanOrEqual(0);
    expect(getSockProtocol(fd)).toBe(IPPROTO_MPTCP);
    await until(() => sink.accepted.length === 1, 5000, 'accept');
    expect(getSockProtocol(socketFd(sink.accepted[0])!)).toBe(IPPROTO_MPTCP);

    const before = getMptcpInfo(fd);
    expect(before.subflows).toBeGreaterThanOrEqual(0);
    expect(before.token).not.toBe(0);
    expect(before.fallback).toBe(false);
    expect(before.remoteKeyReceived).toBe(true);
    expect(before.bytesSent).toBeDefined(); // Linux ≥ 6.5

    await writeAll(k.socket, Buffer.alloc(MiB, 0x5a));
    await until(() => sink.received() >= MiB, 5000, 'sink to receive 1 MiB');
    const after = getMptcpInfo(fd);
    expect(after.token).toBe(before.token);
    expect(after.bytesSent! - before.bytesSent!).toBeGreaterThanOrEqual(MiB);
    expect(after.writeSeq - before.writeSeq).toBeGreaterThanOrEqual(BigInt(MiB));
    await until(() => getMptcpInfo(fd).bytesAcked! >= MiB, 5000, 'data ACK');

    // Struct sizes: what the kernel says (optlen, size_kernel), cross-checked.
    const sizes = kernelStructSizes(fd);
    console.log(`[kernel bridge] struct sizes reported by Linux ${release()}:`, JSON.stringify(sizes));
    expect(sizes.mptcpInfo).toBe(after.size);
    expect(sizes.mptcpInfo).toBeGreaterThanOrEqual(40);
    if (sizes.mptcpInfo >= MPTCP_INFO_SIZE) expect(after.lastAckRecv).toBeDefined();
    expect(sizes.subflowAddrs).toBe(MPTCP_SUBFLOW_ADDRS_SIZE); // two __kernel_sockaddr_storage
    const plainTcpInfoSize = getTcpInfo(fd).size; // TCP_INFO on the MPTCP socket: its first subflow
    expect(sizes.tcpInfo).toBe(plainTcpInfoSize); // both are sizeof(struct tcp_info)
    if (sizes.subflowInfo !== undefined) {
      expect(sizes.subflowInfo).toBe(MPTCP_SUBFLOW_INFO_SIZE); // u32 id, 8-aligned addrs
      expect(sizes.fullInfoMptcpInfo).toBe(sizes.mptcpInfo); // the same struct mptcp_info, embedded
    }

    const ti = getSubflowTcpInfo(fd);
    expect(ti.header.sizeSubflowData).toBe(MPTCP_SUBFLOW_DATA_SIZE);
    expect(ti.header.numSubflows).toBeGreaterThanOrEqual(1);
    expect(ti.items.length).toBe(ti.header.numSubflows);
    expect(ti.header.sizeUser).toBe(ti.header.sizeKernel);
    expect(ti.optlen).toBe(MPTCP_SUBFLOW_DATA_SIZE + ti.items.length * ti.header.sizeUser);
    expect(ti.items[0].state).toBe(1); // TCP_ESTABLISHED
    expect(ti.items[0].rtt).toBeGreaterThan(0);
    expect(ti.items[0].sndCwnd).toBeGreaterThan(0);
    expect(ti.items[0].bytesAcked).toBeGreaterThanOrEqual(MiB);

    const ad = getSubflowAddrs(fd);
    expect(ad.header.numSubflows).toBe(ti.header.numSubflows);
    expect(ad.optlen).toBe(MPTCP_SUBFLOW_DATA_SIZE + ad.items.length * ad.header.sizeUser);
    expect(ad.items[0].local).toEqual({ family: 4, address: '127.0.0.1', port: k.socket.localPort });
    expect(ad.items[0].remote).toEqual({ family: 4, address: '127.0.0.1', port: sink.port });

    try {
      const full = getFullInfo(fd);
      expect(full.sizeTcpinfoKernel).toBe(sizes.tcpInfo);
      expect(full.numSubflows).toBe(ti.header.numSubflows);
      expect(full.mptcp.token).toBe(before.token);
      expect(full.subflows[0].id).toBeGreaterThanOrEqual(1);
      expect(full.subflows[0].local).toEqual(ad.items[0].local);
      expect(full.subflows[0].remote).toEqual(ad.items[0].remote);
      expect(full.subflows[0].tcp?.state).toBe(1);
      expect(full.optlen).toBe(MPTCP_FULL_INFO_HEADER_SIZE + sizes.mptcpInfo);
    } catch (e) {
      // Before Linux 6.5 there is no MPTCP_FULL_INFO.
      if (!(e instanceof SyscallError && e.code === 'EOPNOTSUPP')) throw e;
      console.warn('[kernel bridge] this kernel has no MPTCP_FULL_INFO');
    }
  });

  it('TCP_INFO and TCP_NOTSENT_LOWAT on a plain TCP socket; SOL_MPTCP options refused there', async () => {
    let got = 0;
    const server = net.createServer((s) => s.on('data', (d: Buffer) => (got += d.length)));
    servers.push(server);
    const port = await listen(server);
    const c = net.connect(port, '127.0.0.1');
    sockets.push(c);
    await new Promise<void>((r) => c.once('connect', () => r()));
    const fd = socketFd(c)!;
    expect(getSockProtocol(fd)).toBe(IPPROTO_TCP);
    await writeAll(c, Buffer.alloc(256 * 1024));
    await until(() => got >= 256 * 1024, 5000, 'receive');
    const ti = getTcpInfo(fd);
    expect(ti.state).toBe(1);
    expect(ti.rtt).toBeGreaterThan(0);
    expect(ti.sndCwnd).toBeGreaterThan(0);
    expect(ti.sndMss).toBeGreaterThan(0);
    expect(ti.bytesAcked).toBeGreaterThanOrEqual(256 * 1024);
    expect(ti.notsentBytes).toBe(0);
    expect(ti.size).toBeGreaterThanOrEqual(232);

    setNotsentLowat(fd, 16384);
    expect(getNotsentLowat(fd)).toBe(16384);
    setNotsentLowat(fd, 131072);
    expect(getNotsentLowat(fd)).toBe(131072);

    expect(() => getMptcpInfo(fd)).toThrow(expect.objectContaining({ code: 'EOPNOTSUPP' }));
  });

  it('TCP_NOTSENT_LOWAT round trip on an MPTCP socket', async () => {
    const sink = await kernelSink();
    const k = connectKernel({ host: '127.0.0.1', port: sink.port });
    await connected(k);
    const fd = socketFd(k.socket)!;
    try {
      setNotsentLowat(fd, 32768);
    } catch (e) {
      if (e instanceof SyscallError && (e.code === 'ENOPROTOOPT' || e.code === 'EOPNOTSUPP')) {
        console.warn(`[kernel bridge] this kernel does not take TCP_NOTSENT_LOWAT on MPTCP sockets (${e.code})`);
        return;
      }
      throw e;
    }
    expect(getNotsentLowat(fd)).toBe(32768);
  });

  it('a kernel-MPTCP client against a plain TCP listener: mode fallback, "peer does not speak MPTCP"', async () => {
    const server = net.createServer((s) => s.resume());
    servers.push(server);
    const port = await listen(server);
    let decided: KernelConnection | undefined;
    const k = connectKernel({ host: '127.0.0.1', port, onMode: (r) => (decided = r) });
    expect(k.mode).toBe('kernel'); // provisional until the handshake
    await connected(k);
    expect(decided).toBe(k);
    expect(k.mode).toBe('fallback');
    expect(k.fallbackReason).toBe(PEER_NO_MPTCP);
    expect(getSockProtocol(socketFd(k.socket)!)).toBe(IPPROTO_MPTCP);
    await writeAll(k.socket, Buffer.from('still works'));
  });

  it('binds localAddress, and closes nothing of ours on a bind failure', async () => {
    const sink = await kernelSink();
    const k = connectKernel({ host: '127.0.0.1', port: sink.port, localAddress: '127.0.0.1' });
    await connected(k);
    expect(k.socket.localAddress).toBe('127.0.0.1');
    expect(getSubflowAddrs(socketFd(k.socket)!).items[0].local?.address).toBe('127.0.0.1');
    // 192.0.2.1 (TEST-NET-1) is on no interface here: bind fails, the fd is closed, the error is thrown.
    expect(() => connectKernel({ host: '127.0.0.1', port: sink.port, localAddress: '192.0.2.1' })).toThrow(expect.objectContaining({ code: 'EADDRNOTAVAIL' }));
    expect(() => connectKernel({ host: '127.0.0.1', port: sink.port, localAddress: '::1' })).toThrow(TypeError);
  });

  it('without koffi: connectKernel falls back to plain TCP and says "unavailable: …"', async () => {
    const sink = await kernelSink();
    process.env.MPTLS_DISABLE_KOFFI = '1';
    resetFfiForTests();
    try {
      expect(kernelSupport()).toMatchObject({ ok: false, reason: 'unavailable: disabled by MPTLS_DISABLE_KOFFI' });
      const k = connectKernel({ host: '127.0.0.1', port: sink.port });
      expect(k.mode).toBe('fallback');
      expect(k.mptcpSocket).toBe(false);
      expect(k.fallbackReason).toBe('unavailable: disabled by MPTLS_DISABLE_KOFFI');
      await connected(k);
      expect(() => connectKernel({ host: '127.0.0.1', port: sink.port, fallback: false })).toThrow(/unavailable: disabled by MPTLS_DISABLE_KOFFI/);
      const plain = net.createServer();
      servers.push(plain);
      const res = await listenKernel(plain, { port: 0, host: '127.0.0.1' });
      expect(res).toEqual({ mode: 'fallback', fallbackReason: 'unavailable: disabled by MPTLS_DISABLE_KOFFI' });
      await new Promise<void>((r) => (plain.listening ? r() : plain.once('listening', () => r())));
    } finally {
      delete process.env.MPTLS_DISABLE_KOFFI;
      resetFfiForTests();
    }
    expect(ffiStatus().ok).toBe(true);
  });
});

describe.skipIf(unmet !== undefined)('connect({ mptcp: { transport: "kernel" } }) and createServer({ mptcp: { kernel: true } }) on 127.0.0.1', () => {
  type Srv = ReturnType<typeof createMptlsServer>;

  function kernelServer(onSocket: (s: MptlsSocket) => void): Srv {
    const server = createMptlsServer({ key: fixtures.key, cert: fixtures.cert, allowHalfOpen: true, mptcp: { kernel: true } }, (s) => {
      s.on('error', () => {}); // a peer destroyed by the test's cleanup
      onSocket(s);
    });
    servers.push(server);
    return server;
  }

  function kernelConnect(port: number, extra: Record<string, unknown> = {}): Promise<MptlsSocket> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port, ca: fixtures.ca, allowHalfOpen: true, mptcp: { transport: 'kernel' }, ...extra } as ConnectOptions);
      sockets.push(s);
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
    });
  }

  it('TLS 1.3 over kernel MPTCP: both sockets report mode kernel, 8 MiB each way intact', async () => {
    const serverSide: Promise<{ got: { bytes: number; sha256: string }; sent: string; socket: MptlsSocket }>[] = [];
    const server = kernelServer((s) => {
      serverSide.push(
        (async () => {
          const [got, sent] = await Promise.all([receiveAll(s), sendBulk(s, 8 * MiB)]);
          return { got, sent, socket: s };
        })(),
      );
    });
    const port = await listen(server);
    expect(kernelListenState(server)).toEqual({ mode: 'kernel' });
    const c = await kernelConnect(port);
    const subflowEvents: number[] = [];
    c.on('subflow', (s: { id: number }) => subflowEvents.push(s.id));
    expect(c.getProtocol()).toBe('TLSv1.3');
    expect(c.mptcp.mode).toBe('kernel');
    expect(c.mptcp.fallbackReason).toBeUndefined();
    const [clientGot, clientSent] = await Promise.all([receiveAll(c), sendBulk(c, 8 * MiB)]);
    await until(() => serverSide.length === 1, 5000, 'server socket');
    const srv = await serverSide[0];
    expect(srv.got).toEqual({ bytes: 8 * MiB, sha256: clientSent });
    expect(clientGot).toEqual({ bytes: 8 * MiB, sha256: srv.sent });
    expect(srv.socket.mptcp.mode).toBe('kernel');

    // Exporter keys: the same fingerprints on both ends, never confirmed (the kernel cannot install them).
    expect(c.mptcp.keyFingerprints).toBeDefined();
    expect(c.mptcp.keyFingerprints).toEqual(srv.socket.mptcp.keyFingerprints);
    expect(c.mptcp.keysConfirmed).toBe(false);
    expect(c.mptcp.tokens?.local).not.toBe(0);
    expect(c.mptcp.tokens?.remote).toBe(0);
    const sfs = c.mptcp.subflows();
    expect(sfs.length).toBeGreaterThanOrEqual(1);
    // 'subflow' events in kernel mode too (the kernel's subflows, polled)
    expect(subflowEvents).toContain(sfs[0].id);
    expect(sfs[0]).toMatchObject({ localAddress: '127.0.0.1', remoteAddress: '127.0.0.1', remotePort: port, backup: false });
    // Sent: what the subflow had sent when the fd closed (the kernel may still be sending then).
    expect(sfs[0].bytesSent).toBeGreaterThan(0);
    expect(sfs[0].bytesReceived).toBeGreaterThanOrEqual(8 * MiB);
    expect(typeof sfs[0].rttMs).toBe('number');
    const counters = c.mptcp.counters();
    expect(counters.MPJoinSynRx).toBe(0);
    expect(typeof counters.ReinjectedBytes).toBe('number');
    const ssfs = srv.socket.mptcp.subflows();
    expect(ssfs[0]).toMatchObject({ localAddress: '127.0.0.1', localPort: port, remoteAddress: '127.0.0.1' });
    // After close the last snapshot stays (never a query on a recycled fd).
    await until(() => c.destroyed, 5000, 'client close');
    expect(c.mptcp.subflows().length).toBe(sfs.length);
  });

  it('the same kernel-mode port serves a userspace-multipath client and a plain tls.connect client', async () => {
    const seen: MptlsSocket[] = [];
    const server = kernelServer((s) => {
      seen.push(s);
      s.on('data', (d: Buffer) => s.write(d));
      s.on('end', () => s.end());
    });
    const port = await listen(server);

    // Userspace multipath: arrives at the MPTCP listener as TCP (the kernel falls back), the acceptor takes it.
    const u = await new Promise<MptlsSocket>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port, ca: fixtures.ca, mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] } });
      sockets.push(s);
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
    });
    expect(u.mptcp.mode).toBe('userspace');
    const echoed = new Promise<string>((r) => u.once('data', (d: Buffer) => r(d.toString())));
    u.write('userspace hello');
    expect(await echoed).toBe('userspace hello');
    await until(() => u.mptcp.subflows().filter((s) => s.state === 'established').length === 2, 5000, 'userspace join');
    expect(seen[0].mptcp.mode).toBe('userspace');

    // Plain TLS: node's own listener; the server side says fallback.
    const p = tls.connect({ host: '127.0.0.1', port, ca: fixtures.ca });
    sockets.push(p);
    await new Promise<void>((r, j) => {
      p.once('secureConnect', () => r());
      p.once('error', j);
    });
    const echoedPlain = new Promise<string>((r) => p.once('data', (d: Buffer) => r(d.toString())));
    p.write('plain hello');
    expect(await echoedPlain).toBe('plain hello');
    await until(() => seen.length === 2, 5000, 'plain server socket');
    expect(seen[1].mptcp.mode).toBe('fallback');

    // And a kernel client on the same port, for good measure.
    const k = await kernelConnect(port);
    expect(k.mptcp.mode).toBe('kernel');
    await until(() => seen.length === 3, 5000, 'kernel server socket');
    expect(seen[2].mptcp.mode).toBe('kernel');
  });

  it('a kernel-mode client against a plain tls.createServer reports fallback with a reason', async () => {
    const server = tls.createServer({ key: fixtures.key, cert: fixtures.cert }, (s) => {
      s.on('data', (d: Buffer) => s.write(d));
    });
    servers.push(server);
    const port = await listen(server);
    const c = await kernelConnect(port);
    expect(c.mptcp.mode).toBe('fallback');
    expect(c.mptcp.fallbackReason).toBe(PEER_NO_MPTCP);
    expect(c.mptcp.subflows()).toEqual([]);
    expect(c.mptcp.keyFingerprints).toBeUndefined();
    const echoed = new Promise<string>((r) => c.once('data', (d: Buffer) => r(d.toString())));
    c.write('over plain TCP');
    expect(await echoed).toBe('over plain TCP');

    // With fallback: false the connection is refused instead.
    const err = await kernelConnect(port, { mptcp: { transport: 'kernel', fallback: false } }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err).toMatchObject({ code: 'ERR_MPTLS_NO_MULTIPATH', reason: PEER_NO_MPTCP });
  });
});
