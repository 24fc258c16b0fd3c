/**
 * Drives one sans-I/O `Connection` over `net.Socket` subflows: the thin I/O
 * glue of the userspace transport. Everything protocol-shaped happens in the
 * core; this file moves bytes, keeps the one timer, and reports.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Connection } from '../../core/connection/index.js';
import type { CloseReason, ConnectionEvent, Transmit } from '../../core/types.js';
import { encodeFrameHead, FrameError, FrameParser, preamble, ROLE_CLIENT, ROLE_SERVER, type ParsedItem } from './frame.js';

export interface DriverOptions {
  /** Client: how to open a join subflow (default: net.connect). */
  connect?: (opts: { host: string; port: number; localAddress?: string }) => net.Socket;
  /** Client: the port joins use when an address comes without one. */
  defaultPort?: number;
  /**
   * Reads a subflow socket's kernel state (Linux TCP_INFO): unsent bytes
   * count into the scheduler's queue, the kernel's RTT replaces the core's
   * estimate for scheduling. Without it only Node's own buffer counts.
   */
  probe?: (socket: net.Socket) => { notsent: number; rttMs: number; unacked?: number; lastAckRecvMs?: number } | undefined;
}

interface SubflowSocket {
  id: number;
  socket: net.Socket;
  parser: FrameParser;
  /** The peer's preamble arrived. */
  open: boolean;
  ended: boolean;
  corked: boolean;
  error?: Error;
  gotBytes: boolean;
  /** Unsent bytes in the kernel's socket buffer at the last probe, and when that was. */
  kernelUnsent: number;
  probedAt: number;
  /** It has carried PROBE_AFTER_BYTES (net.Socket's bytesWritten walks its write queue: read it only until then). */
  probing: boolean;
}

/**
 * What the application asked of its socket (`setNoDelay`, `setKeepAlive`,
 * `ref`/`unref`): applied to every subflow, the ones there now and the ones
 * that come later.
 */
export interface SubflowSettings {
  noDelay: boolean;
  keepAlive: boolean;
  keepAliveDelayMs: number;
  ref: boolean;
}

/** Bytes a subflow socket writes before its kernel state (TCP_INFO) is read. */
const PROBE_AFTER_BYTES = 64 * 1024;

/** A monotonic clock in ms. */
export const now = (): number => performance.now();

export class MultipathDriver extends EventEmitter {
  readonly conn: Connection;
  private readonly subflows = new Map<number, SubflowSocket>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private pumping = false;
  private again = false;
  private closed = false;
  private readonly role: number;
  /** Frames that failed to parse or sockets that errored, for diagnostics. */
  readonly errors: string[] = [];
  /** Applied to every subflow socket (`configure`). */
  private readonly settings: SubflowSettings = { noDelay: true, keepAlive: false, keepAliveDelayMs: 0, ref: true };

  constructor(
    conn: Connection,
    private readonly options: DriverOptions = {},
  ) {
    super();
    this.conn = conn;
    this.role = conn.role === 'client' ? ROLE_CLIENT : ROLE_SERVER;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Takes over a TCP connection as subflow `id`. `parser` carries any state
   * from a listener that already read the peer's first bytes; `items` are
   * parsed items the listener has not handed to the core yet.
   */
  attach(id: number, socket: net.Socket, parser = new FrameParser(), items: ParsedItem[] = [], pumpNow = true): void {
    const sf: SubflowSocket = { id, socket, parser, open: parser.sawPreamble, ended: false, corked: false, gotBytes: false, kernelUnsent: 0, probedAt: -Infinity, probing: false };
    this.subflows.set(id, sf);
    this.apply(socket);
    // Corked: the preamble leaves with the first frames the pump below writes (one segment, not two).
    sf.corked = true;
    socket.cork();
    socket.write(preamble(this.role));
    socket.on('data', (chunk: Buffer) => this.onData(sf, chunk));
    socket.on('end', () => {
      if (this.beforePreamble(sf, 'the server closed without the mptls preamble')) return;
      if (!sf.ended) this.conn.handleSubflowClosed(id, 'fin', now());
      sf.ended = true;
      socket.end();
      this.pump();
    });
    socket.on('error', (err) => {
      sf.error = err;
      this.errors.push(`subflow ${id}: ${err.message}`);
    });
    socket.on('close', () => {
      if (this.isInitialClientSubflow(sf) && !sf.open && !sf.ended) {
        if (sf.error && !sf.gotBytes) {
          sf.ended = true;
          this.emit('connect-failed', sf.error);
        } else if (this.beforePreamble(sf, 'the server closed without the mptls preamble')) return;
      }
      this.subflows.delete(id);
      const refused = !sf.gotBytes && (sf.error as NodeJS.ErrnoException | undefined)?.code === 'ECONNREFUSED';
      if (!sf.ended) this.conn.handleSubflowClosed(id, refused ? 'connect-refused' : 'reset', now());
      sf.ended = true;
      this.pump();
    });
    socket.on('drain', () => this.pump());
    for (const it of items) this.handleItem(sf, it);
    // `pumpNow: false`: the caller pumps once it has put the application on
    // top (a new server connection: its TLS socket reads the ClientHello in
    // that same pump, and SYN/ACK and ServerHello leave in one write).
    if (pumpNow) this.pump();
  }

  private isInitialClientSubflow(sf: SubflowSocket): boolean {
    return this.role === ROLE_CLIENT && sf.id === 0;
  }

  /**
   * The client's first subflow ended or spoke something else before the
   * server's preamble: the server does not speak mptls. Returns true when a
   * listener (the stream's fallback) took it over.
   */
  private beforePreamble(sf: SubflowSocket, reason: string): boolean {
    if (!this.isInitialClientSubflow(sf) || sf.open || sf.ended) return false;
    if (this.listenerCount('no-preamble') === 0) return false;
    sf.ended = true;
    this.subflows.delete(sf.id);
    sf.socket.destroy();
    this.emit('no-preamble', reason);
    return true;
  }

  private onData(sf: SubflowSocket, chunk: Buffer): void {
    sf.gotBytes = true;
    let items: ParsedItem[];
    try {
      items = sf.parser.push(chunk);
    } catch (e) {
      if (this.beforePreamble(sf, `the server answered without the mptls preamble (${e instanceof FrameError ? e.reason : String(e)})`)) return;
      this.protocolError(sf, e);
      return;
    }
    for (const it of items) this.handleItem(sf, it);
    this.pump();
  }

  private handleItem(sf: SubflowSocket, it: ParsedItem): void {
    if (it.kind === 'preamble') {
      sf.open = true;
      this.emit('preamble', sf.id);
      return;
    }
    this.conn.handleSegment(sf.id, it.segment, now());
  }

  private protocolError(sf: SubflowSocket, e: unknown): void {
    const msg = e instanceof FrameError ? e.message : String(e);
    this.errors.push(`subflow ${sf.id}: ${msg}`);
    this.emit('frame-error', sf.id, e);
    this.conn.mib.inc('ProtocolError');
    sf.ended = true;
    this.conn.handleSubflowClosed(sf.id, 'error', now());
    sf.socket.destroy();
    this.pump();
  }

  /** Runs the core until it has nothing more to say; re-entrancy safe. */
  pump(): void {
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.again = false;
        this.pumpOnce();
      } while (this.again);
    } finally {
      this.pumping = false;
    }
  }

  private pumpOnce(): void {
    const t = now();
    const conn = this.conn;
    this.updateQueues();
    for (let ev = conn.pollEvent(); ev; ev = conn.pollEvent()) this.onEvent(ev);
    // Let the application side move bytes in and out before we send.
    this.emit('pump');
    for (let ev = conn.pollEvent(); ev; ev = conn.pollEvent()) this.onEvent(ev);
    let tx: Transmit | null;
    while ((tx = conn.pollTransmit(t)) !== null) this.write(tx);
    for (const sf of this.subflows.values()) {
      if (sf.corked) {
        sf.corked = false;
        sf.socket.uncork();
      }
    }
    for (let ev = conn.pollEvent(); ev; ev = conn.pollEvent()) this.onEvent(ev);
    this.armTimer();
  }

  private updateQueues(): void {
    const probe = this.options.probe;
    const t = now();
    // With a choice of subflows, a fresh TCP_INFO read on every pump: the
    // scheduler's "room" is the kernel's unsent bytes, and a count even half
    // a millisecond old let it overfill the slow path of two (20 + 80 Mbit/s:
    // 81-87 Mbit/s against 95 with a read per pump; bench/NOTES.md). Alone,
    // a subflow is read at most every half millisecond (only stalls and
    // the RTT depend on it then).
    const interval = this.subflows.size > 1 ? 0 : 0.5;
    for (const sf of this.subflows.values()) {
      // Not before the subflow has carried a socket buffer's worth: until then the
      // kernel holds nothing worth counting and the core's own RTT suffices (and a
      // handshake is spared the getsockopt calls).
      if (probe && t - sf.probedAt >= interval && (sf.probing || (sf.probing = sf.socket.bytesWritten >= PROBE_AFTER_BYTES)) && !sf.socket.connecting && !sf.socket.destroyed) {
        sf.probedAt = t;
        const k = probe(sf.socket);
        if (k) {
          sf.kernelUnsent = k.notsent;
          if (k.rttMs > 0) this.conn.setSubflowRtt(sf.id, k.rttMs);
          // The path delivers (nothing unacknowledged, or an ACK that recent): what
          // the peer has not acknowledged yet waits at the peer, it is not lost.
          if (k.unacked !== undefined && k.lastAckRecvMs !== undefined) this.conn.setSubflowPathAlive(sf.id, k.unacked === 0 ? t : t - k.lastAckRecvMs);
        }
      }
      this.conn.setSendQueue(sf.id, sf.socket.writableLength + sf.kernelUnsent);
    }
  }

  private write(tx: Transmit): void {
    const sf = this.subflows.get(tx.subflow);
    if (!sf || sf.socket.destroyed) return;
    if (!sf.ended || tx.close) {
      if (!sf.corked) {
        sf.corked = true;
        sf.socket.cork();
      }
      if (sf.socket.writable) {
        sf.socket.write(encodeFrameHead(tx.segment));
        if (tx.segment.payload && tx.segment.payload.length > 0) sf.socket.write(tx.segment.payload);
      }
    }
    this.conn.setSendQueue(sf.id, sf.socket.writableLength + sf.kernelUnsent);
    if (tx.close) {
      sf.ended = true;
      if (sf.corked) {
        sf.corked = false;
        sf.socket.uncork();
      }
      sf.socket.end();
      if (tx.close === 'reset') {
        // The MP_TCPRST is written; do not wait for the peer's FIN (nor hold the process for it).
        sf.socket.unref();
        setTimeout(() => sf.socket.destroy(), 1000).unref();
      }
    }
  }

  private onEvent(ev: ConnectionEvent): void {
    switch (ev.type) {
      case 'subflow-open':
        this.openSubflow(ev);
        break;
      case 'subflow-up': {
        const info = this.conn.subflowInfo().find((s) => s.id === ev.subflow);
        this.emit('subflow', info ?? { id: ev.subflow });
        break;
      }
      case 'closed':
        this.onClosed(ev.reason);
        this.emit('closed', ev.reason);
        break;
      default:
        this.emit(ev.type, ev);
        break;
    }
  }

  private openSubflow(ev: Extract<ConnectionEvent, { type: 'subflow-open' }>): void {
    const port = ev.remotePort ?? this.options.defaultPort;
    if (port === undefined) {
      this.conn.handleSubflowClosed(ev.subflow, 'error', now());
      return;
    }
    const connect = this.options.connect ?? ((o) => net.connect(o));
    let socket: net.Socket;
    try {
      socket = connect({ host: ev.remoteAddress, port, localAddress: ev.localAddress });
    } catch (e) {
      this.errors.push(`join ${ev.subflow}: ${(e as Error).message}`);
      this.conn.handleSubflowClosed(ev.subflow, 'error', now());
      return;
    }
    this.attach(ev.subflow, socket);
  }

  /** The options the driver was made with (the acceptor shares its probe). */
  get driverOptions(): DriverOptions {
    return this.options;
  }

  private onClosed(_reason: CloseReason): void {
    this.closed = true;
    // Let queued frames (the last ACK, FINs, resets) go out, then let go.
    // They linger for at most 2 s, and never hold the process: a closed
    // connection keeps the event loop no more than a destroyed net.Socket.
    setImmediate(() => {
      for (const sf of this.subflows.values()) {
        if (!sf.ended) {
          sf.ended = true;
          sf.socket.end();
        }
        sf.socket.unref();
        setTimeout(() => sf.socket.destroy(), 2000).unref();
      }
    });
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  /**
   * Keeps one timer at or before the core's next deadline. Deadlines mostly
   * move later (every ACK pushes the stall and delayed-ACK ones), so the
   * timer is re-armed only when the deadline moved earlier: one that fires
   * early finds nothing expired, and the pump after it arms the next.
   */
  private armTimer(): void {
    if (this.closed) return;
    const at = this.conn.pollTimeout();
    const target = at ?? Infinity;
    if (target >= this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = target;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.timerAt = Infinity;
        // The kernel's view first: a stall timer must not fire on a path that delivers.
        this.updateQueues();
        this.conn.handleTimeout(now());
        this.pump();
      },
      Math.max(0, Math.ceil(target - now())),
    );
    this.timer.unref();
  }

  /** Changes what every subflow socket gets (now and from now on): Nagle off or on, TCP keepalive, ref/unref. */
  configure(change: Partial<SubflowSettings>): void {
    Object.assign(this.settings, change);
    for (const sf of this.subflows.values()) this.apply(sf.socket, change);
  }

  /** What every subflow gets now (`configure`). */
  get subflowSettings(): Readonly<SubflowSettings> {
    return this.settings;
  }

  /** A new subflow gets every setting (`change` undefined); a change reaches the ones there already. */
  private apply(socket: net.Socket, change?: Partial<SubflowSettings>): void {
    const s = this.settings;
    if (!change) {
      socket.setNoDelay(s.noDelay);
      if (s.keepAlive) socket.setKeepAlive(true, s.keepAliveDelayMs);
      if (!s.ref) socket.unref();
      return;
    }
    if (change.noDelay !== undefined) socket.setNoDelay(s.noDelay);
    if (change.keepAlive !== undefined || change.keepAliveDelayMs !== undefined) socket.setKeepAlive(s.keepAlive, s.keepAliveDelayMs);
    if (change.ref !== undefined) {
      if (s.ref) socket.ref();
      else socket.unref();
    }
  }

  /** Destroys every subflow at once (after abort). */
  destroyAll(): void {
    for (const sf of this.subflows.values()) sf.socket.destroy();
  }

  /** The live subflow socket with the lowest id. */
  firstSocket(): net.Socket | undefined {
    let best: SubflowSocket | undefined;
    for (const sf of this.subflows.values()) if (!sf.socket.destroyed && (!best || sf.id < best.id)) best = sf;
    return best?.socket;
  }

  /** Local/remote addresses of live subflows, keyed by id. */
  socketOf(id: number): net.Socket | undefined {
    return this.subflows.get(id)?.socket;
  }
}
