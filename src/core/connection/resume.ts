/**
 * Outliving paths: a connection that loses every subflow is parked, not
 * closed, for `resumeTimeoutMs`, and the client re-joins (MP_JOIN under the
 * installed, TLS-bound keys) at once and then with backoff, from every local
 * address it has, until one join completes (resumed) or the time is up
 * (`resume-timeout`). Only external-key connections park: a resume is a
 * join, and only the key holder can complete one, so an on-path observer
 * who saw the whole handshake cannot take a parked connection over.
 *
 * The client also starts these joins when every subflow has been stale for
 * resumeRetryMaxMs (break-before-make): a fresh TCP connection is not held
 * back by the dead one's retransmission backoff once the path works again.
 *
 * Owns `ResumeState`.
 */
import type { JoinRequest } from '../path-manager.js';
import type { Subflow } from '../subflow.js';
import type { SubflowDownReason } from '../types.js';
import * as join from './join.js';
import { armRejoin, Timer } from './timers.js';
import type { Connection } from './index.js';

/** State owned by resume.ts. */
export class ResumeState {
  /** When the connection was parked (every subflow lost), or undefined. */
  parkedSince: number | undefined = undefined;
  /** Client: re-joins tried per local|remote address pair since the paths were lost. */
  readonly attempts = new Map<string, number>();
  /** Client: re-joins are being made (parked, or every subflow stale). */
  seeking = false;
}

export function isParked(c: Connection): boolean {
  return c.resume.parkedSince !== undefined;
}

/**
 * The last subflow is gone: park the connection if it may be resumed.
 * Returns false when it must close instead.
 */
export function park(c: Connection, now: number): boolean {
  if (c.timers.resumeTimeoutMs <= 0 || c.mode !== 'external' || !c.keys.installed || c.state !== 'established') return false;
  if (c.role === 'client' && !c.keys.confirmed) return false; // it could not join yet
  if (isParked(c)) return true;
  if (!c.host.park(c)) return false;
  c.resume.parkedSince = now;
  c.mib.inc('ConnParked');
  c.events.push({ type: 'paths-lost' });
  c.timerTable.set(Timer.Resume, now + c.timers.resumeTimeoutMs);
  if (c.role === 'client') seek(c, now);
  return true;
}

/** A join completed: a parked connection is active again; seeking stops. */
export function onJoinEstablished(c: Connection): void {
  c.resume.seeking = false;
  c.resume.attempts.clear();
  if (!isParked(c)) return;
  c.resume.parkedSince = undefined;
  c.timerTable.clear(Timer.Resume);
  c.host.unpark(c);
  c.mib.inc('ConnResumed');
  c.events.push({ type: 'paths-restored' });
}

/** The connection closed: let go of its parking slot. */
export function onClosed(c: Connection): void {
  if (!isParked(c)) return;
  c.resume.parkedSince = undefined;
  c.timerTable.clear(Timer.Resume);
  c.host.unpark(c);
}

/** Parked for resumeTimeoutMs without a join. */
export function onResumeTimeout(c: Connection): void {
  c.mib.inc('ConnResumeTimeout');
  c.closeWith('resume-timeout');
}

/**
 * Client, every established subflow stale: start re-joins while the stale
 * ones are kept (they may yet recover).
 */
export function onAllStale(c: Connection, now: number): void {
  if (c.role !== 'client' || c.timers.resumeTimeoutMs <= 0 || c.mode !== 'external' || !c.keys.confirmed || c.resume.seeking) return;
  // Not at once: a busy host or a short stall makes subflows stale too. If
  // they are all still stale after resumeRetryMaxMs, join anew (the stale
  // ones stay; a join scheduled meanwhile is dropped if one recovers).
  c.resume.seeking = true;
  for (const req of requests(c)) {
    c.resume.attempts.set(`${req.localAddressId}|${req.remoteAddressId}`, 1);
    c.paths.rejoins.push({ at: now + c.timers.resumeRetryMaxMs, request: req, seek: true });
  }
  armRejoin(c);
}

/** The resume logic still wants joins: parked, or every subflow still stale. */
export function stillSeeking(c: Connection): boolean {
  if (!c.resume.seeking) return false;
  if (isParked(c)) return true;
  for (const s of c.subflows.values()) if (s.established && !s.stale) return false;
  return true;
}

/** A stale subflow carries traffic again: an unparked connection stops seeking. */
export function onRecover(c: Connection): void {
  if (!isParked(c)) c.resume.seeking = false;
}

/** Client: one re-join per address pair now (those not already tried). */
function seek(c: Connection, now: number): void {
  c.resume.seeking = true;
  for (const req of requests(c)) schedule(c, req, now);
}

/** Every local address to the server's initial address (the announced ones follow through the path manager). */
function requests(c: Connection): JoinRequest[] {
  const locals = c.paths.localAddresses.length > 0 ? c.paths.localAddresses : [{ id: 0, address: '', backup: false }];
  return locals.map((la) => ({ localAddressId: la.id, remoteAddressId: 0, backup: la.backup }));
}

function schedule(c: Connection, req: JoinRequest, now: number): void {
  const key = `${req.localAddressId}|${req.remoteAddressId}`;
  const n = c.resume.attempts.get(key) ?? 0;
  const t = c.timers;
  const delay = n === 0 ? 0 : Math.min(t.resumeRetryMaxMs, t.resumeRetryMinMs * 2 ** (n - 1));
  const deadline = c.resume.parkedSince !== undefined ? c.resume.parkedSince + t.resumeTimeoutMs : Infinity;
  if (now + delay >= deadline) return;
  c.resume.attempts.set(key, n + 1);
  if (delay === 0) {
    join.startJoins(c, [req], now);
    return;
  }
  c.paths.rejoins.push({ at: now + delay, request: req, seek: true });
  armRejoin(c);
}

/**
 * Client, a subflow went down while seeking: try its address pair again
 * (backoff) unless the server refused it for good (it no longer knows the
 * token: the connection cannot be resumed, so it closes).
 * Returns true when the resume logic took care of it.
 */
export function onSubflowDown(c: Connection, sf: Subflow, reason: SubflowDownReason, wasPendingJoin: boolean, now: number): boolean {
  if (c.role !== 'client' || !c.resume.seeking) return false;
  if (wasPendingJoin && reason === 'refused' && isParked(c)) {
    c.closeWith('no-subflows');
    return true;
  }
  if (reason === 'closed' || reason === 'removed') return false;
  schedule(c, { localAddressId: sf.localAddressId, remoteAddressId: sf.remoteAddressId, backup: sf.backupLocal }, now);
  return true;
}

/**
 * Client: join from this address pair now: a fresh address is tried at
 * once, also while the connection is parked (its backoff starts over).
 */
export function joinFrom(c: Connection, req: JoinRequest, now: number): void {
  c.resume.attempts.delete(`${req.localAddressId}|${req.remoteAddressId}`);
  if (c.resume.seeking) schedule(c, req, now);
  else join.startJoins(c, [req], now);
}
