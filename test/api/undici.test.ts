/**
 * `undici.connector()` with Node 20's global fetch and an Agent of the npm
 * package undici@6 (a devDependency), against an mptls HTTPS server on
 * loopback: two subflows, keep-alive reuse, ECONNREFUSED, the connect
 * timeout, one callback only (and the connector's listeners gone after it),
 * pins, `http:` origins over plain TCP, a tunnel socket refused.
 */
import http from 'node:http';
import net from 'node:net';
import type tls from 'node:tls';
import { Agent, errors } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as https from '../../src/api/https.js';
import { connect, type MptlsSocket } from '../../src/api/client.js';
import { connector, ConnectTimeoutError, type ConnectorOptions, type ConnectorRequest } from '../../src/api/undici.js';
import { spkiSha256 } from '../../src/tls/pin.js';
import { close, fixtures, freePort, listen, until } from '../support/servers.js';

const TWO = ['127.0.0.1', '127.0.0.2'];

let server: ReturnType<typeof https.createServer>;
let port: number;
/** The server's sockets, in order of the requests. */
const seen: MptlsSocket[] = [];
let secureConnections = 0;

beforeAll(async () => {
  server = https.createServer({ key: fixtures.key, cert: fixtures.cert, ALPNProtocols: ['http/1.1'], mptcp: {} }, (req, res) => {
    const s = req.socket as MptlsSocket;
    seen.push(s);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ url: req.url, mode: s.mptcp?.mode, subflows: s.mptcp?.subflows().length ?? 0 }));
  });
  server.on('secureConnection', () => secureConnections++);
  port = await listen(server);
});

afterAll(async () => {
  await close(server);
});

/** A connector whose sockets are kept, for a look at the client's side. */
function recording(options: ConnectorOptions): { connect: ReturnType<typeof connector>; sockets: net.Socket[] } {
  const inner = connector(options);
  const sockets: net.Socket[] = [];
  return {
    sockets,
    connect: (req, cb) =>
      inner(req, (...args) => {
        if (args[1]) sockets.push(args[1]);
        cb(...args);
      }),
  };
}

/** The connector called directly, as undici would; resolves on the first callback, records every call. */
function callDirectly(options: ConnectorOptions, req: Partial<ConnectorRequest>): { calls: Array<[Error | null, net.Socket | null]>; first: Promise<[Error | null, net.Socket | null]> } {
  const calls: Array<[Error | null, net.Socket | null]> = [];
  let resolveFirst!: (v: [Error | null, net.Socket | null]) => void;
  const first = new Promise<[Error | null, net.Socket | null]>((r) => (resolveFirst = r));
  connector(options)({ hostname: '127.0.0.1', protocol: 'https:', port: String(port), ...req }, (err, socket) => {
    calls.push([err, socket]);
    resolveFirst([err, socket]);
  });
  return { calls, first };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('undici.connector with fetch', () => {
  it('fetches over two subflows; the server sees a userspace connection with 2 subflows', async () => {
    const { connect: c, sockets } = recording({ ca: fixtures.ca, mptcp: { localAddresses: TWO } });
    const dispatcher = new Agent({ connect: c });
    try {
      const first = await fetch(`https://127.0.0.1:${port}/one`, { dispatcher });
      expect(first.status).toBe(200);
      expect(await first.json()).toMatchObject({ url: '/one', mode: 'userspace' });
      expect(sockets).toHaveLength(1);
      const client = sockets[0] as MptlsSocket;
      expect(client.mptcp.mode).toBe('userspace');
      expect((client as tls.TLSSocket).alpnProtocol).toBe('http/1.1');
      expect((client as tls.TLSSocket).authorized).toBe(true);
      // The join follows the key confirmation: wait for it, then ask again on the same connection.
      await until(() => client.mptcp.subflows().filter((s) => s.state === 'established').length === 2, 5000, 'the join');
      const second = await fetch(`https://127.0.0.1:${port}/two`, { dispatcher });
      expect(await second.json()).toEqual({ url: '/two', mode: 'userspace', subflows: 2 });
      const s = seen[seen.length - 1];
      expect(s.mptcp.mode).toBe('userspace');
      expect(s.mptcp.subflows().map((f) => f.remoteAddress).sort()).toEqual(TWO);
      expect(sockets).toHaveLength(1);
    } finally {
      await dispatcher.close();
    }
  });

  it('reuses one keep-alive connection for several requests', async () => {
    const { connect: c, sockets } = recording({ ca: fixtures.ca, mptcp: { localAddresses: TWO } });
    const dispatcher = new Agent({ connect: c });
    const before = secureConnections;
    const from = seen.length;
    try {
      for (let i = 0; i < 5; i++) {
        const r = await fetch(`https://127.0.0.1:${port}/k${i}`, { dispatcher });
        expect(((await r.json()) as { url: string }).url).toBe(`/k${i}`);
        // undici frees the connection a macrotask after the body ends (its
        // own connector too): a request sent before that opens another one.
        await new Promise((r) => setTimeout(r, 0));
      }
    } finally {
      await dispatcher.close();
    }
    expect(sockets).toHaveLength(1);
    expect(secureConnections - before).toBe(1);
    const used = new Set(seen.slice(from));
    expect(used.size).toBe(1);
  });

  it('queues concurrent requests on one connection with connections: 1', async () => {
    const { connect: c, sockets } = recording({ ca: fixtures.ca, mptcp: { localAddresses: TWO } });
    const dispatcher = new Agent({ connect: c, connections: 1 });
    const from = seen.length;
    try {
      const bodies = await Promise.all([0, 1, 2, 3, 4].map(async (i) => ((await (await fetch(`https://127.0.0.1:${port}/p${i}`, { dispatcher })).json()) as { url: string }).url));
      expect(bodies).toEqual(['/p0', '/p1', '/p2', '/p3', '/p4']);
    } finally {
      await dispatcher.close();
    }
    expect(sockets).toHaveLength(1);
    expect(new Set(seen.slice(from)).size).toBe(1);
  });

  it('rejects with a cause whose code is ECONNREFUSED for a closed port', async () => {
    const closed = await freePort();
    const dispatcher = new Agent({ connect: connector({ ca: fixtures.ca, mptcp: { localAddresses: TWO } }) });
    try {
      const err = await fetch(`https://127.0.0.1:${closed}/`, { dispatcher }).then(
        () => undefined,
        (e: unknown) => e as Error & { cause?: { code?: string } },
      );
      expect(err).toBeInstanceOf(TypeError);
      expect(err?.cause?.code).toBe('ECONNREFUSED');
    } finally {
      await dispatcher.close();
    }
  });

  it('times out a server that accepts TCP and says nothing (UND_ERR_CONNECT_TIMEOUT)', async () => {
    const silent = net.createServer(() => {});
    const silentPort = await listen(silent);
    const dispatcher = new Agent({ connect: connector({ ca: fixtures.ca, timeout: 300, mptcp: { localAddresses: TWO } }) });
    try {
      const t0 = Date.now();
      const err = await fetch(`https://127.0.0.1:${silentPort}/`, { dispatcher }).then(
        () => undefined,
        (e: unknown) => e as Error & { cause?: Error & { code?: string } },
      );
      const elapsed = Date.now() - t0;
      expect(err).toBeInstanceOf(TypeError);
      expect(err?.cause).toBeInstanceOf(ConnectTimeoutError);
      expect(err?.cause).toBeInstanceOf(errors.ConnectTimeoutError);
      expect(err?.cause?.code).toBe('UND_ERR_CONNECT_TIMEOUT');
      expect(err?.cause?.message).toBe(`Connect Timeout Error (attempted address: 127.0.0.1:${silentPort}, timeout: 300ms)`);
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(5000);
    } finally {
      await dispatcher.close();
      await close(silent, 100);
    }
  });

  it('fails a wrong pin with ERR_MPTLS_PIN_MISMATCH and passes the right one', async () => {
    const wrong = new Agent({ connect: connector({ ca: fixtures.ca, pin: 'sha256//' + Buffer.alloc(32).toString('base64') }) });
    try {
      const err = await fetch(`https://127.0.0.1:${port}/`, { dispatcher: wrong }).then(
        () => undefined,
        (e: unknown) => e as Error & { cause?: { code?: string } },
      );
      expect(err?.cause?.code).toBe('ERR_MPTLS_PIN_MISMATCH');
    } finally {
      await wrong.close();
    }
    const right = new Agent({ connect: connector({ ca: fixtures.ca, pin: spkiSha256(fixtures.cert), mptcp: { localAddresses: TWO } }) });
    try {
      expect((await fetch(`https://127.0.0.1:${port}/pinned`, { dispatcher: right })).status).toBe(200);
    } finally {
      await right.close();
    }
  });

  it('serves an http: origin over plain TCP (no .mptcp)', async () => {
    const plain = http.createServer((req, res) => res.end(`plain ${req.url}`));
    const plainPort = await listen(plain);
    const { connect: c, sockets } = recording({ ca: fixtures.ca, mptcp: { localAddresses: TWO } });
    const dispatcher = new Agent({ connect: c });
    try {
      const r = await fetch(`http://127.0.0.1:${plainPort}/x`, { dispatcher });
      expect(await r.text()).toBe('plain /x');
      expect(sockets).toHaveLength(1);
      expect(sockets[0]).not.toHaveProperty('mptcp');
      expect('encrypted' in sockets[0]).toBe(false);
    } finally {
      await dispatcher.close();
      await close(plain, 100);
    }
  });
});

describe('undici.connector called directly', () => {
  it('calls back once on success and leaves no listeners of its own behind', async () => {
    const { calls, first } = callDirectly({ ca: fixtures.ca, mptcp: { localAddresses: TWO } }, {});
    const [err, socket] = await first;
    expect(err).toBeNull();
    const s = socket as MptlsSocket;
    expect(s.mptcp.mode).toBe('userspace');
    // What a plain connect() has: the connector added nothing that stays.
    const ref = connect({ host: '127.0.0.1', port, ca: fixtures.ca, mptcp: { localAddresses: TWO } });
    ref.on('error', () => {});
    await new Promise((r) => ref.once('secureConnect', r));
    await tick();
    await tick();
    for (const event of ['error', 'close', 'secureConnect', 'connect', 'end']) {
      expect(s.listenerCount(event), event).toBe(ref.listenerCount(event) - (event === 'error' ? 1 : 0));
    }
    ref.destroy();
    // An error after the callback goes to whoever listens now, never to the callback.
    const later = new Promise((r) => s.once('error', r));
    s.destroy(new Error('later'));
    await later;
    await new Promise((r) => s.once('close', r));
    await tick();
    expect(calls).toHaveLength(1);
  });

  it('calls back once on a refused connection', async () => {
    const closed = await freePort();
    const { calls, first } = callDirectly({ ca: fixtures.ca }, { port: String(closed) });
    const [err, socket] = await first;
    expect(socket).toBeNull();
    expect((err as Error & { code?: string }).code).toBe('ECONNREFUSED');
    await new Promise((r) => setTimeout(r, 200));
    expect(calls).toHaveLength(1);
  });

  it('calls back once on the timeout, even when the server answers later', async () => {
    let accepted: net.Socket | undefined;
    const slow = net.createServer((s) => (accepted = s));
    const slowPort = await listen(slow);
    try {
      const { calls, first } = callDirectly({ ca: fixtures.ca, timeout: 150 }, { port: String(slowPort) });
      const [err, socket] = await first;
      expect(socket).toBeNull();
      expect((err as Error & { code?: string }).code).toBe('UND_ERR_CONNECT_TIMEOUT');
      accepted?.end('garbage, too late');
      await new Promise((r) => setTimeout(r, 300));
      expect(calls).toHaveLength(1);
    } finally {
      await close(slow, 100);
    }
  });

  it('defaults: port 443 for https: when undici passes "" (a refused connect, never a hang)', async () => {
    // Nothing of ours listens on 443 on loopback in the test environment: refused, or nothing at all.
    const { calls, first } = callDirectly({ ca: fixtures.ca, timeout: 500 }, { port: '' });
    const [err] = await first;
    expect(err).toBeInstanceOf(Error);
    expect(err?.message).toMatch(/127\.0\.0\.1:443\b/);
    expect(calls).toHaveLength(1);
  });

  it('refuses an HTTP CONNECT tunnel socket (ERR_MPTLS_UNDICI_TUNNEL) and bad options', async () => {
    const { first } = callDirectly({}, { httpSocket: new net.Socket() });
    const [err, socket] = await first;
    expect(socket).toBeNull();
    expect((err as Error & { code?: string }).code).toBe('ERR_MPTLS_UNDICI_TUNNEL');
    expect(() => connector({ timeout: -1 })).toThrow(expect.objectContaining({ code: 'ERR_MPTLS_INVALID_OPTION' }));
    const { first: ws } = callDirectly({}, { protocol: 'wss:' });
    expect(((await ws)[0] as Error & { code?: string }).code).toBe('ERR_MPTLS_INVALID_OPTION');
  });
});
