// npm run bench: every scenario runs mptls and its baselines in the same run.
// Writes bench/results/<date>.json and regenerates bench/RESULTS.md.
//   node bench/run.mjs [--only loopback,handshake,memory,netns,outage,cluster,tunnel] [--quick]
import fs from 'node:fs';
import { machine, gitRev } from './lib/common.mjs';
import { writeResultsMd } from './lib/report.mjs';

const args = process.argv.slice(2);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1].split(',') : ['loopback', 'handshake', 'memory', 'netns', 'outage', 'cluster', 'tunnel'];
const quick = args.includes('--quick');
const results = { date: new Date().toISOString(), command: `node bench/run.mjs ${args.join(' ')}`.trim(), commit: gitRev(), machine: machine(), scenarios: {} };

const log = (m) => process.stderr.write(`[bench] ${m}\n`);
if (only.includes('loopback')) {
  log('1. loopback bulk transfer');
  const { loopbackBench } = await import('./loopback.mjs');
  results.scenarios.loopback = await loopbackBench({ bytes: quick ? 2 ** 28 : 2 ** 30, runs: quick ? 2 : 5 });
}
if (only.includes('netns')) {
  log('2-3. network namespaces: aggregation and failover');
  const { netnsBench } = await import('./netns.mjs');
  results.scenarios.netns = await netnsBench({ quick });
}
if (only.includes('handshake')) {
  log('4. handshakes');
  const { handshakeBench } = await import('./handshake.mjs');
  results.scenarios.handshake = await handshakeBench({ runs: quick ? 5 : 41 });
}
if (only.includes('memory')) {
  log('5. memory per idle connection');
  const { memoryBench } = await import('./memory.mjs');
  results.scenarios.memory = await memoryBench({ counts: quick ? [1000] : [1000, 10000] });
}
if (only.includes('outage')) {
  log('6. outages: every subflow reset, both links down, address move (issue 13)');
  const { outageBench } = await import('./outage.mjs');
  results.scenarios.outage = await outageBench({ runs: quick ? 1 : 3 });
}

if (only.includes('cluster')) {
  log('7. cluster mode: one process, 1 worker, 2 workers (issue 16)');
  const { clusterBench } = await import('./cluster.mjs');
  results.scenarios.cluster = await clusterBench({ seconds: quick ? 3 : 8 });
}

if (only.includes('tunnel')) {
  log('8. mptls tunnel + proxy for any TCP application, against plain TCP and mptcpize (issue 17)');
  const { tunnelBench } = await import('./tunnel.mjs');
  results.scenarios.tunnel = await tunnelBench({ runs: quick ? 1 : 3 });
}

fs.mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
const file = new URL(`./results/${results.date.slice(0, 19).replace(/:/g, '-')}.json`, import.meta.url);
fs.writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
writeResultsMd(results, file);
log(`wrote ${file.pathname} and bench/RESULTS.md`);
process.exit(0);
