// Plain-TCP ends for the tunnel tests and benchmark (run inside a namespace
// with `ip netns exec`, or on loopback). One JSON line on stdout each.
//   sink HOST PORT           a TCP sink: reads each connection to its end,
//                            answers {"bytes","sha256"} and closes; prints {"port"}
//   source HOST PORT BYTES   sends BYTES deterministic bytes, half-closes, waits
//                            for the sink's answer; prints {bytes, sha256, ms,
//                            mbit, reply} (mbit: BYTES over the time to the answer)
//   http HOST PORT BYTES     an HTTP server whose /file is BYTES deterministic
//                            bytes (x-sha256 header); prints {"port"}
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';

const [role, host, portText, bytesText] = process.argv.slice(2);
const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const block = Buffer.alloc(1 << 20);
for (let i = 0; i < block.length; i++) block[i] = (i * 131 + 7) & 0xff;

if (role === 'sink') {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const h = createHash('sha256');
    let n = 0;
    s.on('data', (d) => {
      h.update(d);
      n += d.length;
    });
    s.on('end', () => s.end(JSON.stringify({ bytes: n, sha256: h.digest('hex') })));
    s.on('error', () => {});
  });
  server.listen(Number(portText), host, () => say({ port: server.address().port }));
} else if (role === 'source') {
  const total = Number(bytesText);
  const h = createHash('sha256');
  const t0 = performance.now();
  const s = net.connect({ host, port: Number(portText), allowHalfOpen: true });
  let sent = 0;
  let reply = '';
  const pump = () => {
    while (sent < total) {
      const n = Math.min(block.length, total - sent);
      const b = n === block.length ? block : block.subarray(0, n);
      h.update(b);
      sent += n;
      if (!s.write(b)) return void s.once('drain', pump);
    }
    s.end();
  };
  s.on('connect', pump);
  s.on('data', (d) => (reply += d));
  s.on('end', () => {
    const ms = performance.now() - t0;
    let parsed;
    try {
      parsed = JSON.parse(reply);
    } catch {
      parsed = { error: `bad reply ${reply.slice(0, 80)}` };
    }
    say({ bytes: sent, sha256: h.digest('hex'), ms, mbit: (sent * 8) / (ms * 1000), reply: parsed });
    process.exit(0);
  });
  s.on('error', (e) => {
    say({ error: e.message, bytes: sent });
    process.exit(1);
  });
} else if (role === 'http') {
  const size = Number(bytesText);
  const body = Buffer.alloc(size);
  for (let i = 0; i < size; i += block.length) block.copy(body, i, 0, Math.min(block.length, size - i));
  const sha = createHash('sha256').update(body).digest('hex');
  const server = http.createServer((req, res) => {
    if (req.url !== '/file') {
      res.statusCode = 404;
      res.end();
      return;
    }
    res.setHeader('x-sha256', sha);
    res.end(body);
  });
  server.listen(Number(portText), host, () => say({ port: server.address().port, sha256: sha }));
} else {
  say({ error: `unknown role ${role}` });
  process.exit(2);
}
