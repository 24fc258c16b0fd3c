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
import { exportMptcpKeys } from '../tls/keys.js';
import { exposeAddresses, FallbackInfo, UserspaceInfo, type MptcpSocketInfo } from './info.js';
import { tcpProbe, type MptlsSocket } from './client.js';
// --- kernel bridge (mptcp.kernel) ---
import { keyFingerprint } from '../tls/keys.js';
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
  /** Joins in progress across connections (default 1024). */
  maxPendingJoins?: number;
  maxConnections?: number;
  /** New subflows must send their preamble within this (default 10 000 ms). */
  preambleTimeoutMs?: number;
}

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
      const keys = exportMptcpKeys(s, KERNEL_EXPORTER_TOKENS.tokenA, KERNEL_EXPORTER_TOKENS.tokenB);
      k.setKeyFingerprints({ keyA: keyFingerprint(keys.keyA), keyB: keyFingerprint(keys.keyB) });
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
  const handshakeTimeout = options.handshakeTimeout ?? 120_000;
  const timer = handshakeTimeout > 0 ? setTimeout(() => socket.destroy(new Error('TLS handshake timeout')), handshakeTimeout) : undefined;
  timer?.unref();
  let tlsErrorEmitted = false;
  socket.on('_tlsError', (err: Error) => {
    if (!internals._controlReleased && !tlsErrorEmitted) {
      tlsErrorEmitted = true;
      server.emit('tlsClientError', err, socket);
    }
  });
  const quiet = () => {}; // errors before control is released are reported through tlsClientError
  socket.on('error', quiet);
  socket.on('secure', () => {
    if (timer) clearTimeout(timer);
    const conn = driver.conn;
    if (conn.state === 'established' && conn.mode === 'external') {
      // keyA belongs to the initiator (the client), keyB to us.
      const keys = exportMptcpKeys(socket, conn.remoteToken, conn.localToken);
      info.setKeys(keys.keyA, keys.keyB);
      conn.installKeys(keys.keyA, keys.keyB, now());
      driver.pump();
    }
    if (requestCert) {
      const verifyError = internals._handle?.verifyError();
      if (verifyError) {
        socket.authorizationError = (verifyError.code ?? verifyError.message) as unknown as Error;
        if (rejectUnauthorized) {
          socket.destroy();
          return;
        }
      } else {
        socket.authorized = true;
      }
    }
    void socket.remoteAddress; // remember the addresses while a subflow is up
    void socket.localAddress;
    if (!socket.destroyed && internals._releaseControl()) {
      socket.removeListener('error', quiet);
      server.emit('secureConnection', socket);
    }
  });
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
