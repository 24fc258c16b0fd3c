#!/usr/bin/env node
/**
 * WebSockets over TLS-bound multipath TCP with `ws`: the server on
 * `https.createServer` of mptls, the client with `agent: new https.Agent({ mptcp })`.
 *
 *   npm run build && node examples/ws.mjs
 *
 * Starts an mptls HTTPS server on 127.0.0.1 (a throw-away certificate) with a
 * ws server on it; the client connects from 127.0.0.1, waits for the join
 * from 127.0.0.2, then exchanges messages both ways (a 1 MiB one too) and
 * checks the server saw a multipath ('userspace') connection with 2 subflows.
 * Exit status 0 on success, 1 on failure (or after 20 s).
 */
import { https, generateSelfSigned } from 'mptls';
import crypto from 'node:crypto';
import { once } from 'node:events';
import { WebSocket, WebSocketServer } from 'ws';

const LOCAL_ADDRESSES = ['127.0.0.1', '127.0.0.2'];
setTimeout(() => {
  console.error('ws example FAILED: no result within 20 s');
  process.exit(1);
}, 20_000).unref();

const established = (s) => s?.mptcp?.subflows().filter((f) => f.state === 'established') ?? [];
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex').slice(0, 16);

async function main() {
  const { key, cert, ca } = await generateSelfSigned();
  const server = https.createServer({ key, cert, mptcp: {} });
  const wss = new WebSocketServer({ server });
  let serverSocket;
  wss.on('connection', (ws, req) => {
    serverSocket = req.socket;
    ws.send(JSON.stringify({ hello: 'from the server', mode: req.socket.mptcp?.mode ?? 'plain' }));
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        ws.send(JSON.stringify({ got: data.length, sha256: sha(data), mode: req.socket.mptcp?.mode ?? 'plain', subflows: established(req.socket).length }));
      } else ws.send(`echo: ${data}`);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `wss://127.0.0.1:${server.address().port}/`;
  console.log(`server: ${url} (ws on mptls https.createServer)`);

  const agent = new https.Agent({ ca, mptcp: { localAddresses: LOCAL_ADDRESSES } });
  const ws = new WebSocket(url, { agent });
  let socket;
  ws.once('upgrade', (res) => (socket = res.socket)); // the mptls TLSSocket under the WebSocket
  const inbox = [];
  const waiters = [];
  ws.on('message', (data) => {
    const text = data.toString();
    const w = waiters.shift();
    if (w) w(text);
    else inbox.push(text);
  });
  const next = () => (inbox.length ? Promise.resolve(inbox.shift()) : new Promise((r) => waiters.push(r)));
  try {
    await Promise.race([once(ws, 'open'), once(ws, 'error').then(([e]) => Promise.reject(e))]);
    console.log(`client: connected, mode ${socket.mptcp.mode}, TLS ${socket.getProtocol()}, certificate verified: ${socket.authorized}`);
    console.log(`server -> client: ${await next()}`);
    ws.send('hi from the client');
    console.log(`client -> server -> client: ${await next()}`);

    // The second subflow joins once both ends confirmed the TLS-derived keys.
    for (let t = 0; established(serverSocket).length < 2 && t < 500; t++) await new Promise((r) => setTimeout(r, 10));

    const blob = crypto.randomBytes(1024 * 1024);
    ws.send(blob);
    const seen = JSON.parse(await next());
    console.log(`client -> server: 1 MiB binary, server answered ${JSON.stringify(seen)}`);
    for (const s of established(socket)) console.log(`  subflow ${s.id}: ${s.localAddress}:${s.localPort} -> ${s.remoteAddress}:${s.remotePort}, sent ${s.bytesSent} B`);
    console.log(`server saw: mode ${seen.mode}, ${seen.subflows} subflows`);
    if (seen.got !== blob.length || seen.sha256 !== sha(blob)) throw new Error('the server received a different message');
    if (seen.mode !== 'userspace' || seen.subflows !== 2) throw new Error(`expected a userspace connection with 2 subflows, got ${seen.mode} with ${seen.subflows}`);
    ws.close(1000, 'done');
    await once(ws, 'close');
  } finally {
    ws.terminate();
    agent.destroy();
    wss.close();
    server.closeAllConnections();
    server.close();
  }
}

let code = 0;
try {
  await main();
  console.log('OK');
} catch (e) {
  code = 1;
  console.error(`ws example FAILED: ${e?.message ?? e}${e?.code ? ` (${e.code})` : ''}`);
}
// Exit at once: a closed connection's lingering subflows need not finish their goodbyes.
process.stdout.write('', () => process.exit(code));
