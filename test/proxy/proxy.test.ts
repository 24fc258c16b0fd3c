/**
 * `createProxyServer` (src/api/proxy.ts) over loopback: HTTP CONNECT on an
 * mptls server, against real TCP targets on 127.0.0.1.
 *
 * - an mptls client on 127.0.0.1 + 127.0.0.2 moves 8 MiB each way through a
 *   tunnel, intact (SHA-256), over both subflows;
 * - /usr/bin/curl -p --proxy https://… (plain TLS: fallback) fetches a file
 *   from a node:http server behind the proxy, with and without a bearer
 *   token, with and without a client certificate;
 * - the allow list (403, names vs addresses, resolution), bearer tokens (407),
 *   client certificates (the TLS handshake), an unreachable target (502), a
 *   target whose accept queue is full (504), pipelined bytes, half-close both
 *   ways, backpressure (a target that does not read: the tunnel's buffered
 *   bytes stay bounded), the idle timeout, close();
 * - malformed requests: each a status, a closed socket, a counter, and the
 *   proxy still serving;
 * - the request parser and the allow patterns, with fast-check properties.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AllowList,
  ConnectRequestParser,
  createProxyServer,
  MAX_HEAD_BYTES,
  parseAllowPattern,
  parseConnectRequest,
  RequestError,
  type ParseStep,
  type ProxyOptions,
  type ProxyRefusal,
  type ProxyServer,
  type ProxyTunnel,
  type ProxyTunnelSummary,
} from '../../src/api/proxy.js';
import { connect, type ConnectOptions, type MptlsSocket } from '../../src/api/client.js';
import { fixture, fixturePath, fixtures } from '../support/fixtures.mjs';
import { close, listen, receiveAll, sendBulk, until } from '../support/servers.js';
import { curl } from '../cli/helpers.js';

const CA = fixturePath('ca.pem');
const LOCALS = ['127.0.0.1', '127.0.0.2'];

// ─── helpers ──────────────────────────────────────────────────────────────

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startProxy(opts: Partial<ProxyOptions> & Pick<ProxyOptions, 'allow'>): Promise<{ proxy: ProxyServer; port: number; refusals: ProxyRefusal[]; opened: ProxyTunnel[] }> {
  const proxy = createProxyServer({ key: fixtures.key, cert: fixtures.cert, ...opts });
  const refusals: ProxyRefusal[] = [];
  const opened: ProxyTunnel[] = [];
  proxy.on('refused', (r) => refusals.push(r));
  proxy.on('tunnel', (t) => opened.push(t));
  const port = await listen(proxy);
  cleanups.push(() => close(proxy, 500));
  return { proxy, port, refusals, opened };
}

/** A TCP server on 127.0.0.1 (allowHalfOpen), closed after the test. */
async function target(onSocket: (s: net.Socket) => void): Promise<{ server: net.Server; port: number; sockets: net.Socket[] }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.push(s);
    s.on('error', () => {});
    onSocket(s);
  });
  const port = await listen(server);
  cleanups.push(() => close(server, 200));
  return { server, port, sockets };
}

/** An echo target. */
const echo = () => target((s) => s.pipe(s));

function track<S extends net.Socket>(s: S): S {
  s.on('error', () => {});
  cleanups.push(() => s.destroy());
  return s;
}

/** An mptls client over two local addresses (127.0.0.1, 127.0.0.2), once TLS is up. */
function mpClient(port: number, extra: Record<string, unknown> = {}): Promise<MptlsSocket> {
  return new Promise((resolve, reject) => {
    const s = track(connect({ host: '127.0.0.1', port, ca: fixtures.ca, mptcp: { localAddresses: LOCALS }, ...extra } as ConnectOptions));
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
  });
}

/** A plain TLS client, once TLS is up. */
function tlsClient(port: number, extra: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = track(tls.connect({ host: '127.0.0.1', port, ca: fixtures.ca, ...extra }));
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
  });
}

interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The client socket closed (for refusals: after the body). */
  closed: Promise<void>;
}

/**
 * Reads the proxy's answer: for a 200 up to the empty line (what follows is
 * the tunnel's, pushed back into the socket), for anything else until the
 * end of the connection.
 */
function reply(socket: tls.TLSSocket): Promise<Reply> {
  if (socket.destroyed) return Promise.reject(new Error('closed without a response'));
  const closed = new Promise<void>((r) => (socket.destroyed ? r() : socket.once('close', () => r())));
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let head: { status: number; headers: Record<string, string> } | undefined;
    const done = () => {
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('close', onEnd);
    };
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (head) return;
      const i = buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      const lines = buf.subarray(0, i).toString('latin1').split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
      head = { status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(lines[0])?.[1] ?? NaN), headers };
      buf = buf.subarray(i + 4);
      if (head.status === 200) {
        done();
        socket.pause();
        if (buf.length) socket.unshift(buf);
        resolve({ ...head, body: '', closed });
      }
    };
    const onEnd = () => {
      done();
      if (!head) reject(new Error(`closed without a response (${JSON.stringify(buf.toString('latin1').slice(0, 200))})`));
      else resolve({ ...head, body: buf.toString('utf8'), closed });
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  });
}

/** CONNECT as the `mptls tunnel` client sends it. */
function connectHead(authority: string, token?: string): string {
  return `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${token ? `Proxy-Authorization: Bearer ${token}\r\n` : ''}\r\n`;
}

async function ask(socket: tls.TLSSocket, head: string | Buffer): Promise<Reply> {
  const r = reply(socket);
  socket.write(head);
  return r;
}

/** `size` random bytes with backpressure (servers.ts); then `end()` unless `keepOpen`. */
// A socket that fails mid-send settles with '' (no hash to match) rather than an unhandled rejection.
const send = (socket: net.Socket, size: number, keepOpen = false) => sendBulk(socket, size, { keepOpen }).catch(() => '');
/** Everything until 'end': byte count and SHA-256 (servers.ts). */
const drain = receiveAll;

const closedOf = (s: net.Socket) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ─── tunnels ──────────────────────────────────────────────────────────────

describe('tunnels', () => {
  it('an mptls client moves 8 MiB each way through a tunnel, intact, over both subflows', async () => {
    const SIZE = 8 << 20;
    let targetGot: Promise<{ bytes: number; sha256: string }> | undefined;
    let targetSent: Promise<string> | undefined;
    const t = await target((s) => {
      targetGot = drain(s);
      targetSent = send(s, SIZE);
    });
    const { proxy, port, opened } = await startProxy({ allow: [`127.0.0.1:${t.port}`] });
    const c = await mpClient(port, { allowHalfOpen: true });
    const r = await ask(c, connectHead(`127.0.0.1:${t.port}`));
    expect(r.status).toBe(200);
    await until(() => c.mptcp.subflows().length === 2, 5000, 'the second subflow');
    const [up, down] = await Promise.all([send(c, SIZE), drain(c)]);
    expect(down.bytes).toBe(SIZE);
    expect(down.sha256).toBe(await targetSent);
    const got = await targetGot!;
    expect(got.bytes).toBe(SIZE);
    expect(got.sha256).toBe(up);
    const subflows = c.mptcp.subflows();
    expect(subflows.length).toBe(2);
    for (const s of subflows) expect(s.bytesSent + s.bytesReceived, `subflow ${s.id}`).toBeGreaterThan(64 << 10);
    expect(opened.length).toBe(1);
    expect(opened[0].mode).toBe('userspace');
    expect(opened[0].target).toBe(`127.0.0.1:${t.port}`);
    const summary = await new Promise<ProxyTunnelSummary>((res) => (opened[0].closed ? res(opened[0].closed) : opened[0].once('close', res)));
    expect(summary).toMatchObject({ reason: 'done', bytesUp: SIZE, bytesDown: SIZE });
    expect(opened[0].subflowsUsed()).toBe(2);
    expect(proxy.stats).toMatchObject({ requests: 1, tunnels: 0, tunnelsTotal: 1, bytesUp: SIZE, bytesDown: SIZE });
  });

  it('curl -p --proxy https://… fetches a file from an http server behind the proxy, intact', async () => {
    const file = randomBytes(3 << 20);
    const web = http.createServer((req, res) => {
      if (req.url === '/file') res.end(file);
      else res.writeHead(404).end();
    });
    const webPort = await listen(web);
    cleanups.push(() => close(web, 200));
    const { proxy, port, opened } = await startProxy({ allow: [`127.0.0.1:${webPort}`] });
    const r = await curl(['-s', '-S', '-p', '--proxy', `https://127.0.0.1:${port}`, '--proxy-cacert', CA, `http://127.0.0.1:${webPort}/file`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.length).toBe(file.length);
    expect(r.stdout.equals(file)).toBe(true);
    expect(opened[0].mode).toBe('fallback');
    await until(() => proxy.stats.tunnels === 0);
    expect(proxy.stats.tunnelsTotal).toBe(1);
    expect(proxy.stats.bytesDown).toBeGreaterThan(file.length);
  });

  it('pipelined bytes after the request (and an end) are the target\'s first bytes', async () => {
    let got: Promise<{ bytes: number; sha256: string }> | undefined;
    const t = await target((s) => {
      got = drain(s);
      got.then(() => s.end('bye'));
    });
    const { port } = await startProxy({ allow: [`127.0.0.1:${t.port}`] });
    const c = await tlsClient(port, { allowHalfOpen: true } as tls.ConnectionOptions);
    const early = Buffer.from('early bytes, sent with the request');
    const r = reply(c);
    c.end(Buffer.concat([Buffer.from(connectHead(`127.0.0.1:${t.port}`)), early]));
    expect((await r).status).toBe(200);
    const back = await drain(c);
    expect(back.bytes).toBe(3);
    const g = await got!;
    expect(g.bytes).toBe(early.length);
    expect(g.sha256).toBe(createHash('sha256').update(early).digest('hex'));
  });

  it('half-close passes through: the client\'s end reaches the target while the target still sends, and the reverse', async () => {
    // Client ends first: the target sees 'end', then sends 1 MiB and ends.
    const late = randomBytes(1 << 20);
    let sawEnd = false;
    const t = await target((s) => {
      s.resume();
      s.on('end', () => {
        sawEnd = true;
        setTimeout(() => s.end(late), 50);
      });
    });
    const { port } = await startProxy({ allow: [`127.0.0.1:${t.port}`] });
    const c = await mpClient(port, { allowHalfOpen: true });
    expect((await ask(c, connectHead(`127.0.0.1:${t.port}`))).status).toBe(200);
    c.end('up, then my end');
    const back = await drain(c);
    expect(sawEnd).toBe(true);
    expect(back.bytes).toBe(late.length);
    expect(back.sha256).toBe(createHash('sha256').update(late).digest('hex'));

    // Target ends first: the client sees 'end' and still sends 1 MiB, which the target gets before its 'end'.
    let got: Promise<{ bytes: number; sha256: string }> | undefined;
    const t2 = await target((s) => {
      got = drain(s);
      s.end('target done');
    });
    const { port: port2 } = await startProxy({ allow: [`127.0.0.1:${t2.port}`] });
    const c2 = await mpClient(port2, { allowHalfOpen: true });
    expect((await ask(c2, connectHead(`127.0.0.1:${t2.port}`))).status).toBe(200);
    const fromTarget = await drain(c2);
    expect(fromTarget.bytes).toBe('target done'.length);
    expect(c2.writable).toBe(true);
    const sent = await send(c2, 1 << 20);
    const g = await got!;
    expect(g).toEqual({ bytes: 1 << 20, sha256: sent });
    await closedOf(c2);
  });

  /** Writes until a write waits 300 ms for 'drain' (everything between writer and reader is full); the bytes and their SHA-256. */
  async function fillUntilHeld(writer: net.Socket): Promise<{ bytes: number; sha256: string }> {
    const block = randomBytes(256 << 10);
    const h = createHash('sha256');
    let bytes = 0;
    for (;;) {
      h.update(block);
      bytes += block.length;
      if (!writer.write(block)) {
        const drained = await Promise.race([new Promise((r) => writer.once('drain', () => r(true))), sleep(300).then(() => false)]);
        if (!drained) break;
      }
      if (bytes > 256 << 20) throw new Error('never held back');
    }
    return { bytes, sha256: h.digest('hex') };
  }

  /** The largest `buffered()[direction]` of `tunnel`, sampled every 2 ms until `stop()`. */
  function sampler(tunnel: ProxyTunnel, direction: 'up' | 'down'): { max: () => number; stop: () => void } {
    let max = 0;
    const timer = setInterval(() => (max = Math.max(max, tunnel.buffered()[direction])), 2);
    return { max: () => max, stop: () => clearInterval(timer) };
  }

  /** What one tunnel may hold per direction (proxy/relay.ts: 2 × (16 KiB mark + 64 KiB read)). */
  const BOUND = 160 << 10;

  it('backpressure up: a target that does not read holds the tunnel\'s buffered bytes bounded, then gets every byte', async () => {
    let held: net.Socket | undefined;
    const t = await target((s) => {
      held = s;
      s.pause();
    });
    const { port, opened } = await startProxy({ allow: [`127.0.0.1:${t.port}`] });
    for (const kind of ['mp', 'tls'] as const) {
      const c = kind === 'mp' ? await mpClient(port) : await tlsClient(port);
      expect((await ask(c, connectHead(`127.0.0.1:${t.port}`))).status).toBe(200);
      const sample = sampler(opened[opened.length - 1], 'up');
      const sent = await fillUntilHeld(c);
      await sleep(100);
      sample.stop();
      // The client wrote megabytes the target never read; the tunnel held at most its bound.
      expect(sent.bytes, kind).toBeGreaterThan(2 << 20);
      expect(sample.max(), `${kind}: ${sample.max()} B buffered`).toBeLessThanOrEqual(BOUND);
      expect(sample.max(), kind).toBeGreaterThan(0);
      const got = drain(held!);
      c.end();
      expect(await got).toEqual(sent);
      held!.end();
      await closedOf(c);
    }
  });

  it('backpressure down: a client that does not read holds the tunnel\'s buffered bytes bounded, then gets every byte', async () => {
    let sent: Promise<{ bytes: number; sha256: string }> | undefined;
    const t = await target((s) => {
      s.resume();
      sent = fillUntilHeld(s).then((r) => (s.end(), r));
    });
    const { port, opened } = await startProxy({ allow: [`127.0.0.1:${t.port}`] });
    for (const kind of ['mp', 'tls'] as const) {
      const c = kind === 'mp' ? await mpClient(port, { allowHalfOpen: true }) : await tlsClient(port, { allowHalfOpen: true } as tls.ConnectionOptions);
      expect((await ask(c, connectHead(`127.0.0.1:${t.port}`))).status).toBe(200); // leaves the socket paused
      const sample = sampler(opened[opened.length - 1], 'down');
      await until(() => sent !== undefined);
      const wrote = await sent!;
      await sleep(100);
      sample.stop();
      expect(wrote.bytes, kind).toBeGreaterThan(2 << 20);
      expect(sample.max(), `${kind}: ${sample.max()} B buffered`).toBeLessThanOrEqual(BOUND);
      expect(sample.max(), kind).toBeGreaterThan(0);
      expect(await drain(c)).toEqual(wrote);
      c.end();
      await closedOf(c);
      sent = undefined;
    }
  });

  it('idle timeout: no byte either way closes both sides; traffic keeps a tunnel open', async () => {
    let targetSide: net.Socket | undefined;
    const t = await target((s) => {
      targetSide = s;
      s.pipe(s);
    });
    const { port, opened } = await startProxy({ allow: [`127.0.0.1:${t.port}`], idleTimeoutMs: 400 });
    const c = await mpClient(port);
    expect((await ask(c, connectHead(`127.0.0.1:${t.port}`))).status).toBe(200);
    c.resume();
    // A byte every 100 ms for 1 s: still open.
    for (let i = 0; i < 10; i++) {
      c.write('x');
      await sleep(100);
    }
    expect(c.destroyed).toBe(false);
    const t0 = performance.now();
    await Promise.all([closedOf(c), closedOf(targetSide!)]);
    const quiet = performance.now() - t0;
    expect(quiet).toBeGreaterThan(150);
    expect(quiet).toBeLessThan(2000);
    expect(opened[0].closed?.reason).toBe('idle');
  });

  it('close() stops listening, answers requests in progress with 503 and ends open tunnels', async () => {
    const t = await echo();
    const { proxy, port } = await startProxy({ allow: [`127.0.0.1:${t.port}`], closeGraceMs: 3000 });
    const c = await mpClient(port);
    expect((await ask(c, connectHead(`127.0.0.1:${t.port}`))).status).toBe(200);
    const waiting = await tlsClient(port);
    const r = reply(waiting);
    waiting.write('CONNECT 127.0.0.1:1 HTTP/1.1\r\n'); // not finished
    await until(() => proxy.stats.requests === 2);
    const ended = new Promise<void>((res) => c.once('end', () => res()));
    c.resume();
    const stopped = new Promise<void>((res) => proxy.close(() => res()));
    expect((await r).status).toBe(503);
    await ended;
    await stopped;
    await expect(tlsClient(port)).rejects.toThrow(/ECONNREFUSED/);
  });
});

// ─── refusals ─────────────────────────────────────────────────────────────

describe('refusals', () => {
  it('outside the allow list: 403, counted, the proxy carries on; names and addresses as documented', async () => {
    const t = await echo();
    const lookup = async (h: string) => {
      if (h === 'db.internal' || h === 'app.internal') return [{ address: '127.0.0.1', family: 4 }];
      if (h === 'elsewhere.internal') return [{ address: '192.0.2.1', family: 4 }];
      if (h === 'sinkhole.internal') return [{ address: '0.0.0.0', family: 4 }];
      throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    };
    const { proxy, port, refusals } = await startProxy({
      allow: [`db.internal:${t.port}`, `127.0.0.0/8:${t.port}`, `[::1]:${t.port}`, 'sinkhole.internal:*'],
      lookup,
    });
    const cases: [string, number][] = [
      [`127.0.0.1:${t.port}`, 200], // CIDR, IP literal
      [`127.0.0.2:${t.port}`, 502], // allowed by 127.0.0.0/8, but nothing listens on 127.0.0.2
      [`DB.Internal.:${t.port}`, 200], // name pattern, case and trailing dot ignored
      [`app.internal:${t.port}`, 200], // a name resolving into the CIDR
      [`elsewhere.internal:${t.port}`, 403], // a name resolving outside every pattern
      ['127.0.0.1:1', 403], // another port
      ['10.0.0.1:22', 403],
      [`0.0.0.0:${t.port}`, 403], // never a destination
      ['sinkhole.internal:80', 403], // resolves to 0.0.0.0 only
      [`[::ffff:127.0.0.1]:${t.port}`, 200], // IPv4-mapped: the IPv4 rules
    ];
    let expected403 = 0;
    for (const [authority, status] of cases) {
      const c = await tlsClient(port);
      const r = await ask(c, connectHead(authority));
      expect(r.status, authority).toBe(status);
      if (status !== 200) {
        await r.closed;
        expect(r.headers.connection).toBe('close');
        expect(r.body.length).toBeGreaterThan(0);
      }
      if (status === 403) expected403++;
      c.destroy();
    }
    expect(proxy.stats.refusedAllow).toBe(expected403);
    expect(refusals.filter((x) => x.status === 403).map((x) => x.target)).toContain('10.0.0.1:22');
    expect(refusals.find((x) => x.target === '10.0.0.1:22')?.reason).toBe('10.0.0.1:22 is not in the allow list');
    // Unresolvable name allowed by a CIDR: 502, with the resolver's reason.
    const c = await tlsClient(port);
    const r = await ask(c, connectHead(`nowhere.internal:${t.port}`));
    expect(r.status).toBe(502);
    expect(r.body).toMatch(/cannot resolve nowhere\.internal \(ENOTFOUND\)/);
    // And curl is refused the same way.
    const cr = await curl(['-s', '-S', '-p', '--proxy', `https://127.0.0.1:${port}`, '--proxy-cacert', CA, 'http://10.0.0.1:22/']);
    expect(cr.code).toBe(56);
    expect(cr.stderr).toMatch(/CONNECT tunnel failed, response 403/);
    expect(proxy.stats.refusedAllow).toBe(expected403 + 1);
  });

  it('bearer tokens: missing or wrong → 407 with Proxy-Authenticate; the right one opens the tunnel (mptls client and curl)', async () => {
    const web = http.createServer((_req, res) => res.end('behind the proxy'));
    const webPort = await listen(web);
    cleanups.push(() => close(web, 200));
    const { proxy, port } = await startProxy({ allow: [`127.0.0.1:${webPort}`], tokens: ['t0ken-A', 'other.token+/='] });
    const authority = `127.0.0.1:${webPort}`;
    for (const [head, status] of [
      [connectHead(authority), 407],
      [connectHead(authority, 'wrong'), 407],
      [connectHead(authority).replace('\r\n\r\n', '\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n'), 407],
      [connectHead(authority, 't0ken-A'), 200],
      [connectHead(authority, 'other.token+/='), 200],
    ] as const) {
      const c = await mpClient(port);
      const r = await ask(c, head);
      expect(r.status, head).toBe(status);
      if (status === 407) {
        expect(r.headers['proxy-authenticate']).toMatch(/^Bearer realm="mptls"/);
        await r.closed;
      }
      c.destroy();
    }
    expect(proxy.stats.refusedAuth).toBe(3);
    // 407 before the allow list: a client without a token learns nothing about it.
    const c = await tlsClient(port);
    expect((await ask(c, connectHead('10.0.0.1:22'))).status).toBe(407);
    const base = ['-s', '-S', '-p', '--proxy', `https://127.0.0.1:${port}`, '--proxy-cacert', CA];
    const without = await curl([...base, `http://${authority}/`]);
    expect(without.code).toBe(56);
    expect(without.stderr).toMatch(/response 407/);
    const withToken = await curl([...base, '--proxy-header', 'Proxy-Authorization: Bearer t0ken-A', `http://${authority}/`]);
    expect(withToken.code, withToken.stderr).toBe(0);
    expect(withToken.stdout.toString()).toBe('behind the proxy');
    // A token function: asked with the token and the socket.
    const seen: string[] = [];
    const { port: port2 } = await startProxy({ allow: [authority], tokens: async (tok, socket) => (seen.push(`${tok} ${socket.mptcp.mode}`), tok === 'fn-ok') });
    const c2 = await mpClient(port2);
    expect((await ask(c2, connectHead(authority, 'fn-ok'))).status).toBe(200);
    const c3 = await mpClient(port2);
    expect((await ask(c3, connectHead(authority, 'fn-no'))).status).toBe(407);
    expect(seen).toEqual(['fn-ok userspace', 'fn-no userspace']);
  });

  it('client certificates: required and checked, for multipath and plain TLS clients (and curl --proxy-cert)', async () => {
    const t = await echo();
    const { proxy, port } = await startProxy({ allow: [`127.0.0.1:${t.port}`], clientCa: fixtures.ca });
    const authority = `127.0.0.1:${t.port}`;
    const certOpts = { key: fixtures.clientKey, cert: fixtures.clientCert };
    // With the client certificate: a tunnel, both kinds.
    const mp = await mpClient(port, certOpts);
    expect((await ask(mp, connectHead(authority))).status).toBe(200);
    expect(mp.mptcp.mode).toBe('userspace');
    const plain = await tlsClient(port, certOpts);
    expect((await ask(plain, connectHead(authority))).status).toBe(200);
    // Without one, or with one of another CA: no HTTP at all.
    const refusedClient = async (open: () => Promise<tls.TLSSocket>) => {
      let s: tls.TLSSocket;
      try {
        s = await open();
      } catch {
        return true; // the handshake failed
      }
      // TLS 1.3: the client's handshake ends before the server checks the certificate; the server then closes.
      return reply(s).then(
        () => false,
        () => true,
      );
    };
    const other = { key: fixture('other-server.key'), cert: fixture('other-server.pem') };
    expect(await refusedClient(() => mpClient(port))).toBe(true);
    expect(await refusedClient(() => tlsClient(port))).toBe(true);
    expect(await refusedClient(() => mpClient(port, other))).toBe(true);
    expect(await refusedClient(() => tlsClient(port, other))).toBe(true);
    expect(proxy.stats.tunnelsTotal).toBe(2);
    const web = http.createServer((_req, res) => res.end('mutual TLS'));
    const webPort = await listen(web);
    cleanups.push(() => close(web, 200));
    const { port: port2 } = await startProxy({ allow: [`127.0.0.1:${webPort}`], clientCa: fixtures.ca });
    const base = ['-s', '-S', '-p', '--proxy', `https://127.0.0.1:${port2}`, '--proxy-cacert', CA];
    const withCert = await curl([...base, '--proxy-cert', fixturePath('client.pem'), '--proxy-key', fixturePath('client.key'), `http://127.0.0.1:${webPort}/`]);
    expect(withCert.code, withCert.stderr).toBe(0);
    expect(withCert.stdout.toString()).toBe('mutual TLS');
    const withoutCert = await curl([...base, `http://127.0.0.1:${webPort}/`]);
    expect(withoutCert.code).not.toBe(0);
  });

  it('an unreachable target: 502 with the reason; a target that does not answer the SYN: 504 after connectTimeoutMs', async () => {
    const closedPort = await new Promise<number>((res) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => res(p));
      });
    });
    const stalled = await stalledListener();
    const { proxy, port, refusals } = await startProxy({ allow: ['127.0.0.1:*'], connectTimeoutMs: 400 });
    const c = await mpClient(port);
    const r = await ask(c, connectHead(`127.0.0.1:${closedPort}`));
    expect(r.status).toBe(502);
    expect(r.body).toMatch(/ECONNREFUSED/);
    await r.closed;
    const c2 = await mpClient(port);
    const t0 = performance.now();
    const r2 = await ask(c2, connectHead(`127.0.0.1:${stalled}`));
    const ms = performance.now() - t0;
    expect(r2.status).toBe(504);
    expect(r2.body).toMatch(/timed out after 400 ms/);
    expect(ms).toBeGreaterThan(350);
    expect(ms).toBeLessThan(3000);
    await r2.closed;
    expect(proxy.stats).toMatchObject({ upstreamErrors: 1, upstreamTimeouts: 1 });
    expect(refusals.map((x) => x.status)).toEqual([502, 504]);
  });
});

/**
 * A loopback port whose listener never accepts: a child process listens
 * (backlog 1) and then blocks its own event loop (Atomics.wait, no CPU); a
 * few connections fill its accept queue, after which the kernel drops every
 * SYN, so a connect hangs as to a blackholed address.
 */
async function stalledListener(): Promise<number> {
  const code = `const s = require('net').createServer(); s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => process.stdout.write(s.address().port + '\\n', () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)));`;
  const child: ChildProcess = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  cleanups.push(() => child.kill('SIGKILL'));
  const port = await new Promise<number>((res, rej) => {
    child.stdout!.once('data', (d: Buffer) => res(Number(String(d).trim())));
    child.once('exit', () => rej(new Error('listener exited')));
  });
  for (let i = 0; i < 8; i++) {
    const s = track(net.connect(port, '127.0.0.1'));
    const connected = await Promise.race([new Promise((r) => s.once('connect', () => r(true))), sleep(300).then(() => false)]);
    if (!connected) return port; // the queue is full: SYNs are dropped now
  }
  throw new Error('the accept queue never filled');
}

// ─── malformed requests ───────────────────────────────────────────────────

describe('malformed requests', () => {
  it('each gets a clear status and a closed socket, is counted, and the proxy carries on', async () => {
    const t = await echo();
    const { proxy, port, refusals } = await startProxy({ allow: [`127.0.0.1:${t.port}`], requestTimeoutMs: 500 });
    const manyHeaders = 'CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: x\r\n' + 'X-A: b\r\n'.repeat(10_000) + '\r\n';
    const cases: [string, string | Buffer, number, RegExp][] = [
      ['GET', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', 405, /GET is not supported/],
      ['lower-case method', 'connect 127.0.0.1:80 HTTP/1.1\r\nHost: x\r\n\r\n', 405, /not supported/],
      ['absolute-form', `GET http://127.0.0.1:${t.port}/ HTTP/1.1\r\nHost: x\r\n\r\n`, 405, /CONNECT proxy/],
      ['garbage', randomBytes(64).fill(0x41, 0, 1).fill(0x0d, 62, 63).fill(0x0a, 63), 400, /./],
      ['binary with NUL', Buffer.from('\x16\x03\x01\x00\x05hello\r\n\r\n', 'latin1'), 400, /malformed/],
      ['bare LF', `CONNECT 127.0.0.1:${t.port} HTTP/1.1\nHost: x\n\n`, 400, /LF alone/],
      ['bare CR', `CONNECT 127.0.0.1:${t.port} HTTP/1.1\rHost: x\r\n\r\n`, 400, /CR inside/],
      ['HTTP/2.0', `CONNECT 127.0.0.1:${t.port} HTTP/2.0\r\nHost: x\r\n\r\n`, 505, /not supported/],
      ['HTTP/1.1 without Host', `CONNECT 127.0.0.1:${t.port} HTTP/1.1\r\n\r\n`, 400, /no Host/],
      ['two Hosts', `CONNECT 127.0.0.1:${t.port} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n`, 400, /more than one Host/],
      ['no port', 'CONNECT 127.0.0.1 HTTP/1.1\r\nHost: x\r\n\r\n', 400, /HOST:PORT/],
      ['port 0', 'CONNECT 127.0.0.1:0 HTTP/1.1\r\nHost: x\r\n\r\n', 400, /1-65535/],
      ['numeric name', `CONNECT 127.1:${t.port} HTTP/1.1\r\nHost: x\r\n\r\n`, 400, /not an IPv4 address/],
      ['user info', `CONNECT user@127.0.0.1:${t.port} HTTP/1.1\r\nHost: x\r\n\r\n`, 400, /not a host name/],
      ['IPv6 without brackets', 'CONNECT ::1:22 HTTP/1.1\r\nHost: x\r\n\r\n', 400, /brackets/],
      ['folded header', `CONNECT 127.0.0.1:${t.port} HTTP/1.1\r\nHost: x\r\n  folded\r\n\r\n`, 400, /folding/],
      ['space before colon', `CONNECT 127.0.0.1:${t.port} HTTP/1.1\r\nHost : x\r\n\r\n`, 400, /header name/],
      ['content', `CONNECT 127.0.0.1:${t.port} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello`, 400, /no content/],
      ['chunked', `CONNECT 127.0.0.1:${t.port} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`, 400, /no content/],
      ['oversized header block', `CONNECT 127.0.0.1:${t.port} HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(9000)}\r\n\r\n`, 431, /8192/],
      ['oversized line without CRLF', 'CONNECT ' + 'a'.repeat(10_000), 431, /8192/],
      ['10 000 headers', manyHeaders, 431, /more than 64 header fields/],
      ['no CRLF at all, then nothing', `CONNECT 127.0.0.1:${t.port} HTTP/1.1`, 408, /no complete request within 500 ms/],
      ['nothing', '', 408, /no complete request within 500 ms/],
      ['ends before the request', 'CONNECT 127.0.0.1:', 400, /ended before a complete request/],
    ];
    for (const [what, bytes, status, reason] of cases) {
      const c = await (what.includes('10 000') ? mpClient(port) : tlsClient(port, { allowHalfOpen: true } as tls.ConnectionOptions));
      const t0 = performance.now();
      const r = reply(c);
      if (bytes.length) c.write(bytes);
      if (what === 'ends before the request') c.end();
      const got = await r;
      expect(got.status, what).toBe(status);
      expect(got.body, what).toMatch(reason);
      expect(got.headers.connection, what).toBe('close');
      if (status === 405) expect(got.headers.allow).toBe('CONNECT');
      if (status === 408) expect(performance.now() - t0, what).toBeLessThan(1500);
      if (!c.writableEnded) c.end();
      await got.closed; // the proxy closes its side, the client its own after the answer
    }
    const n = (s: number[]) => cases.filter((x) => s.includes(x[2])).length;
    expect(proxy.stats.badRequest).toBe(n([400, 405, 431, 505]));
    expect(proxy.stats.timeouts).toBe(n([408]));
    expect(refusals.length).toBe(cases.length);
    // Still serving.
    const c = await mpClient(port);
    expect((await ask(c, connectHead(`127.0.0.1:${t.port}`))).status).toBe(200);
    c.write('still here');
    const echoed = await new Promise<string>((res) => c.once('data', (d: Buffer) => res(d.toString())).resume());
    expect(echoed).toBe('still here');
  });

  it('a client that sends nothing gets 408 within requestTimeoutMs (the 10 s default is documented)', async () => {
    const { proxy, port } = await startProxy({ allow: ['127.0.0.1:1'], requestTimeoutMs: 300 });
    const c = await mpClient(port);
    const t0 = performance.now();
    const r = await reply(c);
    const ms = performance.now() - t0;
    expect(r.status).toBe(408);
    expect(ms).toBeGreaterThan(250);
    expect(ms).toBeLessThan(1500);
    await r.closed;
    expect(proxy.stats.timeouts).toBe(1);
  });

  it('bad options throw coded errors: no allow list, a bad pattern, bad tokens, bad timeouts', () => {
    const base = { key: fixtures.key, cert: fixtures.cert };
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as { code?: string }).code;
      }
      return 'no error';
    };
    expect(code(() => createProxyServer({ ...base } as ProxyOptions))).toBe('ERR_MPTLS_INVALID_OPTION');
    expect(code(() => createProxyServer({ ...base, allow: [] }))).toBe('ERR_MPTLS_INVALID_OPTION');
    expect(code(() => createProxyServer({ ...base, allow: ['10.0.0.0/33:22'] }))).toBe('ERR_MPTLS_INVALID_OPTION');
    expect(code(() => createProxyServer({ ...base, allow: ['*:*'], tokens: [] }))).toBe('ERR_MPTLS_INVALID_OPTION');
    expect(code(() => createProxyServer({ ...base, allow: ['*:*'], tokens: ['has space'] }))).toBe('ERR_MPTLS_INVALID_OPTION');
    expect(code(() => createProxyServer({ ...base, allow: ['*:*'], idleTimeoutMs: -1 }))).toBe('ERR_MPTLS_INVALID_OPTION');
  });
});

// ─── the allow patterns ───────────────────────────────────────────────────

describe('allow patterns', () => {
  it('parse names, addresses, CIDR blocks, * and port ranges; refuse the rest', () => {
    expect(parseAllowPattern('10.0.0.5:22')).toMatchObject({ host: { kind: 'address', family: 4, address: '10.0.0.5', prefix: 32 }, ports: { from: 22, to: 22 } });
    expect(parseAllowPattern('db.internal:*')).toMatchObject({ host: { kind: 'name', name: 'db.internal' }, ports: { from: 1, to: 65535 } });
    expect(parseAllowPattern('*:443')).toMatchObject({ host: { kind: 'any' }, ports: { from: 443, to: 443 } });
    expect(parseAllowPattern('DB.Example.ORG.:8000-8100')).toMatchObject({ host: { kind: 'name', name: 'db.example.org' }, ports: { from: 8000, to: 8100 } });
    expect(parseAllowPattern('10.0.0.0/8:*').host).toEqual({ kind: 'address', family: 4, address: '10.0.0.0', prefix: 8 });
    expect(parseAllowPattern('2001:db8::/32:443').host).toEqual({ kind: 'address', family: 6, address: '2001:db8::', prefix: 32 });
    expect(parseAllowPattern('[2001:db8::]/32:443').host).toEqual({ kind: 'address', family: 6, address: '2001:db8::', prefix: 32 });
    expect(parseAllowPattern('[2001:db8::/32]:443').host).toEqual({ kind: 'address', family: 6, address: '2001:db8::', prefix: 32 });
    expect(parseAllowPattern('[::1]:22').host).toEqual({ kind: 'address', family: 6, address: '::1', prefix: 128 });
    expect(parseAllowPattern('::1:22').host).toEqual({ kind: 'address', family: 6, address: '::1', prefix: 128 });
    for (const bad of ['', 'db.internal', '10.0.0.5', ':22', '10.0.0.5:0', '10.0.0.5:65536', '10.0.0.5:9-8', '10.0.0.5:a', '10.0.0.0/33:1', '::/129:1', 'a b:1', '127.1:80', '[10.0.0.1]:1', '-bad.example:1', 'x..y:1', 'fe80::1%eth0:1', '*.example.com:443']) {
      expect(() => parseAllowPattern(bad), bad).toThrow(/bad allow pattern/);
    }
  });

  it('names match names (not addresses); addresses and CIDR blocks match addresses; * matches everything but the unspecified address', () => {
    const list = new AllowList(['db.internal:5432', '10.0.0.0/8:22', '2001:db8::/32:443', '*:8443', '192.0.2.7:1000-2000']);
    expect(list.allowsName('db.internal', 5432)).toBe(true);
    expect(list.allowsName('db.internal', 5433)).toBe(false);
    expect(list.allowsName('other.internal', 5432)).toBe(false);
    expect(list.allowsName('anything.example', 8443)).toBe(true);
    expect(list.allowsAddress('10.1.2.3', 22)).toBe(true);
    expect(list.allowsAddress('::ffff:10.1.2.3', 22)).toBe(true);
    expect(list.allowsAddress('11.0.0.1', 22)).toBe(false);
    expect(list.allowsAddress('2001:db8:ffff::1', 443)).toBe(true);
    expect(list.allowsAddress('2001:db9::1', 443)).toBe(false);
    expect(list.allowsAddress('192.0.2.7', 1500)).toBe(true);
    expect(list.allowsAddress('192.0.2.7', 2001)).toBe(false);
    expect(list.allowsAddress('127.0.0.1', 8443)).toBe(true);
    expect(list.allowsAddress('0.0.0.0', 8443)).toBe(false);
    expect(list.allowsAddress('::', 8443)).toBe(false);
    expect(list.hasAddressPatterns(22)).toBe(true);
    expect(list.hasAddressPatterns(5432)).toBe(false);
  });
});

// ─── the request parser ───────────────────────────────────────────────────

describe('the request parser', () => {
  const ok = (s: string) => {
    const step = parseConnectRequest(Buffer.from(s, 'latin1'));
    if (step.kind !== 'request') throw new Error(`${JSON.stringify(s)}: ${step.kind === 'error' ? step.error.message : 'more'}`);
    return step;
  };

  it('parses the three authority forms, keeps the bytes after the head, accepts HTTP/1.0 without Host', () => {
    expect(ok('CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n').request.target).toEqual({ authority: 'example.org:443', host: 'example.org', port: 443, kind: 'name' });
    expect(ok('CONNECT [2001:DB8::1]:22 HTTP/1.1\r\nHost: x\r\n\r\n').request.target).toEqual({ authority: '[2001:DB8::1]:22', host: '2001:db8::1', port: 22, kind: 'ipv6' });
    expect(ok('CONNECT 10.0.0.5:5432 HTTP/1.0\r\n\r\n').request).toMatchObject({ version: '1.0', target: { host: '10.0.0.5', port: 5432, kind: 'ipv4' } });
    const s = ok('\r\nCONNECT a.b:1 HTTP/1.1\r\nHost: a.b:1\r\nProxy-Authorization:  Bearer x  \r\n\r\nEXTRA');
    expect(s.rest.toString()).toBe('EXTRA');
    expect(s.request.headers).toEqual([
      { name: 'Host', value: 'a.b:1' },
      { name: 'Proxy-Authorization', value: 'Bearer x' },
    ]);
  });

  it('the limits: 8 KiB for the head, 64 headers', () => {
    const head = (n: number, pad = 0) => `CONNECT a.b:1 HTTP/1.1\r\nHost: x\r\n${'X: y\r\n'.repeat(n)}${pad ? `P: ${'p'.repeat(pad)}\r\n` : ''}\r\n`;
    expect(ok(head(63)).request.headers.length).toBe(64);
    const many = parseConnectRequest(Buffer.from(head(64)));
    expect(many.kind === 'error' && many.error.status).toBe(431);
    const base = head(0).length + 5; // "P: " + CRLF
    expect(ok(head(0, MAX_HEAD_BYTES - base)).request.headBytes).toBe(MAX_HEAD_BYTES);
    const over = parseConnectRequest(Buffer.from(head(0, MAX_HEAD_BYTES - base + 1)));
    expect(over.kind === 'error' && over.error.status).toBe(431);
  });

  const VALID = [
    'CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n',
    'CONNECT 127.0.0.1:8080 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nProxy-Authorization: Bearer abc.def\r\nUser-Agent: curl/7.88.1\r\n\r\n',
    'CONNECT [::1]:22 HTTP/1.0\r\n\r\n',
  ];

  const classify = (step: ParseStep) => {
    if (step.kind === 'more') return 'more';
    if (step.kind === 'error') {
      expect(step.error).toBeInstanceOf(RequestError);
      expect([400, 405, 431, 505]).toContain(step.error.status);
      expect(step.error.code).toMatch(/^ERR_MPTLS_PROXY_/);
      return `error ${step.error.status} ${step.error.message}`;
    }
    expect(step.request.method).toBe('CONNECT');
    expect(step.request.target.port).toBeGreaterThanOrEqual(1);
    expect(step.request.target.port).toBeLessThanOrEqual(65535);
    expect(step.request.headers.length).toBeLessThanOrEqual(64);
    expect(step.request.headBytes).toBeLessThanOrEqual(MAX_HEAD_BYTES);
    return `request ${JSON.stringify(step.request)} rest ${step.rest.toString('hex')}`;
  };

  /** Feeds `bytes` in the chunks `cuts` makes; the answer must not depend on them. */
  const chunked = (bytes: Uint8Array, cuts: number[]) => {
    const p = new ConnectRequestParser();
    let step: ParseStep = { kind: 'more' };
    let at = 0;
    for (const c of [...cuts.map((x) => x % (bytes.length + 1))].sort((a, b) => a - b).concat(bytes.length)) {
      step = p.push(bytes.subarray(at, Math.max(at, c)));
      at = Math.max(at, c);
      if (step.kind !== 'more') break;
    }
    // What the parser did not see yet follows its `rest` on the socket.
    if (step.kind === 'request') return { ...step, rest: Buffer.concat([step.rest, bytes.subarray(at)]) };
    return step;
  };

  it('property: random bytes only ever yield a request, a typed error or "more", whatever the chunking', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 12_000 }), fc.array(fc.nat(), { maxLength: 8 }), (bytes, cuts) => {
        const whole = classify(parseConnectRequest(bytes));
        expect(classify(chunked(bytes, cuts))).toBe(whole);
      }),
      { numRuns: 400 },
    );
  });

  it('property: mutated valid requests only ever yield a request, a typed error or "more", whatever the chunking', () => {
    const mutation = fc.oneof(
      fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
      fc.record({ op: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 8 }) }),
      fc.record({ op: fc.constant('replace' as const), at: fc.nat(), byte: fc.constantFrom(0, 9, 10, 13, 32, 58, 64, 91, 93, 127, 255, 0x41) }),
      fc.record({ op: fc.constant('repeat' as const), at: fc.nat(), times: fc.integer({ min: 2, max: 300 }) }),
    );
    fc.assert(
      fc.property(fc.constantFrom(...VALID), fc.array(mutation, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 6 }), (valid, mutations, cuts) => {
        let b = Buffer.from(valid, 'latin1');
        for (const m of mutations) {
          const at = m.at % (b.length + 1);
          if (m.op === 'insert') b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
          else if (m.op === 'delete') b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.n)]);
          else if (m.op === 'replace' && at < b.length) b[at] = m.byte;
          else if (m.op === 'repeat') {
            const line = b.subarray(at, b.indexOf('\r\n', at) < 0 ? b.length : b.indexOf('\r\n', at) + 2);
            b = Buffer.concat([b.subarray(0, at), ...Array<Buffer>(m.times).fill(line), b.subarray(at)]);
          }
        }
        const whole = classify(parseConnectRequest(b));
        expect(classify(chunked(b, cuts))).toBe(whole);
      }),
      { numRuns: 1500 },
    );
  });

  it('property: generated valid requests parse to their target', () => {
    const label = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}[a-z0-9]$/);
    const name = fc.array(label, { minLength: 1, maxLength: 4 }).map((l) => l.join('.'));
    const ipv4 = fc.ipV4();
    const ipv6 = fc.ipV6();
    const host = fc.oneof(
      name.map((h) => ({ text: h, host: h, kind: 'name' })),
      ipv4.map((h) => ({ text: h, host: h, kind: 'ipv4' })),
      ipv6.map((h) => ({ text: `[${h}]`, host: new net.SocketAddress({ address: h, family: 'ipv6' }).address, kind: 'ipv6' })),
    );
    const header = fc.tuple(fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,15}$/), fc.stringMatching(/^[ -~]{0,40}$/));
    fc.assert(
      fc.property(host, fc.integer({ min: 1, max: 65535 }), fc.array(header, { maxLength: 20 }), fc.uint8Array({ maxLength: 64 }), (h, port, headers, rest) => {
        const safe = headers.filter(([n]) => !/^(host|content-length|transfer-encoding|proxy-authorization)$/i.test(n));
        const head = `CONNECT ${h.text}:${port} HTTP/1.1\r\nHost: ${h.text}:${port}\r\n${safe.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`;
        const step = parseConnectRequest(Buffer.concat([Buffer.from(head, 'latin1'), rest]));
        if (h.kind === 'ipv6' && /^::ffff:\d+\.\d+\.\d+\.\d+$/.test(h.host)) return; // mapped: reported as IPv4
        expect(step.kind).toBe('request');
        if (step.kind !== 'request') return;
        expect(step.request.target).toEqual({ authority: `${h.text}:${port}`, host: h.host, port, kind: h.kind });
        expect(step.request.headers.length).toBe(safe.length + 1);
        expect(Buffer.compare(step.rest, Buffer.from(rest))).toBe(0);
      }),
      { numRuns: 500 },
    );
  });
});

