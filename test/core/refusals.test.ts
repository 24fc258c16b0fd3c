import { describe, it, expect } from 'vitest';
import { Sim, type RogueSubflow } from '../support/sim.js';
import { useTestSeed } from '../support/random.js';
import type { Segment } from '../../src/core/types.js';
import type { MptcpOption } from '../../src/wire/types.js';
import { joinAckHmac, tokenFromKey } from '../../src/crypto/index.js';

const TWO_PATHS = [
  { rateMbps: 20, delayMs: 5 },
  { rateMbps: 20, delayMs: 5 },
];
const BYTES = 2_000_000;

const rng = useTestSeed(0x7ef05a15);
function rand32(): number {
  return rng.u32();
}
function bytes(n: number): Uint8Array {
  return rng.bytes(n);
}
function joinSyn(token: number, senderRandom = rand32()): Segment {
  return { options: [{ subtype: 'MP_JOIN', stage: 'syn', backup: false, addressId: 5, receiverToken: token, senderRandom }] };
}
function firstOption(r: RogueSubflow): MptcpOption | undefined {
  return r.received[0]?.options[0];
}

/** The legitimate transfer each attack runs beside: it must complete intact. */
function expectIntact(sim: Sim) {
  const c = sim.report('client');
  const s = sim.report('server');
  expect(c.received).toBe(BYTES);
  expect(c.receivedSha256).toBe(s.sentSha256);
  expect(s.received).toBe(BYTES);
  expect(s.receivedSha256).toBe(c.sentSha256);
}

describe('refusals: each attack refused, counted, and the connection untouched', () => {
  it("an observer's early join (the victim's token, before the keys) is held, answered once the keys are installed, and cannot complete without them", () => {
    const sim = new Sim({ seed: 21, paths: TWO_PATHS, keyDelayMs: { client: 400, server: 400 } });
    sim.start({ client: { bytes: BYTES }, server: { bytes: BYTES } });
    let rogue!: RogueSubflow;
    let heldAt300: string[] = [];
    sim.at(100, () => {
      rogue = sim.openRogueSubflow(1);
      rogue.send(joinSyn(sim.server!.localToken));
    });
    sim.at(300, () => {
      heldAt300 = sim.server!.subflowInfo().map((x) => x.state);
    });
    // it answers the SYN/ACK with an HMAC it cannot compute
    sim.at(450, () => rogue.send({ options: [{ subtype: 'MP_JOIN', stage: 'ack', hmac: bytes(20) }] }));
    sim.run(120_000);
    expect(heldAt300.filter((x) => x === 'join-held')).toHaveLength(2); // the client's own early join and the observer's
    expect(firstOption(rogue)).toMatchObject({ subtype: 'MP_JOIN', stage: 'synack' });
    expect(rogue.received.at(-1)?.options[0]).toMatchObject({ subtype: 'MP_TCPRST', reason: 1 });
    expect(rogue.closed).toBe('reset');
    const sc = sim.serverEndpoint.counters();
    expect(sc.MPJoinHeld).toBe(2);
    expect(sc.MPJoinHeldReleased).toBe(2);
    expect(sc.MPJoinAckHMacFailure).toBe(1);
    expect(sc.MPJoinAckRx).toBe(2); // the client's and the observer's; only the client's verified
    expectIntact(sim);
  });

  it('an unknown token is refused (MPJoinNoTokenFound)', () => {
    const sim = new Sim({ seed: 22, paths: TWO_PATHS });
    sim.start({ client: { bytes: BYTES }, server: { bytes: BYTES } });
    let rogue!: RogueSubflow;
    sim.at(300, () => {
      rogue = sim.openRogueSubflow(1);
      let t = rand32();
      while (t === sim.server!.localToken) t = rand32();
      rogue.send(joinSyn(t));
    });
    sim.run(120_000);
    expect(firstOption(rogue)).toMatchObject({ subtype: 'MP_TCPRST' });
    expect(sim.serverEndpoint.counters().MPJoinNoTokenFound).toBe(1);
    expectIntact(sim);
  });

  it('a wrong HMAC-A in the MP_JOIN ACK is refused (MPJoinAckHMacFailure)', () => {
    const sim = new Sim({ seed: 23, paths: TWO_PATHS });
    sim.start({ client: { bytes: BYTES }, server: { bytes: BYTES } });
    let rogue!: RogueSubflow;
    sim.at(300, () => {
      rogue = sim.openRogueSubflow(1);
      rogue.send(joinSyn(sim.server!.localToken));
    });
    sim.at(400, () => {
      expect(firstOption(rogue)).toMatchObject({ subtype: 'MP_JOIN', stage: 'synack' });
      rogue.send({ options: [{ subtype: 'MP_JOIN', stage: 'ack', hmac: bytes(20) }] });
    });
    sim.run(120_000);
    expect(rogue.received.at(-1)?.options[0]).toMatchObject({ subtype: 'MP_TCPRST' });
    expect(sim.server!.counters().MPJoinAckHMacFailure).toBe(1);
    expect(sim.server!.subflowInfo().filter((s) => s.state === 'established' || s.state === 'closed').length).toBeGreaterThan(0);
    expectIntact(sim);
  });

  it('a wrong truncated HMAC-B in the MP_JOIN SYN/ACK is refused by the client (MPJoinSynAckHMacFailure)', () => {
    let tampered = 0;
    const sim = new Sim({
      seed: 24,
      paths: TWO_PATHS,
      observer: (from, _k, seg) => {
        const o = seg.options[0];
        if (from === 'server' && o?.subtype === 'MP_JOIN' && o.stage === 'synack' && tampered === 0) {
          tampered++;
          const bad = o.truncatedHmac.slice();
          bad[0] ^= 1;
          return { ...seg, options: [{ ...o, truncatedHmac: bad }] };
        }
      },
    });
    sim.start({ client: { bytes: BYTES }, server: { bytes: BYTES } });
    sim.run(120_000);
    expect(tampered).toBe(1);
    expect(sim.client.counters().MPJoinSynAckHMacFailure).toBe(1);
    expectIntact(sim);
  });

  it('a forged ADD_ADDR is dropped (AddAddrHMacFailure) and opens nothing', () => {
    const sim = new Sim({ seed: 25, paths: TWO_PATHS });
    sim.start({ client: { bytes: BYTES }, server: { bytes: BYTES } });
    const opens: number[] = [];
    sim.at(300, () => {
      const before = sim.client.subflowInfo().length;
      sim.client.handleSegment(0, { options: [{ subtype: 'ADD_ADDR', echo: false, addressId: 9, address: '198.18.9.2', port: 443, truncatedHmac: bytes(8) }] }, sim.now);
      opens.push(sim.client.subflowInfo().length - before);
    });
    sim.run(120_000);
    expect(opens).toEqual([0]);
    expect(sim.client.counters().AddAddrHMacFailure).toBe(1);
    expect(sim.client.counters().AddAddrDrop).toBe(1);
    expect(sim.client.counters().AddAddr).toBe(0);
    expectIntact(sim);
  });

  it('a forged MP_FASTCLOSE is ignored (MPFastcloseBadKey); a real one closes', () => {
    const sim = new Sim({ seed: 26, paths: TWO_PATHS });
    sim.start({ client: { bytes: BYTES }, server: { bytes: BYTES } });
    sim.at(300, () => {
      sim.client.handleSegment(0, { options: [{ subtype: 'MP_FASTCLOSE', receiverKey: bytes(8) }] }, sim.now);
    });
    sim.run(120_000);
    expect(sim.client.counters().MPFastcloseBadKey).toBe(1);
    expectIntact(sim);

    const sim2 = new Sim({ seed: 27, paths: TWO_PATHS });
    sim2.start({ client: { bytes: BYTES }, server: { bytes: BYTES } });
    sim2.at(300, () => sim2.server!.abort(sim2.now));
    sim2.run(120_000);
    expect(sim2.client.closeReason).toBe('fastclose');
    expect(sim2.client.counters().MPFastcloseRx).toBe(1);
    expect(sim2.server!.closeReason).toBe('aborted');
  });
});

describe('the weakness the seed fixes: an observer of the handshake joins', () => {
  /** Records MP_CAPABLE options, then joins with what it saw. */
  function observerAttack(mode: 'rfc8684' | 'external') {
    const seen: MptcpOption[] = [];
    const sim = new Sim({
      seed: 31,
      paths: TWO_PATHS,
      mode,
      observer: (_from, _k, seg) => {
        for (const o of seg.options) if (o.subtype === 'MP_CAPABLE') seen.push(o);
      },
    });
    sim.start({ client: { bytes: BYTES }, server: { bytes: BYTES } });
    let rogue!: RogueSubflow;
    const randA = rand32();
    let keyA: Uint8Array | undefined;
    let keyB: Uint8Array | undefined;
    let token: number | undefined;
    sim.at(300, () => {
      const ack = seen.find((o) => o.subtype === 'MP_CAPABLE' && o.receiverKey) as Extract<MptcpOption, { subtype: 'MP_CAPABLE' }> | undefined;
      const synack = seen.find((o) => o.subtype === 'MP_CAPABLE' && (o.senderKey || o.senderToken !== undefined) && !o.receiverKey && o.receiverToken === undefined) as
        | Extract<MptcpOption, { subtype: 'MP_CAPABLE' }>
        | undefined;
      keyA = ack?.senderKey;
      keyB = synack?.senderKey;
      // What the wire shows: the server's key (rfc8684) or its token (external).
      token = keyB ? tokenFromKey(keyB) : synack?.senderToken;
      rogue = sim.openRogueSubflow(1);
      rogue.send(joinSyn(token!, randA));
    });
    sim.at(400, () => {
      const synack = firstOption(rogue);
      if (synack?.subtype !== 'MP_JOIN' || synack.stage !== 'synack') return;
      // With the keys in clear the HMAC is computable; without, guess.
      const hmac = keyA && keyB ? joinAckHmac(keyA, keyB, randA, synack.senderRandom) : bytes(20);
      rogue.send({ options: [{ subtype: 'MP_JOIN', stage: 'ack', hmac }] });
    });
    sim.run(120_000);
    return { sim, rogue, keyA, keyB, token };
  }

  it('rfc8684 mode: keys in clear, the observer computes HMAC-A and its subflow is accepted', () => {
    const { sim, rogue, keyA, keyB } = observerAttack('rfc8684');
    expect(keyA).toBeDefined();
    expect(keyB).toBeDefined();
    // The server completed the join: its "fourth ACK" (a DSS) came back, no reset.
    expect(rogue.received.some((s) => s.options.some((o) => o.subtype === 'DSS'))).toBe(true);
    expect(rogue.closed).toBeUndefined();
    expect(sim.server!.counters().MPJoinAckHMacFailure).toBe(0);
    expect(sim.server!.counters().MPJoinAckRx).toBeGreaterThanOrEqual(2);
  });

  it('external mode: the observer sees only tokens, its join is refused and counted', () => {
    const { sim, rogue, keyA, keyB, token } = observerAttack('external');
    expect(keyA).toBeUndefined();
    expect(keyB).toBeUndefined();
    expect(token).toBe(sim.server!.localToken);
    expect(rogue.closed).toBe('reset');
    expect(rogue.received.at(-1)?.options[0]).toMatchObject({ subtype: 'MP_TCPRST' });
    expect(sim.server!.counters().MPJoinAckHMacFailure).toBe(1);
    expectIntact(sim);
  });
});
