/**
 * The server side of the userspace transport: one listening port for
 * everyone (docs/PROTOCOL.md §5). The first byte of a new TCP connection
 * decides: the mptls magic → a multipath subflow (a new connection or a join,
 * routed by the endpoint's token table); anything else (0x16 for TLS) → a
 * plain client, handed back untouched.
 */
import type net from 'node:net';
import type { Endpoint } from '../../core/endpoint.js';
import type { Connection } from '../../core/connection/index.js';
import { encodeFrameHead, FrameParser, MAGIC, preamble, ROLE_SERVER, type ParsedItem } from './frame.js';
import { MultipathDriver, now, type DriverOptions } from './driver.js';
import type { Segment } from '../../core/types.js';
import { SERVER_DEFAULTS } from '../../core/config.js';

export interface AcceptorOptions {
  /** A new subflow must send its preamble and first frame within this. Default 10 000 ms. */
  preambleTimeoutMs?: number;
  /** Subflows still sending their preamble, at most. Default 1024. */
  maxPendingSubflows?: number;
  /** Options for the drivers of accepted connections (e.g. a TCP_INFO probe). */
  driver?: DriverOptions;
}

export interface AcceptorEvents {
  /** A new multipath connection (its initial subflow attached). */
  connection(driver: MultipathDriver): void;
  /** A plain (non-multipath) client: the socket with its first bytes put back. */
  plain(socket: net.Socket): void;
  /** A subflow that was refused or failed before it belonged to a connection. */
  refused(reason: string, socket: net.Socket): void;
}

/**
 * How the server that owns the port counts connections (src/api): set on
 * `acceptor.hooks` by the API, absent for a bare acceptor.
 */
export interface AcceptorHooks {
  /** May a new connection (a plain client, or an MP_CAPABLE) be served? false: it is dropped (node's `maxConnections`). */
  admit?(socket: net.Socket, kind: 'plain' | 'multipath'): boolean;
  /** This TCP connection became a subflow (the first of a connection, or a join): it is no connection of its own. */
  subflow?(socket: net.Socket): void;
}

/**
 * A TCP connection still sending its preamble and first frame: the state the
 * acceptor keeps for it until it is settled (handed on, refused or dropped).
 */
interface PendingSubflow {
  readonly socket: net.Socket;
  readonly parser: FrameParser;
  /** Items parsed so far: the preamble, then the first segment and any that came with it. */
  readonly items: ParsedItem[];
  readonly timer: NodeJS.Timeout;
  settled: boolean;
  readonly onData: (chunk: Buffer) => void;
  readonly onError: () => void;
  readonly onClose: () => void;
}

export class Acceptor {
  private readonly drivers = new WeakMap<Connection, MultipathDriver>();
  private pending = 0;
  private readonly preambleTimeoutMs: number;
  private readonly maxPending: number;
  private readonly driverOptions: DriverOptions | undefined;
  /** Counters of the acceptor itself (the endpoint counts protocol events). */
  readonly stats = { plain: 0, multipath: 0, joins: 0, refused: 0, preambleTimeouts: 0, badFirstFrame: 0, overload: 0, evicted: 0, dropped: 0 };
  hooks: AcceptorHooks = {};
  /** Connections still sending their preamble, oldest first. */
  private readonly waiting = new Map<net.Socket, PendingSubflow>();

  constructor(
    readonly endpoint: Endpoint,
    private readonly events: AcceptorEvents,
    options: AcceptorOptions = {},
  ) {
    this.preambleTimeoutMs = options.preambleTimeoutMs ?? SERVER_DEFAULTS.preambleTimeoutMs;
    this.maxPending = options.maxPendingSubflows ?? SERVER_DEFAULTS.maxPendingSubflows;
    this.driverOptions = options.driver;
    // The endpoint may change another connection's state while it handles a
    // new subflow (it evicts a pending join to keep the join pool fair): that
    // connection's driver must write the MP_TCPRST and re-arm its timer.
    // Deferred, so no driver runs (nor its application) inside an accept.
    if (!endpoint.onWake) {
      const due = new Set<MultipathDriver>();
      endpoint.onWake = (conn) => {
        const driver = this.drivers.get(conn);
        if (!driver || due.has(driver)) return;
        due.add(driver);
        setImmediate(() => {
          due.delete(driver);
          driver.pump();
        });
      };
    }
  }

  get pendingSubflows(): number {
    return this.pending;
  }

  /** Takes a freshly accepted TCP connection. */
  handle(socket: net.Socket): void {
    if (!this.makeRoom()) {
      socket.destroy();
      return;
    }
    this.pending++;
    const sub = this.track(socket);
    this.waiting.set(socket, sub);
    socket.on('data', sub.onData);
    socket.on('error', sub.onError);
    socket.on('close', sub.onClose);
  }

  /**
   * Room for one more pending subflow. Full: drop the connection that has
   * waited longest, not the newcomer. Idle connections cannot lock the port: a
   * client that sends its preamble promptly is served even while an attacker
   * keeps the pool full. False when there is nobody to drop.
   */
  private makeRoom(): boolean {
    if (this.pending < this.maxPending) return true;
    const oldest = this.waiting.values().next().value as PendingSubflow | undefined;
    if (!oldest) {
      this.stats.overload++;
      return false;
    }
    this.stats.evicted++;
    this.settle(oldest);
    oldest.socket.destroy();
    return true;
  }

  /** The per-socket state, its preamble timer running. */
  private track(socket: net.Socket): PendingSubflow {
    const sub: PendingSubflow = {
      socket,
      parser: new FrameParser(),
      items: [],
      timer: setTimeout(() => this.onTimeout(sub), this.preambleTimeoutMs),
      settled: false,
      onData: (chunk) => this.onData(sub, chunk),
      onError: () => this.onError(sub),
      onClose: () => void this.settle(sub),
    };
    sub.timer.unref();
    return sub;
  }

  /** Stops tracking a pending subflow; false if it was settled already. */
  private settle(sub: PendingSubflow): boolean {
    if (sub.settled) return false;
    sub.settled = true;
    this.pending--;
    this.waiting.delete(sub.socket);
    clearTimeout(sub.timer);
    sub.socket.removeListener('data', sub.onData);
    sub.socket.removeListener('error', sub.onError);
    sub.socket.removeListener('close', sub.onClose);
    return true;
  }

  private onTimeout(sub: PendingSubflow): void {
    this.stats.preambleTimeouts++;
    this.settle(sub);
    sub.socket.destroy();
  }

  private onError(sub: PendingSubflow): void {
    if (this.settle(sub)) sub.socket.destroy();
  }

  private onData(sub: PendingSubflow, chunk: Buffer): void {
    const { parser, items } = sub;
    if (items.length === 0 && !parser.sawPreamble && parser.pending === 0 && chunk[0] !== MAGIC[0]) {
      this.handOnPlain(sub, chunk);
      return;
    }
    let got: ParsedItem[];
    try {
      got = parser.push(chunk);
    } catch (e) {
      this.stats.badFirstFrame++;
      if (this.settle(sub)) sub.socket.destroy();
      this.events.refused((e as Error).message, sub.socket);
      return;
    }
    items.push(...got);
    const firstSeg = items.findIndex((i) => i.kind === 'segment');
    if (firstSeg < 0) return;
    if (!this.settle(sub)) return;
    sub.socket.pause();
    const first = items[firstSeg];
    if (first.kind !== 'segment') return;
    this.route(sub.socket, parser, first.segment, items.slice(firstSeg + 1));
  }

  /** Not ours: a plain TLS (or other) client. Put the bytes back. */
  private handOnPlain(sub: PendingSubflow, chunk: Buffer): void {
    if (!this.settle(sub)) return;
    if (this.hooks.admit && !this.hooks.admit(sub.socket, 'plain')) {
      this.stats.dropped++;
      sub.socket.destroy();
      return;
    }
    sub.socket.pause();
    sub.socket.unshift(chunk);
    this.stats.plain++;
    this.events.plain(sub.socket);
  }

  /** The first segment decides, through the endpoint: a new connection, a join, or a refusal. */
  private route(socket: net.Socket, parser: FrameParser, first: Segment, rest: ParsedItem[]): void {
    if (this.hooks.admit && Array.isArray(first.options) && first.options.some((o) => o.subtype === 'MP_CAPABLE') && !this.hooks.admit(socket, 'multipath')) {
      this.stats.dropped++;
      socket.destroy();
      return;
    }
    const r = this.endpoint.handleNewSubflow(first, {
      localAddress: socket.localAddress,
      localPort: socket.localPort,
      remoteAddress: socket.remoteAddress,
      remotePort: socket.remotePort,
    }, now());
    if (r.kind === 'refused') {
      this.refuse(socket, r.reply, r.reason);
    } else if (r.kind === 'connection') {
      this.stats.multipath++;
      const driver = new MultipathDriver(r.connection, this.driverOptions);
      this.drivers.set(r.connection, driver);
      this.hooks.subflow?.(socket);
      driver.attach(r.subflow, socket, parser, rest, false);
      socket.resume();
      // The TLS socket first, then one pump: it reads the client's first
      // flight (the ClientHello) at once, and the SYN/ACK leaves with the
      // ServerHello behind it (PROTOCOL.md §5.3).
      this.events.connection(driver);
      driver.pump();
    } else {
      this.stats.joins++;
      const driver = this.drivers.get(r.connection);
      if (!driver || driver.isClosed) {
        socket.destroy();
        return;
      }
      this.hooks.subflow?.(socket);
      driver.attach(r.subflow, socket, parser, rest);
      socket.resume();
    }
  }

  /** Writes the refusal (preamble + MP_TCPRST frame) and closes; destroyed after 1 s at the latest. */
  private refuse(socket: net.Socket, reply: Segment, reason: string): void {
    this.stats.refused++;
    socket.on('error', () => {});
    socket.write(preamble(ROLE_SERVER));
    socket.end(encodeFrameHead(reply));
    setTimeout(() => socket.destroy(), 1000).unref();
    this.events.refused(reason, socket);
  }
}
