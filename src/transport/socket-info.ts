/**
 * What every transport reports about a connection's multipath side: the
 * shape of `socket.mptcp`. Declared here, in the transport layer, so that the
 * userspace and kernel transports and the API share one definition.
 */
import type { MibCounters } from '../core/mib.js';

export type MptcpMode = 'userspace' | 'kernel' | 'fallback';

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
  subflows(): MptcpSubflow[];
  counters(): Partial<MibCounters>;
  /** This side's and the peer's token (G-bit mode), when known. */
  readonly tokens?: { local: number; remote: number };
  /** SHA-256 prefixes of keyA and keyB (never the keys), once installed. */
  readonly keyFingerprints?: { keyA: string; keyB: string };
  readonly keysConfirmed: boolean;
}
