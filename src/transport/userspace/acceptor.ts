/**
 * The server side of the userspace transport: one listening port for
 * everyone (docs/PROTOCOL.md §5). The first byte of a new TCP connection
 * decides: the mptls magic → a multipath subflow (a new connection or a join,
 * routed by the endpoint's token table); anything else (0x16 for TLS) → a
 * plain client, handed back untouched.
 */
import type net from 'node:net';
import type { Endpoint } from '../../core/endpoint.js';
import type { Connection } from '../../core/connection.js';
import { encodeFrameHead, FrameParser, MAGIC, preamble, ROLE_SERVER, type ParsedItem } from './frame.js';
import { MultipathDriver, now, type DriverOptions } from './driver.js';

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

export class Acceptor {
  private readonly drivers = new WeakMap<Connection, MultipathDriver>();
  private pending = 0;
  private readonly preambleTimeoutMs: number;
  private readonly maxPending: number;
  private readonly driverOptions: DriverOptions | undefined;
  /** Counters of the acceptor itself (the endpoint counts protocol events). */
  readonly stats = { plain: 0, multipath: 0, joins: 0, refused: 0, preambleTimeouts: 0, badFirstFrame: 0, overload: 0, evicted: 0 };
  /** Connections still sending their preamble, oldest first, with how to drop each. */
  private readonly waiting = new Map<net.Socket, () => void>();

  constructor(
    readonly endpoint: Endpoint,
    private readonly events: AcceptorEvents,
    options: AcceptorOptions = {},
  ) {
    this.preambleTimeoutMs = options.preambleTimeoutMs ?? 10_000;
    this.maxPending = options.maxPendingSubflows ?? 1024;
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
    if (this.pending >= this.maxPending) {
      // Full: drop the connection that has waited longest, not the newcomer.
      // Idle connections cannot lock the port: a client that sends its
      // preamble promptly is served even while an attacker keeps the pool full.
      const oldest = this.waiting.entries().next().value as [net.Socket, () => void] | undefined;
      if (oldest) {
        this.stats.evicted++;
        oldest[1]();
        oldest[0].destroy();
      } else {
        this.stats.overload++;
        socket.destroy();
        return;
      }
    }
    this.pending++;
    let settled = false;
    const parser = new FrameParser();
    const items: ParsedItem[] = [];
    const timer = setTimeout(() => {
      this.stats.preambleTimeouts++;
      finish();
      socket.destroy();
    }, this.preambleTimeoutMs);
    timer.unref();
    const finish = () => {
      if (settled) return false;
      settled = true;
      this.pending--;
      this.waiting.delete(socket);
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      return true;
    };
    const onError = () => {
      if (finish()) socket.destroy();
    };
    const onClose = () => finish();
    const onData = (chunk: Buffer) => {
      if (items.length === 0 && !parser.sawPreamble && parser.pending === 0 && chunk[0] !== MAGIC[0]) {
        // Not ours: a plain TLS (or other) client. Put the bytes back.
        if (!finish()) return;
        socket.pause();
        socket.unshift(chunk);
        this.stats.plain++;
        this.events.plain(socket);
        return;
      }
      let got: ParsedItem[];
      try {
        got = parser.push(chunk);
      } catch (e) {
        this.stats.badFirstFrame++;
        if (finish()) socket.destroy();
        this.events.refused((e as Error).message, socket);
        return;
      }
      items.push(...got);
      const firstSeg = items.findIndex((i) => i.kind === 'segment');
      if (firstSeg < 0) return;
      if (!finish()) return;
      socket.pause();
      const first = items[firstSeg];
      if (first.kind !== 'segment') return;
      const rest = items.slice(firstSeg + 1);
      const r = this.endpoint.handleNewSubflow(first.segment, now(), {
        localAddress: socket.localAddress,
        localPort: socket.localPort,
        remoteAddress: socket.remoteAddress,
        remotePort: socket.remotePort,
      });
      if (r.kind === 'refused') {
        this.stats.refused++;
        socket.on('error', () => {});
        socket.write(preamble(ROLE_SERVER));
        socket.end(encodeFrameHead(r.reply));
        setTimeout(() => socket.destroy(), 1000).unref();
        this.events.refused(r.reason, socket);
        return;
      }
      let driver: MultipathDriver | undefined;
      if (r.kind === 'connection') {
        this.stats.multipath++;
        driver = new MultipathDriver(r.connection, this.driverOptions);
        this.drivers.set(r.connection, driver);
        driver.attach(r.subflow, socket, parser, rest);
        socket.resume();
        this.events.connection(driver);
      } else {
        this.stats.joins++;
        driver = this.drivers.get(r.connection);
        if (!driver || driver.isClosed) {
          socket.destroy();
          return;
        }
        driver.attach(r.subflow, socket, parser, rest);
        socket.resume();
      }
    };
    this.waiting.set(socket, () => finish());
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
  }
}
