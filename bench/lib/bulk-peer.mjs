// Child of loopback.mjs. argv: role (server|client) kind (tls|jsduplex|jsduplex-writev|userspace|userspace2|kernel) [port] [bytes]
process.on("SIGINT", () => process.exit(0));
// server: listens on 127.0.0.1:0, reports {port}; on a connection, counts bytes until `bytes`, reports {done, cpu}.
// client: connects, waits for 'go' (sends `bytes`) or { go: n } (sends n: a warm-up), with backpressure, reports {sent, cpu}.
import tls from 'node:tls';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { createServer, connect } from '../../dist/index.js';
import { fixtures } from './common.mjs';

const [role, kind, portArg, bytesArg] = process.argv.slice(2);
// Tuning knob for experiments: BENCH_LIMITS='{"recvBufferLimit":16777216}'
const limits = process.env.BENCH_LIMITS ? JSON.parse(process.env.BENCH_LIMITS) : undefined;
const bytes = Number(bytesArg ?? 0);
/** A pass-through JS Duplex over a TCP socket: node:tls over it is the ceiling of any JS-stream transport. */
function jsDuplex(sock) {
  const d = new Duplex({
    read() { sock.resume(); },
    write(c, e, cb) { if (sock.write(c)) cb(); else sock.once('drain', () => cb()); },
    final(cb) { sock.end(); cb(); },
  });
  sock.on('data', (x) => { if (!d.push(x)) sock.pause(); });
  sock.on('end', () => d.push(null));
  sock.on('error', (e) => d.destroy(e));
  return d;
}
/**
 * The best pass-through JS Duplex we can write: large reads straight from the
 * socket (64 KiB high-water marks), writev corked into one syscall, no
 * per-chunk callbacks beyond the socket's own. The floor of a JS-stream
 * transport is the better of this and the plain one above.
 */
function jsDuplexWritev(sock) {
  const d = new Duplex({
    readableHighWaterMark: 1 << 16,
    writableHighWaterMark: 1 << 16,
    read() { sock.resume(); },
    write(c, e, cb) { if (sock.write(c)) cb(); else sock.once('drain', () => cb()); },
    writev(chunks, cb) {
      sock.cork();
      let ok = true;
      for (const { chunk } of chunks) ok = sock.write(chunk);
      sock.uncork();
      if (ok) cb(); else sock.once('drain', () => cb());
    },
    final(cb) { sock.end(); cb(); },
  });
  sock.setNoDelay(true);
  sock.on('data', (x) => { if (!d.push(x)) sock.pause(); });
  sock.on('end', () => d.push(null));
  sock.on('error', (e) => d.destroy(e));
  return d;
}
const wrap = (k) => (k === 'jsduplex-writev' ? jsDuplexWritev : jsDuplex);
const isDuplex = (k) => k === 'jsduplex' || k === 'jsduplex-writev';
const cpuNow = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const sysNow = () => process.cpuUsage().system / 1e6;

if (role === 'server') {
  let expect = 0, cpu0 = 0, sys0 = 0, got = 0;
  // Armed only on the driver's word, and says so: the driver sends the client's 'go' after this answer.
  process.on('message', (m) => { if (m.expect) { expect = m.expect; got = 0; cpu0 = cpuNow(); sys0 = sysNow(); process.send({ armed: true }); } });
  const onSocket = (s) => {
    s.on('error', () => {});
    s.on('data', (d) => {
      got += d.length;
      if (expect && got >= expect) { process.send({ done: true, at: Date.now(), cpu: cpuNow() - cpu0, sys: sysNow() - sys0, mode: s.mptcp?.mode ?? 'tls' }); expect = 0; }
    });
  };
  const opts = { key: fixtures.key, cert: fixtures.cert };
  const server = isDuplex(kind)
    ? net.createServer((raw) => { const t = new tls.TLSSocket(wrap(kind)(raw), { isServer: true, secureContext: tls.createSecureContext(opts) }); onSocket(t); })
    : kind === 'tls' ? tls.createServer(opts, onSocket) : createServer({ ...opts, mptcp: { kernel: kind === 'kernel', limits } }, onSocket);
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
} else {
  const port = Number(portArg);
  const o = { host: '127.0.0.1', port, ca: fixtures.ca, servername: 'localhost' };
  const s = isDuplex(kind)
    ? tls.connect({ ...o, socket: wrap(kind)(net.connect(port, '127.0.0.1')) })
    : kind === 'tls' ? tls.connect(o)
    : connect({ ...o, mptcp: kind === 'kernel' ? { transport: 'kernel' } : { localAddresses: kind === 'userspace2' ? ['127.0.0.1', '127.0.0.2'] : ['127.0.0.1'], limits } });
  s.on('error', (e) => { process.send({ error: e.message }); });
  // Ready once the connection is what it should be (two subflows up for userspace2).
  s.once('secureConnect', () => {
    const want = kind === 'userspace2' ? 2 : 1;
    const check = () => {
      const up = s.mptcp?.subflows?.().filter((f) => f.state === 'established').length ?? 1;
      if (kind !== 'userspace2' || up >= want) process.send({ ready: true, mode: s.mptcp?.mode ?? 'tls', subflows: up });
      else setTimeout(check, 10);
    };
    check();
  });
  const block = Buffer.alloc(1 << 20, 0x5a);
  process.on('message', (m) => {
    if (m !== 'go' && !(m?.go > 0)) return;
    const total = m === 'go' ? bytes : m.go;
    const cpu0 = cpuNow();
    const sys0 = sysNow();
    const t0 = Date.now();
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        sent += block.length;
        if (!s.write(block)) { s.once('drain', pump); return; }
      }
      process.send({ sent, startedAt: t0, cpu: cpuNow() - cpu0, sys: sysNow() - sys0 });
    };
    pump();
  });
}
