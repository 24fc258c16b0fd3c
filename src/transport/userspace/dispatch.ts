/**
 * Cluster mode's primary: the one process that owns the listening port of a
 * multi-process mptls server, and hands every new TCP connection to a
 * worker by its first bytes, as a load balancer does between hosts
 * (docs/PROTOCOL.md §2.1): an MP_JOIN goes to the worker whose id is the
 * second byte of its token (`WorkerTokenAllocator`); a new connection
 * (MP_CAPABLE) or a plain TLS client goes to the next worker in turn. The
 * bytes read to decide travel with the socket (the worker puts them back).
 *
 * It never parses more than the fixed offsets: the subtype nibble at byte
 * 26, the token at byte 28 (`FIRST_SUBTYPE_OFFSET`, `JOIN_TOKEN_OFFSET`).
 * A join for a worker that is gone (died, or never was) is refused here as
 * its worker would refuse an unknown token: MP_TCPRST, `MPJoinNoTokenFound`.
 * A worker that is dying (its channel closed, its exit not yet seen) refuses
 * the handover (`unreachable`): a join for it is refused the same way, a new
 * connection goes to the next worker, so nothing a live worker could serve is
 * lost.
 * Bounded like the acceptor: a connection must show its first bytes within
 * `firstBytesTimeoutMs`, and at most `maxPending` may be waiting (the one
 * that waited longest makes room).
 */
import type net from 'node:net';
import { Mib } from '../../core/mib.js';
import { TcpRstReason } from '../../wire/types.js';
import { workerIdOfToken } from '../../core/token.js';
import { SERVER_DEFAULTS } from '../../core/config.js';
import { encodeFrameHead, FIRST_SUBTYPE_OFFSET, JOIN_TOKEN_OFFSET, MAGIC, preamble, ROLE_SERVER } from './frame.js';

/** Where a connection goes: a worker, by its id. */
export interface DispatchWorker {
  readonly id: number;
  /**
   * Hands the socket and the bytes already read from it over (the worker
   * puts them back). False when the worker can no longer take connections
   * (its channel to this process has closed): nothing was sent, the socket is
   * still this process's. A failure found later (the channel closes while
   * the handle travels) is the worker's to clean up: it destroys the socket.
   */
  send(socket: net.Socket, head: Buffer): boolean;
}

export interface DispatcherOptions {
  /** The workers new connections may go to, in turn (live ones only). */
  workers(): readonly DispatchWorker[];
  /** The live worker with this id, if any. */
  worker(id: number): DispatchWorker | undefined;
  /** Default: the acceptor's preamble timeout (10 s). */
  firstBytesTimeoutMs?: number;
  /** Default: the acceptor's pending-subflow bound (1024). */
  maxPending?: number;
}

/** Bytes that decide: up to the end of an MP_JOIN's receiver token. */
const JOIN_HEAD = JOIN_TOKEN_OFFSET + 4;

interface Waiting {
  readonly socket: net.Socket;
  chunks: Buffer[];
  length: number;
  readonly timer: NodeJS.Timeout;
  readonly onData: (chunk: Buffer) => void;
  readonly onGone: () => void;
}

export class Dispatcher {
  /** What the primary counts: joins refused for a worker that is gone (`MPJoinNoTokenFound`), the MP_TCPRSTs it sent. */
  readonly mib = new Mib();
  readonly stats = { plain: 0, connections: 0, joins: 0, noWorker: 0, unreachable: 0, timeouts: 0, evicted: 0, dropped: 0 };
  private readonly waiting = new Map<net.Socket, Waiting>();
  private next = 0;
  private readonly timeoutMs: number;
  private readonly maxPending: number;

  constructor(private readonly options: DispatcherOptions) {
    this.timeoutMs = options.firstBytesTimeoutMs ?? SERVER_DEFAULTS.preambleTimeoutMs;
    this.maxPending = options.maxPending ?? SERVER_DEFAULTS.maxPendingSubflows;
  }

  get pending(): number {
    return this.waiting.size;
  }

  /** A freshly accepted TCP connection (made with `pauseOnConnect`: nothing is read before this). */
  handle(socket: net.Socket): void {
    if (this.waiting.size >= this.maxPending) {
      const oldest = this.waiting.values().next().value as Waiting | undefined;
      if (oldest) {
        this.stats.evicted++;
        this.forget(oldest);
        oldest.socket.destroy();
      }
    }
    const w: Waiting = {
      socket,
      chunks: [],
      length: 0,
      timer: setTimeout(() => {
        this.stats.timeouts++;
        this.forget(w);
        socket.destroy();
      }, this.timeoutMs),
      onData: (chunk) => this.onData(w, chunk),
      onGone: () => this.forget(w),
    };
    w.timer.unref();
    this.waiting.set(socket, w);
    socket.on('data', w.onData);
    socket.on('error', w.onGone);
    socket.on('close', w.onGone);
    socket.resume();
  }

  private forget(w: Waiting): boolean {
    if (!this.waiting.delete(w.socket)) return false;
    clearTimeout(w.timer);
    w.socket.removeListener('data', w.onData);
    w.socket.removeListener('error', w.onGone);
    w.socket.removeListener('close', w.onGone);
    return true;
  }

  private onData(w: Waiting, chunk: Buffer): void {
    w.chunks.push(chunk);
    w.length += chunk.length;
    const head = w.chunks.length === 1 ? w.chunks[0] : Buffer.concat(w.chunks);
    w.chunks = [head];
    const kind = classify(head);
    if (kind === 'more') return;
    this.forget(w);
    const all = stopReading(w.socket, head);
    if (kind === 'join') {
      this.stats.joins++;
      const token = head.readUInt32BE(JOIN_TOKEN_OFFSET);
      const target = this.options.worker(workerIdOfToken(token));
      if (!target || !this.handOver(target, w.socket, all)) this.refuseJoin(w.socket);
      return;
    }
    if (kind === 'plain') this.stats.plain++;
    else this.stats.connections++;
    // In turn; a worker that cannot take it passes it to the next one.
    const workers = this.options.workers();
    for (let tried = 0; tried < workers.length; tried++) {
      if (this.handOver(workers[this.next++ % workers.length], w.socket, all)) return;
    }
    this.stats.dropped++;
    w.socket.destroy();
  }

  /** True when the socket is dealt with (handed over, or dropped on an error); false when `target` refused it. */
  private handOver(target: DispatchWorker, socket: net.Socket, head: Buffer): boolean {
    try {
      if (target.send(socket, head)) return true;
      this.stats.unreachable++;
      return false;
    } catch {
      this.stats.dropped++;
      socket.destroy();
      return true;
    }
  }

  /** Preamble + MP_TCPRST, as a worker answers a join for a token it does not know. */
  private refuseJoin(socket: net.Socket): void {
    this.stats.noWorker++;
    this.mib.inc('MPJoinNoTokenFound');
    this.mib.inc('MPRstTx');
    socket.on('error', () => {});
    socket.write(preamble(ROLE_SERVER));
    socket.end(encodeFrameHead({ options: [{ subtype: 'MP_TCPRST', flags: 0, reason: TcpRstReason.MPTCP_SPECIFIC }] }));
    setTimeout(() => socket.destroy(), 1000).unref();
  }
}

/**
 * Stops `socket` reading at its handle (a paused net.Socket may still read
 * into its own buffer, and those bytes would stay behind in this process when
 * the handle moves to a worker) and returns `head` with whatever it had
 * buffered beyond it.
 *
 * The buffer is drained first and the handle stopped last: `read()` on an
 * emptied stream asks for more (`_read`, which starts the handle reading
 * again), and bytes the handle read after that were lost with this
 * process's copy of the socket — under load, a ClientHello or a join cut
 * short (a hang, or a TLS "bad record mac").
 */
function stopReading(socket: net.Socket, head: Buffer): Buffer {
  socket.pause();
  const more: Buffer[] = [];
  for (let b = socket.read() as Buffer | null; b; b = socket.read() as Buffer | null) more.push(b);
  const handle = (socket as unknown as { _handle?: { reading?: boolean; readStop?: () => number } })._handle;
  if (handle?.readStop) {
    handle.reading = false;
    handle.readStop();
  }
  return more.length ? Buffer.concat([head, ...more]) : head;
}

/**
 * What the first bytes say: 'plain' (not the mptls magic), 'join' (an
 * MP_JOIN SYN, its token complete), 'other' (an MP_CAPABLE SYN, or a frame the
 * worker's acceptor will judge), or 'more' (not enough bytes yet).
 */
export function classify(head: Uint8Array): 'plain' | 'join' | 'other' | 'more' {
  if (head.length === 0) return 'more';
  for (let i = 0; i < MAGIC.length && i < head.length; i++) if (head[i] !== MAGIC[i]) return 'plain';
  if (head.length <= FIRST_SUBTYPE_OFFSET) return 'more';
  if (head[FIRST_SUBTYPE_OFFSET] >> 4 !== 1) return 'other';
  return head.length >= JOIN_HEAD ? 'join' : 'more';
}
