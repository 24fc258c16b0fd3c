/**
 * mptls behind a real HAProxy (docs/PROTOCOL.md §2.1): three servers with
 * serverId 1, 2, 3; `haproxyConfig()` routes each MP_JOIN by its token's top
 * byte and balances everything else round-robin, without per-connection
 * state. 30 clients with 2 subflows each: every join reaches the server that
 * issued its token (0 refused), 4 MiB each way intact. curl and openssl
 * s_client go through the same frontend. The contrast: the naive round-robin
 * config sends joins to the wrong server, where they are refused and counted
 * (MPJoinNoTokenFound), while the transfers complete on their first subflow.
 *
 * HAProxy is the real binary (`haproxy -db`, spawned asynchronously: the
 * servers and clients run in this process). Without it the HAProxy tests are
 * skipped with a printed reason, except under CI, where they fail.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { haproxyConfig, HaproxyConfigError, parseBackend, parseHostPort, type HaproxyConfigOptions } from '../../src/api/haproxy.js';
import { EXIT_OK, EXIT_USAGE, main } from '../../src/cli/main.js';
import type { MptlsSocket } from '../../src/api/index.js';
import { close, freePort, listen, mptlsConnect, mptlsServer, receiveAll, sendBulk, until, type Server } from '../support/servers.js';
import { sink } from '../support/sink.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MiB = 1024 * 1024;
const SIZE = 4 * MiB;
const IDS = [1, 2, 3] as const;
const LOCALS = ['127.0.0.1', '127.0.0.2'];

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}
/** The haproxy binary: on PATH, or where Debian puts it (/usr/sbin is not on every user's PATH). */
function findHaproxy(): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v haproxy'], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  return ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy'].find((f) => fs.existsSync(f));
}
const HAPROXY = findHaproxy() ?? 'haproxy';
const HAVE_HAPROXY = findHaproxy() !== undefined;
if (!HAVE_HAPROXY && !process.env.CI) console.warn('[haproxy] haproxy not installed (apt-get install haproxy): the HAProxy tests are skipped');

/** Under CI a missing tool fails; elsewhere that check is skipped with the reason. */
function need(cmd: string): boolean {
  if (have(cmd)) return true;
  if (process.env.CI) throw new Error(`${cmd} is required under CI`);
  console.warn(`[haproxy] ${cmd} not installed: that check is skipped`);
  return false;
}

// ------------------------------------------------------------ pure parts

describe('haproxyConfig', () => {
  const backends = ['1=127.0.0.1:9001', '2=127.0.0.1:9002', '3=127.0.0.1:9003'];

  it('routes MP_JOIN by the token top byte, one use_backend per id; the rest round-robin; no stick tables', () => {
    const cfg = haproxyConfig({ listen: '127.0.0.1:8443', backends });
    expect(cfg).toMatch(/^global$/m);
    expect(cfg).toMatch(/^defaults$/m);
    expect(cfg).toMatch(/^\s+mode tcp$/m);
    expect(cfg).toMatch(/^frontend mptls$/m);
    expect(cfg).toContain('bind 127.0.0.1:8443');
    expect(cfg).toMatch(/tcp-request inspect-delay \d/);
    expect(cfg).toContain('tcp-request content accept if tls');
    expect(cfg).toContain('req.payload(0,1) -m bin 16');
    expect(cfg).toContain('req.payload(26,1),hex -m beg 0');
    expect(cfg).toContain('req.payload(26,1),hex -m beg 1');
    for (const id of IDS) {
      expect(cfg).toContain(`use_backend mptls_id${id} if mptls_v3 mp_join { req.payload(28,1) -m bin 0${id} }`);
      expect(cfg).toMatch(new RegExp(`^backend mptls_id${id}\\n    server id${id} 127\\.0\\.0\\.1:900${id}$`, 'm'));
    }
    expect(cfg).toMatch(/^backend mptls_rr\n    balance roundrobin\n    server id1 127\.0\.0\.1:9001\n    server id2 127\.0\.0\.1:9002\n    server id3 127\.0\.0\.1:9003$/m);
    expect(cfg).toContain('default_backend mptls_rr');
    expect(cfg).not.toMatch(/^\s*stick/m); // no stick table, no stick rule
    expect(haproxyConfig({ listen: '127.0.0.1:8443', backends })).toBe(cfg); // pure
  });

  it('--no-token-routing: the naive config, everything round-robin', () => {
    const cfg = haproxyConfig({ listen: '127.0.0.1:8443', backends, tokenRouting: false });
    expect(cfg).not.toContain('use_backend');
    expect(cfg).not.toContain('req.payload');
    expect(cfg).toContain('default_backend mptls_rr');
    expect(cfg).toContain('balance roundrobin');
  });

  it('IPv6 in brackets, host names, objects', () => {
    expect(parseHostPort('[::1]:8443')).toEqual({ host: '::1', port: 8443 });
    expect(parseBackend('7=backend-7.example:9000')).toEqual({ id: 7, host: 'backend-7.example', port: 9000 });
    const cfg = haproxyConfig({ listen: { host: '::1', port: 443 }, backends: [{ id: 0, host: '::1', port: 9000 }, '255=10.0.0.2:9000'] });
    expect(cfg).toContain('bind [::1]:443');
    expect(cfg).toContain('server id0 [::1]:9000');
    expect(cfg).toContain('{ req.payload(28,1) -m bin FF }');
    expect(cfg).toContain('{ req.payload(28,1) -m bin 00 }');
  });

  it('bad arguments throw a clear HaproxyConfigError', () => {
    const bad = (o: Partial<HaproxyConfigOptions>, msg: RegExp) =>
      expect(() => haproxyConfig({ listen: '127.0.0.1:8443', backends, ...o } as HaproxyConfigOptions)).toThrow(msg);
    bad({ backends: ['256=127.0.0.1:1'] }, /server id must be an integer 0\.\.255.*256/);
    bad({ backends: ['-1=127.0.0.1:1'] }, /server id must be an integer 0\.\.255/);
    bad({ backends: ['x=127.0.0.1:1'] }, /server id must be an integer 0\.\.255/);
    bad({ backends: [{ id: 1.5, host: '127.0.0.1', port: 1 }] }, /server id must be an integer 0\.\.255/);
    bad({ backends: ['127.0.0.1:9001'] }, /expected ID=HOST:PORT/);
    bad({ backends: ['1=127.0.0.1:9001', '1=127.0.0.1:9002'] }, /server id 1 is given twice/);
    bad({ backends: ['1=127.0.0.1:9001', '2=127.0.0.1:9001'] }, /127\.0\.0\.1:9001 is given twice/);
    bad({ backends: ['1=127.0.0.1'] }, /expected HOST:PORT/);
    bad({ backends: ['1=127.0.0.1:0'] }, /port must be an integer 1\.\.65535/);
    bad({ backends: ['1=127.0.0.1:70000'] }, /port must be an integer 1\.\.65535/);
    bad({ backends: ['1=::1:9000'] }, /IPv6 address in brackets/);
    bad({ backends: ['1=bad host:9000'] }, /not an IP address or host name/);
    bad({ backends: ['1=300.1.1.1:9000'] }, /not an IPv4 address/);
    bad({ backends: [] }, /at least one backend/);
    bad({ listen: '8443' }, /listen: expected HOST:PORT/);
    bad({ listen: 'localhost:http' }, /port must be an integer/);
    bad({ inspectDelayMs: 0 }, /inspectDelayMs must be a positive integer/);
    expect(() => haproxyConfig({ listen: '127.0.0.1:1', backends: ['999=127.0.0.1:1'] })).toThrow(HaproxyConfigError);
  });
});

describe('createServer({ mptcp: { serverId } })', () => {
  it('a bad id throws a RangeError at createServer time', () => {
    for (const id of [256, -1, 1.5, NaN, '3' as unknown as number]) {
      expect(() => mptlsServer({ mptcp: { serverId: id } })).toThrow(RangeError);
      expect(() => mptlsServer({ mptcp: { serverId: id } })).toThrow(/serverId must be an integer 0\.\.255/);
    }
    expect(() => mptlsServer({ mptcp: { serverId: 0 } })).not.toThrow();
  });

  it('the server id is the top byte of every token the server issues (direct, no balancer)', async () => {
    const server = mptlsServer({ mptcp: { serverId: 200 } }, (s) => {
      s.on('error', () => {}); // the client leaves abruptly
      s.end();
    });
    const port = await listen(server);
    try {
      for (let i = 0; i < 3; i++) {
        const c = await mptlsConnect(port, { mptcp: { localAddresses: ['127.0.0.1'] } });
        expect(c.mptcp.mode).toBe('userspace');
        expect(c.mptcp.tokens!.remote >>> 24).toBe(200);
        c.on('error', () => {});
        c.destroy();
      }
    } finally {
      await close(server);
    }
  });
});

describe('mptls haproxy-config', () => {
  async function run(argv: string[]) {
    const stdout = sink();
    const stderr = sink();
    const code = await main(argv, { stdout, stderr });
    await new Promise((r) => setImmediate(r));
    return { code, stdout: stdout.text(), stderr: stderr.text() };
  }

  it('prints haproxyConfig() for the arguments; --no-token-routing, -o FILE, --help', async () => {
    const args = ['--listen', '127.0.0.1:8443', '--backend', '1=127.0.0.1:9001', '--backend', '2=127.0.0.1:9002', '--backend', '3=127.0.0.1:9003'];
    const backends = ['1=127.0.0.1:9001', '2=127.0.0.1:9002', '3=127.0.0.1:9003'];
    const r = await run(['haproxy-config', ...args]);
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toBe(haproxyConfig({ listen: '127.0.0.1:8443', backends }));
    const n = await run(['haproxy-config', ...args, '--no-token-routing', '--inspect-delay', '2000', '--no-log']);
    expect(n.stdout).toBe(haproxyConfig({ listen: '127.0.0.1:8443', backends, tokenRouting: false, inspectDelayMs: 2000, log: false }));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mptls-haproxy-cli-'));
    try {
      const f = path.join(dir, 'haproxy.cfg');
      expect((await run(['haproxy-config', ...args, '-o', f])).code).toBe(EXIT_OK);
      expect(fs.readFileSync(f, 'utf8')).toBe(r.stdout);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    const h = await run(['haproxy-config', '--help']);
    expect(h.code).toBe(EXIT_OK);
    expect(h.stdout).toContain('--no-token-routing');
    expect((await run(['help', 'haproxy-config'])).stdout).toContain('--backend ID=HOST:PORT');
    expect((await run(['--help'])).stdout).toContain('haproxy-config');
  });

  it('usage errors exit 2 with the reason', async () => {
    const cases: [string[], RegExp][] = [
      [['--backend', '1=127.0.0.1:9001'], /--listen HOST:PORT is required/],
      [['--listen', '127.0.0.1:8443'], /at least one --backend/],
      [['--listen', '127.0.0.1:8443', '--backend', '256=127.0.0.1:9001'], /server id must be an integer 0\.\.255/],
      [['--listen', '127.0.0.1:8443', '--backend', '1=127.0.0.1:9001', '--backend', '1=127.0.0.1:9002'], /server id 1 is given twice/],
      [['--listen', 'nope', '--backend', '1=127.0.0.1:9001'], /listen: expected HOST:PORT/],
      [['--listen', '127.0.0.1:8443', '--backend', '1=127.0.0.1:9001', '--inspect-delay', 'soon'], /--inspect-delay needs a positive integer/],
      [['--listen', '127.0.0.1:8443', '--backend', '1=127.0.0.1:9001', '--bogus'], /Unknown option/],
    ];
    for (const [argv, msg] of cases) {
      const r = await run(['haproxy-config', ...argv]);
      expect(r.code, argv.join(' ')).toBe(EXIT_USAGE);
      expect(r.stderr).toMatch(msg);
      expect(r.stdout).toBe('');
    }
  });
});

// ----------------------------------------------------------- real HAProxy

if (!HAVE_HAPROXY && process.env.CI) {
  it('haproxy is installed (required under CI: apt-get install haproxy)', () => {
    throw new Error('haproxy not found on PATH; CI must install it (apt-get install -y haproxy)');
  });
}

function checkConfig(text: string): { status: number | null; output: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mptls-haproxy-c-'));
  try {
    const f = path.join(dir, 'haproxy.cfg');
    fs.writeFileSync(f, text);
    const r = spawnSync(HAPROXY, ['-c', '-f', f], { encoding: 'utf8', timeout: 10_000 });
    return { status: r.status, output: `${r.stdout}${r.stderr}` };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe.skipIf(!HAVE_HAPROXY)('haproxy -c', () => {
  it('accepts the generated configs (token routing and naive, IPv4 and IPv6)', () => {
    const backends = ['1=127.0.0.1:9001', '2=127.0.0.1:9002', '3=127.0.0.1:9003'];
    for (const cfg of [
      haproxyConfig({ listen: '127.0.0.1:8443', backends }),
      haproxyConfig({ listen: '127.0.0.1:8443', backends, tokenRouting: false }),
      haproxyConfig({ listen: '[::1]:8443', backends: ['0=[::1]:9000', '255=127.0.0.1:9001'], log: false, maxconn: 1000, inspectDelayMs: 1500 }),
    ]) {
      const r = checkConfig(cfg);
      expect(r.output).toContain('Configuration file is valid');
      expect(r.status, r.output).toBe(0);
    }
  });
});

interface Haproxy {
  port: number;
  output(): string;
  stop(): Promise<void>;
}

/** `haproxy -f cfg -db`, spawned asynchronously; resolves once its frontend accepts connections. */
async function startHaproxy(backendPorts: number[], tokenRouting: boolean, ids: readonly number[] = IDS): Promise<Haproxy> {
  let lastError = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mptls-haproxy-'));
    const cfg = path.join(dir, 'haproxy.cfg');
    fs.writeFileSync(cfg, haproxyConfig({ listen: `127.0.0.1:${port}`, backends: ids.map((id, i) => ({ id, host: '127.0.0.1', port: backendPorts[i] })), tokenRouting }));
    const child: ChildProcess = spawn(HAPROXY, ['-f', cfg, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    let exited = false;
    const exit = new Promise<void>((r) => child.once('exit', () => ((exited = true), r())));
    child.once('error', (e) => (out += `spawn: ${e.message}\n`));
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    const stop = async () => {
      process.removeListener('exit', killOnExit);
      if (!exited) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 2000);
        await exit;
        clearTimeout(t);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    };
    const t0 = Date.now();
    let up = false;
    while (!exited && Date.now() - t0 < 10_000) {
      up = await new Promise<boolean>((r) => {
        const c = net.connect(port, '127.0.0.1');
        c.once('connect', () => (c.destroy(), r(true)));
        c.once('error', () => r(false));
      });
      if (up) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (up && !exited) return { port, output: () => out, stop };
    lastError = out;
    await stop();
  }
  throw new Error(`haproxy did not start:\n${lastError}`);
}

/** What a server saw of one TLS connection. */
interface ServerConn {
  serverId: number;
  socket: MptlsSocket;
  mode: string;
  token?: number;
  got?: { bytes: number; sha256: string };
  sent?: string;
  /** Established subflows when half of the client's data had arrived (mid-transfer). */
  establishedMidway?: number;
  /** Ids of the subflows that were ever established. */
  everEstablished: Set<number>;
  done: Promise<void>;
}

/** The three backends: a bidirectional bulk transfer for multipath clients, a tiny HTTP answer for plain ones. */
function startServers(): { servers: Server[]; conns: ServerConn[] } {
  const conns: ServerConn[] = [];
  const servers = IDS.map((serverId) =>
    mptlsServer({ allowHalfOpen: true, mptcp: { serverId } }, (s) => {
      const rec: ServerConn = { serverId, socket: s, mode: s.mptcp.mode, token: s.mptcp.tokens?.local, everEstablished: new Set(), done: Promise.resolve() };
      conns.push(rec);
      if (s.mptcp.mode !== 'userspace') {
        let head = '';
        s.setEncoding('latin1');
        s.on('data', (d: string) => {
          head += d;
          if (!head.includes('\r\n\r\n')) return;
          const body = JSON.stringify({ serverId, mode: s.mptcp.mode, path: head.split(' ')[1] });
          s.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
        });
        s.on('error', () => {});
        return;
      }
      const note = () => {
        for (const f of s.mptcp.subflows()) if (f.state === 'established') rec.everEstablished.add(f.id);
      };
      note();
      s.on('subflow', note);
      let bytes = 0;
      s.on('data', (d: Buffer) => {
        bytes += d.length;
        if (rec.establishedMidway === undefined && bytes >= SIZE / 2) {
          note();
          rec.establishedMidway = established(s);
        }
      });
      rec.done = (async () => {
        const [got, sent] = await Promise.all([receiveAll(s), sendBulk(s, SIZE)]);
        rec.got = got;
        rec.sent = sent;
      })();
      rec.done.catch(() => {});
    }),
  );
  return { servers, conns };
}

interface ClientResult {
  token: number;
  subflowsEver: number;
  joinRefused: number;
  got: { bytes: number; sha256: string };
  sent: string;
  bytesOnJoin: number;
}

const established = (c: MptlsSocket) => c.mptcp.subflows().filter((s) => s.state === 'established').length;

/** One multipath client through the balancer: waits for its join's outcome, then 4 MiB each way. */
async function client(port: number, requireJoin: boolean): Promise<ClientResult> {
  const c = await mptlsConnect(port, { mptcp: { localAddresses: LOCALS }, allowHalfOpen: true } as Parameters<typeof mptlsConnect>[1]);
  const ever = new Set<number>();
  c.on('subflow', (s) => ever.add(s.id));
  const refused = () => c.mptcp.counters().MPRstRx ?? 0;
  await until(() => established(c) === 2 || (!requireJoin && refused() > 0), 5000, requireJoin ? 'the join through the balancer' : 'the join or its refusal');
  for (const s of c.mptcp.subflows()) if (s.state === 'established') ever.add(s.id);
  const [got, sent] = await Promise.all([receiveAll(c), sendBulk(c, SIZE)]);
  for (const s of c.mptcp.subflows()) if (s.state === 'established') ever.add(s.id);
  const bytesOnJoin = c.mptcp
    .subflows()
    .filter((s) => s.id !== 0)
    .reduce((a, s) => a + s.bytesSent + s.bytesReceived, 0);
  const token = c.mptcp.tokens!.remote;
  // Both directions ended: the connection closes (destroyed after 5 s if it does not).
  await new Promise<void>((r) => {
    if (c.destroyed) return r();
    const t = setTimeout(() => (c.destroy(), r()), 5000);
    c.once('close', () => (clearTimeout(t), r()));
  });
  return { token, subflowsEver: ever.size, joinRefused: refused(), got, sent, bytesOnJoin };
}

/** `n` clients, `parallel` at a time. */
async function clients(port: number, n: number, parallel: number, requireJoin: boolean): Promise<ClientResult[]> {
  const out: ClientResult[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < n) {
        next++;
        out.push(await client(port, requireJoin));
      }
    }),
  );
  return out;
}

function joinCounters(servers: Server[]) {
  let noToken = 0;
  let rejected = 0;
  let synRx = 0;
  for (const s of servers) {
    const c = s.mptcp.counters();
    noToken += c.MPJoinNoTokenFound;
    rejected += c.MPJoinRejected;
    synRx += c.MPJoinSynRx;
  }
  return { noToken, rejected, synRx };
}

/** Matches each client to the server-side connection with its token. */
function serverSideOf(conns: ServerConn[], r: ClientResult): ServerConn {
  const s = conns.find((x) => x.mode === 'userspace' && x.token === r.token);
  if (!s) throw new Error(`no server-side connection with token ${r.token.toString(16)}`);
  return s;
}

function spawnText(cmd: string, args: string[], input?: string, ms = 10_000): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    if (input !== undefined) p.stdin.write(input);
    const t = setTimeout(() => p.kill(), ms);
    p.on('close', (status) => {
      clearTimeout(t);
      resolve({ status, stdout, stderr });
    });
  });
}

describe.skipIf(!HAVE_HAPROXY)('through a real HAProxy: 3 mptls servers, serverId 1, 2, 3', () => {
  let servers: Server[] = [];
  let conns: ServerConn[] = [];
  let ports: number[] = [];
  const running: Haproxy[] = [];

  beforeAll(async () => {
    ({ servers, conns } = startServers());
    ports = await Promise.all(servers.map((s) => listen(s)));
  });

  afterAll(async () => {
    await Promise.all(running.splice(0).map((h) => h.stop()));
    await Promise.all(servers.map((s) => close(s)));
  });

  async function haproxy(tokenRouting: boolean): Promise<Haproxy> {
    const h = await startHaproxy(ports, tokenRouting);
    running.push(h);
    return h;
  }
  async function stop(h: Haproxy): Promise<void> {
    running.splice(running.indexOf(h), 1);
    await h.stop();
  }

  describe('token routing (haproxyConfig default)', () => {
    let hp: Haproxy;
    beforeAll(async () => {
      hp = await haproxy(true);
    });
    afterAll(async () => {
      if (hp) await stop(hp);
    });

    it('30 clients × 2 subflows: every join reaches its server (0 refused), 4 MiB each way intact, spread over all 3', async () => {
      const before = joinCounters(servers);
      const first = conns.length;
      const results = await clients(hp.port, 30, 10, true);
      const mine = conns.slice(first).filter((c) => c.mode === 'userspace');
      await Promise.all(mine.map((c) => c.done));
      const after = joinCounters(servers);

      expect(results).toHaveLength(30);
      expect(after.noToken - before.noToken).toBe(0);
      expect(after.rejected - before.rejected).toBe(0);
      expect(after.synRx - before.synRx).toBe(30);
      const perServer: Record<number, number> = { 1: 0, 2: 0, 3: 0 };
      for (const r of results) {
        expect(r.subflowsEver).toBe(2);
        expect(r.joinRefused).toBe(0);
        const s = serverSideOf(mine, r);
        expect(r.token >>> 24).toBe(s.serverId); // the token names the server that holds the connection
        expect(s.establishedMidway).toBe(2); // …and the join landed there too
        expect([...s.everEstablished].sort()).toEqual([0, 1]);
        expect(r.got.bytes).toBe(SIZE);
        expect(s.got?.bytes).toBe(SIZE);
        expect(s.got?.sha256).toBe(r.sent);
        expect(r.got.sha256).toBe(s.sent);
        perServer[s.serverId]++;
      }
      expect(mine).toHaveLength(30);
      for (const id of IDS) expect(perServer[id], `connections on server ${id}`).toBeGreaterThanOrEqual(5);
      // HAProxy's own log (option tcplog, one line per TCP connection when it ends):
      // every subflow from 127.0.0.2 (the joins) went to a per-id backend.
      const fromJoins = () => hp.output().split('\n').filter((l) => l.startsWith('127.0.0.2:'));
      await until(() => fromJoins().length >= 30, 5000, 'HAProxy log lines of the 30 joins');
      for (const l of fromJoins()) expect(l).toMatch(/ mptls mptls_id[123]\/id[123] /);
      const joinLines = fromJoins().length;
      console.log(
        `[haproxy] token routing: connections per server ${JSON.stringify(perServer)}, joins ${after.synRx - before.synRx}, ` +
          `refused ${after.rejected - before.rejected} (MPJoinNoTokenFound ${after.noToken - before.noToken}); ${joinLines} HAProxy log lines of joins, all via mptls_idN`,
      );
    });

    it('curl -k and openssl s_client are served through the same frontend (plain TLS, round-robin)', async () => {
      const seen = new Set<number>();
      if (need('curl')) {
        for (let i = 0; i < 3; i++) {
          const r = await spawnText('curl', ['-sk', '--max-time', '10', `https://127.0.0.1:${hp.port}/curl${i}`]);
          expect(r.status, r.stderr).toBe(0);
          const body = JSON.parse(r.stdout) as { serverId: number; mode: string; path: string };
          expect(body).toMatchObject({ mode: 'fallback', path: `/curl${i}` });
          seen.add(body.serverId);
        }
        expect(seen.size, 'three curls in a row reach three servers').toBe(3);
      }
      if (need('openssl')) {
        const caFile = path.join(ROOT, 'certs-fixtures', 'ca.pem');
        const r = await spawnText(
          'openssl',
          ['s_client', '-connect', `127.0.0.1:${hp.port}`, '-servername', 'localhost', '-CAfile', caFile, '-quiet', '-verify_return_error'],
          'GET /openssl HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
        );
        expect(r.stdout).toContain('HTTP/1.1 200');
        expect(r.stdout).toContain('"path":"/openssl"');
        expect(r.stdout).toContain('"mode":"fallback"');
      }
      console.log(`[haproxy] plain TLS clients reached servers ${[...seen].sort().join(', ') || '(curl skipped)'}`);
    });
  });

  it('contrast, the naive round-robin config: joins land on the wrong server and are refused (counted); transfers complete on the first subflow', async () => {
    const hp = await haproxy(false);
    try {
      const before = joinCounters(servers);
      const first = conns.length;
      // One client at a time: its initial subflow takes one round-robin slot, its join the next.
      const n = 9;
      const results = await clients(hp.port, n, 1, false);
      const mine = conns.slice(first).filter((c) => c.mode === 'userspace');
      await Promise.all(mine.map((c) => c.done));
      const after = joinCounters(servers);
      const refused = after.noToken - before.noToken;
      const single = results.filter((r) => r.subflowsEver < 2);

      expect(refused).toBeGreaterThan(0);
      await until(() => hp.output().split('\n').filter((l) => l.startsWith('127.0.0.2:')).length >= n, 5000, 'HAProxy log lines of the joins');
      for (const l of hp.output().split('\n').filter((x) => x.startsWith('127.0.0.2:'))) expect(l).toMatch(/ mptls mptls_rr\/id[123] /);
      expect(after.rejected - before.rejected).toBe(refused);
      expect(single.length).toBe(refused); // each client tries one join: refused, or (by chance) on the right server
      expect(results.filter((r) => r.joinRefused > 0).length).toBe(refused);
      for (const r of results) {
        const s = serverSideOf(mine, r);
        expect(r.got.bytes).toBe(SIZE);
        expect(s.got?.sha256).toBe(r.sent);
        expect(r.got.sha256).toBe(s.sent);
        if (r.subflowsEver < 2) {
          expect(r.bytesOnJoin).toBe(0); // everything went over the first subflow
          expect(s.establishedMidway).toBe(1);
          expect([...s.everEstablished]).toEqual([0]);
        }
      }
      console.log(
        `[haproxy] naive round-robin: ${n} clients, ${after.synRx - before.synRx} joins received, ${refused} refused (MPJoinNoTokenFound), ` +
          `${single.length} clients ended with 1 subflow, ${n - single.length} with 2; all ${n} transfers intact`,
      );
    } finally {
      await stop(hp);
    }
  });
});

// ------------------------------------------- two multi-worker hosts behind HAProxy

describe.skipIf(!HAVE_HAPROXY)('through a real HAProxy: two cluster-mode hosts (serverId 1 and 2, 2 workers each)', () => {
  const APP = fileURLToPath(new URL('../support/cluster-app.mjs', import.meta.url));
  const children: ChildProcess[] = [];
  let hp: Haproxy | undefined;

  afterAll(async () => {
    await hp?.stop();
    for (const c of children) c.stdin?.end();
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
  });

  /** `cluster-app.mjs 2 ID`: resolves with its port once its workers listen. */
  function host(id: number): Promise<number> {
    const c = spawn(process.execPath, [APP, '2', String(id)], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(c);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`host ${id} did not start`)), 15_000);
      c.stdout!.once('data', (d: Buffer) => {
        clearTimeout(t);
        resolve((JSON.parse(d.toString().split('\n')[0]) as { port: number }).port);
      });
    });
  }

  it('20 two-path clients: HAProxy routes each join by the host byte, the primary by the worker byte: every second subflow established, all four workers used', async () => {
    const ports = [await host(1), await host(2)];
    hp = await startHaproxy(ports, true, [1, 2]);
    const { https } = await import('../../src/api/index.js');
    const { fixtures } = await import('../support/fixtures.mjs');
    const infos = await Promise.all(
      Array.from(
        { length: 20 },
        () =>
          new Promise<{ mode: string; token: number; subflows: number; worker: number }>((resolve, reject) => {
            const agent = new https.Agent({ keepAlive: false, mptcp: { localAddresses: LOCALS } });
            https
              .get(`https://127.0.0.1:${hp!.port}/info`, { ca: fixtures.ca, agent }, (res) => {
                let b = '';
                res.on('data', (d: Buffer) => (b += d.toString()));
                res.on('end', () => resolve(JSON.parse(b)));
              })
              .on('error', reject);
          }),
      ),
    );
    const seen = new Set<string>();
    for (const i of infos) {
      expect(i.mode).toBe('userspace');
      expect(i.subflows).toBe(2);
      expect([1, 2]).toContain(i.token >>> 24);
      expect((i.token >>> 16) & 0xff).toBe(i.worker);
      seen.add(`${i.token >>> 24}/${i.worker}`);
    }
    expect(seen).toEqual(new Set(['1/0', '1/1', '2/0', '2/1']));
  });
});
