/**
 * A small run of the fuzzer (`npm run fuzz` is the full one, over dist/):
 * the option decoder and the frame parser only ever return or throw their
 * own error type, and a real server on loopback, fed 500 raw sessions of bad
 * input (scripts/fuzz-lib.mjs lists the kinds), closes every one of them
 * with a reason, never throws, keeps accepting legitimate clients, and never
 * puts key material into a message.
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
  hex,
  kindInfo,
  SESSION_KINDS,
  type FuzzLib,
} from '../../scripts/fuzz-lib.mjs';
import { fixtures, listen, close } from '../transport/helpers.js';

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
      mptcp: { preambleTimeoutMs: opts.preambleTimeoutMs, keyModes: ['external', 'rfc8684'] },
    },
    (s) => {
      s.on('data', (d: Buffer) => s.write(d));
      s.on('end', () => s.end());
      s.on('error', () => {});
    },
  );
  return server;
}

/** A legitimate client: two subflows, 64 KiB echoed back intact. */
async function legitimate(port: number, strings: string[]): Promise<{ ok: boolean; subflows: number; error?: string }> {
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
        s.destroy();
        resolve({ ok: Buffer.concat(got).equals(payload), subflows });
      });
    });
  } catch (e) {
    strings.push((e as Error).message);
    return { ok: false, subflows: 0, error: (e as Error).message };
  }
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

    const server = fuzzServer({ preambleTimeoutMs: 1000, handshakeTimeout: 1500 });
    const inst = instrumentServer(server);
    const port = await listen(server);
    cleanup.push(() => close(server));
    const clientStrings: string[] = [];
    let addr = 0;
    const known = Object.keys(SESSION_KINDS).filter((k) => kindInfo(k).known);
    const run = await runSessions(lib, {
      sessions: 500,
      concurrency: 48,
      seed: SEED,
      deadlineMs: 8000,
      target: { host: '127.0.0.1', port, localAddress: () => `127.0.0.${3 + (addr++ % 30)}` },
      everyN: 250,
      every: () => legitimate(port, clientStrings),
      exclude: known, // none left: the stalled plain-TLS kind is fixed and runs like the others
    });
    run.everyResults.push(await legitimate(port, clientStrings));

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

    // no key material in anything the server or the clients said
    const keys = [...inst.keys, ...run.sessions.flatMap((s) => s.keys)];
    expect(keys.length).toBeGreaterThan(4); // the legitimate clients' TLS keys and the rfc8684 sessions' keys
    expect(scanForKeys([`a line with ${hex(keys[0])} in it`], keys).hits.length).toBe(1); // the scan does find a key
    const scan = scanForKeys([...inst.strings, ...clientStrings, ...logged, JSON.stringify(hist)], keys);
    expect(scan.hits.map((h) => ({ ...h, key: hex(Uint8Array.from(Buffer.from(h.key, 'hex'))).slice(0, 4) }))).toEqual([]);
  }, 40_000);

  // Was a known issue: node:tls only emits 'tlsClientError' on
  // handshakeTimeout and leaves the socket open; src/api/server.ts now
  // destroys it, so one byte that is not 0xA7 followed by silence no longer
  // holds a file descriptor for ever.
  it('a plain TLS client that stalls mid-ClientHello is closed after handshakeTimeout', async () => {
    const server = fuzzServer({ preambleTimeoutMs: 1000, handshakeTimeout: 300 });
    const inst = instrumentServer(server);
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
