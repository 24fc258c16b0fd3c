/**
 * One tunnel's way to the proxy: a new multipath connection (`connect()`,
 * half-open), and over it, once TLS is up and the server's key checked, the
 * CONNECT request; then the proxy's response head. All of it within
 * `connectTimeoutMs`. A 2xx answer hands the socket (paused) and the bytes
 * that came after the head to the caller, synchronously from the socket's
 * own event (so the caller's listeners are on before any other event);
 * anything else is a `TunnelError` and a destroyed socket.
 */
import type tls from 'node:tls';
import { connect, type ConnectOptions, type MptcpClientOptions, type MptlsSocket } from '../client.js';
import { normalizePin, PinMismatchError, spkiSha256 } from '../../tls/pin.js';
import { connectRequest, headerValue, ResponseHeadParser, type ResponseHead } from './connect-head.js';
import type { TunnelTarget } from './target.js';

/**
 * Why a tunnel was not made. 'connect': no connection to the proxy; 'tls':
 * the TLS handshake or the certificate failed; 'pin': the proxy's key is not
 * the pinned one; 'timeout': no answer within connectTimeoutMs; 'refused':
 * the proxy answered with a non-2xx status (`status`); 'bad-response': not an
 * HTTP response head; 'closed': the proxy closed before answering.
 */
export type TunnelErrorKind = 'connect' | 'tls' | 'pin' | 'timeout' | 'refused' | 'bad-response' | 'closed';

export class TunnelError extends Error {
  readonly code: string;
  constructor(
    readonly kind: TunnelErrorKind,
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TunnelError';
    this.code = `ERR_MPTLS_TUNNEL_${kind.toUpperCase().replace('-', '_')}`;
  }
}

/** What every tunnel's connection to the proxy is opened with. */
export interface UpstreamOptions {
  server: { host: string; port: number };
  /** TLS options for the proxy connection (ca, cert, key, servername, rejectUnauthorized, …). */
  tls: tls.ConnectionOptions;
  pin?: string | string[];
  mptcp?: MptcpClientOptions;
  token?: string;
  connectTimeoutMs: number;
}

export interface Upstream {
  socket: MptlsSocket;
  head: ResponseHead;
  /** Bytes after the response head: the first of the tunnel's. */
  rest: Buffer;
}

export interface PendingUpstream {
  /** The connection, from the start (undefined when `connect` refused the options). */
  socket: MptlsSocket | undefined;
  /** Gives up: destroys the socket; `done` is not called. */
  abort(): void;
}

/** Called once: an error, or the tunnel's socket and first bytes. */
export type UpstreamCallback = (error: TunnelError | undefined, upstream?: Upstream) => void;

const CONNECT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'EADDRINUSE', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN']);

/** A printable prefix of the body bytes that came with a refusal (for the log; nothing is waited for). */
function bodyHint(rest: Buffer): string {
  const text = rest.subarray(0, 200).toString('latin1').replace(/[^\x20-\x7e]+/g, ' ').trim();
  return text ? ` (${text})` : '';
}

/** Opens the multipath connection to the proxy and asks it for `target`. */
export function openUpstream(options: UpstreamOptions, target: TunnelTarget, done: UpstreamCallback): PendingUpstream {
  const pins = options.pin === undefined ? undefined : new Set((typeof options.pin === 'string' ? options.pin.split(';') : options.pin).filter((p) => p.trim() !== '').map(normalizePin));
  const connectOptions: ConnectOptions & { allowHalfOpen: boolean } = {
    ...options.tls,
    host: options.server.host,
    port: options.server.port,
    mptcp: options.mptcp,
    // connect() takes it as net.connect does (the TLS socket's), though tls.ConnectionOptions does not declare it.
    allowHalfOpen: true,
    ...(options.pin !== undefined ? { pin: options.pin } : {}),
  };
  let secure = false;
  let settled = false;
  let socket: MptlsSocket;
  try {
    socket = connect(connectOptions);
  } catch (e) {
    // Bad options (a port, a transport): this tunnel fails, nothing else; never synchronously.
    const err = new TunnelError('connect', `cannot connect to the proxy: ${(e as Error).message}`, undefined, { cause: e });
    let aborted = false;
    setImmediate(() => !aborted && done(err));
    return { socket: undefined, abort: () => void (aborted = true) };
  }
  const parser = new ResponseHeadParser();
  const timer = setTimeout(() => fail(new TunnelError('timeout', `no answer from the proxy within ${options.connectTimeoutMs} ms (TCP, MP_CAPABLE, TLS and CONNECT)`)), options.connectTimeoutMs);
  timer.unref();

  const cleanup = () => {
    clearTimeout(timer);
    socket.removeListener('secureConnect', onSecure);
    socket.removeListener('data', onData);
    socket.removeListener('end', onEnd);
    socket.removeListener('close', onClose);
    socket.removeListener('error', onError);
  };
  function fail(e: TunnelError, report = true): void {
    if (settled) return;
    settled = true;
    cleanup();
    socket.on('error', () => {}); // whatever comes after is this tunnel's failure already
    socket.destroy();
    if (report) done(e);
  }
  function onSecure(): void {
    secure = true;
    if (pins) {
      // Checked here too: with rejectUnauthorized false node never calls checkServerIdentity, so the pin alone is the check.
      let actual: string | undefined;
      try {
        actual = spkiSha256(socket.getPeerCertificate());
      } catch {
        actual = undefined;
      }
      if (actual === undefined || !pins.has(actual)) {
        fail(new TunnelError('pin', new PinMismatchError(options.server.host, actual, [...pins]).message));
        return;
      }
    }
    // Nothing (not the token) goes to the proxy before its certificate or pin is checked.
    socket.write(connectRequest(target, options.token));
  }
  function onData(chunk: Buffer): void {
    const r = parser.push(chunk);
    if (r.kind === 'more') return;
    if (r.kind === 'error') {
      fail(new TunnelError('bad-response', `bad answer from the proxy: ${r.error.message}`));
      return;
    }
    const { head, rest } = r;
    if (head.status < 200 || head.status > 299) {
      const auth = head.status === 407 ? headerValue(head, 'proxy-authenticate') : undefined;
      fail(new TunnelError('refused', `the proxy refused: ${head.status}${head.reason ? ` ${head.reason}` : ''}${auth ? ` [Proxy-Authenticate: ${auth}]` : ''}${bodyHint(rest)}`, head.status));
      return;
    }
    settled = true;
    cleanup();
    socket.pause();
    done(undefined, { socket, head, rest });
  }
  function onEnd(): void {
    fail(new TunnelError('closed', 'the proxy closed the connection before answering'));
  }
  function onClose(): void {
    fail(new TunnelError(secure ? 'closed' : 'connect', 'the connection to the proxy closed before the tunnel was up'));
  }
  function onError(e: Error & { code?: string }): void {
    const kind: TunnelErrorKind = e instanceof PinMismatchError || e.code === 'ERR_MPTLS_PIN_MISMATCH' ? 'pin' : secure ? 'closed' : e.code && CONNECT_CODES.has(e.code) ? 'connect' : 'tls';
    fail(new TunnelError(kind, `${kind === 'connect' ? 'cannot connect to the proxy' : kind === 'closed' ? 'the connection to the proxy failed' : 'TLS with the proxy failed'}: ${e.message}${e.code && !e.message.includes(e.code) ? ` (${e.code})` : ''}`, undefined, { cause: e }));
  }
  socket.once('secureConnect', onSecure);
  socket.on('data', onData);
  socket.once('end', onEnd);
  socket.once('close', onClose);
  socket.on('error', onError);
  return {
    socket,
    abort: () => fail(new TunnelError('closed', 'given up'), false),
  };
}
