// Scenarios 2 and 3 on the namespace testbed (test/support/topology.ts, compiled to
// build/testbed by `npm run bench`): aggregation over shaped paths and
// failover, mptls userspace vs Linux kernel MPTCP (mptls kernel mode: node:tls
// over an IPPROTO_MPTCP socket) vs plain node:tls on one path.
import fs from 'node:fs';
import readline from 'node:readline';
import { median } from './lib/common.mjs';
import { svgChart } from './lib/svg.mjs';

const { Topology } = await import('../build/testbed/test/support/topology.js');
const peer = new URL('./lib/ns-peer.mjs', import.meta.url).pathname;

function lines(child) {
  const rl = readline.createInterface({ input: child.stdout });
  const queue = [];
  const waiters = [];
  rl.on('line', (l) => {
    let v;
    try { v = JSON.parse(l); } catch { return; }
    const w = waiters.shift();
    if (w) w(v); else queue.push(v);
  });
  return () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r)));
}

function timeout(p, ms, what) {
  return Promise.race([p, new Promise((_, j) => setTimeout(() => j(new Error(`timeout: ${what}`)), ms))]);
}

/** One transfer server → client; returns the client's result. */
async function transfer(topo, kind, bytes, { paths, failAt, fail } = {}) {
  const server = topo.spawn('server', process.execPath, [peer, 'server', kind, String(bytes)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const sNext = lines(server);
  const { port } = await timeout(sNext(), 10000, 'server port');
  const locals = kind === 'tls' ? [topo.clientAddress(1)] : Array.from({ length: paths }, (_, i) => topo.clientAddress(i + 1));
  const client = topo.spawn('client', process.execPath, [peer, 'client', kind, topo.serverAddress(1), String(port), kind === 'kernel' ? topo.clientAddress(1) : locals.join(',')], { stdio: ['ignore', 'pipe', 'inherit'] });
  const cNext = lines(client);
  await timeout(cNext(), 10000, 'client start'); // its clock starts now: the failure time lines up with its timeline
  let timer;
  if (failAt !== undefined) timer = setTimeout(() => fail(), failAt);
  try {
    const r = await timeout(cNext(), 120000, `${kind} transfer`);
    const sent = await timeout(sNext(), 5000, 'server digest').catch(() => undefined);
    if (r.error) throw new Error(r.error);
    r.result.sent = sent;
    return r.result;
  } finally {
    clearTimeout(timer);
    client.kill();
    server.kill();
  }
}

/** Goodput (Mbit/s) from the timeline between 1 s after the first byte and the last sample before the end. */
function goodput(res) {
  const tl = res.timeline;
  const start = res.firstByteMs + 1000;
  const a = tl.find((p) => p.t >= start) ?? tl[0];
  const b = tl[tl.length - 2] ?? tl[tl.length - 1];
  if (!a || !b || b.t <= a.t) return (res.received * 8) / res.seconds / 1e6;
  return ((b.rx - a.rx) * 8) / ((b.t - a.t) / 1000) / 1e6;
}

const AGG = [
  { name: '2 × 50 Mbit/s', rates: [50, 50] },
  { name: '4 × 50 Mbit/s', rates: [50, 50, 50, 50] },
  { name: '20 + 80 Mbit/s', rates: [20, 80] },
  { name: '2 × 50 Mbit/s, 2 % random loss on path 1', rates: [50, 50], lossPercent: 2 },
];

export async function netnsBench({ quick = false, runs = quick ? 1 : 3 } = {}) {
  const avail = Topology.available();
  if (!avail.ok) return { note: `skipped: ${avail.reason}` };
  const seconds = quick ? 4 : 8;
  const out = { note: `Two namespaces, one veth pair per path, tbf on each end (design notes §6). The server sends; goodput is what the client application receives from 1 s after the first byte to the end (${seconds} s worth of the summed rate). Medians of ${runs} runs.`, aggregation: [], failover: [] };
  // Experiment knobs: BENCH_AGG='20 + 80' (rows whose name starts so), BENCH_KINDS='userspace', BENCH_NO_FAILOVER=1.
  const rowsWanted = process.env.BENCH_AGG ? AGG.filter((a) => process.env.BENCH_AGG.split(',').some((p) => a.name.startsWith(p))) : AGG;
  const kindsWanted = process.env.BENCH_KINDS ? process.env.BENCH_KINDS.split(',') : ['userspace', 'kernel', 'tls'];
  for (const sc of rowsWanted) {
    const sum = sc.rates.reduce((a, b) => a + b, 0);
    const bytes = Math.round((sum * 1e6 * seconds) / 8);
    const row = { name: sc.name, rates: sc.rates, sumMbit: sum };
    const topo = await Topology.create({ paths: sc.rates.map((r) => ({ rateMbit: r })), clientMptcpEndpoints: true, mptcpLimits: { subflows: 8, addAddrAccepted: 8 } });
    try {
      // nftables drops that share of the packets leaving either end of path 1 (the plain-TLS baseline's path).
      if (sc.lossPercent) topo.lossPath(1, sc.lossPercent);
      for (const kind of kindsWanted) {
        const rs = [];
        for (let i = 0; i < runs; i++) {
          const r = await transfer(topo, kind, kind === 'tls' ? Math.round((sc.rates[0] * 1e6 * seconds) / 8) : bytes, { paths: sc.rates.length });
          rs.push({ mbit: goodput(r), intact: r.sent ? r.sent.sha256 === r.sha256 && r.sent.sent === r.received : undefined, mode: r.mode, subflows: r.subflows.length });
        }
        const key = kind === 'userspace' ? 'mptls' : kind === 'kernel' ? 'kernel' : 'plainTls';
        row[key] = { mbit: median(rs.map((x) => x.mbit)), runs: rs };
      }
    } finally {
      topo.destroy();
    }
    out.aggregation.push(row);
  }
  for (const failure of process.env.BENCH_NO_FAILOVER ? [] : ['kill', 'blackhole']) {
    const row = { kind: failure === 'kill' ? 'path 1 link down' : 'path 1 blackholed (1 kbit tbf)' };
    for (const kind of ['userspace', 'kernel']) {
      const rs = [];
      for (let i = 0; i < runs; i++) {
        const topo = await Topology.create({ paths: [{ rateMbit: 50 }, { rateMbit: 50 }], clientMptcpEndpoints: true, mptcpLimits: { subflows: 8, addAddrAccepted: 8 } });
        try {
          const bytes = Math.round((100e6 * 6) / 8);
          const r = await transfer(topo, kind, bytes, { paths: 2, failAt: 2000, fail: () => (failure === 'kill' ? topo.killPath(1) : topo.blackholePath(1)) });
          rs.push({ maxStallMs: r.maxGapMs, bytesLost: r.sent ? r.sent.sent - r.received : undefined, intact: r.sent ? r.sent.sha256 === r.sha256 : undefined, timeline: r.timeline, gapAtMs: r.gapAtMs });
        } catch (e) {
          rs.push({ error: e.message });
        } finally {
          topo.destroy();
        }
      }
      const ok = rs.filter((x) => !x.error);
      const key = kind === 'userspace' ? 'mptls' : 'kernel';
      row[key] = { maxStallMs: ok.length ? median(ok.map((x) => x.maxStallMs)) : undefined, bytesLost: ok.length ? Math.max(...ok.map((x) => x.bytesLost ?? 0)) : undefined, runs: rs.map(({ timeline, ...x }) => x) };
      const chartRun = ok[0];
      if (chartRun && kind === 'userspace') {
        const name = `failover-${failure}.svg`;
        fs.writeFileSync(new URL(`./results/${name}`, import.meta.url), svgChart(chartRun.timeline, { title: `mptls userspace, 2 × 50 Mbit/s, path 1 ${failure === 'kill' ? 'link down' : 'blackholed'} at t = 2 s`, markAt: 2000 }));
        row.svg = `results/${name}`;
      }
    }
    out.failover.push(row);
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await netnsBench({ quick: !!process.env.QUICK }), null, 2));
  process.exit(0);
}
