/**
 * The timer table (model: quinn-proto `connection/timer.rs`): one slot per
 * timer kind. `pollTimeout` is the minimum over the slots and
 * `handleTimeout` a switch over the kinds that expired, in a fixed order.
 *
 * Slots set where their cause changes: `Establish` (set at creation, cleared
 * when the MP_CAPABLE handshake ends), `Resume` (set when the connection is
 * parked, cleared when it is resumed or closed), `Rejoin` (the earliest re-join the
 * path manager asked for: set when one is scheduled, reset when they run).
 * Derived slots, recomputed once per poll from the state they depend on
 * (RTT estimates move with every ACK, so "where it changes" is every ACK):
 * `UserTimeout` (every subflow stale, or our DATA_FIN unacknowledged, for
 * `userTimeoutMs`), `DataFin` (our DATA_FIN's retransmission), `Subflows`
 * (the earliest per-subflow deadline: join handshake, delayed ACK, stall;
 * each kept on its Subflow).
 */
import { TcpRstReason } from '../../wire/types.js';
import type { Subflow } from '../subflow.js';
import * as join from './join.js';
import * as pm from './pm.js';
import * as send from './send.js';
import * as resume from './resume.js';
import type { Connection } from './index.js';



/**
 * When every subflow went stale and none has made progress since, or our
 * DATA_FIN has gone unacknowledged for that long (it takes no subflow
 * sequence space, so it never makes a subflow stale): the connection's
 * user timeout.
 */
export function deadDeadline(c: Connection): number {
  if (c.state !== 'established') return Infinity;
  if (resume.isParked(c)) return Infinity; // the resume timer rules a parked connection
  const finGiveUp = c.send.finEverSent && !c.send.finAcked ? c.send.finFirstSentAt + c.timers.userTimeoutMs : Infinity;
  return Math.min(finGiveUp, staleDeadline(c));
}

export function staleDeadline(c: Connection): number {
  let latest = -Infinity;
  for (const s of c.subflows.values()) {
    if (!s.established) return Infinity; // a join in progress may yet save it
    if (!s.stale) return Infinity;
    latest = Math.max(latest, s.staleSince, s.lastProgress);
  }
  return latest === -Infinity ? Infinity : latest + c.timers.userTimeoutMs;
}

/** How many maxStallMs the kernel's evidence of a delivering path may defer a stall. */
export const PATH_GRACE = 4;

export function stallDeadline(c: Connection, s: Subflow): number {
  if (!s.established || s.stale || s.sentBytes === s.ackedBytes) return Infinity;
  let oldest = Infinity;
  for (const m of s.outstanding) {
    if (m.subflowEnd > s.ackedBytes) {
      oldest = m.sentAt;
      break;
    }
  }
  if (oldest === Infinity) return Infinity;
  // The kernel's word that the path delivers defers a stall, for at most
  // PATH_GRACE × maxStallMs past the oldest unacknowledged frame: a
  // TCP-terminating middlebox ACKs what it will never forward.
  const alive = Math.min(s.pathAliveAt, oldest + PATH_GRACE * c.timers.maxStallMs);
  return Math.max(s.lastProgress, alive, oldest) + s.stallTimeout(c.timers.minStallMs, c.timers.maxStallMs, c.timers.initialStallMs);
}

export const Timer = { Establish: 0, UserTimeout: 1, Resume: 2, Rejoin: 3, DataFin: 4, Subflows: 5 } as const;
export type TimerKind = (typeof Timer)[keyof typeof Timer];
const KINDS = 6;

export class TimerTable {
  private readonly at = new Float64Array(KINDS).fill(Infinity);
  set(kind: TimerKind, at: number): void {
    this.at[kind] = at;
  }
  clear(kind: TimerKind): void {
    this.at[kind] = Infinity;
  }
  get(kind: TimerKind): number {
    return this.at[kind];
  }
  /** The earliest deadline, or Infinity. */
  next(): number {
    let t = Infinity;
    for (let k = 0; k < KINDS; k++) if (this.at[k] < t) t = this.at[k];
    return t;
  }
  expired(kind: TimerKind, now: number): boolean {
    return now >= this.at[kind];
  }
}

/** Recomputes the derived slots (see the module comment). */
function refreshDerived(c: Connection): void {
  const t = c.timerTable;
  if (c.state === 'established') {
    t.set(Timer.UserTimeout, deadDeadline(c));
    t.set(Timer.DataFin, send.finDeadline(c));
  } else {
    t.clear(Timer.UserTimeout);
    t.clear(Timer.DataFin);
  }
  let sub = Infinity;
  for (const s of c.subflows.values()) {
    if (!s.open) continue;
    if (s.handshakeDeadline < sub) sub = s.handshakeDeadline;
    if (s.ackDueAt < sub && s.established) sub = s.ackDueAt;
    const d = stallDeadline(c, s);
    if (d < sub) sub = d;
  }
  t.set(Timer.Subflows, sub);
}

/** The earliest re-join asked for, into its slot. */
export function armRejoin(c: Connection): void {
  let t = Infinity;
  for (const r of c.paths.rejoins) if (r.at < t) t = r.at;
  c.timerTable.set(Timer.Rejoin, t);
}

/** The earliest time `handleTimeout` has work to do, or null. */
export function pollTimeout(c: Connection): number | null {
  if (c.state === 'closed') return null;
  refreshDerived(c);
  const t = c.timerTable.next();
  return t === Infinity ? null : t;
}

export function handleTimeout(c: Connection, now: number): void {
  if (c.state === 'closed') return;
  const t = c.timerTable;
  refreshDerived(c);
  if (t.expired(Timer.Establish, now)) {
    c.abortInternal('handshake-timeout', now);
    return;
  }
  if (t.expired(Timer.UserTimeout, now)) {
    c.abortInternal('timeout', now);
    return;
  }
  if (t.expired(Timer.Resume, now)) {
    resume.onResumeTimeout(c);
    return;
  }
  if (t.expired(Timer.Rejoin, now)) onRejoin(c, now);
  if (t.expired(Timer.DataFin, now)) {
    // Our DATA_FIN's data ACK is late: send it again, on another subflow.
    c.send.finAvoid = c.send.finSentOn;
    c.send.finSentOn = undefined;
    c.send.finRetries++;
  }
  if (t.expired(Timer.Subflows, now)) onSubflowTimers(c, now);
}

function onRejoin(c: Connection, now: number): void {
  const due = c.paths.rejoins.filter((r) => r.at <= now);
  c.paths.rejoins = c.paths.rejoins.filter((r) => r.at > now);
  armRejoin(c);
  // The path manager's: no second subflow on a pair with an open one.
  // The resume logic's (seek): only while still needed (parked, or every
  // subflow still stale), and a stale subflow on the pair does not count.
  const seeking = resume.stillSeeking(c);
  const live = (l: number, r: number, usable: boolean) =>
    [...c.subflows.values()].some((x) => x.open && (!usable || !x.stale) && x.localAddressId === l && x.remoteAddressId === r);
  const reqs = due
    .filter((d) => (d.seek ? seeking && !live(d.request.localAddressId, d.request.remoteAddressId, true) : !live(d.request.localAddressId, d.request.remoteAddressId, false)))
    .map((d) => d.request);
  join.startJoins(c, reqs, now);
}

function onSubflowTimers(c: Connection, now: number): void {
  for (const s of [...c.subflows.values()]) {
    if (!s.open) continue;
    if (now >= s.ackDueAt) {
      s.ackPending = true;
      s.ackDueAt = Infinity;
    }
    if (now >= s.handshakeDeadline) {
      c.mib.inc(s.state === 'join-held' ? 'MPJoinHeldTimeout' : 'MPJoinTimeout');
      // Server: the MP_JOIN ACK is late (joinAckTimeout), or a held join's
      // keys never came (joinHoldTimeoutMs); transient, so a legitimate
      // joiner on a slow path tries again.
      if (c.role === 'server' && (s.state === 'join-syn-received' || s.state === 'join-held')) join.resetJoinTransient(c, s, TcpRstReason.MPTCP_SPECIFIC, 'join-timeout', now);
      else c.resetSubflow(s, TcpRstReason.MPTCP_SPECIFIC, 'join-timeout', now);
      continue;
    }
    if (now >= stallDeadline(c, s)) {
      // No subflow-level progress: stop trusting it and reinject what it
      // holds; the reinjection queue waits for any subflow that can carry it.
      s.stale = true;
      s.staleSince = now;
      c.mib.inc('SubflowStale');
      send.reinjectFrom(c, s);
      if (c.send.finSentOn === s.id && !c.send.finAcked) c.send.finSentOn = undefined; // resend the DATA_FIN elsewhere
      for (const [id, a] of c.paths.unechoed) if (a.sentOn === s.id) pm.sendAddAddr(c, id);
      if (allStale(c)) resume.onAllStale(c, now);
    }
  }
}

function allStale(c: Connection): boolean {
  for (const s of c.subflows.values()) if (s.established && !s.stale) return false;
  return true;
}
