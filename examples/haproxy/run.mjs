#!/usr/bin/env node
/**
 * mptls behind HAProxy, on loopback (`npm run build && node examples/haproxy/run.mjs`):
 *
 *   1. three mptls servers, createServer({ mptcp: { serverId: 1 | 2 | 3 } }),
 *      on 127.0.0.1 ports chosen by the system;
 *   2. haproxyConfig() writes an haproxy.cfg for them to a temp directory, and
 *      `haproxy -f haproxy.cfg -db` runs it: MP_JOIN subflows are routed by
 *      the top byte of their token (the server id), everything else
 *      round-robin, no per-connection state in the balancer;
 *   3. a few multipath clients through the balancer, each with two subflows
 *      (from 127.0.0.1 and 127.0.0.2), and one plain TLS client;
 *   4. per backend: multipath connections, subflows, refused joins, plain
 *      TLS connections. Then everything stops.
 *
 * Options: --clients N (default 6), --naive (the config without token routing:
 * joins reach the wrong server and are refused), --print-config, --help.
 * Needs the haproxy binary (Debian/Ubuntu: apt-get install haproxy).
 * Exit status 0 on success, 1 on failure.
 */
import { connect, createServer, haproxyConfig } from 'mptls';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { parseArgs } from 'node:util';

const IDS = [1, 2, 3];
const LOCAL_ADDRESSES = ['127.0.0.1', '127.0.0.2'];
const SIZE = 1024 * 1024;
const fixture = (f) => fs.readFileSync(new URL(`../../certs-fixtures/${f}`, import.meta.url));
const key = fixture('server.key');
const cert = fixture('server.pem');
const ca = fixture('ca.pem');

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string' },
    naive: { type: 'boolean' },
    'print-config': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (args.help) {
  process.stdout.write(
    'Usage: node examples/haproxy/run.mjs [--clients N] [--naive] [--print-config]\n\n' +
      'Runs 3 mptls servers (serverId 1, 2, 3) behind a real HAProxy on loopback,\n' +
      'N multipath clients (2 subflows each) and one plain TLS client through it,\n' +
      'and prints where each connection and subflow landed. --naive uses the config\n' +
      'without token routing (joins are refused by the wrong server).\n',
  );
  process.exit(0);
}
const nClients = args.clients === undefined ? 6 : Number(args.clients);
if (!Number.isInteger(nClients) || nClients < 1 || nClients > 200) {
  process.stderr.write(`--clients needs an integer 1..200, got ${args.clients}\n`);
  process.exit(2);
}
// On PATH, or where Debian puts it (/usr/sbin is not on every user's PATH).
const onPath = spawnSync('sh', ['-c', 'command -v haproxy'], { encoding: 'utf8' });
const HAPROXY = onPath.status === 0 && onPath.stdout.trim() ? onPath.stdout.trim() : ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy'].find((f) => fs.existsSync(f));
if (!HAPROXY) {
  process.stderr.write('haproxy not found: install it (Debian/Ubuntu: apt-get install haproxy)\n');
  process.exit(1);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const hex = (n) => `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
const established = (s) => s.mptcp.subflows().filter((f) => f.state === 'established');

// ------------------------------------------------------------ the servers

/** Per backend: what it saw. */
const stats = new Map(IDS.map((id) => [id, { multipath: 0, subflows: 0, plain: 0 }]));

function startServer(serverId) {
  const server = createServer({ key, cert, mptcp: { serverId } }, (socket) => {
    const st = stats.get(serverId);
    socket.on('error', () => {});
    if (socket.mptcp.mode !== 'userspace') {
      // A plain TLS client: one line back, saying who answered.
      st.plain++;
      socket.once('data', () => socket.end(`hello from server ${serverId} (plain TLS)\n`));
      return;
    }
    st.multipath++;
    const seen = new Set();
    const count = () => {
      for (const f of established(socket)) {
        if (!seen.has(f.id)) {
          seen.add(f.id);
          st.subflows++;
        }
      }
    };
    count();
    socket.on('subflow', count);
    // Read the client's bytes; answer with their SHA-256, our id and our subflow count.
    const h = crypto.createHash('sha256');
    let bytes = 0;
    socket.on('data', (d) => {
      h.update(d);
      bytes += d.length;
      if (bytes === SIZE) {
        count();
        socket.end(JSON.stringify({ serverId, bytes, sha256: h.digest('hex'), subflows: established(socket).length }));
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

// ------------------------------------------------------------ HAProxy

async function startHaproxy(cfgText, port) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mptls-haproxy-example-'));
  const file = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(file, cfgText);
  const child = spawn(HAPROXY, ['-f', file, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  let exited = false;
  const exit = new Promise((r) => child.once('exit', () => ((exited = true), r())));
  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 2000);
      await exit;
      clearTimeout(t);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  // Wait until the frontend accepts connections.
  for (const t0 = Date.now(); !exited && Date.now() - t0 < 10_000; await sleep(50)) {
    const up = await new Promise((r) => {
      const c = net.connect(port, '127.0.0.1');
      c.once('connect', () => (c.destroy(), r(true)));
      c.once('error', () => r(false));
    });
    if (up) return { file, stop, log: () => log };
  }
  await stop();
  throw new Error(`haproxy did not start:\n${log}`);
}

// ------------------------------------------------------------ the clients

async function multipathClient(port, n) {
  const socket = connect({ host: '127.0.0.1', port, ca, mptcp: { localAddresses: LOCAL_ADDRESSES } });
  await new Promise((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  // Give the join a moment (it is refused quickly when it reaches the wrong server).
  for (const t0 = Date.now(); Date.now() - t0 < 1000 && established(socket).length < 2 && !(socket.mptcp.counters().MPRstRx > 0); ) await sleep(10);
  const subflows = established(socket).map((f) => `${f.localAddress}`);
  const body = crypto.randomBytes(SIZE);
  const reply = await new Promise((resolve, reject) => {
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (d) => (text += d));
    socket.once('end', () => resolve(text));
    socket.once('error', reject);
    socket.write(body);
  });
  socket.end();
  const r = JSON.parse(reply);
  const token = socket.mptcp.tokens.remote;
  const ok = r.sha256 === crypto.createHash('sha256').update(body).digest('hex');
  const refused = socket.mptcp.counters().MPRstRx ?? 0;
  console.log(
    `client ${n}: token ${hex(token)} (server id ${token >>> 24}) served by server ${r.serverId}; ` +
      `subflows from ${subflows.join(' + ')}${refused ? ` (join refused: MP_TCPRST)` : ''}; 1 MiB ${ok ? 'intact' : 'CORRUPTED'}`,
  );
  return ok && token >>> 24 === r.serverId;
}

async function plainTlsClient(port) {
  const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
  const text = await new Promise((resolve, reject) => {
    let t = '';
    socket.setEncoding('utf8');
    socket.once('secureConnect', () => socket.write('hello\n'));
    socket.on('data', (d) => (t += d));
    socket.once('end', () => resolve(t));
    socket.once('error', reject);
  });
  socket.end();
  console.log(`plain TLS client (node:tls): ${text.trim()}`);
  return /^hello from server \d/.test(text);
}

// ------------------------------------------------------------ main

const servers = [];
let haproxy;
let ok = true;
try {
  for (const id of IDS) servers.push(await startServer(id));
  const port = await freePort();
  const cfg = haproxyConfig({
    listen: `127.0.0.1:${port}`,
    backends: IDS.map((id, i) => ({ id, host: '127.0.0.1', port: servers[i].address().port })),
    tokenRouting: !args.naive,
  });
  if (args['print-config']) console.log(cfg);
  haproxy = await startHaproxy(cfg, port);
  console.log(
    `haproxy on 127.0.0.1:${port} (${args.naive ? 'NAIVE: everything round-robin' : 'joins routed by the token server id'}), config ${haproxy.file}`,
  );
  console.log(`backends: ${IDS.map((id, i) => `server ${id} on 127.0.0.1:${servers[i].address().port}`).join(', ')}\n`);
  for (let i = 1; i <= nClients; i++) ok = (await multipathClient(port, i)) && ok;
  ok = (await plainTlsClient(port)) && ok;

  console.log('\nbackend   multipath connections   subflows   refused joins   plain TLS');
  let refusedTotal = 0;
  for (const [i, id] of IDS.entries()) {
    const st = stats.get(id);
    const refused = servers[i].mptcp.counters().MPJoinNoTokenFound;
    refusedTotal += refused;
    console.log(`server ${id}  ${String(st.multipath).padStart(21)}   ${String(st.subflows).padStart(8)}   ${String(refused).padStart(13)}   ${String(st.plain).padStart(9)}`);
  }
  console.log(
    args.naive
      ? `\n${refusedTotal} join(s) reached a server that never issued their token and were refused; the transfers still completed on their first subflow.`
      : `\nevery join reached the server that issued its token (${refusedTotal} refused).`,
  );
  if (!args.naive && refusedTotal > 0) ok = false;
} catch (e) {
  ok = false;
  console.error(`failed: ${e?.stack ?? e}`);
} finally {
  await haproxy?.stop();
  // Close the servers (connections still open after 2 s are left to process.exit).
  await Promise.race([Promise.all(servers.map((s) => new Promise((r) => s.close(r)))), sleep(2000)]);
}
process.exit(ok ? 0 : 1);
