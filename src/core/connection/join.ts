/**
 * MP_JOIN, both sides: the client's joins (startJoins, the SYN/ACK check), the server's acceptJoin with its fair slots (per connection, per source, eviction), and the join's completion.
 */
import type { MpJoinOption } from '../../wire/types.js';
import { TcpRstReason, TcpRstFlag } from '../../wire/types.js';
import { joinAckHmac, joinSynAckHmac, timingSafeEqual } from '../../crypto/index.js';
import type { JoinRequest } from '../path-manager.js';
import type { Subflow } from '../subflow.js';
import * as resume from './resume.js';
import type { ConnectionTimers, PathInfo, SubflowDownReason } from '../types.js';
import * as pm from './pm.js';
import * as handshake from './handshake.js';
import type { Connection, JoinResult } from './index.js';



export function openSubflowCount(c: Connection): number {
  let n = 0;
  for (const s of c.subflows.values()) if (s.open) n++;
  return n;
}

/**
 * Client: may joins be opened now? G mode: once the MP_CAPABLE exchange is
 * done (tokenB known), while TLS may still be running: the server holds such
 * an early join and we complete it only once the keys are confirmed.
 * rfc8684 mode: once the keys are confirmed.
 */
export function joinsAllowed(c: Connection): boolean {
  if (c.state !== 'established') return false;
  return c.mode === 'external' ? c.keys.capable === 'done' : c.keys.confirmed;
}

export function startJoins(c: Connection, reqs: JoinRequest[], now: number): void {
  for (const r of reqs) {
    if (!joinsAllowed(c)) return;
    if (openSubflowCount(c) >= c.limits.maxSubflows || c.pendingJoins >= c.limits.maxPendingJoins) {
      c.mib.inc('SubflowLimit');
      return;
    }
    const la = c.paths.localAddresses.find((a) => a.id === r.localAddressId);
    const ra = c.paths.remoteAddresses.find((a) => a.id === r.remoteAddressId);
    if (!ra || pm.joinsExhausted(c, ra)) continue;
    const sf = c.addSubflow('join-syn-sent', {
      initial: false,
      localAddressId: r.localAddressId,
      remoteAddressId: r.remoteAddressId,
      backup: r.backup,
      path: { localAddress: la?.address, remoteAddress: ra.address, remotePort: ra.port ?? c.paths.remoteAddresses[0]?.port },
      now,
    });
    sf.localRandom = c.randomU32();
    sf.early = !c.keys.confirmed;
    sf.handshakeDeadline = now + c.timers.joinTimeoutMs;
    c.pendingJoins++;
    c.events.push({
      type: 'subflow-open',
      subflow: sf.id,
      localAddress: la?.address,
      remoteAddress: ra.address,
      remotePort: sf.path.remotePort,
      backup: r.backup,
    });
    c.queue(sf, [
      {
        subtype: 'MP_JOIN',
        stage: 'syn',
        backup: r.backup,
        addressId: r.localAddressId,
        receiverToken: c.remoteToken,
        senderRandom: sf.localRandom,
      },
    ]);
    c.mib.inc('MPJoinSynTx');
  }
}

export function handleJoin(c: Connection, sf: Subflow, o: MpJoinOption, now: number): boolean {
  if (o.stage === 'synack' && sf.state === 'join-syn-sent') {
    c.mib.inc('MPJoinSynAckRx');
    if (!c.keys.confirmed) {
      // An early join answered before the server's NEW_KEY reached us (or
      // before our own TLS finished): completed when the keys are confirmed.
      if (sf.heldSynAck) {
        c.mib.inc('ProtocolError');
        c.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, 'error', now);
        return false;
      }
      sf.heldSynAck = o;
      c.mib.inc('MPJoinSynAckHeld');
      return true;
    }
    return answerSynAck(c, sf, o, now);
  }
  if (o.stage === 'ack' && sf.state === 'join-syn-received') {
    c.mib.inc('MPJoinAckRx');
    const expected = joinAckHmac(c.keys.remote!, c.keys.local!, sf.remoteRandom, sf.localRandom);
    if (!timingSafeEqual(expected, o.hmac)) {
      c.mib.inc('MPJoinAckHMacFailure');
      c.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, 'join-refused', now);
      return false;
    }
    sf.sampleRtt(now - sf.handshakeStarted);
    joinEstablished(c, sf);
    sf.ackPending = true; // our first DSS on it: the data ACK and window (RFC 8684's "fourth ACK")
    return true;
  }
  c.mib.inc('ProtocolError');
  c.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, 'error', now);
  return false;
}

/** Client: the server's MP_JOIN SYN/ACK, with the keys confirmed: check HMAC-B, send the ACK (HMAC-A). */
function answerSynAck(c: Connection, sf: Subflow, o: Extract<MpJoinOption, { stage: 'synack' }>, now: number): boolean {
  sf.remoteRandom = o.senderRandom;
  const expected = joinSynAckHmac(c.keys.remote!, c.keys.local!, o.senderRandom, sf.localRandom);
  if (!timingSafeEqual(expected, o.truncatedHmac)) {
    c.mib.inc('MPJoinSynAckHMacFailure');
    c.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, 'join-refused', now);
    return false;
  }
  sf.backupPeer = o.backup;
  const hmac = joinAckHmac(c.keys.local!, c.keys.remote!, sf.localRandom, o.senderRandom);
  // An early join's SYN/ACK waited at the server for its keys: no RTT sample from it.
  if (!sf.early) sf.sampleRtt(now - sf.handshakeStarted);
  c.queue(sf, [{ subtype: 'MP_JOIN', stage: 'ack', hmac }]);
  // The ACK is a frame on an established TCP connection, delivered reliably
  // and in order (RFC 8684's fourth ACK exists because a TCP third ACK is
  // not): the subflow is ours from here, data may follow the ACK at once
  // (PROTOCOL.md §4). Should the server refuse the HMAC, its MP_TCPRST
  // closes the subflow and what it carried is sent again elsewhere.
  joinEstablished(c, sf);
  return true;
}

/** Client: the keys are confirmed: complete the early joins whose SYN/ACK came before. */
export function continueHeldJoins(c: Connection, now: number): void {
  for (const sf of [...c.subflows.values()]) {
    const o = sf.heldSynAck;
    if (!o || sf.state !== 'join-syn-sent') continue;
    sf.heldSynAck = undefined;
    answerSynAck(c, sf, o, now);
    if (c.state === 'closed') return;
  }
}

export function joinEstablished(c: Connection, sf: Subflow): void {
  sf.state = 'established';
  sf.handshakeDeadline = Infinity;
  // Announcements whose carrier died while no other subflow could take them.
  for (const [id, a] of c.paths.unechoed) if (!c.subflows.get(a.sentOn)?.established) pm.sendAddAddr(c, id);
  c.pendingJoins = Math.max(0, c.pendingJoins - 1);
  if (c.role === 'server') c.host.releaseJoin(c, sf.id);
  else c.paths.rejoinAttempts.delete(`${sf.localAddressId}|${sf.remoteAddressId}`);
  pm.sendPendingRemovals(c);
  if (c.keys.newKeyPending) handshake.sendNewKey(c);
  resume.onJoinEstablished(c);
  c.events.push({ type: 'subflow-up', subflow: sf.id });
}

/**
 * @internal Server: an MP_JOIN SYN for this connection arrived on a new
 * subflow (the endpoint found the token).
 */
export function acceptJoin(c: Connection, o: Extract<MpJoinOption, { stage: 'syn' }>, path: PathInfo, now: number): JoinResult {
  c.mib.inc('MPJoinSynRx');
  const refuse = (reason: string, rst: number, flags = 0): JoinResult => {
    c.mib.inc('MPJoinRejected');
    c.mib.inc('MPRstTx');
    return { ok: false, reason, reply: { options: [{ subtype: 'MP_TCPRST', flags, reason: rst }] } };
  };
  if (c.state === 'closed') return refuse('connection closed', TcpRstReason.MPTCP_SPECIFIC);
  // The join's own HMACs prove the joiner holds the keys, so installed keys
  // suffice to answer it. Before that, a G-mode join is held (bounded per
  // connection, by the endpoint's pending-join pool, and in time) and
  // answered when the keys are installed: the client opens its joins while
  // TLS runs (PROTOCOL.md §6.1).
  const early = !c.keys.installed;
  if (early && (c.mode !== 'external' || c.state !== 'established')) {
    c.mib.inc('MPJoinBeforeKeys');
    return refuse('keys not installed', TcpRstReason.MPTCP_SPECIFIC, TcpRstFlag.TRANSIENT);
  }
  // Fairness: pending joins count per source (the peer's address). A full
  // connection makes room by evicting the oldest pending join of the
  // source holding the most of them here, if that is more than the
  // newcomer's source holds; a full endpoint does the same across
  // connections (host.admitJoin). A flooding source competes with itself.
  const source = c.host.joinSource(path);
  let victim: Subflow | undefined;
  if (early && heldJoinCount(c) >= c.limits.maxHeldJoins) {
    // The same fairness among held joins: an observer that saw tokenB and
    // raced the client's early join competes with itself.
    victim = pendingJoinToEvict(c, source, true);
    if (!victim) {
      c.mib.inc('MPJoinHeldLimit');
      return refuse('held join limit', TcpRstReason.LACK_OF_RESOURCES, TcpRstFlag.TRANSIENT);
    }
  } else if (openSubflowCount(c) >= c.limits.maxSubflows || c.pendingJoins >= c.limits.maxPendingJoins) {
    victim = pendingJoinToEvict(c, source);
    if (!victim) {
      c.mib.inc('SubflowLimit');
      return refuse('subflow limit', TcpRstReason.LACK_OF_RESOURCES, TcpRstFlag.TRANSIENT);
    }
  }
  const admitted = c.host.admitJoin(c, source, victim !== undefined, now);
  if (admitted === 'source-limit') {
    c.mib.inc('MPJoinSourceLimit');
    return refuse('source join limit', TcpRstReason.LACK_OF_RESOURCES, TcpRstFlag.TRANSIENT);
  }
  if (admitted === 'endpoint-limit') {
    c.mib.inc('SubflowLimit');
    return refuse('endpoint join limit', TcpRstReason.LACK_OF_RESOURCES, TcpRstFlag.TRANSIENT);
  }
  if (victim) evictPendingJoin(c, victim.id, now);
  // An eviction (ours or the endpoint's) may have closed this connection
  // when pending joins were all it had left.
  if (c.state !== 'established') return refuse('connection closed', TcpRstReason.MPTCP_SPECIFIC);
  const localId = localAddressIdFor(c, path.localAddress, path.localPort);
  const sf = c.addSubflow(early ? 'join-held' : 'join-syn-received', {
    initial: false,
    localAddressId: localId,
    remoteAddressId: o.addressId,
    backup: false,
    path,
    now,
  });
  sf.backupPeer = o.backup;
  sf.remoteRandom = o.senderRandom;
  c.pendingJoins++;
  c.host.reserveJoin(c, sf.id, source, now);
  if (early) {
    sf.early = true;
    sf.handshakeDeadline = now + c.timers.joinHoldTimeoutMs;
    c.mib.inc('MPJoinHeld');
    return { ok: true, subflow: sf.id };
  }
  answerJoin(c, sf, now);
  return { ok: true, subflow: sf.id };
}

/** Server: answer a join's SYN (keys installed): R_B, HMAC-B, and a few RTTs to get its ACK. */
function answerJoin(c: Connection, sf: Subflow, now: number): void {
  sf.state = 'join-syn-received';
  sf.handshakeStarted = now; // the RTT sample at its ACK starts at our SYN/ACK, not at a hold before it
  sf.localRandom = c.randomU32();
  // A legitimate joiner answers our SYN/ACK within one RTT: wait a few.
  sf.handshakeDeadline = now + joinAckTimeout(c);
  const truncatedHmac = joinSynAckHmac(c.keys.local!, c.keys.remote!, sf.localRandom, sf.remoteRandom);
  c.queue(sf, [
    { subtype: 'MP_JOIN', stage: 'synack', backup: false, addressId: sf.localAddressId, truncatedHmac, senderRandom: sf.localRandom },
  ]);
}

/** Server: the keys are installed: answer every held early join. */
export function releaseHeldJoins(c: Connection, now: number): void {
  for (const sf of c.subflows.values()) {
    if (sf.state !== 'join-held') continue;
    c.mib.inc('MPJoinHeldReleased');
    answerJoin(c, sf, now);
  }
}

/** Server: early joins held now. */
export function heldJoinCount(c: Connection): number {
  let n = 0;
  for (const s of c.subflows.values()) if (s.state === 'join-held') n++;
  return n;
}

/**
 * @internal Server: take back the slot of pending join `subflow` (waiting
 * for its MP_JOIN ACK) for a newcomer from a less busy source: MP_TCPRST
 * T=1 (the joiner may retry), `MPJoinEvicted`. False (and the endpoint's
 * slot freed) when it is no longer pending.
 */
export function evictPendingJoin(c: Connection, subflow: number, now: number): boolean {
  const sf = c.subflows.get(subflow);
  if (c.role !== 'server' || !sf || sf.initial || (sf.state !== 'join-syn-received' && sf.state !== 'join-held')) {
    c.host.releaseJoin(c, subflow);
    return false;
  }
  c.mib.inc('MPJoinEvicted');
  resetJoinTransient(c, sf, TcpRstReason.LACK_OF_RESOURCES, 'join-refused', now);
  return true;
}

/** Server: the pending (or, with `heldOnly`, held) join here to evict for a newcomer from `source`, if any (see acceptJoin). */
export function pendingJoinToEvict(c: Connection, source: string, heldOnly = false): Subflow | undefined {
  const bySource = new Map<string, Subflow[]>();
  for (const s of c.subflows.values()) {
    if (s.initial || (s.state !== 'join-held' && (heldOnly || s.state !== 'join-syn-received'))) continue;
    const k = c.host.joinSource(s.path);
    const list = bySource.get(k);
    if (list) list.push(s);
    else bySource.set(k, [s]);
  }
  let top: Subflow[] | undefined;
  // ids grow with age: the list's first is its oldest; ties go to the source with the oldest join
  for (const list of bySource.values()) if (!top || list.length > top.length || (list.length === top.length && list[0].id < top[0].id)) top = list;
  const mine = bySource.get(source)?.length ?? 0;
  return top && top.length > mine ? top[0] : undefined;
}

/** Server: how long a join may wait for its MP_JOIN ACK (ConnectionTimers.joinAckTimeoutMinMs). */
export function joinAckTimeout(c: Connection): number {
  let rtt = 0;
  for (const s of c.subflows.values()) {
    const r = s.established ? s.rtt : undefined;
    if (r !== undefined && r > rtt) rtt = r;
  }
  const t = c.timers;
  return Math.min(t.joinTimeoutMs, Math.max(t.joinAckTimeoutMinMs, t.joinAckTimeoutRtts * rtt));
}

/** Server: reset a pending join with MP_TCPRST T=1 (transient: the client's path manager retries). */
export function resetJoinTransient(c: Connection, sf: Subflow, reason: number, why: SubflowDownReason, now: number): void {
  c.mib.inc('MPRstTx');
  c.control.push({ subflow: sf.id, segment: { options: [{ subtype: 'MP_TCPRST', flags: TcpRstFlag.TRANSIENT, reason }] }, close: 'reset' });
  c.subflowDown(sf, why, now);
}

export function localAddressIdFor(c: Connection, address?: string, port?: number): number {
  if (!address) return 0;
  for (const [k, id] of c.paths.announcedIds) {
    const [a, p] = k.split('|');
    if (a === address && (p === '' || Number(p) === port)) return id;
  }
  return 0;
}
