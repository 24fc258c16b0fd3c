/**
 * The endpoint (model: quinn-proto's `Endpoint`; Linux: net/mptcp/token.c).
 * Owns the token table, creates connections, routes an MP_JOIN to the
 * connection its token names, and enforces the endpoint-wide limits.
 */
import type { MpCapableOption, MpJoinSynOption } from '../wire/types.js';
import { CapableFlag, TcpRstFlag, TcpRstReason } from '../wire/types.js';
import { randomBytes, tokenFromKey } from '../crypto/index.js';
import { Connection, type ConnectionHost } from './connection.js';
import { Mib } from './mib.js';
import { RandomTokenAllocator, type RandomSource, type TokenAllocator } from './token.js';
import type { ClientConnectOptions, ConnectionOptions, EndpointOptions, KeyMode, PathInfo, Segment, AddressInfo } from './types.js';

export type NewSubflowResult =
  /** An MP_CAPABLE SYN: a new connection, its initial subflow id is 0. */
  | { kind: 'connection'; connection: Connection; subflow: number }
  /** A valid MP_JOIN SYN: a new subflow of an existing connection. */
  | { kind: 'join'; connection: Connection; subflow: number }
  /** Refused: write `reply` (an MP_TCPRST), then reset the subflow. */
  | { kind: 'refused'; reply: Segment; reason: string };

export class Endpoint {
  readonly mib = new Mib();
  readonly random: RandomSource;
  private readonly allocator: TokenAllocator;
  private readonly tokens = new Map<number, Connection>();
  private readonly acceptModes: KeyMode[];
  private readonly maxConnections: number;
  private readonly maxPendingJoins: number;
  private pendingJoins = 0;
  private readonly serverDefaults: EndpointOptions['server'];
  private readonly host: ConnectionHost;

  constructor(options: EndpointOptions = {}) {
    this.random = options.random ?? randomBytes;
    this.allocator = options.tokenAllocator ?? new RandomTokenAllocator(this.random);
    this.acceptModes = options.acceptModes ?? ['external'];
    this.maxConnections = options.maxConnections ?? 65536;
    this.maxPendingJoins = options.maxPendingJoins ?? 1024;
    this.serverDefaults = options.server ?? {};
    this.host = {
      random: this.random,
      mib: this.mib,
      release: (c) => {
        if (this.tokens.get(c.localToken) === c) this.tokens.delete(c.localToken);
      },
      reserveJoin: () => {
        if (this.pendingJoins >= this.maxPendingJoins) return false;
        this.pendingJoins++;
        return true;
      },
      releaseJoin: () => {
        this.pendingJoins = Math.max(0, this.pendingJoins - 1);
      },
    };
  }

  /** Live connections (by token). */
  get connectionCount(): number {
    return this.tokens.size;
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

  /** Client: a new connection; its initial subflow (id 0) has the MP_CAPABLE SYN queued. */
  connect(now: number, options: ClientConnectOptions): Connection {
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
    conn.startClient(now, local);
    this.tokens.set(conn.localToken, conn);
    return conn;
  }

  /**
   * Server: the first segment of a new subflow. Never throws on peer input:
   * anything it cannot accept becomes `refused` with a reason and a counter.
   */
  handleNewSubflow(segment: Segment, now: number, path: PathInfo = {}): NewSubflowResult {
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
      const subflow = conn.startServer(now, { token: local.token, key: local.key }, path);
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
      const r = conn.acceptJoin(join, path, now);
      if (!r.ok) {
        return { kind: 'refused', reply: r.reply, reason: r.reason };
      }
      return { kind: 'join', connection: conn, subflow: r.subflow };
    }
    this.mib.inc('ProtocolError');
    return refuse('first segment has neither MP_CAPABLE nor MP_JOIN SYN');
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
