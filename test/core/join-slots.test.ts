/**
 * Pending-join slots (issue 11 §6), sans-I/O: a server join waiting for its
 * MP_JOIN ACK expires after a few RTTs (clamped), pending joins are counted
 * per source with a per-source cap, and a full connection or endpoint makes
 * room for a newcomer from a less busy source by evicting the busiest
 * source's oldest pending join, so a flood only ever competes with itself.
 */
import { describe, it, expect } from 'vitest';
import { Endpoint, defaultJoinSource } from '../../src/core/endpoint.js';
import type { Connection } from '../../src/core/connection/index.js';
import type { EndpointOptions, Segment, Transmit } from '../../src/core/types.js';
import { TcpRstFlag, TcpRstReason, type MptcpOption } from '../../src/wire/types.js';
import { Sim, type RogueSubflow } from '../support/sim.js';
import { mulberry32, seededBytes } from '../support/random.js';

const KEY_A = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
const KEY_B = Uint8Array.of(9, 10, 11, 12, 13, 14, 15, 16);

function joinSyn(token: number, senderRandom: number): Segment {
  return { options: [{ subtype: 'MP_JOIN', stage: 'syn', backup: false, addressId: 3, receiverToken: token, senderRandom }] };
}

/** A server endpoint and helpers to make established, keyed connections on it by shuttling segments by hand. */
function harness(opts: EndpointOptions = {}) {
  const random = seededBytes(mulberry32(11));
  const woken: Connection[] = [];
  const server = new Endpoint({ random, onWake: (c) => woken.push(c), ...opts });
  const clients = new Endpoint({ random, acceptModes: [] });
  let rnd = 1;
  const h = {
    server,
    woken,
    now: 0,
    /** An established connection with keys installed on both ends, its initial subflow from `address`. */
    connection(address: string, rttMs?: number): { client: Connection; server: Connection } {
      const client = clients.connect({ mode: 'external', remote: { address: '192.0.2.1', port: 443 }, localAddresses: [{ address }] }, h.now);
      let conn: Connection | undefined;
      const shuttle = () => {
        for (let i = 0; i < 50; i++) {
          let moved = false;
          for (let t = client.pollTransmit(h.now); t; t = client.pollTransmit(h.now)) {
            moved = true;
            if (!conn) {
              const r = server.handleNewSubflow(t.segment, { remoteAddress: address, localAddress: '192.0.2.1' }, h.now);
              if (r.kind !== 'connection') throw new Error(`not a connection: ${r.kind}`);
              conn = r.connection;
            } else conn.handleSegment(0, t.segment, h.now);
          }
          for (let t = conn?.pollTransmit(h.now); t; t = conn!.pollTransmit(h.now)) {
            moved = true;
            client.handleSegment(0, t.segment, h.now);
          }
          while (client.pollEvent());
          while (conn?.pollEvent());
          if (!moved) return;
        }
      };
      shuttle();
      client.installKeys(KEY_A, KEY_B, h.now);
      conn!.installKeys(KEY_A, KEY_B, h.now);
      shuttle();
      if (!conn!.areKeysConfirmed || !client.areKeysConfirmed) throw new Error('keys not confirmed');
      if (rttMs !== undefined) conn!.setSubflowRtt(0, rttMs);
      return { client, server: conn! };
    },
    /** A raw MP_JOIN SYN from `address` for `conn`'s token, as an attacker sends it (never the ACK). */
    join(conn: Connection, address: string) {
      return server.handleNewSubflow(joinSyn(conn.localToken, rnd++), { remoteAddress: address, localAddress: '192.0.2.1' }, h.now);
    },
    /** What the connection writes now, per subflow. */
    drain(conn: Connection): Transmit[] {
      const out: Transmit[] = [];
      for (let t = conn.pollTransmit(h.now); t; t = conn.pollTransmit(h.now)) out.push(t);
      while (conn.pollEvent());
      return out;
    },
    pending(conn: Connection): number[] {
      return conn.subflowInfo().filter((s) => s.state === 'join-syn-received').map((s) => s.id);
    },
  };
  return h;
}

const rst = (t: Transmit | undefined): MptcpOption | undefined => t?.segment.options.find((o) => o.subtype === 'MP_TCPRST');

describe('defaultJoinSource', () => {
  it('IPv4 as is, IPv4-mapped IPv6 as IPv4, IPv6 by its /64', () => {
    const cases: [string | undefined, string][] = [
      ['127.0.0.3', '127.0.0.3'],
      ['::ffff:127.0.0.3', '127.0.0.3'],
      ['::FFFF:10.1.2.3', '10.1.2.3'],
      ['0:0:0:0:0:ffff:10.0.0.1', '10.0.0.1'],
      ['2001:db8::1', '2001:db8:0:0::/64'],
      ['2001:0db8:0000:0000:ffff:1:2:3', '2001:db8:0:0::/64'],
      ['2001:db8:a:b:c:d:e:f', '2001:db8:a:b::/64'],
      ['2001:db8:a:c::1', '2001:db8:a:c::/64'],
      ['fe80::1%eth0', 'fe80:0:0:0::/64'],
      ['::1', '0:0:0:0::/64'],
      ['64:ff9b::1.2.3.4', '64:ff9b:0:0::/64'],
      [undefined, ''],
      ['', ''],
    ];
    for (const [a, want] of cases) expect(defaultJoinSource({ remoteAddress: a }), String(a)).toBe(want);
  });
});

describe('pending joins: expiry', () => {
  it('a join that never sends its ACK expires after max(1 s, 4 × RTT), ≤ joinTimeoutMs, with MP_TCPRST T=1 (MPJoinTimeout)', () => {
    for (const [rtt, want] of [
      [0.05, 1_000], // loopback: the floor
      [100, 1_000],
      [400, 1_600], // 4 RTTs
      [5_000, 10_000], // clamped to joinTimeoutMs
    ] as const) {
      const h = harness();
      const { server } = h.connection('10.0.0.1', rtt);
      h.now = 1_000;
      const r = h.join(server, '10.0.0.9');
      expect(r.kind).toBe('join');
      expect(h.drain(server).map((t) => t.segment.options[0])).toMatchObject([{ subtype: 'MP_JOIN', stage: 'synack' }]);
      expect(server.pollTimeout()).toBe(1_000 + want);
      h.now = 1_000 + want - 1;
      server.handleTimeout(h.now);
      expect(h.pending(server), `rtt ${rtt}: still pending just before`).toHaveLength(1);
      h.now = 1_000 + want;
      server.handleTimeout(h.now);
      expect(h.pending(server)).toHaveLength(0);
      const out = h.drain(server);
      expect(rst(out[0])).toMatchObject({ flags: TcpRstFlag.TRANSIENT, reason: TcpRstReason.MPTCP_SPECIFIC });
      expect(out[0].close).toBe('reset');
      expect(server.counters().MPJoinTimeout).toBe(1);
      expect(h.server.pendingJoinCount).toBe(0);
      expect(server.state).toBe('established');
    }
  });

  it('the floor and the RTT factor are timers (joinAckTimeoutMinMs, joinAckTimeoutRtts)', () => {
    const h = harness({ server: { timers: { joinAckTimeoutMinMs: 300, joinAckTimeoutRtts: 2 } } });
    const { server } = h.connection('10.0.0.1', 200);
    h.join(server, '10.0.0.9');
    expect(server.pollTimeout()).toBe(400);
    const h2 = harness({ server: { timers: { joinAckTimeoutMinMs: 300, joinAckTimeoutRtts: 2 } } });
    const c2 = h2.connection('10.0.0.1', 10);
    h2.join(c2.server, '10.0.0.9');
    expect(c2.server.pollTimeout()).toBe(300);
  });
});

describe('pending joins: per-source cap and eviction', () => {
  it('one source holds at most maxPendingJoinsPerSource across connections; more are refused (MPJoinSourceLimit, T=1)', () => {
    const h = harness({ maxPendingJoinsPerSource: 5 });
    const conns = [h.connection('10.0.0.1'), h.connection('10.0.0.2'), h.connection('10.0.0.3')].map((c) => c.server);
    const kinds: string[] = [];
    for (let i = 0; i < 9; i++) kinds.push(h.join(conns[i % 3], '10.9.9.9').kind);
    expect(kinds).toEqual(['join', 'join', 'join', 'join', 'join', 'refused', 'refused', 'refused', 'refused']);
    const refused = h.join(conns[0], '10.9.9.9');
    expect(refused.kind === 'refused' && refused.reply.options[0]).toMatchObject({ subtype: 'MP_TCPRST', flags: TcpRstFlag.TRANSIENT, reason: TcpRstReason.LACK_OF_RESOURCES });
    expect(h.server.counters().MPJoinSourceLimit).toBe(5);
    expect(h.server.pendingJoinsBySource().get('10.9.9.9')).toBe(5);
    // another source is not affected
    expect(h.join(conns[0], '10.8.8.8').kind).toBe('join');
    expect(h.server.pendingJoinCount).toBe(6);
    // an IPv6 /64 is one source
    const v6 = ['2001:db8:1:2::1', '2001:db8:1:2::2', '2001:db8:1:2:ffff::3', '2001:db8:1:2::4', '2001:db8:1:2::5', '2001:db8:1:2::6'];
    expect(v6.map((a, i) => h.join(conns[i % 3], a).kind)).toEqual(['join', 'join', 'join', 'join', 'join', 'refused']);
    expect(h.join(conns[0], '2001:db8:1:3::1').kind).toBe('join');
  });

  it('a full connection evicts the oldest pending join of the busiest other source for a newcomer from a less busy one', () => {
    const h = harness(); // maxSubflows 8: 1 initial + 7 pending fill it
    const { server } = h.connection('10.0.0.1');
    for (let i = 0; i < 5; i++) expect(h.join(server, '10.6.6.6').kind).toBe('join');
    for (let i = 0; i < 2; i++) expect(h.join(server, '10.7.7.7').kind).toBe('join');
    h.drain(server);
    const before = h.pending(server);
    expect(before).toHaveLength(7);
    // the busiest source itself is refused: it competes with itself
    const self = h.join(server, '10.6.6.6');
    expect(self.kind).toBe('refused');
    expect(server.counters().SubflowLimit).toBe(1);
    // a newcomer from a fresh source evicts 10.6.6.6's oldest (the first join)
    const r = h.join(server, '10.0.0.2');
    expect(r.kind).toBe('join');
    const out = h.drain(server);
    const reset = out.find((t) => t.subflow === before[0]);
    expect(rst(reset)).toMatchObject({ flags: TcpRstFlag.TRANSIENT, reason: TcpRstReason.LACK_OF_RESOURCES });
    expect(reset!.close).toBe('reset');
    expect(out.find((t) => r.kind === 'join' && t.subflow === r.subflow)?.segment.options[0]).toMatchObject({ stage: 'synack' });
    expect(server.counters().MPJoinEvicted).toBe(1);
    expect(h.pending(server)).toEqual([...before.slice(1), (r as { subflow: number }).subflow]);
    // 10.7.7.7 (2) now evicts from 10.6.6.6 (4) too; then 4 vs 3 … until they are even
    expect(h.join(server, '10.7.7.7').kind).toBe('join');
    expect(h.join(server, '10.7.7.7').kind).toBe('refused'); // 10.7.7.7 holds 3, 10.6.6.6 holds 3
    expect(server.counters().MPJoinEvicted).toBe(2);
    expect(h.woken).toHaveLength(0); // the connection that got the join is the caller's to poll
    expect(h.server.pendingJoinCount).toBe(7);
  });

  it('a full endpoint evicts the oldest pending join of the busiest source, on whichever connection, and wakes that connection', () => {
    const h = harness({ maxPendingJoins: 6, maxPendingJoinsPerSource: 4 });
    const a = h.connection('10.0.0.1').server;
    const b = h.connection('10.0.0.2').server;
    const c = h.connection('10.0.0.3').server;
    // 10.6.6.6 holds 4 (a, b, a, b), 10.7.7.7 holds 2 (on c)
    const ids: { conn: Connection; id: number; t: number }[] = [];
    for (const [conn, src] of [[a, '10.6.6.6'], [b, '10.6.6.6'], [c, '10.7.7.7'], [a, '10.6.6.6'], [b, '10.6.6.6'], [c, '10.7.7.7']] as const) {
      h.now += 10;
      const r = h.join(conn, src);
      expect(r.kind).toBe('join');
      ids.push({ conn, id: (r as { subflow: number }).subflow, t: h.now });
    }
    for (const x of [a, b, c]) h.drain(x);
    expect(h.server.pendingJoinCount).toBe(6);
    // 10.7.7.7 (2) cannot evict from itself and the busiest (4) only after it: equal is refused
    h.now += 10;
    expect(h.join(c, '10.7.7.7').kind).toBe('join'); // 2 < 4: evicts 10.6.6.6's oldest, on a
    expect(h.woken).toEqual([a]);
    const outA = h.drain(a);
    expect(rst(outA.find((t) => t.subflow === ids[0].id))).toMatchObject({ flags: TcpRstFlag.TRANSIENT });
    expect(a.counters().MPJoinEvicted).toBe(1);
    expect(h.server.counters().MPJoinEvicted).toBe(1);
    expect(h.server.pendingJoinsBySource()).toEqual(new Map([['10.6.6.6', 3], ['10.7.7.7', 3]]));
    // 3 vs 3: a newcomer from 10.7.7.7 is refused, one from a fresh source evicts the oldest of the tie (10.6.6.6's, on b)
    expect(h.join(c, '10.7.7.7').kind).toBe('refused');
    h.woken.length = 0;
    expect(h.join(a, '10.5.5.5').kind).toBe('join');
    expect(h.woken).toEqual([b]);
    expect(rst(h.drain(b).find((t) => t.subflow === ids[1].id))).toMatchObject({ flags: TcpRstFlag.TRANSIENT });
    expect(h.server.pendingJoinsBySource()).toEqual(new Map([['10.6.6.6', 2], ['10.7.7.7', 3], ['10.5.5.5', 1]]));
    expect(h.server.pendingJoinCount).toBe(6);
    // every connection stays up; the counts match the connections' own view
    for (const x of [a, b, c]) expect(x.state).toBe('established');
    expect(h.pending(a).length + h.pending(b).length + h.pending(c).length).toBe(6);
  });

  it('slots are released when a join completes, fails, expires or its connection closes', () => {
    const h = harness();
    const { server } = h.connection('10.0.0.1');
    h.join(server, '10.6.6.6');
    h.join(server, '10.6.6.6');
    const third = h.join(server, '10.6.6.6');
    expect(h.server.pendingJoinCount).toBe(3);
    // a wrong MP_JOIN ACK: reset, slot freed
    server.handleSegment((third as { subflow: number }).subflow, { options: [{ subtype: 'MP_JOIN', stage: 'ack', hmac: new Uint8Array(20) }] }, h.now);
    expect(h.server.pendingJoinCount).toBe(2);
    // the peer resets one
    server.handleSubflowClosed(h.pending(server)[0], 'reset', h.now);
    expect(h.server.pendingJoinCount).toBe(1);
    expect(h.server.pendingJoinsBySource().get('10.6.6.6')).toBe(1);
    // the connection goes away with one pending
    server.abort(h.now);
    expect(h.server.pendingJoinCount).toBe(0);
    expect(h.server.pendingJoinsBySource().size).toBe(0);
  });
});

describe('pending joins in the simulator (RTT 100 ms)', () => {
  const PATHS = [
    { rateMbps: 20, delayMs: 50 },
    { rateMbps: 20, delayMs: 50 },
    { rateMbps: 20, delayMs: 50 },
  ];

  it("an observer races the client's early join with the victim's token: held slots are fair, the client's join still gets in at once; the attacker's expire", () => {
    // Server keys 30 ms after the third ACK (t ≈ 180), the client's 600 ms
    // after the SYN/ACK (t ≈ 700). The attacker (path 2) read tokenB from the
    // SYN/ACK and fills the held-join slots at t = 110, before the client's
    // early join (path 1, opened at the SYN/ACK, t = 100) arrives at t = 150.
    const sim = new Sim({
      seed: 61,
      paths: PATHS,
      keyDelayMs: { client: 600, server: 30 },
      client: { localAddresses: [{ address: '198.18.0.1' }, { address: '198.18.1.1' }] },
    });
    sim.start({ client: { bytes: 200_000, startAt: 2_500 }, server: { bytes: 200_000, startAt: 2_500 } });
    const rogues: RogueSubflow[] = [];
    let heldAt170 = -1;
    let upAt = -1;
    sim.at(60, () => {
      for (let i = 0; i < 12; i++) {
        const r = sim.openRogueSubflow(2);
        r.send(joinSyn(sim.server!.localToken, 1000 + i));
        rogues.push(r);
      }
    });
    sim.at(170, () => (heldAt170 = sim.server!.subflowInfo().filter((x) => x.state === 'join-held').length));
    for (let t = 300; t < 4_000; t += 10) {
      sim.at(t, () => {
        if (upAt < 0 && sim.client.subflowInfo().filter((x) => x.state === 'established').length === 2) upAt = t;
      });
    }
    sim.run(20_000);
    const sc = sim.server!.counters();
    expect(heldAt170).toBe(4); // maxHeldJoins: 3 of the attacker's and the client's
    expect(sc.MPJoinHeldLimit).toBe(8); // 12 sent, 4 held, 8 refused
    expect(sc.MPJoinEvicted).toBe(1); // the attacker's oldest, for the client's
    expect(sc.MPJoinHeld).toBe(5);
    expect(sc.MPJoinHeldReleased).toBe(4); // answered when the keys came
    const first = (r: RogueSubflow) => r.received[0]?.options[0];
    expect(rogues.filter((r) => first(r)?.subtype === 'MP_TCPRST')).toHaveLength(9);
    // the client's join: one RTT after its keys are confirmed (~700 ms), not after a retry
    expect(sim.client.counters().MPJoinSynAckHeld).toBe(1);
    expect(sim.client.counters().MPJoinSynTx).toBe(1);
    expect(upAt).toBeGreaterThan(700);
    expect(upAt).toBeLessThan(900);
    // the attacker's 3 answered joins expired 1 s after their SYN/ACK (t ≈ 180 + 1 000)
    expect(sc.MPJoinTimeout).toBe(3);
    expect(sim.serverEndpoint.pendingJoinCount).toBe(0);
    for (const r of rogues) {
      const last = r.received.at(-1)?.options[0];
      expect(last).toMatchObject({ subtype: 'MP_TCPRST', flags: TcpRstFlag.TRANSIENT });
      expect(r.closed).toBe('reset');
    }
    const c = sim.report('client');
    const s = sim.report('server');
    expect(c.received).toBe(200_000);
    expect(s.received).toBe(200_000);
    expect(c.receivedSha256).toBe(s.sentSha256);
  });

  it('expiry on the simulated clock: pending for 1 s after the SYN arrived, then gone', () => {
    const sim = new Sim({ seed: 62, paths: PATHS, client: { localAddresses: [{ address: '198.18.0.1' }] } });
    sim.start({ client: { bytes: 1_000, startAt: 2_000 }, server: { bytes: 1_000, startAt: 2_000 } });
    const seen: [number, number][] = [];
    sim.at(500, () => sim.openRogueSubflow(2).send(joinSyn(sim.server!.localToken, 7)));
    for (const t of [540, 560, 1_540, 1_560]) sim.at(t, () => seen.push([t, sim.serverEndpoint.pendingJoinCount]));
    sim.run(5_000);
    // the SYN arrives at 550 (50 ms one way): pending from 550 to 1 550
    expect(seen).toEqual([
      [540, 0],
      [560, 1],
      [1_540, 1],
      [1_560, 0],
    ]);
    expect(sim.server!.counters().MPJoinTimeout).toBe(1);
  });
});
