/**
 * Linux kernel MPTCP (IPPROTO_MPTCP) sockets handed to node:net.
 *
 * The fd is created through the FFI (node cannot pass a protocol to
 * socket()), bound if needed, then adopted by node: `new net.Socket({ fd })`
 * + `connect()` for a client, `server.listen({ fd })` for a listener. From
 * then on it is an ordinary libuv TCP handle; the kernel does MPTCP beneath
 * it (MP_CAPABLE, joins by its path manager, `ip mptcp endpoint`, its
 * scheduler).
 *
 * Whenever the kernel cannot (not Linux, koffi missing, `net.mptcp.enabled=0`,
 * a kernel without MPTCP) the bridge falls back to plain TCP and says why.
 * Kernel mode authenticates joins with RFC 8684's keys, sent in clear in the
 * handshake: upstream Linux has no way to install keys from TLS.
 */
import net from 'node:net';
import dns from 'node:dns';
import { readdirSync, readFileSync } from 'node:fs';
import { closeQuietly, ffiStatus, SyscallError, sysBind, sysSocket, setsockoptInt } from './ffi.js';
import {
  AF_INET,
  AF_INET6,
  encodeSockaddr,
  getMptcpInfo,
  getSockProtocol,
  IPPROTO_IPV6,
  IPPROTO_MPTCP,
  IPV6_V6ONLY,
  SO_REUSEADDR,
  SO_RCVBUF,
  SOCK_CLOEXEC,
  SOCK_STREAM,
  SOL_SOCKET,
  socketFd,
} from './sockopt.js';

const MPTCP_SYSCTL_DIR = '/proc/sys/net/mptcp';

/** socket() errnos that mean "this kernel will not do MPTCP" (rather than a real failure). */
const NO_MPTCP_ERRNOS = new Set(['EPROTONOSUPPORT', 'ENOPROTOOPT', 'EINVAL', 'EAFNOSUPPORT', 'ESOCKTNOSUPPORT', 'EPROTOTYPE']);

export const PEER_NO_MPTCP = 'peer does not speak MPTCP';

/** The net.mptcp sysctls of this network namespace (empty when there are none). */
export function mptcpSysctls(): Record<string, string> {
  const out: Record<string, string> = {};
  let names: string[];
  try {
    names = readdirSync(MPTCP_SYSCTL_DIR);
  } catch {
    return out;
  }
  for (const n of names.sort()) {
    try {
      out[n] = readFileSync(`${MPTCP_SYSCTL_DIR}/${n}`, 'utf8').trim();
    } catch {
      /* unreadable (permissions): leave it out */
    }
  }
  return out;
}

export interface KernelSupport {
  ok: boolean;
  reason?: string;
  sysctl: Record<string, string>;
}

/**
 * Whether this process can open kernel MPTCP sockets: Linux, koffi loads,
 * `net.mptcp.enabled` is 1, and a test `socket(AF_INET, SOCK_STREAM, 262)`
 * succeeds. Evaluated on every call (sysctls change); cheap.
 */
export function kernelSupport(): KernelSupport {
  const sysctl = mptcpSysctls();
  if (process.platform !== 'linux') return { ok: false, reason: `unavailable: platform is ${process.platform}, not linux`, sysctl };
  const f = ffiStatus();
  if (!f.ok) return { ok: false, reason: `unavailable: ${f.reason}`, sysctl };
  if (sysctl.enabled === undefined) return { ok: false, reason: `unavailable: ${MPTCP_SYSCTL_DIR} is missing (kernel built without MPTCP?)`, sysctl };
  if (sysctl.enabled !== '1') return { ok: false, reason: `unavailable: net.mptcp.enabled is ${sysctl.enabled}`, sysctl };
  try {
    closeQuietly(sysSocket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP));
  } catch (e) {
    return { ok: false, reason: `unavailable: ${(e as Error).message}`, sysctl };
  }
  return { ok: true, sysctl };
}

/** Whether an error from socket() means "no MPTCP here" (fall back) rather than a real failure. */
function isNoMptcp(e: unknown): boolean {
  return e instanceof SyscallError && NO_MPTCP_ERRNOS.has(e.code);
}

/**
 * Creates an MPTCP stream socket (close-on-exec), or says why not.
 * Errors that are not about MPTCP support (EMFILE, ENOBUFS…) are thrown.
 */
/**
 * SO_RCVBUF of kernel-MPTCP listeners (the kernel doubles it; accepted
 * sockets inherit it). Linux's MPTCP-level receive autotuning starves a
 * fast reader: on loopback node:tls over MPTCP ran at 139–324 MB/s with
 * both processes partly idle, 334–443 MB/s with this (bench/NOTES.md,
 * kernel mode). 4 MiB (8 MiB effective) covers 640 Mbit/s at 100 ms.
 * Client sockets keep autotuning: with SO_RCVBUF set there, Linux 6.18
 * reported 941 bytes received on the only subflow after 8 MiB had arrived
 * (test/kernel/sockopt.test.ts).
 */
export const KERNEL_RECEIVE_BUFFER = 4 * 1024 * 1024;

let rcvbufAllowed: boolean | undefined;
/**
 * Only where net.core.rmem_max lets the whole size through: a setsockopt
 * capped below it would still switch autotuning off (on a default
 * 208 KiB rmem_max, a far smaller buffer than autotuning reaches).
 */
function receiveBufferAllowed(): boolean {
  if (rcvbufAllowed === undefined) {
    try {
      rcvbufAllowed = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8').trim()) >= KERNEL_RECEIVE_BUFFER;
    } catch {
      rcvbufAllowed = false;
    }
  }
  return rcvbufAllowed;
}

export function openMptcpFd(family: 4 | 6, receiveBuffer = false): { fd: number } | { fd?: undefined; reason: string } {
  if (process.platform !== 'linux') return { reason: `unavailable: platform is ${process.platform}, not linux` };
  const f = ffiStatus();
  if (!f.ok) return { reason: `unavailable: ${f.reason}` };
  try {
    const fd = sysSocket(family === 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP);
    if (receiveBuffer && receiveBufferAllowed()) {
      try {
        setsockoptInt(fd, SOL_SOCKET, SO_RCVBUF, KERNEL_RECEIVE_BUFFER);
      } catch {
        // Only a tuning: the kernel's autotuning stays.
      }
    }
    return { fd };
  } catch (e) {
    if (!isNoMptcp(e)) throw e;
    const enabled = mptcpSysctls().enabled;
    const hint = enabled !== undefined && enabled !== '1' ? ` (net.mptcp.enabled=${enabled})` : '';
    return { reason: `unavailable: the kernel refused an MPTCP socket: ${(e as SyscallError).code}${hint}` };
  }
}

/** What the kernel says about a connected socket: MPTCP, fallen back to TCP, or plain TCP. */
export function connectedMode(fd: number): { mode: 'kernel' } | { mode: 'fallback'; reason: string } {
  let proto: number;
  try {
    proto = getSockProtocol(fd);
  } catch (e) {
    return { mode: 'fallback', reason: `cannot tell: ${(e as Error).message}` };
  }
  if (proto !== IPPROTO_MPTCP) return { mode: 'fallback', reason: 'not an MPTCP socket' };
  try {
    const info = getMptcpInfo(fd);
    if (info.fallback) return { mode: 'fallback', reason: PEER_NO_MPTCP };
    return { mode: 'kernel' };
  } catch (e) {
    if (e instanceof SyscallError && e.code === 'EOPNOTSUPP') return { mode: 'fallback', reason: PEER_NO_MPTCP };
    return { mode: 'fallback', reason: `cannot tell: ${(e as Error).message}` };
  }
}

export interface KernelConnectOptions {
  host: string;
  port: number;
  localAddress?: string;
  /** 4 or 6; default: the family of host (an IP), of localAddress, else 4. */
  family?: 4 | 6;
  /** Plain TCP when the kernel cannot do MPTCP (default true); false makes that an error. */
  fallback?: boolean;
  allowHalfOpen?: boolean;
  /** Called once the mode is final (after the TCP handshake), before the socket's own 'connect' listeners. */
  onMode?: (result: KernelConnection) => void;
}

/** A connecting socket. `mode` is provisional until 'connect', then final. */
export interface KernelConnection {
  socket: net.Socket;
  mode: 'kernel' | 'fallback';
  fallbackReason?: string;
  /** Whether the socket was opened as IPPROTO_MPTCP (false: the kernel could not, plain TCP). */
  readonly mptcpSocket: boolean;
}

/** Thrown when `fallback: false` and the kernel cannot do MPTCP. */
export class KernelMptcpUnavailableError extends Error {
  override readonly name = 'KernelMptcpUnavailableError';
  readonly code = 'ERR_MPTLS_NO_KERNEL_MPTCP';
  constructor(readonly reason: string) {
    super(`kernel MPTCP: ${reason}`);
  }
}

function familyOf(options: KernelConnectOptions): 4 | 6 {
  const h = net.isIP(options.host);
  if (h === 4 || h === 6) return h;
  if (options.family) return options.family;
  const l = options.localAddress ? net.isIP(options.localAddress.split('%')[0]) : 0;
  return l === 6 ? 6 : 4;
}

/**
 * Connects over kernel MPTCP: socket(…, IPPROTO_MPTCP) through the FFI,
 * bind(localAddress) if given, `new net.Socket({ fd })`, connect. Falls back
 * to a plain `net.connect` (with the reason) when the kernel cannot. After
 * the TCP handshake MPTCP_INFO decides the final mode: a peer that did not
 * answer MP_CAPABLE makes it 'fallback', "peer does not speak MPTCP".
 * The fd is closed on every error path before node owns it.
 */
export function connectKernel(options: KernelConnectOptions): KernelConnection {
  const family = familyOf(options);
  const hostFamily = net.isIP(options.host);
  if (hostFamily && options.family && hostFamily !== options.family) throw new TypeError(`host ${options.host} is not IPv${options.family}`);
  const connectOpts: net.TcpSocketConnectOpts = { host: options.host, port: options.port, family };
  const opened = openMptcpFd(family);
  if (opened.fd === undefined) {
    if (options.fallback === false) throw new KernelMptcpUnavailableError(opened.reason);
    const socket = net.connect({ ...connectOpts, localAddress: options.localAddress, allowHalfOpen: options.allowHalfOpen });
    const result: KernelConnection = { socket, mode: 'fallback', fallbackReason: opened.reason, mptcpSocket: false };
    socket.prependOnceListener('connect', () => options.onMode?.(result));
    return result;
  }
  const fd = opened.fd;
  let socket: net.Socket;
  try {
    if (options.localAddress) {
      const lf = net.isIP(options.localAddress.split('%')[0]);
      if (lf !== family) throw new TypeError(`localAddress ${options.localAddress} is not IPv${family} like the destination`);
      try {
        sysBind(fd, encodeSockaddr(options.localAddress, 0));
      } catch (e) {
        if (e instanceof SyscallError) throw Object.assign(new SyscallError('bind', e.errno, options.localAddress), { address: options.localAddress });
        throw e;
      }
    }
    socket = new net.Socket({ fd, allowHalfOpen: options.allowHalfOpen, readable: true, writable: true });
  } catch (e) {
    closeQuietly(fd);
    throw e;
  }
  // From here node owns the fd: destroying the socket closes it.
  const result: KernelConnection = { socket, mode: 'kernel', mptcpSocket: true };
  socket.prependOnceListener('connect', () => {
    const d = connectedMode(socketFd(socket) ?? fd);
    result.mode = d.mode;
    result.fallbackReason = d.mode === 'fallback' ? d.reason : undefined;
    options.onMode?.(result);
  });
  try {
    socket.connect(connectOpts);
  } catch (e) {
    socket.destroy();
    throw e;
  }
  return result;
}

export interface KernelListenOptions {
  port?: number;
  host?: string;
  backlog?: number;
  ipv6Only?: boolean;
  exclusive?: boolean;
  signal?: AbortSignal;
  /** Listen on plain TCP when the kernel cannot do MPTCP (default true); false makes that an error. */
  fallback?: boolean;
}

export interface KernelListenResult {
  mode: 'kernel' | 'fallback';
  fallbackReason?: string;
}

const kListenState = Symbol.for('mptls.kernelListen');

/** How a server's last listenKernel() went (undefined if it never did). */
export function kernelListenState(server: net.Server): KernelListenResult | undefined {
  return (server as unknown as Record<symbol, KernelListenResult | undefined>)[kListenState];
}

type ListenFn = (this: net.Server, ...args: unknown[]) => net.Server;
const baseListen = net.Server.prototype.listen as unknown as ListenFn;

async function resolveHost(host: string | undefined): Promise<{ address: string; family: 4 | 6 }[]> {
  if (host === undefined || host === '') return [{ address: '::', family: 6 }, { address: '0.0.0.0', family: 4 }];
  const f = net.isIP(host.split('%')[0]);
  if (f === 4 || f === 6) return [{ address: host, family: f }];
  const a = await dns.promises.lookup(host);
  return [{ address: a.address, family: a.family === 6 ? 6 : 4 }];
}

/**
 * Listens on an MPTCP socket (SO_REUSEADDR, bind, then
 * `server.listen({ fd })`), or, when the kernel cannot, on a normal
 * `server.listen(port, host)`. Kernel-MPTCP clients then get MPTCP; plain TCP
 * clients are accepted as ordinary TCP sockets by the same listener.
 * Resolves once node's listen() has been called (errors of the listen
 * itself arrive as the server's 'error', as with net); rejects when the
 * socket cannot be made or bound (EADDRINUSE…), with the fd closed.
 */
export async function listenKernel(server: net.Server, options: KernelListenOptions = {}): Promise<KernelListenResult> {
  const port = options.port ?? 0;
  const extra = { backlog: options.backlog, exclusive: options.exclusive, signal: options.signal };
  const plain = (reason: string): KernelListenResult => {
    if (options.fallback === false) throw new KernelMptcpUnavailableError(reason);
    baseListen.call(server, { port, host: options.host, ipv6Only: options.ipv6Only, ...extra });
    return setState({ mode: 'fallback', fallbackReason: reason });
  };
  const setState = (r: KernelListenResult) => {
    (server as unknown as Record<symbol, KernelListenResult>)[kListenState] = r;
    return r;
  };
  const candidates = await resolveHost(options.host);
  let lastReason = 'no address to listen on';
  for (const cand of candidates) {
    const opened = openMptcpFd(cand.family, true);
    if (opened.fd === undefined) {
      lastReason = opened.reason;
      // '::' may fail only because IPv6 is off: try the next candidate.
      continue;
    }
    const fd = opened.fd;
    try {
      setsockoptInt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
      if (cand.family === 6 && options.ipv6Only !== undefined) setsockoptInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, options.ipv6Only ? 1 : 0);
      sysBind(fd, encodeSockaddr(cand.address, port));
    } catch (e) {
      closeQuietly(fd);
      // An unspecified '::' bind fails with EADDRNOTAVAIL/EAFNOSUPPORT where IPv6 is off: try 0.0.0.0.
      if (candidates.length > 1 && cand.family === 6 && e instanceof SyscallError && (e.code === 'EADDRNOTAVAIL' || e.code === 'EAFNOSUPPORT')) continue;
      if (e instanceof SyscallError && e.syscall === 'bind') {
        throw Object.assign(new SyscallError('bind', e.errno, `${cand.address}:${port}`), { address: cand.address, port });
      }
      throw e;
    }
    try {
      baseListen.call(server, { fd, ...extra });
    } catch (e) {
      closeQuietly(fd);
      throw e;
    }
    return setState({ mode: 'kernel' });
  }
  return plain(lastReason);
}

/**
 * Makes `server.listen(port[, host][, backlog][, cb])` and
 * `server.listen({ port, host, … }[, cb])` go through {@link listenKernel}
 * (listening on an MPTCP socket); path, handle and fd forms are untouched.
 * Errors arrive as the server's 'error' event, like net's.
 */
export function useKernelListener(server: net.Server): void {
  const patched = function (this: net.Server, ...args: unknown[]): net.Server {
    let cb: (() => void) | undefined;
    if (typeof args[args.length - 1] === 'function') cb = args.pop() as () => void;
    let opts: KernelListenOptions | undefined;
    const a0 = args[0];
    if (a0 === undefined || a0 === null || typeof a0 === 'number' || (typeof a0 === 'string' && /^\d+$/.test(a0))) {
      opts = { port: a0 == null ? 0 : Number(a0) };
      if (typeof args[1] === 'string') opts.host = args[1];
      const b = typeof args[1] === 'number' ? args[1] : args[2];
      if (typeof b === 'number') opts.backlog = b;
    } else if (typeof a0 === 'object' && !(a0 as { _handle?: unknown })._handle) {
      const o = a0 as net.ListenOptions & { fd?: number };
      if (o.path === undefined && o.fd === undefined && !('handle' in o)) {
        opts = { port: o.port === undefined ? 0 : Number(o.port), host: o.host, backlog: o.backlog, ipv6Only: o.ipv6Only, exclusive: o.exclusive, signal: o.signal };
      }
    }
    if (!opts) return baseListen.call(this, ...args, ...(cb ? [cb] : []));
    if (cb) this.once('listening', cb);
    listenKernel(this, opts).catch((err: Error) => this.emit('error', err));
    return this;
  };
  Object.defineProperty(server, 'listen', { value: patched, configurable: true, writable: true });
}

/** Linux's namespace-wide MPTCP MIB (`MPTcpExt` in /proc/net/netstat), by Linux's names. */
export function readMptcpNetstat(): Record<string, number> {
  let text: string;
  try {
    text = readFileSync('/proc/net/netstat', 'utf8');
  } catch {
    return {};
  }
  const lines = text.split('\n').filter((l) => l.startsWith('MPTcpExt:'));
  if (lines.length < 2) return {};
  const names = lines[0].split(/\s+/).slice(1);
  const values = lines[1].split(/\s+/).slice(1);
  const out: Record<string, number> = {};
  names.forEach((n, i) => {
    if (n) out[n] = Number(values[i]);
  });
  return out;
}
