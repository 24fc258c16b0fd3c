// Scenario 1: loopback, one path, 1 GiB: MB/s and CPU seconds per GiB for
// plain node:tls, mptls userspace, mptls kernel mode. Server and client are
// separate processes; CPU is both processes' user+system time.
import { fork, spawn, execFileSync } from 'node:child_process';
import { median } from './lib/common.mjs';

const peer = new URL('./lib/bulk-peer.mjs', import.meta.url);
/**
 * Experiment knob, off by default: node flags for both peers of every kind,
 * e.g. BENCH_NODE_FLAGS=--no-concurrent-array-buffer-sweeping (bench/NOTES.md,
 * "A second look" under the loopback section).
 */
const execArgv = [...process.execArgv, ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean)];
/** The next message of `p`, within `ms`; rejects with `what` on a timeout, an early exit or an error message. */
export function next(p, what, ms = 30_000) {
  return new Promise((resolve, reject) => {
    const done = (fn, v) => {
      clearTimeout(t);
      p.removeListener('message', onMessage);
      p.removeListener('exit', onExit);
      fn(v);
    };
    const onMessage = (m) => (m?.error ? done(reject, new Error(`${what}: ${m.error}`)) : done(resolve, m));
    const onExit = (code) => done(reject, new Error(`${what}: the process exited (${code})`));
    const t = setTimeout(() => done(reject, new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
    p.on('message', onMessage);
    p.once('exit', onExit);
  });
}

async function once(kind, bytes) {
  const server = fork(peer, ['server', kind], { execArgv });
  let client;
  try {
    const { port } = await next(server, 'server start');
    client = fork(peer, ['client', kind, String(port), String(bytes)], { execArgv });
    const ready = await next(client, 'client connect');
    // The server counts from here: the client goes only once the server says it is armed.
    server.send({ expect: bytes });
    await next(server, 'server armed');
    const serverDone = next(server, 'server receive', 300_000);
    const clientDone = next(client, 'client send', 300_000);
    client.send('go');
    const [s, c] = await Promise.all([serverDone, clientDone]);
    const seconds = (s.at - c.startedAt) / 1000;
    const gib = bytes / 2 ** 30;
    return {
      MBps: bytes / seconds / 1e6,
      cpuSecPerGiB: (s.cpu + c.cpu) / gib,
      sysSecPerGiB: (s.sys + c.sys) / gib,
      userSecPerGiB: (s.cpu - s.sys + c.cpu - c.sys) / gib,
      serverCpuSecPerGiB: s.cpu / gib,
      clientCpuSecPerGiB: c.cpu / gib,
      mode: ready.mode,
      subflows: ready.subflows,
      serverMode: s.mode,
    };
  } finally {
    server.kill();
    client?.kill();
  }
}

/**
 * Runs are interleaved (round r runs every kind once), so a slow phase of
 * the machine (a shared host: the same AES work takes up to 1.6× as long
 * from one minute to the next) falls on every kind alike; medians per kind.
 */
export async function loopbackBench({ bytes = 2 ** 30, runs = 5, kinds = ['tls', 'jsduplex', 'jsduplex-writev', 'userspace', 'userspace2', 'kernel'] } = {}) {
  const out = {};
  const rs = Object.fromEntries(kinds.map((k) => [k, []]));
  const failed = {};
  for (let i = 0; i < runs; i++) {
    for (const kind of kinds) {
      if (failed[kind]) continue;
      try {
        rs[kind].push(await once(kind, bytes));
      } catch (e) {
        failed[kind] = e.message;
      }
    }
  }
  for (const kind of kinds) {
    const r = rs[kind];
    if (failed[kind] && r.length === 0) out[kind] = { error: failed[kind] };
    else if (r.length) {
      out[kind] = { MBps: median(r.map((x) => x.MBps)), cpuSecPerGiB: median(r.map((x) => x.cpuSecPerGiB)), userSecPerGiB: median(r.map((x) => x.userSecPerGiB)), sysSecPerGiB: median(r.map((x) => x.sysSecPerGiB)), runs: r, mode: r[0].mode };
      if (failed[kind]) out[kind].error = failed[kind];
    }
  }
  // What Linux's MPTCP costs by itself on loopback: iperf3 over TCP and over
  // MPTCP (mptcpize), no TLS, no Node; interleaved, the same runs count.
  out.rawKernel = await rawKernel(Math.min(runs, 3));
  if (out.tls?.MBps) for (const k of kinds) if (out[k]?.MBps) out[k].ratioToTls = out[k].MBps / out.tls.MBps;
  if (out.jsduplex?.MBps) for (const k of kinds) if (out[k]?.MBps) out[k].ratioToJsDuplex = out[k].MBps / out.jsduplex.MBps;
  // The floor of a JS-stream transport: the better of the two pass-through Duplexes.
  const floors = ['jsduplex', 'jsduplex-writev'].map((k) => out[k]).filter((d) => d?.MBps);
  if (floors.length) {
    const floor = floors.reduce((a, b) => (b.MBps > a.MBps ? b : a));
    out.floor = { MBps: floor.MBps, cpuSecPerGiB: floor.cpuSecPerGiB, kind: floor === out.jsduplex ? 'jsduplex' : 'jsduplex-writev' };
    for (const k of kinds) if (out[k]?.MBps) {
      out[k].ratioToFloor = out[k].MBps / floor.MBps;
      out[k].cpuToFloor = out[k].cpuSecPerGiB / floor.cpuSecPerGiB;
    }
  }
  return out;
}

/** One iperf3 run of `seconds` on 127.0.0.1 (MPTCP through mptcpize when `mptcp`): Gbit/s at the receiver. */
async function iperf(mptcp, seconds) {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const wrap = (args) => (mptcp ? ['mptcpize', ['run', 'iperf3', ...args]] : ['iperf3', args]);
  const [sc, sa] = wrap(['-s', '-1', '-B', '127.0.0.1', '-p', String(port)]);
  const srv = spawn(sc, sa, { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 300));
    const [cc, ca] = wrap(['-c', '127.0.0.1', '-p', String(port), '-t', String(seconds), '-J']);
    const j = JSON.parse(execFileSync(cc, ca, { timeout: (seconds + 15) * 1000, encoding: 'utf8' }));
    if (j.error) throw new Error(j.error);
    return j.end.sum_received.bits_per_second / 1e9;
  } finally {
    srv.kill('SIGKILL');
  }
}

async function rawKernel(runs) {
  try {
    const tcp = [], mptcp = [];
    for (let i = 0; i < runs; i++) {
      tcp.push(await iperf(false, 3));
      mptcp.push(await iperf(true, 3));
    }
    return { tcpGbps: median(tcp), mptcpGbps: median(mptcp), ratio: median(mptcp) / median(tcp), tcp, mptcp };
  } catch (e) {
    return { error: `iperf3/mptcpize: ${e.message}` };
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await loopbackBench({ bytes: Number(process.env.BYTES ?? 2 ** 30), runs: Number(process.env.RUNS ?? 5), kinds: (process.env.KINDS ?? 'tls,userspace').split(',') }), null, 2));
  process.exit(0);
}
