/**
 * Packet schedulers (Linux: net/mptcp/sched.c). A scheduler sees every
 * established subflow and picks where the next segment of new data goes.
 * A subflow "has room" when the bytes its driver still holds unsent are below
 * its queue limit (the userspace analogue of cwnd/sndbuf space).
 */
export interface SchedSubflow {
  readonly id: number;
  /** Local or peer-requested backup (MP_JOIN B bit, MP_PRIO). */
  readonly backup: boolean;
  /** No progress for longer than its stall timeout: used only as a last resort. */
  readonly stale: boolean;
  /** Smoothed RTT in ms, or undefined before the first sample. */
  readonly srtt: number | undefined;
  readonly hasRoom: boolean;
}

export interface Scheduler {
  readonly name: SchedulerName;
  /**
   * Chooses among `subflows` (all established ones; never empty) the ones to
   * send the next segment on: [] to wait, one for most schedulers, several
   * for redundant. Only subflows with `hasRoom` may be returned.
   */
  select(subflows: readonly SchedSubflow[]): SchedSubflow[];
}

export type SchedulerName = 'minrtt' | 'roundrobin' | 'redundant';

/**
 * The usable tier, as Linux's default scheduler decides it: active
 * (non-backup, non-stale) subflows if any exist, else backups that are not
 * stale, else whatever is left. Room does not enter: a full active subflow
 * still keeps backups idle.
 */
export function usableTier(subflows: readonly SchedSubflow[]): readonly SchedSubflow[] {
  const active = subflows.filter((s) => !s.backup && !s.stale);
  if (active.length > 0) return active;
  const backup = subflows.filter((s) => s.backup && !s.stale);
  if (backup.length > 0) return backup;
  return subflows;
}

const rttOf = (s: SchedSubflow): number => s.srtt ?? Number.MAX_SAFE_INTEGER / 2;

/** Lowest RTT first among the usable tier's subflows that have room (Linux default). */
export class MinRttScheduler implements Scheduler {
  readonly name = 'minrtt' as const;
  private readonly one: SchedSubflow[] = [];
  select(subflows: readonly SchedSubflow[]): SchedSubflow[] {
    // The usable tier without allocating (this runs once per segment).
    let anyActive = false;
    let anyBackup = false;
    for (const s of subflows) {
      if (s.stale) continue;
      if (s.backup) anyBackup = true;
      else anyActive = true;
    }
    let best: SchedSubflow | undefined;
    for (const s of subflows) {
      const inTier = anyActive ? !s.backup && !s.stale : anyBackup ? s.backup && !s.stale : true;
      if (!inTier || !s.hasRoom) continue;
      if (!best || rttOf(s) < rttOf(best) || (rttOf(s) === rttOf(best) && s.id < best.id)) best = s;
    }
    this.one.length = 0;
    if (best) this.one.push(best);
    return this.one;
  }
}

/** Turns in subflow-id order among the usable tier's subflows with room. */
export class RoundRobinScheduler implements Scheduler {
  readonly name = 'roundrobin' as const;
  private last = -1;
  select(subflows: readonly SchedSubflow[]): SchedSubflow[] {
    const tier = usableTier(subflows)
      .filter((s) => s.hasRoom)
      .sort((a, b) => a.id - b.id);
    if (tier.length === 0) return [];
    const next = tier.find((s) => s.id > this.last) ?? tier[0];
    this.last = next.id;
    return [next];
  }
}

/**
 * Every segment on every usable subflow (lowest latency wins, at the cost of
 * capacity). Sends when at least one has room, and only to the subflows that
 * have room now: a subflow without room does not get its copy later.
 */
export class RedundantScheduler implements Scheduler {
  readonly name = 'redundant' as const;
  select(subflows: readonly SchedSubflow[]): SchedSubflow[] {
    return usableTier(subflows).filter((s) => s.hasRoom);
  }
}

export function createScheduler(name: SchedulerName = 'minrtt'): Scheduler {
  switch (name) {
    case 'minrtt':
      return new MinRttScheduler();
    case 'roundrobin':
      return new RoundRobinScheduler();
    case 'redundant':
      return new RedundantScheduler();
    default:
      throw new TypeError(`unknown scheduler ${String(name)}`);
  }
}
