#!/usr/bin/env node
/**
 * `npm run fuzz`: fuzzes mptls (the build in dist/) in three parts.
 *
 *  1. decodeOption: ≥ 1 000 000 inputs (random bytes; valid encodings of
 *     every option shape, from the encoder and built byte by byte; their bit
 *     flips, truncations, length-byte changes and splices). Each must decode
 *     or throw MptcpWireError; every call is timed, and a watchdog names the
 *     input if one never returns.
 *  2. FrameParser: random and mutated frame streams fed in random chunks;
 *     only items or FrameError, the parser never holds more than one frame
 *     header and option area, and valid streams come back byte for byte.
 *  3. The whole server: ≥ 10 000 raw TCP sessions against one mptls server in
 *     a child process (scripts/fuzz-server.mjs). Every connection must be
 *     closed by the server (or answered with MP_TCPRST / MP_FASTCLOSE) within
 *     a deadline, each with a reason; the server must never crash or see an
 *     uncaught exception / unhandled rejection, and a legitimate client
 *     (two subflows, 127.0.0.1 + 127.0.0.2, 64 KiB echoed) must get through
 *     after every 1 000 sessions. Finally no log line or error message may
 *     contain key material: every key of every connection (the server's,
 *     read in the child with keysForTesting, and the clients') is searched
 *     for, the counts must be plausible (≥ 2 per external-mode connection
 *     that came up) and a key planted on each side must be found.
 *
 * Options: --decoder N  --parser N  --sessions N  --concurrency N  --seed N
 *          --deadline MS  --json FILE (the whole report as JSON)
 * Exit code 0 when every check held, 1 otherwise.
 */
import { Worker, isMainThread, workerData, parentPort } from 'node:worker_threads';
import { fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  makeRng,
  fuzzDecoder,
  fuzzParser,
  runSessions,
  summariseSessions,
  crossTab,
  auditKeys,
  plantLine,
  hex,
} from '../test/support/fuzz-lib.mjs';
import { fixtures } from '../test/support/fixtures.mjs';

const STASH = 65536;

if (!isMainThread) {
  // A fuzzing worker: tells the watchdog each input before using it.
  const lib = await import('../dist/index.js');
  const { part, n, seed, sab } = workerData;
  const ctl = new Int32Array(sab, 0, 4);
  const stash = new Uint8Array(sab, 16, STASH);
  const probe = (b) => {
    const k = Math.min(b.length, STASH);
    stash.set(b.subarray(0, k));
    Atomics.store(ctl, 1, b.length);
    Atomics.add(ctl, 0, 1);
  };
  const rng = makeRng(seed);
  const batch = part === 'decoder' ? 100_000 : 5_000;
  let total;
  for (let done = 0; done < n; done += batch) {
    const k = Math.min(batch, n - done);
    const s = part === 'decoder' ? fuzzDecoder(lib, rng, k, probe) : fuzzParser(lib, rng, k, probe);
    if (!total) total = s;
    else {
      for (const [key, v] of Object.entries(s)) {
        if (typeof v === 'number') total[key] = key.startsWith('max') ? Math.max(total[key], v) : total[key] + v;
        else if (Array.isArray(v)) total[key].push(...v.slice(0, 20 - total[key].length));
        else for (const [a, b] of Object.entries(v)) total[key][a] = (total[key][a] ?? 0) + b;
      }
    }
    parentPort.postMessage({ type: 'progress', done: done + k });
  }
  parentPort.postMessage({ type: 'done', stats: total });
} else {
  await main();
}

function args() {
  const a = process.argv.slice(2);
  const get = (name, dflt) => {
    const i = a.indexOf(`--${name}`);
    return i >= 0 ? a[i + 1] : dflt;
  };
  return {
    decoder: Number(get('decoder', 1_000_000)),
    parser: Number(get('parser', 50_000)),
    sessions: Number(get('sessions', 10_000)),
    concurrency: Number(get('concurrency', 128)),
    seed: Number(get('seed', (Date.now() % 0x7fffffff) >>> 0)),
    deadlineMs: Number(get('deadline', 12_000)),
    json: get('json', undefined),
  };
}

/** One fuzzing part in a worker, with a watchdog that names a hanging input. */
function inWorker(part, n, seed, hangMs = 10_000) {
  return new Promise((resolve) => {
    const sab = new SharedArrayBuffer(16 + STASH);
    const ctl = new Int32Array(sab, 0, 4);
    const stash = new Uint8Array(sab, 16, STASH);
    const w = new Worker(new URL(import.meta.url), { workerData: { part, n, seed, sab } });
    const t0 = performance.now();
    let last = -1;
    let lastChange = performance.now();
    const dog = setInterval(() => {
      const it = Atomics.load(ctl, 0);
      if (it !== last) {
        last = it;
        lastChange = performance.now();
      } else if (performance.now() - lastChange > hangMs) {
        clearInterval(dog);
        const len = Atomics.load(ctl, 1);
        void w.terminate();
        resolve({ hang: { afterInputs: it, inputLength: len, hex: hex(stash.subarray(0, Math.min(len, STASH))) }, ms: performance.now() - t0 });
      }
    }, 500);
    w.on('message', (m) => {
      if (m.type === 'progress') process.stdout.write(`  ${part}: ${m.done}/${n}\n`);
      else if (m.type === 'done') {
        clearInterval(dog);
        resolve({ stats: m.stats, ms: performance.now() - t0 });
      }
    });
    w.on('error', (e) => {
      clearInterval(dog);
      resolve({ crash: String(e?.stack ?? e), ms: performance.now() - t0 });
    });
  });
}

/** The server child and a request/response helper over IPC. */
async function startServer(opts) {
  const child = fork(new URL('./fuzz-server.mjs', import.meta.url), [JSON.stringify(opts)], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  const output = [];
  child.stdout.on('data', (d) => output.push(d.toString('latin1')));
  child.stderr.on('data', (d) => output.push(d.toString('latin1')));
  let exit;
  child.on('exit', (code, signal) => (exit = { code, signal }));
  const ready = await new Promise((resolve, reject) => {
    child.once('message', resolve);
    child.once('exit', () => reject(new Error(`fuzz server exited at start: ${output.join('')}`)));
  });
  const ask = (type, extra = {}) =>
    new Promise((resolve, reject) => {
      if (exit) return reject(new Error(`the server process is gone (${JSON.stringify(exit)})`));
      const onMsg = (m) => {
        if (m.type === type) {
          child.off('message', onMsg);
          resolve(m);
        }
      };
      child.on('message', onMsg);
      child.send({ ...extra, type });
    });
  const gone = new Promise((resolve) => child.once('exit', resolve));
  /** Resolves once the child exited (all its output read) or after `ms`. */
  const waitExit = (ms) => (exit ? Promise.resolve() : Promise.race([gone, new Promise((r) => setTimeout(r, ms))]));
  return { child, port: ready.port, baseline: ready.baseline, ask, output, waitExit, exited: () => exit };
}

/**
 * A legitimate client: two subflows, 64 KiB echoed back intact. Its
 * connection's keys (read with keysForTesting) go into `keys`.
 */
async function legitimate(lib, keysOf, port, ca, strings, keys) {
  const t0 = performance.now();
  const payload = randomBytes(64 * 1024);
  try {
    const r = await new Promise((resolve, reject) => {
      const s = lib.connect({ host: '127.0.0.1', port, ca, mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'], fallback: false } });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error('legitimate client: no echo within 15 s'));
      }, 15_000);
      const got = [];
      let maxSubflows = 0;
      const poll = setInterval(() => {
        try {
          maxSubflows = Math.max(maxSubflows, s.mptcp?.subflows().filter((x) => x.state === 'established').length ?? 0);
        } catch {}
      }, 5);
      s.on('error', (e) => {
        clearTimeout(timer);
        clearInterval(poll);
        reject(e);
      });
      s.on('secureConnect', () => {
        // wait for the join, so the echo runs while two subflows are up
        const t1 = performance.now();
        const go = () => {
          if (maxSubflows >= 2 || performance.now() - t1 > 3000) s.end(payload);
          else setTimeout(go, 5);
        };
        go();
      });
      s.on('data', (d) => got.push(d));
      s.on('end', () => {
        clearTimeout(timer);
        clearInterval(poll);
        const conn = s.mptcp?.driver?.conn;
        const k = conn ? keysOf(conn) : {};
        for (const x of [k.localKey, k.remoteKey]) if (x) keys.push(x);
        const back = Buffer.concat(got);
        resolve({ ok: back.equals(payload), bytes: back.length, subflows: maxSubflows, mode: s.mptcp?.mode, fingerprints: s.mptcp?.keyFingerprints });
        s.destroy();
      });
    });
    return { ...r, ms: Math.round(performance.now() - t0) };
  } catch (e) {
    strings.push(String(e?.message ?? e));
    return { ok: false, error: String(e?.message ?? e), ms: Math.round(performance.now() - t0) };
  }
}

function sha(s) {
  return createHash('sha256').update(s).digest('hex').slice(0, 12);
}

async function main() {
  const o = args();
  const report = { started: new Date().toISOString(), seed: o.seed, node: process.version, options: o, failures: [] };
  const fail = (what) => {
    report.failures.push(what);
    console.log(`FAIL: ${what}`);
  };
  const T0 = performance.now();
  console.log(`mptls fuzz, seed ${o.seed}`);

  // 1. the option decoder
  console.log(`decoder: ${o.decoder} inputs`);
  const dec = await inWorker('decoder', o.decoder, o.seed);
  report.decoder = { ms: Math.round(dec.ms), ...(dec.stats ? { ...dec.stats, slow: dec.stats.slow.length } : {}), hang: dec.hang, crash: dec.crash };
  if (dec.hang) fail(`decoder hang after ${dec.hang.afterInputs} inputs, input ${dec.hang.hex}`);
  if (dec.crash) fail(`decoder worker crashed: ${dec.crash}`);
  if (dec.stats) {
    for (const f of dec.stats.failures) fail(`decoder: ${f.error} (input ${f.hex})`);
    if (dec.stats.inputs < o.decoder) fail(`decoder ran only ${dec.stats.inputs} inputs`);
  }

  // 2. the frame parser
  console.log(`frame parser: ${o.parser} streams`);
  const par = await inWorker('parser', o.parser, (o.seed ^ 0x5bd1e995) >>> 0);
  report.parser = { ms: Math.round(par.ms), ...(par.stats ? { ...par.stats, slow: par.stats.slow.length } : {}), hang: par.hang, crash: par.crash };
  if (par.hang) fail(`parser hang after ${par.hang.afterInputs} streams, stream starts ${par.hang.hex.slice(0, 400)}`);
  if (par.crash) fail(`parser worker crashed: ${par.crash}`);
  if (par.stats) for (const f of par.stats.failures) fail(`parser (${f.kind}): ${f.error} (stream ${f.hex.slice(0, 400)})`);

  // 3. the whole server
  console.log(`server: ${o.sessions} sessions, ${o.concurrency} at a time`);
  const lib = await import('../dist/index.js');
  const { keysForTesting } = await import('../dist/core/connection/index.js');
  const legitKeys = [];
  const ca = fixtures.ca;
  const srv = await startServer({ preambleTimeoutMs: 1500, handshakeTimeoutMs: 2000 });
  const clientStrings = [];
  const warm = await legitimate(lib, keysForTesting, srv.port, ca, clientStrings, legitKeys);
  if (!warm.ok) fail(`the legitimate client failed before any fuzzing: ${warm.error ?? JSON.stringify(warm)}`);
  let addr = 0;
  const t3 = performance.now();
  const run = await runSessions(lib, {
    sessions: o.sessions,
    concurrency: o.concurrency,
    seed: o.seed,
    deadlineMs: o.deadlineMs,
    target: { host: '127.0.0.1', port: srv.port, localAddress: () => `127.0.0.${3 + (addr++ % 60)}` },
    everyN: 1000,
    every: async (n) => {
      const r = await legitimate(lib, keysForTesting, srv.port, ca, clientStrings, legitKeys);
      const st = await srv.ask('stats').catch((e) => ({ error: e.message }));
      console.log(`  after ${n} sessions: legitimate client ${r.ok ? `ok (${r.subflows} subflows, ${r.ms} ms)` : `FAILED: ${r.error ?? JSON.stringify(r)}`}; server rss ${Math.round((st.rss ?? 0) / 2 ** 20)} MiB, pending ${st.pending}, connections ${st.endpointConnections}, handles ${st.handles}`);
      return { after: n, ...r };
    },
  });
  const sessionsMs = performance.now() - t3;
  const endLegit = await legitimate(lib, keysForTesting, srv.port, ca, clientStrings, legitKeys);
  run.everyResults.push({ after: o.sessions, ...endLegit });
  // let every timer run out, then the server must be back to idle
  const tIdle = performance.now();
  let st = await srv.ask('stats');
  while ((st.openRecords > 0 || st.endpointConnections > 0 || st.pending > 0 || st.liveDrivers > 0) && performance.now() - tIdle < 20_000) {
    await new Promise((r) => setTimeout(r, 250));
    st = await srv.ask('stats');
  }
  const fin = await srv.ask('final', { plantIndex: o.seed, plantForm: o.seed });
  srv.child.send({ type: 'exit' });
  await srv.waitExit(5000); // so every line the child wrote (the planted one too) has been read

  const summary = summariseSessions(run.sessions);
  const cross = crossTab(run.sessions, fin.reasons);
  report.server = {
    ms: Math.round(sessionsMs),
    sessions: summary.sessions,
    connections: summary.connections,
    clientOutcomes: summary.byOutcome,
    kinds: summary.byKind,
    serverReasons: fin.histogram,
    kindToReason: cross.tab,
    unmatched: cross.unmatched,
    unhandled: summary.unhandled.length,
    knownUnhandled: summary.known.length,
    acceptor: fin.acceptor,
    counters: Object.fromEntries(Object.entries(fin.counters).filter(([, v]) => v > 0)),
    baseline: { rss: srv.baseline.rss, handles: srv.baseline.handles },
    peaks: fin.peaks,
    after: { rss: fin.rss, handles: fin.handles, pending: fin.pending, pendingJoins: fin.pendingJoins, connections: fin.connections, endpointConnections: fin.endpointConnections, openRecords: fin.openRecords },
    idleAfterMs: Math.round(performance.now() - tIdle),
    legitimate: run.everyResults.map((r) => ({ after: r.after, ok: r.ok, subflows: r.subflows, ms: r.ms, error: r.error })),
    warmup: warm,
    uncaught: fin.uncaughtErrors,
    unhandled: fin.unhandledErrors,
    exited: srv.exited() ?? null,
  };
  if (summary.unhandled.length) fail(`${summary.unhandled.length} connections not closed by the server within ${o.deadlineMs} ms, e.g. ${JSON.stringify(summary.unhandled.slice(0, 5))}`);
  if (summary.known.length) {
    const issues = [...new Set(summary.known.map((k) => k.issue))];
    report.knownIssues = issues.map((issue) => ({ issue, connections: summary.known.filter((k) => k.issue === issue).length, example: summary.known.find((k) => k.issue === issue) }));
  }
  if (summary.parseErrors.length) fail(`the server sent bytes our parser refused: ${JSON.stringify(summary.parseErrors.slice(0, 5))}`);
  if (summary.scriptErrors.length) fail(`session scripts failed: ${JSON.stringify(summary.scriptErrors.slice(0, 3))}`);
  if (fin.uncaughtErrors.length) fail(`uncaughtException in the server: ${fin.uncaughtErrors[0]}`);
  if (fin.unhandledErrors.length) fail(`unhandled rejection in the server: ${fin.unhandledErrors[0]}`);
  if (srv.exited() && srv.exited().code !== 0) fail(`the server process exited: ${JSON.stringify(srv.exited())}`);
  for (const r of run.everyResults) if (!r.ok) fail(`legitimate client after ${r.after} sessions failed: ${r.error ?? JSON.stringify(r)}`);
  for (const r of run.everyResults) if (r.ok && r.subflows < 2) fail(`legitimate client after ${r.after} sessions had only ${r.subflows} subflow(s)`);
  const openReasons = Object.entries(fin.histogram).filter(([k]) => k === 'open' || k.endsWith(' open'));
  if (openReasons.length) fail(`server records still open at the end: ${JSON.stringify(openReasons)}`);
  if (fin.endpointConnections !== 0 || fin.pending !== 0 || fin.pendingJoins !== 0) fail(`the server did not return to idle: ${JSON.stringify(report.server.after)}`);
  if (fin.peaks.pending > 1024) fail(`pending subflows reached ${fin.peaks.pending} (> 1024)`);

  // 4. key material: every key of every connection, both sides, and a scan shown able to fail
  const rawKeys = run.sessions.flatMap((sess) => sess.keys);
  const serverKeys = fin.keys.map((h) => Uint8Array.from(Buffer.from(h, 'hex')));
  const clientKeys = [...legitKeys, ...rawKeys];
  const legitOk = [warm, ...run.everyResults].filter((r) => r.ok).length;
  const plants = [];
  if (fin.plant) plants.push({ side: 'server', line: fin.plant });
  if (legitKeys.length) {
    const line = plantLine(legitKeys[o.seed % legitKeys.length], o.seed + 3);
    clientStrings.push(`legitimate client: ${line}`);
    plants.push({ side: 'client', line });
  }
  const childOutput = srv.output.join('');
  const strings = [...fin.strings, ...clientStrings, childOutput, JSON.stringify(report)];
  const ks = fin.keyStats;
  const audit = auditKeys({
    strings,
    server: serverKeys,
    client: clientKeys,
    plants,
    // each external-mode connection whose TLS came up holds two keys; every legitimate client was one
    minServerKeys: 2 * Math.max(ks.externalSecure, legitOk),
    minClientKeys: 2 * legitOk,
    serverMustHave: legitKeys,
  });
  report.keyScan = {
    keys: audit.keys.total,
    server: { keys: audit.keys.server, ...ks },
    client: { keys: audit.keys.client, legitimateConnections: legitOk, legitimateKeys: new Set(legitKeys.map(hex)).size, rawSessionKeys: new Set(rawKeys.map(hex)).size },
    strings: audit.strings,
    hits: audit.hits.length,
    planted: audit.planted,
    examples: audit.hits.slice(0, 3).map((h) => ({ key: sha(h.key), line: h.line })),
  };
  if (ks.externalMissing) fail(`${ks.externalMissing} external-mode server connections gave fewer than two keys`);
  if (ks.readErrors) fail(`keysForTesting threw ${ks.readErrors} times in the server`);
  for (const f of audit.failures) fail(`key scan: ${f}`);

  report.totalMs = Math.round(performance.now() - T0);
  report.ok = report.failures.length === 0;
  print(report);
  if (o.json) writeFileSync(o.json, JSON.stringify(report, (k, v) => (typeof v === 'bigint' ? v.toString() : v), 2));
  process.exit(report.ok ? 0 : 1);
}

function print(r) {
  const d = r.decoder;
  const p = r.parser;
  const s = r.server;
  const lines = [];
  lines.push('');
  lines.push(`== mptls fuzz report (seed ${r.seed}, ${r.node}, ${Math.round(r.totalMs / 1000)} s) ==`);
  lines.push(`decodeOption: ${d.inputs} inputs in ${(d.ms / 1000).toFixed(1)} s: ${d.decoded} decoded, ${d.wireErrors} MptcpWireError, ${d.failures?.length ?? 0} other; slowest call ${d.maxMs?.toFixed(2)} ms`);
  lines.push(`FrameParser: ${p.streams} streams (${p.chunks} chunks, ${p.segments} segments) in ${(p.ms / 1000).toFixed(1)} s: ${p.frameErrors} FrameError, ${p.validChecked} valid streams byte-exact, ${p.failures?.length ?? 0} other; slowest push ${p.maxMs?.toFixed(2)} ms; most held ${p.maxPending} B`);
  lines.push(`server: ${s.sessions} sessions / ${s.connections} connections in ${(s.ms / 1000).toFixed(1)} s`);
  lines.push('  client saw:');
  for (const [k, v] of Object.entries(s.clientOutcomes).sort((a, b) => b[1] - a[1])) lines.push(`    ${String(v).padStart(6)}  ${k}`);
  lines.push('  server reason per accepted connection:');
  for (const [k, v] of Object.entries(s.serverReasons).sort((a, b) => b[1] - a[1])) lines.push(`    ${String(v).padStart(6)}  ${k}`);
  lines.push(`  acceptor stats: ${JSON.stringify(s.acceptor)}`);
  lines.push(`  endpoint counters: ${JSON.stringify(s.counters)}`);
  lines.push(`  legitimate clients: ${s.legitimate.filter((x) => x.ok).length}/${s.legitimate.length} ok`);
  lines.push(`  server peaks: rss ${Math.round(s.peaks.rss / 2 ** 20)} MiB (baseline ${Math.round(s.baseline.rss / 2 ** 20)}), pending ${s.peaks.pending}, connections ${s.peaks.endpointConnections}, handles ${s.peaks.handles}`);
  lines.push(`  after: ${JSON.stringify(s.after)} (idle ${s.idleAfterMs} ms after the last session)`);
  lines.push(`  uncaught ${s.uncaught.length}, unhandled rejections ${s.unhandled.length}`);
  for (const k of r.knownIssues ?? []) lines.push(`KNOWN ISSUE (not counted as a failure): ${k.connections} connections still open at the deadline: ${k.issue}`);
  const k = r.keyScan;
  lines.push(`key material: ${k.keys} distinct keys searched in ${k.strings} strings: ${k.hits} hits`);
  lines.push(`  server side: ${k.server.keys} keys from ${k.server.connections} connections (${k.server.withBothKeys} with both keys; ${k.server.externalSecure} external-mode with TLS up, ${k.server.externalMissing} of them missing a key; ${k.server.rfc8684WithKeys} rfc8684)`);
  lines.push(`  client side: ${k.client.keys} keys (${k.client.legitimateKeys} from ${k.client.legitimateConnections} legitimate connections, ${k.client.rawSessionKeys} from rfc8684 raw sessions)`);
  lines.push(`  self-check: ${k.planted.map((p) => `planted ${p.side} key ${p.found ? 'found' : 'NOT FOUND'} (${p.carriers} strings)`).join(', ') || 'nothing planted'}`);
  lines.push(r.ok ? 'OK' : `FAILED (${r.failures.length}):\n  ${r.failures.join('\n  ')}`);
  console.log(lines.join('\n'));
}
