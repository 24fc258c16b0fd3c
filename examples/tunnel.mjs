#!/usr/bin/env node
/**
 * Any TCP application over TLS-bound multipath TCP, both ends embedded:
 * `createProxyServer` (what `mptls proxy` runs) and `createTunnel` (what
 * `mptls tunnel` runs), on loopback.
 *
 *   npm run build && node examples/tunnel.mjs
 *
 * A plain TCP echo service stands for the application's server (it knows
 * nothing of multipath). The proxy may reach it (`allow`) and wants a bearer
 * token; the tunnel forwards 127.0.0.1:PORT to it (like `ssh -L`), each local
 * connection over its own multipath connection from 127.0.0.1 and 127.0.0.2.
 * A plain net.Socket then sends 4 MiB through the forward and checks the echo.
 * Exit status 0 on success, 1 on failure (or after 20 s).
 */
import crypto from 'node:crypto';
import net from 'node:net';
import { createProxyServer, createTunnel, generateSelfSigned } from 'mptls';

setTimeout(() => {
  console.error('tunnel example FAILED: no result within 20 s');
  process.exit(1);
}, 20_000).unref();

async function main() {
  // The application's own server: a TCP echo on 127.0.0.1.
  const echo = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  await new Promise((r) => echo.listen(0, '127.0.0.1', r));
  const echoPort = echo.address().port;

  // The proxy end (mptls proxy): only the echo service, only with the token.
  const { key, cert, ca } = await generateSelfSigned();
  const token = crypto.randomBytes(24).toString('base64url');
  const proxy = createProxyServer({ key, cert, allow: [`127.0.0.1:${echoPort}`], tokens: [token] });
  await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
  const proxyPort = proxy.address().port;
  console.log(`server: https://127.0.0.1:${proxyPort} (mptls proxy: HTTP CONNECT over multipath, plain TLS on the same port)`);

  // The client end (mptls tunnel -L): a local port forwarded through the proxy.
  const tunnel = createTunnel({
    server: { host: '127.0.0.1', port: proxyPort },
    ca,
    token,
    mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] },
    forwards: [{ port: 0, target: { host: '127.0.0.1', port: echoPort } }],
  });
  let subflows = 0;
  tunnel.on('tunnel-close', (e) => (subflows = e.subflows));
  await tunnel.listen();
  const local = tunnel.addresses()[0];
  console.log(`forwarding ${local.address}:${local.port} -> 127.0.0.1:${echoPort} via proxy 127.0.0.1:${proxyPort}`);

  // Any TCP client: 4 MiB through the forward, echoed back.
  const data = crypto.randomBytes(4 << 20);
  const back = await new Promise((resolve, reject) => {
    const s = net.connect({ host: local.address, port: local.port, allowHalfOpen: true });
    const chunks = [];
    s.on('data', (d) => chunks.push(d));
    s.on('end', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
    s.end(data);
  });
  const same = crypto.createHash('sha256').update(back).digest('hex') === crypto.createHash('sha256').update(data).digest('hex');
  await new Promise((r) => setTimeout(r, 50)); // the tunnel's close event
  console.log(`echoed ${back.length} bytes through the tunnel: ${same ? 'intact' : 'CORRUPT'}`);
  console.log(`proxy: ${proxy.stats.tunnelsTotal} tunnel(s), ${proxy.stats.bytesUp} bytes up, ${proxy.stats.bytesDown} down; the tunnel used ${subflows} subflows`);
  await tunnel.close();
  await new Promise((r) => proxy.close(r));
  echo.close();
  if (!same || back.length !== data.length || subflows < 2) throw new Error('the echo through the tunnel did not come back intact over two subflows');
  console.log('OK');
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`tunnel example FAILED: ${e.stack ?? e}`);
    process.exit(1);
  },
);
