/**
 * An on-path observer against a real multipath TLS connection.
 *
 * The client (localAddresses 127.0.0.1 and 127.0.0.2) dials an injecting
 * relay (test/support/injecting-relay.ts), so both its first subflow and its join cross
 * the observer, which records every byte, knows every frame boundary and may
 * insert whole frames or delay a direction. Using only what it saw (tokens
 * at their fixed offsets, recorded bytes), the observer tries:
 *
 *   1. a join with the observed token, a random R_A and a guessed HMAC-A;
 *   2. a byte-for-byte replay of the recorded join subflow's opening;
 *   3. options-only frames injected into the live subflows mid-transfer:
 *      ADD_ADDR with a guessed HMAC, REMOVE_ADDR for an unused id,
 *      MP_PRIO(backup), MP_FASTCLOSE with a guessed key (both directions);
 *      on connections of their own, REMOVE_ADDR for the id in use, and a
 *      payload frame with a consistent DSS mapping carrying a forged TLS
 *      record (MPTCP delivers it; TLS rejects it fatally on both ends);
 *   4. a join sent as soon as the server's SYN/ACK token passes, while the
 *      client's TLS bytes are held back (the join arrives before TLS is done);
 *   5. 2 000 joins with random tokens.
 *
 * With `external` keys (the default) every attempt is refused and counted
 * and 8 MiB each way arrive intact. The same observer against `rfc8684` keys
 * reads the keys off the MP_CAPABLE options and succeeds at 1, 3 (ADD_ADDR)
 * and 3 (MP_FASTCLOSE). A table of both is printed and asserted at the end.
 * Finally: no key material in counters, error messages or `mptls get -v`.
 * docs/SECURITY.md quotes the counters measured here.
 */
import { describe, it, expect, afterEach } from 'vitest';
import net from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fixtures, listen, close, sendBulk, receiveAll, mptlsServer, mptlsConnect, until } from '../support/servers.js';
import { sink } from '../support/sink.js';
import { frame, joinSyn, rawSubflow as openRawSubflow } from '../support/frames.js';
import { fixturePath } from '../support/fixtures.mjs';
import { startInjectingRelay, type InjectingRelay, type ObservedSubflow } from '../support/injecting-relay.js';
import { FrameParser, JOIN_TOKEN_OFFSET, PREAMBLE_LENGTH, FRAME_HEADER_LENGTH } from '../../src/transport/userspace/frame.js';
import { decodeOption } from '../../src/wire/options.js';
import type { MptcpOption, MpCapableOption, DssOption } from '../../src/wire/types.js';
import { joinAckHmac, joinSynAckHmac, addAddrHmac, tokenFromKey } from '../../src/crypto/index.js';
import { exportMptcpKeys, keyFingerprints } from '../../src/tls/keys.js';
import { createServer as createHttpsServer } from '../../src/api/https.js';
import { main } from '../../src/cli/main.js';
import { MIB_NAMES, type MibCounters } from '../../src/core/mib.js';
import type { MptlsSocket, ConnectOptions } from '../../src/api/index.js';
import type { MultipathDriver } from '../../src/transport/userspace/driver.js';

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;
const BRUTE_FORCE_JOINS = 2000;
const BRUTE_FORCE_IN_FLIGHT = 50;
const HOLD_TLS_MS = 300;
const CA = fixturePath('ca.pem');

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** attack → outcome per mode; filled by the tests above the last, which prints and asserts it (run the whole file). */
const table = new Map<string, { external?: string; rfc8684?: string }>();
function record(attack: string, mode: 'external' | 'rfc8684', outcome: string): void {
  table.set(attack, { ...table.get(attack), [mode]: outcome });
}

// ─── the observer's tools ────────────────────────────────────────────────

function randomU32(): number {
  return randomBytes(4).readUInt32BE(0);
}

/** A raw TCP subflow of the observer's own, straight to the server, speaking the wire by hand; destroyed after the test. */
async function rawSubflow(port: number, host = '127.0.0.1') {
  const rogue = await openRawSubflow(port, host);
  cleanup.push(() => void rogue.sock.destroy());
  return rogue;
}

/** Waits for the server's MP_JOIN SYN/ACK on a rogue subflow. */
async function synAckOf(rogue: Awaited<ReturnType<typeof rawSubflow>>) {
  await until(() => rogue.segments.length >= 1 || rogue.ended, 5000, 'the MP_JOIN SYN/ACK');
  const o = rogue.segments[0]?.options[0];
  if (!o || o.subtype !== 'MP_JOIN' || o.stage !== 'synack') throw new Error(`no SYN/ACK: ${JSON.stringify(o)}`);
  return o;
}

/** The opening of the recorded legitimate join subflow (client → server): preamble, MP_JOIN SYN, MP_JOIN ACK. */
function recordedJoinOpening(join: ObservedSubflow): Buffer {
  const f = join.c2s.frames;
  expect(f[0].options[0]).toMatchObject({ subtype: 'MP_JOIN', stage: 'syn' });
  expect(f[1].options[0]).toMatchObject({ subtype: 'MP_JOIN', stage: 'ack' });
  return join.c2s.bytes().subarray(0, f[1].offset + f[1].length);
}

/** Attack 5: `n` joins with random tokens, `inFlight` at a time. */
async function bruteForce(port: number, n: number, inFlight: number, avoid: Set<number>) {
  let next = 0;
  let refused = 0;
  let accepted = 0;
  let other = 0;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      let token = randomU32();
      while (avoid.has(token)) token = randomU32();
      const sock = net.connect({ host: '127.0.0.1', port });
      const parser = new FrameParser();
      const opts: MptcpOption[] = [];
      sock.on('error', () => {});
      sock.on('connect', () => sock.write(joinSyn(token, randomU32(), 1)));
      sock.on('data', (d: Buffer) => {
        try {
          for (const it of parser.push(d)) if (it.kind === 'segment') opts.push(...it.segment.options);
        } catch {
          sock.destroy();
        }
      });
      sock.on('close', () => {
        if (opts.some((o) => o.subtype === 'MP_JOIN')) accepted++;
        else if (opts.some((o) => o.subtype === 'MP_TCPRST')) refused++;
        else other++;
        resolve();
      });
      sock.on('end', () => sock.destroy());
    });
  const worker = async () => {
    while (next < n) {
      next++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return { refused, accepted, other };
}

/** The options of the frames a direction carried, as decoded by the relay. */
function optionsOf(frames: { options: MptcpOption[] }[]): MptcpOption[] {
  return frames.flatMap((f) => f.options);
}

/** A socket's counters, every name present. */
function counters(s: MptlsSocket): MibCounters {
  return { ...(Object.fromEntries(MIB_NAMES.map((n) => [n, 0])) as MibCounters), ...s.mptcp.counters() };
}

function driverOf(s: MptlsSocket): MultipathDriver {
  return (s.mptcp as unknown as { driver: MultipathDriver }).driver;
}

/** Every spelling of a key that could end up in text. */
function spellings(key: Uint8Array): string[] {
  const b = Buffer.from(key);
  return [b.toString('hex'), b.toString('hex').toUpperCase(), b.toString('base64'), Array.from(b).join(',')];
}

function expectNoKeys(text: string, keys: Uint8Array[], where: string): void {
  for (const k of keys) for (const s of spellings(k)) expect(text.includes(s), `${where} contains a key (${s})`).toBe(false);
}

// ─── the legitimate connection, through the observer ──────────────────────

interface Observed {
  /** When the client's TLS handshake finished (secureConnect). */
  secureAt: number;
  server: ReturnType<typeof mptlsServer>;
  port: number;
  relay: InjectingRelay;
  c: MptlsSocket;
  serverSocket: () => MptlsSocket | undefined;
}

async function observed(mode: 'external' | 'rfc8684', serverSide: (s: MptlsSocket) => void, onSubflow?: (sf: ObservedSubflow, port: number) => void): Promise<Observed> {
  let serverSocket: MptlsSocket | undefined;
  const server = mptlsServer({ allowHalfOpen: true, mptcp: { keyModes: [mode] } }, (s) => {
    serverSocket = s;
    s.on('error', () => {});
    serverSide(s);
  });
  const port = await listen(server);
  const relay = await startInjectingRelay(port, { onSubflow: (sf) => onSubflow?.(sf, port) });
  cleanup.push(() => close(server, 500), () => relay.close());
  const c = await mptlsConnect(relay.port, {
    mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'], keyMode: mode },
    allowHalfOpen: true,
  } as ConnectOptions);
  const secureAt = performance.now();
  c.on('error', () => {});
  cleanup.push(() => void c.destroy());
  await until(() => c.mptcp.subflows().filter((s) => s.state === 'established').length === 2, 5000, 'the join');
  await until(() => relay.subflows.length === 2 && relay.subflows[1].c2s.frames.length >= 2, 5000, 'the join through the relay');
  await until(() => serverSocket !== undefined, 5000, 'the server socket');
  return { secureAt, server, port, relay, c, serverSocket: () => serverSocket };
}

// ─── the tests ───────────────────────────────────────────────────────────

describe('an on-path observer, external keys (default)', () => {
  it('every attack is refused and counted; 8 MiB each way arrive intact', async () => {
    // The server sends its 8 MiB once the attacks are under way.
    let go!: () => void;
    const started = new Promise<void>((r) => (go = r));
    const serverDone: Promise<[{ bytes: number; sha256: string }, string]>[] = [];

    // Attack 4, set up before the client dials: hold the client's bytes after
    // its MP_CAPABLE ACK (its TLS Finished and on) for HOLD_TLS_MS, and join
    // as soon as the server's SYN/ACK token (offset 28 of server → client) passes.
    let early: Promise<{ synAckAt: number; options: MptcpOption[]; tokenB: number }> | undefined;
    let heldAt = 0;
    const onSubflow = (sf: ObservedSubflow, port: number) => {
      if (sf.index !== 0) return;
      sf.c2s.onFrame = (f, d) => {
        if (f.options.some((o) => o.subtype === 'MP_CAPABLE' && o.receiverToken !== undefined)) {
          d.hold();
          heldAt = performance.now();
          setTimeout(() => d.release(), HOLD_TLS_MS);
        }
      };
      sf.s2c.onBytes = (d) => {
        if (early || d.received < JOIN_TOKEN_OFFSET + 4) return;
        const tokenB = d.bytes().readUInt32BE(JOIN_TOKEN_OFFSET);
        early = (async () => {
          // An early join (wire version 3): the server holds it until its
          // keys are installed, then answers; the observer cannot compute HMAC-A.
          const rogue = await rawSubflow(port);
          const randA = randomU32();
          rogue.send(joinSyn(tokenB, randA, 3));
          const synack = await synAckOf(rogue);
          const synAckAt = performance.now();
          rogue.send(frame([{ subtype: 'MP_JOIN', stage: 'ack', hmac: joinAckHmac(randomBytes(8), randomBytes(8), randA, synack.senderRandom) }]));
          await until(() => rogue.ended, 5000, 'the early join to be refused');
          return { synAckAt, options: rogue.options(), tokenB };
        })();
      };
    };
    const t0 = performance.now();
    const { secureAt, server, port, relay, c, serverSocket } = await observed(
      'external',
      (s) => serverDone.push(Promise.all([receiveAll(s), started.then(() => sendBulk(s, SIZE))])),
      onSubflow,
    );
    const srv = serverSocket()!;

    // ── 4. join before the TLS handshake finished ──
    expect(early).toBeDefined();
    const e = await early!;
    expect(heldAt).toBeGreaterThan(t0);
    // held, unanswered, until the server's TLS finished (which needed the client's held bytes)
    expect(e.synAckAt - heldAt).toBeGreaterThanOrEqual(HOLD_TLS_MS - 5);
    expect(e.options[0]).toMatchObject({ subtype: 'MP_JOIN', stage: 'synack' });
    expect(e.options.slice(1)).toEqual([{ subtype: 'MP_TCPRST', flags: 0, reason: 1 }]); // the observer's HMAC-A: refused for good
    expect(e.tokenB).toBe(c.mptcp.tokens!.remote);
    expect(counters(srv).MPJoinHeld).toBe(2); // the client's own early join and the observer's
    expect(counters(srv).MPJoinAckHMacFailure).toBe(1);
    record('join before the TLS handshake finished', 'external', `held until the keys, then refused: HMAC-A (MPJoinHeld=${counters(srv).MPJoinHeld}, MPJoinAckHMacFailure=${counters(srv).MPJoinAckHMacFailure})`);

    // What the observer saw: tokens at fixed offsets, never the keys.
    const s2c0 = relay.subflows[0].s2c.bytes();
    const tokenB = s2c0.readUInt32BE(JOIN_TOKEN_OFFSET);
    expect(tokenB).toBe(c.mptcp.tokens!.remote);
    const keys = exportMptcpKeys(c, c.mptcp.tokens!.local, c.mptcp.tokens!.remote);
    expect(c.mptcp.keyFingerprints).toEqual(keyFingerprints(c, c.mptcp.tokens!.local, c.mptcp.tokens!.remote, keys));
    expect(srv.mptcp.keyFingerprints).toEqual(c.mptcp.keyFingerprints);
    const wire = relay.allBytes();
    expect(wire.indexOf(Buffer.from(keys.keyA))).toBe(-1);
    expect(wire.indexOf(Buffer.from(keys.keyB))).toBe(-1);
    const replay = recordedJoinOpening(relay.subflows[1]);
    const c0 = { ...counters(c) };
    const s0 = { ...counters(srv) };
    const endpoint0 = server.mptcp.counters();

    // ── the legitimate transfer, 8 MiB each way, while the observer attacks ──
    go();
    const clientGot = receiveAll(c);
    const clientSent = sendBulk(c, SIZE);
    let transferDone = false;
    void Promise.all([clientGot, clientSent]).then(() => (transferDone = true), () => {});

    // ── 3. frames injected into the live subflows (options only) ──
    const [sf0, sf1] = relay.subflows;
    const injections = (async () => {
      await sf0.s2c.inject(frame([{ subtype: 'ADD_ADDR', echo: false, addressId: 9, address: '127.0.0.9', truncatedHmac: randomBytes(8) }]));
      await until(() => counters(c).AddAddrDrop === c0.AddAddrDrop + 1, 5000, 'the forged ADD_ADDR to be dropped');
      await sf0.s2c.inject(frame([{ subtype: 'REMOVE_ADDR', addressIds: [42] }]));
      await until(() => counters(c).RmAddrDrop === c0.RmAddrDrop + 1, 5000, 'the REMOVE_ADDR to be dropped');
      const before = c.mptcp.subflows().map(({ id, state, backup, localAddress }) => ({ id, state, backup, localAddress }));
      await sf1.s2c.inject(frame([{ subtype: 'MP_PRIO', backup: true }]));
      await until(() => counters(c).MPPrioRx === c0.MPPrioRx + 1, 5000, 'the MP_PRIO');
      const after = c.mptcp.subflows().map(({ id, state, backup, localAddress }) => ({ id, state, backup, localAddress }));
      await sf1.c2s.inject(frame([{ subtype: 'MP_FASTCLOSE', receiverKey: randomBytes(8) }]));
      await sf0.s2c.inject(frame([{ subtype: 'MP_FASTCLOSE', receiverKey: randomBytes(8) }]));
      await until(() => counters(srv).MPFastcloseBadKey === s0.MPFastcloseBadKey + 1 && counters(c).MPFastcloseBadKey === c0.MPFastcloseBadKey + 1, 5000, 'the MP_FASTCLOSEs');
      return { before, after };
    })();

    // ── 1. a join with the observed token, a random R_A, a guessed HMAC-A ──
    const attack1 = (async () => {
      const rogue = await rawSubflow(port);
      const randA = randomU32();
      rogue.send(joinSyn(tokenB, randA));
      const synack = await synAckOf(rogue);
      rogue.send(frame([{ subtype: 'MP_JOIN', stage: 'ack', hmac: joinAckHmac(randomBytes(8), randomBytes(8), randA, synack.senderRandom) }]));
      await until(() => rogue.ended, 5000, 'the rogue join to be closed');
      return rogue.options();
    })();

    // ── 2. a byte-for-byte replay of the recorded join ──
    const attack2 = (async () => {
      const rogue = await rawSubflow(port);
      rogue.send(replay);
      await until(() => rogue.ended, 5000, 'the replayed join to be closed');
      return rogue.options();
    })();

    // ── 5. brute-forced tokens ──
    const attack5 = bruteForce(port, BRUTE_FORCE_JOINS, BRUTE_FORCE_IN_FLIGHT, new Set([tokenB]));

    const [inj, a1, a2] = await Promise.all([injections, attack1, attack2]);
    // All of that happened mid-transfer, with both subflows up.
    expect(transferDone).toBe(false);
    const serverSubflowsMid = srv.mptcp.subflows().filter((s) => s.state === 'established').length;
    const a5 = await attack5;
    const cMid = counters(c);
    const sMid = counters(srv);
    const endpointMid = server.mptcp.counters();

    // The transfer completes with SHA-256 intact, both ways.
    const sent = await clientSent;
    const got = await clientGot;
    await until(() => serverDone.length === 1, 5000, 'the server side');
    const [srvGot, srvSent] = await serverDone[0];
    expect(srvGot.bytes).toBe(SIZE);
    expect(srvGot.sha256).toBe(sent);
    expect(got.bytes).toBe(SIZE);
    expect(got.sha256).toBe(srvSent);

    // 1: SYN/ACK, then MP_TCPRST; counted.
    expect(a1[0]).toMatchObject({ subtype: 'MP_JOIN', stage: 'synack' });
    expect(a1.at(-1)).toMatchObject({ subtype: 'MP_TCPRST', reason: 1 });
    expect(a1.some((o) => o.subtype === 'DSS')).toBe(false); // never the fourth ACK
    // 2: the replay gets a fresh R_B, so the recorded HMAC-A is wrong.
    expect(a2[0]).toMatchObject({ subtype: 'MP_JOIN', stage: 'synack' });
    const recordedSynAck = relay.subflows[1].s2c.frames[0].options[0];
    expect(a2[0]).not.toEqual(recordedSynAck);
    expect(a2.at(-1)).toMatchObject({ subtype: 'MP_TCPRST', reason: 1 });
    expect(a2.some((o) => o.subtype === 'DSS')).toBe(false);
    expect(sMid.MPJoinAckHMacFailure - s0.MPJoinAckHMacFailure).toBe(2);
    expect(sMid.MPJoinAckRx - s0.MPJoinAckRx).toBe(2);
    expect(sMid.MPJoinSynRx - s0.MPJoinSynRx).toBe(2);
    record('join with the observed token', 'external', `refused: guessed HMAC-A (MPJoinAckHMacFailure +1, no fourth ACK)`);
    record('replay of the recorded join', 'external', `refused (MPJoinAckHMacFailure +1)`);
    // 3: each injected frame dropped and counted; the connection lives on.
    expect(cMid.AddAddrHMacFailure - c0.AddAddrHMacFailure).toBe(1);
    expect(cMid.AddAddrDrop - c0.AddAddrDrop).toBe(1);
    expect(cMid.AddAddr - c0.AddAddr).toBe(0);
    expect(cMid.RmAddrDrop - c0.RmAddrDrop).toBe(1);
    expect(cMid.RmAddr - c0.RmAddr).toBe(0);
    expect(cMid.RmSubflow - c0.RmSubflow).toBe(0);
    expect(cMid.MPPrioRx - c0.MPPrioRx).toBe(1);
    expect(cMid.MPFastcloseBadKey - c0.MPFastcloseBadKey).toBe(1);
    expect(sMid.MPFastcloseBadKey - s0.MPFastcloseBadKey).toBe(1);
    expect(cMid.MPFastcloseRx + sMid.MPFastcloseRx).toBe(0);
    // MP_PRIO: the subflow it was injected into became backup; nothing else changed.
    expect(inj.before.map((s) => s.state)).toEqual(['established', 'established']);
    expect(inj.before.map((s) => s.backup)).toEqual([false, false]);
    expect(inj.after).toEqual([inj.before[0], { ...inj.before[1], backup: true }]);
    record('forged ADD_ADDR', 'external', `dropped: guessed HMAC (AddAddrHMacFailure=1, AddAddrDrop=1)`);
    record('REMOVE_ADDR, unused id', 'external', `dropped (RmAddrDrop=1, RmAddr=0)`);
    record('MP_PRIO(backup)', 'external', `accepted, unauthenticated (MPPrioRx=1): subflow 1 → backup, transfer intact`);
    record('forged MP_FASTCLOSE', 'external', `ignored: guessed key, both ways (MPFastcloseBadKey=1 each), connection alive`);
    // 5: none accepted.
    expect(a5).toEqual({ refused: BRUTE_FORCE_JOINS, accepted: 0, other: 0 });
    expect(endpointMid.MPJoinNoTokenFound - endpoint0.MPJoinNoTokenFound).toBe(BRUTE_FORCE_JOINS);
    record(`brute-forced tokens (${BRUTE_FORCE_JOINS} joins)`, 'external', `all refused (MPJoinNoTokenFound=${endpointMid.MPJoinNoTokenFound - endpoint0.MPJoinNoTokenFound}, accepted 0)`);
    // No subflow of the observer's ever joined: the legitimate two only.
    expect(serverSubflowsMid).toBe(2);
    expect(sMid.MPJoinAckRx - sMid.MPJoinAckHMacFailure).toBe(1); // the legitimate join only

    // No key material in counters or error messages.
    const keyList = [keys.keyA, keys.keyB];
    const texts = [
      JSON.stringify(c.mptcp.counters()),
      JSON.stringify(srv.mptcp.counters()),
      JSON.stringify(server.mptcp.counters()),
      JSON.stringify(c.mptcp.keyFingerprints),
      JSON.stringify(c.mptcp.subflows()),
      ...driverOf(c).errors,
      ...driverOf(srv).errors,
    ];
    for (const t of texts) expectNoKeys(t, keyList, t.slice(0, 60));
    console.log(
      `external: client ${JSON.stringify(pick(counters(c)))}\n          server ${JSON.stringify(pick(counters(srv)))}\n          endpoint MPJoinNoTokenFound=${server.mptcp.counters().MPJoinNoTokenFound}`,
    );
  });

  it('an injected REMOVE_ADDR for the address in use closes subflows to it (unauthenticated); the connection carries on', async () => {
    let go!: () => void;
    const started = new Promise<void>((r) => (go = r));
    const serverDone: Promise<[{ bytes: number; sha256: string }, string]>[] = [];
    const { relay, c, serverSocket } = await observed('external', (s) => serverDone.push(Promise.all([receiveAll(s), started.then(() => sendBulk(s, MiB))])));
    const c0 = counters(c);
    // Both subflows go to the server's address id 0.
    await relay.subflows[1].s2c.inject(frame([{ subtype: 'REMOVE_ADDR', addressIds: [0] }]));
    await until(() => counters(c).RmAddr === c0.RmAddr + 1, 5000, 'the REMOVE_ADDR');
    await until(() => c.mptcp.subflows().filter((s) => s.state === 'established').length === 1, 5000, 'one subflow closed');
    expect(counters(c).RmSubflow - c0.RmSubflow).toBe(1);
    go();
    const [got, sent] = await Promise.all([receiveAll(c), sendBulk(c, MiB)]);
    await until(() => serverDone.length === 1, 5000, 'the server side');
    const [srvGot, srvSent] = await serverDone[0];
    expect(srvGot.sha256).toBe(sent);
    expect(got.sha256).toBe(srvSent);
    expect(serverSocket()!.mptcp.mode).toBe('userspace');
    record('REMOVE_ADDR, id in use (0)', 'external', `accepted, unauthenticated (RmAddr=1, RmSubflow=1): 1 of 2 subflows closed, transfer intact`);
  });

  it('an injected payload frame with a valid-looking DSS mapping kills the TLS connection; no injected byte is delivered', async () => {
    const delivered: Buffer[] = [];
    const { relay, c, serverSocket } = await observed('external', (s) => {
      s.write('hello');
    });
    c.on('data', (d: Buffer) => delivered.push(d));
    await until(() => Buffer.concat(delivered).toString() === 'hello', 5000, 'hello');
    const srv = serverSocket()!;
    // Next DSN of server → client: the end of the highest mapping seen on any subflow.
    let next = 0n;
    for (const sf of relay.subflows) {
      for (const o of optionsOf(sf.s2c.frames)) {
        if (o.subtype === 'DSS' && o.dsn !== undefined && !o.dataFin) {
          const end = o.dsn + BigInt(o.dataLevelLength ?? 0);
          if (end > next) next = end;
        }
      }
    }
    const sf0 = relay.subflows[0];
    // A TLS application_data record (TLS 1.2/1.3 framing) with a made-up body.
    const body = randomBytes(96);
    const record_ = Buffer.concat([Buffer.from([0x17, 0x03, 0x03, 0x00, body.length]), body]);
    const dss: DssOption = { subtype: 'DSS', dataFin: false, dsn: next, dsnIs64: true, ssn: 1 + sf0.s2c.payloadBytes, dataLevelLength: record_.length };
    const keys = exportMptcpKeys(c, c.mptcp.tokens!.local, c.mptcp.tokens!.remote);
    const srvDelivered: Buffer[] = [];
    srv.on('data', (d: Buffer) => srvDelivered.push(d));
    const errors: Error[] = [];
    c.on('error', (e: Error) => errors.push(e));
    const srvErrors: Error[] = [];
    srv.on('error', (e: Error) => srvErrors.push(e));
    const inOrder0 = driverOf(c).conn.bytesReceivedInOrder;
    await sf0.s2c.inject(frame([dss], record_));
    // The multipath layer cannot tell (the mapping is consistent) and delivers
    // the bytes in order; TLS can: its record MAC fails, fatally, on both ends
    // (the client sends a bad_record_mac alert).
    await until(() => errors.length > 0 && srvErrors.length > 0, 5000, 'TLS errors on both ends');
    expect(driverOf(c).conn.bytesReceivedInOrder - inOrder0).toBe(record_.length);
    const code = (e: Error) => (e as Error & { code?: string }).code ?? e.message;
    expect(errors.map(code)).toEqual(['ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC']);
    expect(srvErrors.map(code)).toEqual(['ERR_SSL_SSLV3_ALERT_BAD_RECORD_MAC']);
    // Nothing of the injected record reaches the application, and the TLS
    // session carries nothing more either way.
    srv.write('after');
    c.write('after');
    await new Promise((r) => setTimeout(r, 200));
    expect(Buffer.concat(delivered).toString()).toBe('hello');
    expect(Buffer.concat(srvDelivered).length).toBe(0);
    // As with node:tls over TCP, a TLS error does not destroy the socket by
    // itself; the application's error handling does, and that ends the
    // multipath connection (MP_FASTCLOSE with the real key).
    c.destroy();
    await until(() => counters(srv).MPFastcloseRx === 1 && srv.destroyed, 5000, 'the server side to close');
    record('payload frame with a DSS mapping (data injection)', 'external', `TLS killed: ${code(errors[0])} / ${code(srvErrors[0])}, 0 injected bytes delivered`);
    // The TLS errors and the drivers' messages carry no key material.
    for (const t of [...errors, ...srvErrors].map((x) => `${x.message} ${x.stack ?? ''} ${JSON.stringify(x)}`).concat(driverOf(c).errors, driverOf(srv).errors)) {
      expectNoKeys(t, [keys.keyA, keys.keyB], 'an error message');
    }
  });
});

const SHOWN = [
  'MPJoinSynRx',
  'MPJoinAckRx',
  'MPJoinAckHMacFailure',
  'MPJoinBeforeKeys',
  'MPJoinNoTokenFound',
  'MPJoinRejected',
  'AddAddr',
  'AddAddrHMacFailure',
  'AddAddrDrop',
  'RmAddr',
  'RmAddrDrop',
  'MPPrioRx',
  'MPFastcloseBadKey',
  'MPFastcloseRx',
] as const;
function pick(c: Record<string, number>): Record<string, number> {
  return Object.fromEntries(SHOWN.filter((k) => c[k]).map((k) => [k, c[k]]));
}

describe('the same observer, rfc8684 keys (for comparison)', () => {
  it('reads the keys off MP_CAPABLE: its join is accepted, a forged ADD_ADDR is accepted, MP_FASTCLOSE closes the connection', async () => {
    const { port, relay, c, serverSocket } = await observed('rfc8684', () => {});
    const srv = serverSocket()!;
    // The keys, read off the recorded bytes: SYN/ACK (server → client) carries
    // keyB, the third ACK (client → server) keyA and keyB.
    const s2c = relay.subflows[0].s2c.bytes();
    const at = PREAMBLE_LENGTH + FRAME_HEADER_LENGTH;
    const synack = decodeOption(s2c, at, at + s2c[at + 1]) as MpCapableOption;
    const ack0 = relay.subflows[0].c2s.frames[1];
    const c2s = relay.subflows[0].c2s.bytes();
    const ackAt = ack0.offset + FRAME_HEADER_LENGTH;
    const ack = decodeOption(c2s, ackAt, ackAt + c2s[ackAt + 1]) as MpCapableOption;
    const keyB = synack.senderKey!;
    const keyA = ack.senderKey!;
    expect(keyB).toHaveLength(8);
    expect(Buffer.from(ack.receiverKey!).equals(Buffer.from(keyB))).toBe(true);
    const tokenB = tokenFromKey(keyB);
    expect(tokenB).toBe(c.mptcp.tokens!.remote);
    expect(tokenFromKey(keyA)).toBe(c.mptcp.tokens!.local);
    const replay = recordedJoinOpening(relay.subflows[1]);
    const s0 = { ...counters(srv) };
    const c0 = { ...counters(c) };

    // 2. replay: still refused (fresh R_B).
    {
      const rogue = await rawSubflow(port);
      rogue.send(replay);
      await until(() => rogue.ended, 5000, 'the replayed join to be closed');
      expect(rogue.options().at(-1)).toMatchObject({ subtype: 'MP_TCPRST' });
      expect(counters(srv).MPJoinAckHMacFailure - s0.MPJoinAckHMacFailure).toBe(1);
      record('replay of the recorded join', 'rfc8684', 'refused (MPJoinAckHMacFailure +1)');
    }

    // 1. join with the observed token and the keys it read: accepted.
    const rogue = await rawSubflow(port);
    const randA = randomU32();
    rogue.send(joinSyn(tokenB, randA));
    const sa = await synAckOf(rogue);
    expect(Buffer.from(sa.truncatedHmac).equals(Buffer.from(joinSynAckHmac(keyB, keyA, sa.senderRandom, randA)))).toBe(true); // the server is authentic to it
    const ackRx = counters(srv).MPJoinAckRx;
    rogue.send(frame([{ subtype: 'MP_JOIN', stage: 'ack', hmac: joinAckHmac(keyA, keyB, randA, sa.senderRandom) }]));
    await until(() => rogue.segments.some((s) => s.options.some((o) => o.subtype === 'DSS')) || rogue.ended, 5000, 'the fourth ACK');
    expect(rogue.ended).toBe(false);
    expect(rogue.options().some((o) => o.subtype === 'DSS')).toBe(true);
    expect(counters(srv).MPJoinAckRx).toBe(ackRx + 1);
    expect(counters(srv).MPJoinAckHMacFailure - s0.MPJoinAckHMacFailure).toBe(1); // the replay's only
    await until(() => srv.mptcp.subflows().filter((s) => s.state === 'established').length === 3, 5000, 'a third subflow on the server');
    record('join with the observed token', 'rfc8684', `ACCEPTED: computes HMAC-A, gets the fourth ACK (MPJoinAckRx ${ackRx}→${ackRx + 1}), 3rd subflow on the server`);

    // 3. ADD_ADDR with the right HMAC, pointing at the observer: accepted, the client joins there.
    // (The observer listens on another loopback address at the port the client dialled: the
    // client's default ADD_ADDR policy refuses other ports, test/security/add-addr.test.ts.)
    const trap = net.createServer();
    const trapped: Buffer[] = [];
    trap.on('connection', (s) => {
      s.on('error', () => {});
      s.on('data', (d: Buffer) => {
        trapped.push(d);
        if (Buffer.concat(trapped).length >= JOIN_TOKEN_OFFSET + 4) s.destroy();
      });
    });
    await new Promise<void>((r) => trap.listen(relay.port, '127.0.0.9', r));
    cleanup.push(() => new Promise<void>((r) => trap.close(() => r())));
    const trapPort = (trap.address() as net.AddressInfo).port;
    const hmac = addAddrHmac(keyB, keyA, 9, '127.0.0.9', trapPort);
    await relay.subflows[0].s2c.inject(frame([{ subtype: 'ADD_ADDR', echo: false, addressId: 9, address: '127.0.0.9', port: trapPort, truncatedHmac: hmac }]));
    await until(() => counters(c).AddAddr === c0.AddAddr + 1, 5000, 'the forged ADD_ADDR');
    expect(counters(c).AddAddrHMacFailure).toBe(c0.AddAddrHMacFailure);
    await until(() => Buffer.concat(trapped).length >= JOIN_TOKEN_OFFSET + 4, 5000, 'the client to join the observer');
    expect(Buffer.concat(trapped).readUInt32BE(JOIN_TOKEN_OFFSET)).toBe(tokenB);
    record('forged ADD_ADDR', 'rfc8684', 'ACCEPTED with the computed HMAC (AddAddr +1): the client opened a join to the observer');

    // 3. MP_FASTCLOSE with the server's key (client → server): the connection is gone.
    const closed = new Promise<void>((r) => (srv.destroyed ? r() : srv.once('close', () => r())));
    await relay.subflows[0].c2s.inject(frame([{ subtype: 'MP_FASTCLOSE', receiverKey: keyB }]));
    await closed;
    expect(counters(srv).MPFastcloseRx).toBe(s0.MPFastcloseRx + 1);
    expect(counters(srv).MPFastcloseBadKey).toBe(s0.MPFastcloseBadKey);
    await until(() => c.destroyed, 5000, 'the client to be closed too');
    record('forged MP_FASTCLOSE', 'rfc8684', 'ACCEPTED with the key read off the wire (MPFastcloseRx=1): connection closed');
    console.log(`rfc8684:  client ${JSON.stringify(pick(counters(c)))}\n          server ${JSON.stringify(pick(counters(srv)))}`);
  });
});

describe('secrets', () => {
  it('mptls get -v prints fingerprints, never keyA / keyB', async () => {
    const seen: { keyA: Uint8Array; keyB: Uint8Array }[] = [];
    const prints: { keyA: string; keyB: string }[] = [];
    const server = createHttpsServer({ key: fixtures.key, cert: fixtures.cert }, (req, res) => {
      const s = req.socket as MptlsSocket;
      const t = s.mptcp.tokens!;
      seen.push(exportMptcpKeys(s, t.remote, t.local)); // server side: tokenA is the peer's
      prints.push(keyFingerprints(s, t.remote, t.local, seen[seen.length - 1]));
      res.end('x'.repeat(100_000));
    });
    const port = await listen(server);
    cleanup.push(() => close(server, 500));
    const stdout = sink();
    const stderr = sink();
    const code = await main(['get', `https://127.0.0.1:${port}/`, '--cacert', CA, '--local', '127.0.0.1', '--local', '127.0.0.2', '-v', '--no-fallback'], { stdout, stderr });
    await new Promise((r) => setImmediate(r));
    expect(code).toBe(0);
    expect(seen).toHaveLength(1);
    const out = stdout.text() + stderr.text();
    expect(stderr.text()).toContain('multipath: userspace');
    // The fingerprints printed are of the very keys computed here…
    expect(stderr.text()).toContain(`key fingerprints: A ${prints[0].keyA}, B ${prints[0].keyB}`);
    // …and the keys themselves appear nowhere.
    expectNoKeys(out, [seen[0].keyA, seen[0].keyB], 'mptls get -v');
  });
});

describe('summary', () => {
  it('prints and checks the table', () => {
    const rows = [...table.entries()];
    const w0 = Math.max(...rows.map(([k]) => k.length), 6);
    const w1 = Math.max(...rows.map(([, v]) => (v.external ?? 'n/a').length), 8);
    const lines = [`${'attack'.padEnd(w0)} | ${'external'.padEnd(w1)} | rfc8684`, `${'-'.repeat(w0)}-|-${'-'.repeat(w1)}-|-${'-'.repeat(40)}`];
    for (const [k, v] of rows) lines.push(`${k.padEnd(w0)} | ${(v.external ?? 'n/a').padEnd(w1)} | ${v.rfc8684 ?? 'n/a'}`);
    console.log(lines.join('\n'));
    const ext = (k: string) => table.get(k)?.external ?? '';
    const rfc = (k: string) => table.get(k)?.rfc8684 ?? '';
    expect(ext('join with the observed token')).toMatch(/^refused/);
    expect(rfc('join with the observed token')).toMatch(/^ACCEPTED/);
    expect(ext('replay of the recorded join')).toMatch(/^refused/);
    expect(rfc('replay of the recorded join')).toMatch(/^refused/);
    expect(ext('forged ADD_ADDR')).toMatch(/^dropped/);
    expect(rfc('forged ADD_ADDR')).toMatch(/^ACCEPTED/);
    expect(ext('forged MP_FASTCLOSE')).toMatch(/^ignored/);
    expect(rfc('forged MP_FASTCLOSE')).toMatch(/^ACCEPTED/);
    expect(ext('join before the TLS handshake finished')).toMatch(/^held until the keys, then refused/);
    expect(ext(`brute-forced tokens (${BRUTE_FORCE_JOINS} joins)`)).toMatch(/^all refused/);
    expect(ext('REMOVE_ADDR, unused id')).toMatch(/^dropped/);
    expect(ext('MP_PRIO(backup)')).toMatch(/^accepted, unauthenticated/);
    expect(ext('REMOVE_ADDR, id in use (0)')).toMatch(/^accepted, unauthenticated/);
    expect(ext('payload frame with a DSS mapping (data injection)')).toMatch(/^TLS killed/);
  });
});
