/**
 * One MPTCP connection, sans I/O (model: quinn-proto's `Connection`).
 *
 * The driver feeds it segments (`handleSegment`), subflow closes
 * (`handleSubflowClosed`), application writes (`write`) and the time; it
 * drains what to send (`pollTransmit`), what happened (`pollEvent`), what the
 * application may read (`read`) and when to call again (`pollTimeout` →
 * `handleTimeout`). No sockets, no timers, no clock: `now` is milliseconds on
 * any monotonic scale the driver likes.
 *
 * Peer input never throws out of here: it is counted in the MIB and becomes a
 * dropped option, a reset subflow, or a closed connection with a reason.
 */
import type { MptcpOption, DssOption, MpJoinOption } from '../../wire/types.js';
import { TcpRstReason, TcpRstFlag } from '../../wire/types.js';
import { Mib } from '../mib.js';
import { InKernelLikePathManager, type PathManager } from '../path-manager.js';
import { createScheduler, type Scheduler } from '../scheduler.js';
import { Subflow } from '../subflow.js';
import type { RandomSource } from '../token.js';
import { DEFAULT_LIMITS, DEFAULT_MSS, DEFAULT_TIMERS } from '../config.js';
import type { AddressInfo, ClientConnectOptions, CloseReason, ConnectionEvent, ConnectionLimits, ConnectionOptions, ConnectionTimers, KeyMode, PathInfo, Role, Segment, SubflowDownReason, Transmit } from '../types.js';
import * as handshake from './handshake.js';
import * as join from './join.js';
import * as pm from './pm.js';
import * as send from './send.js';
import * as recv from './recv.js';
import * as timers from './timers.js';
import { KeyState } from './handshake.js';
import { SendState } from './send.js';
import { RecvState } from './recv.js';
import { PathState } from './pm.js';
import * as resume from './resume.js';
import { ResumeState } from './resume.js';
import { MAX_MSS, SEGMENT_OVERHEAD } from './constants.js';



export type ConnectionState = 'connecting' | 'established' | 'closed';

/** What the endpoint lends a connection. */
export interface ConnectionHost {
  random: RandomSource;
  mib: Mib;
  /** Called once when the connection closes (the endpoint frees its token). */
  release(conn: Connection): void;
  /** Server: the source a pending join from `path` counts under (EndpointOptions.joinSource). */
  joinSource(path: PathInfo): string;
  /**
   * Server: room endpoint-wide for one more pending join from `source` on
   * `conn`? The per-source cap first ('source-limit'); then, unless
   * `freeing` (the caller is about to evict one of its own pending joins),
   * a full pool evicts the oldest pending join of the busiest source when
   * that source holds more than `source` ('endpoint-limit' otherwise).
   * Takes no slot: `reserveJoin` does.
   */
  admitJoin(conn: Connection, source: string, freeing: boolean, now: number): 'ok' | 'source-limit' | 'endpoint-limit';
  /** Server: room for one more parked connection (every subflow lost)? Takes the slot. */
  park(conn: Connection): boolean;
  /** The parked connection was resumed or closed: its slot is free. */
  unpark(conn: Connection): void;
  /** Server: the pending join `subflow` of `conn` takes its slot. */
  reserveJoin(conn: Connection, subflow: number, source: string, now: number): void;
  /** Server: that join completed, failed or expired; a no-op when it holds no slot. */
  releaseJoin(conn: Connection, subflow: number): void;
}

export interface SubflowInfo {
  id: number;
  state: Subflow['state'];
  initial: boolean;
  localAddressId: number;
  remoteAddressId: number;
  localAddress?: string;
  localPort?: number;
  remoteAddress?: string;
  remotePort?: number;
  backup: boolean;
  stale: boolean;
  bytesSent: number;
  bytesReceived: number;
  rttMs?: number;
  queued: number;
}

export type JoinResult = { ok: true; subflow: number } | { ok: false; reply: Segment; reason: string };

export class Connection {
  /** @internal */ readonly keys = new KeyState();
  /** @internal */ readonly send = new SendState();
  /** @internal */ readonly recv = new RecvState();
  /** @internal */ readonly paths = new PathState();
  /** @internal */ readonly resume = new ResumeState();

  readonly role: Role;
  readonly mode: KeyMode;
  readonly mib: Mib;
  state: ConnectionState = 'connecting';
  closeReason: CloseReason | undefined;

  /** Tokens: ours identifies this connection at our endpoint, the peer's at its. */
  localToken = 0;
  remoteToken = 0;
  /** @internal */ readonly limits: ConnectionLimits;
  /** @internal */ readonly timers: ConnectionTimers;
  /** @internal */ readonly mss: number;
  /** @internal */ readonly scheduler: Scheduler;
  /** @internal */ readonly pm: PathManager;
  /** @internal */ readonly host: ConnectionHost;
  /** @internal */ readonly subflows = new Map<number, Subflow>();
  /** @internal */ nextSubflowId = 0;
  /** @internal */ readonly control: Transmit[] = [];
  /** @internal */ readonly events: ConnectionEvent[] = [];
  /** @internal */ readonly timerTable = new timers.TimerTable();
  /** @internal */ pendingJoins = 0;

  /** @internal Use `Endpoint.connect` / `Endpoint.handleNewSubflow`. */
  constructor(init: {
    role: Role;
    mode: KeyMode;
    host: ConnectionHost;
    options: Omit<ConnectionOptions, 'mode'> & Partial<Pick<ClientConnectOptions, 'addAddrPolicy' | 'allowAnnouncedPorts'>>;
    now: number;
    localAddresses?: { address: string; backup?: boolean }[];
    remote?: AddressInfo;
    announce?: AddressInfo[];
  }) {
    this.role = init.role;
    this.mode = init.mode;
    this.host = init.host;
    this.mib = new Mib(init.host.mib);
    this.limits = { ...DEFAULT_LIMITS, ...init.options.limits };
    this.timers = { ...DEFAULT_TIMERS, ...init.options.timers };
    const mss = init.options.mss ?? DEFAULT_MSS;
    if (!Number.isInteger(mss) || mss < 1 || mss > MAX_MSS - 1) throw new RangeError(`mss must be 1..${MAX_MSS - 1}`);
    this.mss = mss;
    const sched = init.options.scheduler;
    this.scheduler = typeof sched === 'object' ? sched : createScheduler(sched);
    this.pm = init.options.pathManager ?? new InKernelLikePathManager();
    this.timerTable.set(timers.Timer.Establish, init.now + this.timers.establishTimeoutMs);
    (init.localAddresses ?? []).forEach((a, i) => this.paths.localAddresses.push({ id: i, address: a.address, backup: !!a.backup }));
    if (init.remote) this.paths.remoteAddresses.push({ id: 0, address: init.remote.address, port: init.remote.port });
    this.paths.addAddrPolicy = init.options.addAddrPolicy;
    this.paths.allowAnnouncedPorts = init.options.allowAnnouncedPorts === true;
    this.paths.announceConfig = init.announce ?? [];
  }

  // ─── public state ────────────────────────────────────────────────────────

  get isEstablished(): boolean {
    return this.state === 'established';
  }

  /** Both tokens are known (the MP_CAPABLE exchange is done): the keys' context exists. */
  get tokensExchanged(): boolean {
    return this.keys.capable === 'done';
  }

  get areKeysConfirmed(): boolean {
    return this.keys.confirmed;
  }
  /** Bytes written and not yet data-ACKed. */
  get bufferedAmount(): number {
    return this.send.sendBuf.held;
  }
  /** Stream offset below which every written byte is data-ACKed (written bytes − bufferedAmount). */
  get sendAcked(): number {
    return this.send.sendBuf.end - this.send.sendBuf.held;
  }
  /** Bytes held by the receive side (unread in-order + out-of-order). */
  get receiveBuffered(): number {
    return this.recv.asm.heldBytes;
  }

  get bytesAcked(): number {
    return this.send.sndUna;
  }

  get bytesReceivedInOrder(): number {
    return this.recv.asm.rcvNxt;
  }

  get peerFinished(): boolean {
    return this.recv.peerFinDone;
  }

  get finished(): boolean {
    return this.send.finAcked;
  }

  /** 'parked': every subflow was lost and the connection waits for a resume (a join), at most `resumeTimeoutMs`. */
  get pathState(): 'active' | 'parked' {
    return resume.isParked(this) ? 'parked' : 'active';
  }

  /**
   * Client: a local address appeared (or came back). Joins from it once the
   * keys are confirmed, at once while the connection is parked. Returns its
   * address id.
   */
  addLocalAddress(address: string, backup: boolean, now: number): number {
    return pm.addLocalAddress(this, address, backup, now);
  }

  /** Client: a local address vanished; its subflows close ('removed'). */
  removeLocalAddress(address: string, now: number): void {
    pm.removeLocalAddress(this, address, now);
  }

  counters() {
    return this.mib.snapshot();
  }

  subflowInfo(): SubflowInfo[] {
    return [...this.subflows.values()].map((s) => ({
      id: s.id,
      state: s.state,
      initial: s.initial,
      localAddressId: s.localAddressId,
      remoteAddressId: s.remoteAddressId,
      localAddress: s.path.localAddress,
      localPort: s.path.localPort,
      remoteAddress: s.path.remoteAddress,
      remotePort: s.path.remotePort,
      backup: s.backup,
      stale: s.stale,
      bytesSent: s.bytesSent,
      bytesReceived: s.bytesReceived,
      rttMs: s.rtt,
      queued: s.queued,
    }));
  }
  /** Stall timeout (ms) the core would use now for a subflow: for tests and diagnostics. */
  stallTimeoutOf(subflow: number): number | undefined {
    const s = this.subflows.get(subflow);
    return s?.stallTimeout(this.timers.minStallMs, this.timers.maxStallMs, this.timers.initialStallMs);
  }

  /**
   * Installs the application's keys (external mode): keyA is the initiator's
   * (client's), keyB the responder's, 8 bytes each, equal on both sides.
   * Sends NEW_KEY (K=0) to prove possession; joins and ADD_ADDR start once
   * the peer's NEW_KEY verifies.
   */
  installKeys(keyA: Uint8Array, keyB: Uint8Array, now: number): void {
    handshake.installKeys(this, keyA, keyB, now);
  }

  /** Server: announce an address (ADD_ADDR with HMAC); allowed once keys are confirmed. */
  announce(a: AddressInfo): number | undefined {
    return pm.announce(this, a);
  }

  /** Withdraw an announced address (REMOVE_ADDR): the peer closes its subflows to it. */
  removeAddress(addressId: number): void {
    pm.removeAddress(this, addressId);
  }

  /** Mark a subflow backup (or not) for both directions: local choice plus MP_PRIO to the peer. */
  setBackup(subflow: number, backup: boolean): void {
    pm.setBackup(this, subflow, backup);
  }

  /** Close one subflow gracefully without closing the connection. */
  closeSubflow(subflow: number, now: number): void {
    const sf = this.subflows.get(subflow);
    if (!sf || !sf.open) return;
    this.control.push({ subflow: sf.id, segment: { options: [] }, close: 'fin' });
    this.subflowDown(sf, 'closed', now);
  }

  // ─── input ───────────────────────────────────────────────────────────────

  /** A segment arrived on `subflow`. */
  handleSegment(subflow: number, seg: Segment, now: number): void {
    const sf = this.subflows.get(subflow);
    if (!sf || !sf.open || this.state === 'closed') return;
    if (sf.stale) this.recover(sf); // it carries traffic again
    try {
      this.processSegment(sf, seg, now);
    } catch (err) {
      // A bug or an input we did not foresee: never let it out.
      this.mib.inc('ProtocolError');
      this.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, 'error', now);
    }
  }

  /**
   * The driver saw the subflow's TCP connection end (FIN), reset or fail;
   * 'connect-refused': its SYN was answered with a TCP RST (ECONNREFUSED).
   * From the server's own address (the one the connection was opened to)
   * that says nobody listens there any more, a join refusal like MP_TCPRST
   * (a parked connection closes at once instead of waiting out its resume
   * timeout); from an announced address it is a path that does not work.
   */
  handleSubflowClosed(subflow: number, reason: 'fin' | 'reset' | 'error' | 'connect-refused', now: number): void {
    const sf = this.subflows.get(subflow);
    if (!sf || !sf.open) return;
    this.subflowDown(sf, reason === 'connect-refused' ? (sf.remoteAddressId === 0 ? 'refused' : 'reset') : reason, now);
  }

  /** The driver's count of bytes it holds unsent for this subflow. */
  setSendQueue(subflow: number, bytes: number): void {
    const sf = this.subflows.get(subflow);
    if (sf) sf.queued = Math.max(0, bytes);
  }

  /**
   * The driver saw the subflow's path work at `at` (Linux TCP_INFO: nothing
   * unacknowledged, or the last TCP ACK that recent): data still unacked at
   * the subflow level is queued at the peer, not lost on the way, so the
   * subflow is not stalled (no reinjection of what the path delivers).
   */
  setSubflowPathAlive(subflow: number, at: number): void {
    const sf = this.subflows.get(subflow);
    if (sf && at > sf.pathAliveAt) sf.pathAliveAt = at;
  }

  /** An RTT the driver measured (TCP_INFO), used by the scheduler instead of the core's own estimate. */
  setSubflowRtt(subflow: number, rttMs: number | undefined): void {
    const sf = this.subflows.get(subflow);
    if (sf) sf.externalRtt = rttMs;
  }
  /**
   * @internal One segment: parse its options once, then hand each to its
   * owner in a fixed order (Linux `mptcp_incoming_options()`): resets and
   * fast closes first, then the handshake options (they change what the
   * rest means), then the DSS (acks, mapping, payload), then path
   * management and keys.
   */
  processSegment(sf: Subflow, seg: Segment, now: number): void {
    const o = parseOptions(seg.options);
    if (o.rst) {
      this.onTcpRst(sf, o.rst, now);
      return;
    }
    if (o.fastclose && handshake.handleFastclose(this, o.fastclose.receiverKey, now)) return;
    for (const h of o.handshake) {
      if (h.subtype === 'MP_CAPABLE' ? !handshake.handleCapable(this, sf, h, now) : !join.handleJoin(this, sf, h, now)) return;
    }
    const dss = o.dss;
    if (sf.initial && this.role === 'client' && this.keys.capable === 'syn-sent' && (dss || seg.payload?.length)) {
      // G mode lets our data go first, never the server's: its SYN/ACK
      // (tokenB) must come before its first data.
      this.mib.inc('ProtocolError');
      this.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, 'error', now);
      return;
    }
    if (!sf.established) {
      if (dss || seg.payload?.length) {
        this.mib.inc('ProtocolError');
        this.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, 'error', now);
      }
      return;
    }
    if (!recv.handleData(this, sf, seg, dss, now)) return;
    for (const a of o.addAddr) pm.handleAddAddr(this, a, now);
    for (const r of o.removeAddr) pm.handleRemoveAddrOption(this, r, now);
    if (o.prio) pm.handlePrio(this, sf, o.prio);
    if (o.fail) this.mib.inc('MPFailRx'); // mptls negotiates no DSS checksum: a checksum failure cannot be ours to report
    if (o.newKey) handshake.handleNewKey(this, o.newKey, now);
  }

  /** @internal An MP_TCPRST on `sf`. */
  onTcpRst(sf: Subflow, rst: Extract<MptcpOption, { subtype: 'MP_TCPRST' }>, now: number): void {
    this.mib.inc('MPRstRx');
    if (sf.initial && this.role === 'client' && this.keys.capable === 'syn-sent') {
      // The server answered our MP_CAPABLE SYN with a reset (its token
      // table is full, or it refuses the mode): the connection is
      // 'refused', which a client may turn into plain-TLS fallback.
      this.mib.inc('MPCapableRefused');
      this.subflowDown(sf, 'refused', now);
      return;
    }
    // T (transient) invites a retry; without it the peer refuses for good.
    this.subflowDown(sf, (rst.flags & TcpRstFlag.TRANSIENT) !== 0 ? 'reset' : 'refused', now);
  }

  /**
   * @internal Server: an MP_JOIN SYN for this connection arrived on a new
   * subflow (the endpoint found the token).
   */
  acceptJoin(o: Extract<MpJoinOption, { stage: 'syn' }>, path: PathInfo, now: number): JoinResult {
    return join.acceptJoin(this, o, path, now);
  }

  /**
   * @internal Server: take back the slot of pending join `subflow` (waiting
   * for its MP_JOIN ACK) for a newcomer from a less busy source: MP_TCPRST
   * T=1 (the joiner may retry), `MPJoinEvicted`. False (and the endpoint's
   * slot freed) when it is no longer pending.
   */
  evictPendingJoin(subflow: number, now: number): boolean {
    return join.evictPendingJoin(this, subflow, now);
  }

  /** The next in-order bytes for the application, or null. */
  read(): Uint8Array | null {
    return recv.read(this);
  }

  /** Bytes ready for `read()`. */
  get readableLength(): number {
    return this.recv.asm.readable;
  }

  // ─── data out ────────────────────────────────────────────────────────────

  /**
   * Queues bytes for sending (kept by reference: do not reuse the buffer).
   * Returns false when the send buffer is over its limit: wait for 'writable'.
   */
  write(data: Uint8Array): boolean {
    return send.write(this, data);
  }

  /** Half-close: DATA_FIN after everything written. */
  close(now: number): void {
    if (this.send.finRequested || this.state === 'closed') return;
    this.send.finRequested = true;
    this.maybeFinished();
  }

  /** MP_FASTCLOSE (authenticated by the peer's key when we know it) and reset every subflow. */
  abort(now: number): void {
    this.abortInternal('aborted', now);
  }
  /** @internal */ abortInternal(reason: CloseReason, now: number): void {
    if (this.state === 'closed') return;
    // After a key mismatch our view of the peer's key is what disagrees: a
    // MP_FASTCLOSE would not verify there, so every subflow gets MP_TCPRST
    // (PROTOCOL.md §1.2). The peer, whose check of our NEW_KEY failed too,
    // closes on its own.
    const canFastclose = reason !== 'key-mismatch' && this.keys.remote !== undefined && (this.mode === 'rfc8684' || this.keys.installed);
    for (const s of this.subflows.values()) {
      if (!s.open) continue;
      const options: MptcpOption[] = canFastclose
        ? [{ subtype: 'MP_FASTCLOSE', receiverKey: this.keys.remote! }]
        : [{ subtype: 'MP_TCPRST', flags: 0, reason: TcpRstReason.MPTCP_SPECIFIC }];
      this.mib.inc(canFastclose ? 'MPFastcloseTx' : 'MPRstTx');
      this.control.push({ subflow: s.id, segment: { options }, close: 'reset' });
    }
    this.closeWith(reason);
  }
  /** @internal */ closeWith(reason: CloseReason): void {
    if (this.state === 'closed') return;
    resume.onClosed(this);
    this.state = 'closed';
    this.closeReason = reason;
    for (const s of this.subflows.values()) {
      if (s.open) {
        s.state = 'closed';
        if (this.role === 'server' && !s.initial) this.host.releaseJoin(this, s.id);
      }
    }
    this.send.reinject = [];
    this.events.push({ type: 'closed', reason });
    this.host.release(this);
  }
  /** @internal */ maybeFinished(): void {
    if (this.state !== 'established') return;
    if (this.send.finAcked && this.recv.peerFinDone) {
      // Both directions done: send the last ACK, then FIN every subflow.
      for (const s of this.subflows.values()) {
        if (!s.open) continue;
        const last: Transmit = { subflow: s.id, segment: { options: [recv.dssAck(this)], window: recv.windowToAdvertise(this) }, close: 'fin' };
        this.control.push(last);
      }
      this.closeWith('done');
    }
  }

  // ─── output ──────────────────────────────────────────────────────────────

  queue(sf: Subflow, options: MptcpOption[], withWindow = false): void {
    const segment: Segment = { options };
    if (withWindow) segment.window = recv.windowToAdvertise(this);
    this.control.push({ subflow: sf.id, segment });
  }
  /** @internal */ anyEstablished(prefer?: number): Subflow | undefined {
    if (prefer !== undefined) {
      const p = this.subflows.get(prefer);
      if (p?.established && !p.stale) return p;
    }
    let best: Subflow | undefined;
    for (const s of this.subflows.values()) {
      if (!s.established) continue;
      if (!best || (best.stale && !s.stale) || (best.backup && !s.backup && !s.stale)) best = s;
    }
    return best;
  }

  /** The next segment to send, or null when there is nothing (call again after input or a timeout). */
  pollTransmit(now: number): Transmit | null {
    const c = this.control.shift();
    if (c) return this.account(c);
    if (this.state !== 'established') return null;
    const data = send.nextDataTransmit(this, now);
    if (data) return data;
    return recv.nextAck(this, now);
  }
  /** @internal */ account(t: Transmit): Transmit {
    const sf = this.subflows.get(t.subflow);
    if (sf) {
      const size = (t.segment.payload?.length ?? 0) + SEGMENT_OVERHEAD;
      sf.queued += size;
      // The first frame of a subflow (its MP_CAPABLE or MP_JOIN SYN / SYN/ACK) carries no ack, so its bytes sit at fixed offsets (PROTOCOL.md §5.3).
      const first = sf.framesSent++ === 0;
      if (sf.established && !first) {
        t.segment.ack = sf.rcvSsn;
        sf.ackPending = false;
        sf.unackedBytes = 0;
        sf.ackDueAt = Infinity;
      }
      if (t.close && sf.open) sf.state = 'closed';
    }
    return t;
  }

  // ─── subflow loss and stalls ─────────────────────────────────────────────

  resetSubflow(sf: Subflow, reason: number, why: SubflowDownReason, now: number): void {
    if (!sf.open) return;
    this.mib.inc('MPRstTx');
    this.control.push({ subflow: sf.id, segment: { options: [{ subtype: 'MP_TCPRST', flags: 0, reason }] }, close: 'reset' });
    this.subflowDown(sf, why, now);
  }
  /** @internal */ subflowDown(sf: Subflow, reason: SubflowDownReason, now: number): void {
    const wasPendingJoin = !sf.initial && (sf.state === 'join-syn-sent' || sf.state === 'join-held' || sf.state === 'join-syn-received');
    if (wasPendingJoin) {
      this.pendingJoins = Math.max(0, this.pendingJoins - 1);
      if (this.role === 'server') this.host.releaseJoin(this, sf.id);
    }
    const wasInitialHandshake = sf.initial && this.keys.capable !== 'done';
    sf.state = 'closed';
    send.reinjectFrom(this, sf);
    if (this.send.finSentOn === sf.id && !this.send.finAcked) this.send.finSentOn = undefined; // resend the DATA_FIN elsewhere
    this.events.push({ type: 'subflow-down', subflow: sf.id, reason });
    this.subflows.delete(sf.id);
    this.send.views.delete(sf.id);
    if (this.state === 'closed') return;
    if (wasInitialHandshake) {
      this.closeWith(reason === 'refused' && this.role === 'client' ? 'refused' : 'reset');
      return;
    }
    if (!resume.onSubflowDown(this, sf, reason, wasPendingJoin, now)) pm.scheduleRejoin(this, sf, reason, wasPendingJoin, now);
    if ((this.state as ConnectionState) === 'closed') return;
    // Acks and window updates that went down with it must be repeated, and
    // announcements it carried that were never echoed.
    this.recv.windowUpdatePending = true;
    for (const [id, a] of this.paths.unechoed) if (a.sentOn === sf.id) pm.sendAddAddr(this, id);
    if (this.mode === 'external' && this.keys.installed) handshake.onNewKeyCarrierDown(this, sf.id);
    let alive = 0;
    for (const s of this.subflows.values()) if (s.open) alive++;
    if (alive > 0) return;
    if (this.send.finAcked && this.recv.peerFinDone) this.closeWith('done');
    else if (!resume.park(this, now)) this.closeWith('no-subflows');
  }
  /** @internal */ recover(sf: Subflow): void {
    sf.stale = false;
    // It carried on by itself: the stall was spurious; wait longer next time.
    sf.stallBackoff = Math.min(8, sf.stallBackoff * 2);
    resume.onRecover(this);
    this.mib.inc('SubflowRecover');
  }

  /** The earliest time `handleTimeout` has work to do, or null. */
  pollTimeout(): number | null {
    return timers.pollTimeout(this);
  }

  handleTimeout(now: number): void {
    timers.handleTimeout(this, now);
  }

  /** The next event, or null. */
  pollEvent(): ConnectionEvent | null {
    return this.events.shift() ?? null;
  }

  // ─── helpers ─────────────────────────────────────────────────────────────

  addSubflow(state: Subflow['state'], opts: ConstructorParameters<typeof Subflow>[2]): Subflow {
    const sf = new Subflow(this.nextSubflowId++, state, opts);
    this.subflows.set(sf.id, sf);
    return sf;
  }
  /** @internal */ randomU32(): number {
    const b = this.host.random(4);
    return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
  }
}


/**
 * The one sanctioned way for tests and the fuzzer's key-leak scan to see a
 * connection's keys (copies). Not exported from the package root; nothing in
 * src/ calls it.
 */
export function keysForTesting(conn: Connection): { localKey?: Uint8Array; remoteKey?: Uint8Array } {
  return { localKey: conn.keys.local?.slice(), remoteKey: conn.keys.remote?.slice() };
}


type Opt<S extends MptcpOption['subtype']> = Extract<MptcpOption, { subtype: S }>;

/** A segment's options, sorted by owner (one pass, like Linux `mptcp_parse_option`). */
interface ParsedOptions {
  rst?: Opt<'MP_TCPRST'>;
  fastclose?: Opt<'MP_FASTCLOSE'>;
  /** MP_CAPABLE and MP_JOIN, in the order they came. */
  handshake: (Opt<'MP_CAPABLE'> | Opt<'MP_JOIN'>)[];
  dss?: DssOption;
  addAddr: Opt<'ADD_ADDR'>[];
  removeAddr: Opt<'REMOVE_ADDR'>[];
  prio?: Opt<'MP_PRIO'>;
  fail?: Opt<'MP_FAIL'>;
  newKey?: Opt<'NEW_KEY'>;
}

function parseOptions(options: MptcpOption[]): ParsedOptions {
  const p: ParsedOptions = { handshake: [], addAddr: [], removeAddr: [] };
  for (const o of options) {
    switch (o.subtype) {
      case 'MP_TCPRST':
        p.rst ??= o;
        break;
      case 'MP_FASTCLOSE':
        p.fastclose ??= o;
        break;
      case 'MP_CAPABLE':
      case 'MP_JOIN':
        p.handshake.push(o);
        break;
      case 'DSS':
        p.dss = o;
        break;
      case 'ADD_ADDR':
        p.addAddr.push(o);
        break;
      case 'REMOVE_ADDR':
        p.removeAddr.push(o);
        break;
      case 'MP_PRIO':
        p.prio = o;
        break;
      case 'MP_FAIL':
        p.fail = o;
        break;
      case 'NEW_KEY':
        p.newKey = o;
        break;
      default:
        break;
    }
  }
  return p;
}
