/**
 * What every transport reports about a connection's multipath side: the
 * shape of `socket.mptcp`. Declared here, in the transport layer, so that the
 * userspace and kernel transports and the API share one definition.
 */
import type { MibCounters } from '../core/mib.js';

export type MptcpMode = 'userspace' | 'kernel' | 'fallback';

/**
 * 'parked': a userspace connection that lost every subflow and waits (up to
 * `resumeTimeoutMs`) for a join to resume it. Kernel and fallback
 * connections are always 'active'.
 */
export type MptcpPathState = 'active' | 'parked';

export interface MptcpSubflow {
  id: number;
  localAddress?: string;
  localPort?: number;
  remoteAddress?: string;
  remotePort?: number;
  backup: boolean;
  state: string;
  bytesSent: number;
  bytesReceived: number;
  rttMs?: number;
}

/** The part of `socket.mptcp` every mode has. */
export interface MptcpSocketInfo {
  readonly mode: MptcpMode;
  readonly fallbackReason?: string;
  /** 'parked' between 'paths-lost' and 'paths-restored' (userspace only). */
  readonly state: MptcpPathState;
  subflows(): MptcpSubflow[];
  /** Every MIB counter by name (0 where this mode does not count it). */
  counters(): MibCounters;
  /** This side's and the peer's token (G-bit mode), when known. */
  readonly tokens?: { local: number; remote: number };
  /** SHA-256 prefixes of keyA and keyB (never the keys), once installed. */
  readonly keyFingerprints?: { keyA: string; keyB: string };
  readonly keysConfirmed: boolean;
}
