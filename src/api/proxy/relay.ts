/**
 * One open tunnel: the client's TLS socket and the target's TCP socket,
 * bytes copied both ways by hand-written pipes.
 *
 * - Backpressure end to end: a direction's reader is paused as soon as its
 *   writer's `write()` returns false and resumed on the writer's 'drain'.
 *   What one tunnel holds is therefore bounded per direction by the
 *   writer's high-water mark plus the chunk that crossed it, plus the
 *   paused reader's own buffer (its high-water mark plus one read): with
 *   node's defaults (16 KiB marks, reads of at most 64 KiB) at most about
 *   2 × (16 + 64) KiB = 160 KiB per direction, 320 KiB per tunnel,
 *   whatever the peers do (`buffered()` reports it). The transport's own
 *   buffers (a multipath connection's send and receive buffers, the
 *   kernel's) come on top, bounded where they are (docs/SECURITY.md).
 * - Half-close passes through: the client's end → the target's `end()`,
 *   the target's end → the client's `end()`; each direction carries on
 *   until its own end. Both sockets are `allowHalfOpen`.
 * - Idle timeout: no byte either way for `idleTimeoutMs` closes both.
 * - An error, or one side closing before both its directions finished,
 *   destroys the other side.
 * - `shutdown(graceMs)` (the proxy closing): both sides are ended (what is
 *   buffered is still delivered, what arrives afterwards is dropped) and
 *   whatever is still open after `graceMs` is destroyed.
 */
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { MptcpSubflow } from '../../transport/index.js';
import type { MptlsSocket } from '../session.js';
import type { ConnectTarget } from './request.js';

/** Why a tunnel closed: both ends finished, idle, an error on one side, one side gone, or the proxy closing. */
export type ProxyTunnelCloseReason = 'done' | 'idle' | 'error' | 'aborted' | 'shutdown';

/** What a tunnel's 'close' reports. */
export interface ProxyTunnelSummary {
  reason: ProxyTunnelCloseReason;
  /** The first error of either side, if any. */
  error?: Error;
  bytesUp: number;
  bytesDown: number;
  durationMs: number;
}

export interface ProxyTunnelOptions {
  idleTimeoutMs: number;
  /** Called for every chunk, with its direction: up (client → target) or down. */
  onBytes?: (direction: 'up' | 'down', n: number) => void;
  /** Bytes the client sent after its request, before the tunnel was set up: the target's first. */
  head?: Buffer;
  /** The client's end arrived before the tunnel was set up. */
  clientEnded?: boolean;
}

/**
 * An open tunnel (the proxy's 'tunnel' event): where it goes, both sockets,
 * its byte counts, and `buffered()`. Emits 'close' once, with a
 * `ProxyTunnelSummary`, when both sockets are closed.
 */
export class ProxyTunnel extends EventEmitter {
  /** The requested `host:port`, as the client wrote it. */
  readonly target: string;
  /** The address actually connected to, and its port. */
  readonly address: string;
  readonly port: number;
  readonly startedAt = performance.now();
  bytesUp = 0;
  bytesDown = 0;
  private last = performance.now();
  private idleTimer: NodeJS.Timeout | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private reason: ProxyTunnelCloseReason = 'done';
  private error: Error | undefined;
  private discarding = false;
  private openSides = 2;
  private subflowCount = 0;
  private summary: ProxyTunnelSummary | undefined;

  constructor(
    readonly request: ConnectTarget,
    /** The client's TLS socket. */
    readonly socket: MptlsSocket,
    /** The TCP connection to the target. */
    readonly upstream: net.Socket,
    private readonly options: ProxyTunnelOptions,
  ) {
    super();
    this.target = request.authority;
    this.address = upstream.remoteAddress ?? request.host;
    this.port = upstream.remotePort ?? request.port;
    try {
      this.subflowCount = socket.mptcp?.subflows().length ?? 0;
    } catch {
      this.subflowCount = 0;
    }
    socket.on('subflow', this.onSubflow);
    if (options.head && options.head.length > 0) {
      this.bytesUp += options.head.length;
      options.onBytes?.('up', options.head.length);
      upstream.write(options.head);
    }
    this.side(socket, upstream, 'up');
    this.side(upstream, socket, 'down');
    if (options.clientEnded && !upstream.writableEnded) upstream.end();
    if (options.idleTimeoutMs > 0) this.armIdle(options.idleTimeoutMs);
  }

  private readonly onSubflow = () => {
    this.subflowCount++;
  };

  /** Subflows this tunnel's client connection used so far (1 for a plain TLS or kernel connection). */
  subflowsUsed(): number {
    return Math.max(1, this.subflowCount);
  }

  /** The client connection's mode ('userspace', 'fallback', 'kernel'). */
  get mode(): string {
    return this.socket.mptcp?.mode ?? 'fallback';
  }

  /** The client connection's subflows now. */
  subflows(): MptcpSubflow[] {
    try {
      return this.socket.mptcp?.subflows() ?? [];
    } catch {
      return [];
    }
  }

  /** Bytes this tunnel holds now, per direction: the writer's buffer plus the paused reader's. */
  buffered(): { up: number; down: number } {
    return {
      up: this.upstream.writableLength + this.socket.readableLength,
      down: this.socket.writableLength + this.upstream.readableLength,
    };
  }

  /** Ends both sides (the proxy closing); destroys what is still open after `graceMs`. */
  shutdown(graceMs: number): void {
    if (this.summary) return;
    this.reason = 'shutdown';
    this.discarding = true;
    for (const s of [this.socket, this.upstream]) {
      if (!s.destroyed && !s.writableEnded) s.end();
      s.resume();
    }
    this.graceTimer = setTimeout(() => this.destroy(), graceMs);
    this.graceTimer.unref();
  }

  /** Destroys both sides at once. */
  destroy(error?: Error): void {
    if (error && !this.error) {
      this.error = error;
      this.reason = 'error';
    }
    this.socket.destroy();
    this.upstream.destroy();
  }

  private side(from: Duplex, to: Duplex, direction: 'up' | 'down'): void {
    let waiting = false;
    from.on('data', (chunk: Buffer) => {
      this.last = performance.now();
      if (this.discarding || to.destroyed || to.writableEnded) return;
      if (direction === 'up') this.bytesUp += chunk.length;
      else this.bytesDown += chunk.length;
      this.options.onBytes?.(direction, chunk.length);
      if (!to.write(chunk) && !waiting) {
        waiting = true;
        from.pause();
      }
    });
    to.on('drain', () => {
      if (!waiting) return;
      waiting = false;
      if (!from.destroyed) from.resume();
    });
    from.on('end', () => {
      if (!to.destroyed && !to.writableEnded) to.end();
    });
    from.on('error', (err: Error) => {
      if (!this.error) {
        this.error = err;
        if (this.reason !== 'shutdown') this.reason = 'error';
      }
      to.destroy();
    });
    const onClose = () => {
      // Closed before both its directions finished (reset, destroyed, truncated): the other side goes too.
      if (!(from.readableEnded && from.writableFinished)) {
        if (this.reason === 'done') this.reason = 'aborted';
        to.destroy();
      }
      if (--this.openSides === 0) this.finish();
    };
    // A side that closed before the tunnel was made (its 'close' is gone): counted now.
    if (from.closed) queueMicrotask(onClose);
    else from.once('close', onClose);
  }

  private armIdle(ms: number): void {
    const check = () => {
      const quiet = performance.now() - this.last;
      if (quiet >= ms) {
        this.reason = 'idle';
        this.destroy();
        return;
      }
      this.idleTimer = setTimeout(check, Math.max(1, ms - quiet));
      this.idleTimer.unref();
    };
    this.idleTimer = setTimeout(check, ms);
    this.idleTimer.unref();
  }

  private finish(): void {
    clearTimeout(this.idleTimer);
    clearTimeout(this.graceTimer);
    this.socket.removeListener('subflow', this.onSubflow);
    this.summary = {
      reason: this.reason,
      ...(this.error ? { error: this.error } : {}),
      bytesUp: this.bytesUp,
      bytesDown: this.bytesDown,
      durationMs: performance.now() - this.startedAt,
    };
    this.emit('close', this.summary);
  }

  /** The summary once closed, else undefined. */
  get closed(): ProxyTunnelSummary | undefined {
    return this.summary;
  }
}
