/**
 * A deterministic network simulator that drives two sans-I/O cores on
 * virtual time (model: quinn-proto's test `Pair`).
 *
 * Each path is a pair of one-way pipes with a rate and a delay. A subflow is
 * a reliable in-order byte pipe on one path (what a TCP connection gives):
 * a segment leaves the sender's queue after its serialisation time and
 * arrives `delay` ms later. Every segment's options go through the real
 * codec (encodeOption → decodeOption), so the simulator exercises the wire
 * format too. Failure modes: reset (both ends see the subflow die), blackhole
 * (the path silently stops delivering and stops draining, as TCP does when
 * its ACKs stop), delay spikes and rate changes. The same seed gives the
 * same run, byte for byte.
 */
import { createHash } from 'node:crypto';
import { Endpoint } from '../../src/core/endpoint.js';
import type { Connection } from '../../src/core/connection/index.js';
import type { ClientConnectOptions, ConnectionOptions, KeyMode, Segment, Transmit, AddressInfo } from '../../src/core/types.js';
import { decodeOption, encodeOption } from '../../src/wire/options.js';
import { ServerIdTokenAllocator, type TokenAllocator } from '../../src/core/token.js';
import { mulberry32, seededBytes } from './random.js';

/** Per-frame bytes besides options and payload (userspace frame header). */
export const FRAME_OVERHEAD = 8;

class Heap<T> {
  private items: { t: number; seq: number; v: T }[] = [];
  private seq = 0;
  get size(): number {
    return this.items.length;
  }
  push(t: number, v: T): void {
    const a = this.items;
    a.push({ t, seq: this.seq++, v });
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(a[p], a[i])) break;
      [a[p], a[i]] = [a[i], a[p]];
      i = p;
    }
  }
  peekTime(): number {
    return this.items.length ? this.items[0].t : Infinity;
  }
  pop(): { t: number; v: T } | undefined {
    const a = this.items;
    if (a.length === 0) return undefined;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && less(a[l], a[m])) m = l;
        if (r < a.length && less(a[r], a[m])) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i], a[m]];
        i = m;
      }
    }
    return top;
  }
}
function less(a: { t: number; seq: number }, b: { t: number; seq: number }): boolean {
  return a.t < b.t || (a.t === b.t && a.seq < b.seq);
}

export interface PathSpec {
  rateMbps: number;
  delayMs: number;
}

interface Pipe {
  rateBps: number;
  delayMs: number;
  busyUntil: number;
  lastArrival: number;
  blackholed: boolean;
  /** While blackholed: what TCP would retransmit once the path works again (in order). */
  held: { arrival?: { sub: SimSubflow; to: Side; segment: Segment; close?: 'fin' | 'reset' }; send?: { sub: SimSubflow; side: Side; t: Transmit } }[];
  spikeUntil: number;
  spikeMs: number;
  bytesDelivered: number;
}

interface Path {
  index: number;
  clientAddress: string;
  serverAddress: string;
  up: Pipe; // client → server
  down: Pipe; // server → client
  /** No route: every subflow on it was reset and new ones fail at once (ENETUNREACH), until pathUp. */
  unreachable?: boolean;
}

type Side = 'client' | 'server';

/** One simulated TCP connection carrying one subflow. */
interface SimSubflow {
  key: number;
  path: Path;
  clientSubflow: number;
  serverConn?: Connection;
  serverSubflow?: number;
  open: boolean;
  /** Per direction: departures not yet reached, for the driver's unsent-bytes count. */
  queue: Record<Side, { departAt: number; size: number }[]>;
  endedBy: Partial<Record<Side, 'fin' | 'reset'>>;
  /** A subflow opened by a test's attacker: what the server sends goes here, not to the client. */
  rogue?: (segment: Segment, close?: 'fin' | 'reset') => void;
}

/** What an on-path observer sees (and may rewrite: return a segment to send instead, or null to drop). */
export type Observer = (from: Side, subflowKey: number, segment: Segment, close?: 'fin' | 'reset') => Segment | null | void;

export interface RogueSubflow {
  key: number;
  send(segment: Segment, close?: 'fin' | 'reset'): void;
  readonly received: Segment[];
  closed?: 'fin' | 'reset';
}

type SimEvent =
  | { kind: 'arrive'; sub: SimSubflow; to: Side; segment: Segment; close?: 'fin' | 'reset'; bytes: number }
  | { kind: 'depart'; sub: SimSubflow; from: Side }
  | { kind: 'timer'; side: Side }
  | { kind: 'action'; fn: () => void }
  | { kind: 'app'; side: Side };

export interface AppSpec {
  /** Bytes to send. */
  bytes: number;
  /** Half-close (DATA_FIN) after the last byte. Default true. */
  close?: boolean;
  /** Start sending at this time (ms). Default: as soon as established. */
  startAt?: number;
  /** Application read rate in Mbit/s (default: reads everything at once). */
  readRateMbps?: number;
}

export interface SideReport {
  sent: number;
  received: number;
  sentSha256: string;
  receivedSha256: string;
  /** Longest time between two deliveries to the application while data was still expected (ms). */
  maxGapMs: number;
  gapAt: number;
  dataFin: boolean;
  closed?: string;
  firstByteAt?: number;
  lastByteAt?: number;
  /** Received bytes per time bucket (for goodput windows). */
  deliveries: { t: number; n: number }[];
  maxReceiveBuffered: number;
  maxSendBuffered: number;
}

export interface SimOptions {
  seed: number;
  paths: PathSpec[];
  mode?: KeyMode;
  client?: Partial<Omit<ClientConnectOptions, 'remote' | 'mode'>>;
  server?: Omit<ConnectionOptions, 'mode'> & { announce?: AddressInfo[] };
  /** Client opens joins from every path's local address (default true). */
  joinAllPaths?: boolean;
  /** When each side installs the (shared) external keys, ms after it sees 'established'. */
  keyDelayMs?: { client: number; server: number };
  tokenAllocator?: TokenAllocator;
  /** Trace every segment (for debugging). */
  trace?: (line: string) => void;
  /** Sees every segment after the codec round trip; may rewrite or drop it. */
  observer?: Observer;
}

const EMPTY = new Uint8Array(0);

/** A deterministic test pattern: byte i of a stream is pattern[(i * 7 + seed) % len]. */
function makeSource(rand: () => number): Uint8Array {
  const b = new Uint8Array(1 << 20);
  for (let i = 0; i < b.length; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

class App {
  sent = 0;
  received = 0;
  readonly sentHash = createHash('sha256');
  readonly recvHash = createHash('sha256');
  lastDelivery: number | undefined;
  maxGapMs = 0;
  gapAt = 0;
  dataFin = false;
  closed: string | undefined;
  closeRequested = false;
  firstByteAt: number | undefined;
  lastByteAt: number | undefined;
  deliveries: { t: number; n: number }[] = [];
  readCredit = 0;
  lastReadAt = 0;
  /** A wake-up for the slow reader is already scheduled at this time. */
  readWakeAt = -1;
  maxReceiveBuffered = 0;
  maxSendBuffered = 0;
  constructor(
    readonly spec: AppSpec,
    readonly expectIncoming: number | undefined,
    private readonly source: Uint8Array,
  ) {}

  chunk(offset: number, n: number): Uint8Array {
    const start = offset % this.source.length;
    return this.source.subarray(start, Math.min(this.source.length, start + n));
  }
}

export class Sim {
  now = 0;
  readonly rand: () => number;
  readonly clientEndpoint: Endpoint;
  readonly serverEndpoint: Endpoint;
  client!: Connection;
  server: Connection | undefined;
  readonly paths: Path[];
  private readonly events = new Heap<SimEvent>();
  private readonly subs = new Map<number, SimSubflow>();
  private readonly byClientSubflow = new Map<number, SimSubflow>();
  private readonly byServerSubflow = new Map<number, SimSubflow>();
  private nextKey = 0;
  private readonly apps: Record<Side, App | undefined> = { client: undefined, server: undefined };
  private readonly timerAt: Record<Side, number> = { client: Infinity, server: Infinity };
  private readonly keys: { a: Uint8Array; b: Uint8Array };
  private keysScheduled: Record<Side, boolean> = { client: false, server: false };
  readonly log: string[] = [];
  readonly segmentsSent = { client: 0, server: 0 };

  constructor(private readonly opts: SimOptions) {
    this.rand = mulberry32(opts.seed);
    const bytes = seededBytes(this.rand);
    this.keys = { a: bytes(8), b: bytes(8) };
    this.paths = opts.paths.map((p, i) => ({
      index: i,
      clientAddress: `198.18.${i}.1`,
      serverAddress: `198.18.${i}.2`,
      up: newPipe(p),
      down: newPipe(p),
    }));
    const mode = opts.mode ?? 'external';
    this.clientEndpoint = new Endpoint({ random: bytes, acceptModes: [mode] });
    this.serverEndpoint = new Endpoint({
      random: bytes,
      acceptModes: [mode],
      server: opts.server,
      tokenAllocator: opts.tokenAllocator ?? new ServerIdTokenAllocator(7, bytes),
    });
    this.source = makeSource(this.rand);
  }
  private readonly source: Uint8Array;

  /** Start the connection and the applications. */
  start(apps: { client?: AppSpec; server?: AppSpec }): void {
    const local = (this.opts.joinAllPaths ?? true) ? this.paths.map((p) => ({ address: p.clientAddress })) : [{ address: this.paths[0].clientAddress }];
    this.client = this.clientEndpoint.connect({
      mode: this.opts.mode ?? 'external',
      remote: { address: this.paths[0].serverAddress, port: 443 },
      localAddresses: local,
      ...this.opts.client,
    }, this.now);
    this.apps.client = new App(apps.client ?? { bytes: 0 }, apps.server?.bytes, this.source);
    this.apps.server = new App(apps.server ?? { bytes: 0 }, apps.client?.bytes, this.source);
    const sub = this.newSub(this.paths[0], 0);
    void sub;
    this.pump('client');
  }

  /**
   * A subflow from an attacker on path `i` to the server: the test sends
   * segments, and collects what the server answers.
   */
  openRogueSubflow(i: number): RogueSubflow {
    const s: SimSubflow = { key: this.nextKey++, path: this.paths[i], clientSubflow: -1, open: true, queue: { client: [], server: [] }, endedBy: {} };
    this.subs.set(s.key, s);
    const rogue: RogueSubflow = {
      key: s.key,
      received: [],
      send: (segment, close) => {
        this.sendRaw(s, 'client', { subflow: -1, segment, close });
      },
    };
    s.rogue = (seg, close) => {
      rogue.received.push(seg);
      if (close) rogue.closed = close;
    };
    return rogue;
  }

  /** Run a scenario action at time t. */
  at(t: number, fn: () => void): void {
    this.events.push(t, { kind: 'action', fn });
  }

  resetPath(i: number): void {
    for (const s of this.subs.values()) {
      if (s.path.index !== i || !s.open) continue;
      this.killSub(s, 'reset');
    }
  }

  /** The path goes away (link down, address gone): its subflows are reset, new ones fail at once. */
  pathDown(i: number): void {
    this.paths[i].unreachable = true;
    this.resetPath(i);
  }

  /** The path works again. */
  pathUp(i: number): void {
    this.paths[i].unreachable = false;
  }

  blackholePath(i: number): void {
    const p = this.paths[i];
    p.up.blackholed = true;
    p.down.blackholed = true;
  }

  /**
   * The blackhole ends. Like TCP after an outage, what was lost in flight or
   * never left is delivered now, in order (the subflows did not die).
   */
  unblackholePath(i: number): void {
    const p = this.paths[i];
    for (const pipe of [p.up, p.down]) {
      pipe.blackholed = false;
      const held = pipe.held.splice(0);
      let k = 0;
      for (const h of held) {
        if (h.arrival) this.events.push(this.now + pipe.delayMs + 1e-6 * k++, { kind: 'arrive', ...h.arrival, bytes: 0 });
      }
      for (const s of this.subs.values()) {
        if (s.path !== p) continue;
        for (const side of ['client', 'server'] as const) s.queue[side] = s.queue[side].filter((q) => q.departAt !== Infinity);
      }
      for (const h of held) if (h.send) this.sendRaw(h.send.sub, h.send.side, h.send.t);
    }
  }

  delaySpike(i: number, extraMs: number, durationMs: number): void {
    for (const pipe of [this.paths[i].up, this.paths[i].down]) {
      pipe.spikeMs = extraMs;
      pipe.spikeUntil = this.now + durationMs;
    }
  }

  setRate(i: number, rateMbps: number): void {
    this.paths[i].up.rateBps = rateMbps * 1e6;
    this.paths[i].down.rateBps = rateMbps * 1e6;
  }

  /** Runs until both applications are done and the connection closed, nothing is left to do, or `until`. */
  run(until: number): { deadlock: boolean; timedOut: boolean } {
    let steps = 0;
    while (this.events.size > 0) {
      const t = this.events.peekTime();
      if (t > until) {
        this.now = until;
        return { deadlock: false, timedOut: !this.done() };
      }
      const e = this.events.pop()!;
      this.now = Math.max(this.now, e.t);
      this.dispatch(e.v);
      if (++steps > 5_000_000) throw new Error('simulator step limit');
      if (this.done() && this.closedBoth()) return { deadlock: false, timedOut: false };
    }
    return { deadlock: !this.done(), timedOut: false };
  }

  private done(): boolean {
    const c = this.apps.client!;
    const s = this.apps.server!;
    const wantsFin = (a: App) => a.spec.close !== false;
    const cDone = c.sent === c.spec.bytes && s.received === c.spec.bytes && (!wantsFin(c) || s.dataFin);
    const sDone = s.sent === s.spec.bytes && c.received === s.spec.bytes && (!wantsFin(s) || c.dataFin);
    return cDone && sDone;
  }

  private closedBoth(): boolean {
    const c = this.apps.client!;
    const s = this.apps.server!;
    if (c.spec.close === false || s.spec.close === false) return true;
    return c.closed !== undefined && s.closed !== undefined;
  }

  report(side: Side): SideReport {
    const a = this.apps[side]!;
    return {
      sent: a.sent,
      received: a.received,
      sentSha256: a.sentHash.copy().digest('hex'),
      receivedSha256: a.recvHash.copy().digest('hex'),
      maxGapMs: a.maxGapMs,
      gapAt: a.gapAt,
      dataFin: a.dataFin,
      closed: a.closed,
      firstByteAt: a.firstByteAt,
      lastByteAt: a.lastByteAt,
      deliveries: a.deliveries,
      maxReceiveBuffered: a.maxReceiveBuffered,
      maxSendBuffered: a.maxSendBuffered,
    };
  }

  /** SHA-256 of the first `n` bytes any application sends (all use the same pattern). */
  prefixSha256(n: number): string {
    const h = createHash('sha256');
    for (let off = 0; off < n; ) {
      const start = off % this.source.length;
      const take = Math.min(this.source.length - start, n - off);
      h.update(this.source.subarray(start, start + take));
      off += take;
    }
    return h.digest('hex');
  }

  /** True when both applications got everything they were sent (and the DATA_FINs asked for). */
  get complete(): boolean {
    return this.done();
  }

  /** Bytes delivered to `side`'s application in [from, to) ms. */
  deliveredBetween(side: Side, from: number, to: number): number {
    let n = 0;
    for (const d of this.apps[side]!.deliveries) if (d.t >= from && d.t < to) n += d.n;
    return n;
  }

  conn(side: Side): Connection | undefined {
    return side === 'client' ? this.client : this.server;
  }

  // ─── internals ───────────────────────────────────────────────────────────

  private newSub(path: Path, clientSubflow: number): SimSubflow {
    const s: SimSubflow = {
      key: this.nextKey++,
      path,
      clientSubflow,
      open: true,
      queue: { client: [], server: [] },
      endedBy: {},
    };
    this.subs.set(s.key, s);
    this.byClientSubflow.set(clientSubflow, s);
    return s;
  }

  private killSub(s: SimSubflow, how: 'reset'): void {
    s.open = false;
    this.client.handleSubflowClosed(s.clientSubflow, how, this.now);
    if (s.serverConn && s.serverSubflow !== undefined) s.serverConn.handleSubflowClosed(s.serverSubflow, how, this.now);
    this.pump('client');
    this.pump('server');
  }

  private dispatch(e: SimEvent): void {
    switch (e.kind) {
      case 'action':
        e.fn();
        this.pump('client');
        this.pump('server');
        break;
      case 'timer':
        this.timerAt[e.side] = Infinity;
        this.conn(e.side)?.handleTimeout(this.now);
        this.pump(e.side);
        break;
      case 'depart':
        this.pump(e.from);
        break;
      case 'app':
        this.pump(e.side);
        break;
      case 'arrive':
        this.arrive(e.sub, e.to, e.segment, e.close);
        break;
    }
  }

  private arrive(sub: SimSubflow, to: Side, segment: Segment, close?: 'fin' | 'reset'): void {
    const inPipe = to === 'server' ? sub.path.up : sub.path.down;
    if (inPipe.blackholed) {
      inPipe.held.push({ arrival: { sub, to, segment, close } }); // lost in flight (TCP retransmits it later)
      return;
    }
    if (!sub.open && !close) return;
    if (to === 'server') {
      if (!sub.serverConn) {
        const r = this.serverEndpoint.handleNewSubflow(segment, {
          localAddress: sub.path.serverAddress,
          localPort: 443,
          remoteAddress: sub.path.clientAddress,
          remotePort: 40000 + sub.key,
        }, this.now);
        if (r.kind === 'refused') {
          this.trace(`server refused subflow ${sub.key}: ${r.reason}`);
          this.sendRaw(sub, 'server', { subflow: -1, segment: r.reply, close: 'reset' });
          sub.open = false;
          return;
        }
        if (r.kind === 'connection') {
          if (this.server) {
            this.trace('second connection?');
          }
          this.server = r.connection;
        }
        sub.serverConn = r.connection;
        sub.serverSubflow = r.subflow;
        this.byServerSubflow.set(r.subflow, sub);
        this.pump('server');
        return;
      }
      sub.serverConn.handleSegment(sub.serverSubflow!, segment, this.now);
      if (close) {
        sub.open = false;
        sub.serverConn.handleSubflowClosed(sub.serverSubflow!, close, this.now);
      }
      this.pump('server');
    } else if (sub.rogue) {
      sub.rogue(segment, close);
      if (close) sub.open = false;
    } else {
      this.client.handleSegment(sub.clientSubflow, segment, this.now);
      if (close) {
        sub.open = false;
        this.client.handleSubflowClosed(sub.clientSubflow, close, this.now);
      }
      this.pump('client');
    }
  }

  /** Drains a side's events, transmits and app I/O; re-arms its timer. */
  private pump(side: Side): void {
    const conn = this.conn(side);
    if (!conn) return;
    for (let guard = 0; guard < 100000; guard++) {
      let progressed = false;
      this.updateQueues(side, conn);
      for (let ev = conn.pollEvent(); ev; ev = conn.pollEvent()) {
        progressed = true;
        this.onEvent(side, conn, ev);
      }
      this.appWrite(side, conn);
      this.appRead(side, conn);
      for (let t = conn.pollTransmit(this.now); t; t = conn.pollTransmit(this.now)) {
        progressed = true;
        this.transmit(side, t);
        this.updateQueues(side, conn);
      }
      if (!progressed) break;
    }
    const to = conn.pollTimeout();
    if (to !== null && to < this.timerAt[side]) {
      this.timerAt[side] = to;
      this.events.push(Math.max(to, this.now), { kind: 'timer', side });
    }
  }

  private updateQueues(side: Side, conn: Connection): void {
    for (const s of this.subs.values()) {
      const q = s.queue[side];
      while (q.length > 0 && q[0].departAt <= this.now) q.shift();
      const id = side === 'client' ? s.clientSubflow : s.serverSubflow;
      if (id === undefined || id < 0 || (side === 'server' && s.serverConn !== conn)) continue;
      let n = 0;
      for (const e of q) n += e.size;
      conn.setSendQueue(id, n);
    }
  }

  private onEvent(side: Side, conn: Connection, ev: ReturnType<Connection['pollEvent']> & object): void {
    this.trace(`${this.now.toFixed(3)} ${side} event ${JSON.stringify(ev)}`);
    const app = this.apps[side]!;
    switch (ev.type) {
      case 'established': {
        if ((this.opts.mode ?? 'external') === 'external' && !this.keysScheduled[side]) {
          this.keysScheduled[side] = true;
          const d = this.opts.keyDelayMs?.[side] ?? 0;
          this.at(this.now + d, () => {
            if (conn.state === 'established') conn.installKeys(this.keys.a, this.keys.b, this.now);
          });
        }
        if (app.spec.startAt && app.spec.startAt > this.now) this.events.push(app.spec.startAt, { kind: 'app', side });
        break;
      }
      case 'subflow-open': {
        const path =
          this.paths.find((p) => p.clientAddress === ev.localAddress && p.serverAddress === ev.remoteAddress) ??
          this.paths.find((p) => p.serverAddress === ev.remoteAddress && ev.localAddress === this.paths[0].clientAddress) ??
          this.paths.find((p) => p.clientAddress === ev.localAddress);
        if (!path || path.unreachable) {
          conn.handleSubflowClosed(ev.subflow, 'error', this.now);
          break;
        }
        this.newSub(path, ev.subflow);
        break;
      }
      case 'data-fin':
        app.dataFin = true;
        break;
      case 'closed':
        app.closed = ev.reason;
        break;
      default:
        break;
    }
  }

  private appWrite(side: Side, conn: Connection): void {
    const app = this.apps[side]!;
    if (conn.state !== 'established') return;
    if (app.spec.startAt !== undefined && this.now < app.spec.startAt) return;
    while (app.sent < app.spec.bytes) {
      const n = Math.min(16384, app.spec.bytes - app.sent);
      const chunk = app.chunk(app.sent, n);
      app.sentHash.update(chunk);
      app.sent += chunk.length;
      const ok = conn.write(chunk);
      app.maxSendBuffered = Math.max(app.maxSendBuffered, conn.bufferedAmount);
      if (!ok) return;
    }
    if (app.sent === app.spec.bytes && app.spec.close !== false && !app.closeRequested) {
      app.closeRequested = true;
      conn.close(this.now);
    }
  }

  private appRead(side: Side, conn: Connection): void {
    const app = this.apps[side]!;
    app.maxReceiveBuffered = Math.max(app.maxReceiveBuffered, conn.receiveBuffered);
    const rate = app.spec.readRateMbps;
    let budget = Infinity;
    if (rate !== undefined) {
      app.readCredit = Math.min(app.readCredit + ((this.now - app.lastReadAt) * rate * 1e3) / 8, 1 << 20);
      app.lastReadAt = this.now;
      budget = app.readCredit;
      if (budget < 1 && conn.readableLength > 0) {
        this.wakeReader(app, side);
        return;
      }
    }
    while (budget >= 1) {
      const d = conn.read();
      if (!d) break;
      app.recvHash.update(d);
      app.received += d.length;
      budget -= d.length;
      if (rate !== undefined) app.readCredit -= d.length;
      if (app.firstByteAt === undefined) app.firstByteAt = this.now;
      if (app.lastDelivery !== undefined && this.now - app.lastDelivery > app.maxGapMs) {
        app.maxGapMs = this.now - app.lastDelivery;
        app.gapAt = app.lastDelivery;
      }
      app.lastDelivery = this.now;
      app.lastByteAt = this.now;
      app.deliveries.push({ t: this.now, n: d.length });
    }
    if (rate !== undefined && conn.readableLength > 0) this.wakeReader(app, side);
  }

  /** One pending wake-up per slow reader (every pump would otherwise add one). */
  private wakeReader(app: App, side: Side): void {
    if (app.readWakeAt > this.now) return;
    app.readWakeAt = this.now + 1;
    this.events.push(app.readWakeAt, { kind: 'app', side });
  }

  private transmit(side: Side, t: Transmit): void {
    const sub = side === 'client' ? this.byClientSubflow.get(t.subflow) : this.byServerSubflow.get(t.subflow);
    if (!sub) return;
    this.sendRaw(sub, side, t);
  }

  private sendRaw(sub: SimSubflow, side: Side, t: Transmit): void {
    if (!sub.open) return;
    this.segmentsSent[side]++;
    // Through the real codec, both ways.
    let optionBytes = 0;
    const options = t.segment.options.map((o) => {
      const b = encodeOption(o);
      optionBytes += b.length;
      return decodeOption(b);
    });
    const payload = t.segment.payload ?? EMPTY;
    const mac = t.segment.dataFinMac;
    const size = FRAME_OVERHEAD + optionBytes + payload.length + (t.segment.window !== undefined ? 4 : 0) + (t.segment.ack !== undefined ? 4 : 0) + (mac ? mac.length : 0);
    const pipe = side === 'client' ? sub.path.up : sub.path.down;
    const to: Side = side === 'client' ? 'server' : 'client';
    if (this.opts.trace) this.trace(`${this.now.toFixed(3)} ${side}→ sf${sub.key} ${options.map((o) => o.subtype).join(',')} ${payload.length}B${t.close ? ' ' + t.close : ''}`);
    if (pipe.blackholed) {
      // Stops draining: the bytes sit in the sender's queue until the path works again.
      sub.queue[side].push({ departAt: Infinity, size });
      pipe.held.push({ send: { sub, side, t } });
      return;
    }
    const departAt = Math.max(this.now, pipe.busyUntil) + (size * 8 * 1000) / pipe.rateBps;
    pipe.busyUntil = departAt;
    let arriveAt = departAt + pipe.delayMs + (departAt < pipe.spikeUntil ? pipe.spikeMs : 0);
    arriveAt = Math.max(arriveAt, pipe.lastArrival);
    pipe.lastArrival = arriveAt;
    sub.queue[side].push({ departAt, size });
    this.events.push(departAt, { kind: 'depart', sub, from: side });
    let segment: Segment = { options, payload: payload.length ? payload : undefined, window: t.segment.window, ack: t.segment.ack };
    if (mac) segment.dataFinMac = mac.slice(); // the frame's FIN_MAC bytes
    if (this.opts.observer) {
      const r = this.opts.observer(side, sub.key, segment, t.close);
      if (r === null) return;
      if (r) segment = r;
    }
    this.events.push(arriveAt, { kind: 'arrive', sub, to, segment, close: t.close, bytes: size });
    if (t.close) {
      // The sender's side of this subflow is gone after this segment.
      sub.endedBy[side] = t.close;
    }
  }

  private trace(line: string): void {
    if (this.opts.trace) this.opts.trace(line);
  }
}

function newPipe(p: PathSpec): Pipe {
  return {
    rateBps: p.rateMbps * 1e6,
    delayMs: p.delayMs,
    busyUntil: 0,
    lastArrival: 0,
    blackholed: false,
    held: [],
    spikeUntil: 0,
    spikeMs: 0,
    bytesDelivered: 0,
  };
}
