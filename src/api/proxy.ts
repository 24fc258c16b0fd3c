/**
 * `createProxyServer()`: any TCP application over TLS-bound multipath. An
 * mptls server (`createServer`: multipath and plain TLS clients on one
 * port, fallback included) that speaks HTTP CONNECT (RFC 9110 §9.3.6) on
 * each TLS connection: `CONNECT host:port HTTP/1.1`, then, once allowed and
 * connected, `HTTP/1.1 200 Connection Established` and the raw bytes both
 * ways. One connection carries one tunnel.
 *
 * The order of the checks, each answered with a status line, a one-line
 * text body and the end of the connection:
 *
 * 1. the TLS handshake: with `clientCa`, a client certificate signed by it
 *    (node:tls's requestCert + rejectUnauthorized, for plain TLS and
 *    multipath clients alike): else no HTTP at all, the handshake fails;
 * 2. the request head (`proxy/request.ts`) within `requestTimeoutMs`
 *    (default 10 s: else 408): 400 (malformed), 405 (not CONNECT, with
 *    `Allow: CONNECT`), 431 (head over 8 KiB, more than 64 headers), 505;
 * 3. with `tokens`, `Proxy-Authorization: Bearer TOKEN` (missing or wrong:
 *    407 with `Proxy-Authenticate: Bearer realm="mptls"`; the list is
 *    compared in constant time): before the allow list, so that a client
 *    without a token learns nothing of it;
 * 4. the allow list (`proxy/allow.ts`: a name pattern matches the name as
 *    requested, an IP/CIDR pattern an IP literal or the address a name
 *    resolves to, which is then the one connected to): else 403;
 * 5. the target: resolved (`dns.lookup`, every address tried in turn) and
 *    connected within `connectTimeoutMs` (default 10 s: else 504); refused,
 *    unreachable, unresolvable: 502 with the reason.
 *
 * Bytes the client pipelined after its request are kept and are the
 * target's first bytes. The tunnel itself (`proxy/relay.ts`): backpressure
 * end to end (at most about 160 KiB held per direction, 320 KiB per
 * tunnel, besides the transport's own buffers), half-close passed through
 * both ways (the server's sockets are `allowHalfOpen`), closed after
 * `idleTimeoutMs` (default 5 min) without a byte either way, and an error on
 * either side closes the other.
 *
 * Without `clientCa` or `tokens`, anyone who reaches the port may open
 * tunnels to whatever the allow list names: use both (docs/SECURITY.md).
 */
import dns from 'node:dns';
import net from 'node:net';
import { coded } from './errors.js';
import { createServer, type MptlsServer, type ServerOptions } from './server.js';
import type { MptlsSocket } from './session.js';
import { AllowList, canonicalAddress, isUnspecified } from './proxy/allow.js';
import { bearerToken, tokenCheck, type TokenCheck } from './proxy/auth.js';
import { ProxyTunnel, type ProxyTunnelSummary } from './proxy/relay.js';
import { cleanReason, ESTABLISHED, refusal, type ProxyStatus } from './proxy/reply.js';
import { ConnectRequestParser, headerValues, type ConnectRequest, type ConnectTarget } from './proxy/request.js';

export { AllowList, parseAllowPattern, type AllowPattern, type AllowHost } from './proxy/allow.js';
export { isBearerToken, type TokenCheck } from './proxy/auth.js';
export { ProxyTunnel, type ProxyTunnelSummary, type ProxyTunnelCloseReason } from './proxy/relay.js';
export type { ProxyStatus } from './proxy/reply.js';
export { ConnectRequestParser, parseConnectRequest, parseAuthority, RequestError, MAX_HEAD_BYTES, MAX_HEADERS, type ConnectRequest, type ConnectTarget, type ParseStep } from './proxy/request.js';

/** Defaults of the proxy's timeouts. */
export const PROXY_DEFAULTS = {
  requestTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
  idleTimeoutMs: 300_000,
  closeGraceMs: 5_000,
  /** node:tls's `handshakeTimeout` for plain TLS clients, unless given (node's own default is 120 s). */
  handshakeTimeoutMs: 10_000,
} as const;

/** After a refusal, how long the connection may stay open for the client to read it and close. */
const LINGER_MS = 2_000;

/** How the proxy resolves a name: every address, in the resolver's order. */
export type ProxyLookup = (hostname: string) => Promise<ReadonlyArray<{ address: string; family: number }>>;

export interface ProxyOptions extends ServerOptions {
  /**
   * Where tunnels may go (required, non-empty): `HOST:PORT` patterns, HOST
   * an exact name, an IP, a CIDR block or `*`, PORT a number, a range
   * `FROM-TO` or `*` (proxy/allow.ts).
   */
  allow: readonly string[];
  /** Require a client certificate signed by this CA (PEM): requestCert + rejectUnauthorized. */
  clientCa?: string | Buffer | Array<string | Buffer>;
  /** Require `Proxy-Authorization: Bearer TOKEN`: one of these (constant-time comparison), or the function's yes. */
  tokens?: readonly string[] | TokenCheck;
  /** The whole request head within this of the TLS handshake's end (default 10 000; 0 = none): else 408. */
  requestTimeoutMs?: number;
  /** Resolving and connecting to the target within this (default 10 000; 0 = none): else 504. */
  connectTimeoutMs?: number;
  /** A tunnel without a byte either way for this long is closed (default 300 000; 0 = never). */
  idleTimeoutMs?: number;
  /** `close()`: tunnels still open this long after it are destroyed (default 5 000). */
  closeGraceMs?: number;
  /** The resolver (default `dns.promises.lookup(name, { all: true, verbatim: true })`). */
  lookup?: ProxyLookup;
}

/** The proxy's counters (`proxy.stats`). */
export interface ProxyStats {
  /** TLS connections that reached the request (one request each). */
  requests: number;
  /** Tunnels open now. */
  tunnels: number;
  /** Tunnels opened in all. */
  tunnelsTotal: number;
  /** 403: outside the allow list. */
  refusedAllow: number;
  /** 407: missing or wrong bearer token. */
  refusedAuth: number;
  /** 400, 405, 431, 505: malformed or unsupported requests. */
  badRequest: number;
  /** 408: no complete request in time. */
  timeouts: number;
  /** 502: the target refused, was unreachable or did not resolve. */
  upstreamErrors: number;
  /** 504: the target did not answer in time. */
  upstreamTimeouts: number;
  /** TLS handshakes that failed ('tlsClientError': a missing client certificate among them). */
  tlsErrors: number;
  /** Bytes from clients to targets. */
  bytesUp: number;
  /** Bytes from targets to clients. */
  bytesDown: number;
}

/** What the 'refused' event reports. */
export interface ProxyRefusal {
  status: Exclude<ProxyStatus, 200>;
  reason: string;
  /** The client's address ("HOST:PORT"). */
  client: string;
  /** The requested `host:port`, when the request got that far. */
  target?: string;
  socket: MptlsSocket;
}

/** The listener overloads a proxy adds (before the server's own). */
export interface ProxyServerEvents<Self> {
  /** A tunnel is open (after the 200); its 'close' reports a `ProxyTunnelSummary`. */
  on(event: 'tunnel', listener: (tunnel: ProxyTunnel) => void): Self;
  once(event: 'tunnel', listener: (tunnel: ProxyTunnel) => void): Self;
  /** A request was answered with an error status and its connection closed. */
  on(event: 'refused', listener: (refusal: ProxyRefusal) => void): Self;
  once(event: 'refused', listener: (refusal: ProxyRefusal) => void): Self;
}

/** What `createProxyServer` returns: an mptls server with `stats` and the open `tunnels`. */
export type ProxyServer = ProxyServerEvents<ProxyServer> &
  MptlsServer & {
    readonly stats: Readonly<ProxyStats>;
    readonly tunnels: ReadonlySet<ProxyTunnel>;
  };

function checkMs(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw coded(new RangeError(`${name} must be a finite number >= 0, got ${String(value)}`), 'ERR_MPTLS_INVALID_OPTION');
  }
  return value;
}

const defaultLookup: ProxyLookup = (hostname) => dns.promises.lookup(hostname, { all: true, verbatim: true });

/** "HOST:PORT" of the client: the socket's own address, or a multipath connection's first subflow's. */
function clientOf(socket: MptlsSocket): string {
  let address = socket.remoteAddress;
  let port = socket.remotePort;
  if (address === undefined) {
    try {
      const subflows = socket.mptcp?.subflows() ?? [];
      const first = subflows.find((s) => s.id === 0) ?? subflows[0];
      address = first?.remoteAddress;
      port = first?.remotePort;
    } catch {
      // no subflow left
    }
  }
  if (!address) return '?';
  return `${net.isIPv6(address) ? `[${address}]` : address}${port === undefined ? '' : `:${port}`}`;
}

const noop = () => {};

class ConnectTimeout extends Error {}

/**
 * An HTTP CONNECT proxy on an mptls server (see the file's comment). Takes
 * `createServer`'s options (key, cert, mptcp…) plus the proxy's; throws a
 * `TypeError`/`RangeError` with `code` `ERR_MPTLS_INVALID_OPTION` for a bad
 * or missing allow list, bad tokens or timeouts.
 */
export function createProxyServer(options: ProxyOptions): ProxyServer {
  if (typeof options !== 'object' || options === null) throw coded(new TypeError('createProxyServer needs options (key, cert, allow…)'), 'ERR_MPTLS_INVALID_OPTION');
  const allow = new AllowList(options.allow);
  const check = options.tokens === undefined ? undefined : tokenCheck(options.tokens);
  const requestTimeoutMs = checkMs('requestTimeoutMs', options.requestTimeoutMs, PROXY_DEFAULTS.requestTimeoutMs);
  const connectTimeoutMs = checkMs('connectTimeoutMs', options.connectTimeoutMs, PROXY_DEFAULTS.connectTimeoutMs);
  const idleTimeoutMs = checkMs('idleTimeoutMs', options.idleTimeoutMs, PROXY_DEFAULTS.idleTimeoutMs);
  const closeGraceMs = checkMs('closeGraceMs', options.closeGraceMs, PROXY_DEFAULTS.closeGraceMs);
  const lookup = options.lookup ?? defaultLookup;

  const serverOptions: ServerOptions = { handshakeTimeout: PROXY_DEFAULTS.handshakeTimeoutMs, ...options, allowHalfOpen: true };
  for (const k of ['allow', 'clientCa', 'tokens', 'requestTimeoutMs', 'connectTimeoutMs', 'idleTimeoutMs', 'closeGraceMs', 'lookup'] as const) {
    delete (serverOptions as Partial<ProxyOptions>)[k];
  }
  if (options.clientCa !== undefined) Object.assign(serverOptions, { ca: options.clientCa, requestCert: true, rejectUnauthorized: true });

  const stats: ProxyStats = {
    requests: 0,
    tunnels: 0,
    tunnelsTotal: 0,
    refusedAllow: 0,
    refusedAuth: 0,
    badRequest: 0,
    timeouts: 0,
    upstreamErrors: 0,
    upstreamTimeouts: 0,
    tlsErrors: 0,
    bytesUp: 0,
    bytesDown: 0,
  };
  const tunnels = new Set<ProxyTunnel>();
  /** Connections before their tunnel: what `close()` answers with 503. */
  const pending = new Set<(status: 503, reason: string) => void>();
  let closing = false;

  const server = createServer(serverOptions, (socket) => serve(socket)) as unknown as ProxyServer;
  server.on('tlsClientError', () => {
    stats.tlsErrors++;
  });

  const count = (status: Exclude<ProxyStatus, 200>) => {
    switch (status) {
      case 403:
        stats.refusedAllow++;
        break;
      case 407:
        stats.refusedAuth++;
        break;
      case 408:
        stats.timeouts++;
        break;
      case 502:
        stats.upstreamErrors++;
        break;
      case 504:
        stats.upstreamTimeouts++;
        break;
      case 503:
        break;
      default:
        stats.badRequest++;
    }
  };

  function serve(socket: MptlsSocket): void {
    socket.on('error', noop); // every error ends this connection only; the tunnel reports its own
    if (options.clientCa !== undefined && !socket.authorized) {
      socket.destroy(); // node:tls refuses these already; never serve one that slipped through
      return;
    }
    stats.requests++;
    const client = clientOf(socket);
    let phase: 'request' | 'connecting' | 'tunnel' | 'refused' | 'gone' = 'request';
    let target: ConnectTarget | undefined;
    let clientEnded = false;
    const attempt = new AbortController();
    const parser = new ConnectRequestParser();

    const refuse = (status: Exclude<ProxyStatus, 200>, reason: string, headers?: Record<string, string>) => {
      if (phase !== 'request' && phase !== 'connecting') return;
      phase = 'refused';
      leave();
      attempt.abort();
      count(status);
      const text = cleanReason(reason);
      server.emit('refused', { status, reason: text, client, ...(target ? { target: target.authority } : {}), socket } satisfies ProxyRefusal);
      if (socket.destroyed) return;
      socket.removeListener('data', onData);
      socket.on('data', noop); // what else the client sends is dropped while it reads the answer
      socket.resume();
      socket.end(refusal(status, text, headers));
      const linger = setTimeout(() => socket.destroy(), LINGER_MS);
      linger.unref();
      socket.once('close', () => clearTimeout(linger));
    };
    const onShutdown = (status: 503, reason: string) => refuse(status, reason);
    pending.add(onShutdown);
    const leave = () => {
      clearTimeout(timer);
      pending.delete(onShutdown);
      socket.removeListener('end', onEnd);
      socket.removeListener('close', onClose);
    };

    const timer = requestTimeoutMs > 0 ? setTimeout(() => refuse(408, `no complete request within ${requestTimeoutMs} ms`), requestTimeoutMs) : undefined;
    timer?.unref();

    const onData = (chunk: Buffer) => {
      const step = parser.push(chunk);
      if (step.kind === 'more') return;
      socket.removeListener('data', onData);
      if (step.kind === 'error') {
        refuse(step.error.status, step.error.message, step.error.status === 405 ? { Allow: 'CONNECT' } : undefined);
        return;
      }
      socket.pause();
      clearTimeout(timer);
      phase = 'connecting';
      target = step.request.target;
      void proceed(step.request, step.rest).catch((err: unknown) => refuse(502, `proxy error: ${(err as Error)?.message ?? String(err)}`));
    };
    const onEnd = () => {
      clientEnded = true;
      if (phase === 'request') refuse(400, 'the connection ended before a complete request');
    };
    const onClose = () => {
      // The client went away before its tunnel: nothing to answer, nothing to count.
      if (phase === 'request' || phase === 'connecting') phase = 'gone';
      leave();
      attempt.abort();
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onClose);
    if (closing) refuse(503, 'the proxy is shutting down');

    async function proceed(request: ConnectRequest, rest: Buffer): Promise<void> {
      const t = request.target;
      if (check) {
        const header = headerValues(request, 'proxy-authorization')[0];
        const token = bearerToken(header);
        if (token === undefined) {
          refuse(407, header === undefined ? 'proxy authentication required (Proxy-Authorization: Bearer TOKEN)' : 'malformed Proxy-Authorization (Bearer TOKEN expected)', { 'Proxy-Authenticate': 'Bearer realm="mptls"' });
          return;
        }
        let ok = false;
        try {
          ok = (await check(token, socket)) === true;
        } catch {
          ok = false;
        }
        if (phase !== 'connecting') return;
        if (!ok) {
          refuse(407, 'wrong bearer token', { 'Proxy-Authenticate': 'Bearer realm="mptls", error="invalid_token"' });
          return;
        }
      }
      const denied = `${t.authority} is not in the allow list`;
      let nameAllowed = false;
      if (t.kind !== 'name') {
        if (isUnspecified(t.host)) {
          refuse(403, `${t.authority}: the unspecified address is never a destination`);
          return;
        }
        if (!allow.allowsAddress(t.host, t.port)) {
          refuse(403, denied);
          return;
        }
      } else {
        nameAllowed = allow.allowsName(t.host, t.port);
        if (!nameAllowed && !allow.hasAddressPatterns(t.port)) {
          refuse(403, denied);
          return;
        }
      }
      // Resolve (names) and connect, within connectTimeoutMs.
      const deadline = connectTimeoutMs > 0 ? setTimeout(() => attempt.abort(new ConnectTimeout()), connectTimeoutMs) : undefined;
      deadline?.unref();
      let upstream: net.Socket;
      try {
        const candidates = await candidatesFor(t, nameAllowed);
        if (phase !== 'connecting') return;
        if (candidates.length === 0) {
          refuse(403, nameAllowed ? `${t.host} resolves to no usable address` : `${t.host} resolves to no address in the allow list`);
          return;
        }
        upstream = await connectFirst(candidates, t.port);
      } catch (err) {
        if (phase !== 'connecting') return;
        if (err instanceof ConnectTimeout) refuse(504, `connecting to ${t.authority} timed out after ${connectTimeoutMs} ms`);
        else refuse(502, `cannot reach ${t.authority}: ${(err as Error)?.message ?? String(err)}`);
        return;
      } finally {
        clearTimeout(deadline);
      }
      if (phase !== 'connecting' || socket.destroyed) {
        upstream.destroy();
        return;
      }
      open(request, upstream, rest);
    }

    /** The addresses to try, in order: an IP literal itself; a name's resolved addresses, all of them or those the list allows. */
    async function candidatesFor(t: ConnectTarget, nameAllowed: boolean): Promise<{ address: string; family: 4 | 6 }[]> {
      if (t.kind !== 'name') return [{ address: t.host, family: t.kind === 'ipv4' ? 4 : 6 }];
      let resolved: ReadonlyArray<{ address: string; family: number }>;
      try {
        resolved = await abortable(lookup(t.host), attempt.signal);
      } catch (err) {
        if (err instanceof ConnectTimeout) throw err;
        const code = (err as { code?: string })?.code;
        throw new Error(`cannot resolve ${t.host}${code ? ` (${code})` : ''}`);
      }
      const out: { address: string; family: 4 | 6 }[] = [];
      for (const r of resolved) {
        const a = canonicalAddress(String(r?.address));
        if (!a || isUnspecified(a.address)) continue;
        if (nameAllowed || allow.allowsAddress(a.address, t.port)) out.push(a);
      }
      return out;
    }

    /** Connects to each candidate in turn until one answers; the last error otherwise. */
    async function connectFirst(candidates: { address: string; family: 4 | 6 }[], port: number): Promise<net.Socket> {
      let last: unknown;
      for (const c of candidates) {
        try {
          return await connectOnce(c.address, c.family, port, attempt.signal);
        } catch (err) {
          if (err instanceof ConnectTimeout || attempt.signal.aborted) throw attempt.signal.reason instanceof ConnectTimeout ? attempt.signal.reason : err;
          last = err;
        }
      }
      throw last;
    }

    function open(request: ConnectRequest, upstream: net.Socket, rest: Buffer): void {
      phase = 'tunnel';
      leave();
      socket.write(ESTABLISHED);
      const tunnel = new ProxyTunnel(request.target, socket, upstream, {
        idleTimeoutMs,
        head: rest,
        clientEnded,
        onBytes: (direction, n) => {
          if (direction === 'up') stats.bytesUp += n;
          else stats.bytesDown += n;
        },
      });
      tunnels.add(tunnel);
      stats.tunnels++;
      stats.tunnelsTotal++;
      tunnel.once('close', (_summary: ProxyTunnelSummary) => {
        tunnels.delete(tunnel);
        stats.tunnels--;
      });
      socket.resume();
      if (closing) tunnel.shutdown(closeGraceMs);
      server.emit('tunnel', tunnel);
    }
  }

  // close(): stop listening; requests not yet tunnelled get 503; open tunnels are ended, destroyed after closeGraceMs.
  const baseClose = server.close.bind(server);
  Object.defineProperty(server, 'close', {
    configurable: true,
    writable: true,
    value: (cb?: (err?: Error) => void) => {
      closing = true;
      baseClose(cb);
      for (const shutdown of [...pending]) shutdown(503, 'the proxy is shutting down');
      for (const t of [...tunnels]) t.shutdown(closeGraceMs);
      return server;
    },
  });
  Object.defineProperty(server, 'stats', { enumerable: true, get: () => stats });
  Object.defineProperty(server, 'tunnels', { enumerable: true, get: () => tunnels as ReadonlySet<ProxyTunnel> });
  return server;
}

/** `p`, or the signal's reason (a `ConnectTimeout`, or an abort) once it aborts. */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** One TCP connection (allowHalfOpen), or its error; destroyed when `signal` aborts first. */
function connectOnce(address: string, family: 4 | 6, port: number, signal: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      return;
    }
    const s = net.connect({ host: address, port, family, allowHalfOpen: true });
    s.on('error', noop); // the tunnel reports errors from here on; before, the promise does
    const onAbort = () => {
      s.destroy();
      reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    s.once('connect', () => {
      signal.removeEventListener('abort', onAbort);
      resolve(s);
    });
    s.once('error', (err: Error) => {
      signal.removeEventListener('abort', onAbort);
      reject(err);
    });
  });
}
