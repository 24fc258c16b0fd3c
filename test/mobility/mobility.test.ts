/**
 * Issue 13, "connections that outlive their paths", on real sockets: a client
 * and a server namespace joined by two 50 Mbit/s paths (test/support/
 * topology.ts), mptls userspace peers as child processes inside them
 * (fixtures/peer.mjs, against dist/), the client uploading 40 MiB whose
 * SHA-256 the server checks, and the longest receive stall measured at the
 * server. The scenarios and their timing live in harness.mjs (shared with
 * bench/outage.mjs, which runs the same against Linux kernel MPTCP):
 *
 * - every subflow reset at 1.5 s (`ss -K dst 198.18.0.0/15` in the client
 *   namespace; both subflows must be among the killed): stall ≤ 3 s;
 * - both links down from 1.5 s to 4.5 s: stall ≤ outage + 1.5 s = 4.5 s;
 * - the client host starts with one usable address (path 1's; path 2's
 *   link is up but has no address), loses it at 1.5 s and gets a NEW address
 *   on path 2 (198.18.2.101, with its source rule) at 2.5 s; the client runs
 *   with `localAddresses: 'auto'`: stall ≤ 4 s.
 *
 * Each transfer must end cleanly (the server's 'end' after every byte, the
 * client's 'end' after the server's). A fresh topology per scenario, deleted
 * afterwards, also on failure.
 *
 * Needs root, `ip netns`, tc, ss, kernel MPTCP and dist/ (npm run build).
 * Without them it skips with the reason printed, except under CI
 * (process.env.CI), where it fails.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Topology, withTopology } from '../support/topology.js';
import { MiB, NEW_ADDRESS, runScenario, SCENARIOS, topologyOptions, type ScenarioName, type ScenarioResult } from './harness.mjs';

const IN_CI = Boolean(process.env.CI);
const DIST = process.env.MPTLS_DIST ?? fileURLToPath(new URL('../../dist/', import.meta.url));
const BYTES = 40 * MiB;

function unmetPrerequisite(): string | undefined {
  const a = Topology.available();
  if (!a.ok) return a.reason;
  if (spawnSync('ss', ['-V'], { encoding: 'utf8' }).error) return 'ss (iproute2) is not on PATH';
  if (!existsSync(`${DIST.replace(/\/?$/, '/')}index.js`)) return `${DIST} is not built (npm run build)`;
  return undefined;
}

const unmet = unmetPrerequisite();
if (unmet && !IN_CI) console.warn(`[mobility] skipped: ${unmet}`);

/** One scenario on a fresh topology; the topology is always destroyed. */
function run(scenario: ScenarioName): Promise<ScenarioResult> {
  return withTopology(topologyOptions('mob'), (topo) => runScenario(topo, { scenario, kind: 'userspace', bytes: BYTES, deadlineMs: 14_000 }));
}

/** What a failed expectation should show: the run without its timeline. */
function told(r: ScenarioResult): string {
  const { timeline, ...rest } = r;
  return JSON.stringify({ ...rest, lastSample: timeline[timeline.length - 1] }, null, 1);
}

function expectCleanTransfer(r: ScenarioResult): void {
  expect(r.error, told(r)).toBeUndefined();
  expect(r.mode.client).toBe('userspace');
  expect(r.sentBytes).toBe(BYTES);
  expect(r.receivedBytes, told(r)).toBe(BYTES);
  expect(r.sha256.received).toBe(r.sha256.sent);
  expect(r.completed, told(r)).toBe(true);
  expect(r.maxStallMs, told(r)).toBeLessThanOrEqual(SCENARIOS[r.scenario].boundMs);
  for (const a of r.actions) expect(a.error, `action ${a.what}`).toBeUndefined();
}

describe.skipIf(unmet !== undefined && !IN_CI)('connections that outlive their paths (2 × 50 Mbit/s, 40 MiB upload, mptls userspace)', () => {
  const guard = () => {
    if (unmet !== undefined) throw new Error(`mobility tests cannot run under CI: ${unmet}`);
  };

  it('every subflow reset at 1.5 s (ss -K): the client re-joins, stall ≤ 3 s, SHA-256 equal', async () => {
    guard();
    const r = await run('reset');
    const kill = r.actions.find((a) => a.what.startsWith('ss -K'));
    // Both subflows were up, and ss -K killed both (no subflow survived to carry the rest).
    expect(kill?.establishedBefore, told(r)).toBe(2);
    expect(kill?.killed, told(r)).toBeGreaterThanOrEqual(2);
    expectCleanTransfer(r);
    const names = r.events.client.map((e) => e.name);
    expect(names, told(r)).toContain('paths-lost');
    expect(names.lastIndexOf('paths-restored'), told(r)).toBeGreaterThan(names.indexOf('paths-lost'));
    expect(r.state.client).toBe('active');
  }, 45_000);

  it('both links down for 3 s (1.5 s → 4.5 s): stall ≤ 4.5 s, SHA-256 equal', async () => {
    guard();
    const r = await run('links-down');
    expect(r.actions.map((a) => a.at)).toEqual([1500, 4500]);
    expectCleanTransfer(r);
    // The stall is the outage (at least the 3 s the links were down).
    expect(r.maxStallMs).toBeGreaterThanOrEqual(2500);
    expect(r.state.client).toBe('active');
  }, 45_000);

  it("address deleted at 1.5 s, a new address on the other path at 2.5 s, localAddresses 'auto': stall ≤ 4 s, SHA-256 equal", async () => {
    guard();
    const r = await run('address-move');
    // At the start the client's only address is path 1's.
    expect(r.startSubflows.map((s) => s.local), told(r)).toEqual(['198.18.1.1']);
    expectCleanTransfer(r);
    // The rest came over a subflow from the new address (the server sees it as the remote end).
    const last = r.timeline[r.timeline.length - 1];
    const moved = last.subflows.filter((s) => s.remote === NEW_ADDRESS);
    expect(moved.length, told(r)).toBeGreaterThanOrEqual(1);
    expect(moved.reduce((n, s) => n + s.rx, 0)).toBeGreaterThan(BYTES / 4);
    expect(r.state.client).toBe('active');
  }, 45_000);
});
