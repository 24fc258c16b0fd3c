// Run with --expose-gc (handshake.mjs forks it): the server's cost per held
// early join (PROTOCOL.md §6.1), what it retains in JS (heap + external +
// array buffers after a full GC) and in RSS, for N connections whose TLS never
// finishes, first without and then with one held join each.
import { fork } from 'node:child_process';
import { createServer } from '../../dist/index.js';
import { fixtures } from './common.mjs';

const N = Number(process.argv[2] ?? 960);
const server = createServer({ key: fixtures.key, cert: fixtures.cert, mptcp: { handshakeTimeoutMs: 60_000 } }, () => {});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const child = fork(new URL('./held-join-client.mjs', import.meta.url), [String(server.address().port)]);
const next = () => new Promise((r) => child.once('message', r));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function measure() {
  for (let i = 0; i < 4; i++) globalThis.gc();
  const m = process.memoryUsage();
  return { js: m.heapUsed + m.external, rss: m.rss };
}
await next();
const base = measure();
child.send({ cmd: 'open', n: N });
await next();
await sleep(200);
const opened = measure();
const c0 = server.mptcp.counters().MPJoinHeld;
const t0 = performance.now();
child.send({ cmd: 'join' });
await next();
while (server.mptcp.counters().MPJoinHeld - c0 < N && performance.now() - t0 < 4000) await sleep(10);
const held = server.mptcp.counters().MPJoinHeld - c0;
const pending = server.mptcp.endpoint.pendingJoinCount;
const withJoins = measure();
child.send({ cmd: 'exit' });
const out = {
  connections: N,
  heldJoins: held,
  pendingJoinsAtMeasure: pending,
  perConnectionBytes: { js: Math.round((opened.js - base.js) / N), rss: Math.round((opened.rss - base.rss) / N) },
  perHeldJoinBytes: { js: Math.round((withJoins.js - opened.js) / held), rss: Math.round((withJoins.rss - opened.rss) / held) },
  note: 'JS = heapUsed + external after 4 full GCs; RSS includes the socket objects, not the kernel socket buffers',
};
server.close();
process.send?.(out);
if (!process.send) console.log(JSON.stringify(out, null, 2));
setTimeout(() => process.exit(0), 100);
