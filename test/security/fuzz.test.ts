/**
 * A small run of the fuzzer (`npm run fuzz` is the full one, over dist/):
 * the option decoder and the frame parser only ever return or throw their
 * own error type, and a real server on loopback, fed 500 raw sessions of bad
 * input (test/support/fuzz-lib.mjs lists the kinds), closes every one of them
 * with a reason, never throws, keeps accepting legitimate clients, and never
 * puts key material into a message. The key scan reads every connection's
 * keys on both sides with keysForTesting, must find a key planted into the
 * output on each side, and fails when a side's key count is implausible.
 */
import { describe, it, expect, afterEach } from 'vitest';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import * as mptls from '../../src/index.js';
import { createServer, connect, type MptlsSocket } from '../../src/api/index.js';
import {
  makeRng,
  fuzzDecoder,
  fuzzParser,
  runSessions,
  instrumentServer,
  summariseSessions,
  crossTab,
  scanForKeys,
  auditKeys,
  plantLine,
  hex,
  kindInfo,
  SESSION_KINDS,
  type FuzzLib,
} from '../support/fuzz-lib.mjs';
import { keysForTesting, type Connection } from '../../src/core/connection/index.js';
import { fixtures, listen, close } from '../support/servers.js';

const lib: FuzzLib = mptls;
const SEED = Number(process.env.MPTLS_FUZZ_SEED ?? 20261127);
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function fuzzServer(opts: { preambleTimeoutMs: number; handshakeTimeout: number }) {
  const server = createServer(
    {
      key: fixtures.key,
      cert: fixtures.cert,
      handshakeTimeout: opts.handshakeTimeout,
      // multipath connections: mptcp.handshakeTimeoutMs (MP_CAPABLE + TLS); plain TLS: handshakeTimeout
      mptcp: { preambleTimeoutMs: opts.preambleTimeoutMs, handshakeTimeoutMs: opts.handshakeTimeout, keyModes: ['external', 'rfc8684'] },
    },
    (s) => {
      s.on('data', (d: Buffer) => s.write(d));
      s.on('end', () => s.end());
      s.on('error', () => {});
    },
  );
  return server;
}

/** A legitimate client: two subflows, 64 KiB echoed back intact; its connection's keys go into `keys`. */
async function legitimate(port: number, strings: string[], keys: Uint8Array[] = []): Promise<{ ok: boolean; subflows: number; error?: string }> {
  const payload = randomBytes(64 * 1024);
  try {
    return await new Promise((resolve, reject) => {
      const s: MptlsSocket = connect({ host: '127.0.0.1', port, ca: fixtures.ca, mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'], fallback: false } });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error('no echo within 10 s'));
      }, 10_000);
      let subflows = 0;
      const poll = setInterval(() => {
        subflows = Math.max(subflows, s.mptcp?.subflows().filter((x) => x.state === 'established').length ?? 0);
      }, 5);
      const got: Buffer[] = [];
      s.on('error', (e) => {
        clearTimeout(timer);
        clearInterval(poll);
        reject(e);
      });
      s.on('secureConnect', () => {
        const t1 = Date.now();
        const go = () => (subflows >= 2 || Date.now() - t1 > 8000 ? s.end(payload) : setTimeout(go, 5));
        go();
      });
      s.on('data', (d: Buffer) => got.push(d));
      s.on('end', () => {
        clearTimeout(timer);
        clearInterval(poll);
        const conn = (s.mptcp as { driver?: { conn: Connection } } | undefined)?.driver?.conn;
        const k = conn ? keysForTesting(conn) : {};
        for (const x of [k.localKey, k.remoteKey]) if (x) keys.push(x);
        s.destroy();
        resolve({ ok: Buffer.concat(got).equals(payload), subflows });
      });
    });
  } catch (e) {
    strings.push((e as Error).message);
    return { ok: false, subflows: 0, error: (e as Error).message };
  }
}

/** A fuzz target server with its keys read through keysForTesting, and the client-side collections. */
async function instrumentedServer() {
  const server = fuzzServer({ preambleTimeoutMs: 1000, handshakeTimeout: 1500 });
  const inst = instrumentServer(server, { keysOf: keysForTesting });
  const port = await listen(server);
  cleanup.push(() => close(server));
  return { server, inst, port, clientStrings: [] as string[], legitKeys: [] as Uint8Array[] };
}

describe('fuzzing, small run (the full one: npm run fuzz)', () => {
  it('decodeOption: 20 000 inputs only decode or throw MptcpWireError, none slow', () => {
    const s = fuzzDecoder(lib, makeRng(SEED), 20_000);
    expect(s.failures).toEqual([]);
    expect(s.inputs).toBe(20_000);
    expect(s.decoded).toBeGreaterThan(1000);
    expect(s.wireErrors).toBeGreaterThan(1000);
    // every subtype was reached and decoded at least once
    expect(Object.keys(s.bySubtype).sort()).toEqual(['ADD_ADDR', 'DSS', 'MP_CAPABLE', 'MP_FAIL', 'MP_FASTCLOSE', 'MP_JOIN', 'MP_PRIO', 'MP_TCPRST', 'NEW_KEY', 'REMOVE_ADDR']);
    expect(s.slow).toEqual([]);
  });

  it('FrameParser: 1 500 streams in random chunks only yield items or throw FrameError; valid streams come back exact', () => {
    const s = fuzzParser(lib, makeRng(SEED + 1), 1500);
    expect(s.failures).toEqual([]);
    expect(s.frameErrors).toBeGreaterThan(100);
    expect(s.validChecked).toBeGreaterThan(100);
    expect(s.maxPending).toBeLessThanOrEqual(16 + 512);
    expect(s.slow).toEqual([]);
  });

  it('the server: 500 raw sessions of bad input, each closed with a reason; no throw; legitimate clients get through; no key material', async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);
    cleanup.push(() => {
      process.off('uncaughtException', onUncaught);
      process.off('unhandledRejection', onUncaught);
    });
    const logged: string[] = [];
    for (const m of ['log', 'info', 'warn', 'error', 'debug'] as const) {
      const orig = console[m];
      console[m] = (...a: unknown[]) => {
        logged.push(a.map(String).join(' '));
        orig(...a);
      };
      cleanup.push(() => void (console[m] = orig));
    }

    const { server, inst, port, clientStrings, legitKeys } = await instrumentedServer();
    let addr = 0;
    const known = Object.keys(SESSION_KINDS).filter((k) => kindInfo(k).known);
    const run = await runSessions(lib, {
      sessions: 500,
      concurrency: 48,
      seed: SEED,
      deadlineMs: 8000,
      target: { host: '127.0.0.1', port, localAddress: () => `127.0.0.${3 + (addr++ % 30)}` },
      everyN: 250,
      every: () => legitimate(port, clientStrings, legitKeys),
      exclude: known, // none left: the stalled plain-TLS kind is fixed and runs like the others
    });
    run.everyResults.push(await legitimate(port, clientStrings, legitKeys));

    // every timer runs out, then the server is idle again
    const t0 = Date.now();
    while ((inst.open() > 0 || server.mptcp.endpoint.connectionCount > 0 || server.mptcp.acceptor.pendingSubflows > 0) && Date.now() - t0 < 8000) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const summary = summariseSessions(run.sessions);
    const hist = inst.histogram();
    const cross = crossTab(run.sessions, inst.reasons());
    // (printed: what each kind of bad input ended as, server side)
    console.info(JSON.stringify({ clientSaw: summary.byOutcome, serverReasons: hist, acceptor: server.mptcp.acceptor.stats }, null, 1));

    expect(summary.sessions).toBe(500);
    expect(summary.unhandled).toEqual([]);
    expect(summary.scriptErrors).toEqual([]);
    expect(summary.parseErrors).toEqual([]);
    expect(uncaught).toEqual([]);
    expect(run.everyResults.map((r) => r.ok)).toEqual([true, true, true]);
    expect(run.everyResults.every((r) => r.subflows === 2)).toBe(true);
    // each accepted TCP connection closed, with a reason
    expect(inst.open()).toBe(0);
    expect(Object.keys(hist).filter((k) => k === 'open' || k.endsWith(' open'))).toEqual([]);
    expect(cross.unmatched).toBe(0);
    expect(server.mptcp.endpoint.connectionCount).toBe(0);
    expect(server.mptcp.endpoint.pendingJoinCount).toBe(0);
    expect(server.mptcp.acceptor.pendingSubflows).toBe(0);
    expect(server.mptcp.connections).toBe(0);
    expect(inst.maxPending).toBeLessThanOrEqual(1024);
    const c = server.mptcp.counters();
    expect(c.ProtocolError).toBeGreaterThan(0);
    expect(c.MPJoinNoTokenFound).toBeGreaterThan(0);
    expect(server.mptcp.acceptor.stats.badFirstFrame).toBeGreaterThan(0);
    expect(server.mptcp.acceptor.stats.preambleTimeouts).toBeGreaterThan(0);

    // no key material in anything the server or the clients said: every key of
    // every connection, both sides, counted, and a planted key on each side found
    const ks = inst.keyStats();
    expect(ks.externalSecure).toBeGreaterThanOrEqual(3); // the legitimate clients
    expect(ks.externalMissing).toBe(0);
    expect(ks.rfc8684WithKeys).toBeGreaterThan(0);
    console.info(plantLine(inst.keys[0], SEED));
    clientStrings.push(plantLine(legitKeys[0], SEED + 3));
    const audit = auditKeys({
      strings: [...inst.strings, ...clientStrings, ...logged, JSON.stringify(hist)],
      server: inst.keys,
      client: [...legitKeys, ...run.sessions.flatMap((s) => s.keys)],
      plants: [
        { side: 'server', line: plantLine(inst.keys[0], SEED) },
        { side: 'client', line: plantLine(legitKeys[0], SEED + 3) },
      ],
      minServerKeys: 2 * ks.externalSecure,
      minClientKeys: 2 * 3,
      serverMustHave: legitKeys,
    });
    expect(audit.planted.map((p) => p.found)).toEqual([true, true]);
    expect(audit.hits.map((h) => ({ ...h, key: h.key.slice(0, 4) }))).toEqual([]);
    expect(audit.failures).toEqual([]);
    expect(audit.keys.server).toBeGreaterThanOrEqual(2 * ks.withBothKeys);
  }, 40_000);

  // Was a defect: the scan read conn.localKey / conn.remoteKey, which became
  // #private, so it searched for no server key at all and passed on the
  // clients' keys alone. Now the server's keys come from keysForTesting, the
  // counts are checked and a planted key proves the scan can fail.
  it("the key scan sees every server connection's keys and is shown able to fail", async () => {
    const { server, inst, port, clientStrings, legitKeys } = await instrumentedServer();
    const rfc = 'rfc8684 handshake, valid join, then attacks';
    const run = await runSessions(lib, {
      sessions: 12,
      concurrency: 6,
      seed: SEED,
      deadlineMs: 6000,
      target: { host: '127.0.0.1', port },
      exclude: Object.keys(SESSION_KINDS).filter((k) => k !== rfc),
    });
    for (let i = 0; i < 2; i++) expect((await legitimate(port, clientStrings, legitKeys)).ok).toBe(true);
    const t0 = Date.now();
    while ((inst.open() > 0 || server.mptcp.endpoint.connectionCount > 0) && Date.now() - t0 < 8000) await new Promise((r) => setTimeout(r, 50));

    // both keys of each legitimate connection, as its server connection held them
    expect(new Set(legitKeys.map(hex)).size).toBe(4);
    const serverHex = new Set(inst.keys.map(hex));
    expect(legitKeys.filter((k) => !serverHex.has(hex(k)))).toEqual([]);
    const ks = inst.keyStats();
    expect(ks.externalSecure).toBe(2);
    expect(ks.externalMissing).toBe(0);
    expect(ks.readErrors).toBe(0);
    expect(ks.rfc8684WithKeys).toBeGreaterThan(0);
    // the rfc8684 sessions' keys (which the raw clients know) are the server's too
    const raw = run.sessions.flatMap((x) => x.keys);
    expect(raw.length).toBeGreaterThan(0);
    for (const k of raw) expect(serverHex.has(hex(k))).toBe(true);
    expect(ks.keys).toBe(inst.keys.length);
    expect(inst.keys.length).toBeGreaterThanOrEqual(2 * ks.withBothKeys);

    const serverLine = plantLine(inst.keys[inst.keys.length - 1], 2); // base64
    const clientLine = plantLine(legitKeys[1], 4); // decimal
    const strings = [...inst.strings, `server log: ${serverLine}`, ...clientStrings, `client log: ${clientLine}`];
    const plants = [
      { side: 'server' as const, line: serverLine },
      { side: 'client' as const, line: clientLine },
    ];
    const base = { server: inst.keys, client: [...legitKeys, ...raw], minServerKeys: 2 * ks.externalSecure, minClientKeys: 4, serverMustHave: legitKeys };
    const ok = auditKeys({ strings, plants, ...base });
    expect(ok.failures).toEqual([]);
    expect(ok.planted).toEqual([
      { side: 'server', carriers: 1, found: true },
      { side: 'client', carriers: 1, found: true },
    ]);
    expect(ok.keys.server).toBe(inst.keys.length);

    // …and it fails: on a real leak, on no server keys, with nothing planted, on a plant that never reached the output
    const leak = auditKeys({ strings: [...strings, `oops ${Buffer.from(inst.keys[0]).toString('hex').toUpperCase()}`], plants, ...base });
    expect(leak.hits.length).toBe(1);
    expect(leak.failures).toEqual(['1 strings contain key material']);
    const blind = auditKeys({ strings, plants, ...base, server: [] });
    expect(blind.failures.some((f) => f.startsWith('implausible: 0 server-side keys'))).toBe(true);
    expect(blind.failures.some((f) => f.includes('server key planted') && f.includes('not found'))).toBe(true);
    expect(auditKeys({ strings, ...base }).failures.filter((f) => f.startsWith('self-check'))).toHaveLength(2);
    expect(auditKeys({ strings: inst.strings, plants, ...base }).planted.map((p) => p.found)).toEqual([false, false]);
    expect(auditKeys({ strings, plants, ...base, minServerKeys: inst.keys.length + 1 }).failures[0]).toMatch(/^implausible/);
  }, 30_000);

  // Was a known issue: node:tls only emits 'tlsClientError' on
  // handshakeTimeout and leaves the socket open; src/api/server.ts now
  // destroys it, so one byte that is not 0xA7 followed by silence no longer
  // holds a file descriptor for ever.
  it('a plain TLS client that stalls mid-ClientHello is closed after handshakeTimeout', async () => {
    const server = fuzzServer({ preambleTimeoutMs: 1000, handshakeTimeout: 300 });
    const inst = instrumentServer(server, { keysOf: keysForTesting });
    const port = await listen(server);
    cleanup.push(() => close(server, 100));
    const sock = net.connect({ host: '127.0.0.1', port });
    sock.on('error', () => {});
    cleanup.push(() => void sock.destroy());
    await new Promise((r) => sock.once('connect', r));
    sock.write(Uint8Array.of(0x16, 0x03, 0x01, 0x02, 0x00, 0x01));
    await new Promise((r) => setTimeout(r, 1500));
    expect(inst.records[0].events).toEqual(['plain TLS', 'TLS: ERR_TLS_HANDSHAKE_TIMEOUT']); // the timeout fired after 300 ms…
    expect(sock.readyState).toBe('closed'); // …and the server closed the socket
  }, 10_000);
});
