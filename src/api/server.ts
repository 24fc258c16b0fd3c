/**
 * `createServer()`: a real `tls.Server` (or `https.Server`) whose listening
 * port serves multipath clients and plain TLS clients alike. The server's
 * own 'connection' handling is replaced by the userspace transport's
 * acceptor: plain clients go to node:tls untouched; each multipath connection
 * becomes a `tls.TLSSocket` over a multipath stream, set up and reported
 * exactly as node:tls does for its own sockets ('secureConnection',
 * 'tlsClientError', requestCert, ALPN, SNI), with `.mptcp` added. With
 * `mptcp.kernel` the port is an IPPROTO_MPTCP socket too, and node:tls's own
 * sockets that are kernel-MPTCP connections report mode 'kernel'.
 */
import tls from 'node:tls';
import type net from 'node:net';
import {
  kernelServer,
  userspaceServer,
  type OpenedConnection,
  type ServerHandlers,
  type ServerMptcpInfo,
  type TransportConnection,
  type TransportServerOptions,
} from '../transport/index.js';
import { checkAddressList, checkResumeTimeout, coded } from './errors.js';
import { adopt, bindKeys, type MptlsSocket } from './session.js';
import { SERVER_DEFAULTS } from '../core/config.js';
import { countConnections, type ConnectionCounting } from './connections.js';
import { serveFromPrimary, workerIdentity } from './cluster.js';
import { serverFamilies, withMetrics, type ServerMptcpApi } from './metrics.js';

export type { ServerMptcpInfo } from '../transport/index.js';
export { metricsContentType, type MetricsOptions, type ServerMptcpApi } from './metrics.js';

export interface MptcpServerOptions extends TransportServerOptions {
  /** Linux kernel MPTCP listener too (kernel bridge). */
  kernel?: boolean;
  /**
   * A multipath connection must finish its whole handshake (MP_CAPABLE and
   * TLS) within this, from its MP_CAPABLE SYN, or it is closed and counted
   * `HandshakeTimeout` (default 10 000 ms; 0 = none). Plain TLS clients keep
   * node:tls's own `handshakeTimeout` (default 120 000 ms).
   */
  handshakeTimeoutMs?: number;
  /**
   * Accept TLS 1.2 sessions without the extended master secret or with a
   * static-RSA key exchange for external keys (default false: such a client
   * is refused, `ERR_MPTLS_TLS_BINDING`). docs/SECURITY.md says why.
   */
  allowWeakTls12?: boolean;
}

/** Default of `mptcp.handshakeTimeoutMs`. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = SERVER_DEFAULTS.handshakeTimeoutMs;

export interface ServerOptions extends tls.TlsOptions {
  mptcp?: MptcpServerOptions;
}

type TlsConnectionListener = (this: tls.Server, socket: net.Socket) => void;

/**
 * The listener overloads an mptls server adds: its sockets are mptls
 * sockets (`.mptcp`), in 'secureConnection' and in the `createServer`
 * listener. Put before the node type in `MptlsServer`, so an untyped
 * `s => s.mptcp` finds them first.
 */
export interface MptlsServerEvents<Self> {
  on(event: 'secureConnection', listener: (socket: MptlsSocket) => void): Self;
  once(event: 'secureConnection', listener: (socket: MptlsSocket) => void): Self;
  prependListener(event: 'secureConnection', listener: (socket: MptlsSocket) => void): Self;
  addListener(event: 'secureConnection', listener: (socket: MptlsSocket) => void): Self;
  on(event: 'tlsClientError', listener: (err: Error, socket: MptlsSocket) => void): Self;
  once(event: 'tlsClientError', listener: (err: Error, socket: MptlsSocket) => void): Self;
  /** Once per connection: a plain client's TCP socket, or a multipath connection's stream. */
  on(event: 'connection', listener: (socket: net.Socket) => void): Self;
  /** A new connection refused by `maxConnections`, as node:net reports it. */
  on(event: 'drop', listener: (data?: net.DropArgument) => void): Self;
}

/** What mptls's `createServer` returns: a `tls.Server` (or `S`) with `.mptcp`, whose sockets are `MptlsSocket`s. */
export type MptlsServer<S extends tls.Server = tls.Server> = MptlsServerEvents<MptlsServer<S>> & S & { mptcp: ServerMptcpApi };

/**
 * Turns a freshly made tls.Server (or https.Server) into an mptls server.
 * @internal used by createServer and https.createServer
 */
export function enableMultipath<S extends tls.Server>(server: S, options: ServerOptions): MptlsServer<S> {
  // A worker of an mptls primary (cluster.ts): its tokens carry its id, its connections come from the primary.
  const worker = workerIdentity();
  const mp: MptcpServerOptions = worker ? { ...options.mptcp, workerId: worker.workerId, serverId: options.mptcp?.serverId ?? worker.serverId } : (options.mptcp ?? {});
  checkResumeTimeout(mp.resumeTimeoutMs);
  checkAddressList('announce', mp.announce);
  const tlsListener = server.listeners('connection')[0] as TlsConnectionListener | undefined;
  if (!tlsListener) throw coded(new TypeError('not a tls.Server: no connection listener to take over'), 'ERR_MPTLS_NOT_TLS_SERVER');
  server.removeListener('connection', tlsListener);
  const userspace = userspaceServer(mp);
  const kernel = mp.kernel ? kernelServer : undefined;
  let counting: ConnectionCounting | undefined;
  const handlers: ServerHandlers = {
    plain: (socket) => {
      tlsListener.call(server, socket);
      counting?.plain(socket);
    },
    connection: (c) => {
      counting?.opened(c.socket);
      serveMultipath(server, options, c);
    },
  };
  const before = new Set(server.listeners('connection'));
  const info = userspace.listen(server, handlers);
  // The transport's acceptor takes node's raw sockets; the application's
  // 'connection' listeners get one event per connection (connections.ts).
  const accept = server.listeners('connection').find((l) => !before.has(l)) as ((socket: net.Socket) => void) | undefined;
  if (accept) {
    server.removeListener('connection', accept);
    counting = countConnections(server, info.acceptor, (socket) => accept.call(server, socket));
  }
  // node:tls only reports a failed or timed-out handshake ('tlsClientError',
  // e.g. ERR_TLS_HANDSHAKE_TIMEOUT) and leaves the socket open: a client that
  // sends one byte and stalls would hold a descriptor for ever. After the
  // application's own listeners ran, close it.
  server.on('tlsClientError', (_err: Error, socket: tls.TLSSocket) => {
    setImmediate(() => {
      if (!socket.destroyed) socket.destroy();
    });
  });
  // With mptcp.kernel, listen(port…) listens on an IPPROTO_MPTCP socket; its
  // connections reach node:tls through the acceptor's plain path.
  kernel?.listen(server, handlers);
  // node:tls's own sockets get a `.mptcp` too: kernel MPTCP, or plain TLS saying so.
  server.prependListener('secureConnection', (s: tls.TLSSocket) => {
    if ((s as MptlsSocket).mptcp) return;
    const c: TransportConnection = kernel?.accepted?.(s) ?? userspace.accepted(s);
    const sInfo = adopt(s, c, () => s.destroy());
    try {
      bindKeys(s, c, sInfo, { allowWeakTls12: mp.allowWeakTls12 });
    } catch {
      // fingerprints only here: never a throw out of this handler
    }
  });
  const api = withMetrics(info);
  if (worker) serveFromPrimary(server, worker, () => serverFamilies(info));
  return Object.assign(server, { mptcp: api }) as unknown as MptlsServer<S>;
}

interface TlsSocketInternals {
  _releaseControl(): boolean;
  _handle: { verifyError(): (Error & { code?: string }) | null } | null;
  _controlReleased: boolean;
}

/** node:tls's tlsConnectionListener + onServerSocketSecure, for a transport connection mptls runs TLS over. */
function serveMultipath(server: tls.Server, options: ServerOptions, c: OpenedConnection): void {
  const shared = (server as unknown as { _sharedCreds?: tls.SecureContext })._sharedCreds;
  const secureContext = shared ?? tls.createSecureContext(options);
  const srv = server as unknown as {
    ALPNProtocols?: Buffer;
    ALPNCallback?: unknown;
    requestCert?: boolean;
    rejectUnauthorized?: boolean;
    pauseOnConnect?: boolean;
  };
  const requestCert = srv.requestCert ?? !!options.requestCert;
  const rejectUnauthorized = srv.rejectUnauthorized ?? options.rejectUnauthorized !== false;
  const halfOpen = !!(server as unknown as { allowHalfOpen?: boolean }).allowHalfOpen;
  const socket = c.wrap(halfOpen, () => new tls.TLSSocket(c.socket, {
    isServer: true,
    server: server as tls.Server,
    secureContext,
    requestCert,
    rejectUnauthorized,
    // The server's own (converted) ALPN list: http2.createSecureServer sets
    // 'h2' on a copy of the options, never on ours.
    ALPNProtocols: srv.ALPNProtocols ?? options.ALPNProtocols,
    ALPNCallback: srv.ALPNCallback,
    // node:tls's default SNICallback (the contexts of server.addContext) is internal: the same, here.
    SNICallback: options.SNICallback ?? ((servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) => cb(null, contextFor(server, servername))),
    pauseOnConnect: srv.pauseOnConnect,
  } as tls.TLSSocketOptions)) as MptlsSocket;
  if (server.listenerCount('keylog') > 0) socket.on('keylog', (line: Buffer) => server.emit('keylog', line, socket));
  // The keys belong to the first handshake: no renegotiation on a multipath connection.
  const info = adopt(socket, c, () => socket.destroy());
  const internals = socket as unknown as TlsSocketInternals;
  const mp = options.mptcp ?? {};
  let tlsErrorEmitted = false;
  const clientError = (err: Error) => {
    if (!internals._controlReleased && !tlsErrorEmitted) {
      tlsErrorEmitted = true;
      server.emit('tlsClientError', err, socket);
    }
  };
  socket.on('_tlsError', clientError);
  const quiet = () => {}; // errors before control is released are reported through tlsClientError
  socket.on('error', quiet);
  // The whole handshake (MP_CAPABLE + TLS) within handshakeTimeoutMs of the SYN.
  const handshakeTimeout = mp.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const timer =
    handshakeTimeout > 0
      ? setTimeout(() => {
          c.keys.count('HandshakeTimeout');
          clientError(Object.assign(new Error('multipath TLS handshake timeout'), { code: 'ERR_TLS_HANDSHAKE_TIMEOUT' }));
          socket.destroy();
        }, handshakeTimeout)
      : undefined;
  timer?.unref();
  socket.once('close', () => clearTimeout(timer));
  // node:tls emits 'secure' again after a renegotiation: bind once, to the first.
  socket.once('secure', () => {
    let release: boolean;
    try {
      release = onSecure();
    } catch (err) {
      // Never out of an event handler: a failure here ends this connection only.
      socket.destroy(err as Error);
      return;
    }
    if (release) {
      socket.removeListener('error', quiet);
      // As node:tls's onServerSocketSecure: http2 waits for a 'secureConnect' while this is true.
      (socket as unknown as { secureConnecting: boolean }).secureConnecting = false;
      server.emit('secureConnection', socket); // the application's own exceptions are its own
    }
  });
  /** Binds the keys and checks the client; true when the socket goes to the application. */
  const onSecure = (): boolean => {
    clearTimeout(timer);
    const refused = bindKeys(socket, c, info, { allowWeakTls12: mp.allowWeakTls12 });
    if (refused) {
      clientError(refused);
      socket.destroy();
      return false;
    }
    if (requestCert) {
      const verifyError = internals._handle?.verifyError();
      if (verifyError) {
        socket.authorizationError = (verifyError.code ?? verifyError.message) as unknown as Error;
        if (rejectUnauthorized) {
          socket.destroy();
          return false;
        }
      } else {
        socket.authorized = true;
      }
    }
    void socket.remoteAddress; // remember the addresses while a subflow is up
    void socket.localAddress;
    return !socket.destroyed && internals._releaseControl();
  };
}

/** The context `server.addContext(pattern, …)` gave for `servername` (the last match, as node:tls), or undefined. */
function contextFor(server: tls.Server, servername: string): tls.SecureContext | undefined {
  const contexts = (server as unknown as { _contexts?: [RegExp, tls.SecureContext][] })._contexts ?? [];
  for (let i = contexts.length - 1; i >= 0; i--) if (contexts[i][0].test(servername)) return contexts[i][1];
  return undefined;
}

/** Like `tls.createServer`, plus `options.mptcp`. */
export function createServer(options: ServerOptions, listener?: (socket: MptlsSocket) => void): MptlsServer {
  const tlsOptions: tls.TlsOptions = { ...options };
  delete (tlsOptions as ServerOptions).mptcp;
  const server = tls.createServer(tlsOptions, listener as ((s: tls.TLSSocket) => void) | undefined);
  return enableMultipath(server, options);
}
