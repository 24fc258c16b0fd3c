/**
 * Wire version 3 (issue 14), sans-I/O: the first flight carries data (G-mode
 * IDSNs need no token), the MP_CAPABLE ACK rides with the client's next
 * data, and joins open while TLS runs: the server holds an early join
 * (bounded per connection, by the endpoint's pool, and in time) until its
 * keys are installed, and the client completes it once they are confirmed.
 */
import { describe, it, expect } from 'vitest';
import { Endpoint } from '../../src/core/endpoint.js';
import type { Connection } from '../../src/core/connection/index.js';
import type { EndpointOptions, Segment, Transmit } from '../../src/core/types.js';
import { TcpRstFlag, TcpRstReason, type DssOption, type MptcpOption } from '../../src/wire/types.js';
import { idsnExternal, newKeyHmac } from '../../src/crypto/index.js';
import { Sim } from '../support/sim.js';
import { mulberry32, seededBytes } from '../support/random.js';

const KEY_A = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
const KEY_B = Uint8Array.of(9, 10, 11, 12, 13, 14, 15, 16);
const HELLO = new TextEncoder().encode('ClientHello');
const PATH = { remoteAddress: '198.18.0.1', localAddress: '198.18.0.2' };

function drain(conn: Connection, now = 0): Transmit[] {
  const out: Transmit[] = [];
  for (let t = conn.pollTransmit(now); t; t = conn.pollTransmit(now)) out.push(t);
  return out;
}
function events(conn: Connection): string[] {
  const out: string[] = [];
  for (let e = conn.pollEvent(); e; e = conn.pollEvent()) out.push(e.type);
  return out;
}
const dssOf = (t: Transmit) => t.segment.options.find((o): o is DssOption => o.subtype === 'DSS');
const subtypes = (t: Transmit) => t.segment.options.map((o) => o.subtype);

function endpoints(opts: EndpointOptions = {}) {
  const random = seededBytes(mulberry32(14));
  return { server: new Endpoint({ random, ...opts }), clients: new Endpoint({ random, acceptModes: [] }) };
}

/** A client connection and the server connection its first flight created (nothing else delivered). */
function firstFlight(opts: EndpointOptions = {}) {
  const { server, clients } = endpoints(opts);
  const client = clients.connect({ mode: 'external', remote: { address: '198.18.0.2', port: 443 }, localAddresses: [{ address: '198.18.0.1' }, { address: '198.18.1.1' }] }, 0);
  expect(client.write(HELLO)).toBe(true);
  const flight = drain(client);
  const r = server.handleNewSubflow(flight[0].segment, PATH, 0);
  if (r.kind !== 'connection') throw new Error(`not a connection: ${r.kind}`);
  for (const t of flight.slice(1)) r.connection.handleSegment(r.subflow, t.segment, 0);
  return { server, clients, client, conn: r.connection, flight };
}

describe('first flight (wire version 3)', () => {
  it("the client's first data leaves with its MP_CAPABLE SYN, mapped from a DSN it knows without the server's token", () => {
    const { client, flight } = firstFlight();
    expect(client.isEstablished).toBe(true); // data may flow at once
    expect(client.tokensExchanged).toBe(false);
    expect(flight).toHaveLength(2);
    // frame 1: the SYN alone, no window, no ack (fixed offsets for balancers)
    expect(flight[0].segment).toEqual({ options: [{ subtype: 'MP_CAPABLE', version: 1, flags: 0x03 }] });
    // frame 2: the ClientHello, DSN = IDSN(initiator) + 1, SSN 1, data ACK = IDSN(responder) + 1
    const dss = dssOf(flight[1])!;
    expect(dss).toMatchObject({ dsn: idsnExternal('initiator') + 1n, ssn: 1, dataLevelLength: HELLO.length, dataAck: idsnExternal('responder') + 1n, dsnIs64: true, dataAckIs64: true });
    expect(flight[1].segment.payload).toEqual(HELLO);
    expect(flight[1].segment.ack).toBe(1);
    expect(flight[1].segment.window).toBeGreaterThan(0);
  });

  it('the server reads the ClientHello before the third ACK and answers SYN/ACK + its first data at once', () => {
    const { conn } = firstFlight();
    expect(conn.read()).toEqual(HELLO);
    expect(conn.tokensExchanged).toBe(false);
    expect(conn.write(new TextEncoder().encode('ServerHello'))).toBe(true);
    const out = drain(conn);
    expect(subtypes(out[0])).toEqual(['MP_CAPABLE']);
    expect(out[0].segment.options[0]).toMatchObject({ senderToken: conn.localToken });
    expect(out[0].segment.ack).toBeUndefined(); // the first frame of the subflow
    const data = out.find((t) => t.segment.payload?.length)!;
    expect(dssOf(data)).toMatchObject({ dsn: idsnExternal('responder') + 1n, ssn: 1, dataAck: idsnExternal('initiator') + 1n + BigInt(HELLO.length) });
  });

  it('the MP_CAPABLE ACK (tokenA, tokenB) goes out with the client’s next data; then both sides know both tokens', () => {
    const { client, conn } = firstFlight();
    conn.write(new TextEncoder().encode('ServerHello'));
    for (const t of drain(conn)) client.handleSegment(0, t.segment, 20);
    expect(client.tokensExchanged).toBe(true);
    expect(client.read()).toEqual(new TextEncoder().encode('ServerHello'));
    client.write(new TextEncoder().encode('Finished'));
    const out = drain(client, 20).filter((t) => t.subflow === 0);
    expect(subtypes(out[0])).toEqual(['MP_CAPABLE']);
    expect(out[0].segment.options[0]).toMatchObject({ senderToken: client.localToken, receiverToken: client.remoteToken });
    expect(out.some((t) => t.segment.payload?.length)).toBe(true);
    for (const t of out) conn.handleSegment(0, t.segment, 30);
    expect(conn.tokensExchanged).toBe(true);
    expect(conn.remoteToken).toBe(client.localToken);
  });

  it('server data before its SYN/ACK is a protocol error at the client (the SYN/ACK must come first)', () => {
    const { client } = firstFlight();
    client.handleSegment(0, { options: [{ subtype: 'DSS', dsn: idsnExternal('responder') + 1n, dsnIs64: true, ssn: 1, dataLevelLength: 3, dataFin: false }], payload: Uint8Array.of(1, 2, 3) }, 5);
    expect(client.state).toBe('closed');
    expect(client.counters().ProtocolError).toBe(1);
  });

  it('keys installed before the MP_CAPABLE exchange finished (the client never sent its third ACK): the connection closes, no keys', () => {
    const { conn } = firstFlight();
    conn.installKeys(KEY_A, KEY_B, 30);
    expect(conn.state).toBe('closed');
    expect(conn.closeReason).toBe('handshake-failed');
    expect(conn.counters().MPCapableIncomplete).toBe(1);
    expect(conn.counters().KeysInstalled).toBe(0);
  });

  it('an MP_CAPABLE "ACK with data" (data-level length) is refused: data rides in DSS frames only', () => {
    const { conn, client } = firstFlight();
    drain(conn);
    conn.handleSegment(0, { options: [{ subtype: 'MP_CAPABLE', version: 1, flags: 0x03, senderToken: client.localToken, receiverToken: conn.localToken, dataLevelLength: 0 }] }, 30);
    expect(conn.state).toBe('closed');
    expect(conn.counters().ProtocolError).toBe(1);
    expect(drain(conn, 30).flatMap(subtypes)).toContain('MP_TCPRST');
  });

  it('rfc8684 mode keeps the old order: no data before the SYN/ACK', () => {
    const { clients } = endpoints();
    const client = clients.connect({ mode: 'rfc8684', remote: { address: '198.18.0.2', port: 443 } }, 0);
    client.write(HELLO);
    expect(client.isEstablished).toBe(false);
    expect(drain(client).map(subtypes)).toEqual([['MP_CAPABLE']]);
  });
});

describe('NEW_KEY', () => {
  function keyed() {
    const ff = firstFlight();
    const { client, conn } = ff;
    const shuttle = (now: number) => {
      for (let i = 0; i < 20; i++) {
        const a = drain(client, now);
        const b = drain(conn, now);
        for (const t of a) if (t.subflow === 0) conn.handleSegment(0, t.segment, now);
        for (const t of b) if (t.subflow === 0) client.handleSegment(0, t.segment, now);
        events(client);
        events(conn);
        if (a.length + b.length === 0) return;
      }
    };
    shuttle(10);
    return { ...ff, shuttle };
  }

  it('K = 1 (a second key) is ignored and counted; the connection goes on and confirms with K = 0', () => {
    const { client, conn, shuttle } = keyed();
    const hmac = newKeyHmac(conn.localToken, conn.remoteToken, new Uint8Array(16));
    client.handleSegment(0, { options: [{ subtype: 'NEW_KEY', keyId: 1, hmac }] }, 40);
    expect(client.counters().NewKeyUnsupported).toBe(1);
    expect(client.state).toBe('established');
    client.installKeys(KEY_A, KEY_B, 50);
    conn.installKeys(KEY_A, KEY_B, 50);
    shuttle(50);
    expect(client.areKeysConfirmed && conn.areKeysConfirmed).toBe(true);
  });

  it('a NEW_KEY that arrives before our keys are installed is held and checked when they are', () => {
    const { client, conn, shuttle } = keyed();
    conn.installKeys(KEY_A, KEY_B, 40);
    shuttle(40); // the server's NEW_KEY reaches a client without keys
    expect(client.counters().NewKeyRx).toBe(0);
    client.installKeys(KEY_A, KEY_B, 60);
    expect(client.counters().NewKeyRx).toBe(1);
    expect(client.areKeysConfirmed).toBe(true);
  });

  it('a key mismatch closes both ends with MP_TCPRST, never an MP_FASTCLOSE the peer would take for a forgery', () => {
    const { client, conn, shuttle } = keyed();
    client.installKeys(KEY_A, KEY_B, 40);
    conn.installKeys(KEY_A, Uint8Array.of(9, 9, 9, 9, 9, 9, 9, 9), 40);
    shuttle(40);
    expect(client.closeReason).toBe('key-mismatch');
    expect(conn.closeReason).toBe('key-mismatch');
    for (const c of [client, conn]) {
      expect(c.counters().NewKeyHMacFailure).toBe(1);
      expect(c.counters().MPFastcloseTx).toBe(0);
      expect(c.counters().MPFastcloseBadKey).toBe(0);
    }
  });
});

describe('NEW_KEY lost with its subflow', () => {
  it('the client sends it again on the join when the subflow that carried it goes down; the server confirms', () => {
    const { client, conn, server } = firstFlight();
    for (const t of drain(conn)) client.handleSegment(0, t.segment, 20);
    const out = drain(client, 20);
    const joinSyn = out.find((t) => t.subflow === 1)!;
    for (const t of out.filter((x) => x.subflow === 0)) conn.handleSegment(0, t.segment, 30);
    const j = server.handleNewSubflow(joinSyn.segment, { remoteAddress: '198.18.1.1', localAddress: '198.18.0.2' }, 30);
    if (j.kind !== 'join') throw new Error(j.kind);
    conn.installKeys(KEY_A, KEY_B, 31);
    const s = drain(conn, 31);
    client.installKeys(KEY_A, KEY_B, 32);
    const lost = drain(client, 32).filter((t) => t.subflow === 0); // the client's NEW_KEY: never delivered
    expect(lost.flatMap(subtypes)).toContain('NEW_KEY');
    for (const t of s) client.handleSegment(t.subflow === 0 ? 0 : 1, t.segment, 40); // server NEW_KEY + join SYN/ACK
    expect(client.areKeysConfirmed).toBe(true);
    for (const t of drain(client, 41).filter((x) => x.subflow === 1)) conn.handleSegment(j.subflow, t.segment, 50); // MP_JOIN ACK
    drain(conn, 50);
    expect(conn.areKeysConfirmed).toBe(false);
    client.handleSubflowClosed(0, 'reset', 60);
    const again = drain(client, 60).filter((t) => t.subflow === 1);
    expect(again.flatMap(subtypes)).toContain('NEW_KEY');
    for (const t of again) conn.handleSegment(j.subflow, t.segment, 70);
    expect(conn.areKeysConfirmed).toBe(true);
    expect(client.counters().NewKeyTx).toBe(2);
  });
});

describe('early joins (held until the keys)', () => {
  const joinSyn = (token: number, r: number): Segment => ({ options: [{ subtype: 'MP_JOIN', stage: 'syn', backup: false, addressId: 1, receiverToken: token, senderRandom: r }] });
  const rst = (t: Transmit | undefined): MptcpOption | undefined => t?.segment.options.find((o) => o.subtype === 'MP_TCPRST');

  it("the client opens its join at the SYN/ACK; the server holds it unanswered, answers once its keys are installed, and the client completes it once they are confirmed", () => {
    const { client, conn, server } = firstFlight();
    const toServer: Transmit[] = [];
    for (const t of drain(conn)) client.handleSegment(0, t.segment, 20);
    // the SYN/ACK made the join: its SYN is out with the third ACK
    const out = drain(client, 20);
    const joinSynTx = out.find((t) => t.subflow === 1)!;
    expect(joinSynTx.segment.options[0]).toMatchObject({ subtype: 'MP_JOIN', stage: 'syn', receiverToken: conn.localToken });
    toServer.push(...out.filter((t) => t.subflow === 0));
    const j = server.handleNewSubflow(joinSynTx.segment, { remoteAddress: '198.18.1.1', localAddress: '198.18.0.2' }, 30);
    expect(j.kind).toBe('join');
    if (j.kind !== 'join') return;
    for (const t of toServer) conn.handleSegment(0, t.segment, 30);
    expect(drain(conn, 30).filter((t) => t.subflow === j.subflow)).toEqual([]); // held: nothing on the join yet
    expect(conn.subflowInfo().find((s) => s.id === j.subflow)?.state).toBe('join-held');
    expect(conn.counters().MPJoinHeld).toBe(1);
    expect(server.pendingJoinCount).toBe(1);
    // the server's TLS finishes: keys installed, NEW_KEY on subflow 0, the held join answered
    conn.installKeys(KEY_A, KEY_B, 31);
    const s = drain(conn, 31);
    const synack = s.find((t) => t.subflow === j.subflow)!;
    expect(synack.segment.options[0]).toMatchObject({ subtype: 'MP_JOIN', stage: 'synack' });
    expect(conn.counters().MPJoinHeldReleased).toBe(1);
    // its SYN/ACK reaches the client before the server's NEW_KEY, and before the client's own keys: held
    client.handleSegment(1, synack.segment, 40);
    expect(client.counters().MPJoinSynAckHeld).toBe(1);
    expect(drain(client, 40).filter((t) => t.subflow === 1)).toEqual([]);
    client.installKeys(KEY_A, KEY_B, 41);
    expect(drain(client, 41).filter((t) => t.subflow === 1)).toEqual([]); // keys installed, not yet confirmed
    for (const t of s.filter((x) => x.subflow === 0)) client.handleSegment(0, t.segment, 42); // the server's NEW_KEY
    expect(client.areKeysConfirmed).toBe(true);
    const ack = drain(client, 42).find((t) => t.subflow === 1)!;
    expect(ack.segment.options[0]).toMatchObject({ subtype: 'MP_JOIN', stage: 'ack' });
    // the ACK is a reliable frame: the subflow is the client's from here, no fourth ACK awaited
    expect(client.subflowInfo().find((x) => x.id === 1)?.state).toBe('established');
    expect(events(client)).toContain('subflow-up');
    // data may follow the ACK at once; the server takes it after verifying HMAC-A
    client.write(new TextEncoder().encode('x'.repeat(200_000)));
    const behind = drain(client, 43).filter((t) => t.subflow === 1);
    expect(behind.some((t) => (t.segment.payload?.length ?? 0) > 0)).toBe(true);
    conn.handleSegment(j.subflow, ack.segment, 50);
    for (const t of behind) conn.handleSegment(j.subflow, t.segment, 50);
    expect(conn.subflowInfo().find((x) => x.id === j.subflow)?.state).toBe('established');
    expect(conn.counters().ProtocolError).toBe(0);
    expect(server.pendingJoinCount).toBe(0);
  });

  it("a held join's RTT sample starts at the server's SYN/ACK, not at the hold", () => {
    const { client, conn, server } = firstFlight();
    for (const t of drain(conn)) client.handleSegment(0, t.segment, 20);
    const out = drain(client, 20);
    const joinSynTx = out.find((t) => t.subflow === 1)!;
    for (const t of out.filter((x) => x.subflow === 0)) conn.handleSegment(0, t.segment, 30);
    const j = server.handleNewSubflow(joinSynTx.segment, { remoteAddress: '198.18.1.1', localAddress: '198.18.0.2' }, 30);
    if (j.kind !== 'join') throw new Error(j.kind);
    conn.installKeys(KEY_A, KEY_B, 1_000); // held for ~1 s
    const s = drain(conn, 1_000);
    client.installKeys(KEY_A, KEY_B, 1_005);
    for (const t of s) client.handleSegment(t.subflow === 0 ? 0 : 1, t.segment, 1_005);
    for (const t of drain(client, 1_005).filter((x) => x.subflow === 1)) conn.handleSegment(j.subflow, t.segment, 1_010);
    expect(conn.subflowInfo().find((x) => x.id === j.subflow)).toMatchObject({ state: 'established' });
    expect(conn.subflowInfo().find((x) => x.id === j.subflow)!.rttMs).toBeLessThan(20);
  });

  it('an early join to an unknown token is refused (MP_TCPRST, no T, MPJoinNoTokenFound)', () => {
    const { server } = firstFlight();
    const r = server.handleNewSubflow(joinSyn(0x12345678, 1), PATH, 5);
    expect(r.kind).toBe('refused');
    if (r.kind === 'refused') expect(r.reply.options[0]).toMatchObject({ subtype: 'MP_TCPRST', flags: 0 });
    expect(server.counters().MPJoinNoTokenFound).toBe(1);
  });

  it('per connection: at most maxHeldJoins (4) are held; from the same source the next is refused (T, MPJoinHeldLimit), from another it evicts the busiest source’s oldest', () => {
    const { server, conn } = firstFlight();
    const from = (a: string) => ({ remoteAddress: a, localAddress: '198.18.0.2' });
    const held = [0, 1, 2, 3].map((i) => server.handleNewSubflow(joinSyn(conn.localToken, i), from('198.18.9.9'), 5));
    expect(held.every((r) => r.kind === 'join')).toBe(true);
    const fifth = server.handleNewSubflow(joinSyn(conn.localToken, 5), from('198.18.9.9'), 5);
    expect(fifth.kind).toBe('refused');
    if (fifth.kind === 'refused') expect(fifth.reply.options[0]).toMatchObject({ subtype: 'MP_TCPRST', flags: TcpRstFlag.TRANSIENT, reason: TcpRstReason.LACK_OF_RESOURCES });
    expect(conn.counters().MPJoinHeldLimit).toBe(1);
    const other = server.handleNewSubflow(joinSyn(conn.localToken, 6), from('198.18.1.1'), 6);
    expect(other.kind).toBe('join');
    expect(conn.counters().MPJoinEvicted).toBe(1);
    const evicted = drain(conn, 6).find((t) => t.subflow === (held[0] as { subflow: number }).subflow);
    expect(rst(evicted)).toMatchObject({ flags: TcpRstFlag.TRANSIENT });
    expect(conn.subflowInfo().filter((s) => s.state === 'join-held')).toHaveLength(4);
  });

  it("globally: held joins take the endpoint's pending-join slots (maxPendingJoinsPerSource), across connections", () => {
    const { server, clients } = endpoints({ maxPendingJoinsPerSource: 3 });
    const conns: Connection[] = [];
    for (let i = 0; i < 2; i++) {
      const c = clients.connect({ mode: 'external', remote: { address: '198.18.0.2', port: 443 } }, 0);
      const r = server.handleNewSubflow(drain(c)[0].segment, PATH, 0);
      if (r.kind === 'connection') conns.push(r.connection);
    }
    const src = { remoteAddress: '198.18.9.9', localAddress: '198.18.0.2' };
    const rs = [0, 1, 0, 1].map((k, i) => server.handleNewSubflow(joinSyn(conns[k].localToken, i), src, 1));
    expect(rs.map((r) => r.kind)).toEqual(['join', 'join', 'join', 'refused']);
    expect(server.counters().MPJoinSourceLimit).toBe(1);
    expect(server.pendingJoinCount).toBe(3);
  });

  it('in time: a held join whose keys never come is reset after joinHoldTimeoutMs (5 s), T=1, MPJoinHeldTimeout; its slot is freed', () => {
    const { server, conn } = firstFlight();
    const r = server.handleNewSubflow(joinSyn(conn.localToken, 1), PATH, 100);
    expect(r.kind).toBe('join');
    drain(conn, 100);
    expect(conn.pollTimeout()).toBeLessThanOrEqual(5_100);
    conn.handleTimeout(5_099);
    expect(conn.counters().MPJoinHeldTimeout).toBe(0);
    conn.handleTimeout(5_100);
    expect(conn.counters().MPJoinHeldTimeout).toBe(1);
    const t = drain(conn, 5_100).find((x) => x.subflow === (r as { subflow: number }).subflow);
    expect(rst(t)).toMatchObject({ flags: TcpRstFlag.TRANSIENT });
    expect(server.pendingJoinCount).toBe(0);
  });

  it('rfc8684 mode: a join before the keys is refused as before (MP_TCPRST T=1, MPJoinBeforeKeys)', () => {
    const { server, clients } = endpoints({ acceptModes: ['rfc8684', 'external'] });
    const c = clients.connect({ mode: 'rfc8684', remote: { address: '198.18.0.2', port: 443 } }, 0);
    const r = server.handleNewSubflow(drain(c)[0].segment, PATH, 0);
    if (r.kind !== 'connection') throw new Error(r.kind);
    const j = server.handleNewSubflow(joinSyn(r.connection.localToken, 1), PATH, 1);
    expect(j.kind).toBe('refused');
    if (j.kind === 'refused') expect(j.reply.options[0]).toMatchObject({ subtype: 'MP_TCPRST', flags: TcpRstFlag.TRANSIENT });
    expect(server.counters().MPJoinBeforeKeys).toBe(1);
  });
});

describe('latency on a simulated 20 ms RTT path (TLS 1.3 modelled: client keys at its SYN/ACK, server keys at the third ACK)', () => {
  it('first data byte at the server after 0.5 RTT and at the client after 1 RTT; the second subflow up ≤ 3.5 RTT after connect', () => {
    const paths = [
      { rateMbps: 1000, delayMs: 10 },
      { rateMbps: 1000, delayMs: 10 },
    ];
    const sim = new Sim({ seed: 140, paths, keyDelayMs: { client: 0, server: 0 } });
    sim.start({ client: { bytes: 500 }, server: { bytes: 500 } });
    let upAt = -1;
    for (let t = 0; t < 200; t += 0.5) sim.at(t, () => {
      if (upAt < 0 && sim.client.subflowInfo().filter((s) => s.state === 'established').length === 2) upAt = t;
    });
    sim.run(2_000);
    const c = sim.report('client');
    const s = sim.report('server');
    expect(s.firstByteAt).toBeLessThan(11); // 0.5 RTT: the data rode with the SYN
    expect(c.firstByteAt).toBeLessThan(21); // 1 RTT, like TCP Fast Open + TLS 1.3
    expect(upAt).toBeGreaterThan(0);
    // client keys at 1 RTT, join SYN at the server 1.5, its SYN/ACK (answered at the
    // server's keys, 1.5) back at 2: the MP_JOIN ACK goes out and the subflow is ours
    expect(upAt).toBeLessThanOrEqual(2.5 * 20);
    expect(sim.serverEndpoint.counters().MPJoinHeld).toBe(1); // its SYN beat the third ACK's keys
    expect(c.received).toBe(500);
    expect(s.received).toBe(500);
  });
});
