/**
 * Issue 13: connections that outlive their paths, on virtual time. A
 * connection that loses every subflow is parked for resumeTimeoutMs (30 s)
 * and the client re-joins at once, then every ≤ 1 s, from every local
 * address, until a join completes; the byte streams stay exact.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { Sim, type PathSpec } from '../support/sim.js';

const TWO: PathSpec[] = [
  { rateMbps: 50, delayMs: 10 },
  { rateMbps: 50, delayMs: 10 },
];
const MB = 1_000_000;

function sim2(opts: Partial<ConstructorParameters<typeof Sim>[0]> = {}): Sim {
  return new Sim({ seed: 13, paths: TWO, trace: () => {}, ...opts } as ConstructorParameters<typeof Sim>[0]);
}

describe('outliving paths (simulator)', () => {
  it('every subflow reset mid-transfer: parked, resumed at once, both streams intact', () => {
    const sim = sim2();
    sim.start({ client: { bytes: 20 * MB }, server: { bytes: 20 * MB } });
    sim.at(1000, () => {
      sim.resetPath(0);
      sim.resetPath(1);
    });
    sim.run(120_000);
    const c = sim.report('client');
    const s = sim.report('server');
    expect(sim.complete).toBe(true);
    expect(c.received).toBe(20 * MB);
    expect(s.received).toBe(20 * MB);
    expect(c.receivedSha256).toBe(sim.prefixSha256(c.received));
    expect(sim.client.counters().ConnParked).toBe(1);
    expect(sim.client.counters().ConnResumed).toBe(1);
    expect(sim.server!.counters().ConnResumed).toBe(1);
    expect(sim.client.closeReason).toBe('done');
    // The outage costs about a join's round trips, not a timeout.
    expect(Math.max(c.maxGapMs, s.maxGapMs)).toBeLessThan(500);
  });

  it('every path down for 5 s, then back: resumed within a second of the paths coming back', () => {
    const sim = sim2();
    sim.start({ client: { bytes: 20 * MB }, server: { bytes: 0 } });
    sim.at(1000, () => {
      sim.pathDown(0);
      sim.pathDown(1);
    });
    sim.at(6000, () => {
      sim.pathUp(0);
      sim.pathUp(1);
    });
    sim.run(120_000);
    const s = sim.report('server');
    expect(s.received).toBe(20 * MB);
    expect(s.receivedSha256).toBe(sim.prefixSha256(s.received));
    expect(sim.client.closeReason).toBe('done');
    expect(s.maxGapMs).toBeGreaterThan(4900);
    expect(s.maxGapMs).toBeLessThan(5000 + 1200);
    expect(sim.client.counters().ConnResumed).toBe(1);
  });

  it('every path blackholed for 5 s, then back: nothing lost, the transfer goes on within a second', () => {
    const sim = sim2();
    sim.start({ client: { bytes: 30 * MB }, server: { bytes: 0 } });
    sim.at(1000, () => {
      sim.blackholePath(0);
      sim.blackholePath(1);
    });
    sim.at(6000, () => {
      sim.unblackholePath(0);
      sim.unblackholePath(1);
    });
    sim.run(120_000);
    const s = sim.report('server');
    expect(s.received).toBe(30 * MB);
    expect(s.receivedSha256).toBe(sim.prefixSha256(s.received));
    expect(sim.client.closeReason).toBe('done');
    expect(s.maxGapMs).toBeGreaterThan(4900);
    expect(s.maxGapMs).toBeLessThan(5000 + 1000);
    // Every subflow went stale: the client looked for new paths meanwhile (break-before-make).
    expect(sim.client.counters().SubflowStale).toBeGreaterThanOrEqual(2);
    expect(sim.client.counters().MPJoinSynTx).toBeGreaterThan(1);
  });

  it('the only address removed, a new one 1 s later: the connection moves (mobility)', () => {
    const sim = sim2({ joinAllPaths: false });
    sim.start({ client: { bytes: 20 * MB }, server: { bytes: 0 } });
    sim.at(1000, () => sim.client.removeLocalAddress(sim.paths[0].clientAddress, sim.now));
    sim.at(1000, () => expect(sim.client.pathState).toBe('parked'));
    sim.at(2000, () => sim.client.addLocalAddress(sim.paths[1].clientAddress, false, sim.now));
    sim.run(120_000);
    const s = sim.report('server');
    expect(s.received).toBe(20 * MB);
    expect(s.receivedSha256).toBe(sim.prefixSha256(s.received));
    expect(sim.client.pathState).toBe('active');
    expect(s.maxGapMs).toBeLessThan(1000 + 300);
    expect(sim.client.subflowInfo().every((sf) => sf.localAddress === sim.paths[1].clientAddress)).toBe(true);
  });

  it('resume after 29 s succeeds; after 31 s the connection closes with resume-timeout on both ends', () => {
    for (const [outage, ok] of [
      [29_000, true],
      [31_000, false],
    ] as const) {
      const sim = sim2();
      sim.start({ client: { bytes: 4 * MB, startAt: 0 }, server: { bytes: 4 * MB } });
      sim.at(100, () => {
        sim.pathDown(0);
        sim.pathDown(1);
      });
      sim.at(100 + outage, () => {
        sim.pathUp(0);
        sim.pathUp(1);
      });
      sim.run(200_000);
      if (ok) {
        expect(sim.complete, `outage ${outage}`).toBe(true);
        expect(sim.report('server').received).toBe(4 * MB);
        expect(sim.client.counters().ConnResumed).toBe(1);
        expect(sim.client.closeReason).toBe('done');
      } else {
        expect(sim.client.closeReason, `outage ${outage}`).toBe('resume-timeout');
        expect(sim.server!.closeReason).toBe('resume-timeout');
        expect(sim.client.counters().ConnResumeTimeout).toBe(1);
        expect(sim.server!.counters().ConnResumeTimeout).toBe(1);
        expect(sim.serverEndpoint.parkedCount).toBe(0);
      }
    }
  });

  it('resumeTimeoutMs 0 keeps the old behaviour: the connection closes at once (no-subflows)', () => {
    const sim = sim2({ client: { timers: { resumeTimeoutMs: 0 } }, server: { timers: { resumeTimeoutMs: 0 } } });
    sim.start({ client: { bytes: 20 * MB }, server: { bytes: 0 } });
    sim.at(1000, () => {
      sim.resetPath(0);
      sim.resetPath(1);
    });
    sim.run(60_000);
    expect(sim.client.closeReason).toBe('no-subflows');
    expect(sim.client.counters().ConnParked).toBe(0);
  });

  it('pathState: active, parked, active again', () => {
    const sim = new Sim({ seed: 14, paths: TWO, trace: () => {} } as ConstructorParameters<typeof Sim>[0]);
    const seen: string[] = [];
    sim.start({ client: { bytes: 20 * MB }, server: { bytes: 0 } });
    sim.at(800, () => {
      sim.resetPath(0);
      sim.resetPath(1);
    });
    for (let t = 700; t < 2000; t += 5) sim.at(t, () => seen.push(sim.client.pathState));
    sim.run(60_000);
    const squeezed = seen.filter((v, i) => i === 0 || v !== seen[i - 1]);
    expect(squeezed).toEqual(['active', 'parked', 'active']);
  });

  it('an observer with the token cannot resume a parked connection (its join fails the HMAC); the rightful client does', () => {
    const sim = sim2();
    sim.start({ client: { bytes: 40 * MB }, server: { bytes: 0 } });
    let rogueReplies: string[] = [];
    sim.at(1000, () => {
      // The client's paths go away; the server parks the connection.
      sim.pathDown(0);
      sim.pathDown(1);
    });
    sim.at(1100, () => {
      expect(sim.server!.pathState).toBe('parked');
      const rogue = sim.openRogueSubflow(0);
      rogue.send({ options: [{ subtype: 'MP_JOIN', stage: 'syn', backup: false, addressId: 7, receiverToken: sim.server!.localToken, senderRandom: 0x1234 }] });
      sim.at(1200, () => {
        // SYN/ACK came back (the HMAC is checked at the ACK): send a made-up HMAC-A.
        rogue.send({ options: [{ subtype: 'MP_JOIN', stage: 'ack', hmac: new Uint8Array(20) }] });
      });
      sim.at(1400, () => {
        rogueReplies = rogue.received.flatMap((s) => s.options.map((o) => o.subtype + ('stage' in o ? `:${o.stage}` : '')));
        expect(sim.server!.pathState).toBe('parked');
        sim.pathUp(0);
        sim.pathUp(1);
      });
    });
    sim.run(120_000);
    expect(rogueReplies).toEqual(['MP_JOIN:synack', 'MP_TCPRST']);
    expect(sim.server!.counters().MPJoinAckHMacFailure).toBe(1);
    expect(sim.server!.counters().ConnResumed).toBe(1);
    expect(sim.report('server').received).toBe(40 * MB);
  });

  it('announced address ids are never reused after a withdrawal; one withdrawn while parked is sent on resume', () => {
    const sim = sim2();
    sim.start({ client: { bytes: 40 * MB }, server: { bytes: 0 } });
    const ids: (number | undefined)[] = [];
    sim.at(300, () => {
      ids.push(sim.server!.announce({ address: '198.51.100.1' }), sim.server!.announce({ address: '198.51.100.2' }));
      sim.server!.removeAddress(ids[0]!);
      ids.push(sim.server!.announce({ address: '198.51.100.3' }));
    });
    sim.at(1000, () => {
      sim.pathDown(0);
      sim.pathDown(1);
    });
    sim.at(1100, () => {
      expect(sim.server!.pathState).toBe('parked');
      sim.server!.removeAddress(ids[1]!);
    });
    sim.at(2000, () => {
      sim.pathUp(0);
      sim.pathUp(1);
    });
    sim.run(120_000);
    expect(ids).toEqual([1, 2, 3]);
    expect(sim.server!.counters().RmAddrTx).toBe(2);
    expect(sim.client.counters().RmAddr + sim.client.counters().RmAddrDrop).toBe(2);
    expect(sim.report('server').received).toBe(40 * MB);
  });

  it('a flood of bad resume attempts neither resumes a parked connection nor keeps it alive past resumeTimeoutMs', () => {
    const sim = sim2();
    sim.start({ client: { bytes: 40 * MB }, server: { bytes: 0 } });
    sim.at(500, () => {
      sim.pathDown(0);
      sim.pathDown(1);
    });
    let tries = 0;
    for (let t = 600; t < 40_000; t += 50) {
      sim.at(t, () => {
        if (sim.server!.state === 'closed') return;
        tries++;
        const rogue = sim.openRogueSubflow(0);
        rogue.send({ options: [{ subtype: 'MP_JOIN', stage: 'syn', backup: false, addressId: 9, receiverToken: sim.server!.localToken, senderRandom: tries }] });
        sim.at(sim.now + 25, () => rogue.send({ options: [{ subtype: 'MP_JOIN', stage: 'ack', hmac: new Uint8Array(20).fill(tries & 0xff) }] }));
      });
    }
    sim.run(120_000);
    expect(tries).toBeGreaterThan(500);
    expect(sim.server!.closeReason).toBe('resume-timeout');
    expect(sim.server!.counters().ConnResumed).toBe(0);
    expect(sim.server!.counters().MPJoinAckHMacFailure).toBeGreaterThan(500);
    expect(sim.serverEndpoint.pendingJoinCount).toBe(0);
    expect(sim.serverEndpoint.parkedCount).toBe(0);
  });

  it('backup semantics: the backup takes over when the last regular subflow dies, and gives the traffic back when it returns', () => {
    const sim = new Sim({
      seed: 15,
      paths: TWO,
      trace: () => {},
      client: { localAddresses: [{ address: '10.0.0.1' }, { address: '10.0.1.1', backup: true }] },
    } as ConstructorParameters<typeof Sim>[0]);
    sim.paths[0].clientAddress = '10.0.0.1';
    sim.paths[1].clientAddress = '10.0.1.1';
    sim.start({ client: { bytes: 60 * MB }, server: { bytes: 0 } });
    const sent = () => {
      const by = { regular: 0, backup: 0 };
      for (const sf of sim.client.subflowInfo()) by[sf.localAddress === '10.0.1.1' ? 'backup' : 'regular'] += sf.bytesSent;
      return by;
    };
    const at: Record<string, { regular: number; backup: number }> = {};
    sim.at(900, () => (at.before = sent()));
    sim.at(1000, () => sim.resetPath(0));
    sim.at(1900, () => (at.during = sent()));
    sim.at(4000, () => (at.back0 = sent()));
    sim.at(5000, () => (at.back1 = sent()));
    sim.run(120_000);
    expect(sim.report('server').received).toBe(60 * MB);
    // Before: the backup carries (almost) nothing.
    expect(at.before.backup).toBeLessThan(0.02 * at.before.regular);
    // While the regular path is gone the backup carries the traffic…
    expect(at.during.backup).toBeGreaterThan(2 * MB);
    // …and once the regular one is joined again (the path manager re-joins after 1 s) it gets it back.
    expect(at.back1.backup - at.back0.backup).toBeLessThan(0.05 * (at.back1.regular - at.back0.regular));
    expect(sim.client.counters().ConnParked).toBe(0);
  });

  it('property: random outage schedules keep both streams exact, never deadlock, stay within buffers', () => {
    const outage = fc.record({ at: fc.integer({ min: 100, max: 4000 }), kind: fc.constantFrom('reset', 'down', 'blackhole'), path: fc.nat(2), lengthMs: fc.integer({ min: 0, max: 8000 }) });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.array(outage, { maxLength: 5 }), fc.integer({ min: 0, max: 3 * MB }), (seed, outages, bytes) => {
        const sim = new Sim({ seed, paths: TWO, trace: () => {} } as ConstructorParameters<typeof Sim>[0]);
        sim.start({ client: { bytes }, server: { bytes: Math.floor(bytes / 2) } });
        for (const o of outages) {
          const p = o.path % 2;
          sim.at(o.at, () => (o.kind === 'reset' ? sim.resetPath(p) : o.kind === 'down' ? sim.pathDown(p) : sim.blackholePath(p)));
          if (o.kind === 'down') sim.at(o.at + o.lengthMs, () => sim.pathUp(p));
          if (o.kind === 'blackhole') sim.at(o.at + o.lengthMs, () => sim.unblackholePath(p));
        }
        const r = sim.run(300_000);
        expect(r.timedOut).toBe(false);
        const c = sim.report('client');
        const s = sim.report('server');
        expect(s.receivedSha256).toBe(sim.prefixSha256(s.received));
        expect(c.receivedSha256).toBe(sim.prefixSha256(c.received));
        expect(c.maxReceiveBuffered).toBeLessThanOrEqual(4 * 1024 * 1024);
        expect(s.maxReceiveBuffered).toBeLessThanOrEqual(4 * 1024 * 1024);
        // Every outage here ends within 12 s, well inside resumeTimeoutMs: always complete.
        expect(sim.complete).toBe(true);
        expect(s.received).toBe(bytes);
        expect(c.received).toBe(Math.floor(bytes / 2));
      }),
      { numRuns: Number(process.env.PROP_RUNS ?? 150), seed: Number(process.env.PROP_SEED ?? 20261201) },
    );
  });
});
