/**
 * A busy receiver is no stalled path: 16 two-path connections downloading
 * 1 MiB bodies back to back, client and server in this one process (CPU
 * bound: every subflow's data waits behind the others' at the receiver).
 * The kernel's TCP_INFO shows each path delivering (its ACKs keep coming),
 * so no subflow is declared stale and nothing is reinjected. Before, bursts
 * queued behind a busy receiver outlived the RTT-based stall timeout: 70
 * spurious stalls and 38 MB reinjected in 3 s, for nothing.
 */
import { describe, expect, it } from 'vitest';
import { https } from '../../src/api/index.js';
import { ffiStatus } from '../../src/transport/kernel/ffi.js';
import { close, fixtures, listen } from '../support/servers.js';

describe('a busy receiver', () => {
  it.skipIf(!ffiStatus().ok && !process.env.CI)('16 connections × 1 MiB bodies for 3 s in one process: no spurious stall, nothing reinjected', async () => {
    const body = Buffer.alloc(1 << 20, 0x5a);
    const server = https.createServer({ key: fixtures.key, cert: fixtures.cert }, (_req, res) => res.end(body));
    const port = await listen(server);
    const agents = Array.from({ length: 16 }, () => new https.Agent({ keepAlive: true, maxSockets: 1, mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] } }));
    const get = (agent: https.Agent) =>
      new Promise<number>((resolve, reject) => {
        https
          .get(`https://127.0.0.1:${port}/`, { ca: fixtures.ca, agent }, (res) => {
            let n = 0;
            res.on('data', (d: Buffer) => (n += d.length));
            res.on('end', () => resolve(n));
          })
          .on('error', reject);
      });
    let bytes = 0;
    const t0 = performance.now();
    await Promise.all(
      agents.map(async (a) => {
        while (performance.now() - t0 < 3000) {
          const n = await get(a);
          bytes += n;
        }
      }),
    );
    const c = server.mptcp.counters();
    for (const a of agents) a.destroy();
    await close(server);
    expect(bytes).toBeGreaterThan(16 << 20);
    expect({ stale: c.SubflowStale, reinjected: c.ReinjectedBytes }).toEqual({ stale: 0, reinjected: 0 });
  });
});
