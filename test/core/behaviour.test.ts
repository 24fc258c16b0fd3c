import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { Sim } from '../support/sim.js';
import { Endpoint } from '../../src/core/endpoint.js';
import type { Segment } from '../../src/core/types.js';

const TWO = [
  { rateMbps: 20, delayMs: 5 },
  { rateMbps: 20, delayMs: 8 },
];

describe('connection behaviour', () => {
  it('half-close: each direction finishes on its own DATA_FIN', () => {
    const sim = new Sim({ seed: 41, paths: TWO });
    // The client closes at once (sends nothing); the server keeps sending, then closes.
    sim.start({ client: { bytes: 0 }, server: { bytes: 1_000_000, startAt: 200 } });
    sim.run(60_000);
    const s = sim.report('server');
    const c = sim.report('client');
    expect(s.dataFin).toBe(true);
    expect(c.received).toBe(1_000_000);
    expect(c.dataFin).toBe(true);
    expect(sim.client.closeReason).toBe('done');
    expect(sim.server!.closeReason).toBe('done');
    // the server received the client's DATA_FIN long before its own data ended
    expect(c.lastByteAt!).toBeGreaterThan(200);
  });

  it('without keys no join completes (the early join is held, then expires); after installKeys both sides confirm and join', () => {
    const sim = new Sim({ seed: 42, paths: TWO, keyDelayMs: { client: 100_000, server: 100_000 } });
    sim.start({ client: { bytes: 100_000 }, server: { bytes: 100_000 } });
    sim.run(3_000);
    expect(sim.client.areKeysConfirmed).toBe(false);
    // G mode: the client opened its join at the SYN/ACK; the server holds it, unanswered
    expect(sim.client.counters().MPJoinSynTx).toBe(1);
    expect(sim.client.subflowInfo().map((s) => s.state)).toEqual(['established', 'join-syn-sent']);
    expect(sim.server!.subflowInfo().map((s) => s.state)).toEqual(['established', 'join-held']);
    expect(sim.server!.counters().MPJoinHeld).toBe(1);
    sim.run(9_000);
    expect(sim.server!.counters().MPJoinHeldTimeout).toBeGreaterThanOrEqual(1);
    expect(sim.server!.counters().MPJoinAckRx).toBe(0);
    expect(sim.client.counters().MPJoinSynAckRx).toBe(0);
    expect(sim.client.subflowInfo().filter((s) => s.state === 'established')).toHaveLength(1);
    const sim2 = new Sim({ seed: 42, paths: TWO, keyDelayMs: { client: 50, server: 80 } });
    sim2.start({ client: { bytes: 2_000_000 }, server: { bytes: 2_000_000 } });
    sim2.run(60_000);
    expect(sim2.client.counters().NewKeyRx).toBe(1);
    expect(sim2.server!.counters().NewKeyRx).toBe(1);
    expect(sim2.client.counters().MPJoinSynTx).toBe(1);
    expect(sim2.server!.counters().MPJoinAckRx).toBe(1);
  });

  it('keys that differ between the sides (a spliced connection) abort with key-mismatch', () => {
    const sim = new Sim({ seed: 43, paths: TWO, keyDelayMs: { client: 10_000, server: 10_000 } });
    sim.start({ client: { bytes: 2_000_000, close: false }, server: { bytes: 2_000_000, close: false } });
    sim.at(100, () => {
      sim.client.installKeys(new Uint8Array(8).fill(1), new Uint8Array(8).fill(2), sim.now);
      sim.server!.installKeys(new Uint8Array(8).fill(1), new Uint8Array(8).fill(3), sim.now);
    });
    sim.run(60_000);
    expect(sim.client.counters().NewKeyHMacFailure + sim.server!.counters().NewKeyHMacFailure).toBeGreaterThan(0);
    expect([sim.client.closeReason, sim.server!.closeReason]).toContain('key-mismatch');
  });

  it('ADD_ADDR (authenticated) makes the client join the announced address; echo returns', () => {
    const sim = new Sim({
      seed: 44,
      paths: TWO,
      joinAllPaths: false,
      server: { announce: [{ address: '198.18.1.2', port: 443 }] },
    });
    sim.start({ client: { bytes: 200_000 }, server: { bytes: 2_000_000 } });
    sim.run(60_000);
    expect(sim.server!.counters().AddAddrTx).toBe(1);
    expect(sim.client.counters().AddAddr).toBe(1);
    expect(sim.server!.counters().EchoAdd).toBe(1);
    const sfs = sim.client.subflowInfo();
    expect(sim.report('client').received).toBe(2_000_000);
    expect(sim.client.counters().MPJoinSynTx).toBe(1);
    expect(sfs.length).toBeLessThanOrEqual(2);
  });

  it('an ADD_ADDR lost with the subflow that carried it is sent again on another one', () => {
    let sim!: Sim;
    let killed = false;
    sim = new Sim({
      seed: 52,
      paths: [...TWO, { rateMbps: 20, delayMs: 5 }],
      client: { localAddresses: [{ address: '198.18.0.1' }, { address: '198.18.1.1' }] },
      observer: (from, key, seg) => {
        if (from === 'server' && !killed && seg.options.some((o) => o.subtype === 'ADD_ADDR' && !o.echo)) {
          killed = true;
          // the path dies with the ADD_ADDR in flight
          sim.at(sim.now, () => sim.resetPath(key === 0 ? 0 : 1));
        }
      },
    });
    sim.start({ client: { bytes: 0 }, server: { bytes: 2_000_000 } });
    // announced once both subflows are up
    sim.at(300, () => sim.server!.announce({ address: '198.18.2.2', port: 443 }));
    sim.run(60_000);
    expect(killed).toBe(true);
    expect(sim.server!.counters().AddAddrTx).toBe(2);
    expect(sim.client.counters().AddAddr).toBe(1);
    expect(sim.server!.counters().EchoAdd).toBe(1);
    expect(sim.client.subflowInfo().some((s) => s.remoteAddress === '198.18.2.2')).toBe(true);
    expect(sim.report('client').received).toBe(2_000_000);
  });

  it('a subflow that died is joined again (after 1 s), and carries data again', () => {
    const sim = new Sim({ seed: 53, paths: TWO });
    sim.start({ client: { bytes: 0 }, server: { bytes: 12_000_000 } });
    sim.at(800, () => sim.resetPath(1));
    sim.run(60_000);
    const c = sim.client;
    expect(c.counters().MPJoinSynTx).toBe(2);
    expect(c.counters().MPJoinSynAckRx).toBe(2);
    const sfs = c.subflowInfo();
    const rejoined = sfs.find((s) => s.id === 2);
    expect(rejoined?.localAddress).toBe('198.18.1.1');
    expect(rejoined!.bytesReceived).toBeGreaterThan(0);
    expect(sim.report('client').receivedSha256).toBe(sim.report('server').sentSha256);
  });

  it('a path that stays dead is retried with backoff, a bounded number of times', () => {
    const sim = new Sim({ seed: 54, paths: TWO });
    // a slow reader keeps the connection busy for well over the 81 s of retries
    sim.start({ client: { bytes: 0, readRateMbps: 1 }, server: { bytes: 20_000_000 } });
    sim.at(300, () => {
      sim.blackholePath(1);
      sim.resetPath(1);
    });
    sim.run(200_000);
    // 1 initial join + 5 re-joins, each timing out (10 s), spaced 1, 2, 4, 8, 16 s
    expect(sim.client.counters().MPJoinSynTx).toBe(6);
    expect(sim.client.counters().MPJoinTimeout).toBe(5);
  });

  it('REMOVE_ADDR closes the subflows to that address, the connection carries on', () => {
    const sim = new Sim({ seed: 45, paths: TWO, joinAllPaths: false, server: { announce: [{ address: '198.18.1.2', port: 443 }] } });
    sim.start({ client: { bytes: 0 }, server: { bytes: 3_000_000 } });
    sim.at(500, () => sim.server!.removeAddress(1));
    sim.run(60_000);
    expect(sim.client.counters().RmAddr).toBe(1);
    expect(sim.client.counters().RmSubflow).toBe(1);
    expect(sim.report('client').received).toBe(3_000_000);
    expect(sim.report('client').receivedSha256).toBe(sim.report('server').sentSha256);
  });

  it('MP_PRIO backup: a backup subflow carries nothing while the active one works', () => {
    const sim = new Sim({ seed: 46, paths: TWO });
    sim.start({ client: { bytes: 0 }, server: { bytes: 3_000_000, startAt: 400 } });
    sim.at(300, () => {
      const join = sim.client.subflowInfo().find((s) => !s.initial)!;
      sim.client.setBackup(join.id, true);
    });
    sim.run(60_000);
    expect(sim.server!.counters().MPPrioRx).toBe(1);
    const server = sim.server!.subflowInfo();
    expect(server.find((s) => !s.initial)!.bytesSent).toBe(0);
    expect(sim.report('client').received).toBe(3_000_000);
  });

  it('MP_PRIO backup takes over when the active path is blackholed', () => {
    const sim = new Sim({ seed: 47, paths: TWO });
    sim.start({ client: { bytes: 0 }, server: { bytes: 3_000_000, startAt: 400 } });
    sim.at(300, () => {
      const join = sim.client.subflowInfo().find((s) => !s.initial)!;
      sim.client.setBackup(join.id, true);
    });
    sim.at(800, () => sim.blackholePath(0));
    sim.run(60_000);
    expect(sim.report('client').received).toBe(3_000_000);
    expect(sim.server!.subflowInfo().find((s) => !s.initial)!.bytesSent).toBeGreaterThan(0);
  });

  it('closing one subflow keeps the connection', () => {
    const sim = new Sim({ seed: 48, paths: TWO });
    sim.start({ client: { bytes: 1_000_000 }, server: { bytes: 3_000_000 } });
    sim.at(600, () => {
      const join = sim.client.subflowInfo().find((s) => !s.initial)!;
      sim.client.closeSubflow(join.id, sim.now);
    });
    sim.run(60_000);
    expect(sim.report('client').received).toBe(3_000_000);
    expect(sim.report('server').received).toBe(1_000_000);
    expect(sim.client.closeReason).toBe('done');
  });

  it('flow control: a slow reader bounds the receive buffer, nothing is lost', () => {
    const limits = { recvBufferLimit: 128 * 1024 };
    const sim = new Sim({ seed: 49, paths: TWO, client: { limits } });
    sim.start({ client: { bytes: 0, readRateMbps: 2 }, server: { bytes: 1_000_000 } });
    sim.run(60_000);
    const c = sim.report('client');
    expect(c.received).toBe(1_000_000);
    expect(c.maxReceiveBuffered).toBeLessThanOrEqual(128 * 1024);
    expect(sim.client.counters().RcvWndExceeded).toBe(0);
  });

  it('the MP_CAPABLE handshake times out when the server never answers', () => {
    const sim = new Sim({ seed: 50, paths: TWO });
    sim.blackholePath(0);
    sim.start({ client: { bytes: 10 } });
    sim.run(60_000);
    expect(sim.client.closeReason).toBe('handshake-timeout');
  });

  it('a client in external mode refuses a server that answers without the G bit', () => {
    const sim = new Sim({
      seed: 51,
      paths: TWO,
      observer: (from, _k, seg) => {
        const o = seg.options[0];
        if (from === 'server' && o?.subtype === 'MP_CAPABLE') return { options: [{ ...o, flags: 0x01, senderToken: undefined, senderKey: new Uint8Array(8) }] };
      },
    });
    sim.start({ client: { bytes: 10 } });
    sim.run(60_000);
    expect(sim.client.closeReason).toBe('mode-mismatch');
    expect(sim.client.counters().MPCapableModeRefused).toBe(1);
  });
});

describe('bad input never throws out of the core', () => {
  const opt = fc.oneof(
    fc.record({ subtype: fc.constant('DSS'), dataFin: fc.boolean(), dataAck: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), dataAckIs64: fc.boolean(), dsn: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), dsnIs64: fc.boolean(), ssn: fc.nat(), dataLevelLength: fc.integer({ min: 0, max: 65535 }) }),
    fc.record({ subtype: fc.constant('MP_JOIN'), stage: fc.constantFrom('syn', 'synack', 'ack'), backup: fc.boolean(), addressId: fc.nat(255), receiverToken: fc.nat(), senderRandom: fc.nat(), truncatedHmac: fc.uint8Array({ minLength: 8, maxLength: 8 }), hmac: fc.uint8Array({ minLength: 20, maxLength: 20 }) }),
    fc.record({ subtype: fc.constant('MP_CAPABLE'), version: fc.nat(15), flags: fc.nat(255), senderToken: fc.option(fc.nat(), { nil: undefined }), receiverToken: fc.option(fc.nat(), { nil: undefined }) }),
    fc.record({ subtype: fc.constant('ADD_ADDR'), echo: fc.boolean(), addressId: fc.nat(255), address: fc.constantFrom('198.18.5.5', '2001:db8::1'), truncatedHmac: fc.uint8Array({ minLength: 8, maxLength: 8 }) }),
    fc.record({ subtype: fc.constant('REMOVE_ADDR'), addressIds: fc.array(fc.nat(255), { minLength: 1, maxLength: 4 }) }),
    fc.record({ subtype: fc.constant('MP_PRIO'), backup: fc.boolean() }),
    fc.record({ subtype: fc.constant('MP_FAIL'), dsn: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
    fc.record({ subtype: fc.constant('MP_FASTCLOSE'), receiverKey: fc.uint8Array({ minLength: 8, maxLength: 8 }) }),
    fc.record({ subtype: fc.constant('NEW_KEY'), keyId: fc.constantFrom(0, 1), hmac: fc.uint8Array({ minLength: 8, maxLength: 8 }) }),
  );
  const segArb = fc.record({
    options: fc.array(opt, { maxLength: 3 }),
    payload: fc.option(fc.uint8Array({ maxLength: 64 }), { nil: undefined }),
    window: fc.option(fc.nat(), { nil: undefined }),
    ack: fc.option(fc.nat(), { nil: undefined }),
  }) as fc.Arbitrary<Segment>;

  it('random segments into the server endpoint and into live connections', () => {
    fc.assert(
      fc.property(fc.array(segArb, { minLength: 1, maxLength: 12 }), (segs) => {
        const sim = new Sim({ seed: 60, paths: TWO });
        sim.start({ client: { bytes: 50_000 }, server: { bytes: 50_000 } });
        sim.run(100); // established, keys installed
        const ep = new Endpoint();
        for (const s of segs) {
          expect(() => ep.handleNewSubflow(s, {}, sim.now)).not.toThrow();
          expect(() => sim.client.handleSegment(0, s, sim.now)).not.toThrow();
          expect(() => sim.server!.handleSegment(0, s, sim.now)).not.toThrow();
        }
        expect(() => sim.run(60_000)).not.toThrow();
        // whatever happened, the core stayed consistent: closed with a reason, or intact
        for (const c of [sim.client, sim.server!]) {
          if (c.state === 'closed') expect(c.closeReason).toBeDefined();
        }
      }),
      { numRuns: 200, seed: 7 },
    );
  });
});
