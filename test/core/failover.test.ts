import { describe, it, expect } from 'vitest';
import { Sim } from '../support/sim.js';

/**
 * A path dies mid-transfer. Every byte must arrive exactly once, in order,
 * and the longest delivery gap must stay within 3 × the surviving path's RTT
 * plus the detection timeout: 0 for a reset (both ends see it), the stall
 * timeout for a blackhole. The stall timeout is clamp(srtt + 4·rttvar,
 * 200 ms, 2 000 ms) of the dead subflow (DEFAULT_TIMERS), read from the core
 * just before the failure.
 */
const RATE = 50;
const DELAY = 10;
const BYTES = 30_000_000;

function run(kind: 'reset' | 'blackhole', seed: number) {
  const sim = new Sim({ seed, paths: [{ rateMbps: RATE, delayMs: DELAY }, { rateMbps: RATE, delayMs: DELAY }] });
  sim.start({ server: { bytes: BYTES } });
  let detection = 0;
  sim.at(2000, () => {
    // Subflow 1 is the join on path 1 at the server too.
    const server = sim.server!;
    const sf = server.subflowInfo().find((s) => !s.initial)!;
    detection = kind === 'reset' ? 0 : server.stallTimeoutOf(sf.id)!;
    if (kind === 'reset') sim.resetPath(1);
    else sim.blackholePath(1);
  });
  const r = sim.run(120_000);
  return { sim, r, detection, client: sim.report('client'), server: sim.report('server') };
}

describe('failover', () => {
  for (const kind of ['reset', 'blackhole'] as const) {
    it(`path 1 ${kind} at t=2 s: intact, gap bounded`, () => {
      const { sim, r, detection, client, server } = run(kind, 11);
      expect(r.deadlock).toBe(false);
      expect(r.timedOut).toBe(false);
      expect(client.received).toBe(BYTES);
      expect(client.receivedSha256).toBe(server.sentSha256);
      expect(client.dataFin).toBe(true);
      // The RTT of the surviving path, as the core measured it (includes the queue it keeps).
      const survivor = sim.server!.subflowInfo().find((s) => s.initial)!;
      const rtt = survivor.rttMs!;
      const bound = 3 * rtt + detection;
      console.log(`${kind}: max gap ${client.maxGapMs.toFixed(1)} ms at ${client.gapAt.toFixed(0)} ms; surviving RTT ${rtt.toFixed(1)} ms, detection ${detection.toFixed(1)} ms, bound ${bound.toFixed(1)} ms; reinjected ${sim.server!.counters().ReinjectedBytes} B`);
      expect(client.maxGapMs).toBeLessThanOrEqual(bound);
      if (kind === 'blackhole') expect(sim.server!.counters().SubflowStale).toBeGreaterThan(0);
      expect(sim.server!.counters().ReinjectedBytes).toBeGreaterThan(0);
    });
  }
});
