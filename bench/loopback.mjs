// Scenario 1: loopback, one path, 1 GiB: MB/s and CPU seconds per GiB for
// plain node:tls, mptls userspace, mptls kernel mode. Server and client are
// separate processes; CPU is both processes' user+system time.
import { fork } from 'node:child_process';
import { median } from './lib/common.mjs';

const peer = new URL('./lib/bulk-peer.mjs', import.meta.url);
const next = (p) => new Promise((r) => p.once('message', r));

async function once(kind, bytes) {
  const server = fork(peer, ['server', kind]);
  const { port } = await next(server);
  const client = fork(peer, ['client', kind, String(port), String(bytes)]);
  const ready = await next(client);
  if (ready.error) throw new Error(ready.error);
  server.send({ expect: bytes });
  const serverDone = next(server);
  const clientDone = next(client);
  client.send('go');
  const [s, c] = await Promise.all([serverDone, clientDone]);
  server.kill();
  client.kill();
  const seconds = (s.at - c.startedAt) / 1000;
  return { MBps: bytes / seconds / 1e6, cpuSecPerGiB: (s.cpu + c.cpu) / (bytes / 2 ** 30), mode: ready.mode, serverMode: s.mode };
}

export async function loopbackBench({ bytes = 2 ** 30, runs = 3, kinds = ['tls', 'jsduplex', 'userspace', 'kernel'] } = {}) {
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
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await loopbackBench({ bytes: Number(process.env.BYTES ?? 2 ** 30), runs: Number(process.env.RUNS ?? 3), kinds: (process.env.KINDS ?? 'tls,userspace').split(',') }), null, 2));
  process.exit(0);
}
