import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { Sim, type PathSpec } from '../support/sim.js';

/**
 * ≥ 500 random scenarios: rates, delays, join times (key installation
 * delays), failures (reset, blackhole, delay spike, rate change), both
 * directions sending, half-closes, slow readers, small buffers.
 * Always: what each side received is a prefix of what the other sent (and
 * all of it when the run completes), no deadlock (every run ends complete or
 * with a closed connection and a reason), buffers within their limits.
 */
const failureArb = fc.record({
  at: fc.integer({ min: 0, max: 3000 }),
  kind: fc.constantFrom('reset', 'blackhole', 'spike', 'rate'),
  path: fc.nat(),
  extra: fc.integer({ min: 1, max: 300 }),
  rate: fc.integer({ min: 1, max: 100 }),
});

const scenarioArb = fc.record({
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  paths: fc.array(
    fc.record({ rateMbps: fc.integer({ min: 1, max: 100 }), delayMs: fc.double({ min: 0.5, max: 100, noNaN: true }) }),
    { minLength: 1, maxLength: 4 },
  ),
  mode: fc.constantFrom('external', 'rfc8684') as fc.Arbitrary<'external' | 'rfc8684'>,
  keyDelay: fc.record({ client: fc.integer({ min: 0, max: 500 }), server: fc.integer({ min: 0, max: 500 }) }),
  clientBytes: fc.integer({ min: 0, max: 200_000 }),
  serverBytes: fc.integer({ min: 0, max: 200_000 }),
  clientClose: fc.boolean(),
  serverClose: fc.boolean(),
  clientStart: fc.integer({ min: 0, max: 1000 }),
  slowReader: fc.option(fc.integer({ min: 1, max: 50 }), { nil: undefined }),
  recvBufferLimit: fc.constantFrom(65536, 256 * 1024, 4 * 1024 * 1024),
  sendQueueLimit: fc.constantFrom(16 * 1024, 64 * 1024),
  scheduler: fc.constantFrom('minrtt', 'roundrobin', 'redundant') as fc.Arbitrary<'minrtt' | 'roundrobin' | 'redundant'>,
  failures: fc.array(failureArb, { maxLength: 3 }),
  /** Path that never fails (so a complete run is required when it is path 0). */
  survivor: fc.nat(),
});

type Scenario = ReturnType<typeof scenarioArb.generate> extends never ? never : fc.Arbitrary<unknown> extends never ? never : any;

function runScenario(sc: Scenario) {
  const paths: PathSpec[] = sc.paths;
  const survivor = sc.survivor % paths.length;
  const limits = { recvBufferLimit: sc.recvBufferLimit, sendQueueLimit: sc.sendQueueLimit, sendBufferLimit: 256 * 1024 };
  const sim = new Sim({
    seed: sc.seed,
    paths,
    mode: sc.mode,
    keyDelayMs: sc.keyDelay,
    client: { limits, scheduler: sc.scheduler, mss: 8192 },
    server: { limits, scheduler: sc.scheduler, mss: 8192 },
  });
  sim.start({
    client: { bytes: sc.clientBytes, close: sc.clientClose, startAt: sc.clientStart, readRateMbps: sc.slowReader },
    server: { bytes: sc.serverBytes, close: sc.serverClose },
  });
  for (const f of sc.failures) {
    const p = f.path % paths.length;
    if (p === survivor && (f.kind === 'reset' || f.kind === 'blackhole')) continue;
    sim.at(f.at, () => {
      if (f.kind === 'reset') sim.resetPath(p);
      else if (f.kind === 'blackhole') sim.blackholePath(p);
      else if (f.kind === 'spike') sim.delaySpike(p, f.extra, 500);
      else sim.setRate(p, f.rate);
    });
  }
  const r = sim.run(900_000);
  return { sim, r, survivor, limits };
}

describe('property: random scenarios', () => {
  it('stream integrity, no deadlock, bounded buffers over 500 scenarios', () => {
    let complete = 0;
    let failed = 0;
    fc.assert(
      fc.property(scenarioArb, (sc) => {
        const { sim, r, survivor, limits } = runScenario(sc);
        const c = sim.report('client');
        const s = sim.report('server');
        // Integrity: received = a prefix of what the peer sent, byte for byte.
        expect(s.receivedSha256).toBe(sim.prefixSha256(s.received));
        expect(c.receivedSha256).toBe(sim.prefixSha256(c.received));
        expect(s.received).toBeLessThanOrEqual(sc.clientBytes);
        expect(c.received).toBeLessThanOrEqual(sc.serverBytes);
        // Bounded buffers.
        expect(c.maxReceiveBuffered).toBeLessThanOrEqual(limits.recvBufferLimit);
        expect(s.maxReceiveBuffered).toBeLessThanOrEqual(limits.recvBufferLimit);
        expect(c.maxSendBuffered).toBeLessThanOrEqual(limits.sendBufferLimit + 16384);
        expect(s.maxSendBuffered).toBeLessThanOrEqual(limits.sendBufferLimit + 16384);
        expect(r.timedOut).toBe(false);
        if (sim.complete) {
          complete++;
          expect(s.received).toBe(sc.clientBytes);
          expect(c.received).toBe(sc.serverBytes);
        } else {
          // No deadlock: an incomplete run must have ended with a closed
          // connection and a reason, and only when the initial path died.
          failed++;
          const reasons = [sim.client.closeReason, sim.server?.closeReason];
          expect(reasons.some((x) => x !== undefined && x !== 'done')).toBe(true);
          expect(survivor).not.toBe(0);
        }
      }),
      { numRuns: Number(process.env.PROP_RUNS ?? 500), seed: Number(process.env.PROP_SEED ?? 20261127), endOnFailure: true },
    );
    console.log(`scenarios: ${complete} complete, ${failed} ended by path failure`);
    expect(complete).toBeGreaterThan(400);
  });
});
