#!/usr/bin/env node
/**
 * Express over TLS-bound multipath TCP: the app, unchanged, mounted on
 * `https.createServer(options, app)` of mptls; `req.socket.mptcp` tells a
 * multipath client from a plain TLS one.
 *
 *   npm run build && node examples/express.mjs
 *
 * Starts the app on 127.0.0.1 (a throw-away certificate); a client with
 * `new https.Agent({ mptcp })` of mptls GETs /hello from 127.0.0.1, waits for
 * the join from 127.0.0.2, then GETs /whoami on the same connection: the app
 * answers what it saw, a multipath ('userspace') connection with 2 subflows.
 * Exit status 0 on success, 1 on failure (or after 20 s).
 */
import { https, generateSelfSigned } from 'mptls';
import express from 'express';

const LOCAL_ADDRESSES = ['127.0.0.1', '127.0.0.2'];
setTimeout(() => {
  console.error('express example FAILED: no result within 20 s');
  process.exit(1);
}, 20_000).unref();

const established = (s) => s?.mptcp?.subflows().filter((f) => f.state === 'established') ?? [];

/** GET with mptls's https (a node:https request through the given Agent); resolves with the status and parsed JSON. */
function getJson(url, options) {
  return new Promise((resolve, reject) => {
    https
      .get(url, options, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode, body: JSON.parse(body), socket: res.req.socket });
          } catch (e) {
            reject(e);
          }
        });
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

async function main() {
  const { key, cert, ca } = await generateSelfSigned();
  let serverSocket;
  const app = express();
  app.use((req, _res, next) => {
    serverSocket = req.socket;
    next();
  });
  app.get('/hello', (req, res) => res.json({ hello: 'from express', secure: req.secure }));
  app.get('/whoami', (req, res) => {
    const m = req.socket.mptcp;
    res.json({
      mode: m?.mode ?? 'plain',
      subflows: established(req.socket).map((s) => `${s.remoteAddress}:${s.remotePort}`),
      tls: req.socket.getProtocol(),
    });
  });

  const server = https.createServer({ key, cert, mptcp: {} }, app);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `https://127.0.0.1:${server.address().port}`;
  console.log(`server: ${origin} (express on mptls https.createServer)`);

  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca, mptcp: { localAddresses: LOCAL_ADDRESSES } });
  try {
    const r1 = await getJson(`${origin}/hello`, { agent });
    console.log(`GET /hello -> ${r1.status} ${JSON.stringify(r1.body)}`);

    // The second subflow joins once both ends confirmed the TLS-derived keys.
    for (let t = 0; established(serverSocket).length < 2 && t < 500; t++) await new Promise((r) => setTimeout(r, 10));

    const r2 = await getJson(`${origin}/whoami`, { agent });
    const seen = r2.body;
    console.log(`GET /whoami -> ${r2.status} ${JSON.stringify(seen)}`);
    console.log(`server saw: mode ${seen.mode}, ${seen.subflows.length} subflows`);
    if (r1.status !== 200 || r2.status !== 200) throw new Error('a request failed');
    if (seen.mode !== 'userspace' || seen.subflows.length !== 2) throw new Error(`expected a userspace connection with 2 subflows, got ${seen.mode} with ${seen.subflows.length}`);
    if (r1.socket !== r2.socket) throw new Error('expected both requests on one connection');
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
  console.error(`express example FAILED: ${e?.message ?? e}${e?.code ? ` (${e.code})` : ''}`);
}
// Exit at once: a closed connection's lingering subflows need not finish their goodbyes.
process.stdout.write('', () => process.exit(code));
