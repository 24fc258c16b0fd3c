// Quick loopback throughput: plain node:tls vs mptls userspace (one path), in one process.
import tls from 'node:tls';
import { createServer, connect } from '../dist/index.js';
import { fixtures } from '../test/support/fixtures.mjs';
const { key, cert, ca } = fixtures;
const SIZE = Number(process.env.SIZE ?? 256 * 1024 * 1024);
const block = Buffer.alloc(1 << 20, 7);
async function run(kind) {
  const mk = kind === 'tls' ? (h) => tls.createServer({ key, cert }, h) : (h) => createServer({ key, cert }, h);
  let done;
  const finished = new Promise((r) => (done = r));
  const server = mk((s) => { let n = 0; s.on('data', (d) => { n += d.length; if (n >= SIZE) done(); }); });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  const opts = { host: '127.0.0.1', port, ca, servername: 'localhost' };
  const c = kind === 'tls' ? tls.connect(opts) : connect({ ...opts, mptcp: { localAddresses: process.env.PATHS === '2' ? ['127.0.0.1', '127.0.0.2'] : ['127.0.0.1'] } });
  await new Promise((r) => c.once('secureConnect', r));
  const t0 = performance.now(); const cpu0 = process.cpuUsage();
  let sent = 0;
  await new Promise((r) => { const pump = () => { while (sent < SIZE) { sent += block.length; if (!c.write(block)) { c.once('drain', pump); return; } } r(); }; pump(); });
  await finished;
  const dt = (performance.now() - t0) / 1000; const cpu = process.cpuUsage(cpu0);
  c.destroy(); server.close();
  return { kind, MBps: SIZE / dt / 1e6, cpuSecPerGiB: (cpu.user + cpu.system) / 1e6 / (SIZE / 2 ** 30) };
}
for (const k of (process.env.KINDS ?? 'tls,mptls').split(',')) console.log(JSON.stringify(await run(k)));
process.exit(0);
