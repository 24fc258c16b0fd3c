// The clients of bench/cluster.mjs, in their own process:
//   node cluster-client.mjs PORT bulk CONNECTIONS SECONDS SIZE
//     CONNECTIONS two-path connections (127.0.0.1 + 127.0.0.2), each
//     downloading SIZE-byte bodies back to back for SECONDS → MB/s in total;
//   node cluster-client.mjs PORT connect CONCURRENCY SECONDS
//     new connection + join + one request (the server answers once the
//     second subflow is up), CONCURRENCY at a time, for SECONDS → per second.
// Prints one JSON line.
import { https } from '../../dist/index.js';
import { fixtures } from './common.mjs';

const [port, phase, nText, secondsText, sizeText] = process.argv.slice(2);
const n = Number(nText);
const ms = Number(secondsText) * 1000;
const mptcp = { localAddresses: ['127.0.0.1', '127.0.0.2'] };
/** This process's CPU (user + system) since `from`, in seconds. */
const cpuSince = (from) => {
  const u = process.cpuUsage(from);
  return (u.user + u.system) / 1e6;
};

function get(agent, path) {
  return new Promise((resolve, reject) => {
    const req = https.get(`https://127.0.0.1:${port}${path}`, { ca: fixtures.ca, agent }, (res) => {
      let bytes = 0;
      const chunks = [];
      res.on('data', (d) => {
        bytes += d.length;
        if (path === '/info') chunks.push(d);
      });
      res.on('end', () => resolve({ bytes, socket: res.socket, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.setTimeout(20_000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
  });
}

if (phase === 'bulk') {
  const size = Number(sizeText);
  const agents = Array.from({ length: n }, () => new https.Agent({ keepAlive: true, maxSockets: 1, mptcp }));
  // Every connection up with both subflows before the clock starts.
  const ups = await Promise.all(agents.map((a) => get(a, '/info')));
  const twoPaths = ups.filter((u) => JSON.parse(u.body).subflows === 2).length;
  let bytes = 0;
  let errors = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    agents.map(async (a) => {
      while (performance.now() - t0 < ms) {
        try {
          const r = await get(a, `/blob?size=${size}`);
          bytes += r.bytes; // after the await: \`bytes += await …\` would read bytes before it
        } catch {
          errors++;
        }
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ phase, connections: n, twoPaths, seconds: s, bytes, MBps: bytes / s / 1e6, errors, clientCpuS: cpuSince(cpu0) }));
  for (const a of agents) a.destroy();
} else {
  let done = 0;
  let joined = 0;
  let errors = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (performance.now() - t0 < ms) {
        const agent = new https.Agent({ keepAlive: false, mptcp });
        try {
          const r = await get(agent, '/info');
          done++;
          if (JSON.parse(r.body).subflows === 2) joined++;
        } catch {
          errors++;
        }
        agent.destroy();
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ phase, concurrency: n, seconds: s, connections: done, joined, perSecond: joined / s, errors, clientCpuS: cpuSince(cpu0) }));
}
process.exit(0);
