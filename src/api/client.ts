/**
 * `connect()`: `tls.connect` over a connection of the chosen transport
 * (userspace multipath, or Linux's kernel MPTCP). The returned object is a
 * real `tls.TLSSocket` (certificates, ALPN, `authorized`,
 * `exportKeyingMaterial` all work) with `.mptcp` added.
 */
import net from 'node:net';
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import { MptlsTlsError } from '../tls/binding.js';
import { checkServerPin } from '../tls/pin.js';
import { kernelClient, userspaceClient, type ClientTransport, type TransportClientOptions } from '../transport/index.js';
import { checkAddressList, checkResumeTimeout, coded } from './errors.js';
import { adopt, bindKeys, type MptlsSocket } from './session.js';

export type { MptlsSocket } from './session.js';
export { clientEndpoint, tcpProbe } from '../transport/index.js';

export interface MptcpClientOptions extends TransportClientOptions {
  /** 'userspace' (default): multipath over ordinary TCP subflows. 'kernel': Linux IPPROTO_MPTCP. */
  transport?: 'userspace' | 'kernel';
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

/** `mptcp.transport`: which transport carries the connection (the kernel's path manager and scheduler with 'kernel'). */
function pickTransport(name: MptcpClientOptions['transport']): ClientTransport {
  if (name === undefined || name === 'userspace') return userspaceClient;
  if (name === 'kernel') return kernelClient;
  throw coded(new TypeError(`mptcp.transport must be 'userspace' or 'kernel', got ${JSON.stringify(name)}`), 'ERR_MPTLS_INVALID_TRANSPORT');
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
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw coded(new RangeError(`bad port ${String(options.port)}`), 'ERR_MPTLS_INVALID_PORT');
  const transport = pickTransport(mp.transport);
  checkResumeTimeout(mp.resumeTimeoutMs);
  checkAddressList('localAddresses', mp.localAddresses);
  const tlsOptions: tls.ConnectionOptions = { ...options };
  delete (tlsOptions as ConnectOptions).mptcp;
  delete (tlsOptions as ConnectOptions).pin;
  if (options.pin) tlsOptions.checkServerIdentity = checkServerPin(options.pin);
  if (tlsOptions.servername === undefined && !net.isIP(host)) tlsOptions.servername = host;

  if ((options as { signal?: AbortSignal }).signal?.aborted) {
    // node:tls's own answer (one AbortError, one 'close'), without opening any subflow.
    const idle = new Duplex({ read() {}, write(_chunk, _enc, cb) { cb(); } });
    return tls.connect({ ...tlsOptions, host, port, socket: idle }) as MptlsSocket;
  }
  const allowHalfOpen = (options as { allowHalfOpen?: boolean }).allowHalfOpen ?? false;
  const c = transport.open({ host, port, allowHalfOpen, mptcp: mp });
  const socket = c.wrap(allowHalfOpen, () => tls.connect({ ...tlsOptions, host, port, socket: c.socket })) as MptlsSocket;
  const info = adopt(socket, c, () => {
    socket.destroy(new MptlsTlsError('ERR_MPTLS_RENEGOTIATION', 'the server tried to renegotiate a multipath connection: refused'));
  });
  socket.once('secureConnect', () => {
    void socket.remoteAddress; // remember the addresses while a subflow is up
    void socket.localAddress;
    try {
      const refused = bindKeys(socket, c, info, { allowWeakTls12: mp.allowWeakTls12 });
      if (refused) socket.destroy(refused);
    } catch (err) {
      // Never out of an event handler: a failure here ends this connection only.
      socket.destroy(err as Error);
    }
  });
  // tls.connect ignores `timeout` when it is given the socket: set it as it would.
  if (options.timeout) socket.setTimeout(options.timeout);
  if (cb) socket.once('secureConnect', () => !socket.destroyed && cb());
  return socket;
}
