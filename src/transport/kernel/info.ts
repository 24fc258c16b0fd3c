/**
 * `socket.mptcp` of a connection carried by Linux's own MPTCP.
 *
 * Everything comes from the kernel, on demand: MPTCP_FULL_INFO where the
 * kernel has it (one consistent snapshot: subflow ids, addresses and
 * tcp_info), else MPTCP_TCPINFO + MPTCP_SUBFLOW_ADDRS; MPTCP_INFO for the
 * connection. Once the socket is closed the last snapshot is kept (its fd
 * number may already belong to another socket, so it is never queried again).
 */
import type net from 'node:net';
import type { MptcpSubflow } from '../socket-info.js';
import { MIB_NAMES, type MibCounters } from '../../core/mib.js';
import { connectedMode, PEER_NO_MPTCP } from './socket.js';
import { getFullInfo, getMptcpInfo, getSubflowAddrs, getSubflowTcpInfo, type MptcpInfo, socketFd, tcpStateName, type TcpInfo, type SockAddr } from './sockopt.js';

/** A kernel subflow as `socket.mptcp.subflows()` reports it (Linux does not report the backup flag here: always false). */
export type KernelSubflow = MptcpSubflow;

export type KernelMode = 'kernel' | 'fallback';

/** Where a KernelInfo reads its mode: a KernelConnection (mutated when the handshake completes) or a fixed value. */
export interface KernelModeSource {
  readonly mode: KernelMode;
  readonly fallbackReason?: string;
}

/**
 * The exporter context of kernel mode. There are no G-bit tokens (the kernel
 * derives its tokens from RFC 8684 keys, and a server cannot read its peer's
 * token), so both ends use tokenA = tokenB = 0, a pair no G-bit connection
 * ever has: keys = exportKeyingMaterial(16, EXPORTER_LABEL, 0⁸).
 */
export const KERNEL_EXPORTER_TOKENS = { tokenA: 0, tokenB: 0 } as const;

function zeroCounters(): MibCounters {
  return Object.fromEntries(MIB_NAMES.map((n) => [n, 0])) as MibCounters;
}

function addr(a: SockAddr | null | undefined): { address?: string; port?: number } {
  return a ? { address: a.address, port: a.port } : {};
}

function subflowOf(id: number, local: SockAddr | null | undefined, remote: SockAddr | null | undefined, tcp: TcpInfo | null | undefined): KernelSubflow {
  const l = addr(local);
  const r = addr(remote);
  return {
    id,
    localAddress: l.address,
    localPort: l.port,
    remoteAddress: r.address,
    remotePort: r.port,
    backup: false,
    state: tcp ? tcpStateName(tcp.state) : 'unknown',
    // tcpi_bytes_sent (4.19+) counts retransmissions too; tcpi_bytes_acked is what got through.
    bytesSent: tcp?.bytesSent ?? tcp?.bytesAcked ?? 0,
    bytesReceived: tcp?.bytesReceived ?? 0,
    rttMs: tcp ? tcp.rtt / 1000 : undefined,
  };
}

function unspecified(address: string | undefined): boolean {
  return address === undefined || address === '0.0.0.0' || address === '::';
}

/**
 * Combines a new reading with the previous one. When the MPTCP connection
 * closes, Linux disconnects its subflows (tcp_disconnect), and a disconnected
 * subflow reads back with id 0, unspecified addresses and zeroed counters:
 * keep what was known (addresses, the largest counters) and take its state.
 * A subflow the kernel no longer lists stays, as 'closed'.
 */
function merge(prev: KernelSubflow[], next: KernelSubflow[]): KernelSubflow[] {
  const used = new Set<KernelSubflow>();
  const out = next.map((s) => {
    const p = prev.find((q) => !used.has(q) && (s.id !== 0 ? q.id === s.id : q.localPort === s.localPort));
    if (!p) return s;
    used.add(p);
    const detached = s.id === 0 || !s.remotePort;
    return {
      ...s,
      id: s.id || p.id,
      localAddress: unspecified(s.localAddress) ? p.localAddress : s.localAddress,
      localPort: s.localPort || p.localPort,
      remoteAddress: detached ? p.remoteAddress : s.remoteAddress,
      remotePort: s.remotePort || p.remotePort,
      bytesSent: Math.max(s.bytesSent, p.bytesSent),
      bytesReceived: Math.max(s.bytesReceived, p.bytesReceived),
      rttMs: s.rttMs || p.rttMs,
    };
  });
  for (const p of prev) if (!used.has(p)) out.push({ ...p, state: 'closed' });
  return out.sort((a, b) => a.id - b.id);
}

/**
 * `socket.mptcp` in kernel mode ('kernel', or 'fallback' when the peer or
 * the kernel did not do MPTCP). Structurally an `MptcpSocketInfo`.
 */
export class KernelInfo {
  readonly keysConfirmed = false;
  /** The kernel parks nothing that mptls can see: always 'active'. */
  readonly state = 'active' as const;
  /**
   * SHA-256 prefixes of keyA and keyB exported from the TLS session (context:
   * {@link KERNEL_EXPORTER_TOKENS}), computed in kernel mode too so both ends
   * can compare them. They are NOT used by the kernel: upstream Linux has no
   * socket option to install external keys, so kernel-mode joins are
   * authenticated with RFC 8684's keys, which crossed the wire in clear in
   * the MP_CAPABLE handshake. Hence keysConfirmed is always false.
   */
  keyFingerprints: { keyA: string; keyB: string } | undefined;
  private lastInfo: MptcpInfo | undefined;
  private lastSubflows: KernelSubflow[] = [];
  private fullInfo: boolean | undefined;
  private overrideMode: { mode: KernelMode; fallbackReason?: string } | undefined;

  /**
   * @param socket the socket the application holds (the TLSSocket, or a net.Socket) whose fd is queried
   * @param source where the mode comes from (read on every access)
   */
  constructor(
    private readonly socket: net.Socket,
    private readonly source: KernelModeSource,
  ) {
    // Keep a snapshot at the moments that matter: once connected, when the
    // peer ends, and just before the fd is closed (destroy), so the numbers
    // survive the socket.
    const snap = () => {
      try {
        this.refresh();
      } catch {
        /* a snapshot is best effort */
      }
    };
    if (socket.connecting) socket.once('connect', snap);
    socket.prependListener('end', snap);
    const s = socket as unknown as { _destroy: (err: Error | null, cb: (err: Error | null) => void) => void };
    const destroy = s._destroy;
    s._destroy = function (this: unknown, err, cb) {
      snap();
      return destroy.call(this, err, cb);
    };
  }

  /** Builds the info of an accepted socket, or undefined when it is not an MPTCP connection. */
  static forAccepted(socket: net.Socket): KernelInfo | undefined {
    const fd = socketFd(socket);
    if (fd === undefined) return undefined;
    const d = connectedMode(fd);
    if (d.mode !== 'kernel') return undefined;
    const info = new KernelInfo(socket, { mode: 'kernel' });
    info.refresh();
    return info;
  }

  get mode(): KernelMode {
    return this.overrideMode?.mode ?? this.source.mode;
  }

  get fallbackReason(): string | undefined {
    return this.overrideMode ? this.overrideMode.fallbackReason : this.source.fallbackReason;
  }

  /** Forces the mode (e.g. the connection fell back later). */
  setMode(mode: KernelMode, fallbackReason?: string): void {
    this.overrideMode = { mode, fallbackReason };
  }

  /** Records the fingerprints (src/tls keyFingerprints of keyA and keyB; this layer never sees TLS). */
  setKeyFingerprints(fingerprints: { keyA: string; keyB: string }): void {
    this.keyFingerprints = { ...fingerprints };
  }

  private fd(): number | undefined {
    return socketFd(this.socket);
  }

  /** The kernel's struct mptcp_info now (or the last one read, once closed). */
  kernelInfo(): MptcpInfo | undefined {
    if (this.mode === 'kernel') this.refresh();
    return this.lastInfo;
  }

  /** This side's kernel token (RFC 8684: derived from its key); the peer's is not exposed by Linux. */
  get tokens(): { local: number; remote: number } | undefined {
    const info = this.kernelInfo();
    return info ? { local: info.token, remote: 0 } : undefined;
  }

  subflows(): KernelSubflow[] {
    if (this.mode !== 'kernel') return [];
    this.refresh();
    return this.lastSubflows.map((s) => ({ ...s }));
  }

  /**
   * MibCounters-shaped: Linux keeps MIB counters per network namespace, not
   * per connection, so only what struct mptcp_info says about this
   * connection is mapped (ADD_ADDR accepted/signalled, MPTCP-level
   * retransmissions and reinjected bytes); everything else is 0.
   */
  counters(): MibCounters {
    const c = zeroCounters();
    const i = this.kernelInfo();
    if (!i) return c;
    c.AddAddr = i.addAddrAccepted;
    c.AddAddrTx = i.addAddrSignal;
    c.Reinjected = i.retransmits ?? 0;
    c.ReinjectedBytes = i.bytesRetrans ?? 0;
    return c;
  }

  /** Re-reads the kernel's state while the socket is open; a no-op before it connected and once it is closed. */
  refresh(): void {
    const fd = this.fd();
    if (fd === undefined || this.socket.connecting) return;
    try {
      if (this.fullInfo !== false) {
        try {
          const f = getFullInfo(fd);
          this.fullInfo = true;
          this.lastInfo = f.mptcp;
          this.lastSubflows = merge(this.lastSubflows, f.subflows.map((s) => subflowOf(s.id, s.local, s.remote, s.tcp)));
          return;
        } catch (e) {
          const code = (e as { code?: string }).code;
          if (code !== 'EOPNOTSUPP' && code !== 'ENOPROTOOPT' && code !== 'EINVAL') throw e;
          // Either this kernel has no MPTCP_FULL_INFO (before 6.5), or the connection
          // fell back to TCP: MPTCP_INFO, just below, tells which.
        }
      }
      this.lastInfo = getMptcpInfo(fd);
      this.fullInfo ??= false;
      const t = getSubflowTcpInfo(fd).items;
      const a = getSubflowAddrs(fd).items;
      // Two calls: the subflow list may change in between; pair by position up to the shorter.
      const n = Math.min(t.length, a.length);
      this.lastSubflows = merge(this.lastSubflows, Array.from({ length: n }, (_, k) => subflowOf(k + 1, a[k].local, a[k].remote, t[k])));
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'EOPNOTSUPP') {
        // The kernel answers SOL_MPTCP options as a TCP socket would: the connection runs as plain TCP.
        if (this.mode === 'kernel') this.setMode('fallback', PEER_NO_MPTCP);
        this.lastSubflows = [];
        return;
      }
      if (code === 'EBADF' || code === 'ENOTSOCK') return; // closed under us
      throw e;
    }
  }
}

/**
 * Emits 'subflow' on `socket` for every kernel subflow that comes up, as the
 * userspace transport does: Linux has no notification for it on a socket, so
 * MPTCP_FULL_INFO is polled (every `intervalMs`, unref'd) while the socket
 * is open.
 */
export function watchKernelSubflows(socket: net.Socket, info: KernelInfo, intervalMs = 250): void {
  const seen = new Set<number>();
  const check = () => {
    if (socket.destroyed || info.mode !== 'kernel') return stop();
    for (const s of info.subflows()) {
      if (s.state === 'established' && !seen.has(s.id)) {
        seen.add(s.id);
        socket.emit('subflow', s);
      }
    }
  };
  const timer = setInterval(check, intervalMs);
  timer.unref();
  const stop = () => clearInterval(timer);
  socket.once('close', stop);
  // After the handshake, on the next turn: code that runs on 'secureConnect'
  // (and attaches its 'subflow' listener there) sees the first subflow too.
  socket.once('secureConnect', () => setImmediate(check));
  socket.once('secure', () => setImmediate(check));
  setImmediate(check);
}
