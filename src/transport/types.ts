/**
 * The one interface both transports implement, as the API sees them.
 *
 * A transport carries a connection (userspace multipath over net.Sockets, or
 * Linux's IPPROTO_MPTCP); the API runs TLS over it. This layer never sees
 * TLS: a connection says what to bind (`KeyBinding`: the exporter context,
 * and where the keys go) and the API does the exporter call (src/tls) and the
 * session checks, the same way for every transport.
 *
 *   client:  const c = transport.open(options)            → OpenedConnection
 *            tlsSocket = c.wrap(halfOpen, () => tls.connect({ socket: c.socket }))
 *            tlsSocket.mptcp = c.attach(tlsSocket)
 *            on the first 'secureConnect': bind c.keys
 *   server:  userspace: multipath connections arrive as OpenedConnections,
 *            plain sockets go to node:tls; kernel: a socket node:tls
 *            accepted is classified by `accepted(socket)` → TransportConnection
 */
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { AddAddrPolicyOption } from '../core/address-policy.js';
import type { MibName } from '../core/mib.js';
import type { SchedulerName } from '../core/scheduler.js';
import type { ConnectionLimits, KeyMode } from '../core/types.js';
import type { MptcpSocketInfo } from './socket-info.js';

export type TransportName = 'userspace' | 'kernel';

/** `socket.mptcp` as a transport makes it: the API records the key fingerprints it computed. */
export interface TransportInfo extends MptcpSocketInfo {
  setKeyFingerprints(fingerprints: { keyA: string; keyB: string }): void;
}

/** The RFC 5705 exporter context of a connection: keyA is the initiator's (the TLS client's). */
export interface ExporterContext {
  readonly tokenA: number;
  readonly tokenB: number;
}

/** What the API may count in a connection's MIB. */
export type BindingCounter = Extract<MibName, 'TlsBindingRefused' | 'TlsRenegotiationRefused' | 'HandshakeTimeout' | 'MPCapableIncomplete'>;

/**
 * How a connection takes keys from its TLS session. `use: 'install'`: the
 * transport authenticates the connection with them (so the API checks the
 * session first, refuses renegotiation, and a failure ends the connection);
 * `'fingerprint'`: they are shown only (kernel mode: Linux cannot install
 * them), and a failure to compute them is no error.
 */
export interface KeyBinding {
  readonly use: 'install' | 'fingerprint';
  /**
   * Read once, at the end of the first TLS handshake: the exporter context,
   * or undefined when there is nothing to bind (the connection fell back to
   * TCP, carries RFC 8684 keys in clear, or is not established).
   */
  context(): ExporterContext | undefined;
  /**
   * True when keys are due but their context is not known: the TLS
   * handshake finished before the MP_CAPABLE exchange did (a peer that
   * skipped its SYN/ACK or third ACK). The API then ends the connection.
   */
  incomplete?(): boolean;
  /** `use: 'install'`: keyA (the initiator's) and keyB, 8 bytes each. */
  install(keyA: Uint8Array, keyB: Uint8Array): void;
  /** Counts a refusal of the API's into the connection's MIB (a no-op where there is none). */
  count(counter: BindingCounter): void;
}

/** One connection of a transport, seen from the TLS socket over it. */
export interface TransportConnection {
  readonly transport: TransportName;
  readonly keys: KeyBinding;
  /**
   * Called once with the TLS socket over this connection, right after it is
   * made: hooks its addresses, its 'subflow' events (one per subflow that
   * comes up), fallback reporting and `fallback: false` enforcement, and
   * returns what `tlsSocket.mptcp` reports.
   */
  attach(tlsSocket: net.Socket): TransportInfo;
}

/** A connection the API still has to run TLS over. */
export interface OpenedConnection extends TransportConnection {
  /** The duplex TLS runs over (a MultipathStream, or the kernel's net.Socket). */
  readonly socket: Duplex;
  /**
   * Runs `make` (which wraps `socket` in TLS) so that the TLS socket gets
   * `allowHalfOpen` (node:tls copies the wrapped socket's) while the
   * transport keeps its own.
   */
  wrap<T>(allowHalfOpen: boolean, make: () => T): T;
}

/** The transport-level client options (the API's `mptcp` options add its own). */
export interface TransportClientOptions {
  /**
   * Local addresses to use: [0] for the first subflow, each other one gets a
   * join. An address that disappears from the host (`os.networkInterfaces()`,
   * read every second) has its subflows closed; when it comes back it is
   * joined again. `'auto'`: every non-internal address of the host in the
   * server address's family (link-local ones only for a link-local server),
   * followed as addresses appear (joined) and disappear; on a host with
   * loopback only that is none, and the connection stays single-path.
   */
  localAddresses?: string[] | 'auto';
  /**
   * A connection that loses every subflow is parked this long (ms) while
   * the client joins again from its addresses, at once and then with
   * backoff; the first join that completes resumes it (`'paths-restored'`),
   * else it closes with `ETIMEDOUT` (`mptlsCode` `ERR_MPTLS_RESUME_TIMEOUT`),
   * or at once with `ECONNRESET` when the server's port refuses the join.
   * 0: close at once (`ECONNRESET`, `ERR_MPTLS_NO_SUBFLOWS`). Default: `DEFAULT_TIMERS.resumeTimeoutMs` in
   * src/core/config.ts.
   */
  resumeTimeoutMs?: number;
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
  addAddrPolicy?: AddAddrPolicyOption;
  /** Join announced addresses on ports other than the server's (default false). */
  allowAnnouncedPorts?: boolean;
}

export interface ClientOpenOptions {
  host: string;
  port: number;
  /** The TLS socket's `allowHalfOpen` (node's default: false). */
  allowHalfOpen: boolean;
  mptcp: TransportClientOptions;
}

export interface ClientTransport {
  readonly name: TransportName;
  open(options: ClientOpenOptions): OpenedConnection;
}

/** The transport-level server options of the userspace transport. */
export interface TransportServerOptions {
  /**
   * Extra addresses announced (ADD_ADDR, authenticated) once keys are
   * confirmed. `'auto'`: the host's non-internal addresses of the family of
   * the address each client connected to (except that one; link-local ones
   * only when it is link-local), followed while the connection lives: a new
   * address is announced, a vanished one withdrawn (REMOVE_ADDR).
   */
  announce?: string[] | 'auto';
  /**
   * A connection that loses every subflow is parked this long (ms), waiting
   * for the client to join again, then closed (`ETIMEDOUT`, `mptlsCode`
   * `ERR_MPTLS_RESUME_TIMEOUT`). 0: close at once (`ECONNRESET`,
   * `ERR_MPTLS_NO_SUBFLOWS`). Default:
   * `DEFAULT_TIMERS.resumeTimeoutMs` in src/core/config.ts.
   */
  resumeTimeoutMs?: number;
  /** Subflows per connection, the first included (default 8). */
  maxSubflows?: number;
  /** 0..255: put this id in the top 8 bits of every token (load balancers). */
  serverId?: number;
  /**
   * 0..255: put this id in bits 23..16 of every token (cluster mode: the
   * primary routes a join to its worker by it). Set by cluster mode itself.
   */
  workerId?: number;
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
}

/** Where a server transport hands what arrives on the listening port. */
export interface ServerHandlers {
  /** A socket that is not this transport's: node:tls's own connection listener. */
  plain(socket: net.Socket): void;
  /** A multipath connection the API runs TLS over (as a TLS server). */
  connection(connection: OpenedConnection): void;
}

/**
 * A server transport. `listen` takes over (or prepares) a freshly made
 * net/tls server; `accepted` classifies a socket node:tls accepted itself
 * (through `handlers.plain`): this transport's connection, or undefined.
 */
export interface ServerTransport<L = void> {
  readonly name: TransportName;
  listen(server: net.Server, handlers: ServerHandlers): L;
  accepted?(socket: net.Socket): TransportConnection | undefined;
}
