/**
 * `undici.connector()`: multipath for `fetch`. The connector is a plain
 * function of the shape undici's `buildConnector` returns, so undici is no
 * dependency of mptls; pass it to an undici `Agent` (or `Client`/`Pool`):
 *
 *   import { Agent } from 'undici';
 *   const dispatcher = new Agent({ connect: undici.connector({ mptcp: { localAddresses: ['10.0.0.2', '192.168.1.7'] } }) });
 *   const res = await fetch('https://example.com/', { dispatcher });
 *
 * Node 20's global `fetch` (its bundled undici 6) takes an Agent of the npm
 * package `undici@6` as its `dispatcher`; with another major, use that
 * package's own `fetch`.
 *
 * - `https:` origins: `connect()` of mptls, i.e. a `tls.TLSSocket` with
 *   `.mptcp` (falling back to plain TLS when the server does not speak
 *   multipath, unless `mptcp.fallback` is false). ALPN `['http/1.1']` unless
 *   `ALPNProtocols` is given; servername from undici's `servername`, else the
 *   hostname unless it is an IP address; port 443 by default. undici's
 *   `localAddress` (a Client option) binds the first subflow when
 *   `mptcp.localAddresses` is not given. No TLS session cache (each
 *   connection does a full handshake) unless you pass `session`.
 * - `http:` origins: plain TCP (`net.connect`, port 80 by default), as
 *   undici's own connector does: multipath here is bound to TLS, and an
 *   Agent that refused `http:` would break every other use of it (e.g. as
 *   the global dispatcher). The socket has no `.mptcp`.
 * - `timeout`: the connect timeout in ms, covering TCP and the TLS handshake
 *   (default 10 000 as undici's; 0 or null: none). It is this option, not
 *   the Agent's `connectTimeout`: undici applies `connectTimeout` only to the
 *   connector it builds itself, never to one it is given. When it fires the
 *   socket is destroyed and the callback gets a `ConnectTimeoutError` with
 *   `code: 'UND_ERR_CONNECT_TIMEOUT'` (as undici's own connector), which
 *   `fetch` reports as the `cause` of its `TypeError('fetch failed')`.
 * - An `httpSocket` (an HTTP CONNECT tunnel to upgrade) is refused with
 *   `ERR_MPTLS_UNDICI_TUNNEL`: multipath opens its own TCP subflows and cannot
 *   run inside a tunnel. (undici's ProxyAgent uses its own connector for the
 *   tunnel anyway.)
 *
 * The callback is called exactly once: on 'secureConnect' ('connect' for
 * `http:`), on the first 'error', or on the timeout; then the connector's
 * listeners are removed.
 */
import net from 'node:net';
import { connect, type ConnectOptions } from './client.js';

/** What undici passes a connector (undici's `buildConnector.Options`; `port` is a string, '' for the default). */
export interface ConnectorRequest {
  hostname: string;
  host?: string;
  protocol: string;
  port: string | number;
  servername?: string | null;
  localAddress?: string | null;
  httpSocket?: net.Socket;
}

/** undici's `buildConnector.Callback`. */
export type ConnectorCallback = (...args: [null, net.Socket] | [Error, null]) => void;

/** undici's `buildConnector.connector`: pass it as `connect` to an undici Agent, Client or Pool. */
export type Connector = (options: ConnectorRequest, callback: ConnectorCallback) => void;

export interface ConnectorOptions extends Omit<ConnectOptions, 'timeout'> {
  /** Connect timeout (ms) for TCP and the TLS handshake; default 10 000, 0 or null: none. */
  timeout?: number | null;
}

/**
 * The connect timeout, as undici's: `code` 'UND_ERR_CONNECT_TIMEOUT', and
 * undici's brands, so `err instanceof errors.ConnectTimeoutError` (and
 * `errors.UndiciError`) of the undici package holds too.
 */
export class ConnectTimeoutError extends Error {
  readonly code = 'UND_ERR_CONNECT_TIMEOUT';
  constructor(message: string) {
    super(message);
    this.name = 'ConnectTimeoutError';
    Object.defineProperty(this, Symbol.for('undici.error.UND_ERR'), { value: true });
    Object.defineProperty(this, Symbol.for('undici.error.UND_ERR_CONNECT_TIMEOUT'), { value: true });
  }
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** An undici connector that opens mptls connections for `https:` origins (module comment). */
export function connector(options: ConnectorOptions = {}): Connector {
  const { timeout: timeoutOption, ...base } = options;
  const timeout = timeoutOption === undefined ? DEFAULT_CONNECT_TIMEOUT_MS : (timeoutOption ?? 0);
  if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout < 0) {
    throw Object.assign(new RangeError(`timeout must be a finite number >= 0, got ${String(timeoutOption)}`), { code: 'ERR_MPTLS_INVALID_OPTION' });
  }

  return function mptlsConnector(req: ConnectorRequest, callback: ConnectorCallback): void {
    let called = false;
    const finish = (...args: [null, net.Socket] | [Error, null]): void => {
      if (called) return;
      called = true;
      callback(...args);
    };
    const https = req.protocol === 'https:';
    if (req.httpSocket) {
      process.nextTick(finish, Object.assign(new TypeError('mptls: multipath cannot run inside an HTTP CONNECT tunnel (httpSocket)'), { code: 'ERR_MPTLS_UNDICI_TUNNEL' }), null);
      return;
    }
    if (!https && req.protocol !== 'http:') {
      process.nextTick(finish, Object.assign(new TypeError(`mptls: unsupported protocol ${JSON.stringify(req.protocol)}`), { code: 'ERR_MPTLS_INVALID_OPTION' }), null);
      return;
    }
    const host = req.hostname;
    const port = Number(req.port) || (https ? 443 : 80);

    let socket: net.Socket;
    try {
      if (https) {
        const mptcp = { ...base.mptcp };
        if (mptcp.localAddresses === undefined && req.localAddress) mptcp.localAddresses = [req.localAddress];
        const servername = req.servername || base.servername || (net.isIP(host) ? undefined : host);
        socket = connect({ ALPNProtocols: ['http/1.1'], ...base, mptcp, host, port, ...(servername ? { servername } : {}) });
      } else {
        socket = net.connect({ host, port, ...(req.localAddress ? { localAddress: req.localAddress } : {}) });
        socket.setNoDelay(true);
      }
    } catch (err) {
      process.nextTick(finish, err as Error, null);
      return;
    }

    const ready = https ? 'secureConnect' : 'connect';
    let timer: NodeJS.Timeout | undefined;
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off(ready, onReady);
      socket.off('close', onClose);
    };
    const onError = (err: Error): void => {
      cleanup();
      finish(err, null);
    };
    // Once undici has the socket it listens for 'error' itself; until then
    // (it attaches its listeners a few microtasks after the callback) ours
    // stays, so that nothing emitted in between is unhandled.
    const dropErrorListener = (): void => {
      setImmediate(() => socket.off('error', onError));
    };
    function onReady(): void {
      // mptls destroys a connection whose TLS session cannot carry the keys in
      // its own 'secureConnect' listener: its 'error' is the answer then.
      if (socket.destroyed) return;
      cleanup();
      finish(null, socket);
      dropErrorListener();
    }
    function onClose(): void {
      cleanup();
      finish(Object.assign(new Error(`mptls: the connection to ${host}:${port} closed before it was established`), { code: 'ECONNRESET' }), null);
    }
    socket.once(ready, onReady);
    socket.on('error', onError);
    socket.once('close', onClose);
    if (timeout > 0) {
      timer = setTimeout(() => {
        cleanup();
        // Destroyed without an error: no 'error' event races the callback.
        socket.destroy();
        finish(new ConnectTimeoutError(`Connect Timeout Error (attempted address: ${host}:${port}, timeout: ${timeout}ms)`), null);
      }, timeout);
    }
  };
}
