/**
 * `connect()`: `tls.connect` over a multipath stream. The returned object is
 * a real `tls.TLSSocket` (certificates, ALPN, `authorized`,
 * `exportKeyingMaterial` all work) with `.mptcp` added.
 */
import net from 'node:net';
import tls from 'node:tls';
import { Endpoint } from '../core/endpoint.js';
import type { SchedulerName } from '../core/scheduler.js';
import type { ConnectionLimits, KeyMode } from '../core/types.js';
import { MultipathDriver, now } from '../transport/userspace/driver.js';
import { MultipathStream } from '../transport/userspace/stream.js';
import { exportMptcpKeys, keyFingerprints } from '../tls/keys.js';
import { MptlsTlsError, refuseRenegotiation, weakBindingReason } from '../tls/binding.js';
import { createTcpProbe, type TcpProbe } from '../transport/kernel/probe.js';
// --- kernel bridge (mptcp.transport 'kernel') ---
import { connectKernel, KernelInfo, KERNEL_EXPORTER_TOKENS, watchKernelSubflows } from '../transport/kernel/index.js';
import { NoMultipathError } from '../transport/userspace/stream.js';
// --- end kernel bridge ---
import { checkServerPin } from '../tls/pin.js';
import { exposeAddresses, UserspaceInfo, type MptcpSocketInfo, type MptcpSubflow } from './info.js';

export interface MptcpClientOptions {
  /** Local addresses to use: [0] for the first subflow, each other one gets a join. */
  localAddresses?: string[];
  /** 'userspace' (default): multipath over ordinary TCP subflows. 'kernel': Linux IPPROTO_MPTCP. */
  transport?: 'userspace' | 'kernel';
  scheduler?: SchedulerName;
  /** Fall back to plain TLS when the server does not speak multipath (default true). */
  fallback?: boolean;
  /** 'external' (default): G bit, keys from TLS. 'rfc8684': keys in clear (for comparison only). */
  keyMode?: KeyMode;
  maxSubflows?: number;
  limits?: Partial<ConnectionLimits>;
  /**
   * Which server-announced addresses (ADD_ADDR) to join. 'default': the
   * server's address family, unicast only, loopback only from a server on
   * loopback (link-local likewise), the server's port unless
   * `allowAnnouncedPorts`. 'any': every authenticated announcement (RFC 8684,
   * Linux). A function `(announced, server) => boolean` decides itself.
   * Refused announcements are echoed and counted (`AddAddrPolicyDrop`).
   * How many addresses are joined at all: `limits.addAddrAccepted` (8).
   */
  addAddrPolicy?: import('../core/address-policy.js').AddAddrPolicyOption;
  /** Join announced addresses on ports other than the server's (default false). */
  allowAnnouncedPorts?: boolean;
  /**
   * Accept a TLS 1.2 session without the extended master secret or with a
   * static-RSA key exchange for external keys (default false: the socket is
   * destroyed with `ERR_MPTLS_TLS_BINDING`). docs/SECURITY.md says why.
   */
  allowWeakTls12?: boolean;
}

export interface ConnectOptions extends tls.ConnectionOptions {
  mptcp?: MptcpClientOptions;
  /** SHA-256 of the server's SubjectPublicKeyInfo (base64, or "sha256//base64"), checked on every connection. */
  pin?: string | string[];
}

export type MptlsSocket = tls.TLSSocket & {
  mptcp: MptcpSocketInfo;
  on(event: 'subflow', listener: (info: MptcpSubflow) => void): MptlsSocket;
};

let probe: TcpProbe | undefined | null = null;
/** The TCP_INFO probe for userspace subflows (Linux with koffi), made once. */
export function tcpProbe(): TcpProbe | undefined {
  if (probe === null) probe = createTcpProbe();
  return probe;
}

let sharedEndpoint: Endpoint | undefined;
/** The process-wide client endpoint: its token table keeps client tokens unique. */
export function clientEndpoint(): Endpoint {
  sharedEndpoint ??= new Endpoint({ acceptModes: [] });
  return sharedEndpoint;
}

function normalise(args: unknown[]): { options: ConnectOptions; cb?: () => void } {
  let options: ConnectOptions = {};
  let cb: (() => void) | undefined;
  const a = [...args];
  if (typeof a[a.length - 1] === 'function') cb = a.pop() as () => void;
  if (typeof a[0] === 'object' && a[0] !== null) options = { ...(a[0] as ConnectOptions) };
  else {
    if (a[0] !== undefined) options.port = Number(a[0]);
    if (typeof a[1] === 'string') options.host = a[1];
    if (typeof a[1] === 'object' && a[1] !== null) Object.assign(options, a[1]);
    if (typeof a[2] === 'object' && a[2] !== null) Object.assign(options, a[2]);
  }
  return { options, cb };
}

/**
 * Like `tls.connect`: `connect(options[, cb])` or `connect(port[, host][, options][, cb])`,
 * plus `options.mptcp` and `options.pin`.
 */
export function connect(options: ConnectOptions, cb?: () => void): MptlsSocket;
export function connect(port: number, host?: string | ConnectOptions, options?: ConnectOptions | (() => void), cb?: () => void): MptlsSocket;
export function connect(...args: unknown[]): MptlsSocket {
  const { options, cb } = normalise(args);
  const mp = options.mptcp ?? {};
  const host = options.host ?? 'localhost';
  const port = Number(options.port);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new RangeError(`bad port ${String(options.port)}`);
  const tlsOptions: tls.ConnectionOptions = { ...options };
  delete (tlsOptions as ConnectOptions).mptcp;
  delete (tlsOptions as ConnectOptions).pin;
  if (options.pin) tlsOptions.checkServerIdentity = checkServerPin(options.pin);
  if (tlsOptions.servername === undefined && !net.isIP(host)) tlsOptions.servername = host;

  if (mp.transport === 'kernel') {
    // --- kernel bridge: Linux IPPROTO_MPTCP (src/transport/kernel) ---
    // The kernel's path manager opens extra subflows (`ip mptcp endpoint`), its
    // scheduler picks them; localAddresses[0] binds the first subflow, and
    // scheduler / keyMode / maxSubflows / limits do not apply.
    const allowHalfOpen = (options as { allowHalfOpen?: boolean }).allowHalfOpen ?? false;
    let socket: MptlsSocket | undefined;
    const k = connectKernel({
      host,
      port,
      localAddress: mp.localAddresses?.[0],
      fallback: mp.fallback ?? true,
      allowHalfOpen,
      onMode: (r) => {
        if (r.mode === 'fallback' && mp.fallback === false) socket?.destroy(new NoMultipathError(r.fallbackReason ?? 'fallback'));
      },
    });
    socket = tls.connect({ ...tlsOptions, host, port, socket: k.socket }) as MptlsSocket;
    const info = new KernelInfo(socket, k);
    socket.mptcp = info;
    watchKernelSubflows(socket, info);
    socket.once('secureConnect', () => {
      if (info.mode !== 'kernel') return;
      // No G-bit tokens in kernel mode: both ends use the context KERNEL_EXPORTER_TOKENS
      // (tokenA = tokenB = 0). Fingerprints only: upstream Linux cannot install these keys.
      const { tokenA, tokenB } = KERNEL_EXPORTER_TOKENS;
      try {
        info.setKeyFingerprints(keyFingerprints(socket, tokenA, tokenB, exportMptcpKeys(socket, tokenA, tokenB)));
      } catch {
        // the socket went away under us: no fingerprints, and never a throw out of this handler
      }
    });
    if (cb) socket.once('secureConnect', cb);
    return socket;
    // --- end kernel bridge ---
  }
  const localAddresses = mp.localAddresses?.map((address) => ({ address }));
  const conn = clientEndpoint().connect(now(), {
    mode: mp.keyMode ?? 'external',
    remote: { address: host, port },
    localAddresses,
    scheduler: mp.scheduler,
    mss: 65000,
    limits: { ...mp.limits, ...(mp.maxSubflows ? { maxSubflows: mp.maxSubflows } : {}) },
    addAddrPolicy: mp.addAddrPolicy,
    allowAnnouncedPorts: mp.allowAnnouncedPorts,
  });
  const driver = new MultipathDriver(conn, { defaultPort: port, probe: tcpProbe() });
  const first = net.connect({ host, port, localAddress: mp.localAddresses?.[0] });
  driver.attach(0, first);
  const fallbackAllowed = mp.fallback ?? true;
  const stream = new MultipathStream(
    driver,
    fallbackAllowed ? { host, port, localAddress: mp.localAddresses?.[0] } : undefined,
  );
  const socket = stream.wrapWithHalfOpen((options as { allowHalfOpen?: boolean }).allowHalfOpen ?? false, () => tls.connect({ ...tlsOptions, host, port, socket: stream })) as MptlsSocket;
  const info = new UserspaceInfo(driver);
  socket.mptcp = info;
  exposeAddresses(socket, () => stream.addressSocket());
  stream.on('fallback', (reason: string) => {
    info.mode = 'fallback';
    info.fallbackReason = reason;
  });
  driver.on('subflow', () => {
    for (const s of info.subflows()) if (s.state === 'established' && !reported.has(s.id)) {
      reported.add(s.id);
      socket.emit('subflow', s);
    }
  });
  const reported = new Set<number>();
  // The keys belong to the first handshake: a server's HelloRequest is refused.
  refuseRenegotiation(socket, () => {
    conn.mib.inc('TlsRenegotiationRefused');
    socket.destroy(new MptlsTlsError('ERR_MPTLS_RENEGOTIATION', 'the server tried to renegotiate a multipath connection: refused'));
  });
  socket.once('secureConnect', () => {
    void socket.remoteAddress; // remember the addresses while a subflow is up
    void socket.localAddress;
    if (info.mode !== 'userspace' || conn.state !== 'established' || conn.mode !== 'external') return;
    const weak = weakBindingReason(socket, { allowWeakTls12: mp.allowWeakTls12 });
    if (weak) {
      conn.mib.inc('TlsBindingRefused');
      socket.destroy(new MptlsTlsError('ERR_MPTLS_TLS_BINDING', `refused: ${weak}`));
      return;
    }
    try {
      const keys = exportMptcpKeys(socket, conn.localToken, conn.remoteToken);
      info.setKeyFingerprints(keyFingerprints(socket, conn.localToken, conn.remoteToken, keys));
      conn.installKeys(keys.keyA, keys.keyB, now());
    } catch (err) {
      // Never out of an event handler: a failure here ends this connection only.
      socket.destroy(err as Error);
      return;
    }
    driver.pump();
  });
  if (cb) socket.once('secureConnect', () => !socket.destroyed && cb());
  return socket;
}
