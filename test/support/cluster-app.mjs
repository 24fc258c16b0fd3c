// An mptls cluster for test/cluster/cluster.test.ts and bench/cluster.mjs.
// Primary: `node cluster-app.mjs [workers] [serverId]` listens on 127.0.0.1:0,
// forks the workers and prints {"port"} once they all listen; then it
// answers commands on stdin, one JSON line each:
//   {"cmd":"counters"}        → {"counters":…, "stats":…, "workers":[{id,pid}]}
//   {"cmd":"restart","on":B}  → whether a dead worker is replaced
//   {"cmd":"metrics"}         → {"metrics": the cluster's Prometheus text}
//   {"cmd":"kill","id":N}     → SIGKILL worker N (→ {"exit":N} when it is gone,
//                               {"worker":N,"pid":…} when its replacement listens)
//   {"cmd":"detach","id":N,"ms":T} → worker N closes its channel to the primary
//                               and lives T ms more (→ {"detached":N} once the
//                               primary saw the channel close, then {"exit":N})
// Worker: an HTTPS server; GET /info waits (≤ 3 s) for the connection's
// second subflow and answers its view: worker id, pid, the server's token,
// the established subflows; GET /blob?size=N streams N deterministic bytes
// with their SHA-256 in x-sha256. It serves multipath and plain TLS clients.
import cluster from 'node:cluster';
import crypto from 'node:crypto';
import readline from 'node:readline';
import { https, cluster as mptlsCluster } from '../../dist/index.js';
import { fixtures } from './fixtures.mjs';

if (cluster.isPrimary) {
  const workers = Number(process.argv[2] ?? 2);
  const serverId = process.argv[3] === undefined ? undefined : Number(process.argv[3]);
  const primary = await mptlsCluster.primary({ port: 0, host: '127.0.0.1', workers, serverId });
  const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
  primary.on('exit', (w) => say({ exit: w.id }));
  primary.on('worker', (w) => say({ worker: w.id, pid: w.process.process.pid }));
  say({ port: primary.address.port, workers: primary.workers.map((w) => ({ id: w.id, pid: w.process.process.pid })) });
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const m = JSON.parse(line);
    if (m.cmd === 'counters') say({ counters: primary.counters(), stats: primary.dispatcher.stats, workers: primary.workers.map((w) => ({ id: w.id, pid: w.process.process.pid, ready: w.ready })) });
    if (m.cmd === 'kill') primary.workers.find((w) => w.id === m.id)?.process.process.kill('SIGKILL');
    if (m.cmd === 'detach') {
      const w = primary.workers.find((x) => x.id === m.id);
      w?.process.once('disconnect', () => say({ detached: w.id }));
      w?.process.send({ app: 'detach', ms: m.ms });
    }
    if (m.cmd === 'restart') primary.restart = m.on;
    if (m.cmd === 'metrics') void primary.metrics().then((text) => say({ metrics: text }));
  });
  rl.on('close', () => void primary.close().then(() => process.exit(0)));
} else {
  const me = mptlsCluster.workerIdentity();
  const server = https.createServer({ key: fixtures.key, cert: fixtures.cert }, async (req, res) => {
    const url = new URL(req.url, 'https://x');
    const info = req.socket.mptcp;
    if (url.pathname === '/info') {
      const t0 = Date.now();
      while (info.mode === 'userspace' && info.subflows().filter((s) => s.state === 'established').length < 2 && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 20));
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ worker: me.workerId, pid: process.pid, mode: info.mode, token: info.tokens?.local, subflows: info.subflows().filter((s) => s.state === 'established').length }));
      return;
    }
    if (url.pathname === '/blob') {
      const size = Number(url.searchParams.get('size') ?? 0);
      const key = Buffer.alloc(16, 7);
      const cipher = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
      const body = cipher.update(Buffer.alloc(size));
      res.setHeader('x-sha256', crypto.createHash('sha256').update(body).digest('hex'));
      res.setHeader('x-worker', String(me.workerId));
      res.end(body);
      return;
    }
    res.statusCode = 404;
    res.end();
  });
  server.listen(0);
  // A worker that is dying slowly: its channel closed, its exit still to come.
  process.on('message', (m) => {
    if (m?.app !== 'detach') return;
    setTimeout(() => process.exit(0), m.ms);
    cluster.worker.disconnect();
  });
}
