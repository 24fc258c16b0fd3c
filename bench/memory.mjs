// Scenario 5: RSS per idle connection with 2 subflows, at 1 000 and 10 000
// connections. Server and client run in child processes (with --expose-gc and
// a raised fd limit); RSS is read from /proc after GC, before and after.
import { fork } from 'node:child_process';

function child(file) {
  const p = fork(new URL(file, import.meta.url), [], { execArgv: ['--expose-gc', '--max-old-space-size=8192'], stdio: ['inherit', 'inherit', 'inherit', 'ipc'] });
  const next = () => new Promise((r) => p.once('message', r));
  return { p, next, ask: (m) => { const w = next(); p.send(m); return w; } };
}

/**
 * This machine caps open files at 20 000 per process (no CAP_SYS_RESOURCE to
 * raise it), and each connection holds 2 sockets on each side: above 8 000
 * connections the run is sharded over several server/client process pairs of
 * at most 5 000 connections each, and RSS is summed over the shards.
 */
const SHARD = 5000;

export async function memoryBench({ counts = [1000, 10000] } = {}) {
  const out = [];
  for (const n of counts) {
    const shards = n > 8000 ? Math.ceil(n / SHARD) : 1;
    const per = Math.ceil(n / shards);
    let s0 = 0, c0 = 0, s1 = 0, c1 = 0, joined = 0, open = 0;
    const kids = [];
    const t0 = performance.now();
    for (let k = 0; k < shards; k++) {
      const server = child('./lib/mem-server.mjs');
      const { port } = await server.next();
      const client = child('./lib/mem-client.mjs');
      await client.next();
      kids.push(server, client);
      s0 += (await server.ask('rss')).rssKiB;
      c0 += (await client.ask({ cmd: 'rss' })).rssKiB;
      const opened = await client.ask({ cmd: 'open', port, n: per, conc: 32 });
      joined += opened.joined;
      const sr = await server.ask('rss');
      s1 += sr.rssKiB;
      open += sr.open;
      c1 += (await client.ask({ cmd: 'rss' })).rssKiB;
    }
    const total = per * shards;
    out.push({
      connections: total,
      shards,
      joined,
      serverOpen: open,
      serverKiBPerConnection: (s1 - s0) / total,
      clientKiBPerConnection: (c1 - c0) / total,
      serverRssMiB: s1 / 1024,
      clientRssMiB: c1 / 1024,
      setupSeconds: (performance.now() - t0) / 1000,
    });
    for (const k of kids) k.p.kill('SIGKILL');
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await memoryBench({ counts: (process.env.COUNTS ?? '1000').split(',').map(Number) }), null, 2));
  process.exit(0);
}
