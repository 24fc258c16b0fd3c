// The server of bench/cluster.mjs: `node cluster-server.mjs single` (one
// process, no primary: today's mptls) or `node cluster-server.mjs N` (cluster
// mode, a primary and N workers). Prints {"port","primary","workers":[pids]}
// once it listens; stops when stdin closes. GET /blob?size=N answers N bytes
// (made once per size: the benchmark measures the transport, not a body
// generator); GET /info waits (≤ 3 s) for the connection's second subflow
// and answers {"subflows"}.
import cluster from 'node:cluster';
import { https, cluster as mptlsCluster } from '../../dist/index.js';
import { fixtures } from './common.mjs';

const mode = process.argv[2] ?? 'single';
const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

function makeServer() {
  const bodies = new Map();
  return https.createServer({ key: fixtures.key, cert: fixtures.cert }, async (req, res) => {
    const url = new URL(req.url, 'https://x');
    if (url.pathname === '/blob') {
      const size = Math.min(Number(url.searchParams.get('size') ?? 0), 64 << 20);
      let body = bodies.get(size);
      if (!body) bodies.set(size, (body = Buffer.alloc(size, 0x5a)));
      res.end(body);
      return;
    }
    if (url.pathname === '/info') {
      const info = req.socket.mptcp;
      const t0 = Date.now();
      while (info.mode === 'userspace' && info.subflows().filter((s) => s.state === 'established').length < 2 && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 2));
      res.end(JSON.stringify({ subflows: info.subflows().filter((s) => s.state === 'established').length }));
      return;
    }
    res.statusCode = 404;
    res.end();
  });
}

if (mode === 'single') {
  const server = makeServer();
  server.listen(0, '127.0.0.1', () => say({ port: server.address().port, primary: null, workers: [process.pid] }));
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
} else if (cluster.isPrimary) {
  const primary = await mptlsCluster.primary({ port: 0, host: '127.0.0.1', workers: Number(mode) });
  say({ port: primary.address.port, primary: process.pid, workers: primary.workers.map((w) => w.process.process.pid) });
  process.stdin.resume();
  process.stdin.on('end', () => void primary.close().then(() => process.exit(0)));
} else {
  makeServer().listen(0);
}
