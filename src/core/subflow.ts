/**
 * Per-subflow state inside a connection (Linux: net/mptcp/subflow.c).
 */
import type { PathInfo } from './types.js';
import type { MpJoinOption } from '../wire/types.js';

export type SubflowState =
  | 'syn-sent' // client, initial: MP_CAPABLE SYN sent
  | 'syn-received' // server, initial: MP_CAPABLE SYN/ACK sent
  | 'join-syn-sent' // client: MP_JOIN SYN sent
  | 'join-held' // server: MP_JOIN SYN held, unanswered, until the connection's keys are installed
  | 'join-syn-received' // server: MP_JOIN SYN/ACK sent
  | 'established'
  | 'closed';

/** A range of data-level offsets sent on a subflow, kept until data-ACKed. */
export interface SentMapping {
  start: number;
  end: number;
  /** Subflow payload bytes sent on this subflow up to and including this mapping. */
  subflowEnd: number;
  sentAt: number;
  /** A retransmission: no RTT sample from it (Karn). */
  /** Already queued for reinjection elsewhere. */
  reinjected: boolean;
}

export interface RxMapping {
  /** Data-level offset of the mapping's first byte. */
  start: number;
  /** Relative subflow sequence number of its first byte. */
  ssn: number;
  /** Payload bytes in subflow space (the DATA_FIN takes none). */
  len: number;
  /** Data-level offset of a DATA_FIN that ends this mapping, if any. */
  finAt?: number;
}

export class Subflow {
  state: SubflowState;
  readonly initial: boolean;
  localAddressId: number;
  remoteAddressId: number;
  path: PathInfo;
  /** Our wish (MP_JOIN B bit / MP_PRIO we sent). */
  backupLocal: boolean;
  /** The peer's wish (MP_JOIN B bit / MP_PRIO it sent). */
  backupPeer = false;
  stale = false;
  staleSince = 0;

  /** Unsent bytes the driver still holds for this subflow. */
  queued = 0;
  srtt: number | undefined;
  rttvar = 0;
  /** RTT the driver measured itself (TCP_INFO), preferred when present. */
  externalRtt: number | undefined;

  /** Next relative SSN we send / expect (u32, wraps). */
  sndSsn = 1;
  rcvSsn = 1;
  /** Payload bytes sent on this subflow, and how many of them the peer's subflow-level ACK covers. */
  sentBytes = 0;
  ackedBytes = 0;
  rxMap: RxMapping | null = null;
  outstanding: SentMapping[] = [];
  lastProgress: number;
  /**
   * The last time the transport saw the path itself work (the kernel's TCP
   * ACKs: everything sent acknowledged, or an ACK just now), however slowly
   * the peer's application reads: a stall is the path's, not the peer's.
   */
  pathAliveAt = -Infinity;
  /**
   * Doubles (up to 8) each time the subflow was declared stale and then
   * recovered without any help (a spurious stall: the path was only slow, a
   * burst queued behind a busy receiver); multiplies the stall timeout.
   */
  stallBackoff = 1;
  lastSampleAt = -Infinity;

  /** Frames queued on this subflow so far (the first carries no ack). */
  framesSent = 0;
  /** MP_JOIN state. */
  /** Client: opened before the keys were confirmed (G mode, PROTOCOL.md §6.1); server: held until the keys were installed. */
  early = false;
  /** Client: an early join's SYN/ACK, kept until the keys are confirmed. */
  heldSynAck: Extract<MpJoinOption, { stage: 'synack' }> | undefined;
  localRandom = 0;
  remoteRandom = 0;
  handshakeStarted: number;
  handshakeDeadline = Infinity;

  bytesSent = 0;
  bytesReceived = 0;
  /** Set when we owe an ACK on this subflow now. */
  ackPending = false;
  /** Payload bytes received since our last segment on this subflow, and when their ACK falls due (delayed ACK). */
  unackedBytes = 0;
  ackDueAt = Infinity;

  constructor(
    readonly id: number,
    state: SubflowState,
    opts: { initial: boolean; localAddressId: number; remoteAddressId: number; backup: boolean; path: PathInfo; now: number },
  ) {
    this.state = state;
    this.initial = opts.initial;
    this.localAddressId = opts.localAddressId;
    this.remoteAddressId = opts.remoteAddressId;
    this.backupLocal = opts.backup;
    this.path = opts.path;
    this.lastProgress = opts.now;
    this.handshakeStarted = opts.now;
  }

  get backup(): boolean {
    return this.backupLocal || this.backupPeer;
  }
  get established(): boolean {
    return this.state === 'established';
  }
  get open(): boolean {
    return this.state !== 'closed';
  }
  get rtt(): number | undefined {
    return this.externalRtt ?? this.srtt;
  }

  /** RFC 6298 smoothing of one sample (ms). */
  sampleRtt(ms: number): void {
    const r = Math.max(ms, 0.01);
    if (this.srtt === undefined) {
      this.srtt = r;
      this.rttvar = r / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
  }

  stallTimeout(min: number, max: number, initial: number): number {
    if (this.srtt === undefined) return initial;
    return Math.min(max, Math.max(min, this.srtt + 4 * this.rttvar) * this.stallBackoff);
  }
}
