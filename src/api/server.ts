/**
 * `createServer()`: a real `tls.Server` (or `https.Server`) whose listening
 * port serves multipath clients and plain TLS clients alike. The server's
 * own 'connection' handling is replaced by the acceptor: plain clients go to
 * node:tls untouched; each multipath connection becomes a `tls.TLSSocket`
 * over a multipath stream, set up and reported exactly as node:tls does for
 * its own sockets ('secureConnection', 'tlsClientError', requestCert, ALPN,
 * SNI), with `.mptcp` added.
 */
import tls from 'node:tls';
import type net from 'node:net';
import { Endpoint } from '../core/endpoint.js';
import { ServerIdTokenAllocator } from '../core/token.js';
import type { ConnectionLimits, KeyMode } from '../core/types.js';
import { randomBytes } from '../crypto/random.js';
import { Acceptor } from '../transport/userspace/acceptor.js';
import { now, type MultipathDriver } from '../transport/userspace/driver.js';
import { MultipathStream } from '../transport/userspace/stream.js';
import { exportMptcpKeys, keyFingerprints } from '../tls/keys.js';
import { MptlsTlsError, refuseRenegotiation, weakBindingReason } from '../tls/binding.js';
import { exposeAddresses, FallbackInfo, UserspaceInfo, type MptcpSocketInfo } from './info.js';
import { tcpProbe, type MptlsSocket } from './client.js';
// --- kernel bridge (mptcp.kernel) ---
import { KernelInfo, KERNEL_EXPORTER_TOKENS, useKernelListener, watchKernelSubflows } from '../transport/kernel/index.js';
// --- end kernel bridge ---

export interface MptcpServerOptions {
  /** Extra addresses announced (ADD_ADDR, authenticated) once keys are confirmed. */
  announce?: string[];
  /** Subflows per connection, the first included (default 8). */
  maxSubflows?: number;
  /** Linux kernel MPTCP listener too (kernel bridge). */
  kernel?: boolean;
  /** 0..255: put this id in the top 8 bits of every token (load balancers). */
  serverId?: number;
  /** Key modes accepted (default ['external']). */
  keyModes?: KeyMode[];
  limits?: Partial<ConnectionLimits>;
  /** Joins in progress across connections (default 1024; when full, the busiest source's oldest makes room). */
  maxPendingJoins?: number;
  /** Joins in progress from one source address (IPv4, or IPv6 /64) across connections (default 64). */
  maxPendingJoinsPerSource?: number;
  maxConnections?: number;
  /** New subflows must send their preamble within this (default 10 000 ms). */
  preambleTimeoutMs?: number;
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
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

export interface ServerOptions extends tls.TlsOptions {
  mptcp?: MptcpServerOptions;
}

/** What `server.mptcp` reports. */
export interface ServerMptcpInfo {
  readonly endpoint: Endpoint;
  readonly acceptor: Acceptor;
  counters(): ReturnType<Endpoint['counters']>;
  readonly connections: number;
}

type TlsConnectionListener = (this: tls.Server, socket: net.Socket) => void;

/**
 * Turns a freshly made tls.Server (or https.Server) into an mptls server.
 * @internal used by createServer and https.createServer
 */
export function enableMultipath<S extends tls.Server>(server: S, options: ServerOptions): S & { mptcp: ServerMptcpInfo } {
  const mp = options.mptcp ?? {};
  const random = randomBytes;
  const endpoint = new Endpoint({
    random,
    acceptModes: mp.keyModes ?? ['external'],
    tokenAllocator: mp.serverId !== undefined ? new ServerIdTokenAllocator(mp.serverId, random) : undefined,
    maxConnections: mp.maxConnections,
    maxPendingJoins: mp.maxPendingJoins,
    maxPendingJoinsPerSource: mp.maxPendingJoinsPerSource,
    server: {
      mss: 65000,
      announce: (mp.announce ?? []).map((address) => ({ address })),
      limits: { ...mp.limits, ...(mp.maxSubflows ? { maxSubflows: mp.maxSubflows } : {}) },
    },
  });
  const tlsListener = server.listeners('connection')[0] as TlsConnectionListener | undefined;
  if (!tlsListener) throw new Error('not a tls.Server: no connection listener to take over');
  server.removeListener('connection', tlsListener);
  let live = 0;
  const acceptor = new Acceptor(
    endpoint,
    {
      plain: (socket) => tlsListener.call(server, socket),
      connection: (driver) => {
        live++;
        driver.once('closed', () => live--);
        serveMultipath(server, options, driver);
      },
      refused: () => {},
    },
    { preambleTimeoutMs: mp.preambleTimeoutMs, driver: { probe: tcpProbe() } },
  );
  server.on('connection', (socket: net.Socket) => acceptor.handle(socket));
  // node:tls only reports a failed or timed-out handshake ('tlsClientError',
  // e.g. ERR_TLS_HANDSHAKE_TIMEOUT) and leaves the socket open: a client that
  // sends one byte and stalls would hold a descriptor for ever. After the
  // application's own listeners ran, close it.
  server.on('tlsClientError', (_err: Error, socket: tls.TLSSocket) => {
    setImmediate(() => {
      if (!socket.destroyed) socket.destroy();
    });
  });
  // --- kernel bridge: with mptcp.kernel, listen(port…) listens on an IPPROTO_MPTCP socket.
  // Kernel-MPTCP clients arrive as MPTCP sockets, everyone else (plain TLS, userspace
  // multipath) as plain TCP ones; all go through the acceptor above. ---
  if (mp.kernel) useKernelListener(server);
  // Plain clients get a `.mptcp` too, saying so.
  server.prependListener('secureConnection', (s: tls.TLSSocket) => {
    const m = s as MptlsSocket;
    if (m.mptcp) return;
    // --- kernel bridge: a kernel-MPTCP client reports mode 'kernel' (same exporter context as connect()) ---
    const k = mp.kernel ? KernelInfo.forAccepted(s) : undefined;
    if (k) {
      const { tokenA, tokenB } = KERNEL_EXPORTER_TOKENS;
      try {
        k.setKeyFingerprints(keyFingerprints(s, tokenA, tokenB, exportMptcpKeys(s, tokenA, tokenB)));
      } catch {
        // the socket went away under us: no fingerprints, and never a throw out of this handler
      }
      m.mptcp = k;
      watchKernelSubflows(s, k);
      return;
    }
    // --- end kernel bridge ---
    m.mptcp = new FallbackInfo('the client did not offer multipath');
  });
  const info: ServerMptcpInfo = {
    endpoint,
    acceptor,
    counters: () => endpoint.counters(),
    get connections() {
      return live;
    },
  };
  return Object.assign(server, { mptcp: info });
}

interface TlsSocketInternals {
  _releaseControl(): boolean;
  _handle: { verifyError(): (Error & { code?: string }) | null } | null;
  _controlReleased: boolean;
}

/** node:tls's tlsConnectionListener + onServerSocketSecure, for a multipath stream. */
function serveMultipath(server: tls.Server, options: ServerOptions, driver: MultipathDriver): void {
  const stream = new MultipathStream(driver);
  const shared = (server as unknown as { _sharedCreds?: tls.SecureContext })._sharedCreds;
  const secureContext = shared ?? tls.createSecureContext(options);
  const srv = server as unknown as { ALPNProtocols?: Buffer; requestCert?: boolean; rejectUnauthorized?: boolean };
  const requestCert = srv.requestCert ?? !!options.requestCert;
  const rejectUnauthorized = srv.rejectUnauthorized ?? options.rejectUnauthorized !== false;
  const halfOpen = !!(server as unknown as { allowHalfOpen?: boolean }).allowHalfOpen;
  const socket = stream.wrapWithHalfOpen(halfOpen, () => new tls.TLSSocket(stream, {
    isServer: true,
    server: server as tls.Server,
    secureContext,
    requestCert,
    rejectUnauthorized,
    ALPNProtocols: options.ALPNProtocols,
    SNICallback: options.SNICallback,
  } as tls.TLSSocketOptions)) as MptlsSocket;
  const info = new UserspaceInfo(driver);
  (socket as { mptcp: MptcpSocketInfo }).mptcp = info;
  exposeAddresses(socket, () => stream.addressSocket());
  const internals = socket as unknown as TlsSocketInternals;
  const mp = options.mptcp ?? {};
  const conn = driver.conn;
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
          conn.mib.inc('HandshakeTimeout');
          clientError(Object.assign(new Error('multipath TLS handshake timeout'), { code: 'ERR_TLS_HANDSHAKE_TIMEOUT' }));
          socket.destroy();
        }, handshakeTimeout)
      : undefined;
  timer?.unref();
  socket.once('close', () => clearTimeout(timer));
  // The keys belong to the first handshake: no renegotiation on a multipath connection.
  refuseRenegotiation(socket, () => {
    conn.mib.inc('TlsRenegotiationRefused');
    socket.destroy();
  });
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
      server.emit('secureConnection', socket); // the application's own exceptions are its own
    }
  });
  /** Binds the keys and checks the client; true when the socket goes to the application. */
  const onSecure = (): boolean => {
    clearTimeout(timer);
    if (conn.state === 'established' && conn.mode === 'external') {
      const weak = weakBindingReason(socket, { allowWeakTls12: mp.allowWeakTls12 });
      if (weak) {
        conn.mib.inc('TlsBindingRefused');
        clientError(new MptlsTlsError('ERR_MPTLS_TLS_BINDING', `refused: ${weak}`));
        socket.destroy();
        return false;
      }
      // keyA belongs to the initiator (the client), keyB to us.
      const keys = exportMptcpKeys(socket, conn.remoteToken, conn.localToken);
      info.setKeyFingerprints(keyFingerprints(socket, conn.remoteToken, conn.localToken, keys));
      conn.installKeys(keys.keyA, keys.keyB, now());
      driver.pump();
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
  const reported = new Set<number>();
  driver.on('subflow', () => {
    for (const s of info.subflows()) {
      if (s.state === 'established' && !reported.has(s.id)) {
        reported.add(s.id);
        socket.emit('subflow', s);
      }
    }
  });
}

/** Like `tls.createServer`, plus `options.mptcp`. */
export function createServer(options: ServerOptions, listener?: (socket: MptlsSocket) => void): tls.Server & { mptcp: ServerMptcpInfo } {
  const tlsOptions: tls.TlsOptions = { ...options };
  delete (tlsOptions as ServerOptions).mptcp;
  const server = tls.createServer(tlsOptions, listener as ((s: tls.TLSSocket) => void) | undefined);
  return enableMultipath(server, options);
}
