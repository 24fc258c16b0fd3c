/**
 * `createTunnel()`: the client side of "any TCP application over TLS-bound
 * multipath". Local listeners (`forwards`, ssh's -L: a fixed target;
 * `socks`, ssh's -D: a SOCKS5 server whose clients name the target) accept
 * TCP connections; each one rides its own new multipath connection
 * (`connect()`, half-open) to an HTTP CONNECT proxy (`mptls proxy`), which
 * connects on to the target. The pieces, one concern each, are in
 * src/api/tunnel/: target.ts (target checks, authorities), connect-head.ts
 * (the CONNECT request, the response head parser), upstream.ts (one
 * multipath connection and its CONNECT), socks5.ts (the SOCKS5 parser and
 * replies), socks-session.ts (a SOCKS5 negotiation on a socket), splice.ts
 * (the pre-tunnel buffer and the bidirectional splice).
 *
 * Per tunnel the client holds, in JS, at most `maxEarlyDataBytes` (64 KiB)
 * plus one read before the proxy's 200, and afterwards what the two sockets'
 * own stream buffers hold (a write that returns false pauses the other side).
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type tls from 'node:tls';
import type { MptcpClientOptions, MptlsSocket } from './client.js';
import { coded } from './errors.js';
import { normalizePin } from '../tls/pin.js';
import { isBearerToken } from './tunnel/connect-head.js';
import { DEFAULT_SOCKS_TIMEOUT_MS, negotiate, replyAndClose, type SocksOutcome } from './tunnel/socks-session.js';
import { SocksCommand, socksReply, SocksReply, socksReplyForStatus } from './tunnel/socks5.js';
import { abort, DEFAULT_EARLY_DATA_LIMIT, EarlyBuffer, heldBytes, splice } from './tunnel/splice.js';
import { isTargetPort, targetHostProblem, type TunnelTarget } from './tunnel/target.js';
import { openUpstream, TunnelError, type PendingUpstream, type TunnelErrorKind, type Upstream } from './tunnel/upstream.js';

export { TunnelError, type TunnelErrorKind } from './tunnel/upstream.js';
export type { TunnelTarget } from './tunnel/target.js';
export { Socks5Parser, SocksError, SocksReply, type SocksErrorCode, type SocksEvent, type SocksRequest } from './tunnel/socks5.js';
export { ResponseHeadParser, ResponseHeadError, connectRequest, MAX_RESPONSE_HEAD } from './tunnel/connect-head.js';

/** Default of `connectTimeoutMs`: 10 s for TCP, MP_CAPABLE, TLS and the proxy's answer. */
export const DEFAULT_TUNNEL_CONNECT_TIMEOUT_MS = 10_000;
/** Default of `maxConnections`: local connections open at once (each is a multipath connection). */
export const DEFAULT_TUNNEL_MAX_CONNECTIONS = 1024;
export { DEFAULT_EARLY_DATA_LIMIT, DEFAULT_SOCKS_TIMEOUT_MS };

/** `-L [bind:]port:host:hostport`: connections to bind:port go to `target`. */
export interface TunnelForward {
  /** Default 127.0.0.1. */
  bind?: string;
  /** 0: any free port (`addresses()` says which). */
  port: number;
  target: TunnelTarget;
}

/** `-D [bind:]port`: a SOCKS5 server (CONNECT, no authentication); each client names its target. */
export interface TunnelSocks {
  /** Default 127.0.0.1: the SOCKS server authenticates nobody. */
  bind?: string;
  port: number;
}

export interface TunnelOptions {
  /** The CONNECT proxy (`mptls proxy`). */
  server: { host: string; port: number };
  /** Trust these CA certificates for the proxy (default: node's). */
  ca?: tls.ConnectionOptions['ca'];
  /** The proxy key's SPKI SHA-256 (sha256//BASE64); checked on every connection, also with `rejectUnauthorized: false`. */
  pin?: string | string[];
  /** Default true. With a `pin`, false means "the pin alone": no chain or name check. */
  rejectUnauthorized?: boolean;
  /** A client certificate and its key (PEM), for a proxy that asks for one. */
  cert?: tls.ConnectionOptions['cert'];
  key?: tls.ConnectionOptions['key'];
  passphrase?: string;
  /** SNI and the name checked in the certificate (default: `server.host` when it is a name). */
  servername?: string;
  /** Passed to `connect()` for every tunnel's multipath connection. */
  mptcp?: MptcpClientOptions;
  /** Sent as `Proxy-Authorization: Bearer TOKEN` (RFC 6750 token68 characters only). */
  token?: string;
  forwards?: TunnelForward[];
  socks?: TunnelSocks[];
  /** TCP, MP_CAPABLE, TLS and the proxy's answer within this (default 10 s). */
  connectTimeoutMs?: number;
  /** A SOCKS client's greeting and request within this (default 10 s). */
  socksTimeoutMs?: number;
  /** Bytes held per tunnel before the proxy's 200 (default 64 KiB; then the local socket is paused). */
  maxEarlyDataBytes?: number;
  /** Local connections open at once (default 1024); more are closed at once (counted `failed`). */
  maxConnections?: number;
}

export type TunnelListenerKind = 'forward' | 'socks';

/** A listener of the tunnel: where it listens, and (forwards) where it goes. */
export interface TunnelListenerAddress {
  kind: TunnelListenerKind;
  address: string;
  port: number;
  family: string;
  target?: TunnelTarget;
}

export interface TunnelPeer {
  address: string;
  port: number;
}

export interface TunnelStats {
  /** Local TCP connections accepted (forwards and SOCKS). */
  accepted: number;
  /** Local connections open now (negotiating, connecting or tunneled). */
  open: number;
  /** Tunnels made (the proxy answered 2xx). */
  established: number;
  /** Tunnels the proxy connection or the proxy refused (each an 'error-connection'), and connections over `maxConnections`. */
  failed: number;
  /** Bytes from local clients into tunnels. */
  bytesUp: number;
  /** Bytes from tunnels to local clients. */
  bytesDown: number;
  socks: {
    /** Well-formed SOCKS requests (any command). */
    requests: number;
    /** Answered with a failure: no acceptable method (05 FF), a command other than CONNECT (07), a failed tunnel. */
    refused: number;
    /** Malformed greetings or requests, and clients that sent nothing in time (`timeouts` of them). */
    badRequest: number;
    timeouts: number;
  };
}

/** 'tunnel': a tunnel is up (the proxy said 2xx). */
export interface TunnelEvent {
  listener: TunnelListenerKind;
  local: TunnelPeer;
  target: TunnelTarget;
  /** The multipath connection that carries it. */
  socket: MptlsSocket;
  /** The local client's socket. */
  localSocket: net.Socket;
}

/** 'tunnel-close': a tunnel ended (both sockets closed). */
export interface TunnelCloseEvent {
  listener: TunnelListenerKind;
  local: TunnelPeer;
  target: TunnelTarget;
  mode: string;
  /** Distinct subflows the multipath connection established over its life (1 for plain TLS). */
  subflows: number;
  bytesUp: number;
  bytesDown: number;
  durationMs: number;
  /** The first error on either socket, if any. */
  error?: string;
}

/**
 * 'error-connection': a local connection that got no tunnel. `kind`: a
 * `TunnelErrorKind` (the proxy connection or its answer: `status`), 'socks'
 * (the client's SOCKS greeting or request: refused, malformed, timed out),
 * 'limit' (`maxConnections`).
 */
export interface TunnelFailureEvent {
  listener: TunnelListenerKind;
  kind: TunnelErrorKind | 'socks' | 'limit';
  reason: string;
  local: TunnelPeer;
  target?: TunnelTarget;
  status?: number;
}

export interface TunnelEventMap {
  tunnel: [TunnelEvent];
  'tunnel-close': [TunnelCloseEvent];
  'error-connection': [TunnelFailureEvent];
  /** A listener's own error after `listen()` (node:net's, e.g. EMFILE); only emitted with a listener. */
  error: [Error];
}

/** One local connection, from accept to close. */
interface Conn {
  listener: TunnelListenerKind;
  local: net.Socket;
  peer: TunnelPeer;
  target?: TunnelTarget;
  state: 'socks' | 'connecting' | 'open' | 'closed';
  early: EarlyBuffer;
  upstream?: PendingUpstream;
  remote?: MptlsSocket;
  started: number;
  bytesUp: number;
  bytesDown: number;
  subflows: Set<number>;
  closed: Promise<void>;
  markClosed: () => void;
}

/** What `connections()` reports about one local connection. */
export interface TunnelConnectionInfo {
  listener: TunnelListenerKind;
  local: TunnelPeer;
  target?: TunnelTarget;
  state: 'socks' | 'connecting' | 'open';
  bytesUp: number;
  bytesDown: number;
  /** Bytes the tunnel holds for it now: the pre-tunnel buffer plus both sockets' unread and unsent bytes. */
  buffered: number;
}

interface ListenerSpec {
  kind: TunnelListenerKind;
  bind: string;
  port: number;
  target?: TunnelTarget;
}

function invalid(message: string): Error {
  return coded(new TypeError(message), 'ERR_MPTLS_INVALID_OPTION');
}

function checkPort(port: unknown, what: string, min: number): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < min || port > 65535) {
    throw coded(new RangeError(`${what}: bad port ${String(port)}`), 'ERR_MPTLS_INVALID_PORT');
  }
  return port;
}

function checkBind(bind: string | undefined, what: string): string {
  const b = bind ?? '127.0.0.1';
  if (!net.isIP(b) && b !== 'localhost') throw invalid(`${what}: bind must be an IP address, got ${JSON.stringify(b)}`);
  return b;
}

function checkTarget(t: TunnelTarget | undefined, what: string): TunnelTarget {
  if (!t || typeof t !== 'object') throw invalid(`${what}: a target { host, port } is required`);
  const problem = targetHostProblem(t.host);
  if (problem) throw invalid(`${what}: ${problem}`);
  if (!isTargetPort(t.port)) throw coded(new RangeError(`${what}: bad target port ${String(t.port)}`), 'ERR_MPTLS_INVALID_PORT');
  return { host: t.host, port: t.port };
}

function positive(v: number | undefined, what: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw coded(new RangeError(`${what} must be a number > 0, got ${String(v)}`), 'ERR_MPTLS_INVALID_OPTION');
  return v;
}

/** The SOCKS reply for a tunnel that failed. */
function socksReplyFor(e: TunnelError): number {
  return e.kind === 'refused' && e.status !== undefined ? socksReplyForStatus(e.status) : SocksReply.generalFailure;
}

export class Tunnel extends EventEmitter<TunnelEventMap> {
  readonly stats: TunnelStats = { accepted: 0, open: 0, established: 0, failed: 0, bytesUp: 0, bytesDown: 0, socks: { requests: 0, refused: 0, badRequest: 0, timeouts: 0 } };
  private readonly specs: ListenerSpec[];
  private readonly servers: { spec: ListenerSpec; server: net.Server }[] = [];
  private readonly conns = new Set<Conn>();
  private readonly connectTimeoutMs: number;
  private readonly socksTimeoutMs: number;
  private readonly earlyLimit: number;
  private readonly maxConnections: number;
  private closing: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private listening: Promise<void> | undefined;

  constructor(private readonly options: TunnelOptions) {
    super();
    const o = options;
    if (!o || typeof o !== 'object' || !o.server) throw invalid('createTunnel: options.server { host, port } is required');
    if (typeof o.server.host !== 'string' || o.server.host === '') throw invalid('createTunnel: server.host must be a host name or an IP address');
    checkPort(o.server.port, 'server', 1);
    if (o.token !== undefined && (typeof o.token !== 'string' || !isBearerToken(o.token))) throw invalid('createTunnel: token must be a bearer token (RFC 6750 token68: letters, digits, -._~+/ and trailing =)');
    if (o.pin !== undefined) for (const p of typeof o.pin === 'string' ? o.pin.split(';').filter((x) => x.trim()) : o.pin) normalizePin(p);
    this.connectTimeoutMs = positive(o.connectTimeoutMs, 'connectTimeoutMs', DEFAULT_TUNNEL_CONNECT_TIMEOUT_MS);
    this.socksTimeoutMs = positive(o.socksTimeoutMs, 'socksTimeoutMs', DEFAULT_SOCKS_TIMEOUT_MS);
    this.earlyLimit = positive(o.maxEarlyDataBytes, 'maxEarlyDataBytes', DEFAULT_EARLY_DATA_LIMIT);
    this.maxConnections = positive(o.maxConnections, 'maxConnections', DEFAULT_TUNNEL_MAX_CONNECTIONS);
    this.specs = [
      ...(o.forwards ?? []).map((f, i): ListenerSpec => ({ kind: 'forward', bind: checkBind(f.bind, `forwards[${i}]`), port: checkPort(f.port, `forwards[${i}]`, 0), target: checkTarget(f.target, `forwards[${i}]`) })),
      ...(o.socks ?? []).map((s, i): ListenerSpec => ({ kind: 'socks', bind: checkBind(s.bind, `socks[${i}]`), port: checkPort(s.port, `socks[${i}]`, 0) })),
    ];
    if (this.specs.length === 0) throw invalid('createTunnel: at least one of forwards or socks is required');
  }

  /** Starts every listener; resolves when all are up (rejects, with none left open, when one cannot listen). */
  listen(): Promise<void> {
    this.listening ??= this.startListeners();
    return this.listening;
  }

  private async startListeners(): Promise<void> {
    try {
      for (const spec of this.specs) {
        if (this.closing) throw new Error('the tunnel was closed before it listened');
        const server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(spec, socket));
        this.servers.push({ spec, server });
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(spec.port, spec.bind, () => {
            server.removeListener('error', reject);
            resolve();
          });
        });
        server.on('error', (e) => {
          if (this.listenerCount('error') > 0) this.emit('error', e);
        });
      }
    } catch (e) {
      await this.shutdown();
      throw e;
    }
  }

  /** Where each listener listens, in the order of `forwards` then `socks` (after `listen()`). */
  addresses(): TunnelListenerAddress[] {
    const out: TunnelListenerAddress[] = [];
    for (const { spec, server } of this.servers) {
      const a = server.address();
      if (!a || typeof a === 'string') continue;
      out.push({ kind: spec.kind, address: a.address, port: a.port, family: a.family, ...(spec.target ? { target: { ...spec.target } } : {}) });
    }
    return out;
  }

  /** The local connections open now. */
  connections(): TunnelConnectionInfo[] {
    return [...this.conns].map((c) => ({
      listener: c.listener,
      local: { ...c.peer },
      ...(c.target ? { target: { ...c.target } } : {}),
      state: c.state as TunnelConnectionInfo['state'],
      bytesUp: c.bytesUp,
      bytesDown: c.bytesDown,
      buffered: c.early.length + heldBytes(c.local) + (c.remote ? heldBytes(c.remote) : 0),
    }));
  }

  /** Stops listening and ends every connection (local sockets and their multipath connections); resolves when all are closed. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // A listen() under way first runs to its end (it stops at the next listener), so that no listener is left behind.
      await this.listening?.catch(() => {});
      await this.shutdown();
    })();
    return this.closing;
  }

  /** Closes the listeners and every connection (once). */
  private shutdown(): Promise<void> {
    this.stopping ??= (async () => {
      const closed = this.servers.map(({ server }) => new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve())));
      for (const c of this.conns) this.destroy(c);
      await Promise.all([...closed, ...[...this.conns].map((c) => c.closed)]);
    })();
    return this.stopping;
  }

  /** Ends `c` at once: a tunnel's local socket with a RST (cut short, never a clean end). */
  private destroy(c: Conn): void {
    // The local socket first: whatever the remote's teardown emits must not become a FIN before the RST.
    if (c.state === 'open' || c.state === 'connecting') abort(c.local);
    else c.local.destroy();
    c.upstream?.abort();
    c.remote?.destroy();
  }

  private accept(spec: ListenerSpec, local: net.Socket): void {
    this.stats.accepted++;
    const peer = { address: local.remoteAddress ?? '?', port: local.remotePort ?? 0 };
    local.on('error', () => {}); // reported through the close that follows
    if (this.stopping || this.conns.size >= this.maxConnections) {
      this.stats.failed++;
      local.destroy();
      this.emit('error-connection', { listener: spec.kind, kind: 'limit', reason: this.stopping ? 'the tunnel is closing' : `${this.maxConnections} connections open already (maxConnections)`, local: peer, ...(spec.target ? { target: spec.target } : {}) });
      return;
    }
    let markClosed!: () => void;
    const closed = new Promise<void>((r) => (markClosed = r));
    const c: Conn = {
      listener: spec.kind,
      local,
      peer,
      target: spec.target,
      state: spec.kind === 'socks' ? 'socks' : 'connecting',
      early: new EarlyBuffer(this.earlyLimit),
      started: performance.now(),
      bytesUp: 0,
      bytesDown: 0,
      subflows: new Set(),
      closed,
      markClosed,
    };
    this.conns.add(c);
    this.stats.open++;
    local.setNoDelay(true);
    // Until the splice owns the sockets: the local side going away ends everything.
    local.once('close', () => {
      if (c.state === 'open') return;
      c.upstream?.abort();
      this.finish(c);
    });
    if (spec.kind === 'forward') this.connectUpstream(c, spec.target!);
    else negotiate(local, this.socksTimeoutMs, (o) => this.onSocks(c, o));
  }

  private onSocks(c: Conn, o: SocksOutcome): void {
    const s = this.stats.socks;
    const fail = (reason: string) => this.emit('error-connection', { listener: 'socks', kind: 'socks', reason, local: c.peer, ...(c.target ? { target: c.target } : {}) });
    switch (o.kind) {
      case 'closed':
        return;
      case 'timeout':
        s.badRequest++;
        s.timeouts++;
        fail(`no complete SOCKS5 request within ${this.socksTimeoutMs} ms (${o.received} bytes received)`);
        return;
      case 'bad-request':
        s.badRequest++;
        fail(`bad SOCKS5 request: ${o.error.message}`);
        return;
      case 'no-acceptable-method':
        s.refused++;
        fail(`refused: the client offers no method this server accepts (offered ${o.methods.map((m) => `0x${m.toString(16).padStart(2, '0')}`).join(' ')}; only 0x00, no authentication)`);
        return;
      case 'request': {
        s.requests++;
        const { request } = o;
        c.target = { host: request.host, port: request.port };
        if (request.command !== SocksCommand.connect) {
          s.refused++;
          replyAndClose(c.local, socksReply(SocksReply.commandNotSupported));
          const name = request.command === SocksCommand.bind ? 'BIND' : request.command === SocksCommand.udpAssociate ? 'UDP ASSOCIATE' : `command 0x${request.command.toString(16).padStart(2, '0')}`;
          fail(`refused: ${name} is not supported (CONNECT only)`);
          return;
        }
        c.early.add(o.rest);
        c.state = 'connecting';
        this.connectUpstream(c, c.target);
        return;
      }
    }
  }

  private connectUpstream(c: Conn, target: TunnelTarget): void {
    const o = this.options;
    c.early.attach(c.local);
    const tlsOptions: tls.ConnectionOptions = {};
    if (o.ca !== undefined) tlsOptions.ca = o.ca;
    if (o.cert !== undefined) tlsOptions.cert = o.cert;
    if (o.key !== undefined) tlsOptions.key = o.key;
    if (o.passphrase !== undefined) tlsOptions.passphrase = o.passphrase;
    if (o.servername !== undefined) tlsOptions.servername = o.servername;
    if (o.rejectUnauthorized !== undefined) tlsOptions.rejectUnauthorized = o.rejectUnauthorized;
    c.upstream = openUpstream(
      { server: o.server, tls: tlsOptions, pin: o.pin, mptcp: o.mptcp, token: o.token, connectTimeoutMs: this.connectTimeoutMs },
      target,
      (err, up) => (err ? this.onFailed(c, target, err) : this.onUp(c, target, up!)),
    );
  }

  private onFailed(c: Conn, target: TunnelTarget, e: TunnelError): void {
    this.stats.failed++;
    if (c.listener === 'socks') {
      this.stats.socks.refused++;
      replyAndClose(c.local, socksReply(socksReplyFor(e)));
    } else {
      // A refused forward is reset, never a clean (and empty) end of stream the application could take for an answer.
      c.early.take();
      abort(c.local);
    }
    this.emit('error-connection', { listener: c.listener, kind: e.kind, reason: e.message, local: c.peer, target, ...(e.status !== undefined ? { status: e.status } : {}) });
  }

  private onUp(c: Conn, target: TunnelTarget, up: Upstream): void {
    const remote = up.socket;
    c.remote = remote;
    if (c.local.destroyed) {
      remote.destroy();
      return;
    }
    c.state = 'open';
    this.stats.established++;
    remote.setNoDelay(true);
    for (const sf of remote.mptcp?.subflows() ?? []) if (sf.state === 'established') c.subflows.add(sf.id);
    remote.on('subflow', (sf) => c.subflows.add(sf.id));
    if (c.listener === 'socks') c.local.write(socksReply(SocksReply.succeeded));
    const early = { chunks: c.early.take(), ended: c.early.ended };
    const counters = {
      up: (n: number) => {
        c.bytesUp += n;
        this.stats.bytesUp += n;
      },
      down: (n: number) => {
        c.bytesDown += n;
        this.stats.bytesDown += n;
      },
    };
    splice(c.local, remote, early, up.rest, counters, (error) => {
      const mode = remote.mptcp?.mode ?? '?';
      this.finish(c);
      this.emit('tunnel-close', {
        listener: c.listener,
        local: c.peer,
        target,
        mode,
        subflows: Math.max(c.subflows.size, mode === 'fallback' ? 1 : 0),
        bytesUp: c.bytesUp,
        bytesDown: c.bytesDown,
        durationMs: performance.now() - c.started,
        ...(error ? { error: (error as Error & { code?: string }).code ? `${error.message} (${(error as Error & { code?: string }).code})` : error.message } : {}),
      });
    });
    this.emit('tunnel', { listener: c.listener, local: c.peer, target, socket: remote, localSocket: c.local });
    if (this.stopping) this.destroy(c);
  }

  private finish(c: Conn): void {
    if (c.state === 'closed') return;
    c.state = 'closed';
    this.conns.delete(c);
    this.stats.open--;
    c.markClosed();
  }
}

/** A tunnel with `options`' listeners; call `listen()`. Throws on bad options (`code` ERR_MPTLS_INVALID_OPTION / ERR_MPTLS_INVALID_PORT). */
export function createTunnel(options: TunnelOptions): Tunnel {
  return new Tunnel(options);
}
