/**
 * Path management (Linux `pm.c`): our and the peer's addresses, announcements (ADD_ADDR) and their echoes, the client's address policy, REMOVE_ADDR, MP_PRIO, re-joins of lost subflows. Owns `PathState`.
 */
import type { AddAddrOption, MptcpOption } from '../../wire/types.js';
import { addAddrHmac, timingSafeEqual } from '../../crypto/index.js';
import type { JoinRequest, PmContext } from '../path-manager.js';
import { applyAddAddrPolicy, type AddAddrPolicyOption } from '../address-policy.js';
import type { Subflow } from '../subflow.js';
import type { AddressInfo, ClientConnectOptions, SubflowDownReason } from '../types.js';
import { BOUNDS } from '../config.js';
import * as join from './join.js';
import * as recv from './recv.js';
import * as timers from './timers.js';
import * as resume from './resume.js';
import type { Connection } from './index.js';

/** State owned by pm.ts. */
export class PathState {
  /** Server: the id the next announced address gets (1..255). */
  nextAnnounceId = 1;
  /** Server: REMOVE_ADDRs waiting for a subflow to carry them. */
  pendingRemovals: number[] = [];
  readonly localAddresses: { id: number; address: string; backup: boolean }[] = [];
  readonly remoteAddresses: { id: number; address: string; port?: number }[] = [];
  announceConfig: AddressInfo[] = [];
  announcedIds = new Map<string, number>();
  addAddrAcceptedCount = 0;
  /**
   * Announcements not yet echoed, and the subflow that carried each: an
   * ADD_ADDR lost with a subflow that died is sent again on another one
   * (RFC 8684 §3.4.1: retransmitted until echoed).
   */
  readonly unechoed = new Map<number, { address: string; port?: number; sentOn: number }>();
  /** Client: the policy for announced addresses (ClientConnectOptions.addAddrPolicy). */
  addAddrPolicy: AddAddrPolicyOption | undefined;
  allowAnnouncedPorts = false;
  /**
   * Client: per ADD_ADDR address id (at most 256), the last address announced
   * under it and its verified HMAC, whether it was refused (policy or
   * addAddrAccepted), and our echoes (how many, and the subflow that carried
   * the last one).
   */
  readonly announcements = new Map<number, { address: string; port?: number; hmac: Uint8Array; echoes: number; echoedOn: number | undefined; refused: boolean }>();
  /** Re-joins the path manager asked for, and failures in a row per address pair. */
  /** Re-joins due later: the path manager's (after a lost subflow) and, with `seek`, the resume logic's. */
  rejoins: { at: number; request: JoinRequest; seek?: boolean }[] = [];
  readonly rejoinAttempts = new Map<string, number>();
  /**
   * Client: failed joins in total per announced address ("address|port"; at
   * most `addAddrAccepted` entries), and the addresses given up on.
   */
  readonly joinFailures = new Map<string, number>();
  readonly joinsGivenUp = new Set<string>();
}

// ─── path management ─────────────────────────────────────────────────────
export function pmContext(c: Connection): PmContext {
  return {
    subflows: [...c.subflows.values()].map((s) => ({
      id: s.id,
      localAddressId: s.localAddressId,
      remoteAddressId: s.remoteAddressId,
      open: s.open,
    })),
    localAddresses: c.paths.localAddresses,
    remoteAddresses: c.paths.remoteAddresses,
    maxSubflows: c.limits.maxSubflows,
  };
}

/** Server: announce an address (ADD_ADDR with HMAC); allowed once keys are confirmed. */
export function announce(c: Connection, a: AddressInfo): number | undefined {
  if (!c.keys.confirmed || c.state !== 'established') return undefined;
  const key = `${a.address}|${a.port ?? ''}`;
  if (c.paths.announcedIds.has(key)) return c.paths.announcedIds.get(key);
  const id = nextAnnounceId(c);
  if (id === undefined) return undefined;
  c.paths.announcedIds.set(key, id);
  c.paths.unechoed.set(id, { address: a.address, port: a.port, sentOn: -1 });
  sendAddAddr(c, id);
  return id;
}

export function sendAddAddr(c: Connection, id: number): void {
  const a = c.paths.unechoed.get(id);
  const sf = c.anyEstablished();
  if (!a || !sf) return;
  a.sentOn = sf.id;
  const truncatedHmac = addAddrHmac(c.keys.local!, c.keys.remote!, id, a.address, a.port);
  c.queue(sf, [recv.dssAck(c), { subtype: 'ADD_ADDR', echo: false, addressId: id, address: a.address, port: a.port, truncatedHmac }], true);
  c.mib.inc('AddAddrTx');
}

/** Withdraw an announced address (REMOVE_ADDR): the peer closes its subflows to it. */
export function removeAddress(c: Connection, addressId: number): void {
  if (c.state !== 'established') return;
  for (const [k, v] of c.paths.announcedIds) if (v === addressId) c.paths.announcedIds.delete(k);
  c.paths.unechoed.delete(addressId);
  const sf = c.anyEstablished();
  if (!sf) {
    // No subflow to carry it (parked): sent when one is up again.
    if (!c.paths.pendingRemovals.includes(addressId)) c.paths.pendingRemovals.push(addressId);
    return;
  }
  c.queue(sf, [recv.dssAck(c), { subtype: 'REMOVE_ADDR', addressIds: [addressId] }], true);
  c.mib.inc('RmAddrTx');
}

/** REMOVE_ADDRs that waited for a subflow (see removeAddress). */
export function sendPendingRemovals(c: Connection): void {
  const ids = c.paths.pendingRemovals.splice(0);
  for (const id of ids) removeAddress(c, id);
}

/**
 * The next id for an announced address: never one used before on this
 * connection (the peer may still hold state under it) until 255 are used,
 * then the lowest free one.
 */
function nextAnnounceId(c: Connection): number | undefined {
  if (c.paths.nextAnnounceId <= 255) return c.paths.nextAnnounceId++;
  const used = new Set(c.paths.announcedIds.values());
  for (let id = 1; id <= 255; id++) if (!used.has(id)) return id;
  return undefined;
}

/** Mark a subflow backup (or not) for both directions: local choice plus MP_PRIO to the peer. */
export function setBackup(c: Connection, subflow: number, backup: boolean): void {
  const sf = c.subflows.get(subflow);
  if (!sf || !sf.established) return;
  sf.backupLocal = backup;
  c.queue(sf, [recv.dssAck(c), { subtype: 'MP_PRIO', backup }], true);
  c.mib.inc('MPPrioTx');
}

export function handleAddAddr(c: Connection, o: AddAddrOption, now: number): void {
  if (o.echo) {
    c.mib.inc('EchoAdd');
    c.paths.unechoed.delete(o.addressId);
    return;
  }
  if (c.role !== 'client' || !c.keys.confirmed || !o.truncatedHmac) {
    c.mib.inc('AddAddrDrop');
    return;
  }
  let rec = c.paths.announcements.get(o.addressId);
  const repeat = rec !== undefined && rec.address === o.address && rec.port === o.port;
  // A byte-identical retransmission of a verified announcement needs no new
  // HMAC (25 µs each: a duplicate flood would otherwise cost CPU, not just echoes).
  if (!(repeat && timingSafeEqual(rec!.hmac, o.truncatedHmac))) {
    const expected = addAddrHmac(c.keys.remote!, c.keys.local!, o.addressId, o.address, o.port);
    if (!timingSafeEqual(expected, o.truncatedHmac)) {
      c.mib.inc('AddAddrHMacFailure');
      c.mib.inc('AddAddrDrop');
      return;
    }
  }
  c.mib.inc('AddAddr');
  if (!rec) {
    rec = { address: o.address, port: o.port, hmac: o.truncatedHmac.slice(), echoes: 0, echoedOn: undefined, refused: false };
    c.paths.announcements.set(o.addressId, rec);
  } else if (!repeat) {
    // Another address under this id: a new announcement, echoed (within the cap) and judged anew.
    rec.address = o.address;
    rec.port = o.port;
    rec.hmac = o.truncatedHmac.slice();
    rec.echoedOn = undefined;
    rec.refused = false;
  }
  // Echo once per announcement; a retransmission only when our last echo's
  // carrier went down (the echo may have been lost), within BOUNDS.maxEchoesPerId.
  const sf = c.anyEstablished();
  const echoLost = rec.echoedOn === undefined || !c.subflows.get(rec.echoedOn)?.established;
  if (sf && echoLost && rec.echoes < BOUNDS.maxEchoesPerId) {
    rec.echoes++;
    rec.echoedOn = sf.id;
    c.queue(sf, [recv.dssAck(c), { subtype: 'ADD_ADDR', echo: true, addressId: o.addressId, address: o.address, port: o.port }], true);
  } else {
    c.mib.inc('EchoAddSuppressed');
  }
  if (c.paths.remoteAddresses.some((a) => a.id === o.addressId)) return; // known (or the id is in use: RFC 8684 wants a REMOVE_ADDR first)
  if (repeat && rec.refused) return; // judged already
  const server = c.paths.remoteAddresses.find((a) => a.id === 0);
  const why = server ? applyAddAddrPolicy(c.paths.addAddrPolicy, { address: o.address, port: o.port }, server, { allowAnnouncedPorts: c.paths.allowAnnouncedPorts }) : 'no server address';
  if (why !== undefined) {
    rec.refused = true;
    c.mib.inc('AddAddrPolicyDrop');
    c.mib.inc('AddAddrDrop');
    return;
  }
  if (c.paths.addAddrAcceptedCount >= c.limits.addAddrAccepted) {
    rec.refused = true;
    c.mib.inc('AddAddrDrop');
    return;
  }
  c.paths.addAddrAcceptedCount++;
  const ra = { id: o.addressId, address: o.address, port: o.port };
  c.paths.remoteAddresses.push(ra);
  c.events.push({ type: 'address-added', addressId: o.addressId, address: o.address, port: o.port });
  join.startJoins(c, c.pm.onAddressAdded(pmContext(c), ra), now);
}

export function handleRemoveAddr(c: Connection, id: number, now: number): void {
  const idx = c.paths.remoteAddresses.findIndex((a) => a.id === id);
  if (idx > 0) c.paths.remoteAddresses.splice(idx, 1);
  c.events.push({ type: 'address-removed', addressId: id });
  for (const s of [...c.subflows.values()]) {
    if (s.open && s.remoteAddressId === id && join.openSubflowCount(c) > 1) {
      c.mib.inc('RmSubflow');
      c.control.push({ subflow: s.id, segment: { options: [] }, close: 'fin' });
      c.subflowDown(s, 'removed', now);
    }
  }
}

/** An announced address (id ≠ 0) that failed `addAddrJoinFailures` joins is not tried again. */
export function joinsExhausted(c: Connection, ra: { id: number; address: string; port?: number }): boolean {
  if (ra.id === 0) return false;
  const key = `${ra.address}|${ra.port ?? ''}`;
  if ((c.paths.joinFailures.get(key) ?? 0) < c.limits.addAddrJoinFailures) return false;
  if (!c.paths.joinsGivenUp.has(key)) {
    c.paths.joinsGivenUp.add(key);
    c.mib.inc('AddAddrJoinLimit');
  }
  return true;
}

export function scheduleRejoin(c: Connection, sf: Subflow, reason: SubflowDownReason, failedJoin: boolean, now: number): void {
  if (c.role !== 'client') return;
  const ra = sf.remoteAddressId !== 0 ? c.paths.remoteAddresses.find((a) => a.id === sf.remoteAddressId) : undefined;
  if (ra && failedJoin && reason !== 'closed' && reason !== 'removed') {
    const key = `${ra.address}|${ra.port ?? ''}`;
    c.paths.joinFailures.set(key, (c.paths.joinFailures.get(key) ?? 0) + 1);
    if (joinsExhausted(c, ra)) return;
  }
  if (!join.joinsAllowed(c) || !c.pm.onSubflowClosed) return;
  const key = `${sf.localAddressId}|${sf.remoteAddressId}`;
  const attempt = c.paths.rejoinAttempts.get(key) ?? 0;
  const plan = c.pm.onSubflowClosed(pmContext(c), { localAddressId: sf.localAddressId, remoteAddressId: sf.remoteAddressId, reason }, attempt);
  if (!plan) return;
  c.paths.rejoinAttempts.set(key, attempt + 1);
  c.paths.rejoins.push({ at: now + plan.afterMs, request: plan.request });
  timers.armRejoin(c);
}

/** REMOVE_ADDR (unauthenticated in RFC 8684 §3.4.2): only ids the peer is known to use. */
export function handleRemoveAddrOption(c: Connection, o: Extract<MptcpOption, { subtype: 'REMOVE_ADDR' }>, now: number): void {
  for (const id of o.addressIds) {
    const known = c.paths.remoteAddresses.some((a) => a.id === id) || [...c.subflows.values()].some((x) => x.open && x.remoteAddressId === id);
    if (!known) {
      c.mib.inc('RmAddrDrop');
      continue;
    }
    c.mib.inc('RmAddr');
    handleRemoveAddr(c, id, now);
  }
}

/** MP_PRIO: the peer's wish for this subflow (backup or not). */
export function handlePrio(c: Connection, sf: Subflow, o: Extract<MptcpOption, { subtype: 'MP_PRIO' }>): void {
  c.mib.inc('MPPrioRx');
  sf.backupPeer = o.backup;
}

/** Client: a local address appeared (or came back): join from it now, or as part of a resume. */
export function addLocalAddress(c: Connection, address: string, backup: boolean, now: number): number {
  let la = c.paths.localAddresses.find((a) => a.address === address);
  if (!la) {
    const id = c.paths.localAddresses.reduce((m, a) => Math.max(m, a.id), -1) + 1;
    if (id > 255) return -1;
    la = { id, address, backup };
    c.paths.localAddresses.push(la);
  }
  if (c.role !== 'client' || !join.joinsAllowed(c)) return la.id;
  const inUse = [...c.subflows.values()].some((s) => s.open && s.localAddressId === la.id);
  if (!inUse) resume.joinFrom(c, { localAddressId: la.id, remoteAddressId: 0, backup: la.backup }, now);
  return la.id;
}

/** Client: a local address vanished: its subflows close ('removed'); it is no longer joined from. */
export function removeLocalAddress(c: Connection, address: string, now: number): void {
  const i = c.paths.localAddresses.findIndex((a) => a.address === address);
  if (i < 0) return;
  const id = c.paths.localAddresses[i].id;
  c.paths.localAddresses.splice(i, 1);
  for (const s of [...c.subflows.values()]) {
    if (!s.open || s.localAddressId !== id) continue;
    c.control.push({ subflow: s.id, segment: { options: [] }, close: 'reset' });
    c.subflowDown(s, 'removed', now);
    if (c.state === 'closed') return;
  }
}
