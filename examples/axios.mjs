#!/usr/bin/env node
/**
 * axios over TLS-bound multipath TCP: mptls's `https.Agent` as axios's
 * `httpsAgent`, nothing else changes.
 *
 *   npm run build && node examples/axios.mjs
 *
 * Starts an mptls HTTPS server on 127.0.0.1 (a throw-away certificate), GETs
 * /hello over a keep-alive connection from 127.0.0.1, waits for the join from
 * 127.0.0.2, then POSTs JSON on the same connection and checks the server saw
 * a multipath ('userspace') connection with 2 subflows.
 * Exit status 0 on success, 1 on failure (or after 20 s).
 */
import { https, generateSelfSigned } from 'mptls';
import axios from 'axios';

const LOCAL_ADDRESSES = ['127.0.0.1', '127.0.0.2'];
setTimeout(() => {
  console.error('axios example FAILED: no result within 20 s');
  process.exit(1);
}, 20_000).unref();

const established = (s) => s?.mptcp?.subflows().filter((f) => f.state === 'established') ?? [];

async function main() {
  const { key, cert, ca } = await generateSelfSigned();
  let serverSocket;
  let connections = 0;
  const server = https.createServer({ key, cert, mptcp: {} }, async (req, res) => {
    serverSocket = req.socket;
    let body = '';
    for await (const chunk of req) body += chunk;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ method: req.method, path: req.url, received: body.length, mode: req.socket.mptcp?.mode ?? 'plain', subflows: established(req.socket).length }));
  });
  server.on('secureConnection', () => connections++);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `https://127.0.0.1:${server.address().port}`;
  console.log(`server: ${origin} (mptls, multipath and plain TLS on one port)`);

  const agent = new https.Agent({ keepAlive: true, ca, mptcp: { localAddresses: LOCAL_ADDRESSES } });
  const client = axios.create({ baseURL: origin, httpsAgent: agent, timeout: 10_000 });
  try {
    const r1 = await client.get('/hello');
    console.log(`GET /hello -> ${r1.status} ${JSON.stringify(r1.data)}`);
    const socket = r1.request.socket;
    console.log(`client: mode ${socket.mptcp.mode}, TLS ${socket.getProtocol()}, certificate verified: ${socket.authorized}`);

    // The second subflow joins once both ends confirmed the TLS-derived keys.
    for (let t = 0; established(serverSocket).length < 2 && t < 500; t++) await new Promise((r) => setTimeout(r, 10));

    const r2 = await client.post('/echo', { hello: 'multipath' });
    const seen = r2.data;
    console.log(`POST /echo -> ${r2.status} ${JSON.stringify(seen)}`);
    for (const s of established(socket)) console.log(`  subflow ${s.id}: ${s.localAddress}:${s.localPort} -> ${s.remoteAddress}:${s.remotePort}`);
    console.log(`server saw: mode ${seen.mode}, ${seen.subflows} subflows, ${connections} connection(s)`);
    if (seen.mode !== 'userspace' || seen.subflows !== 2) throw new Error(`expected a userspace connection with 2 subflows, got ${seen.mode} with ${seen.subflows}`);
    if (r2.request.socket !== socket || connections !== 1) throw new Error(`expected both requests on one connection, got ${connections}`);
  } finally {
    agent.destroy();
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
  console.error(`axios example FAILED: ${e?.message ?? e}${e?.code ? ` (${e.code})` : ''}`);
}
// Exit at once: a closed connection's lingering subflows need not finish their goodbyes.
process.stdout.write('', () => process.exit(code));
