// Scenario 1: loopback, one path, 1 GiB: MB/s and CPU seconds per GiB for
// plain node:tls, mptls userspace, mptls kernel mode. Server and client are
// separate processes; CPU is both processes' user+system time.
import { fork } from 'node:child_process';
import { median } from './lib/common.mjs';

const peer = new URL('./lib/bulk-peer.mjs', import.meta.url);
/** The next message of `p`, within `ms`; rejects with `what` on a timeout, an early exit or an error message. */
function next(p, what, ms = 30_000) {
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
  const server = fork(peer, ['server', kind]);
  let client;
  try {
    const { port } = await next(server, 'server start');
    client = fork(peer, ['client', kind, String(port), String(bytes)]);
    const ready = await next(client, 'client connect');
    // The server counts from here: the client goes only once the server says it is armed.
    server.send({ expect: bytes });
    await next(server, 'server armed');
    const serverDone = next(server, 'server receive', 300_000);
    const clientDone = next(client, 'client send', 300_000);
    client.send('go');
    const [s, c] = await Promise.all([serverDone, clientDone]);
    const seconds = (s.at - c.startedAt) / 1000;
    return { MBps: bytes / seconds / 1e6, cpuSecPerGiB: (s.cpu + c.cpu) / (bytes / 2 ** 30), mode: ready.mode, subflows: ready.subflows, serverMode: s.mode };
  } finally {
    server.kill();
    client?.kill();
  }
}

export async function loopbackBench({ bytes = 2 ** 30, runs = 3, kinds = ['tls', 'jsduplex', 'jsduplex-writev', 'userspace', 'userspace2', 'kernel'] } = {}) {
  const out = {};
  for (const kind of kinds) {
    const rs = [];
    for (let i = 0; i < runs; i++) {
      try {
        rs.push(await once(kind, bytes));
      } catch (e) {
        out[kind] = { error: e.message };
        break;
      }
    }
    if (rs.length) out[kind] = { MBps: median(rs.map((r) => r.MBps)), cpuSecPerGiB: median(rs.map((r) => r.cpuSecPerGiB)), runs: rs, mode: rs[0].mode };
  }
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

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await loopbackBench({ bytes: Number(process.env.BYTES ?? 2 ** 30), runs: Number(process.env.RUNS ?? 3), kinds: (process.env.KINDS ?? 'tls,userspace').split(',') }), null, 2));
  process.exit(0);
}
