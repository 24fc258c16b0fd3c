// Scenario 4: handshake costs.
//  - time to a usable first subflow (TLS secureConnect) and to an established
//    second subflow, on paths of known RTT (userspace delay relays, 2 × 10 ms
//    and 2 × 50 ms; the TCP connect to the relay is instant, so plain TLS 1.3
//    costs one RTT); plain node:tls through the same relay as the baseline,
//    and mptls's fallback against a plain TLS server (its one extra RTT);
//  - new connections + join per second one server sustains (clients in a child process);
//  - the server's cost per held early join (bench/lib/held-joins.mjs);
//  - HMAC cost per join (both sides' HMACs, computed and verified).
import net from 'node:net';
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import { fork } from 'node:child_process';
import { createServer, connect, joinSynAckHmac, joinAckHmac, timingSafeEqual } from '../dist/index.js';
import { fixtures, median, delayRelay } from './lib/common.mjs';
import { coreJoinsPerSecond } from './lib/core-joins.mjs';

const ONE_WAY_MS = [10, 50];
/** Connections of each kind made and discarded before measuring, per path. */
const WARMUP_RUNS = 200;
/** Of those, the first ones, reported as the cold cost. */
const COLD_RUNS = 10;

/** A pass-through JS Duplex over a TCP socket: node:tls over it is what any JS-stream transport pays. */
function jsDuplex(sock) {
  const d = new Duplex({ read() { sock.resume(); }, write(c, _e, cb) { sock.write(c, cb); }, final(cb) { sock.end(); cb(); }, destroy(e, cb) { sock.destroy(); cb(e); } });
  sock.setNoDelay(true);
  sock.on('data', (b) => { if (!d.push(b)) sock.pause(); });
  sock.on('end', () => d.push(null));
  sock.on('error', (e) => d.destroy(e));
  return d;
}

async function timeToConnect(kind, port) {
  const t0 = performance.now();
  const opts = { host: '127.0.0.1', port, ca: fixtures.ca, servername: 'localhost' };
  const s =
    kind === 'tls' ? tls.connect(opts)
    : kind === 'jsduplex' ? tls.connect({ ...opts, socket: jsDuplex(net.connect({ host: '127.0.0.1', port })) })
    : connect({ ...opts, mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] } });
  // Never a hang: a handshake or join that does not finish within 10 s fails the run.
  const within = (what, p) => {
    let timer;
    return Promise.race([p, new Promise((_, j) => (timer = setTimeout(() => j(new Error(`${kind}: no ${what} within 10 s`)), 10_000)))]).finally(() => clearTimeout(timer));
  };
  try {
    await within('secureConnect', new Promise((r, j) => { s.once('secureConnect', r); s.once('error', j); }));
  } catch (e) {
    s.destroy();
    throw e;
  }
  const usable = performance.now() - t0;
  let joined;
  if (kind === 'mptls') {
    try {
      await within('second subflow', new Promise((r) => {
        const check = () => s.mptcp.subflows().filter((x) => x.state === 'established').length >= 2;
        if (check()) return r();
        s.on('subflow', () => check() && r());
      }));
    } catch (e) {
      s.destroy();
      throw e;
    }
    joined = performance.now() - t0;
  }
  const mode = s.mptcp?.mode;
  s.destroy();
  return { usable, joined, mode };
}

/** A child process (bench/lib/handshake-peer.mjs) and its first message. */
function peer(args) {
  const child = fork(new URL('./lib/handshake-peer.mjs', import.meta.url), args, { stdio: 'inherit' });
  return new Promise((resolve, reject) => {
    child.once('message', (m) => resolve({ child, m }));
    child.once('exit', (code) => reject(new Error(`handshake peer ${args[0]} exited with ${code}`)));
  });
}

/**
 * Medians over `runs` alternating runs on relays of `oneWayMs` each way. The
 * clients run here, the servers in one child process and the relays in
 * another: three processes, as three hosts would not share a CPU.
 */
export async function onePath(oneWayMs, runs) {
  const servers = await peer(['servers']);
  const relays = await peer(['relay', String(oneWayMs), String(servers.m.mptls), String(servers.m.plain)]);
  const [relayPort, plainRelayPort] = relays.m.relays;
  const rtt = 2 * oneWayMs;
  const tlsT = [], usable = [], joined = [], fallback = [], jsd = [], coldPlain = [], coldMptls = [];
  let fallbackModes = new Set();
  try {
    // Warm-up, discarded: the first connections of a process run cold (JIT
    // tiers, lazy module state) on every side, mptls's JS more than node:tls's
    // C++; a server that has served a few hundred connections is what users
    // meet. Straight to the servers (no relay: the JIT state is per process).
    for (let i = 0; i < WARMUP_RUNS; i++) {
      const p = await timeToConnect('tls', servers.m.mptls);
      await timeToConnect('jsduplex', servers.m.plain);
      const m = await timeToConnect('mptls', servers.m.mptls);
      await timeToConnect('fallback', servers.m.plain);
      // what a fresh process pays: its first connections, loopback, no delay
      if (i < COLD_RUNS) {
        coldPlain.push(p.usable);
        coldMptls.push(m.usable);
      }
    }
    for (let i = 0; i < runs; i++) {
      tlsT.push((await timeToConnect('tls', relayPort)).usable);
      jsd.push((await timeToConnect('jsduplex', plainRelayPort)).usable);
      const m = await timeToConnect('mptls', relayPort);
      usable.push(m.usable);
      joined.push(m.joined);
      const f = await timeToConnect('fallback', plainRelayPort);
      fallback.push(f.usable);
      fallbackModes.add(f.mode);
    }
  } finally {
    for (const p of [relays, servers]) {
      p.child.removeAllListeners('exit');
      p.child.kill();
    }
  }
  const r1 = (x) => +x.toFixed(2);
  const out = {
    pathRttMs: rtt,
    runs,
    warmupRuns: WARMUP_RUNS,
    plainTlsConnectMs: r1(median(tlsT)),
    firstSubflowUsableMs: r1(median(usable)),
    secondSubflowJoinedMs: r1(median(joined)),
    fallbackUsableMs: r1(median(fallback)),
    tlsOverJsDuplexMs: r1(median(jsd)),
    coldLoopback: { runs: COLD_RUNS, plainTlsMs: r1(median(coldPlain)), mptlsUsableMs: r1(median(coldMptls)) },
    fallbackMode: [...fallbackModes].join(','),
  };
  out.plainTlsInRtts = r1(out.plainTlsConnectMs / rtt);
  out.firstSubflowInRtts = r1(out.firstSubflowUsableMs / rtt);
  out.firstSubflowOverPlainRtts = r1((out.firstSubflowUsableMs - out.plainTlsConnectMs) / rtt);
  out.joinedInRtts = r1(out.secondSubflowJoinedMs / rtt);
  out.fallbackOverPlainRtts = r1((out.fallbackUsableMs - out.plainTlsConnectMs) / rtt);
  out.targets = { usableWithinQuarterRtt: out.firstSubflowOverPlainRtts <= 0.25, joinedWithin3_5Rtt: out.joinedInRtts <= 3.5 };
  out.samples = { plainTls: tlsT.map(r1), usable: usable.map(r1), joined: joined.map(r1), fallback: fallback.map(r1), tlsOverJsDuplex: jsd.map(r1) };
  return out;
}

/** The server's cost per held early join, in a child with --expose-gc. */
function heldJoinCost(n = 960) {
  const child = fork(new URL('./lib/held-joins.mjs', import.meta.url), [String(n)], { execArgv: ['--expose-gc'], stdio: 'inherit' });
  return new Promise((resolve, reject) => {
    child.once('message', resolve);
    child.once('exit', (code) => code !== 0 && reject(new Error(`held-joins exited with ${code}`)));
  });
}

export async function handshakeBench({ runs = 15 } = {}) {
  const out = { paths: [] };
  for (const ms of ONE_WAY_MS) out.paths.push(await onePath(ms, runs));
  // the 20 ms figures at the top level, as before
  const p20 = out.paths[0];
  Object.assign(out, {
    pathRttMs: p20.pathRttMs,
    plainTlsConnectMs: p20.plainTlsConnectMs,
    firstSubflowUsableMs: p20.firstSubflowUsableMs,
    secondSubflowJoinedMs: p20.secondSubflowJoinedMs,
    firstSubflowInRtts: p20.firstSubflowInRtts,
    joinedInRtts: p20.joinedInRtts,
  });
  out.heldJoin = await heldJoinCost();
  // medians of 3 runs each
  const hm = [hmacCost(), hmacCost(), hmacCost()];
  out.hmac = { ...hm[0], microsecondsPerJoin: median(hm.map((h) => h.microsecondsPerJoin)), runs: hm.map((h) => h.microsecondsPerJoin) };
  const cj = [coreJoinsPerSecond(), coreJoinsPerSecond(), coreJoinsPerSecond()].map((c) => c.joinsPerSecond);
  out.coreJoinsPerSecond = median(cj);
  out.coreJoinsRuns = cj;
  const js = [];
  const plainPs = [];
  for (let i = 0; i < 3; i++) {
    js.push(await joinsPerSecond());
    plainPs.push(await plainTlsPerSecond());
  }
  out.plainTlsPerSecond = { perSecond: median(plainPs), runs: plainPs };
  out.joinsPerSecond = { ...js[0], joinsPerSecond: median(js.map((j) => j.joinsPerSecond)), joins: js.reduce((a, j) => a + j.joins, 0), refused: js.reduce((a, j) => a + j.refused, 0), runs: js.map((j) => j.joinsPerSecond) };
  return out;
}

function hmacCost(n = 20000) {
  const kA = new Uint8Array(8).fill(1), kB = new Uint8Array(8).fill(2);
  let x = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    // a join: the server computes HMAC-B, the client verifies it and computes HMAC-A, the server verifies that
    const b = joinSynAckHmac(kB, kA, i, i + 1);
    x ^= timingSafeEqual(b, joinSynAckHmac(kB, kA, i, i + 1)) ? 1 : 0;
    const a = joinAckHmac(kA, kB, i + 1, i);
    x ^= timingSafeEqual(a, joinAckHmac(kA, kB, i + 1, i)) ? 1 : 0;
  }
  const us = ((performance.now() - t0) * 1000) / n;
  return { microsecondsPerJoin: us, hmacsPerJoin: 4, check: x };
}

/** Joins/s: a child process keeps CONC connections joining; each connection = 1 join. */
export async function joinsPerSecond(seconds = 4, conc = 64) {
  const server = createServer({ key: fixtures.key, cert: fixtures.cert }, (s) => {
    s.on('error', () => {});
    s.on('subflow', (i) => { if (i.id === 1) s.end(); });
    s.resume();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const child = fork(new URL('./lib/join-client.mjs', import.meta.url), [String(server.address().port), String(seconds), String(conc)], { stdio: 'inherit' });
  const t0 = performance.now();
  const before = server.mptcp.counters().MPJoinAckRx;
  const result = await new Promise((r) => child.once('message', r));
  const joins = server.mptcp.counters().MPJoinAckRx - before;
  const dt = (performance.now() - t0) / 1000;
  server.close();
  return { joinsPerSecond: joins / dt, joins, seconds: dt, concurrency: conc, clientCompleted: result.completed, refused: server.mptcp.counters().MPJoinRejected };
}

/** The baseline of joinsPerSecond: plain node:tls connections per second, same client, the server ends each at once. */
export async function plainTlsPerSecond(seconds = 4, conc = 64) {
  const server = tls.createServer({ key: fixtures.key, cert: fixtures.cert }, (s) => {
    s.on('error', () => {});
    s.end();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  let n = 0;
  server.on('secureConnection', () => n++);
  const child = fork(new URL('./lib/join-client.mjs', import.meta.url), [String(server.address().port), String(seconds), String(conc), 'tls'], { stdio: 'inherit' });
  const t0 = performance.now();
  await new Promise((r) => child.once('message', r));
  const dt = (performance.now() - t0) / 1000;
  server.close();
  return n / dt;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await handshakeBench(), null, 2));
  process.exit(0);
}
