/**
 * The endpoint (model: quinn-proto's `Endpoint`; Linux: net/mptcp/token.c).
 * Owns the token table, creates connections, routes an MP_JOIN to the
 * connection its token names, and enforces the endpoint-wide limits.
 */
import type { MpCapableOption, MpJoinSynOption } from '../wire/types.js';
import { CapableFlag, TcpRstFlag, TcpRstReason } from '../wire/types.js';
import { randomBytes, tokenFromKey } from '../crypto/index.js';
import { Connection, type ConnectionHost } from './connection/index.js';
import { startClient, startServer } from './connection/handshake.js';
import { Mib } from './mib.js';
import { ENDPOINT_DEFAULTS } from './config.js';
import { RandomTokenAllocator, type RandomSource, type TokenAllocator } from './token.js';
import type { ClientConnectOptions, ConnectionOptions, EndpointOptions, KeyMode, PathInfo, Segment, AddressInfo } from './types.js';

export type NewSubflowResult =
  /** An MP_CAPABLE SYN: a new connection, its initial subflow id is 0. */
  | { kind: 'connection'; connection: Connection; subflow: number }
  /** A valid MP_JOIN SYN: a new subflow of an existing connection. */
  | { kind: 'join'; connection: Connection; subflow: number }
  /** Refused: write `reply` (an MP_TCPRST), then reset the subflow. */
  | { kind: 'refused'; reply: Segment; reason: string };

/** A server join waiting for its MP_JOIN ACK, as the endpoint counts it. */
interface JoinSlot {
  conn: Connection;
  subflow: number;
  source: string;
  since: number;
}

/**
 * The default `EndpointOptions.joinSource`: an IPv4 address as is, the /64
 * prefix of an IPv6 one (one host or site usually holds a whole /64),
 * IPv4-mapped IPv6 as IPv4, '' when unknown.
 */
export function defaultJoinSource(path: PathInfo): string {
  const raw = typeof path?.remoteAddress === 'string' ? path.remoteAddress.toLowerCase() : '';
  let a = raw.split('%')[0];
  if (!a.includes(':')) return a;
  const quad = /^(.*:)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(a);
  if (quad) {
    if (/^(?:::|(?:0{1,4}:){5})ffff:$/.test(quad[1])) return `${+quad[2]}.${+quad[3]}.${+quad[4]}.${+quad[5]}`; // IPv4-mapped
    const [b0, b1, b2, b3] = quad.slice(2).map(Number);
    a = `${quad[1]}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head, tail] = a.split('::', 2);
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  const prefix = groups.slice(0, 4).map((g) => (/^[0-9a-f]{1,4}$/.test(g) ? parseInt(g, 16).toString(16) : g));
  while (prefix.length < 4) prefix.push('0');
  return `${prefix.join(':')}::/64`;
}

export class Endpoint {
  readonly mib = new Mib();
  readonly random: RandomSource;
  private readonly allocator: TokenAllocator;
  private readonly tokens = new Map<number, Connection>();
  private readonly acceptModes: KeyMode[];
  private readonly maxConnections: number;
  private readonly maxPendingJoins: number;
  private readonly maxPendingJoinsPerSource: number;
  private readonly maxParkedConnections: number;
  private readonly parked = new Set<Connection>();
  private readonly joinSource: (path: PathInfo) => string;
  /** Pending server joins: by connection and subflow id, and by source (each set oldest first). */
  private readonly joinSlots = new Map<Connection, Map<number, JoinSlot>>();
  private readonly joinsBySource = new Map<string, Set<JoinSlot>>();
  private pendingJoins = 0;
  /** Connections whose state the endpoint changed (evictions), woken at the end of handleNewSubflow. */
  private readonly toWake = new Set<Connection>();
  /**
   * Called for each connection whose state the endpoint changed behind its
   * driver's back (an evicted pending join): poll it soon. The acceptor sets
   * it when none was given (EndpointOptions.onWake).
   */
  onWake: ((conn: Connection) => void) | undefined;
  private readonly serverDefaults: EndpointOptions['server'];
  private readonly host: ConnectionHost;

  constructor(options: EndpointOptions = {}) {
    this.random = options.random ?? randomBytes;
    this.allocator = options.tokenAllocator ?? new RandomTokenAllocator(this.random);
    this.acceptModes = options.acceptModes ?? ['external'];
    this.maxConnections = options.maxConnections ?? ENDPOINT_DEFAULTS.maxConnections;
    this.maxPendingJoins = options.maxPendingJoins ?? ENDPOINT_DEFAULTS.maxPendingJoins;
    this.maxPendingJoinsPerSource = options.maxPendingJoinsPerSource ?? ENDPOINT_DEFAULTS.maxPendingJoinsPerSource;
    this.maxParkedConnections = options.maxParkedConnections ?? ENDPOINT_DEFAULTS.maxParkedConnections;
    this.joinSource = options.joinSource ?? defaultJoinSource;
    this.onWake = options.onWake;
    this.serverDefaults = options.server ?? {};
    this.host = {
      random: this.random,
      mib: this.mib,
      release: (c) => {
        if (this.tokens.get(c.localToken) === c) this.tokens.delete(c.localToken);
      },
      joinSource: (path) => {
        try {
          return String(this.joinSource(path ?? {}));
        } catch {
          return '';
        }
      },
      admitJoin: (conn, source, freeing, now) => this.admitJoin(conn, source, freeing, now),
      park: (conn) => {
        if (this.parked.has(conn)) return true;
        if (this.parked.size >= this.maxParkedConnections) {
          this.mib.inc('ConnParkRefused');
          return false;
        }
        this.parked.add(conn);
        return true;
      },
      unpark: (conn) => {
        this.parked.delete(conn);
      },
      reserveJoin: (conn, subflow, source, now) => {
        let byId = this.joinSlots.get(conn);
        if (!byId) this.joinSlots.set(conn, (byId = new Map()));
        if (byId.has(subflow)) return;
        const slot: JoinSlot = { conn, subflow, source, since: now };
        byId.set(subflow, slot);
        let set = this.joinsBySource.get(source);
        if (!set) this.joinsBySource.set(source, (set = new Set()));
        set.add(slot);
        this.pendingJoins++;
      },
      releaseJoin: (conn, subflow) => {
        const byId = this.joinSlots.get(conn);
        const slot = byId?.get(subflow);
        if (!byId || !slot) return;
        byId.delete(subflow);
        if (byId.size === 0) this.joinSlots.delete(conn);
        const set = this.joinsBySource.get(slot.source);
        set?.delete(slot);
        if (set?.size === 0) this.joinsBySource.delete(slot.source);
        this.pendingJoins--;
      },
    };
  }

  /** See ConnectionHost.admitJoin. */
  private admitJoin(conn: Connection, source: string, freeing: boolean, now: number): 'ok' | 'source-limit' | 'endpoint-limit' {
    const mine = this.joinsBySource.get(source)?.size ?? 0;
    if (mine >= this.maxPendingJoinsPerSource) return 'source-limit';
    if (freeing || this.pendingJoins < this.maxPendingJoins) return 'ok';
    // Full: the busiest source (ties: the one whose oldest join is oldest) gives up its oldest.
    let top: Set<JoinSlot> | undefined;
    let topOldest: JoinSlot | undefined;
    for (const set of this.joinsBySource.values()) {
      const oldest = set.values().next().value as JoinSlot;
      if (!top || set.size > top.size || (set.size === top.size && oldest.since < topOldest!.since)) {
        top = set;
        topOldest = oldest;
      }
    }
    if (!top || !topOldest || top.size <= mine) return 'endpoint-limit';
    const victim = topOldest;
    victim.conn.evictPendingJoin(victim.subflow, now); // releases the slot (subflowDown → releaseJoin)
    this.host.releaseJoin(victim.conn, victim.subflow); // in case it no longer held one
    if (victim.conn !== conn) this.toWake.add(victim.conn);
    return 'ok';
  }

  /** Pending joins (waiting for their MP_JOIN ACK) per source, for diagnostics and tests. */
  pendingJoinsBySource(): Map<string, number> {
    return new Map([...this.joinsBySource].map(([k, v]) => [k, v.size]));
  }

  /** Live connections (by token). */
  get connectionCount(): number {
    return this.tokens.size;
  }
  /** Connections parked now (every subflow lost, waiting for a resume). */
  get parkedCount(): number {
    return this.parked.size;
  }
  get pendingJoinCount(): number {
    return this.pendingJoins;
  }
  get tokenLayout(): string {
    return this.allocator.description;
  }
  counters() {
    return this.mib.snapshot();
  }
  /** The connection a token names, if any. */
  lookup(token: number): Connection | undefined {
    return this.tokens.get(token);
  }
  /**
   * The live connections (the token table), oldest first: read-only, for
   * diagnostics and metrics. Do not open or close connections while
   * iterating.
   */
  connections(): IterableIterator<Connection> {
    return this.tokens.values();
  }

  /** Client: a new connection; its initial subflow (id 0) has the MP_CAPABLE SYN queued. */
  connect(options: ClientConnectOptions, now: number): Connection {
    if (this.tokens.size >= this.maxConnections) {
      this.mib.inc('ConnectionLimit');
      throw new RangeError('connection limit reached');
    }
    const conn = new Connection({
      role: 'client',
      mode: options.mode,
      host: this.host,
      options,
      now,
      localAddresses: options.localAddresses,
      remote: options.remote,
    });
    const local = this.newLocalIdentity(options.mode);
    if (!local) throw new RangeError('no free token');
    startClient(conn, local, now);
    this.tokens.set(conn.localToken, conn);
    return conn;
  }

  /**
   * Server: the first segment of a new subflow. Never throws on peer input:
   * anything it cannot accept becomes `refused` with a reason and a counter.
   */
  handleNewSubflow(segment: Segment, path: PathInfo, now: number): NewSubflowResult {
    const refuse = (reason: string, rst: number = TcpRstReason.MPTCP_SPECIFIC, flags = 0): NewSubflowResult => {
      this.mib.inc('MPRstTx');
      return { kind: 'refused', reason, reply: { options: [{ subtype: 'MP_TCPRST', flags, reason: rst }] } };
    };
    const opts = Array.isArray(segment?.options) ? segment.options : [];
    const capable = opts.find((o): o is MpCapableOption => o.subtype === 'MP_CAPABLE');
    const join = opts.find((o): o is MpJoinSynOption => o.subtype === 'MP_JOIN' && o.stage === 'syn');
    if (capable) {
      this.mib.inc('MPCapableSYNRX');
      const external = (capable.flags & CapableFlag.G_EXTERNAL_KEYS) !== 0;
      const mode: KeyMode = external ? 'external' : 'rfc8684';
      const isSyn = external
        ? capable.senderToken === undefined && capable.receiverToken === undefined
        : capable.senderKey === undefined && capable.receiverKey === undefined;
      if (!isSyn || capable.version !== 1 || (segment.payload?.length ?? 0) > 0) {
        this.mib.inc('ProtocolError');
        return refuse('not an MP_CAPABLE SYN');
      }
      if (!this.acceptModes.includes(mode)) {
        this.mib.inc('MPCapableModeRefused');
        return refuse(`mode ${mode} not accepted`, TcpRstReason.ADMIN_PROHIBITED);
      }
      if (this.tokens.size >= this.maxConnections) {
        this.mib.inc('ConnectionLimit');
        return refuse('connection limit', TcpRstReason.LACK_OF_RESOURCES, TcpRstFlag.TRANSIENT);
      }
      const local = this.newLocalIdentity(mode);
      if (!local) return refuse('no free token', TcpRstReason.LACK_OF_RESOURCES, TcpRstFlag.TRANSIENT);
      const defaults = this.serverDefaults ?? {};
      const conn = new Connection({
        role: 'server',
        mode,
        host: this.host,
        options: defaults as Omit<ConnectionOptions, 'mode'>,
        now,
        announce: (defaults as { announce?: AddressInfo[] }).announce,
      });
      const subflow = startServer(conn, { token: local.token, key: local.key }, path, now);
      this.tokens.set(conn.localToken, conn);
      return { kind: 'connection', connection: conn, subflow };
    }
    if (join) {
      const conn = this.tokens.get(join.receiverToken);
      if (!conn || conn.role !== 'server') {
        this.mib.inc('MPJoinSynRx'); // a known token's connection counts its own
        this.mib.inc('MPJoinNoTokenFound');
        this.mib.inc('MPJoinRejected');
        return refuse('unknown token');
      }
      const r = conn.acceptJoin(join, path ?? {}, now);
      this.wake();
      if (!r.ok) {
        return { kind: 'refused', reply: r.reply, reason: r.reason };
      }
      return { kind: 'join', connection: conn, subflow: r.subflow };
    }
    this.mib.inc('ProtocolError');
    return refuse('first segment has neither MP_CAPABLE nor MP_JOIN SYN');
  }

  /** Tell the drivers of connections changed by an eviction to poll them. */
  private wake(): void {
    if (this.toWake.size === 0) return;
    const conns = [...this.toWake];
    this.toWake.clear();
    for (const c of conns) this.onWake?.(c);
  }

  /**
   * A token (and in rfc8684 mode the key it is derived from) unique at this
   * endpoint. External mode: straight from the allocator, unique by
   * construction. rfc8684 mode: random keys until the token is free: the
   * trial-and-error the seed removes (counted in TokenCollisions).
   */
  private newLocalIdentity(mode: KeyMode): { token: number; key?: Uint8Array } | null {
    if (mode === 'external') {
      const token = this.allocator.allocate((t) => this.tokens.has(t));
      if (token === null) {
        this.mib.inc('TokenExhausted');
        return null;
      }
      return { token };
    }
    for (let i = 0; i < 64; i++) {
      const key = this.random(8);
      const token = tokenFromKey(key);
      if (!this.tokens.has(token)) return { token, key };
      this.mib.inc('TokenCollisions');
    }
    this.mib.inc('TokenExhausted');
    return null;
  }
}
