import { describe, it, expect } from 'vitest';
import { Sim } from '../support/sim.js';

/**
 * Aggregation on virtual time: the server sends 5 s worth of the summed
 * rate; goodput is what the client application receives in [1 s, 4 s),
 * against the sum of the path rates (which the simulator charges for every
 * frame byte: header, options and payload).
 */
function goodput(rates: number[], delays: number[], seed = 3) {
  const sim = new Sim({ seed, paths: rates.map((r, i) => ({ rateMbps: r, delayMs: delays[i] })) });
  const sum = rates.reduce((a, b) => a + b, 0);
  sim.start({ server: { bytes: Math.round((sum * 1e6) / 8) * 5 } });
  const r = sim.run(60_000);
  expect(r.deadlock).toBe(false);
  expect(sim.report('client').receivedSha256).toBe(sim.report('server').sentSha256);
  const mbps = (sim.deliveredBetween('client', 1000, 4000) * 8) / 3 / 1e6;
  return { mbps, ratio: mbps / sum, sim };
}

describe('goodput (simulated)', () => {
  it('2 × 50 Mbit/s: ≥ 95% of the sum', () => {
    const { mbps, ratio } = goodput([50, 50], [10, 10]);
    console.log(`2×50: ${mbps.toFixed(2)} Mbit/s = ${(ratio * 100).toFixed(2)}%`);
    expect(ratio).toBeGreaterThanOrEqual(0.95);
  });
  it('20 + 80 Mbit/s: ≥ 90% of the sum', () => {
    const { mbps, ratio } = goodput([20, 80], [10, 10]);
    console.log(`20+80: ${mbps.toFixed(2)} Mbit/s = ${(ratio * 100).toFixed(2)}%`);
    expect(ratio).toBeGreaterThanOrEqual(0.9);
  });
  it('20 + 80 Mbit/s with unequal delays (40 ms vs 5 ms): ≥ 90% of the sum', () => {
    const { mbps, ratio } = goodput([20, 80], [40, 5]);
    console.log(`20+80 (40/5 ms): ${mbps.toFixed(2)} Mbit/s = ${(ratio * 100).toFixed(2)}%`);
    expect(ratio).toBeGreaterThanOrEqual(0.9);
  });
  it('4 × 50 Mbit/s: ≥ 93% of the sum', () => {
    const { mbps, ratio, sim } = goodput([50, 50, 50, 50], [10, 12, 14, 16]);
    console.log(`4×50: ${mbps.toFixed(2)} Mbit/s = ${(ratio * 100).toFixed(2)}%`);
    expect(sim.client.subflowInfo().filter((s) => s.bytesReceived > 0).length).toBe(4);
    expect(ratio).toBeGreaterThanOrEqual(0.93);
  });
});
