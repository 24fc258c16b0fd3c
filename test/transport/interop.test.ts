/**
 * The same port serves multipath clients and ordinary ones: curl, openssl
 * s_client, node:https. And mptls's https mirrors node:https for handlers
 * and clients.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { spawnSync, spawn } from 'node:child_process';
import nodeHttps from 'node:https';
import type http from 'node:http';
import { fixtures, listen, close } from '../support/servers.js';
import { https, type MptlsSocket } from '../../src/api/index.js';

const servers: { close(cb: () => void): void }[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => close(s as never)));
});

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}
/** Under CI a missing tool fails; elsewhere the test is skipped with the reason. */
function need(cmd: string): boolean {
  if (have(cmd)) return true;
  if (process.env.CI) throw new Error(`${cmd} is required under CI`);
  console.warn(`[interop] ${cmd} not installed: test skipped`);
  return false;
}

/** A plain node:http handler, as Express or Fastify would install. */
const handler: http.RequestListener = (req, res) => {
  const sock = req.socket as MptlsSocket;
  const body = JSON.stringify({ path: req.url, mode: sock.mptcp?.mode, subflows: sock.mptcp?.subflows().length ?? 0, remote: req.socket.remoteAddress });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
};

async function httpsServer() {
  const server = https.createServer({ key: fixtures.key, cert: fixtures.cert }, handler);
  servers.push(server);
  return { server, port: await listen(server) };
}

function fetchJson(get: typeof https.get, url: string, opts: object): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    get(url, opts, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(JSON.parse(body)));
    }).on('error', reject);
  });
}

describe('one port, every client', () => {
  it('mptls https.get over multipath (2 subflows) and node:https over plain TLS', async () => {
    const { port } = await httpsServer();
    const agent = new https.Agent({ mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] }, ca: fixtures.ca });
    const a = await fetchJson(https.get as never, `https://127.0.0.1:${port}/a`, { agent });
    expect(a).toMatchObject({ path: '/a', mode: 'userspace', remote: '127.0.0.1' });
    const b = await fetchJson(nodeHttps.get as never, `https://127.0.0.1:${port}/b`, { ca: fixtures.ca, servername: 'localhost' });
    expect(b).toMatchObject({ path: '/b', mode: 'fallback', subflows: 0 });
    agent.destroy();
  });

  it('curl -k is served by the same port as multipath clients', async () => {
    if (!need('curl')) return;
    const { port } = await httpsServer();
    // Asynchronous: the server runs in this process's event loop.
    const r = await new Promise<{ status: number | null; stdout: string }>((resolve) => {
      const p = spawn('curl', ['-sk', '--max-time', '10', `https://127.0.0.1:${port}/curl`]);
      let stdout = '';
      p.stdout.on('data', (d) => (stdout += d));
      p.on('close', (status) => resolve({ status, stdout }));
    });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ path: '/curl', mode: 'fallback' });
  });

  it('openssl s_client is served by the same port', async () => {
    if (!need('openssl')) return;
    const { port } = await httpsServer();
    const out = await new Promise<string>((resolve) => {
      const p = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-CAfile', 'certs-fixtures/ca.pem', '-quiet', '-verify_return_error'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let o = '';
      p.stdout.on('data', (d) => (o += d));
      p.stdin.write('GET /openssl HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
      p.on('close', () => resolve(o));
      setTimeout(() => p.kill(), 10_000).unref();
    });
    expect(out).toContain('HTTP/1.1 200');
    expect(out).toContain('"path":"/openssl"');
    expect(out).toContain('"mode":"fallback"');
  });
});
