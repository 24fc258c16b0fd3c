#!/usr/bin/env node
/**
 * fetch over TLS-bound multipath TCP: Node's global `fetch` with an undici
 * Agent whose connector is mptls's (`undici@6`, the major Node 20 bundles,
 * so the global fetch takes its Agent as `dispatcher`).
 *
 *   npm run build && node examples/fetch.mjs
 *
 * Starts an mptls HTTPS server on 127.0.0.1 (a throw-away certificate),
 * fetches /hello over a connection from 127.0.0.1, waits for the join from
 * 127.0.0.2, then POSTs a JSON body on the same connection and checks the
 * server saw a multipath ('userspace') connection with 2 subflows.
 * Exit status 0 on success, 1 on failure (or after 20 s).
 */
import { https, generateSelfSigned } from 'mptls';
import { undici } from 'mptls';
import { Agent } from 'undici';

const LOCAL_ADDRESSES = ['127.0.0.1', '127.0.0.2'];
setTimeout(() => {
  console.error('fetch example FAILED: no result within 20 s');
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

  // The one line: an undici Agent whose connections are mptls ones.
  const dispatcher = new Agent({ connect: undici.connector({ ca, mptcp: { localAddresses: LOCAL_ADDRESSES } }) });
  try {
    const r1 = await fetch(`${origin}/hello`, { dispatcher });
    console.log(`GET /hello -> ${r1.status} ${await r1.text()}`);

    // The second subflow joins once both ends confirmed the TLS-derived keys.
    for (let t = 0; established(serverSocket).length < 2 && t < 500; t++) await new Promise((r) => setTimeout(r, 10));

    const r2 = await fetch(`${origin}/echo`, { dispatcher, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ hello: 'multipath' }) });
    const seen = await r2.json();
    console.log(`POST /echo -> ${r2.status} ${JSON.stringify(seen)}`);
    for (const s of established(serverSocket)) console.log(`  subflow ${s.id}: ${s.remoteAddress}:${s.remotePort} -> ${s.localAddress}:${s.localPort}`);
    console.log(`server saw: mode ${seen.mode}, ${seen.subflows} subflows, ${connections} connection(s)`);
    if (r1.status !== 200 || r2.status !== 200) throw new Error('a request failed');
    if (seen.mode !== 'userspace' || seen.subflows !== 2) throw new Error(`expected a userspace connection with 2 subflows, got ${seen.mode} with ${seen.subflows}`);
    if (connections !== 1) throw new Error(`expected both requests on one connection, got ${connections}`);
  } finally {
    await dispatcher.close();
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
  console.error(`fetch example FAILED: ${e?.message ?? e}${e?.cause ? ` (cause: ${e.cause.code ?? e.cause.message})` : ''}`);
}
// Exit at once: a closed connection's lingering subflows need not finish their goodbyes.
process.stdout.write('', () => process.exit(code));
