/**
 * The receive side: DSS mappings in, payload delivery into the assembler, the receive window, data ACKs out, the peer's DATA_FIN (authenticated in external mode). Owns `RecvState`.
 */
import type { DssOption } from '../../wire/types.js';
import { TcpRstReason } from '../../wire/types.js';
import { dataFinHmac, timingSafeEqual } from '../../crypto/index.js';
import { Assembler } from '../assembler.js';
import { BOUNDS } from '../config.js';
import type { Subflow } from '../subflow.js';
import type { Segment, Transmit } from '../types.js';
import * as handshake from './handshake.js';
import * as send from './send.js';
import type { Connection } from './index.js';
import { MASK64, sameMap } from './constants.js';

/** State owned by recv.ts. */
export class RecvState {
  // receive side
  readonly asm = new Assembler();
  advertisedRightEdge = 0;
  peerFinAt: number | undefined;
  peerFinDone = false;
  readableSignalled = false;
  lastRxSubflow: number | undefined;
  windowUpdatePending = false;
  /** DATA_FINs that arrived before our keys, checked by installKeys. */
  heldFins: { finAt: number; mac: Uint8Array }[] = [];
  ackCacheAt = -1;
  ackCache = 0n;
}

// ─── data in ─────────────────────────────────────────────────────────────
export function dsnToOffset(c: Connection, dsn: bigint, is64: boolean, idsn: bigint, near: number): number {
  let full: bigint;
  if (is64) full = dsn;
  else {
    const ref = (idsn + 1n + BigInt(near)) & MASK64;
    full = (ref & ~0xffffffffn) | dsn;
    if (full - ref > 0x80000000n) full -= 0x100000000n;
    else if (ref - full > 0x80000000n) full += 0x100000000n;
    full &= MASK64;
  }
  const off = (full - idsn - 1n) & MASK64;
  return off > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(off);
}

/** Returns false when the subflow was reset. */
export function handleMapping(c: Connection, sf: Subflow, dss: DssOption, finMac: Uint8Array | undefined): boolean {
  const start = dsnToOffset(c, dss.dsn!, !!dss.dsnIs64, c.keys.idsnRemote, c.recv.asm.rcvNxt);
  const dll = dss.dataLevelLength ?? 0;
  if (dss.dataFin && dss.ssn === 0 && dll === 1) {
    // DATA_FIN alone (RFC 8684 §3.3.3: subflow sequence number 0).
    if (start < 0) {
      c.mib.inc('DSSNotMatching');
      return true;
    }
    if (finAuthentic(c, start, finMac)) sf.rxMap = { start, ssn: sf.rcvSsn, len: 0, finAt: start };
    return true;
  }
  const len = dss.dataFin ? dll - 1 : dll;
  if (start < 0 || len < 0 || dss.ssn !== sf.rcvSsn || (sf.rxMap && sf.rcvSsn < sf.rxMap.ssn + sf.rxMap.len && !sameMap(sf.rxMap, start, dss.ssn, len))) {
    // A mapping must start where the subflow's payload stands (mptls sends
    // each mapping with its first byte); anything else is corruption.
    c.mib.inc('DSSNotMatching');
    c.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, 'error', 0);
    return false;
  }
  const fin = dss.dataFin && finAuthentic(c, start + len, finMac);
  sf.rxMap = { start, ssn: dss.ssn!, len, finAt: fin ? start + len : undefined };
  return true;
}

/**
 * External keys: a DATA_FIN counts only with the MAC of the key holder
 * (docs/PROTOCOL.md §3.1), so an attacker on one path cannot end the
 * stream early (truncation) or make the real DATA_FIN be ignored. One that
 * arrives before our keys are installed is held (at most a few) and
 * checked when they are. rfc8684 mode: unauthenticated, as in RFC 8684.
 */
export function finAuthentic(c: Connection, finAt: number, mac: Uint8Array | undefined): boolean {
  if (c.mode !== 'external') return true;
  if (!mac) {
    c.mib.inc('DataFinAuthFailure');
    return false;
  }
  if (!c.keys.installed) {
    if (c.recv.heldFins.some((f) => f.finAt === finAt && timingSafeEqual(f.mac, mac))) return false; // a retransmission
    if (c.recv.heldFins.length < BOUNDS.maxHeldFins) c.recv.heldFins.push({ finAt, mac });
    else c.mib.inc('DataFinAuthFailure');
    return false;
  }
  const dsn = (c.keys.idsnRemote + 1n + BigInt(finAt)) & MASK64;
  if (!timingSafeEqual(dataFinHmac(c.keys.remote!, c.keys.local!, dsn), mac)) {
    c.mib.inc('DataFinAuthFailure');
    return false;
  }
  return true;
}

export function checkHeldFins(c: Connection): void {
  const held = c.recv.heldFins;
  c.recv.heldFins = [];
  for (const f of held) {
    if (finAuthentic(c, f.finAt, f.mac)) {
      const sf = c.anyEstablished(c.recv.lastRxSubflow);
      if (sf) handlePeerFin(c, f.finAt, sf);
    }
  }
}

export function handlePayload(c: Connection, sf: Subflow, payload: Uint8Array, now: number): boolean {
  let p = payload;
  while (p.length > 0) {
    const m = sf.rxMap;
    if (!m || sf.rcvSsn >= m.ssn + m.len) {
      c.mib.inc('DSSNoMapping');
      c.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, 'error', now);
      return false;
    }
    const n = Math.min(p.length, m.ssn + m.len - sf.rcvSsn);
    const off = m.start + (sf.rcvSsn - m.ssn);
    if (!deliver(c, off, n === p.length ? p : p.subarray(0, n))) {
      c.mib.inc('ProtocolError');
      c.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, 'error', now);
      return false;
    }
    sf.rcvSsn += n;
    sf.bytesReceived += n;
    p = p.subarray(n);
    if (sf.rcvSsn === m.ssn + m.len) {
      if (m.finAt !== undefined) handlePeerFin(c, m.finAt, sf);
      sf.rxMap = null;
    }
  }
  sf.unackedBytes += payload.length;
  if (sf.ackDueAt === Infinity) sf.ackDueAt = now + c.timers.delayedAckMs;
  if (sf.unackedBytes >= c.limits.ackEveryBytes) sf.ackPending = true;
  c.recv.lastRxSubflow = sf.id;
  return true;
}

/** Returns false when the peer's data had to be refused (the caller resets the subflow). */
export function deliver(c: Connection, offset: number, data: Uint8Array): boolean {
  const edge = c.recv.advertisedRightEdge;
  if (offset + data.length > edge) {
    c.mib.inc('RcvWndExceeded');
    if (offset >= edge) return true;
    data = data.subarray(0, edge - offset);
  }
  const before = c.recv.asm.rcvNxt;
  const r = c.recv.asm.insert(offset, data, 2 * c.limits.recvBufferLimit);
  if (r.overLimit) {
    // Only a peer that shreds data into tiny out-of-order pieces gets here.
    c.mib.inc('RcvPruned');
    return false;
  }
  if (r.duplicate > 0) c.mib.inc('DuplicateData');
  if (r.outOfOrder && r.accepted > 0) {
    c.mib.inc('OFOQueue');
    if (r.atTail) c.mib.inc('OFOQueueTail');
  }
  if (c.recv.asm.rcvNxt > before) {
    if (c.recv.peerFinAt !== undefined && c.recv.asm.rcvNxt === c.recv.peerFinAt) consumePeerFin(c);
    if (!c.recv.readableSignalled) {
      c.recv.readableSignalled = true;
      c.events.push({ type: 'readable' });
    }
  }
  return true;
}

export function handlePeerFin(c: Connection, finAt: number, sf: Subflow): void {
  if (c.recv.peerFinAt !== undefined || finAt < c.recv.asm.rcvNxt) return;
  c.recv.peerFinAt = finAt;
  c.mib.inc('DataFinRx');
  sf.ackPending = true;
  c.recv.lastRxSubflow = sf.id;
  if (c.recv.asm.rcvNxt === finAt) consumePeerFin(c);
}

export function consumePeerFin(c: Connection): void {
  if (c.recv.peerFinDone) return;
  c.recv.asm.advance(1);
  c.recv.peerFinDone = true;
  c.recv.windowUpdatePending = true;
  c.events.push({ type: 'data-fin' });
  c.maybeFinished();
}

/** The next in-order bytes for the application, or null. */
export function read(c: Connection): Uint8Array | null {
  const d = c.recv.asm.read();
  if (d === null) {
    c.recv.readableSignalled = false;
    return null;
  }
  // Reopen the window when it grew by a useful amount.
  const edge = c.recv.asm.rcvNxt + (c.limits.recvBufferLimit - c.recv.asm.buffered);
  if (edge - c.recv.advertisedRightEdge >= Math.max(c.mss, c.limits.recvBufferLimit / 8)) c.recv.windowUpdatePending = true;
  return d;
}

export function windowToAdvertise(c: Connection): number {
  const edge = Math.max(c.recv.advertisedRightEdge, c.recv.asm.rcvNxt + (c.limits.recvBufferLimit - c.recv.asm.buffered));
  c.recv.advertisedRightEdge = edge;
  return Math.min(0xffffffff, edge - c.recv.asm.rcvNxt);
}

/** The 64-bit data ACK, recomputed only when rcvNxt moved (BigInt math allocates). */
export function dataAck64(c: Connection): bigint {
  const n = c.recv.asm.rcvNxt;
  if (n !== c.recv.ackCacheAt) {
    c.recv.ackCacheAt = n;
    c.recv.ackCache = (c.keys.idsnRemote + 1n + BigInt(n)) & MASK64;
  }
  return c.recv.ackCache;
}

export function dssAck(c: Connection): DssOption {
  return { subtype: 'DSS', dataFin: false, dataAck: dataAck64(c), dataAckIs64: true };
}

export function nextAck(c: Connection, now: number): Transmit | null {
  let target: Subflow | undefined;
  for (const s of c.subflows.values()) {
    if (s.ackPending && s.established) {
      target = s;
      break;
    }
    if (s.ackPending && !s.established) s.ackPending = false;
  }
  if (!target && c.recv.windowUpdatePending) {
    // A window update (or the ACK of a DATA_FIN) that nothing else will
    // repeat: send it on every established subflow, so one that died
    // silently cannot swallow it.
    c.recv.windowUpdatePending = false;
    for (const s of c.subflows.values()) if (s.established) s.ackPending = true;
    target = c.anyEstablished(c.recv.lastRxSubflow);
    if (target) target.ackPending = false;
  }
  if (!target) return null;
  return c.account({ subflow: target.id, segment: { options: [dssAck(c)], window: windowToAdvertise(c) } });
}

/**
 * The data part of a segment on an established subflow: its subflow ACK,
 * the DSS (data ACK, mapping) and the payload. False when the subflow was
 * reset.
 */
export function handleData(c: Connection, sf: Subflow, seg: Segment, dss: DssOption | undefined, now: number): boolean {
  if (seg.ack !== undefined) send.handleSubflowAck(c, sf, seg.ack, now);
  if (dss && c.mode === 'rfc8684' && !c.keys.confirmed) handshake.confirmKeys(c, now);
  if (dss) {
    if (dss.dataAck !== undefined) send.handleDataAck(c, dss, seg.window, now);
    if (dss.dsn !== undefined && !handleMapping(c, sf, dss, seg.dataFinMac)) return false;
    else if (dss.dataFin && dss.dsn === undefined) {
      // DATA_FIN without mapping is meaningless (RFC 8684 §3.3.3): ignore.
      c.mib.inc('DSSNoMapping');
    }
  }
  if (seg.payload && seg.payload.length > 0) {
    if (!handlePayload(c, sf, seg.payload, now)) return false;
  } else if (sf.rxMap && sf.rxMap.len === 0 && sf.rxMap.finAt !== undefined) {
    handlePeerFin(c, sf.rxMap.finAt, sf);
    sf.rxMap = null;
  }
  return true;
}
