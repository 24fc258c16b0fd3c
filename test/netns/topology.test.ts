/**
 * The testbed's own tests (not performance tests): namespaces and links come
 * and go, every path carries TCP and source routing pins a bound socket to
 * its path, tbf shaping gives the configured rate (and setRate changes it
 * mid-transfer), killPath/blackholePath/revivePath, cleanup when the
 * callback of withTopology throws, and the kernel path manager opening one
 * subflow per extra path.
 *
 * Needs root, `ip netns`, tc, kernel MPTCP and python3 (node runs the TCP
 * scripts). Without them it skips with the reason printed, except under CI
 * (process.env.CI), where it fails.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { pidRunning, run } from '../support/netns.js';
import { Topology, type TopologyOptions, withTopology } from '../support/topology.js';

const IN_CI = Boolean(process.env.CI);
const NODE = process.execPath;

function unmetPrerequisite(): string | undefined {
  const a = Topology.available();
  if (!a.ok) return a.reason;
  if (spawnSync('python3', ['--version'], { encoding: 'utf8' }).error) return 'python3 is not on PATH';
  return undefined;
}

const unmet = unmetPrerequisite();
if (unmet && !IN_CI) console.warn(`[netns] skipped: ${unmet}`);

function namespaces(): string[] {
  return run('ip', ['netns', 'list']).stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter(Boolean);
}

/** Echo-ish server: reads until EOF, answers with the connection's addresses and byte count. argv: port */
const SINK_SERVER_JS = String.raw`
const net = require('net');
const srv = net.createServer((s) => {
  let n = 0;
  s.on('data', (d) => { n += d.length; });
  s.on('end', () => s.end(JSON.stringify({ local: s.localAddress, remote: s.remoteAddress, bytes: n })));
  s.on('error', () => {});
});
srv.listen(Number(process.argv[1]), '0.0.0.0', () => console.log('LISTENING'));
`;

/** Client: bind src, connect dst:port, send `bytes`, print the reply or the error. argv: src dst port bytes timeoutMs */
const SINK_CLIENT_JS = String.raw`
const net = require('net');
const [src, dst, port, bytes, timeoutMs] = process.argv.slice(1);
const done = (r) => { console.log(JSON.stringify(r)); process.exit(0); };
setTimeout(() => done({ ok: false, error: 'timeout' }), Number(timeoutMs));
const s = net.connect({ host: dst, port: Number(port), localAddress: src });
let reply = '';
s.on('connect', () => s.end(Buffer.alloc(Number(bytes), 120)));
s.on('data', (d) => { reply += d; });
s.on('end', () => { try { done({ ok: true, reply: JSON.parse(reply) }); } catch { done({ ok: false, error: 'bad reply ' + reply }); } });
s.on('error', (e) => done({ ok: false, error: e.code || e.message }));
`;

/** Bulk receiver: one connection; samples [ms since first byte, bytes] every 50 ms. argv: port */
const BULK_RECV_JS = String.raw`
const net = require('net');
const srv = net.createServer((s) => {
  let n = 0, t0 = 0, timer;
  const samples = [];
  s.on('data', (d) => {
    if (!t0) { t0 = performance.now(); console.log('FIRST'); samples.push([0, 0]); timer = setInterval(() => samples.push([performance.now() - t0, n]), 50); }
    n += d.length;
  });
  s.on('end', () => {
    clearInterval(timer);
    samples.push([performance.now() - t0, n]);
    console.log('RESULT ' + JSON.stringify({ bytes: n, samples }));
    s.end();
    srv.close();
  });
});
srv.listen(Number(process.argv[1]), '0.0.0.0', () => console.log('LISTENING'));
`;

/** Bulk sender: writes as fast as the socket takes it for `ms`, then ends. argv: src dst port ms */
const BULK_SEND_JS = String.raw`
const net = require('net');
const [src, dst, port, ms] = process.argv.slice(1);
const chunk = Buffer.alloc(65536, 97);
const s = net.connect({ host: dst, port: Number(port), localAddress: src }, () => {
  const until = Date.now() + Number(ms);
  const pump = () => {
    while (Date.now() < until) if (!s.write(chunk)) { s.once('drain', pump); return; }
    s.end();
  };
  pump();
});
s.resume();
s.on('close', () => process.exit(0));
s.on('error', (e) => { console.error(String(e)); process.exit(1); });
`;

/** Kernel MPTCP client/server (IPPROTO_MPTCP 262; SOL_MPTCP 284, MPTCP_INFO 1, first byte mptcpi_subflows). */
const MPTCP_PY = String.raw`
import json, socket, subprocess, sys, time
mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == 'server':
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(1)
    print('LISTENING', flush=True)
    c, _ = s.accept(); n = 0
    while True:
        d = c.recv(65536)
        if not d: break
        n += len(d)
    c.sendall(b'%d' % n); c.close()
    print('GOT %d' % n, flush=True)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
    s.connect((addr, port))
    s.sendall(b'a' * 200000)
    t = time.time(); sub = 0
    while time.time() - t < 5:
        sub = s.getsockopt(284, 1, 64)[0]
        if sub >= 1: break
        time.sleep(0.02)
    s.sendall(b'b' * 2000000)
    ss = subprocess.run(['ss', '-tnH', 'state', 'established'], capture_output=True, text=True).stdout
    sub_end = s.getsockopt(284, 1, 64)[0]
    s.shutdown(socket.SHUT_WR)
    ack = s.recv(100)
    print('RESULT ' + json.dumps({'subflows': sub, 'subflowsAtEnd': sub_end, 'ss': ss, 'ack': ack.decode()}), flush=True)
`;

interface SinkResult {
  ok: boolean;
  error?: string;
  reply?: { local: string; remote: string; bytes: number };
}

function sink(topo: Topology, src: string, dst: string, port: number, bytes = 64 * 1024, timeoutMs = 3000): SinkResult {
  const out = topo.exec('client', NODE, ['-e', SINK_CLIENT_JS, src, dst, String(port), String(bytes), String(timeoutMs)], {
    timeoutMs: timeoutMs + 5000,
  }).stdout;
  return JSON.parse(out.trim()) as SinkResult;
}

/** Mbit/s between the samples nearest to [fromMs, toMs]. */
function rateBetween(samples: [number, number][], fromMs: number, toMs: number): number {
  const a = samples.find(([t]) => t >= fromMs);
  const b = [...samples].reverse().find(([t]) => t <= toMs);
  if (!a || !b || b[0] - a[0] < 300) throw new Error(`not enough samples in [${fromMs}, ${toMs}]`);
  return ((b[1] - a[1]) * 8) / ((b[0] - a[0]) * 1000);
}

/**
 * The shaped rate in [fromMs, toMs]: the median of the rates over 500 ms
 * windows every 100 ms. A stall of the (loaded) machine's sender or
 * receiver moves bytes from one window to a later one; one long window
 * that ends in such a stall reads low (17.2 for 20 Mbit/s in a CI run),
 * the median of short ones does not.
 */
function shapedRate(samples: [number, number][], fromMs: number, toMs: number): number {
  const rates: number[] = [];
  for (let t = fromMs; t + 500 <= toMs; t += 100) rates.push(rateBetween(samples, t, t + 500));
  if (rates.length === 0) throw new Error(`no 500 ms window in [${fromMs}, ${toMs}]`);
  rates.sort((x, y) => x - y);
  const m = rates.length >> 1;
  return rates.length % 2 ? rates[m] : (rates[m - 1] + rates[m]) / 2;
}

describe('Topology option checks', () => {
  it('rejects delayMs (no netem), bad rates, bad names and empty path lists before touching anything', async () => {
    await expect(Topology.create({ paths: [{ rateMbit: 10, delayMs: 20 }] })).rejects.toThrow(/delayMs=20 is not supported.*netem/);
    await expect(Topology.create({ paths: [{ rateMbit: 0 }] })).rejects.toThrow(RangeError);
    await expect(Topology.create({ paths: [] })).rejects.toThrow(RangeError);
    await expect(Topology.create({ paths: [{ rateMbit: 1 }], name: 'Bad-Name' })).rejects.toThrow(RangeError);
  });
});

describe.skipIf(unmet !== undefined && !IN_CI)('netns N-path testbed', () => {
  const guard = () => {
    if (unmet !== undefined) throw new Error(`netns testbed cannot run under CI: ${unmet}`);
  };

  it('comes up with namespaces, links, addresses, source routing, shaping and MPTCP settings, and goes away', async () => {
    guard();
    const opts: TopologyOptions = {
      paths: [{ rateMbit: 10 }, { rateMbit: 20 }, { rateMbit: 30 }],
      name: 'tup',
      clientMptcpEndpoints: true,
      serverMptcpEndpoints: true,
      mptcpLimits: { subflows: 4, addAddrAccepted: 2 },
    };
    const topo = await Topology.create(opts);
    const { clientNs: C, serverNs: S } = topo;
    try {
      expect(C).toMatch(/^mptls-tup-\d+-[0-9a-f]+-c$/);
      expect(S).toBe(C.replace(/-c$/, '-s'));
      expect(namespaces()).toEqual(expect.arrayContaining([C, S]));

      const addrs = (side: 'client' | 'server') =>
        (JSON.parse(topo.ip(side, '-j', 'addr', 'show').stdout) as { ifname: string; addr_info: { family: string; local: string; prefixlen: number }[] }[])
          .flatMap((l) => l.addr_info.map((a) => `${l.ifname} ${a.family} ${a.local}/${a.prefixlen}`))
          .sort();
      expect(addrs('client')).toEqual(['lo inet 127.0.0.1/8', 'va1 inet 198.18.1.1/24', 'va2 inet 198.18.2.1/24', 'va3 inet 198.18.3.1/24']);
      expect(addrs('server')).toEqual(['lo inet 127.0.0.1/8', 'vb1 inet 198.18.1.2/24', 'vb2 inet 198.18.2.2/24', 'vb3 inet 198.18.3.2/24']);
      for (const i of [1, 2, 3]) {
        expect(topo.clientAddress(i)).toBe(`198.18.${i}.1`);
        expect(topo.serverAddress(i)).toBe(`198.18.${i}.2`);
        expect(topo.ip('client', 'link', 'show', `va${i}`).stdout).toMatch(/state UP/);
        expect(topo.ip('client', 'rule', 'show').stdout).toContain(`from 198.18.${i}.1 lookup ${100 + i}`);
        const table = topo.ip('client', 'route', 'show', 'table', String(100 + i)).stdout;
        expect(table).toContain(`198.18.0.0/15 dev va${i}`);
        expect(table).toContain('unreachable 198.18.0.0/15 metric 4096');
        for (const side of ['client', 'server'] as const) {
          const q = topo.qdisc(side, i);
          expect(q).toMatchObject({ kind: 'tbf', rateBitPerSec: i * 10_000_000 });
          expect(q.burstBytes).toBeGreaterThanOrEqual(4000);
          expect(q.burstBytes).toBeLessThanOrEqual(4096);
        }
      }
      for (const side of ['client', 'server'] as const) {
        const sys = topo.exec(side, 'sysctl', ['-n', 'net.ipv4.conf.all.rp_filter', 'net.ipv4.conf.default.rp_filter', `net.ipv4.conf.${side === 'client' ? 'va1' : 'vb1'}.rp_filter`, 'net.ipv6.conf.all.disable_ipv6'])
          .stdout.trim()
          .split('\n');
        expect(sys).toEqual(['0', '0', '0', '1']);
        expect(topo.ip(side, 'mptcp', 'limits', 'show').stdout).toMatch(/add_addr_accepted 2\s+subflows 4|subflows 4\s+add_addr_accepted 2/);
      }
      const cEp = topo.ip('client', 'mptcp', 'endpoint', 'show').stdout;
      expect(cEp).toMatch(/198\.18\.2\.1 id \d+ subflow dev va2/);
      expect(cEp).toMatch(/198\.18\.3\.1 id \d+ subflow dev va3/);
      expect(cEp).not.toContain('198.18.1.1');
      const sEp = topo.ip('server', 'mptcp', 'endpoint', 'show').stdout;
      expect(sEp).toMatch(/198\.18\.2\.2 id \d+ signal dev vb2/);
      expect(sEp).toMatch(/198\.18\.3\.2 id \d+ signal dev vb3/);

      // Rate changes and the blackhole are visible on both ends.
      topo.setRate(2, 45);
      expect(topo.qdisc('client', 2).rateBitPerSec).toBe(45_000_000);
      expect(topo.qdisc('server', 2).rateBitPerSec).toBe(45_000_000);
      topo.blackholePath(3);
      expect(topo.qdisc('client', 3).rateBitPerSec).toBe(1000);
      expect(topo.qdisc('server', 3).rateBitPerSec).toBe(1000);
      expect(topo.pathState(3)).toMatchObject({ blackholed: true, rateMbit: 30, up: true });
      expect(() => topo.killPath(4)).toThrow(RangeError);

      // A child and a grandchild started inside: destroy kills both.
      const child = topo.spawn('server', 'sleep', ['60'], { stdio: 'ignore' });
      const childExit = new Promise((resolve) => child.once('exit', resolve));
      const shell = topo.start('client', 'sh', ['-c', 'sleep 60 & echo GRANDCHILD $!; wait']);
      const grandchild = Number((await shell.waitFor(/GRANDCHILD \d+/)).split(' ')[1]);
      expect(pidRunning(child.pid!)).toBe(true);
      expect(pidRunning(grandchild)).toBe(true);

      topo.destroy();
      expect(topo.destroyed).toBe(true);
      const left = namespaces();
      expect(left).not.toContain(C);
      expect(left).not.toContain(S);
      expect(run('ip', ['-n', C, 'link', 'show'], { allowFail: true }).status).not.toBe(0);
      await shell.exit(5000);
      expect(pidRunning(grandchild)).toBe(false);
      expect(await childExit).toBe(null); // killed by a signal
      topo.destroy(); // idempotent
      expect(() => topo.exec('client', 'true')).toThrow(/destroyed/);
    } finally {
      topo.destroy();
    }
  });

  it('every path carries TCP, and a socket bound to 198.18.i.1 takes path i whatever server address it dials', async () => {
    guard();
    await withTopology({ paths: [{ rateMbit: 50 }, { rateMbit: 50 }, { rateMbit: 50 }], name: 'tconn' }, async (topo) => {
      const server = topo.start('server', NODE, ['-e', SINK_SERVER_JS, '7001']);
      await server.waitFor(/LISTENING/);
      const BYTES = 64 * 1024;
      for (const i of [1, 2, 3]) {
        for (const j of [1, 2, 3]) {
          const before = [1, 2, 3].map((k) => topo.linkStats('client', k).txBytes);
          const r = sink(topo, topo.clientAddress(i), topo.serverAddress(j), 7001, BYTES);
          expect(r, `198.18.${i}.1 -> 198.18.${j}.2: ${r.error}`).toMatchObject({
            ok: true,
            reply: { local: topo.serverAddress(j), remote: topo.clientAddress(i), bytes: BYTES },
          });
          const delta = [1, 2, 3].map((k) => topo.linkStats('client', k).txBytes - before[k - 1]);
          expect(delta[i - 1], `bytes sent on va${i}`).toBeGreaterThanOrEqual(BYTES);
          for (const k of [1, 2, 3]) if (k !== i) expect(delta[k - 1], `bytes leaked onto va${k}`).toBeLessThan(2000);
        }
      }
      // The server answered over the path the data came in on.
      for (const i of [1, 2, 3]) expect(topo.linkStats('server', i).txPackets).toBeGreaterThan(0);
    });
  });

  it('tbf shaping gives the configured rate within 10% (20 and 50 Mbit/s), and setRate changes it mid-transfer', async () => {
    guard();
    await withTopology({ paths: [{ rateMbit: 20 }, { rateMbit: 50 }, { rateMbit: 50 }], name: 'trate' }, async (topo) => {
      const DURATION = 4500;
      const recv = [1, 2, 3].map((i) => topo.start('server', NODE, ['-e', BULK_RECV_JS, String(7100 + i)]));
      await Promise.all(recv.map((r) => r.waitFor(/LISTENING/)));
      const send = [1, 2, 3].map((i) =>
        topo.start('client', NODE, ['-e', BULK_SEND_JS, topo.clientAddress(i), topo.serverAddress(i), String(7100 + i), String(DURATION)]),
      );
      // Path 3 drops from 50 to 20 Mbit/s about 2 s after its first byte arrived.
      await recv[2].waitFor(/FIRST/, 5000);
      await new Promise((r) => setTimeout(r, 2000));
      topo.setRate(3, 20);
      const codes = await Promise.all(send.map((s) => s.exit(DURATION + 10_000)));
      expect(codes, send.map((s) => s.output()).join('\n')).toEqual([0, 0, 0]);
      const results = await Promise.all(
        recv.map(async (r) => JSON.parse((await r.waitFor(/RESULT .*/, 10_000)).slice(7)) as { bytes: number; samples: [number, number][] }),
      );
      const r1 = shapedRate(results[0].samples, 700, 4300);
      const r2 = shapedRate(results[1].samples, 700, 4300);
      const r3before = shapedRate(results[2].samples, 700, 1900);
      const r3after = shapedRate(results[2].samples, 3000, 4300);
      console.log(
        `[netns] goodput: 20 Mbit/s -> ${r1.toFixed(2)}, 50 -> ${r2.toFixed(2)}, 50 -> ${r3before.toFixed(2)} then setRate 20 -> ${r3after.toFixed(2)} Mbit/s`,
      );
      expect(Math.abs(r1 / 20 - 1)).toBeLessThanOrEqual(0.1);
      expect(Math.abs(r2 / 50 - 1)).toBeLessThanOrEqual(0.1);
      expect(Math.abs(r3before / 50 - 1)).toBeLessThanOrEqual(0.1);
      expect(Math.abs(r3after / 20 - 1)).toBeLessThanOrEqual(0.1);
    });
  });

  it('withTopology cleans up (processes and namespaces) when its callback throws', async () => {
    guard();
    let names: string[] = [];
    let exited: Promise<NodeJS.Signals | null> | undefined;
    await expect(
      withTopology({ paths: [{ rateMbit: 10 }, { rateMbit: 10 }], name: 'tthrow' }, (topo) => {
        names = [topo.clientNs, topo.serverNs];
        const child = topo.spawn('client', 'sleep', ['60'], { stdio: 'ignore' });
        exited = new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
        expect(namespaces()).toEqual(expect.arrayContaining(names));
        throw new Error('boom from the callback');
      }),
    ).rejects.toThrow('boom from the callback');
    expect(names).toHaveLength(2);
    const left = namespaces();
    for (const n of names) expect(left).not.toContain(n);
    expect(await exited).toBe('SIGKILL');
  });

  it('`await using` destroys the topology at the end of the scope', async () => {
    guard();
    let names: string[] = [];
    {
      await using topo = await Topology.create({ paths: [{ rateMbit: 10 }], name: 'tusing' });
      names = [topo.clientNs, topo.serverNs];
      expect(namespaces()).toEqual(expect.arrayContaining(names));
    }
    const left = namespaces();
    for (const n of names) expect(left).not.toContain(n);
  });

  it('lossPath drops a share of the packets on one path (nftables, counted), TCP still delivers; 0 removes it', async () => {
    guard();
    if (spawnSync('sh', ['-c', 'command -v nft']).status !== 0) {
      if (IN_CI) throw new Error('nft (nftables) is required under CI');
      console.warn('[netns] nft not installed: lossPath is not checked');
      return;
    }
    await withTopology({ paths: [{ rateMbit: 50 }, { rateMbit: 50 }], name: 'tloss' }, async (topo) => {
      const server = topo.start('server', NODE, ['-e', SINK_SERVER_JS, '7202']);
      await server.waitFor(/LISTENING/);
      const [c1, s1] = [topo.clientAddress(1), topo.serverAddress(1)];
      topo.lossPath(1, 10);
      expect(sink(topo, c1, s1, 7202, 2 * 1024 * 1024, 30_000)).toMatchObject({ ok: true, reply: { bytes: 2 * 1024 * 1024 } });
      const dropped = topo.lossDrops('client', 1) + topo.lossDrops('server', 1);
      expect(dropped).toBeGreaterThan(20);
      expect(topo.lossDrops('client', 2)).toBe(0);
      topo.lossPath(1, 0);
      expect(topo.lossDrops('client', 1)).toBe(0); // the rule is gone
      expect(sink(topo, c1, s1, 7202, 256 * 1024, 10_000).ok).toBe(true);
    });
  });

  it('killPath makes a path unusable (without leaking onto another), blackholePath starves it, revivePath restores both', async () => {
    guard();
    await withTopology({ paths: [{ rateMbit: 50 }, { rateMbit: 50 }], name: 'tkill' }, async (topo) => {
      const server = topo.start('server', NODE, ['-e', SINK_SERVER_JS, '7201']);
      await server.waitFor(/LISTENING/);
      const [c1, c2, s1, s2] = [topo.clientAddress(1), topo.clientAddress(2), topo.serverAddress(1), topo.serverAddress(2)];
      expect(sink(topo, c1, s1, 7201).ok).toBe(true);

      topo.killPath(1);
      expect(topo.pathState(1).up).toBe(false);
      expect(topo.ip('client', 'link', 'show', 'va1').stdout).toMatch(/state DOWN/);
      expect(topo.ip('server', 'link', 'show', 'vb1').stdout).toMatch(/state DOWN/);
      const dead = sink(topo, c1, s1, 7201, 1024, 1500);
      expect(dead.ok).toBe(false);
      expect(dead.error).toMatch(/EHOSTUNREACH|ENETUNREACH|timeout/);
      const before2 = topo.linkStats('client', 2).txBytes;
      expect(sink(topo, c1, s2, 7201, 1024, 1500).ok, 'bound to a dead path, must not leak onto path 2').toBe(false);
      expect(topo.linkStats('client', 2).txBytes - before2).toBe(0);
      expect(sink(topo, c2, s2, 7201).ok).toBe(true);
      // Weak host model, as on a real multi-homed server: a dead path's server
      // address is still a local address there and stays reachable over a live
      // path (kernel MPTCP joins rely on this cross-path routing).
      const before2b = topo.linkStats('client', 2).txBytes;
      expect(sink(topo, c2, s1, 7201)).toMatchObject({ ok: true, reply: { local: s1, remote: c2 } });
      expect(topo.linkStats('client', 2).txBytes - before2b).toBeGreaterThanOrEqual(64 * 1024);

      topo.revivePath(1);
      expect(topo.pathState(1)).toMatchObject({ up: true, blackholed: false });
      expect(sink(topo, c1, s1, 7201)).toMatchObject({ ok: true, reply: { remote: c1 } });
      const before1 = topo.linkStats('client', 1).txBytes;
      expect(sink(topo, c1, s2, 7201, 64 * 1024).ok).toBe(true);
      expect(topo.linkStats('client', 1).txBytes - before1, 'source route restored').toBeGreaterThanOrEqual(64 * 1024);

      topo.blackholePath(2);
      expect(sink(topo, c2, s2, 7201, 300 * 1024, 1500)).toEqual({ ok: false, error: 'timeout' });
      expect(sink(topo, c1, s1, 7201, 300 * 1024).ok).toBe(true);
      topo.revivePath(2);
      expect(topo.qdisc('client', 2).rateBitPerSec).toBe(50_000_000);
      expect(topo.qdisc('server', 2).rateBitPerSec).toBe(50_000_000);
      expect(sink(topo, c2, s2, 7201, 300 * 1024).ok).toBe(true);
    });
  });

  it('with clientMptcpEndpoints a kernel MPTCP connection ends with 2 subflows over the 2 paths', async () => {
    guard();
    await withTopology({ paths: [{ rateMbit: 50 }, { rateMbit: 50 }], name: 'tmptcp', clientMptcpEndpoints: true }, async (topo) => {
      const server = topo.start('server', 'python3', ['-c', MPTCP_PY, 'server', topo.serverAddress(1), '7301']);
      await server.waitFor(/LISTENING/);
      const before = [1, 2].map((i) => topo.linkStats('client', i).txBytes);
      const client = topo.start('client', 'python3', ['-c', MPTCP_PY, 'client', topo.serverAddress(1), '7301']);
      const res = JSON.parse((await client.waitFor(/RESULT .*/, 15_000)).slice(7)) as {
        subflows: number;
        subflowsAtEnd: number;
        ss: string;
        ack: string;
      };
      expect(await client.exit()).toBe(0);
      expect(await server.exit()).toBe(0);
      const sent = [1, 2].map((i) => topo.linkStats('client', i).txBytes - before[i - 1]);
      console.log(`[netns] kernel MPTCP: mptcpi_subflows=${res.subflowsAtEnd}, bytes sent on va1=${sent[0]} va2=${sent[1]}`);
      // mptcpi_subflows counts the subflows besides the initial one: 1 => 2 in all.
      expect(res.subflows).toBe(1);
      expect(res.subflowsAtEnd).toBe(1);
      expect(res.ack).toBe(String(2_200_000));
      const locals = res.ss
        .trim()
        .split('\n')
        .map((l) => l.trim().split(/\s+/)[2].replace(/%\w+/, '').replace(/:\d+$/, ''))
        .sort();
      expect(locals).toEqual(['198.18.1.1', '198.18.2.1']);
      expect(sent[0]).toBeGreaterThan(100_000);
      expect(sent[1], 'the join subflow went out on path 2').toBeGreaterThan(0);
    });
  });
});
