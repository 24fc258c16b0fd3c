#!/usr/bin/env node
/**
 * Fastify over TLS-bound multipath TCP: `serverFactory` returns mptls's
 * `https.createServer(options, handler)`; routes read `request.raw.socket.mptcp`.
 *
 *   npm run build && node examples/fastify.mjs
 *
 * Starts the app on 127.0.0.1 (a throw-away certificate); a client with
 * `new https.Agent({ mptcp })` of mptls GETs /hello from 127.0.0.1, waits for
 * the join from 127.0.0.2, then GETs /whoami on the same connection: the app
 * answers what it saw, a multipath ('userspace') connection with 2 subflows.
 * Exit status 0 on success, 1 on failure (or after 20 s).
 */
import { https, generateSelfSigned } from 'mptls';
import Fastify from 'fastify';

const LOCAL_ADDRESSES = ['127.0.0.1', '127.0.0.2'];
setTimeout(() => {
  console.error('fastify example FAILED: no result within 20 s');
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
  const app = Fastify({ serverFactory: (handler) => https.createServer({ key, cert, mptcp: {} }, handler) });
  app.addHook('onRequest', async (request) => {
    serverSocket = request.raw.socket;
  });
  app.get('/hello', async (request) => ({ hello: 'from fastify', protocol: request.protocol }));
  app.get('/whoami', async (request) => {
    const socket = request.raw.socket;
    return {
      mode: socket.mptcp?.mode ?? 'plain',
      subflows: established(socket).map((s) => `${s.remoteAddress}:${s.remotePort}`),
      tls: socket.getProtocol(),
    };
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const origin = `https://127.0.0.1:${app.server.address().port}`;
  console.log(`server: ${origin} (fastify, serverFactory: mptls https.createServer)`);

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
    app.server.closeAllConnections();
    await app.close();
  }
}

let code = 0;
try {
  await main();
  console.log('OK');
} catch (e) {
  code = 1;
  console.error(`fastify example FAILED: ${e?.message ?? e}${e?.code ? ` (${e.code})` : ''}`);
}
// Exit at once: a closed connection's lingering subflows need not finish their goodbyes.
process.stdout.write('', () => process.exit(code));
