/**
 * The one home of mptls's defaults: every limit and timer a user can set,
 * and the fixed bounds that protect against hostile peers. Types, docs
 * (docs/SECURITY.md "Limits and their defaults", docs/ARCHITECTURE.md) and
 * the layers above point here instead of restating numbers.
 */
import type { ConnectionLimits, ConnectionTimers } from './types.js';

/** Per-connection limits (`limits` in the core, `mptcp.limits` in the API). */
export const DEFAULT_LIMITS: ConnectionLimits = {
  maxSubflows: 8,
  maxPendingJoins: 8,
  maxHeldJoins: 4,
  addAddrAccepted: 8,
  addAddrJoinFailures: 3,
  // 2 MiB each way: a writer whose reader is paused holds about what a
  // node:tls socket holds in its two kernel buffers (test/api/parity-options,
  // §8), and still 2 MiB per RTT in flight (160 Mbit/s at 100 ms). Raise
  // both with `limits` for paths with a larger bandwidth-delay product.
  sendBufferLimit: 2 * 1024 * 1024,
  recvBufferLimit: 2 * 1024 * 1024,
  sendQueueLimit: 64 * 1024,
  // A data ACK at least every quarter of the peer's 2 MiB send buffer (and
  // within delayedAckMs in any case): on a fast path each ACK frame costs
  // both ends a syscall and a pump; every 64 KiB they were ~10 % of the
  // loopback CPU per byte (bench/NOTES.md, cost per byte).
  ackEveryBytes: 512 * 1024,
};

/** Per-connection timers (`timers` in the core). */
export const DEFAULT_TIMERS: ConnectionTimers = {
  establishTimeoutMs: 10_000,
  joinTimeoutMs: 10_000,
  joinAckTimeoutMinMs: 1_000,
  joinAckTimeoutRtts: 4,
  joinHoldTimeoutMs: 5_000,
  minStallMs: 100,
  maxStallMs: 2_000,
  initialStallMs: 1_000,
  delayedAckMs: 5,
  userTimeoutMs: 30_000,
  resumeTimeoutMs: 30_000,
  resumeRetryMinMs: 250,
  resumeRetryMaxMs: 1_000,
};

/**
 * Largest payload per segment in the core when none is given (the
 * simulator's and the core tests' default).
 */
export const DEFAULT_MSS = 16_384;
/**
 * The userspace transport's payload per frame: close to the 16-bit DSS
 * data-level length (65 535), so one frame carries what one 64 KiB socket
 * read holds. `connect()` and `createServer()` use it.
 */
export const TRANSPORT_MSS = 65_000;

/** Endpoint-wide caps. */
export const ENDPOINT_DEFAULTS = {
  /** Connections (tokens issued) per endpoint. */
  maxConnections: 65_536,
  /** Joins in progress across connections; a full pool evicts the busiest source's oldest. */
  maxPendingJoins: 1024,
  /** Joins in progress from one source address (IPv4, IPv6 /64). */
  maxPendingJoinsPerSource: 64,
  /** Parked connections at once (each holds at most its send and receive buffers). */
  maxParkedConnections: 1024,
} as const;

/** The userspace listener (Acceptor) and the server's handshake. */
export const SERVER_DEFAULTS = {
  /** A new subflow must send its preamble and first frame within this. */
  preambleTimeoutMs: 10_000,
  /** Subflows still sending their preamble, at most (a full pool drops the oldest). */
  maxPendingSubflows: 1024,
  /** A multipath connection's whole handshake (MP_CAPABLE + TLS), from its SYN. */
  handshakeTimeoutMs: 10_000,
} as const;

/** Fixed bounds (not options): what a hostile peer can make a connection hold. */
export const BOUNDS = {
  /** DATA_FINs held, unverified, while our keys are not installed yet. */
  maxHeldFins: 4,
  /**
   * Echoes a client sends per ADD_ADDR address id over the connection's life:
   * the first, then one more each time the subflow that carried the last echo
   * went down, up to this many (256 ids × 4 per connection at most).
   */
  maxEchoesPerId: 4,
  /** Times our NEW_KEY is sent again because the subflow that carried it went down. */
  maxNewKeyResends: 3,
} as const;
