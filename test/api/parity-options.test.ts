/**
 * node:tls parity, the rest of issue 15's list, each case run against
 * node:tls (node:https, node:http2) and mptls on loopback:
 *   §2 connections counted per connection, not per subflow
 *      (getConnections, 'connection', maxConnections + 'drop');
 *   §3 connect({ timeout }), setKeepAlive and setNoDelay on every subflow
 *      (read back from the kernel: SO_KEEPALIVE, TCP_KEEPIDLE, TCP_NODELAY);
 *   §4 unref(): a keep-alive https.get does not keep the process alive;
 *   §5 secureConnecting false at 'secureConnection', HTTP/2 with 100
 *      parallel streams over a two-subflow connection;
 *   §8 how much a writer buffers while its receiver is paused.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import nodeHttp2 from 'node:http2';
import nodeHttps from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { connect, createServer, http2, https, type MptlsSocket } from '../../src/api/index.js';
import { ffiStatus, getsockoptInt } from '../../src/transport/kernel/ffi.js';
import type { UserspaceInfo } from '../../src/transport/index.js';
import { IMPLS, pair, type Impl } from '../support/parity.js';
import { fixture, fixturePath } from '../support/fixtures.mjs';
import { close, fixtures, listen, until } from '../support/servers.js';

const TWO_PATHS = { localAddresses: ['127.0.0.1', '127.0.0.2'] };

function server(impl: Impl, listener?: (s: tls.TLSSocket) => void): tls.Server {
  const o = { key: fixtures.key, cert: fixtures.cert };
  return impl === 'node' ? tls.createServer(o, listener) : createServer(o, listener);
}

const secured = new WeakMap<tls.TLSSocket, Promise<unknown>>();

function client(impl: Impl, port: number, extra: Partial<tls.ConnectionOptions> = {}): tls.TLSSocket {
  const o = { host: '127.0.0.1', port, ca: fixtures.ca, ...extra };
  const s = impl === 'node' ? tls.connect(o) : connect({ ...o, mptcp: TWO_PATHS });
  s.on('error', () => {});
  const up = once(s, 'secureConnect');
  up.catch(() => {}); // a client meant to fail (dropped) is awaited differently
  secured.set(s, up);
  return s;
}

async function secure(s: tls.TLSSocket, impl: Impl): Promise<void> {
  await secured.get(s);
  if (impl === 'mptls') await until(() => (s as MptlsSocket).mptcp.subflows().filter((f) => f.state === 'established').length === 2, 5000, 'two subflows');
}

function connections(srv: net.Server): Promise<number> {
  return new Promise((r, j) => srv.getConnections((err, n) => (err ? j(err) : r(n))));
}

/** The TCP sockets under a client: node's own, or every subflow of an mptls connection. */
function tcpSockets(impl: Impl, s: tls.TLSSocket): net.Socket[] {
  if (impl === 'node') return [s];
  const info = (s as MptlsSocket).mptcp as UserspaceInfo;
  return info.subflows().map((f) => info.driver.socketOf(f.id)).filter((x): x is net.Socket => x !== undefined);
}

function fdOf(s: net.Socket): number {
  const h = (s as unknown as { _handle: { fd?: number; _parent?: { fd?: number } } })._handle;
  return h.fd !== undefined && h.fd >= 0 ? h.fd : h._parent!.fd!;
}

const SOL_SOCKET = 1;
const SO_KEEPALIVE = 9;
const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const TCP_KEEPIDLE = 4;

describe('§2 connections are counted per connection, not per subflow', () => {
  it("two two-path clients: getConnections() 2, 'connection' twice, 0 after they close, and close() completes", async () => {
    const seen: Record<Impl, { during: number; events: number; after: number }> = {} as never;
    for (const impl of IMPLS) {
      const srv = server(impl, (s) => s.on('error', () => {}));
      let events = 0;
      srv.on('connection', () => events++);
      const port = await listen(srv);
      const a = client(impl, port);
      const b = client(impl, port);
      await secure(a, impl);
      await secure(b, impl);
      const during = await connections(srv);
      a.destroy();
      b.destroy();
      await until(() => (srv as unknown as { _connections: number })._connections === 0, 5000, 'no connections');
      const after = await connections(srv);
      await new Promise<void>((r) => srv.close(() => r()));
      seen[impl] = { during, events, after };
    }
    expect(seen.node).toEqual({ during: 2, events: 2, after: 0 });
    expect(seen.mptls).toEqual(seen.node);
  });

  it("maxConnections = 2 admits two two-path clients (their joins too) and drops the third, with 'drop'", async () => {
    const seen: Record<Impl, { up: number; drops: number; third: string }> = {} as never;
    for (const impl of IMPLS) {
      const srv = server(impl, (s) => s.on('error', () => {}));
      srv.maxConnections = 2;
      let drops = 0;
      srv.on('drop', () => drops++);
      const port = await listen(srv);
      const a = client(impl, port);
      const b = client(impl, port);
      await secure(a, impl);
      await secure(b, impl);
      const c = impl === 'node' ? client(impl, port) : (connect({ host: '127.0.0.1', port, ca: fixtures.ca, mptcp: { ...TWO_PATHS } }) as tls.TLSSocket);
      const third = await new Promise<string>((r) => {
        c.once('secureConnect', () => r('connected'));
        c.once('error', (e: Error & { code?: string }) => r(`error:${e.code}`));
      });
      const up = impl === 'mptls' ? [a, b].map((s) => (s as MptlsSocket).mptcp.subflows().filter((f) => f.state === 'established').length).reduce((x, y) => x + y) : 2;
      expect(srv.maxConnections).toBe(2);
      for (const s of [a, b, c]) s.destroy();
      await close(srv);
      seen[impl] = { up, drops, third };
    }
    expect(seen.node.third).toBe('error:ECONNRESET');
    expect(seen.mptls.up).toBe(4);
    expect(seen.mptls.drops).toBeGreaterThanOrEqual(1);
    expect({ ...seen.mptls, up: 2, drops: 1 }).toEqual({ ...seen.node, drops: 1 });
  });
});

describe('§3 timeout, keepalive and Nagle reach every subflow', () => {
  it("connect({ timeout }) emits 'timeout' on an idle connection", async () => {
    const at: Record<Impl, number> = {} as never;
    for (const impl of IMPLS) {
      const srv = server(impl, (s) => s.on('error', () => {}));
      const port = await listen(srv);
      const t0 = performance.now();
      const c = client(impl, port, { timeout: 300 });
      await once(c, 'timeout');
      at[impl] = performance.now() - t0;
      c.destroy();
      await close(srv);
    }
    expect(at.node).toBeLessThan(1000);
    expect(at.mptls).toBeLessThan(1000);
    expect(at.mptls).toBeGreaterThan(250);
  });

  it.skipIf(!ffiStatus().ok && !process.env.CI)('setKeepAlive(true, 1000) and setNoDelay(false), called before the joins exist, hold on every subflow (kernel socket options)', async () => {
    const read: Record<Impl, { keepalive: number[]; idle: number[]; nodelay: number[] }> = {} as never;
    for (const impl of IMPLS) {
      const srv = server(impl, (s) => s.on('error', () => {}));
      const port = await listen(srv);
      const c = client(impl, port);
      c.setKeepAlive(true, 1000);
      c.setNoDelay(false);
      await secure(c, impl);
      const socks = tcpSockets(impl, c);
      read[impl] = {
        keepalive: socks.map((s) => getsockoptInt(fdOf(s), SOL_SOCKET, SO_KEEPALIVE)),
        idle: socks.map((s) => getsockoptInt(fdOf(s), IPPROTO_TCP, TCP_KEEPIDLE)),
        nodelay: socks.map((s) => getsockoptInt(fdOf(s), IPPROTO_TCP, TCP_NODELAY)),
      };
      c.setNoDelay(true);
      const after = socks.map((s) => getsockoptInt(fdOf(s), IPPROTO_TCP, TCP_NODELAY));
      expect(after.every((v) => v !== 0), `${impl} setNoDelay(true)`).toBe(true);
      c.destroy();
      await close(srv);
    }
    expect(read.node).toEqual({ keepalive: [1], idle: [1], nodelay: [0] });
    expect(read.mptls).toEqual({ keepalive: [1, 1], idle: [1, 1], nodelay: [0, 0] });
  });
});

describe('§4 unref()', () => {
  it('a script doing one keep-alive https.get exits when it is done, as with node:https (the idle connection is unref()ed on every subflow)', async () => {
    const script = fileURLToPath(new URL('../support/parity-client.mjs', import.meta.url));
    const web = https.createServer({ key: fixtures.key, cert: fixtures.cert }, (_req, res) => res.end('ok'));
    const port = await listen(web);
    const took: Record<Impl, number> = {} as never;
    try {
      for (const impl of IMPLS) {
        const child = spawn(process.execPath, [script, impl, String(port), fixturePath('ca.pem')], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await once(child, 'exit');
        clearTimeout(killer);
        const done = /^200 (\d+)$/m.exec(out);
        const exit = /^exit (\d+)$/m.exec(out);
        expect(done, `${impl}: ${out}`).not.toBeNull();
        expect(exit, `${impl}: ${out}`).not.toBeNull();
        took[impl] = Number(exit![1]) - Number(done![1]);
      }
    } finally {
      await close(web);
    }
    expect(took.node).toBeLessThan(1000);
    expect(took.mptls).toBeLessThan(1000);
  });
});

describe('§5 secureConnecting and HTTP/2', () => {
  it("secureConnecting is false at 'secureConnection'", async () => {
    const flags: Record<Impl, boolean> = {} as never;
    for (const impl of IMPLS) {
      const p = await pair(impl);
      flags[impl] = (p.accepted as unknown as { secureConnecting: boolean }).secureConnecting;
      await p.close();
    }
    expect(flags).toEqual({ node: false, mptls: false });
  });

  it('100 parallel h2 streams over a two-subflow connection (and node:http2 on the same case); plain h2 and HTTP/1.1 clients on the same port', async () => {
    const results: Record<Impl, { ok: number; subflows: number; alpn: string | false | undefined }> = {} as never;
    for (const impl of IMPLS) {
      const opts = { key: fixtures.key, cert: fixtures.cert, allowHTTP1: true };
      const srv = impl === 'node' ? nodeHttp2.createSecureServer(opts) : http2.createSecureServer(opts);
      srv.on('stream', (stream, headers) => {
        stream.respond({ ':status': 200, 'content-type': 'text/plain' });
        stream.end(`${headers[':path']} ${'x'.repeat(20_000)}`);
      });
      srv.on('request', (req: nodeHttp2.Http2ServerRequest, res: nodeHttp2.Http2ServerResponse) => {
        if (req.httpVersion === '1.1') res.end('h1');
      });
      const port = await listen(srv);
      const url = `https://127.0.0.1:${port}`;
      const session = impl === 'node' ? nodeHttp2.connect(url, { ca: fixtures.ca }) : http2.connect(url, { ca: fixtures.ca, mptcp: TWO_PATHS });
      session.on('error', () => {});
      await once(session, 'connect');
      const sock = session.socket as unknown as MptlsSocket;
      if (impl === 'mptls') await until(() => sock.mptcp.subflows().filter((f) => f.state === 'established').length === 2, 5000, 'two subflows');
      const bodies = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          new Promise<string>((resolve, reject) => {
            const req = session.request({ ':path': `/s${i}` });
            let body = '';
            req.setEncoding('utf8');
            req.on('data', (d: string) => (body += d));
            req.on('end', () => resolve(body));
            req.on('error', reject);
            req.end();
          }),
        ),
      );
      const ok = bodies.filter((b, i) => b === `/s${i} ${'x'.repeat(20_000)}`).length;
      const subflows = impl === 'mptls' ? sock.mptcp.subflows().filter((f) => f.bytesReceived > 0).length : 1;
      const alpn = (session.socket as tls.TLSSocket).alpnProtocol ?? undefined;
      // A plain node:http2 client and an HTTP/1.1 client on the same port.
      const plain = nodeHttp2.connect(url, { ca: fixtures.ca });
      plain.on('error', () => {});
      const plainBody = await new Promise<string>((resolve, reject) => {
        const req = plain.request({ ':path': '/plain' });
        let body = '';
        req.setEncoding('utf8');
        req.on('data', (d: string) => (body += d));
        req.on('end', () => resolve(body));
        req.on('error', reject);
        req.end();
      });
      expect(plainBody.startsWith('/plain ')).toBe(true);
      const h1 = await new Promise<string>((resolve, reject) => {
        nodeHttps
          .get(`${url}/h1`, { ca: fixtures.ca }, (res) => {
            let b = '';
            res.on('data', (d: Buffer) => (b += d.toString()));
            res.on('end', () => resolve(b));
          })
          .on('error', reject);
      });
      expect(h1).toBe('h1');
      plain.close();
      session.close();
      await close(srv);
      results[impl] = { ok, subflows, alpn };
    }
    expect(results.node).toEqual({ ok: 100, subflows: 1, alpn: 'h2' });
    expect(results.mptls).toEqual({ ok: 100, subflows: 2, alpn: 'h2' });
  });
});

describe('SNI', () => {
  it('server.addContext() serves its certificate to a client that asks for that name, as node:tls does', async () => {
    const got: Record<Impl, string | undefined> = {} as never;
    for (const impl of IMPLS) {
      const srv = server(impl, (s) => s.on('error', () => {}));
      srv.addContext('other.test', { key: fixture('other-server.key'), cert: fixture('other-server.pem') });
      const port = await listen(srv);
      const c = client(impl, port, { servername: 'other.test', rejectUnauthorized: false });
      await secure(c, impl);
      got[impl] = (c.getPeerCertificate() as { fingerprint256?: string }).fingerprint256;
      c.destroy();
      await close(srv);
    }
    expect(got.node).toBeDefined();
    expect(got.mptls).toBe(got.node);
  });
});

describe('§8 a paused receiver', () => {
  it("a writer whose receiver never reads buffers about what node:tls buffers before write() stops draining", async () => {
    const buffered: Record<Impl, number> = {} as never;
    for (const impl of IMPLS) {
      const p = await pair(impl);
      p.accepted.pause();
      const chunk = Buffer.alloc(64 * 1024);
      let written = 0;
      let lastDrain = performance.now();
      const fill = () => {
        while (p.client.write(chunk)) written += chunk.length;
        written += chunk.length;
      };
      p.client.on('drain', () => {
        lastDrain = performance.now();
        fill();
      });
      fill();
      await until(() => performance.now() - lastDrain > 1000, 30_000, 'the writer to stall');
      buffered[impl] = written;
      await p.close();
    }
    // node:tls: the two kernel socket buffers; mptls: the data-level send and receive buffers plus the subflows'.
    expect(buffered.mptls).toBeLessThan(buffered.node * 1.5);
    console.log(`paused receiver: node:tls buffered ${(buffered.node / 2 ** 20).toFixed(1)} MiB, mptls ${(buffered.mptls / 2 ** 20).toFixed(1)} MiB`);
  });
});
