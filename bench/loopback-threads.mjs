// Diagnostic, not part of `npm run bench`: where each process of a loopback
// transfer spends its CPU, thread by thread (Linux /proc), for node-flag
// variants run interleaved. It tells the main thread's work (JavaScript,
// TLS, syscalls) from V8's helper threads (parallel scavenge, concurrent
// marking and sweeping, ArrayBuffer sweeping: Node's platform workers) and
// libuv's pool. bench/NOTES.md ("Thread by thread") has what it showed.
//
//   KINDS=jsduplex,userspace BYTES=536870912 RUNS=3 \
//   VARIANTS='[{"name":"default"},{"name":"1-thread GC","flags":"--single-threaded-gc"}]' \
//   node bench/loopback-threads.mjs
//
// A variant's `flags` go to both processes, `srv`/`cli` to one of them;
// `warmup` (or WARMUP, bytes, a multiple of 1 MiB) is sent first on the same
// connection and not counted.
// Every wait has a timeout (bench/loopback.mjs's `next`); a failed run is
// reported with its reason and the others go on.
import { fork } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { median } from './lib/common.mjs';
import { next } from './loopback.mjs';

const peer = new URL('./lib/bulk-peer.mjs', import.meta.url);
const TICK = 100; // USER_HZ: /proc's clock ticks per second on Linux

/** CPU seconds per thread group of `pid`: main, V8/Node platform workers ("node"), libuv pool, the rest. */
export function threadCpu(pid) {
  const out = { main: 0, v8: 0, libuv: 0, other: 0 };
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let st;
    try {
      st = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // the thread ended
    }
    const comm = st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'));
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    const s = (Number(f[11]) + Number(f[12])) / TICK; // utime + stime
    const k = tid === String(pid) ? 'main' : comm === 'node' ? 'v8' : comm.startsWith('libuv') ? 'libuv' : 'other';
    out[k] += s;
  }
  return out;
}
const minus = (a, b) => Object.fromEntries(Object.keys(a).map((k) => [k, a[k] - b[k]]));
const split = (s) => (s ?? '').split(' ').filter(Boolean);

async function once(kind, bytes, variant, warmup) {
  const both = split(variant.flags);
  const server = fork(peer, ['server', kind], { execArgv: [...both, ...split(variant.srv)] });
  let client;
  try {
    const { port } = await next(server, 'server start');
    client = fork(peer, ['client', kind, String(port), String(bytes)], { execArgv: [...both, ...split(variant.cli)] });
    await next(client, 'client connect');
    if (warmup > 0) {
      // The same connection carries `warmup` bytes first: V8 has compiled the hot code before the count starts.
      server.send({ expect: warmup });
      await next(server, 'server armed (warm-up)');
      const done = Promise.all([next(server, 'server receive (warm-up)', 300_000), next(client, 'client send (warm-up)', 300_000)]);
      client.send({ go: warmup });
      await done;
    }
    server.send({ expect: bytes });
    await next(server, 'server armed');
    const s0 = threadCpu(server.pid);
    const c0 = threadCpu(client.pid);
    const serverDone = next(server, 'server receive', 300_000);
    const clientDone = next(client, 'client send', 300_000);
    client.send('go');
    const [s, c] = await Promise.all([serverDone, clientDone]);
    const gib = bytes / 2 ** 30;
    const per = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, v / gib]));
    return {
      MBps: bytes / ((s.at - c.startedAt) / 1000) / 1e6,
      cpuSecPerGiB: (s.cpu + c.cpu) / gib,
      server: per(minus(threadCpu(server.pid), s0)),
      client: per(minus(threadCpu(client.pid), c0)),
    };
  } finally {
    server.kill();
    client?.kill();
  }
}

export async function threadsBench({ kinds, bytes, runs, variants, warmup = 0 }) {
  // The client sends whole 1 MiB blocks: any other size would overshoot and
  // spill uncounted warm-up bytes into the counted transfer.
  for (const n of [bytes, warmup, ...variants.map((v) => v.warmup ?? 0)]) {
    if (!Number.isInteger(n) || n < 0 || n % 2 ** 20 !== 0) throw new Error(`bytes and warm-ups must be whole MiB, not ${n}`);
  }
  const rs = {};
  const failed = {};
  for (let i = 0; i < runs; i++) {
    for (const v of variants) {
      for (const kind of kinds) {
        const key = `${kind} | ${v.name}`;
        rs[key] ??= [];
        try {
          rs[key].push(await once(kind, bytes, v, v.warmup ?? warmup));
        } catch (e) {
          failed[key] = e.message;
        }
      }
    }
  }
  const out = {};
  for (const [key, r] of Object.entries(rs)) {
    if (r.length === 0) {
      out[key] = { error: failed[key] };
      continue;
    }
    const med = (f) => median(r.map(f));
    const groups = (side) => Object.fromEntries(Object.keys(r[0][side]).map((k) => [k, med((x) => x[side][k])]));
    out[key] = { MBps: med((x) => x.MBps), cpuSecPerGiB: med((x) => x.cpuSecPerGiB), server: groups('server'), client: groups('client'), runs: r.map((x) => x.MBps) };
    if (failed[key]) out[key].error = failed[key];
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const variants = JSON.parse(process.env.VARIANTS ?? '[{"name":"default"}]');
  const out = await threadsBench({
    kinds: (process.env.KINDS ?? 'jsduplex,userspace').split(','),
    bytes: Number(process.env.BYTES ?? 2 ** 29),
    runs: Number(process.env.RUNS ?? 3),
    variants,
    warmup: Number(process.env.WARMUP ?? 0),
  });
  const f = (x) => x.toFixed(2);
  console.log('CPU s per GiB (medians); server and client: main thread / V8 helper threads / libuv pool');
  for (const [key, o] of Object.entries(out)) {
    if (!o.MBps) console.log(`${key}: failed: ${o.error}`);
    else console.log(`${key}: ${o.MBps.toFixed(1)} MB/s, ${f(o.cpuSecPerGiB)} s/GiB; server ${f(o.server.main)} / ${f(o.server.v8)} / ${f(o.server.libuv)}; client ${f(o.client.main)} / ${f(o.client.v8)} / ${f(o.client.libuv)}${o.error ? ` (a run failed: ${o.error})` : ''}`);
  }
  if (process.env.JSON) console.log(JSON.stringify(out, null, 2));
}
