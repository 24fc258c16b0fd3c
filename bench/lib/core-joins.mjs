// Server core alone: how many MP_JOINs (SYN → SYN/ACK → ACK verified → subflow
// up, then closed) one server Connection processes per second. The client's
// HMAC-A is computed outside the timed region.
import { Endpoint, joinAckHmac } from '../../dist/index.js';

function drain(from, to, map) {
  for (let t = from.pollTransmit(0); t; t = from.pollTransmit(0)) {
    const dst = map(t.subflow);
    if (dst !== undefined && to) to.handleSegment(dst, t.segment, 0);
  }
}

export function coreJoinsPerSecond(n = 20000) {
  const cep = new Endpoint({ acceptModes: [] });
  const sep = new Endpoint();
  const c = cep.connect({ mode: 'external', remote: { address: '198.18.0.2', port: 443 } }, 0);
  const syn = c.pollTransmit(0);
  const r = sep.handleNewSubflow(syn.segment, {}, 0);
  const s = r.connection;
  for (let i = 0; i < 5; i++) {
    drain(s, c, (id) => (id === 0 ? 0 : undefined));
    drain(c, s, (id) => (id === 0 ? 0 : undefined));
  }
  const keyA = new Uint8Array(8).fill(3), keyB = new Uint8Array(8).fill(4);
  c.installKeys(keyA, keyB, 0);
  s.installKeys(keyA, keyB, 0);
  for (let i = 0; i < 5; i++) {
    drain(s, c, (id) => (id === 0 ? 0 : undefined));
    drain(c, s, (id) => (id === 0 ? 0 : undefined));
  }
  let timed = 0;
  for (let i = 0; i < n; i++) {
    const randA = (i * 2654435761) >>> 0;
    const t0 = performance.now();
    const res = sep.handleNewSubflow({ options: [{ subtype: 'MP_JOIN', stage: 'syn', backup: false, addressId: 1, receiverToken: s.localToken, senderRandom: randA }] }, {}, 0);
    let synack;
    for (let t = s.pollTransmit(0); t; t = s.pollTransmit(0)) if (t.subflow === res.subflow) synack = t.segment.options[0];
    timed += performance.now() - t0;
    const hmac = joinAckHmac(keyA, keyB, randA, synack.senderRandom);
    const t1 = performance.now();
    s.handleSegment(res.subflow, { options: [{ subtype: 'MP_JOIN', stage: 'ack', hmac }] }, 0);
    s.closeSubflow(res.subflow, 0);
    for (let t = s.pollTransmit(0); t; t = s.pollTransmit(0));
    for (let e = s.pollEvent(); e; e = s.pollEvent());
    timed += performance.now() - t1;
  }
  const ok = s.counters().MPJoinAckRx;
  return { joinsPerSecond: (n / timed) * 1000, verified: ok, failures: s.counters().MPJoinAckHMacFailure };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(coreJoinsPerSecond());
