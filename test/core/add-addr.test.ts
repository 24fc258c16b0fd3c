/**
 * Issue 11 §5: what a client does with authenticated ADD_ADDRs from a
 * malicious server. The address policy (src/core/address-policy.ts), the cap
 * on failed joins per announced address, and echo-once-per-id, on the
 * simulator (virtual time).
 */
import { describe, it, expect } from 'vitest';
import { Sim } from '../support/sim.js';
import { keysForTesting } from '../../src/core/connection/index.js';
import { addAddrHmac } from '../../src/crypto/index.js';
import { applyAddAddrPolicy, checkAnnouncedAddress, classifyAddress } from '../../src/core/address-policy.js';
import type { Segment } from '../../src/core/types.js';

const TWO = [
  { rateMbps: 20, delayMs: 5 },
  { rateMbps: 20, delayMs: 8 },
];
const THREE = [...TWO, { rateMbps: 20, delayMs: 6 }];

/** An ADD_ADDR the server's keys authenticate (what a malicious server can send at will). */
function authenticAddAddr(sim: Sim, addressId: number, address: string, port?: number): Segment {
  const k = keysForTesting(sim.server!);
  const truncatedHmac = addAddrHmac(k.localKey!, k.remoteKey!, addressId, address, port);
  return { options: [{ subtype: 'ADD_ADDR', echo: false, addressId, address, port, truncatedHmac }] };
}

function establishedClientSubflow(sim: Sim): number {
  return sim.client.subflowInfo().find((s) => s.state === 'established')!.id;
}

describe('the default ADD_ADDR policy (pure function)', () => {
  const v4 = { address: '198.18.0.2', port: 443 };
  const lo = { address: '127.0.0.1', port: 443 };
  const v6 = { address: '2001:db8::2', port: 443 };
  const cases: [string, { address: string; port?: number }, { address: string; port?: number }, boolean][] = [
    ['another global IPv4 address, the server\'s port', { address: '198.18.1.2', port: 443 }, v4, true],
    ['no port in the announcement = the server\'s', { address: '198.18.1.2' }, v4, true],
    ['0.0.0.0', { address: '0.0.0.0', port: 443 }, v4, false],
    ['0.1.2.3 (this network)', { address: '0.1.2.3', port: 443 }, v4, false],
    ['224.0.0.1', { address: '224.0.0.1', port: 443 }, v4, false],
    ['239.255.255.250', { address: '239.255.255.250', port: 443 }, v4, false],
    ['255.255.255.255', { address: '255.255.255.255', port: 443 }, v4, false],
    ['240.0.0.1 (reserved)', { address: '240.0.0.1', port: 443 }, v4, false],
    ['IPv6 to an IPv4 connection', { address: '2001:db8::1', port: 443 }, v4, false],
    ['::1 to an IPv4 connection', { address: '::1', port: 443 }, v4, false],
    ['IPv4 to an IPv6 connection', { address: '198.18.1.2', port: 443 }, v6, false],
    ['IPv4-mapped on an IPv4 connection', { address: '::ffff:198.18.1.2', port: 443 }, v4, true],
    ['IPv4-mapped loopback from a global server', { address: '::ffff:127.0.0.1', port: 443 }, v4, false],
    [':: (unspecified)', { address: '::', port: 443 }, v6, false],
    ['ff02::1 (multicast)', { address: 'ff02::1', port: 443 }, v6, false],
    ['another global IPv6 address', { address: '2001:db8::7', port: 443 }, v6, true],
    ['loopback from a global server', { address: '127.0.0.1', port: 443 }, v4, false],
    ['::1 from a global IPv6 server', { address: '::1', port: 443 }, v6, false],
    ['link-local 169.254.169.254 from a global server', { address: '169.254.169.254', port: 443 }, v4, false],
    ['fe80::1 from a global server', { address: 'fe80::1', port: 443 }, v6, false],
    ['link-local from a link-local server', { address: '169.254.3.4', port: 443 }, { address: '169.254.1.1', port: 443 }, true],
    ['another port', { address: '198.18.1.2', port: 8443 }, v4, false],
    ['loopback from a loopback server', { address: '127.0.0.2', port: 443 }, lo, true],
    ['non-loopback from a loopback server', { address: '192.0.2.1', port: 443 }, lo, false],
    ['::1 from an IPv6 loopback server', { address: '::1', port: 443 }, { address: '::1', port: 443 }, true],
    ['127.0.0.2 from "localhost"', { address: '127.0.0.2', port: 443 }, { address: 'localhost', port: 443 }, true],
    ['::1 from "localhost" (either family)', { address: '::1', port: 443 }, { address: 'localhost', port: 443 }, true],
    ['a global address from "localhost"', { address: '198.18.1.2', port: 443 }, { address: 'localhost', port: 443 }, false],
    ['loopback from a host name', { address: '127.0.0.1', port: 443 }, { address: 'example.com', port: 443 }, false],
    ['IPv6 from a host name (may be dual-stack)', { address: '2001:db8::1', port: 443 }, { address: 'example.com', port: 443 }, true],
    ['not an IP address', { address: 'example.com', port: 443 }, v4, false],
  ];
  for (const [name, announced, server, ok] of cases) {
    it(`${ok ? 'joins' : 'refuses'}: ${name}`, () => {
      const why = checkAnnouncedAddress(announced, server);
      if (ok) expect(why).toBeUndefined();
      else expect(why).toMatch(/./);
    });
  }

  it('allowAnnouncedPorts lets another port through, nothing else', () => {
    expect(checkAnnouncedAddress({ address: '198.18.1.2', port: 8443 }, v4, { allowAnnouncedPorts: true })).toBeUndefined();
    expect(checkAnnouncedAddress({ address: '0.0.0.0', port: 8443 }, v4, { allowAnnouncedPorts: true })).toBe('unspecified');
  });

  it("'any', a custom function, and one that throws", () => {
    expect(applyAddAddrPolicy('any', { address: '0.0.0.0', port: 1 }, v4)).toBeUndefined();
    expect(applyAddAddrPolicy((a) => a.address.startsWith('198.18.'), { address: '198.18.9.9', port: 1 }, v4)).toBeUndefined();
    expect(applyAddAddrPolicy((a) => a.address.startsWith('198.18.'), { address: '10.0.0.1', port: 443 }, v4)).toMatch(/policy/);
    expect(
      applyAddAddrPolicy(
        () => {
          throw new Error('boom');
        },
        { address: '198.18.1.2', port: 443 },
        v4,
      ),
    ).toMatch(/threw/);
    expect(classifyAddress('not-an-ip')).toBeNull();
  });
});

describe('ADD_ADDR from a malicious server (simulated)', () => {
  const BAD = [
    { address: '0.0.0.0', port: 443 },
    { address: '224.0.0.1', port: 443 },
    { address: '255.255.255.255', port: 443 },
    { address: '::1', port: 443 },
    { address: '2001:db8::1', port: 443 },
    { address: '127.0.0.1', port: 443 },
    { address: '169.254.169.254', port: 443 },
    { address: '198.18.1.2', port: 8080 },
  ];
  const GOOD = { address: '198.18.1.2', port: 443 };

  it('the client joins only the announcement within the policy; every one is echoed and counted', () => {
    const sim = new Sim({ seed: 61, paths: TWO, joinAllPaths: false });
    sim.start({ client: { bytes: 200_000 }, server: { bytes: 2_000_000 } });
    sim.at(300, () => {
      for (const a of [...BAD, GOOD]) expect(sim.server!.announce(a)).toBeGreaterThan(0);
    });
    sim.run(60_000);
    const c = sim.client.counters();
    expect(c.AddAddr).toBe(9);
    expect(c.AddAddrPolicyDrop).toBe(8);
    expect(c.AddAddrDrop).toBe(8);
    expect(c.MPJoinSynTx).toBe(1);
    expect(sim.client.subflowInfo().map((s) => `${s.remoteAddress}:${s.remotePort}`).sort()).toEqual(['198.18.0.2:443', '198.18.1.2:443']);
    expect(sim.server!.counters().EchoAdd).toBe(9); // refused ones are echoed too: the server stops resending
    expect(sim.report('client').receivedSha256).toBe(sim.report('server').sentSha256);
  });

  it("allowAnnouncedPorts admits another port; 'any' admits everything (up to addAddrAccepted); a throwing policy refuses", () => {
    const run = (client: ConstructorParameters<typeof Sim>[0]['client']) => {
      const sim = new Sim({ seed: 62, paths: TWO, joinAllPaths: false, client });
      sim.start({ client: { bytes: 0 }, server: { bytes: 3_000_000 } });
      sim.at(300, () => {
        for (const a of [...BAD, GOOD]) sim.server!.announce(a);
      });
      sim.run(60_000);
      return sim.client.counters();
    };
    const ports = run({ allowAnnouncedPorts: true });
    expect(ports.AddAddrPolicyDrop).toBe(7);
    expect(ports.MPJoinSynTx).toBe(2);
    const any = run({ addAddrPolicy: 'any' });
    expect(any.AddAddrPolicyDrop).toBe(0);
    expect(any.AddAddrDrop).toBe(1); // the 9th: addAddrAccepted is 8
    expect(any.MPJoinSynTx).toBeGreaterThanOrEqual(7);
    const throwing = run({
      addAddrPolicy: () => {
        throw new Error('application bug');
      },
    });
    expect(throwing.AddAddrPolicyDrop).toBe(9);
    expect(throwing.MPJoinSynTx).toBe(0);
  });

  it('an announced address that never answers is tried addAddrJoinFailures (3) times in total, then AddAddrJoinLimit', () => {
    const sim = new Sim({ seed: 63, paths: THREE, joinAllPaths: false });
    // a slow reader keeps the connection open well past the retries
    sim.start({ client: { bytes: 0, readRateMbps: 1 }, server: { bytes: 12_000_000 } });
    sim.blackholePath(2);
    sim.at(300, () => sim.server!.announce({ address: '198.18.2.2', port: 443 }));
    sim.run(120_000);
    const c = sim.client.counters();
    expect(c.AddAddr).toBe(1);
    expect(c.MPJoinSynTx).toBe(3); // was 6: 1 + 5 re-joins
    expect(c.MPJoinTimeout).toBe(3);
    expect(c.AddAddrJoinLimit).toBe(1);
    // a retransmitted announcement does not start it over
    sim.client.handleSegment(0, authenticAddAddr(sim, 1, '198.18.2.2', 443), sim.now);
    sim.run(200_000);
    expect(sim.client.counters().MPJoinSynTx).toBe(3);
  });

  it('an announced address that resets every join is tried 3 times in total, then AddAddrJoinLimit', () => {
    let sim!: Sim;
    sim = new Sim({
      seed: 64,
      paths: THREE,
      joinAllPaths: false,
      observer: (from, _key, seg) => {
        // every join goes to the announced address (path 2): refuse it with a TCP reset
        if (from === 'client' && seg.options.some((o) => o.subtype === 'MP_JOIN' && o.stage === 'syn')) sim.at(sim.now, () => sim.resetPath(2));
      },
    });
    sim.start({ client: { bytes: 0, readRateMbps: 1 }, server: { bytes: 12_000_000 } });
    sim.at(300, () => sim.server!.announce({ address: '198.18.2.2', port: 443 }));
    sim.run(120_000);
    const c = sim.client.counters();
    expect(c.MPJoinSynTx).toBe(3); // was 6
    expect(c.AddAddrJoinLimit).toBe(1);
    expect(sim.report('client').receivedSha256).toBe(sim.prefixSha256(sim.report('client').received));
  });

  it('joins that complete do not count: an announced path that keeps coming back is joined again each time', () => {
    const sim = new Sim({ seed: 65, paths: TWO, joinAllPaths: false });
    sim.start({ client: { bytes: 0, readRateMbps: 2 }, server: { bytes: 8_000_000 } });
    sim.at(300, () => sim.server!.announce({ address: '198.18.1.2', port: 443 }));
    for (const t of [2_000, 5_000, 8_000, 11_000]) sim.at(t, () => sim.resetPath(1));
    sim.run(60_000);
    const c = sim.client.counters();
    expect(c.MPJoinSynTx).toBe(5);
    expect(c.MPJoinSynAckRx).toBe(5);
    expect(c.AddAddrJoinLimit).toBe(0);
    expect(sim.report('client').receivedSha256).toBe(sim.report('server').sentSha256);
  });

  it('echo once per address id: duplicates are not echoed, a retransmission is once our echo\'s subflow went down, at most 4 per id', () => {
    const echoesOn: number[] = [];
    const sim = new Sim({
      seed: 66,
      paths: TWO,
      observer: (from, key, seg) => {
        if (from === 'client' && seg.options.some((o) => o.subtype === 'ADD_ADDR' && o.echo)) echoesOn.push(key);
      },
    });
    sim.start({ client: { bytes: 0, readRateMbps: 4 }, server: { bytes: 6_000_000 } });
    const ann = { address: '198.18.1.2', port: 9999 }; // refused by policy (port), echoed all the same
    sim.at(300, () => sim.server!.announce(ann));
    const snap: Record<string, number>[] = [];
    sim.at(400, () => {
      snap.push({ echo: sim.server!.counters().EchoAdd });
      const sf = establishedClientSubflow(sim);
      for (let i = 0; i < 10_000; i++) sim.client.handleSegment(sf, authenticAddAddr(sim, 1, ann.address, ann.port), sim.now);
    });
    sim.at(600, () => {
      snap.push({ echo: sim.server!.counters().EchoAdd, suppressed: sim.client.counters().EchoAddSuppressed });
      sim.resetPath(0); // the subflow that carried the echo (key 0: the initial one)
    });
    sim.at(700, () => {
      const sf = establishedClientSubflow(sim);
      for (let i = 0; i < 100; i++) sim.client.handleSegment(sf, authenticAddAddr(sim, 1, ann.address, ann.port), sim.now);
    });
    sim.at(900, () => {
      snap.push({ echo: sim.server!.counters().EchoAdd });
      // another address under one id, back and forth: each a new announcement, but no more than 4 echoes per id
      const sf = establishedClientSubflow(sim);
      for (let i = 0; i < 50; i++) sim.client.handleSegment(sf, authenticAddAddr(sim, 7, `198.18.1.${i % 2 ? 7 : 8}`, 9999), sim.now);
    });
    sim.at(950, () => {
      // a duplicate with a forged HMAC is not taken for the verified one it copies
      const forged = authenticAddAddr(sim, 1, ann.address, ann.port);
      const o = forged.options[0] as { truncatedHmac: Uint8Array };
      o.truncatedHmac = o.truncatedHmac.map((b) => b ^ 1);
      sim.client.handleSegment(establishedClientSubflow(sim), forged, sim.now);
    });
    sim.run(60_000);
    expect(sim.client.counters().AddAddrHMacFailure).toBe(1);
    expect(snap[0].echo).toBe(1);
    expect(echoesOn[0]).toBe(0);
    expect(snap[1].echo).toBe(1); // 10 000 duplicates, no echo
    expect(snap[1].suppressed).toBe(10_000);
    expect(snap[2].echo).toBe(2); // once more after the carrier died, then quiet again
    expect(sim.server!.counters().EchoAdd).toBe(2 + 4);
    expect(echoesOn).toHaveLength(6);
    const c = sim.client.counters();
    expect(c.AddAddr).toBe(1 + 10_000 + 100 + 50);
    expect(c.EchoAddSuppressed).toBe(10_000 + 99 + 46);
    expect(c.AddAddrPolicyDrop).toBe(1 + 50); // each distinct announcement judged once; the duplicates are not
    expect(sim.report('client').receivedSha256).toBe(sim.report('server').sentSha256);
  });
});
