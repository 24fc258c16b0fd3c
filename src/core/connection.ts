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
import type { MptcpOption, DssOption, MpCapableOption, AddAddrOption, NewKeyOption, MpJoinOption } from '../wire/types.js';
import { CapableFlag, TcpRstReason, TcpRstFlag } from '../wire/types.js';
import {
  addAddrHmac,
  dataFinHmac,
  idsnFromKey,
  idsnFromTokens,
  joinAckHmac,
  joinSynAckHmac,
  newKeyHmac,
  timingSafeEqual,
  tokenFromKey,
} from '../crypto/index.js';
import { Assembler } from './assembler.js';
import { Mib } from './mib.js';
import { InKernelLikePathManager, type JoinRequest, type PathManager, type PmContext } from './path-manager.js';
import { applyAddAddrPolicy, type AddAddrPolicyOption } from './address-policy.js';
import { createScheduler, type SchedSubflow, type Scheduler } from './scheduler.js';
import { SendBuffer } from './send-buffer.js';
import { Subflow, type SentMapping } from './subflow.js';
import type { RandomSource } from './token.js';
import type {
  AddressInfo,
  ClientConnectOptions,
  CloseReason,
  ConnectionEvent,
  ConnectionLimits,
  ConnectionOptions,
  ConnectionTimers,
  KeyMode,
  PathInfo,
  Role,
  Segment,
  SubflowDownReason,
  Transmit,
} from './types.js';

const MASK64 = (1n << 64n) - 1n;
const MAX_MSS = 65535;
/** What we may send before the peer's first window arrives (TCP's unscaled maximum). */
const INITIAL_PEER_WINDOW = 65535;
/** Bytes counted against a subflow's queue for a segment's framing and options. */
const SEGMENT_OVERHEAD = 40;
/** DATA_FINs held, unverified, while our keys are not installed yet. */
const MAX_HELD_FINS = 4;
/**
 * Echoes a client sends per ADD_ADDR address id over the connection's life:
 * the first, then one more each time the subflow that carried the last echo
 * went down (it may have been lost), up to this many. 256 ids × 4 bounds the
 * echoes a server can draw out of a client, however many ADD_ADDRs it sends.
 */
const MAX_ECHOES_PER_ID = 4;

export const DEFAULT_LIMITS: ConnectionLimits = {
  maxSubflows: 8,
  maxPendingJoins: 8,
  addAddrAccepted: 8,
  addAddrJoinFailures: 3,
  sendBufferLimit: 4 * 1024 * 1024,
  recvBufferLimit: 4 * 1024 * 1024,
  sendQueueLimit: 64 * 1024,
  ackEveryBytes: 64 * 1024,
};

export const DEFAULT_TIMERS: ConnectionTimers = {
  establishTimeoutMs: 10_000,
  joinTimeoutMs: 10_000,
  joinAckTimeoutMinMs: 1_000,
  joinAckTimeoutRtts: 4,
  minStallMs: 100,
  maxStallMs: 2_000,
  initialStallMs: 1_000,
  delayedAckMs: 5,
  userTimeoutMs: 30_000,
};

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

// Set by Connection's static block (it alone can read the #private keys); see keysForTesting.
// eslint-disable-next-line prefer-const
var readKeys: (c: Connection) => { localKey?: Uint8Array; remoteKey?: Uint8Array };

export type JoinResult = { ok: true; subflow: number } | { ok: false; reply: Segment; reason: string };

export class Connection {
  readonly role: Role;
  readonly mode: KeyMode;
  readonly mib: Mib;
  state: ConnectionState = 'connecting';
  closeReason: CloseReason | undefined;

  /** Tokens: ours identifies this connection at our endpoint, the peer's at its. */
  localToken = 0;
  remoteToken = 0;
  /** RFC 8684 keys (rfc8684 mode) or the installed external keys. */
  // #private: invisible to util.inspect and to any code outside this class.
  #localKey: Uint8Array | undefined;
  #remoteKey: Uint8Array | undefined;
  private keysInstalled = false;
  private keysConfirmed = false;
  private peerNewKey: NewKeyOption | undefined;
  private idsnLocal = 0n;
  private idsnRemote = 0n;

  private readonly limits: ConnectionLimits;
  private readonly timers: ConnectionTimers;
  private readonly mss: number;
  private readonly scheduler: Scheduler;
  private readonly pm: PathManager;
  private readonly host: ConnectionHost;

  private readonly subflows = new Map<number, Subflow>();
  private nextSubflowId = 0;
  private readonly localAddresses: { id: number; address: string; backup: boolean }[] = [];
  private readonly remoteAddresses: { id: number; address: string; port?: number }[] = [];
  private readonly announceConfig: AddressInfo[];
  private announcedIds = new Map<string, number>();
  private addAddrAcceptedCount = 0;

  // send side (offsets are data-level stream offsets; DSN = IDSN + 1 + offset)
  private readonly sendBuf = new SendBuffer();
  private sndNxt = 0;
  private sndUna = 0;
  private peerRightEdge = 0;
  private peerWindowKnown = false;
  private reinject: { start: number; end: number }[] = [];
  private finRequested = false;
  private finSentOn: number | undefined;
  private finEverSent = false;
  private finSentAt = 0;
  private finFirstSentAt = 0;
  private finRetries = 0;
  private finAvoid: number | undefined;
  private finAcked = false;
  private writableWanted = false;

  // receive side
  private readonly asm = new Assembler();
  private advertisedRightEdge = 0;
  private peerFinAt: number | undefined;
  private peerFinDone = false;
  private readableSignalled = false;
  private lastRxSubflow: number | undefined;
  private windowUpdatePending = false;

  private readonly control: Transmit[] = [];
  private readonly events: ConnectionEvent[] = [];
  private establishDeadline: number;
  private pendingJoins = 0;

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
    const mss = init.options.mss ?? 16384;
    if (!Number.isInteger(mss) || mss < 1 || mss > MAX_MSS - 1) throw new RangeError(`mss must be 1..${MAX_MSS - 1}`);
    this.mss = mss;
    const sched = init.options.scheduler;
    this.scheduler = typeof sched === 'object' ? sched : createScheduler(sched);
    this.pm = init.options.pathManager ?? new InKernelLikePathManager();
    this.establishDeadline = init.now + this.timers.establishTimeoutMs;
    (init.localAddresses ?? []).forEach((a, i) => this.localAddresses.push({ id: i, address: a.address, backup: !!a.backup }));
    if (init.remote) this.remoteAddresses.push({ id: 0, address: init.remote.address, port: init.remote.port });
    this.addAddrPolicy = init.options.addAddrPolicy;
    this.allowAnnouncedPorts = init.options.allowAnnouncedPorts === true;
    this.announceConfig = init.announce ?? [];
  }

  // ─── public state ────────────────────────────────────────────────────────

  get isEstablished(): boolean {
    return this.state === 'established';
  }
  get areKeysConfirmed(): boolean {
    return this.keysConfirmed;
  }
  /** Bytes written and not yet data-ACKed. */
  get bufferedAmount(): number {
    return this.sendBuf.held;
  }
  /** Bytes held by the receive side (unread in-order + out-of-order). */
  get receiveBuffered(): number {
    return this.asm.heldBytes;
  }
  get bytesAcked(): number {
    return this.sndUna;
  }
  get bytesReceivedInOrder(): number {
    return this.asm.rcvNxt;
  }
  get peerFinished(): boolean {
    return this.peerFinDone;
  }
  get finished(): boolean {
    return this.finAcked;
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

  // ─── handshake ───────────────────────────────────────────────────────────

  /** @internal Client: create the initial subflow and its MP_CAPABLE SYN. */
  startClient(now: number, local: { token?: number; key?: Uint8Array }): number {
    if (this.mode === 'external') this.localToken = local.token!;
    else {
      this.#localKey = local.key!;
      this.localToken = local.token!;
    }
    const la = this.localAddresses[0];
    const ra = this.remoteAddresses[0];
    const sf = this.addSubflow('syn-sent', {
      initial: true,
      localAddressId: 0,
      remoteAddressId: 0,
      backup: la?.backup ?? false,
      path: { localAddress: la?.address, remoteAddress: ra?.address, remotePort: ra?.port },
      now,
    });
    this.queue(sf, [{ subtype: 'MP_CAPABLE', version: 1, flags: this.capableFlags() }]);
    this.host.mib.inc('MPCapableSYNTX');
    return sf.id;
  }

  /** @internal Server: the MP_CAPABLE SYN arrived on a new subflow. */
  startServer(now: number, local: { token: number; key?: Uint8Array }, path: PathInfo): number {
    this.localToken = local.token;
    if (this.mode === 'rfc8684') this.#localKey = local.key!;
    const sf = this.addSubflow('syn-received', {
      initial: true,
      localAddressId: 0,
      remoteAddressId: 0,
      backup: false,
      path,
      now,
    });
    const synack: MpCapableOption =
      this.mode === 'external'
        ? { subtype: 'MP_CAPABLE', version: 1, flags: this.capableFlags(), senderToken: this.localToken }
        : { subtype: 'MP_CAPABLE', version: 1, flags: this.capableFlags(), senderKey: this.#localKey };
    this.queue(sf, [synack]);
    return sf.id;
  }

  private capableFlags(): number {
    return CapableFlag.H_HMAC_SHA256 | (this.mode === 'external' ? CapableFlag.G_EXTERNAL_KEYS : 0);
  }

  /**
   * Installs the application's keys (external mode): keyA is the initiator's
   * (client's), keyB the responder's, 8 bytes each, equal on both sides.
   * Sends NEW_KEY (K=0) to prove possession; joins and ADD_ADDR start once
   * the peer's NEW_KEY verifies.
   */
  installKeys(keyA: Uint8Array, keyB: Uint8Array, now: number): void {
    if (this.mode !== 'external') throw new TypeError('installKeys is for external-key (G-bit) connections');
    if (this.state !== 'established') throw new TypeError('installKeys before the MP_CAPABLE handshake finished');
    if (this.keysInstalled) throw new TypeError('keys already installed');
    if (keyA.length !== 8 || keyB.length !== 8) throw new RangeError('keyA and keyB must be 8 bytes each');
    this.#localKey = this.role === 'client' ? keyA.slice() : keyB.slice();
    this.#remoteKey = this.role === 'client' ? keyB.slice() : keyA.slice();
    this.keysInstalled = true;
    this.mib.inc('KeysInstalled');
    this.events.push({ type: 'keys-installed' });
    const sf = this.anyEstablished();
    if (sf) {
      const hmac = newKeyHmac(this.localToken, this.remoteToken, this.externalKey());
      this.queue(sf, [this.dssAck(), { subtype: 'NEW_KEY', keyId: 0, hmac }], true);
      this.mib.inc('NewKeyTx');
    }
    if (this.peerNewKey) {
      const nk = this.peerNewKey;
      this.peerNewKey = undefined;
      this.verifyNewKey(nk, now);
    }
    if (this.heldFins.length > 0 && this.state === 'established') this.checkHeldFins();
  }

  /** keyA‖keyB, the external key NEW_KEY's HMAC covers. */
  private externalKey(): Uint8Array {
    const out = new Uint8Array(16);
    const [a, b] = this.role === 'client' ? [this.#localKey!, this.#remoteKey!] : [this.#remoteKey!, this.#localKey!];
    out.set(a, 0);
    out.set(b, 8);
    return out;
  }

  private verifyNewKey(opt: NewKeyOption, now: number): void {
    this.mib.inc('NewKeyRx');
    if (this.keysConfirmed) return;
    const expected = newKeyHmac(this.remoteToken, this.localToken, this.externalKey());
    if (opt.keyId !== 0 || !timingSafeEqual(expected, opt.hmac)) {
      this.mib.inc('NewKeyHMacFailure');
      this.abortInternal('key-mismatch', now);
      return;
    }
    this.confirmKeys(now);
  }

  private confirmKeys(now: number): void {
    this.keysConfirmed = true;
    this.events.push({ type: 'keys-confirmed' });
    if (this.role === 'client') {
      this.startJoins(this.pm.onKeysConfirmed(this.pmContext()), now);
    } else {
      for (const a of this.pm.announce(this.pmContext(), this.announceConfig)) this.announce(a);
    }
  }

  // ─── path management ─────────────────────────────────────────────────────

  private pmContext(): PmContext {
    return {
      subflows: [...this.subflows.values()].map((s) => ({
        id: s.id,
        localAddressId: s.localAddressId,
        remoteAddressId: s.remoteAddressId,
        open: s.open,
      })),
      localAddresses: this.localAddresses,
      remoteAddresses: this.remoteAddresses,
      maxSubflows: this.limits.maxSubflows,
    };
  }

  private openSubflowCount(): number {
    let n = 0;
    for (const s of this.subflows.values()) if (s.open) n++;
    return n;
  }

  private startJoins(reqs: JoinRequest[], now: number): void {
    for (const r of reqs) {
      if (this.state !== 'established' || !this.keysConfirmed) return;
      if (this.openSubflowCount() >= this.limits.maxSubflows || this.pendingJoins >= this.limits.maxPendingJoins) {
        this.mib.inc('SubflowLimit');
        return;
      }
      const la = this.localAddresses.find((a) => a.id === r.localAddressId);
      const ra = this.remoteAddresses.find((a) => a.id === r.remoteAddressId);
      if (!ra || this.joinsExhausted(ra)) continue;
      const sf = this.addSubflow('join-syn-sent', {
        initial: false,
        localAddressId: r.localAddressId,
        remoteAddressId: r.remoteAddressId,
        backup: r.backup,
        path: { localAddress: la?.address, remoteAddress: ra.address, remotePort: ra.port ?? this.remoteAddresses[0]?.port },
        now,
      });
      sf.localRandom = this.randomU32();
      sf.handshakeDeadline = now + this.timers.joinTimeoutMs;
      this.pendingJoins++;
      this.events.push({
        type: 'subflow-open',
        subflow: sf.id,
        localAddress: la?.address,
        remoteAddress: ra.address,
        remotePort: sf.path.remotePort,
        backup: r.backup,
      });
      this.queue(sf, [
        {
          subtype: 'MP_JOIN',
          stage: 'syn',
          backup: r.backup,
          addressId: r.localAddressId,
          receiverToken: this.remoteToken,
          senderRandom: sf.localRandom,
        },
      ]);
      this.mib.inc('MPJoinSynTx');
    }
  }

  /** Server: announce an address (ADD_ADDR with HMAC); allowed once keys are confirmed. */
  announce(a: AddressInfo): number | undefined {
    if (!this.keysConfirmed || this.state !== 'established') return undefined;
    const key = `${a.address}|${a.port ?? ''}`;
    if (this.announcedIds.has(key)) return this.announcedIds.get(key);
    const id = this.announcedIds.size + 1;
    if (id > 255) return undefined;
    this.announcedIds.set(key, id);
    this.unechoed.set(id, { address: a.address, port: a.port, sentOn: -1 });
    this.sendAddAddr(id);
    return id;
  }

  /**
   * Announcements not yet echoed, and the subflow that carried each: an
   * ADD_ADDR lost with a subflow that died is sent again on another one
   * (RFC 8684 §3.4.1: retransmitted until echoed).
   */
  private readonly unechoed = new Map<number, { address: string; port?: number; sentOn: number }>();

  private sendAddAddr(id: number): void {
    const a = this.unechoed.get(id);
    const sf = this.anyEstablished();
    if (!a || !sf) return;
    a.sentOn = sf.id;
    const truncatedHmac = addAddrHmac(this.#localKey!, this.#remoteKey!, id, a.address, a.port);
    this.queue(sf, [this.dssAck(), { subtype: 'ADD_ADDR', echo: false, addressId: id, address: a.address, port: a.port, truncatedHmac }], true);
    this.mib.inc('AddAddrTx');
  }

  /** Withdraw an announced address (REMOVE_ADDR): the peer closes its subflows to it. */
  removeAddress(addressId: number): void {
    if (this.state !== 'established') return;
    const sf = this.anyEstablished();
    if (!sf) return;
    this.queue(sf, [this.dssAck(), { subtype: 'REMOVE_ADDR', addressIds: [addressId] }], true);
    this.mib.inc('RmAddrTx');
    for (const [k, v] of this.announcedIds) if (v === addressId) this.announcedIds.delete(k);
    this.unechoed.delete(addressId);
  }

  /** Mark a subflow backup (or not) for both directions: local choice plus MP_PRIO to the peer. */
  setBackup(subflow: number, backup: boolean): void {
    const sf = this.subflows.get(subflow);
    if (!sf || !sf.established) return;
    sf.backupLocal = backup;
    this.queue(sf, [this.dssAck(), { subtype: 'MP_PRIO', backup }], true);
    this.mib.inc('MPPrioTx');
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
    sf.lastHeard = now;
    if (sf.stale) this.recover(sf); // it carries traffic again
    try {
      this.processSegment(sf, seg, now);
    } catch (err) {
      // A bug or an input we did not foresee: never let it out.
      this.mib.inc('ProtocolError');
      this.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, now, 'error');
    }
  }

  /** The driver saw the subflow's TCP connection end (FIN), reset or fail. */
  handleSubflowClosed(subflow: number, now: number, reason: 'fin' | 'reset' | 'error' = 'reset'): void {
    const sf = this.subflows.get(subflow);
    if (!sf || !sf.open) return;
    this.subflowDown(sf, reason, now);
  }

  /** The driver's count of bytes it holds unsent for this subflow. */
  setSendQueue(subflow: number, bytes: number): void {
    const sf = this.subflows.get(subflow);
    if (sf) sf.queued = Math.max(0, bytes);
  }

  /** An RTT the driver measured (TCP_INFO), used by the scheduler instead of the core's own estimate. */
  setSubflowRtt(subflow: number, rttMs: number | undefined): void {
    const sf = this.subflows.get(subflow);
    if (sf) sf.externalRtt = rttMs;
  }

  private processSegment(sf: Subflow, seg: Segment, now: number): void {
    const opts = seg.options;
    let dss: DssOption | undefined;
    for (const o of opts) {
      switch (o.subtype) {
        case 'MP_TCPRST':
          this.mib.inc('MPRstRx');
          if (sf.initial && sf.state === 'syn-sent') {
            // The server answered our MP_CAPABLE SYN with a reset (its token
            // table is full, or it refuses the mode): the connection is
            // 'refused', which a client may turn into plain-TLS fallback.
            this.mib.inc('MPCapableRefused');
            this.subflowDown(sf, 'refused', now);
            return;
          }
          // T (transient) invites a retry; without it the peer refuses for good.
          this.subflowDown(sf, (o.flags & TcpRstFlag.TRANSIENT) !== 0 ? 'reset' : 'refused', now);
          return;
        case 'MP_FASTCLOSE':
          if (this.handleFastclose(o.receiverKey, now)) return;
          break;
        default:
          break;
      }
    }
    // Handshake options first: they change what the rest means.
    for (const o of opts) {
      if (o.subtype === 'MP_CAPABLE') {
        if (!this.handleCapable(sf, o, now)) return;
      } else if (o.subtype === 'MP_JOIN') {
        if (!this.handleJoin(sf, o, now)) return;
      } else if (o.subtype === 'DSS') dss = o;
    }
    if (sf.state === 'join-ack-sent' && dss) {
      // The server's first DSS after our MP_JOIN ACK: the join is complete.
      this.joinEstablished(sf, now);
    }
    if (!sf.established) {
      if (dss || seg.payload?.length) {
        this.mib.inc('ProtocolError');
        this.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, now, 'error');
      }
      return;
    }
    if (seg.ack !== undefined) this.handleSubflowAck(sf, seg.ack, now);
    if (dss && this.mode === 'rfc8684' && !this.keysConfirmed) this.confirmKeys(now);
    if (dss) {
      if (dss.dataAck !== undefined) this.handleDataAck(dss, seg.window, now);
      if (dss.dsn !== undefined && !this.handleMapping(sf, dss, seg.dataFinMac)) return;
      else if (dss.dataFin && dss.dsn === undefined) {
        // DATA_FIN without mapping is meaningless (RFC 8684 §3.3.3): ignore.
        this.mib.inc('DSSNoMapping');
      }
    }
    if (seg.payload && seg.payload.length > 0) {
      if (!this.handlePayload(sf, seg.payload, now)) return;
    } else if (sf.rxMap && sf.rxMap.len === 0 && sf.rxMap.finAt !== undefined) {
      this.handlePeerFin(sf.rxMap.finAt, sf);
      sf.rxMap = null;
    }
    for (const o of opts) {
      switch (o.subtype) {
        case 'ADD_ADDR':
          this.handleAddAddr(o, now);
          break;
        case 'REMOVE_ADDR':
          for (const id of o.addressIds) {
            // Only addresses the peer is known to use: REMOVE_ADDR carries no
            // HMAC (RFC 8684 §3.4.2), so an unknown id is dropped and counted.
            const known = this.remoteAddresses.some((a) => a.id === id) || [...this.subflows.values()].some((x) => x.open && x.remoteAddressId === id);
            if (!known) {
              this.mib.inc('RmAddrDrop');
              continue;
            }
            this.mib.inc('RmAddr');
            this.handleRemoveAddr(id, now);
          }
          break;
        case 'MP_PRIO':
          this.mib.inc('MPPrioRx');
          sf.backupPeer = o.backup;
          break;
        case 'MP_FAIL':
          // mptls negotiates no DSS checksum, so a checksum failure cannot be ours to report.
          this.mib.inc('MPFailRx');
          break;
        case 'NEW_KEY':
          if (this.mode !== 'external') {
            this.mib.inc('ProtocolError');
          } else if (!this.keysInstalled) {
            this.peerNewKey = o; // verified when our keys arrive
          } else {
            this.verifyNewKey(o, now);
          }
          break;
        default:
          break;
      }
    }
  }

  /** Returns false when the subflow or connection went away. */
  private handleCapable(sf: Subflow, o: MpCapableOption, now: number): boolean {
    const external = (o.flags & CapableFlag.G_EXTERNAL_KEYS) !== 0;
    if (!sf.initial) {
      this.mib.inc('ProtocolError');
      this.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, now, 'error');
      return false;
    }
    if (sf.state === 'syn-sent' && this.role === 'client') {
      // SYN/ACK
      this.mib.inc('MPCapableSYNACKRX');
      if (external !== (this.mode === 'external') || o.version !== 1) {
        this.mib.inc('MPCapableModeRefused');
        this.abortInternal('mode-mismatch', now);
        return false;
      }
      if (this.mode === 'external') {
        if (o.senderToken === undefined || o.receiverToken !== undefined) return this.failHandshake(now);
        this.remoteToken = o.senderToken;
        this.queue(sf, [
          { subtype: 'MP_CAPABLE', version: 1, flags: this.capableFlags(), senderToken: this.localToken, receiverToken: this.remoteToken },
        ]);
      } else {
        if (!o.senderKey || o.receiverKey) return this.failHandshake(now);
        this.#remoteKey = o.senderKey.slice();
        this.remoteToken = tokenFromKey(this.#remoteKey);
        this.queue(sf, [
          { subtype: 'MP_CAPABLE', version: 1, flags: this.capableFlags(), senderKey: this.#localKey, receiverKey: this.#remoteKey },
        ]);
      }
      this.establish(sf, now);
      return true;
    }
    if (sf.state === 'syn-received' && this.role === 'server') {
      // third ACK
      this.mib.inc('MPCapableACKRX');
      if (external !== (this.mode === 'external')) return this.failHandshake(now);
      if (this.mode === 'external') {
        if (o.senderToken === undefined || o.receiverToken !== this.localToken) return this.failHandshake(now);
        this.remoteToken = o.senderToken;
      } else {
        if (!o.senderKey || !o.receiverKey || !timingSafeEqual(o.receiverKey, this.#localKey!)) return this.failHandshake(now);
        this.#remoteKey = o.senderKey.slice();
        this.remoteToken = tokenFromKey(this.#remoteKey);
      }
      this.establish(sf, now);
      return true;
    }
    // MP_CAPABLE at any other moment: a retransmission or an attack; ignore.
    this.mib.inc('ProtocolError');
    return true;
  }

  private failHandshake(now: number): false {
    this.abortInternal('handshake-failed', now);
    return false;
  }

  private establish(sf: Subflow, now: number): void {
    if (this.mode === 'external') {
      this.idsnLocal = idsnFromTokens(this.localToken, this.remoteToken);
      this.idsnRemote = idsnFromTokens(this.remoteToken, this.localToken);
      this.mib.inc('MPCapableExternalKeys');
    } else {
      this.idsnLocal = idsnFromKey(this.#localKey!);
      this.idsnRemote = idsnFromKey(this.#remoteKey!);
      this.keysInstalled = true;
    }
    sf.state = 'established';
    sf.sampleRtt(now - sf.handshakeStarted);
    this.state = 'established';
    this.advertisedRightEdge = this.limits.recvBufferLimit;
    this.peerRightEdge = INITIAL_PEER_WINDOW; // until the peer advertises its own
    this.events.push({ type: 'established' });
    this.events.push({ type: 'subflow-up', subflow: sf.id });
    if (this.role === 'server') sf.ackPending = true; // tell the client our window
    // rfc8684: the keys are known now. The server may use them at once; the
    // client waits for the server's first DSS, which proves the server got the
    // third ACK, so its first MP_JOIN cannot overtake it.
    if (this.mode === 'rfc8684' && this.role === 'server') this.confirmKeys(now);
  }

  private handleJoin(sf: Subflow, o: MpJoinOption, now: number): boolean {
    if (o.stage === 'synack' && sf.state === 'join-syn-sent') {
      this.mib.inc('MPJoinSynAckRx');
      sf.remoteRandom = o.senderRandom;
      const expected = joinSynAckHmac(this.#remoteKey!, this.#localKey!, o.senderRandom, sf.localRandom);
      if (!timingSafeEqual(expected, o.truncatedHmac)) {
        this.mib.inc('MPJoinSynAckHMacFailure');
        this.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, now, 'join-refused');
        return false;
      }
      sf.backupPeer = o.backup;
      const hmac = joinAckHmac(this.#localKey!, this.#remoteKey!, sf.localRandom, o.senderRandom);
      sf.state = 'join-ack-sent';
      sf.sampleRtt(now - sf.handshakeStarted);
      this.queue(sf, [{ subtype: 'MP_JOIN', stage: 'ack', hmac }]);
      return true;
    }
    if (o.stage === 'ack' && sf.state === 'join-syn-received') {
      this.mib.inc('MPJoinAckRx');
      const expected = joinAckHmac(this.#remoteKey!, this.#localKey!, sf.remoteRandom, sf.localRandom);
      if (!timingSafeEqual(expected, o.hmac)) {
        this.mib.inc('MPJoinAckHMacFailure');
        this.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, now, 'join-refused');
        return false;
      }
      sf.sampleRtt(now - sf.handshakeStarted);
      this.joinEstablished(sf, now);
      sf.ackPending = true; // the "fourth ACK": tells the client the join is complete
      return true;
    }
    this.mib.inc('ProtocolError');
    this.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, now, 'error');
    return false;
  }

  private joinEstablished(sf: Subflow, _now: number): void {
    sf.state = 'established';
    sf.handshakeDeadline = Infinity;
    // Announcements whose carrier died while no other subflow could take them.
    for (const [id, a] of this.unechoed) if (!this.subflows.get(a.sentOn)?.established) this.sendAddAddr(id);
    this.pendingJoins = Math.max(0, this.pendingJoins - 1);
    if (this.role === 'server') this.host.releaseJoin(this, sf.id);
    else this.rejoinAttempts.delete(`${sf.localAddressId}|${sf.remoteAddressId}`);
    this.events.push({ type: 'subflow-up', subflow: sf.id });
  }

  /**
   * @internal Server: an MP_JOIN SYN for this connection arrived on a new
   * subflow (the endpoint found the token).
   */
  acceptJoin(o: Extract<MpJoinOption, { stage: 'syn' }>, path: PathInfo, now: number): JoinResult {
    this.mib.inc('MPJoinSynRx');
    const refuse = (reason: string, rst: number, flags = 0): JoinResult => {
      this.mib.inc('MPJoinRejected');
      this.mib.inc('MPRstTx');
      return { ok: false, reason, reply: { options: [{ subtype: 'MP_TCPRST', flags, reason: rst }] } };
    };
    // The join's own HMACs prove the joiner holds the keys, so installed keys
    // suffice here; the joiner waits for our NEW_KEY before it tries.
    if (this.state !== 'established' || !this.keysInstalled) {
      this.mib.inc('MPJoinBeforeKeys');
      return refuse('keys not installed and confirmed', TcpRstReason.MPTCP_SPECIFIC, TcpRstFlag.TRANSIENT);
    }
    // Fairness: pending joins count per source (the peer's address). A full
    // connection makes room by evicting the oldest pending join of the
    // source holding the most of them here, if that is more than the
    // newcomer's source holds; a full endpoint does the same across
    // connections (host.admitJoin). A flooding source competes with itself.
    const source = this.host.joinSource(path);
    let victim: Subflow | undefined;
    if (this.openSubflowCount() >= this.limits.maxSubflows || this.pendingJoins >= this.limits.maxPendingJoins) {
      victim = this.pendingJoinToEvict(source);
      if (!victim) {
        this.mib.inc('SubflowLimit');
        return refuse('subflow limit', TcpRstReason.LACK_OF_RESOURCES, TcpRstFlag.TRANSIENT);
      }
    }
    const admitted = this.host.admitJoin(this, source, victim !== undefined, now);
    if (admitted === 'source-limit') {
      this.mib.inc('MPJoinSourceLimit');
      return refuse('source join limit', TcpRstReason.LACK_OF_RESOURCES, TcpRstFlag.TRANSIENT);
    }
    if (admitted === 'endpoint-limit') {
      this.mib.inc('SubflowLimit');
      return refuse('endpoint join limit', TcpRstReason.LACK_OF_RESOURCES, TcpRstFlag.TRANSIENT);
    }
    if (victim) this.evictPendingJoin(victim.id, now);
    // An eviction (ours or the endpoint's) may have closed this connection
    // when pending joins were all it had left.
    if (this.state !== 'established') return refuse('connection closed', TcpRstReason.MPTCP_SPECIFIC);
    const localId = this.localAddressIdFor(path.localAddress, path.localPort);
    const sf = this.addSubflow('join-syn-received', {
      initial: false,
      localAddressId: localId,
      remoteAddressId: o.addressId,
      backup: false,
      path,
      now,
    });
    sf.backupPeer = o.backup;
    sf.remoteRandom = o.senderRandom;
    sf.localRandom = this.randomU32();
    // A legitimate joiner answers our SYN/ACK within one RTT: wait a few.
    sf.handshakeDeadline = now + this.joinAckTimeout();
    this.pendingJoins++;
    this.host.reserveJoin(this, sf.id, source, now);
    const truncatedHmac = joinSynAckHmac(this.#localKey!, this.#remoteKey!, sf.localRandom, sf.remoteRandom);
    this.queue(sf, [
      { subtype: 'MP_JOIN', stage: 'synack', backup: false, addressId: localId, truncatedHmac, senderRandom: sf.localRandom },
    ]);
    return { ok: true, subflow: sf.id };
  }

  /**
   * @internal Server: take back the slot of pending join `subflow` (waiting
   * for its MP_JOIN ACK) for a newcomer from a less busy source: MP_TCPRST
   * T=1 (the joiner may retry), `MPJoinEvicted`. False (and the endpoint's
   * slot freed) when it is no longer pending.
   */
  evictPendingJoin(subflow: number, now: number): boolean {
    const sf = this.subflows.get(subflow);
    if (this.role !== 'server' || !sf || sf.initial || sf.state !== 'join-syn-received') {
      this.host.releaseJoin(this, subflow);
      return false;
    }
    this.mib.inc('MPJoinEvicted');
    this.resetJoinTransient(sf, TcpRstReason.LACK_OF_RESOURCES, now, 'join-refused');
    return true;
  }

  /** Server: the pending join here to evict for a newcomer from `source`, if any (see acceptJoin). */
  private pendingJoinToEvict(source: string): Subflow | undefined {
    const bySource = new Map<string, Subflow[]>();
    for (const s of this.subflows.values()) {
      if (s.initial || s.state !== 'join-syn-received') continue;
      const k = this.host.joinSource(s.path);
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
  private joinAckTimeout(): number {
    let rtt = 0;
    for (const s of this.subflows.values()) {
      const r = s.established ? s.rtt : undefined;
      if (r !== undefined && r > rtt) rtt = r;
    }
    const t = this.timers;
    return Math.min(t.joinTimeoutMs, Math.max(t.joinAckTimeoutMinMs, t.joinAckTimeoutRtts * rtt));
  }

  /** Server: reset a pending join with MP_TCPRST T=1 (transient: the client's path manager retries). */
  private resetJoinTransient(sf: Subflow, reason: number, now: number, why: SubflowDownReason): void {
    this.mib.inc('MPRstTx');
    this.control.push({ subflow: sf.id, segment: { options: [{ subtype: 'MP_TCPRST', flags: TcpRstFlag.TRANSIENT, reason }] }, close: 'reset' });
    this.subflowDown(sf, why, now);
  }

  private localAddressIdFor(address?: string, port?: number): number {
    if (!address) return 0;
    for (const [k, id] of this.announcedIds) {
      const [a, p] = k.split('|');
      if (a === address && (p === '' || Number(p) === port)) return id;
    }
    return 0;
  }

  /** Client: the policy for announced addresses (ClientConnectOptions.addAddrPolicy). */
  private readonly addAddrPolicy: AddAddrPolicyOption | undefined;
  private readonly allowAnnouncedPorts: boolean;
  /**
   * Client: per ADD_ADDR address id (at most 256), the last address announced
   * under it and its verified HMAC, whether it was refused (policy or
   * addAddrAccepted), and our echoes (how many, and the subflow that carried
   * the last one).
   */
  private readonly announcements = new Map<
    number,
    { address: string; port?: number; hmac: Uint8Array; echoes: number; echoedOn: number | undefined; refused: boolean }
  >();

  private handleAddAddr(o: AddAddrOption, now: number): void {
    if (o.echo) {
      this.mib.inc('EchoAdd');
      this.unechoed.delete(o.addressId);
      return;
    }
    if (this.role !== 'client' || !this.keysConfirmed || !o.truncatedHmac) {
      this.mib.inc('AddAddrDrop');
      return;
    }
    let rec = this.announcements.get(o.addressId);
    const repeat = rec !== undefined && rec.address === o.address && rec.port === o.port;
    // A byte-identical retransmission of a verified announcement needs no new
    // HMAC (25 µs each: a duplicate flood would otherwise cost CPU, not just echoes).
    if (!(repeat && timingSafeEqual(rec!.hmac, o.truncatedHmac))) {
      const expected = addAddrHmac(this.#remoteKey!, this.#localKey!, o.addressId, o.address, o.port);
      if (!timingSafeEqual(expected, o.truncatedHmac)) {
        this.mib.inc('AddAddrHMacFailure');
        this.mib.inc('AddAddrDrop');
        return;
      }
    }
    this.mib.inc('AddAddr');
    if (!rec) {
      rec = { address: o.address, port: o.port, hmac: o.truncatedHmac.slice(), echoes: 0, echoedOn: undefined, refused: false };
      this.announcements.set(o.addressId, rec);
    } else if (!repeat) {
      // Another address under this id: a new announcement, echoed (within the cap) and judged anew.
      rec.address = o.address;
      rec.port = o.port;
      rec.hmac = o.truncatedHmac.slice();
      rec.echoedOn = undefined;
      rec.refused = false;
    }
    // Echo once per announcement; a retransmission only when our last echo's
    // carrier went down (the echo may have been lost), within MAX_ECHOES_PER_ID.
    const sf = this.anyEstablished();
    const echoLost = rec.echoedOn === undefined || !this.subflows.get(rec.echoedOn)?.established;
    if (sf && echoLost && rec.echoes < MAX_ECHOES_PER_ID) {
      rec.echoes++;
      rec.echoedOn = sf.id;
      this.queue(sf, [this.dssAck(), { subtype: 'ADD_ADDR', echo: true, addressId: o.addressId, address: o.address, port: o.port }], true);
    } else {
      this.mib.inc('EchoAddSuppressed');
    }
    if (this.remoteAddresses.some((a) => a.id === o.addressId)) return; // known (or the id is in use: RFC 8684 wants a REMOVE_ADDR first)
    if (repeat && rec.refused) return; // judged already
    const server = this.remoteAddresses.find((a) => a.id === 0);
    const why = server ? applyAddAddrPolicy(this.addAddrPolicy, { address: o.address, port: o.port }, server, { allowAnnouncedPorts: this.allowAnnouncedPorts }) : 'no server address';
    if (why !== undefined) {
      rec.refused = true;
      this.mib.inc('AddAddrPolicyDrop');
      this.mib.inc('AddAddrDrop');
      return;
    }
    if (this.addAddrAcceptedCount >= this.limits.addAddrAccepted) {
      rec.refused = true;
      this.mib.inc('AddAddrDrop');
      return;
    }
    this.addAddrAcceptedCount++;
    const ra = { id: o.addressId, address: o.address, port: o.port };
    this.remoteAddresses.push(ra);
    this.events.push({ type: 'address-added', addressId: o.addressId, address: o.address, port: o.port });
    this.startJoins(this.pm.onAddressAdded(this.pmContext(), ra), now);
  }

  private handleRemoveAddr(id: number, now: number): void {
    const idx = this.remoteAddresses.findIndex((a) => a.id === id);
    if (idx > 0) this.remoteAddresses.splice(idx, 1);
    this.events.push({ type: 'address-removed', addressId: id });
    for (const s of [...this.subflows.values()]) {
      if (s.open && s.remoteAddressId === id && this.openSubflowCount() > 1) {
        this.mib.inc('RmSubflow');
        this.control.push({ subflow: s.id, segment: { options: [] }, close: 'fin' });
        this.subflowDown(s, 'removed', now);
      }
    }
  }

  /** Returns true when the connection closed. */
  private handleFastclose(receiverKey: Uint8Array, now: number): boolean {
    if (!this.#localKey || !(this.mode === 'rfc8684' || this.keysInstalled) || !timingSafeEqual(receiverKey, this.#localKey)) {
      this.mib.inc('MPFastcloseBadKey');
      return false;
    }
    this.mib.inc('MPFastcloseRx');
    this.closeWith('fastclose', now);
    return true;
  }

  // ─── data in ─────────────────────────────────────────────────────────────

  private dsnToOffset(dsn: bigint, is64: boolean, idsn: bigint, near: number): number {
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

  private handleDataAck(dss: DssOption, window: number | undefined, now: number): void {
    const ack = this.dsnToOffset(dss.dataAck!, !!dss.dataAckIs64, this.idsnLocal, this.sndUna);
    const maxAck = this.finEverSent ? this.sendBuf.end + 1 : this.sndNxt;
    if (ack < 0 || ack > maxAck) {
      this.mib.inc('DataAckInvalid');
      return;
    }
    if (window !== undefined) {
      // The right edge never moves left (RFC 8684 §3.3.7).
      const edge = ack + window;
      if (edge > this.peerRightEdge || !this.peerWindowKnown) this.peerRightEdge = this.peerWindowKnown ? Math.max(edge, this.peerRightEdge) : edge;
      this.peerWindowKnown = true;
    }
    if (ack <= this.sndUna) return;
    this.sndUna = ack;
    const dataAck = Math.min(ack, this.sendBuf.end);
    this.sendBuf.ack(dataAck);
    if (this.finEverSent && ack === this.sendBuf.end + 1) this.finAcked = true;
    // Forget mappings the peer holds in order now.
    for (const s of this.subflows.values()) {
      if (s.outstanding.length === 0) continue;
      if (s.outstanding[0].end <= dataAck || s.outstanding.some((m) => m.end <= dataAck)) {
        s.outstanding = s.outstanding.filter((m) => m.end > dataAck);
      }
    }
    this.reinject = this.reinject.filter((r) => r.end > dataAck);
    if (this.reinject.length > 0 && this.reinject[0].start < dataAck) this.reinject[0].start = dataAck;
    if (this.writableWanted && this.sendBuf.held < this.limits.sendBufferLimit) {
      this.writableWanted = false;
      this.events.push({ type: 'writable' });
    }
    this.maybeFinished(now);
  }

  /** TCP's ACK, one subflow up: progress and RTT of this subflow alone. */
  private handleSubflowAck(sf: Subflow, ack: number, now: number): void {
    const expected = ((sf.ackedBytes + 1) >>> 0);
    const advance = (ack - expected) >>> 0;
    if (advance === 0) return;
    if (advance > sf.sentBytes - sf.ackedBytes) {
      this.mib.inc('DataAckInvalid');
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
    if (sf.stale) this.recover(sf);
  }

  /** Returns false when the subflow was reset. */
  private handleMapping(sf: Subflow, dss: DssOption, finMac: Uint8Array | undefined): boolean {
    const start = this.dsnToOffset(dss.dsn!, !!dss.dsnIs64, this.idsnRemote, this.asm.rcvNxt);
    const dll = dss.dataLevelLength ?? 0;
    if (dss.dataFin && dss.ssn === 0 && dll === 1) {
      // DATA_FIN alone (RFC 8684 §3.3.3: subflow sequence number 0).
      if (start < 0) {
        this.mib.inc('DSSNotMatching');
        return true;
      }
      if (this.finAuthentic(start, finMac)) sf.rxMap = { start, ssn: sf.rcvSsn, len: 0, finAt: start };
      return true;
    }
    const len = dss.dataFin ? dll - 1 : dll;
    if (start < 0 || len < 0 || dss.ssn !== sf.rcvSsn || (sf.rxMap && sf.rcvSsn < sf.rxMap.ssn + sf.rxMap.len && !sameMap(sf.rxMap, start, dss.ssn, len))) {
      // A mapping must start where the subflow's payload stands (mptls sends
      // each mapping with its first byte); anything else is corruption.
      this.mib.inc('DSSNotMatching');
      this.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, 0, 'error');
      return false;
    }
    const fin = dss.dataFin && this.finAuthentic(start + len, finMac);
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
  private finAuthentic(finAt: number, mac: Uint8Array | undefined): boolean {
    if (this.mode !== 'external') return true;
    if (!mac) {
      this.mib.inc('DataFinAuthFailure');
      return false;
    }
    if (!this.keysInstalled) {
      if (this.heldFins.some((f) => f.finAt === finAt && timingSafeEqual(f.mac, mac))) return false; // a retransmission
      if (this.heldFins.length < MAX_HELD_FINS) this.heldFins.push({ finAt, mac });
      else this.mib.inc('DataFinAuthFailure');
      return false;
    }
    const dsn = (this.idsnRemote + 1n + BigInt(finAt)) & MASK64;
    if (!timingSafeEqual(dataFinHmac(this.#remoteKey!, this.#localKey!, dsn), mac)) {
      this.mib.inc('DataFinAuthFailure');
      return false;
    }
    return true;
  }

  /** DATA_FINs that arrived before our keys, checked by installKeys. */
  private heldFins: { finAt: number; mac: Uint8Array }[] = [];

  private checkHeldFins(): void {
    const held = this.heldFins;
    this.heldFins = [];
    for (const f of held) {
      if (this.finAuthentic(f.finAt, f.mac)) {
        const sf = this.anyEstablished(this.lastRxSubflow);
        if (sf) this.handlePeerFin(f.finAt, sf);
      }
    }
  }

  private handlePayload(sf: Subflow, payload: Uint8Array, now: number): boolean {
    let p = payload;
    while (p.length > 0) {
      const m = sf.rxMap;
      if (!m || sf.rcvSsn >= m.ssn + m.len) {
        this.mib.inc('DSSNoMapping');
        this.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, now, 'error');
        return false;
      }
      const n = Math.min(p.length, m.ssn + m.len - sf.rcvSsn);
      const off = m.start + (sf.rcvSsn - m.ssn);
      if (!this.deliver(off, n === p.length ? p : p.subarray(0, n))) {
        this.mib.inc('ProtocolError');
        this.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, now, 'error');
        return false;
      }
      sf.rcvSsn += n;
      sf.bytesReceived += n;
      p = p.subarray(n);
      if (sf.rcvSsn === m.ssn + m.len) {
        if (m.finAt !== undefined) this.handlePeerFin(m.finAt, sf);
        sf.rxMap = null;
      }
    }
    sf.unackedBytes += payload.length;
    if (sf.ackDueAt === Infinity) sf.ackDueAt = now + this.timers.delayedAckMs;
    if (sf.unackedBytes >= this.limits.ackEveryBytes) sf.ackPending = true;
    this.lastRxSubflow = sf.id;
    return true;
  }

  /** Returns false when the peer's data had to be refused (the caller resets the subflow). */
  private deliver(offset: number, data: Uint8Array): boolean {
    const edge = this.advertisedRightEdge;
    if (offset + data.length > edge) {
      this.mib.inc('RcvWndExceeded');
      if (offset >= edge) return true;
      data = data.subarray(0, edge - offset);
    }
    const before = this.asm.rcvNxt;
    const r = this.asm.insert(offset, data, 2 * this.limits.recvBufferLimit);
    if (r.overLimit) {
      // Only a peer that shreds data into tiny out-of-order pieces gets here.
      this.mib.inc('RcvPruned');
      return false;
    }
    if (r.duplicate > 0) this.mib.inc('DuplicateData');
    if (r.outOfOrder && r.accepted > 0) this.mib.inc('OFOQueue');
    if (this.asm.rcvNxt > before) {
      if (this.peerFinAt !== undefined && this.asm.rcvNxt === this.peerFinAt) this.consumePeerFin();
      if (!this.readableSignalled) {
        this.readableSignalled = true;
        this.events.push({ type: 'readable' });
      }
    }
    return true;
  }

  private handlePeerFin(finAt: number, sf: Subflow): void {
    if (this.peerFinAt !== undefined || finAt < this.asm.rcvNxt) return;
    this.peerFinAt = finAt;
    this.mib.inc('DataFinRx');
    sf.ackPending = true;
    this.lastRxSubflow = sf.id;
    if (this.asm.rcvNxt === finAt) this.consumePeerFin();
  }

  private consumePeerFin(): void {
    if (this.peerFinDone) return;
    this.asm.advance(1);
    this.peerFinDone = true;
    this.windowUpdatePending = true;
    this.events.push({ type: 'data-fin' });
    this.maybeFinished(undefined);
  }

  /** The next in-order bytes for the application, or null. */
  read(): Uint8Array | null {
    const d = this.asm.read();
    if (d === null) {
      this.readableSignalled = false;
      return null;
    }
    // Reopen the window when it grew by a useful amount.
    const edge = this.asm.rcvNxt + (this.limits.recvBufferLimit - this.asm.buffered);
    if (edge - this.advertisedRightEdge >= Math.max(this.mss, this.limits.recvBufferLimit / 8)) this.windowUpdatePending = true;
    return d;
  }

  /** Bytes ready for `read()`. */
  get readableLength(): number {
    return this.asm.readable;
  }

  // ─── data out ────────────────────────────────────────────────────────────

  /**
   * Queues bytes for sending (kept by reference: do not reuse the buffer).
   * Returns false when the send buffer is over its limit: wait for 'writable'.
   */
  write(data: Uint8Array): boolean {
    if (this.finRequested || this.state === 'closed') throw new TypeError('write after close');
    this.sendBuf.push(data);
    const ok = this.sendBuf.held < this.limits.sendBufferLimit;
    if (!ok) this.writableWanted = true;
    return ok;
  }

  /** Half-close: DATA_FIN after everything written. */
  close(now: number): void {
    if (this.finRequested || this.state === 'closed') return;
    this.finRequested = true;
    this.maybeFinished(now);
  }

  /** MP_FASTCLOSE (authenticated by the peer's key when we know it) and reset every subflow. */
  abort(now: number): void {
    this.abortInternal('aborted', now);
  }

  private abortInternal(reason: CloseReason, now: number): void {
    if (this.state === 'closed') return;
    const canFastclose = this.#remoteKey !== undefined && (this.mode === 'rfc8684' || this.keysInstalled);
    for (const s of this.subflows.values()) {
      if (!s.open) continue;
      const options: MptcpOption[] = canFastclose
        ? [{ subtype: 'MP_FASTCLOSE', receiverKey: this.#remoteKey! }]
        : [{ subtype: 'MP_TCPRST', flags: 0, reason: TcpRstReason.MPTCP_SPECIFIC }];
      this.mib.inc(canFastclose ? 'MPFastcloseTx' : 'MPRstTx');
      this.control.push({ subflow: s.id, segment: { options }, close: 'reset' });
    }
    this.closeWith(reason, now);
  }

  private closeWith(reason: CloseReason, _now: number): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.closeReason = reason;
    for (const s of this.subflows.values()) {
      if (s.open) {
        if (reason === 'done' || reason === 'no-subflows') {
          // graceful: the last ACKs are already queued ahead of the FIN
        }
        s.state = 'closed';
        if (this.role === 'server' && !s.initial) this.host.releaseJoin(this, s.id);
      }
    }
    this.reinject = [];
    this.events.push({ type: 'closed', reason });
    this.host.release(this);
  }

  private maybeFinished(now: number | undefined): void {
    if (this.state !== 'established') return;
    if (this.finAcked && this.peerFinDone) {
      // Both directions done: send the last ACK, then FIN every subflow.
      for (const s of this.subflows.values()) {
        if (!s.open) continue;
        const last: Transmit = { subflow: s.id, segment: { options: [this.dssAck()], window: this.windowToAdvertise() }, close: 'fin' };
        this.control.push(last);
      }
      this.closeWith('done', now ?? 0);
    }
  }

  // ─── output ──────────────────────────────────────────────────────────────

  private queue(sf: Subflow, options: MptcpOption[], withWindow = false): void {
    const segment: Segment = { options };
    if (withWindow) segment.window = this.windowToAdvertise();
    this.control.push({ subflow: sf.id, segment });
  }

  private windowToAdvertise(): number {
    const edge = Math.max(this.advertisedRightEdge, this.asm.rcvNxt + (this.limits.recvBufferLimit - this.asm.buffered));
    this.advertisedRightEdge = edge;
    return Math.min(0xffffffff, edge - this.asm.rcvNxt);
  }

  private ackCacheAt = -1;
  private ackCache = 0n;

  /** The 64-bit data ACK, recomputed only when rcvNxt moved (BigInt math allocates). */
  private dataAck64(): bigint {
    const n = this.asm.rcvNxt;
    if (n !== this.ackCacheAt) {
      this.ackCacheAt = n;
      this.ackCache = (this.idsnRemote + 1n + BigInt(n)) & MASK64;
    }
    return this.ackCache;
  }

  private dssAck(): DssOption {
    return { subtype: 'DSS', dataFin: false, dataAck: this.dataAck64(), dataAckIs64: true };
  }

  private anyEstablished(prefer?: number): Subflow | undefined {
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
    if (c) return this.account(c, now);
    if (this.state !== 'established') return null;
    const data = this.nextDataTransmit(now);
    if (data) return data;
    return this.nextAck(now);
  }

  private account(t: Transmit, _now: number): Transmit {
    const sf = this.subflows.get(t.subflow);
    if (sf) {
      const size = (t.segment.payload?.length ?? 0) + SEGMENT_OVERHEAD;
      sf.queued += size;
      if (sf.established) {
        t.segment.ack = sf.rcvSsn;
        sf.ackPending = false;
        sf.unackedBytes = 0;
        sf.ackDueAt = Infinity;
      }
      if (t.close && sf.open) sf.state = 'closed';
    }
    return t;
  }

  /** Reused per-subflow views for the scheduler (no allocation per segment). */
  private readonly views = new Map<number, { id: number; backup: boolean; stale: boolean; srtt: number | undefined; hasRoom: boolean }>();
  private readonly viewList: SchedSubflow[] = [];

  private schedView(): SchedSubflow[] {
    const out = this.viewList;
    out.length = 0;
    const limit = this.limits.sendQueueLimit;
    for (const s of this.subflows.values()) {
      if (!s.established) continue;
      let v = this.views.get(s.id);
      if (!v) {
        v = { id: s.id, backup: false, stale: false, srtt: undefined, hasRoom: false };
        this.views.set(s.id, v);
      }
      v.backup = s.backup;
      v.stale = s.stale;
      v.srtt = s.rtt;
      v.hasRoom = s.queued < limit;
      out.push(v);
    }
    return out;
  }

  private pendingRedundant: Transmit[] = [];

  private nextDataTransmit(now: number): Transmit | null {
    const red = this.pendingRedundant.shift();
    if (red) return this.account(red, now);
    const hasReinject = this.reinject.length > 0;
    const newAvail = Math.min(this.sendBuf.end, this.peerRightEdge) - this.sndNxt;
    const finDue = this.finRequested && this.finSentOn === undefined && this.sndNxt === this.sendBuf.end;
    if (!hasReinject && newAvail <= 0 && !finDue) return null;
    const view = this.schedView();
    if (view.length === 0) return null;
    let chosen = this.scheduler.select(view);
    if (chosen.length === 0) {
      if (!finDue || hasReinject || newAvail > 0) return null;
      // A DATA_FIN is tiny: send it on the best usable subflow even when full.
      chosen = [view.find((v) => !v.stale && !v.backup) ?? view[0]];
    }
    let start: number;
    let payload: Uint8Array | undefined;
    let reinjection = false;
    if (hasReinject) {
      const r = this.reinject[0];
      start = Math.max(r.start, this.sndUna);
      payload = this.sendBuf.slice(start, Math.min(this.mss, r.end - start));
      r.start = start + payload.length;
      if (r.start >= r.end) this.reinject.shift();
      reinjection = true;
      this.mib.inc('Reinjected');
      this.mib.inc('ReinjectedBytes', payload.length);
    } else if (newAvail > 0) {
      start = this.sndNxt;
      payload = this.sendBuf.slice(start, Math.min(this.mss, newAvail));
      this.sndNxt += payload.length;
    } else {
      // DATA_FIN alone. After a timeout, avoid the subflow that swallowed it.
      const pick = chosen.find((c) => c.id !== this.finAvoid) ?? view.find((v) => v.id !== this.finAvoid && !v.stale) ?? chosen[0];
      const sf = this.subflows.get(pick.id)!;
      this.finSentOn = sf.id;
      this.finSentAt = now;
      if (!this.finEverSent) this.finFirstSentAt = now;
      this.finEverSent = true;
      this.mib.inc('DataFinTx');
      const dsn = (this.idsnLocal + 1n + BigInt(this.sendBuf.end)) & MASK64;
      const dss: DssOption = { ...this.dssAck(), dataFin: true, dsn, dsnIs64: true, ssn: 0, dataLevelLength: 1 };
      const segment: Segment = { options: [dss], window: this.windowToAdvertise() };
      // External keys: the end of the stream carries the key holder's MAC.
      if (this.mode === 'external' && this.keysInstalled) segment.dataFinMac = dataFinHmac(this.#localKey!, this.#remoteKey!, dsn);
      return this.account({ subflow: sf.id, segment }, now);
    }
    const first = this.buildData(chosen[0].id, start, payload, reinjection, now);
    for (let i = 1; i < chosen.length; i++) {
      this.pendingRedundant.push(this.buildData(chosen[i].id, start, payload, true, now));
    }
    return this.account(first, now);
  }

  private buildData(subflow: number, start: number, payload: Uint8Array, reinjection: boolean, now: number): Transmit {
    const sf = this.subflows.get(subflow)!;
    const dss: DssOption = {
      ...this.dssAck(),
      dsn: (this.idsnLocal + 1n + BigInt(start)) & MASK64,
      dsnIs64: true,
      ssn: sf.sndSsn,
      dataLevelLength: payload.length,
    };
    sf.sndSsn = (sf.sndSsn + payload.length) >>> 0;
    sf.bytesSent += payload.length;
    if (sf.sentBytes === sf.ackedBytes) sf.lastProgress = now;
    sf.sentBytes += payload.length;
    sf.outstanding.push({ start, end: start + payload.length, subflowEnd: sf.sentBytes, sentAt: now, reinjection, reinjected: false });
    return { subflow, segment: { options: [dss], payload, window: this.windowToAdvertise() } };
  }

  private nextAck(now: number): Transmit | null {
    let target: Subflow | undefined;
    for (const s of this.subflows.values()) {
      if (s.ackPending && s.established) {
        target = s;
        break;
      }
      if (s.ackPending && !s.established) s.ackPending = false;
    }
    if (!target && this.windowUpdatePending) {
      // A window update (or the ACK of a DATA_FIN) that nothing else will
      // repeat: send it on every established subflow, so one that died
      // silently cannot swallow it.
      this.windowUpdatePending = false;
      for (const s of this.subflows.values()) if (s.established) s.ackPending = true;
      target = this.anyEstablished(this.lastRxSubflow);
      if (target) target.ackPending = false;
    }
    if (!target) return null;
    return this.account({ subflow: target.id, segment: { options: [this.dssAck()], window: this.windowToAdvertise() } }, now);
  }

  // ─── subflow loss and stalls ─────────────────────────────────────────────

  private resetSubflow(sf: Subflow, reason: number, now: number, why: SubflowDownReason): void {
    if (!sf.open) return;
    this.mib.inc('MPRstTx');
    this.control.push({ subflow: sf.id, segment: { options: [{ subtype: 'MP_TCPRST', flags: 0, reason }] }, close: 'reset' });
    this.subflowDown(sf, why, now);
  }

  private subflowDown(sf: Subflow, reason: SubflowDownReason, now: number): void {
    const wasPendingJoin = !sf.initial && (sf.state === 'join-syn-sent' || sf.state === 'join-syn-received' || sf.state === 'join-ack-sent');
    if (wasPendingJoin) {
      this.pendingJoins = Math.max(0, this.pendingJoins - 1);
      if (this.role === 'server') this.host.releaseJoin(this, sf.id);
    }
    const wasInitialHandshake = sf.initial && (sf.state === 'syn-sent' || sf.state === 'syn-received');
    sf.state = 'closed';
    this.reinjectFrom(sf);
    if (this.finSentOn === sf.id && !this.finAcked) this.finSentOn = undefined; // resend the DATA_FIN elsewhere
    this.events.push({ type: 'subflow-down', subflow: sf.id, reason });
    this.subflows.delete(sf.id);
    this.views.delete(sf.id);
    if (this.state === 'closed') return;
    if (wasInitialHandshake) {
      this.closeWith(reason === 'refused' && this.role === 'client' ? 'refused' : 'reset', now);
      return;
    }
    this.scheduleRejoin(sf, reason, now, wasPendingJoin);
    // Acks and window updates that went down with it must be repeated, and
    // announcements it carried that were never echoed.
    this.windowUpdatePending = true;
    for (const [id, a] of this.unechoed) if (a.sentOn === sf.id) this.sendAddAddr(id);
    let alive = 0;
    for (const s of this.subflows.values()) if (s.open) alive++;
    if (alive === 0) this.closeWith(this.finAcked && this.peerFinDone ? 'done' : 'no-subflows', now);
  }

  /** Re-joins the path manager asked for, and failures in a row per address pair. */
  private rejoins: { at: number; request: JoinRequest }[] = [];
  private readonly rejoinAttempts = new Map<string, number>();
  /**
   * Client: failed joins in total per announced address ("address|port"; at
   * most `addAddrAccepted` entries), and the addresses given up on.
   */
  private readonly joinFailures = new Map<string, number>();
  private readonly joinsGivenUp = new Set<string>();

  /** An announced address (id ≠ 0) that failed `addAddrJoinFailures` joins is not tried again. */
  private joinsExhausted(ra: { id: number; address: string; port?: number }): boolean {
    if (ra.id === 0) return false;
    const key = `${ra.address}|${ra.port ?? ''}`;
    if ((this.joinFailures.get(key) ?? 0) < this.limits.addAddrJoinFailures) return false;
    if (!this.joinsGivenUp.has(key)) {
      this.joinsGivenUp.add(key);
      this.mib.inc('AddAddrJoinLimit');
    }
    return true;
  }

  private scheduleRejoin(sf: Subflow, reason: SubflowDownReason, now: number, failedJoin = false): void {
    if (this.role !== 'client') return;
    const ra = sf.remoteAddressId !== 0 ? this.remoteAddresses.find((a) => a.id === sf.remoteAddressId) : undefined;
    if (ra && failedJoin && reason !== 'closed' && reason !== 'removed') {
      const key = `${ra.address}|${ra.port ?? ''}`;
      this.joinFailures.set(key, (this.joinFailures.get(key) ?? 0) + 1);
      if (this.joinsExhausted(ra)) return;
    }
    if (!this.keysConfirmed || this.state !== 'established' || !this.pm.onSubflowClosed) return;
    const key = `${sf.localAddressId}|${sf.remoteAddressId}`;
    const attempt = this.rejoinAttempts.get(key) ?? 0;
    const plan = this.pm.onSubflowClosed(this.pmContext(), { localAddressId: sf.localAddressId, remoteAddressId: sf.remoteAddressId, reason }, attempt);
    if (!plan) return;
    this.rejoinAttempts.set(key, attempt + 1);
    this.rejoins.push({ at: now + plan.afterMs, request: plan.request });
  }

  private reinjectFrom(sf: Subflow): void {
    let bytes = 0;
    for (const m of sf.outstanding) {
      if (m.reinjected || m.end <= this.sndUna) continue;
      m.reinjected = true;
      this.addReinject(Math.max(m.start, this.sndUna), m.end);
      bytes += m.end - m.start;
    }
    void bytes;
  }

  private addReinject(start: number, end: number): void {
    if (end <= start) return;
    // Keep the list sorted and merged.
    const list = this.reinject;
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

  private recover(sf: Subflow): void {
    sf.stale = false;
    this.mib.inc('SubflowRecover');
  }

  /**
   * A DATA_FIN takes no subflow sequence space, so subflow ACKs cannot show
   * it arrived: it is resent (on another subflow) when its data ACK is late.
   */
  private finDeadline(): number {
    if (!this.finEverSent || this.finAcked || this.finSentOn === undefined) return Infinity;
    const sf = this.subflows.get(this.finSentOn);
    const rto = sf ? sf.stallTimeout(this.timers.minStallMs, this.timers.maxStallMs, this.timers.initialStallMs) : this.timers.minStallMs;
    return this.finSentAt + rto * 2 ** Math.min(this.finRetries, 6);
  }

  /**
   * When every subflow went stale and none has made progress since, or our
   * DATA_FIN has gone unacknowledged for that long (it takes no subflow
   * sequence space, so it never makes a subflow stale): the connection's
   * user timeout.
   */
  private deadDeadline(): number {
    if (this.state !== 'established') return Infinity;
    const finGiveUp = this.finEverSent && !this.finAcked ? this.finFirstSentAt + this.timers.userTimeoutMs : Infinity;
    return Math.min(finGiveUp, this.staleDeadline());
  }

  private staleDeadline(): number {
    let latest = -Infinity;
    for (const s of this.subflows.values()) {
      if (!s.established) return Infinity; // a join in progress may yet save it
      if (!s.stale) return Infinity;
      latest = Math.max(latest, s.staleSince, s.lastProgress);
    }
    return latest === -Infinity ? Infinity : latest + this.timers.userTimeoutMs;
  }

  /** The earliest time `handleTimeout` has work to do, or null. */
  pollTimeout(): number | null {
    if (this.state === 'closed') return null;
    let t = this.state === 'connecting' ? this.establishDeadline : Math.min(this.deadDeadline(), this.finDeadline());
    for (const r of this.rejoins) if (r.at < t) t = r.at;
    for (const s of this.subflows.values()) {
      if (!s.open) continue;
      if (s.handshakeDeadline < t) t = s.handshakeDeadline;
      if (s.ackDueAt < t && s.established) t = s.ackDueAt;
      const d = this.stallDeadline(s);
      if (d < t) t = d;
    }
    return t === Infinity ? null : t;
  }

  private stallDeadline(s: Subflow): number {
    if (!s.established || s.stale || s.sentBytes === s.ackedBytes) return Infinity;
    let oldest = Infinity;
    for (const m of s.outstanding) {
      if (m.subflowEnd > s.ackedBytes) {
        oldest = m.sentAt;
        break;
      }
    }
    if (oldest === Infinity) return Infinity;
    return Math.max(s.lastProgress, oldest) + s.stallTimeout(this.timers.minStallMs, this.timers.maxStallMs, this.timers.initialStallMs);
  }

  handleTimeout(now: number): void {
    if (this.state === 'closed') return;
    if (this.state === 'connecting' && now >= this.establishDeadline) {
      this.abortInternal('handshake-timeout', now);
      return;
    }
    if (now >= this.deadDeadline()) {
      this.abortInternal('timeout', now);
      return;
    }
    if (this.rejoins.length > 0) {
      const due = this.rejoins.filter((r) => r.at <= now);
      if (due.length > 0) {
        this.rejoins = this.rejoins.filter((r) => r.at > now);
        // the PM's own de-duplication applies: no second subflow on a live pair
        const ctx = this.pmContext();
        const live = (l: number, r: number) => ctx.subflows.some((x) => x.open && x.localAddressId === l && x.remoteAddressId === r);
        this.startJoins(due.map((d) => d.request).filter((q) => !live(q.localAddressId, q.remoteAddressId)), now);
      }
    }
    if (now >= this.finDeadline()) {
      this.finAvoid = this.finSentOn;
      this.finSentOn = undefined;
      this.finRetries++;
    }
    for (const s of [...this.subflows.values()]) {
      if (!s.open) continue;
      if (now >= s.ackDueAt) {
        s.ackPending = true;
        s.ackDueAt = Infinity;
      }
      if (now >= s.handshakeDeadline) {
        this.mib.inc('MPJoinTimeout');
        // Server: the MP_JOIN ACK is late (joinAckTimeout); transient, so a
        // legitimate joiner on a slow path tries again.
        if (this.role === 'server' && s.state === 'join-syn-received') this.resetJoinTransient(s, TcpRstReason.MPTCP_SPECIFIC, now, 'join-timeout');
        else this.resetSubflow(s, TcpRstReason.MPTCP_SPECIFIC, now, 'join-timeout');
        continue;
      }
      if (now >= this.stallDeadline(s)) {
        // No subflow-level progress: stop trusting it and reinject what it
        // holds; the reinjection queue waits for any subflow that can carry it.
        s.stale = true;
        s.staleSince = now;
        this.mib.inc('SubflowStale');
        this.reinjectFrom(s);
        if (this.finSentOn === s.id && !this.finAcked) this.finSentOn = undefined; // resend the DATA_FIN elsewhere
        for (const [id, a] of this.unechoed) if (a.sentOn === s.id) this.sendAddAddr(id);
      }
    }
  }

  /** The next event, or null. */
  pollEvent(): ConnectionEvent | null {
    return this.events.shift() ?? null;
  }

  // ─── helpers ─────────────────────────────────────────────────────────────

  private addSubflow(state: Subflow['state'], opts: ConstructorParameters<typeof Subflow>[2]): Subflow {
    const sf = new Subflow(this.nextSubflowId++, state, opts);
    this.subflows.set(sf.id, sf);
    return sf;
  }

  private randomU32(): number {
    const b = this.host.random(4);
    return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
  }

  static {
    readKeys = (c) => ({ localKey: c.#localKey?.slice(), remoteKey: c.#remoteKey?.slice() });
  }
}

/**
 * The one sanctioned way for tests and the fuzzer's key-leak scan to see a
 * connection's keys (copies). Not exported from the package root; nothing in
 * src/ calls it.
 */
export function keysForTesting(conn: Connection): { localKey?: Uint8Array; remoteKey?: Uint8Array } {
  return readKeys(conn);
}

function sameMap(m: { start: number; ssn: number; len: number }, start: number, ssn: number | undefined, len: number): boolean {
  return m.start === start && m.ssn === ssn && m.len === len;
}
