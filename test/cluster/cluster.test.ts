/**
 * Cluster mode (issue 16) on loopback, 2 workers:
 *   - the library API (test/support/cluster-app.mjs: `cluster.primary` in the
 *     primary, `https.createServer(…).listen()` in each worker): 20 two-path
 *     clients, every second subflow established at the worker that owns the
 *     connection (the worker id is the second byte of its token), 0 refused,
 *     1 MiB bodies intact, both workers used; a parked connection (every
 *     subflow killed) resumes at its own worker; plain TLS (node:https, curl -k)
 *     through the same port; a worker killed mid-test ends only its own
 *     connections, its joins are refused by the primary and counted
 *     (MPJoinNoTokenFound), the other worker's connections carry on; a
 *     replacement worker serves with fresh tokens; the cluster's metrics
 *     carry every worker's, labelled;
 *   - `mptls serve --workers 2` (the built CLI): the same 20 clients against
 *     /status.json, and curl -k.
 * The workers run the built dist/ (`npm test` builds first).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { https, type MptlsSocket } from '../../src/api/index.js';
import { fixturePath, fixtures } from '../support/fixtures.mjs';
import { until } from '../support/servers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const APP = fileURLToPath(new URL('../support/cluster-app.mjs', import.meta.url));
const TWO_PATHS = { localAddresses: ['127.0.0.1', '127.0.0.2'] };
const workerOf = (token: number) => (token >>> 16) & 0xff;

interface Primary {
  port: number;
  lines: Record<string, unknown>[];
  ask<T>(cmd: Record<string, unknown>, key: string): Promise<T>;
  send(cmd: Record<string, unknown>): void;
  /** The next line carrying `key` (≤ 15 s). */
  next(key: string): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

async function startPrimary(workers = 2): Promise<Primary> {
  const child: ChildProcess = spawn(process.execPath, [APP, String(workers)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: Record<string, unknown>[] = [];
  const waiters: ((l: Record<string, unknown>) => void)[] = [];
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    const l = JSON.parse(line) as Record<string, unknown>;
    lines.push(l);
    for (const w of [...waiters]) w(l);
  });
  const next = (key: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${key} from the primary`)), 15_000);
      const w = (l: Record<string, unknown>) => {
        if (!(key in l)) return;
        waiters.splice(waiters.indexOf(w), 1);
        clearTimeout(t);
        resolve(l);
      };
      waiters.push(w);
    });
  const first = await next('port');
  return {
    port: first.port as number,
    lines,
    ask: async <T>(cmd: Record<string, unknown>, key: string) => {
      const p = next(key);
      child.stdin!.write(`${JSON.stringify(cmd)}\n`);
      return (await p) as T;
    },
    send: (cmd) => child.stdin!.write(`${JSON.stringify(cmd)}\n`),
    next,
    stop: async () => {
      child.stdin!.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
      clearTimeout(t);
    },
  };
}

interface Info {
  worker: number;
  pid: number;
  mode: string;
  token?: number;
  subflows: number;
}

/** One client connection (its own keep-alive agent, one socket) and what it asked. */
function client(port: number, mptcp: object | undefined = TWO_PATHS) {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, mptcp });
  let socket: MptlsSocket | undefined;
  const get = (path: string) =>
    new Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }>((resolve, reject) => {
      const req = https.get(`https://127.0.0.1:${port}${path}`, { ca: fixtures.ca, agent }, (res) => {
        socket = res.socket as MptlsSocket;
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
    });
  return {
    get,
    info: async () => JSON.parse((await get('/info')).body.toString()) as Info,
    get socket() {
      return socket;
    },
    close: () => agent.destroy(),
  };
}

describe('cluster mode, the library API: cluster.primary + createServer().listen() in each worker', () => {
  let p: Primary;
  beforeAll(async () => {
    p = await startPrimary(2);
  });
  afterAll(async () => {
    await p?.stop();
  });

  it('20 two-path clients: every second subflow at the worker that owns the connection, 0 refused, bodies intact, both workers used', async () => {
    const clients = Array.from({ length: 20 }, () => client(p.port));
    const infos = await Promise.all(clients.map((c) => c.info()));
    for (const i of infos) {
      expect(i.mode).toBe('userspace');
      expect(i.subflows).toBe(2);
      expect(workerOf(i.token!)).toBe(i.worker);
    }
    expect(new Set(infos.map((i) => i.worker))).toEqual(new Set([0, 1]));
    for (const c of clients) expect(c.socket!.mptcp.subflows().filter((s) => s.state === 'established').length).toBe(2);
    const blobs = await Promise.all(clients.map((c) => c.get('/blob?size=1048576')));
    for (const b of blobs) {
      expect(b.body.length).toBe(1 << 20);
      expect(createHash('sha256').update(b.body).digest('hex')).toBe(b.headers['x-sha256']);
    }
    const { counters, stats } = await p.ask<{ counters: Record<string, number>; stats: Record<string, number> }>({ cmd: 'counters' }, 'counters');
    expect(stats.joins).toBeGreaterThanOrEqual(20);
    expect(stats.noWorker).toBe(0);
    expect(counters.MPJoinNoTokenFound).toBe(0);
    for (const c of clients) c.close();
  });

  it('a parked connection resumes at its own worker: every subflow killed, the re-joins reach the worker that owns it', async () => {
    const c = client(p.port);
    const before = await c.info();
    const sock = c.socket!;
    const restored = new Promise<void>((r) => sock.once('paths-restored', () => r()));
    const info = sock.mptcp as unknown as { subflows(): { id: number }[]; driver: { socketOf(id: number): { destroy(): void } | undefined } };
    for (const f of info.subflows()) info.driver.socketOf(f.id)?.destroy();
    await restored;
    const after = await c.info();
    expect(after.pid).toBe(before.pid);
    expect(after.token).toBe(before.token);
    expect(after.subflows).toBeGreaterThanOrEqual(1);
    c.close();
  });

  it('plain TLS clients (node:https, curl -k) are served through the same port', async () => {
    const nodeHttps = await import('node:https');
    const body = await new Promise<string>((resolve, reject) => {
      const req = nodeHttps.get(`https://127.0.0.1:${p.port}/info`, { ca: fixtures.ca, timeout: 10_000 }, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => (b += d.toString()));
        res.on('end', () => resolve(b));
      });
      req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
      req.on('error', reject);
    });
    expect((JSON.parse(body) as Info).mode).toBe('fallback');
    const curl = spawnSync('curl', ['-sS', '--cacert', fixturePath('ca.pem'), `https://127.0.0.1:${p.port}/info`], { encoding: 'utf8', timeout: 15_000 });
    expect(curl.status, curl.stderr).toBe(0);
    expect((JSON.parse(curl.stdout) as Info).mode).toBe('fallback');
  });

  it('a worker dying slowly (its channel closed, its exit 4 s later) is sent nothing: new connections go to the other worker, its joins are refused, its own connections carry on; the primary lives on', async () => {
    // Before the fix the primary handed the next new connection to such a
    // worker and died of node:cluster's ERR_IPC_CHANNEL_CLOSED 'error' event.
    p.send({ cmd: 'restart', on: true });
    const clients = Array.from({ length: 6 }, () => client(p.port));
    const infos = await Promise.all(clients.map((c) => c.info()));
    const mine = clients.filter((_, i) => infos[i].worker === 0);
    expect(mine.length).toBeGreaterThan(0);
    const before = await p.ask<{ counters: Record<string, number> }>({ cmd: 'counters' }, 'counters');
    expect((await p.ask<{ detached: number }>({ cmd: 'detach', id: 0, ms: 4000 }, 'detached')).detached).toBe(0);
    const meanwhile = await Promise.all(Array.from({ length: 8 }, () => client(p.port).info()));
    expect(meanwhile.map((i) => i.worker)).toEqual(Array(8).fill(1));
    for (const i of meanwhile) expect(i.subflows).toBe(2);
    // A join for the dying worker: refused by the primary, counted.
    const sock = mine[0].socket!;
    const info = sock.mptcp as unknown as { driver: { socketOf(id: number): { destroy(): void } | undefined } };
    info.driver.socketOf(1)!.destroy();
    let refused = 0;
    for (const t0 = Date.now(); refused === 0 && Date.now() - t0 < 3000; await new Promise((r) => setTimeout(r, 50))) {
      const now = await p.ask<{ counters: Record<string, number> }>({ cmd: 'counters' }, 'counters');
      refused = now.counters.MPJoinNoTokenFound - before.counters.MPJoinNoTokenFound;
    }
    expect(refused).toBeGreaterThan(0);
    // The dying worker still serves what it has, over the subflow left.
    const b = await mine[0].get('/blob?size=262144');
    expect(createHash('sha256').update(b.body).digest('hex')).toBe(b.headers['x-sha256']);
    expect(b.headers['x-worker']).toBe('0');
    // It exits; a replacement serves.
    const replaced = p.next('worker');
    expect((await replaced).worker).toBe(0);
    const { stats } = await p.ask<{ stats: Record<string, number> }>({ cmd: 'counters' }, 'counters');
    expect(stats.dropped).toBe(0);
    for (const c of clients) c.close();
  });

  it("a worker killed mid-test ends only its own connections: the primary refuses their joins (MPJoinNoTokenFound), the others carry on; a replacement serves with fresh tokens; metrics carry both workers'", async () => {
    p.send({ cmd: 'restart', on: false });
    const clients = Array.from({ length: 10 }, () => client(p.port));
    const infos = await Promise.all(clients.map((c) => c.info()));
    const errors = clients.map(() => [] as string[]);
    clients.forEach((c, i) => c.socket!.on('error', (e: Error & { code?: string }) => errors[i].push(e.code ?? e.message)));
    const before = await p.ask<{ counters: Record<string, number> }>({ cmd: 'counters' }, 'counters');
    const victim = 0;
    const exited = p.ask<{ exit: number }>({ cmd: 'kill', id: victim }, 'exit');
    expect((await exited).exit).toBe(victim);
    const mine = infos.map((i) => i.worker === victim);
    expect(mine.some(Boolean)).toBe(true);
    expect(mine.some((m) => !m)).toBe(true);
    // The victim's clients: closed at once with ECONNRESET (their re-joins refused by the primary).
    await until(() => clients.every((c, i) => !mine[i] || c.socket!.destroyed), 5000, "the dead worker's connections to close");
    for (let i = 0; i < clients.length; i++) if (mine[i]) expect(errors[i]).toEqual(['ECONNRESET']);
    const after = await p.ask<{ counters: Record<string, number>; stats: Record<string, number> }>({ cmd: 'counters' }, 'counters');
    expect(after.counters.MPJoinNoTokenFound - before.counters.MPJoinNoTokenFound).toBeGreaterThanOrEqual(mine.filter(Boolean).length);
    // The other worker's connections carry on, over both subflows.
    for (let i = 0; i < clients.length; i++) {
      if (mine[i]) continue;
      const b = await clients[i].get('/blob?size=262144');
      expect(createHash('sha256').update(b.body).digest('hex')).toBe(b.headers['x-sha256']);
      expect(errors[i]).toEqual([]);
      expect(clients[i].socket!.mptcp.subflows().filter((s) => s.state === 'established').length).toBe(2);
    }
    // New connections all go to the live worker meanwhile.
    const meanwhile = await Promise.all(Array.from({ length: 4 }, () => client(p.port).info()));
    expect(meanwhile.every((i) => i.worker === 1 && i.subflows === 2)).toBe(true);
    // A replacement for worker 0: fresh tokens, its joins routed again.
    const oldTokens = new Set(infos.filter((i) => i.worker === victim).map((i) => i.token));
    p.send({ cmd: 'restart', on: true });
    const restarted = p.ask<{ worker: number; pid: number }>({ cmd: 'kill', id: 1 }, 'worker'); // worker 1 dies too, and is replaced
    expect((await restarted).worker).toBe(1);
    const fresh: Info[] = [];
    const t0 = Date.now();
    while (Date.now() - t0 < 10_000 && !fresh.some((i) => i.worker === 1)) fresh.push(await client(p.port).info());
    const w1 = fresh.filter((i) => i.worker === 1);
    expect(w1.length).toBeGreaterThan(0);
    for (const i of w1) {
      expect(i.subflows).toBe(2);
      expect(workerOf(i.token!)).toBe(1);
      expect(oldTokens.has(i.token)).toBe(false);
    }
    const { metrics } = await p.ask<{ metrics: string }>({ cmd: 'metrics' }, 'metrics');
    expect(metrics).toMatch(/^mptls_primary_workers 1$/m);
    expect(metrics).toMatch(/^mptls_connections\{worker="1"\} \d+$/m);
    expect(metrics).toMatch(/^mptls_primary_mp_join_no_token_found_total [1-9]\d*$/m);
    for (const c of clients) c.close();
  });

});

describe('mptls serve --workers 2', () => {
  let child: ChildProcess;
  let port = 0;
  beforeAll(async () => {
    child = spawn(process.execPath, [`${ROOT}bin/mptls.js`, 'serve', '--workers', '2', '--port', '0', '--cert', fixturePath('server.pem'), '--key', fixturePath('server.key'), '--status', '-q'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('serve --workers did not start')), 15_000);
      readline.createInterface({ input: child.stdout! }).on('line', (l) => {
        if (l.startsWith('listening on')) {
          clearTimeout(t);
          resolve(l);
        }
      });
    });
    port = Number(/:(\d+)\/$/.exec(line)![1]);
  });
  afterAll(async () => {
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
    clearTimeout(t);
  });

  it('20 two-path clients get both subflows at the worker that owns the connection (status.json), spread over both; curl -k is served', async () => {
    const clients = Array.from({ length: 20 }, () => client(port));
    const firsts = await Promise.all(clients.map((c) => c.get('/status.json')));
    // The second subflow is up at the client; the server's view after it.
    await until(() => clients.every((c) => c.socket!.mptcp.subflows().filter((s) => s.state === 'established').length === 2), 5000, 'two subflows everywhere');
    const views = await Promise.all(clients.map((c) => c.get('/status.json')));
    const workers = new Set<number>();
    for (const v of [...views]) {
      const j = JSON.parse(v.body.toString()) as { connection: { mode: string; tokens: { local: string }; subflows: { state: string }[] } };
      expect(j.connection.mode).toBe('userspace');
      expect(j.connection.subflows.filter((s) => s.state === 'established').length).toBe(2);
      workers.add(workerOf(parseInt(j.connection.tokens.local.replace(/^0x/, ''), 16)));
    }
    expect(firsts.every((f) => f.status === 200)).toBe(true);
    expect(workers).toEqual(new Set([0, 1]));
    const curl = spawnSync('curl', ['-sS', '-k', `https://127.0.0.1:${port}/status.json`], { encoding: 'utf8', timeout: 15_000 });
    expect(curl.status, curl.stderr).toBe(0);
    expect((JSON.parse(curl.stdout) as { connection: { mode: string } }).connection.mode).toBe('fallback');
    for (const c of clients) c.close();
  });
});
