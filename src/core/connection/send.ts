/**
 * The send side: the send buffer and window, data ACKs in, the scheduler's pick, mappings in flight, reinjection, the DATA_FIN out. Owns `SendState` (offsets are data-level stream offsets; DSN = IDSN + 1 + offset).
 */
import type { DssOption } from '../../wire/types.js';
import { dataFinHmac } from '../../crypto/index.js';
import type { SchedSubflow } from '../scheduler.js';
import { SendBuffer } from '../send-buffer.js';
import type { Subflow, SentMapping } from '../subflow.js';
import type { Segment, Transmit } from '../types.js';
import * as recv from './recv.js';
import type { Connection } from './index.js';
import { MASK64 } from './constants.js';

/** State owned by send.ts. */
export class SendState {
  // send side (offsets are data-level stream offsets; DSN = IDSN + 1 + offset)
  readonly sendBuf = new SendBuffer();
  sndNxt = 0;
  sndUna = 0;
  peerRightEdge = 0;
  peerWindowKnown = false;
  reinject: { start: number; end: number }[] = [];
  finRequested = false;
  finSentOn: number | undefined;
  finEverSent = false;
  finSentAt = 0;
  finFirstSentAt = 0;
  finRetries = 0;
  finAvoid: number | undefined;
  finAcked = false;
  writableWanted = false;
  /** Reused per-subflow views for the scheduler (no allocation per segment). */
  readonly views = new Map<number, { id: number; backup: boolean; stale: boolean; srtt: number | undefined; hasRoom: boolean }>();
  readonly viewList: SchedSubflow[] = [];
  pendingRedundant: Transmit[] = [];
}

export function handleDataAck(c: Connection, dss: DssOption, window: number | undefined, now: number): void {
  const ack = recv.dsnToOffset(c, dss.dataAck!, !!dss.dataAckIs64, c.keys.idsnLocal, c.send.sndUna);
  const maxAck = c.send.finEverSent ? c.send.sendBuf.end + 1 : c.send.sndNxt;
  if (ack < 0 || ack > maxAck) {
    c.mib.inc('DataAckInvalid');
    return;
  }
  if (window !== undefined) {
    // The right edge never moves left (RFC 8684 §3.3.7).
    const edge = ack + window;
    if (edge > c.send.peerRightEdge || !c.send.peerWindowKnown) c.send.peerRightEdge = c.send.peerWindowKnown ? Math.max(edge, c.send.peerRightEdge) : edge;
    c.send.peerWindowKnown = true;
  }
  if (ack <= c.send.sndUna) return;
  c.send.sndUna = ack;
  const dataAck = Math.min(ack, c.send.sendBuf.end);
  c.send.sendBuf.ack(dataAck);
  if (c.send.finEverSent && ack === c.send.sendBuf.end + 1) c.send.finAcked = true;
  // Forget mappings the peer holds in order now.
  for (const s of c.subflows.values()) {
    if (s.outstanding.length === 0) continue;
    if (s.outstanding[0].end <= dataAck || s.outstanding.some((m) => m.end <= dataAck)) {
      s.outstanding = s.outstanding.filter((m) => m.end > dataAck);
    }
  }
  c.send.reinject = c.send.reinject.filter((r) => r.end > dataAck);
  if (c.send.reinject.length > 0 && c.send.reinject[0].start < dataAck) c.send.reinject[0].start = dataAck;
  if (c.send.writableWanted && c.send.sendBuf.held < c.limits.sendBufferLimit) {
    c.send.writableWanted = false;
    c.events.push({ type: 'writable' });
  }
  c.maybeFinished();
}

/** TCP's ACK, one subflow up: progress and RTT of this subflow alone. */
export function handleSubflowAck(c: Connection, sf: Subflow, ack: number, now: number): void {
  const expected = ((sf.ackedBytes + 1) >>> 0);
  const advance = (ack - expected) >>> 0;
  if (advance === 0) return;
  if (advance > sf.sentBytes - sf.ackedBytes) {
    c.mib.inc('DataAckInvalid');
    return;
  }
  sf.ackedBytes += advance;
  sf.lastProgress = now;
  let sample: SentMapping | undefined;
  for (const m of sf.outstanding) {
    if (m.subflowEnd <= sf.ackedBytes) sample = m;
    else break;
  }
  // Each mapping's first transmission on this subflow: a valid RTT sample
  // even for reinjected data (Karn's ambiguity is per subflow).
  if (sample && sample.sentAt > sf.lastSampleAt) {
    sf.sampleRtt(now - sample.sentAt);
    sf.lastSampleAt = sample.sentAt;
  }
  if (sf.stale) c.recover(sf);
}

// ─── data out ────────────────────────────────────────────────────────────

/**
 * Queues bytes for sending (kept by reference: do not reuse the buffer).
 * Returns false when the send buffer is over its limit: wait for 'writable'.
 */
export function write(c: Connection, data: Uint8Array): boolean {
  if (c.send.finRequested || c.state === 'closed') throw new TypeError('write after close');
  c.send.sendBuf.push(data);
  const ok = c.send.sendBuf.held < c.limits.sendBufferLimit;
  if (!ok) c.send.writableWanted = true;
  return ok;
}

export function schedView(c: Connection): SchedSubflow[] {
  const out = c.send.viewList;
  out.length = 0;
  const limit = c.limits.sendQueueLimit;
  for (const s of c.subflows.values()) {
    if (!s.established) continue;
    let v = c.send.views.get(s.id);
    if (!v) {
      v = { id: s.id, backup: false, stale: false, srtt: undefined, hasRoom: false };
      c.send.views.set(s.id, v);
    }
    v.backup = s.backup;
    v.stale = s.stale;
    v.srtt = s.rtt;
    v.hasRoom = s.queued < limit;
    out.push(v);
  }
  return out;
}

export function nextDataTransmit(c: Connection, now: number): Transmit | null {
  const red = c.send.pendingRedundant.shift();
  if (red) return c.account(red);
  const hasReinject = c.send.reinject.length > 0;
  const newAvail = Math.min(c.send.sendBuf.end, c.send.peerRightEdge) - c.send.sndNxt;
  const finDue = c.send.finRequested && c.send.finSentOn === undefined && c.send.sndNxt === c.send.sendBuf.end;
  if (!hasReinject && newAvail <= 0 && !finDue) return null;
  const view = schedView(c);
  if (view.length === 0) return null;
  let chosen = c.scheduler.select(view);
  if (chosen.length === 0) {
    if (!finDue || hasReinject || newAvail > 0) return null;
    // A DATA_FIN is tiny: send it on the best usable subflow even when full.
    chosen = [view.find((v) => !v.stale && !v.backup) ?? view[0]];
  }
  let start: number;
  let payload: Uint8Array | undefined;
  if (hasReinject) {
    const r = c.send.reinject[0];
    start = Math.max(r.start, c.send.sndUna);
    payload = c.send.sendBuf.slice(start, Math.min(c.mss, r.end - start));
    r.start = start + payload.length;
    if (r.start >= r.end) c.send.reinject.shift();
    c.mib.inc('Reinjected');
    c.mib.inc('ReinjectedBytes', payload.length);
  } else if (newAvail > 0) {
    start = c.send.sndNxt;
    payload = c.send.sendBuf.slice(start, Math.min(c.mss, newAvail));
    c.send.sndNxt += payload.length;
  } else {
    // DATA_FIN alone. After a timeout, avoid the subflow that swallowed it.
    const pick = chosen.find((x) => x.id !== c.send.finAvoid) ?? view.find((v) => v.id !== c.send.finAvoid && !v.stale) ?? chosen[0];
    const sf = c.subflows.get(pick.id)!;
    c.send.finSentOn = sf.id;
    c.send.finSentAt = now;
    if (!c.send.finEverSent) c.send.finFirstSentAt = now;
    c.send.finEverSent = true;
    c.mib.inc('DataFinTx');
    const dsn = (c.keys.idsnLocal + 1n + BigInt(c.send.sendBuf.end)) & MASK64;
    const dss: DssOption = { subtype: 'DSS', dataFin: true, dataAck: recv.dataAck64(c), dataAckIs64: true, dsn, dsnIs64: true, ssn: 0, dataLevelLength: 1 };
    const segment: Segment = { options: [dss], window: recv.windowToAdvertise(c) };
    // External keys: the end of the stream carries the key holder's MAC.
    if (c.mode === 'external' && c.keys.installed) segment.dataFinMac = dataFinHmac(c.keys.local!, c.keys.remote!, dsn);
    return c.account({ subflow: sf.id, segment });
  }
  const first = buildData(c, chosen[0].id, start, payload, now);
  for (let i = 1; i < chosen.length; i++) {
    c.send.pendingRedundant.push(buildData(c, chosen[i].id, start, payload, now));
  }
  return c.account(first);
}

export function buildData(c: Connection, subflow: number, start: number, payload: Uint8Array, now: number): Transmit {
  const sf = c.subflows.get(subflow)!;
  // A literal of one fixed shape (an object spread here cost ~5 µs a frame).
  const dss: DssOption = {
    subtype: 'DSS',
    dataFin: false,
    dataAck: recv.dataAck64(c),
    dataAckIs64: true,
    dsn: (c.keys.idsnLocal + 1n + BigInt(start)) & MASK64,
    dsnIs64: true,
    ssn: sf.sndSsn,
    dataLevelLength: payload.length,
  };
  sf.sndSsn = (sf.sndSsn + payload.length) >>> 0;
  sf.bytesSent += payload.length;
  if (sf.sentBytes === sf.ackedBytes) sf.lastProgress = now;
  sf.sentBytes += payload.length;
  sf.outstanding.push({ start, end: start + payload.length, subflowEnd: sf.sentBytes, sentAt: now, reinjected: false });
  return { subflow, segment: { options: [dss], payload, window: recv.windowToAdvertise(c) } };
}

export function reinjectFrom(c: Connection, sf: Subflow): void {
  for (const m of sf.outstanding) {
    if (m.reinjected || m.end <= c.send.sndUna) continue;
    m.reinjected = true;
    addReinject(c, Math.max(m.start, c.send.sndUna), m.end);
  }
}

export function addReinject(c: Connection, start: number, end: number): void {
  if (end <= start) return;
  // Keep the list sorted and merged.
  const list = c.send.reinject;
  let i = 0;
  while (i < list.length && list[i].end < start) i++;
  let s = start;
  let e = end;
  while (i < list.length && list[i].start <= e) {
    s = Math.min(s, list[i].start);
    e = Math.max(e, list[i].end);
    list.splice(i, 1);
  }
  list.splice(i, 0, { start: s, end: e });
}

/**
 * A DATA_FIN takes no subflow sequence space, so subflow ACKs cannot show
 * it arrived: it is resent (on another subflow) when its data ACK is late.
 */
export function finDeadline(c: Connection): number {
  if (!c.send.finEverSent || c.send.finAcked || c.send.finSentOn === undefined) return Infinity;
  const sf = c.subflows.get(c.send.finSentOn);
  const rto = sf ? sf.stallTimeout(c.timers.minStallMs, c.timers.maxStallMs, c.timers.initialStallMs) : c.timers.minStallMs;
  return c.send.finSentAt + rto * 2 ** Math.min(c.send.finRetries, 6);
}
