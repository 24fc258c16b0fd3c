import type { MptcpOption } from '../wire/types.js';
import type { Scheduler, SchedulerName } from './scheduler.js';
import type { PathManager } from './path-manager.js';
import type { AddAddrPolicyOption } from './address-policy.js';
import type { RandomSource, TokenAllocator } from './token.js';
import type { Connection } from './connection/index.js';

/**
 * One unit the core exchanges with a subflow: the MPTCP options a TCP segment
 * would carry, the payload it maps, and the TCP receive window. Over the
 * userspace transport a segment is one frame (docs/PROTOCOL.md); the subflow
 * sequence number of a payload byte is 1 + its offset in that subflow's
 * payload stream (RFC 8684's relative SSN, 0 being the SYN).
 */
export interface Segment {
  options: MptcpOption[];
  payload?: Uint8Array;
  /**
   * Data-level receive window in bytes, relative to the data ACK carried in
   * the same segment's DSS (TCP's window field, unscaled, 32 bits).
   */
  window?: number;
  /**
   * Subflow-level acknowledgment: the relative SSN of the next payload byte
   * expected on this subflow (TCP's ACK field, 32 bits, wrapping). It tells
   * the sender which subflow makes progress even while a hole on another
   * subflow holds the data ACK back.
   */
  ack?: number;
  /**
   * With a DATA_FIN in external-key mode: the MAC that proves the end of the
   * stream comes from the key holder (`dataFinHmac`, docs/PROTOCOL.md §3.1).
   * A DATA_FIN without a valid one is counted and ignored.
   */
  dataFinMac?: Uint8Array;
}

export interface Transmit {
  subflow: number;
  segment: Segment;
  /** After writing this segment, end the subflow: 'fin' gracefully, 'reset' at once. */
  close?: 'fin' | 'reset';
}

/** 'external': the seed's G bit, keys from the application (TLS). 'rfc8684': keys in clear. */
export type KeyMode = 'external' | 'rfc8684';
export type Role = 'client' | 'server';

export interface AddressInfo {
  address: string;
  port?: number;
}

export interface PathInfo {
  localAddress?: string;
  localPort?: number;
  remoteAddress?: string;
  remotePort?: number;
}

export type CloseReason =
  | 'done'
  | 'aborted'
  | 'fastclose'
  | 'reset'
  /** Client: the server answered the MP_CAPABLE SYN with MP_TCPRST (e.g. its token table is full). */
  | 'refused'
  | 'no-subflows'
  /** Parked (every subflow lost) for resumeTimeoutMs without a join. */
  | 'resume-timeout'
  | 'timeout'
  | 'handshake-timeout'
  | 'handshake-failed'
  | 'mode-mismatch'
  | 'key-mismatch'
  | 'protocol-error';

export type SubflowDownReason = 'fin' | 'reset' | 'refused' | 'stalled' | 'join-timeout' | 'join-refused' | 'closed' | 'removed' | 'error';

export type ConnectionEvent =
  | { type: 'established' }
  | { type: 'keys-installed' }
  | { type: 'keys-confirmed' }
  /** Client side: open a TCP connection for this subflow, then write what pollTransmit gives for it. */
  | { type: 'subflow-open'; subflow: number; localAddress?: string; remoteAddress: string; remotePort?: number; backup: boolean }
  | { type: 'subflow-up'; subflow: number }
  | { type: 'subflow-down'; subflow: number; reason: SubflowDownReason }
  | { type: 'readable' }
  | { type: 'writable' }
  | { type: 'data-fin' }
  | { type: 'address-added'; addressId: number; address: string; port?: number }
  | { type: 'address-removed'; addressId: number }
  /** Every subflow is lost: the connection is parked (resumeTimeoutMs). */
  | { type: 'paths-lost' }
  /** A join completed on a parked connection: it is active again. */
  | { type: 'paths-restored' }
  | { type: 'closed'; reason: CloseReason };

export interface ConnectionLimits {
  /** Subflows per connection, the initial one included (Linux: `ip mptcp limits subflows` + 1). Default: src/core/config.ts. */
  maxSubflows: number;
  /** Joins in progress per connection. Default: src/core/config.ts. */
  maxPendingJoins: number;
  /**
   * Server: early joins (MP_JOIN SYNs that arrive before the connection's
   * keys are installed, PROTOCOL.md §6.1) held unanswered per connection;
   * more are refused (MP_TCPRST, T=1, `MPJoinHeldLimit`). They count among
   * `maxPendingJoins` and the endpoint's pending-join pool too. Default:
   * src/core/config.ts.
   */
  maxHeldJoins: number;
  /**
   * Distinct announced addresses (ADD_ADDR) a client joins over the
   * connection's life (Linux: add_addr_accepted; its maximum is 8, its
   * default 0). Announcements past it are echoed, counted (`AddAddrDrop`)
   * and not joined. Default: src/core/config.ts.
   */
  addAddrAccepted: number;
  /**
   * Failed joins (refused, reset, timed out or errored before the join
   * completed) to one announced address, in total over the connection's
   * life, after which the client stops trying it (`AddAddrJoinLimit`). A
   * join that completes proved the address is the server's and does not
   * count. Default: src/core/config.ts.
   */
  addAddrJoinFailures: number;
  /** Bytes written but not yet data-ACKed before write() says "slow down". Default: src/core/config.ts. */
  sendBufferLimit: number;
  /** Data-level receive buffer = the largest window advertised. Default: src/core/config.ts. */
  recvBufferLimit: number;
  /** Unsent bytes a subflow's driver may hold before the scheduler skips it. Default: src/core/config.ts. */
  sendQueueLimit: number;
  /** Unacknowledged received bytes on a subflow that trigger an immediate ACK. Default: src/core/config.ts. */
  ackEveryBytes: number;
}

export interface ConnectionTimers {
  /** MP_CAPABLE handshake must finish within this. Default: src/core/config.ts. */
  establishTimeoutMs: number;
  /** An MP_JOIN must finish within this. Default: src/core/config.ts. */
  joinTimeoutMs: number;
  /**
   * Server: how long a join waits for its MP_JOIN ACK after our SYN/ACK
   * (a legitimate joiner answers within one RTT): max(`joinAckTimeoutMinMs`,
   * `joinAckTimeoutRtts` × the largest RTT of the connection's established
   * subflows), at most `joinTimeoutMs`; then MP_TCPRST (T=1) and
   * `MPJoinTimeout`. Default: src/core/config.ts.
   */
  joinAckTimeoutMinMs: number;
  /** See `joinAckTimeoutMinMs`. Default: src/core/config.ts. */
  joinAckTimeoutRtts: number;
  /**
   * Server: how long an early join is held waiting for the connection's
   * keys; then MP_TCPRST (T=1) and `MPJoinHeldTimeout`. Default:
   * src/core/config.ts.
   */
  joinHoldTimeoutMs: number;
  /** Stall timeout floor (RFC 6298's 1 s minimum RTO is too coarse for subflow failover). Default: src/core/config.ts. */
  minStallMs: number;
  /** Stall timeout ceiling. Default: src/core/config.ts. */
  maxStallMs: number;
  /** Stall timeout before any RTT sample. Default: src/core/config.ts. */
  initialStallMs: number;
  /**
   * Delayed ACK: received data is acknowledged at the latest this long after
   * it arrived, or at once when `ackEveryBytes` are unacknowledged (any
   * segment we send acknowledges too). Default: src/core/config.ts.
   */
  delayedAckMs: number;
  /**
   * Every subflow stale and no progress for this long: the connection is
   * aborted ('timeout'), like TCP_USER_TIMEOUT. Default: src/core/config.ts.
   */
  userTimeoutMs: number;
  /**
   * A connection that lost every subflow is parked this long, waiting for a
   * join (the client re-joins at once, then with backoff), before it closes
   * with 'resume-timeout'. 0: it closes at once ('no-subflows'), as plain
   * MPTCP does. External keys only (a resume is an MP_JOIN under the
   * TLS-bound keys). Default: src/core/config.ts.
   */
  resumeTimeoutMs: number;
  /** Client: the first re-join of a pair comes at once, the next after this, doubling. Default: src/core/config.ts. */
  resumeRetryMinMs: number;
  /** Client: the longest wait between two re-joins of one address pair. Default: src/core/config.ts. */
  resumeRetryMaxMs: number;
}

export interface ConnectionOptions {
  mode: KeyMode;
  scheduler?: SchedulerName | Scheduler;
  pathManager?: PathManager;
  /** Largest payload per segment (≤ 65 535: the DSS data-level length is 16 bits). Default: src/core/config.ts. */
  mss?: number;
  limits?: Partial<ConnectionLimits>;
  timers?: Partial<ConnectionTimers>;
}

export interface ClientConnectOptions extends ConnectionOptions {
  /** The server address of the initial subflow (remote address id 0). */
  remote: AddressInfo;
  /**
   * Which authenticated ADD_ADDRs to join (src/core/address-policy.ts).
   * 'default': the same family as `remote`, unicast (not unspecified,
   * multicast, broadcast), loopback / link-local only from a server there,
   * `remote`'s port unless `allowAnnouncedPorts`. 'any': every one (RFC 8684;
   * Linux's in-kernel PM). A function: true to join (it decides ports too).
   * Refused announcements are echoed and counted (`AddAddrPolicyDrop`).
   */
  addAddrPolicy?: AddAddrPolicyOption;
  /** With the 'default' policy: also join announced ports other than `remote.port`. Default false. */
  allowAnnouncedPorts?: boolean;
  /** Local addresses; [0] is the initial subflow's, the others get joins (Linux "subflow" endpoints). */
  localAddresses?: { address: string; backup?: boolean }[];
}

export interface EndpointOptions {
  /** Modes this endpoint accepts as a server (default: ['external']). */
  acceptModes?: KeyMode[];
  tokenAllocator?: TokenAllocator;
  random?: RandomSource;
  maxConnections?: number;
  /**
   * Joins in progress across all connections. Default: src/core/config.ts. When full, a
   * join from a source holding fewer pending joins than the busiest source
   * evicts that source's oldest (`MPJoinEvicted`, MP_TCPRST T=1); otherwise
   * it is refused (`SubflowLimit`).
   */
  maxPendingJoins?: number;
  /** Joins in progress from one source (see `joinSource`), across all connections; more are refused (`MPJoinSourceLimit`). Default: src/core/config.ts. */
  maxPendingJoinsPerSource?: number;
  /** Parked connections (every subflow lost, waiting for a resume) at once; past it a connection that loses its last subflow closes. Default: src/core/config.ts. */
  maxParkedConnections?: number;
  /**
   * The source a pending join counts under. Default: the peer's IPv4
   * address, or the /64 prefix of its IPv6 address (IPv4-mapped IPv6 counts
   * as IPv4); '' when unknown.
   */
  joinSource?: (path: PathInfo) => string;
  /**
   * Called when the endpoint changed another connection's state (it evicted
   * one of its pending joins): that connection's driver should poll it
   * (pollTransmit, pollEvent, pollTimeout) soon. Settable later as
   * `Endpoint.onWake`.
   */
  onWake?: (conn: Connection) => void;
  /** Defaults for connections this endpoint accepts. */
  server?: Omit<ConnectionOptions, 'mode'> & { announce?: AddressInfo[] };
}
