// One end of a netns benchmark, run inside a namespace (ip netns exec …).
//   server KIND BYTES            → prints {"port":N}; on a connection sends BYTES, then ends
//   client KIND HOST PORT LOCALS → receives until end; prints {"result": …} with a timeline
// KIND: userspace | kernel | tls. Lines on stdout are JSON.
import tls from 'node:tls';
import { createHash } from 'node:crypto';
import { createServer, connect } from '../../dist/index.js';
// Tuning knob for experiments (as in bulk-peer.mjs): BENCH_LIMITS='{"ackEveryBytes":65536}'
const limits = process.env.BENCH_LIMITS ? JSON.parse(process.env.BENCH_LIMITS) : undefined;
import { fixtures } from './common.mjs';

const [role, kind, ...rest] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
process.on('uncaughtException', (e) => { say({ error: e.message }); process.exit(1); });

if (role === 'server') {
  const bytes = Number(rest[0]);
  const block = Buffer.alloc(1 << 20);
  for (let i = 0; i < block.length; i++) block[i] = (i * 131 + 7) & 0xff;
  const onSocket = (s) => {
    s.on('error', () => {});
    const h = createHash('sha256');
    let sent = 0;
    const pump = () => {
      while (sent < bytes) {
        const n = Math.min(block.length, bytes - sent);
        const b = n === block.length ? block : block.subarray(0, n);
        h.update(b);
        sent += n;
        if (!s.write(b)) return s.once('drain', pump);
      }
      say({ sent, sha256: h.digest('hex') });
      s.end();
    };
    s.resume();
    pump();
  };
  const opts = { key: fixtures.key, cert: fixtures.cert };
  const server = kind === 'tls' ? tls.createServer(opts, onSocket) : createServer({ ...opts, mptcp: { kernel: kind === 'kernel', limits } }, onSocket);
  server.listen(0, '0.0.0.0', () => say({ port: server.address().port }));
} else {
  const [host, port, locals] = rest;
  const localAddresses = locals ? locals.split(',') : undefined;
  const o = { host, port: Number(port), ca: fixtures.ca, servername: 'localhost' };
  const s = kind === 'tls' ? tls.connect({ ...o, localAddress: localAddresses?.[0] }) : connect({ ...o, mptcp: kind === 'kernel' ? { transport: 'kernel', localAddresses } : { localAddresses, limits } });
  const t0 = performance.now();
  say({ started: true });
  const h = createHash('sha256');
  let received = 0, last = 0, maxGap = 0, gapAt = 0, first;
  const timeline = [];
  const perSubflow = () => (s.mptcp ? s.mptcp.subflows().map((x) => ({ id: x.id, local: x.localAddress, rx: x.bytesReceived })) : []);
  const tick = setInterval(() => timeline.push({ t: performance.now() - t0, rx: received, subflows: perSubflow() }), 50);
  s.on('data', (d) => {
    const now = performance.now() - t0;
    if (first === undefined) first = now;
    else if (now - last > maxGap && now > 1000) { maxGap = now - last; gapAt = last; }
    last = now;
    received += d.length;
    h.update(d);
  });
  s.on('error', (e) => say({ error: e.message, received }));
  s.on('end', () => {
    clearInterval(tick);
    timeline.push({ t: performance.now() - t0, rx: received, subflows: perSubflow() });
    say({ result: { received, sha256: h.digest('hex'), seconds: (last - first) / 1000, firstByteMs: first, maxGapMs: maxGap, gapAtMs: gapAt, mode: s.mptcp?.mode ?? 'tls', subflows: perSubflow(), timeline } });
    s.end();
    setTimeout(() => process.exit(0), 200);
  });
}
