/**
 * The multipath connection as a Node Duplex: what `tls.connect({ socket })`
 * and `new tls.TLSSocket(stream)` run over. Backpressure both ways: writes
 * wait while the core's send buffer is over its limit; reads stop pulling from
 * the core while the consumer is full, which closes the data-level window.
 * Payload buffers pass through by reference (no copy).
 *
 * A client stream can fall back to plain TCP: when the server does not answer
 * with the mptls preamble, the bytes written so far are replayed on a fresh
 * TCP connection and the stream becomes a plain pass-through.
 */
import { Duplex } from 'node:stream';
import net from 'node:net';
import { MultipathDriver, now } from './driver.js';
import type { CloseReason } from '../../core/types.js';

export type StreamMode = 'userspace' | 'fallback';

export class MptcpClosedError extends Error {
  override readonly name = 'MptcpClosedError';
  readonly code: string;
  constructor(readonly reason: CloseReason) {
    super(`multipath connection closed: ${reason}`);
    this.code = `ERR_MPTLS_${reason.toUpperCase().replace(/-/g, '_')}`;
  }
}

/** The server does not speak mptls and fallback was not allowed. */
export class NoMultipathError extends Error {
  override readonly name = 'NoMultipathError';
  readonly code = 'ERR_MPTLS_NO_MULTIPATH';
  constructor(readonly reason: string) {
    super(`no multipath: ${reason}`);
  }
}

export interface FallbackPlan {
  host: string;
  port: number;
  localAddress?: string;
  connect?: (o: { host: string; port: number; localAddress?: string }) => net.Socket;
}

export class MultipathStream extends Duplex {
  mode: StreamMode = 'userspace';
  fallbackReason: string | undefined;
  private wantRead = false;
  private pendingWrite: ((err?: Error | null) => void) | undefined;
  private peerFin = false;
  private ended = false;
  /** Client: writes kept until the MP_CAPABLE handshake succeeds, for a fallback replay. */
  private replay: Uint8Array[] | undefined;
  private raw: net.Socket | undefined;

  constructor(
    readonly driver: MultipathDriver,
    private readonly fallback?: FallbackPlan,
  ) {
    super({ allowHalfOpen: true, decodeStrings: true });
    if (fallback) this.replay = [];
    driver.on('pump', () => this.moveBytes());
    driver.on('established', () => {
      this.replay = undefined;
    });
    driver.on('writable', () => {
      const cb = this.pendingWrite;
      this.pendingWrite = undefined;
      cb?.();
    });
    driver.on('data-fin', () => {
      this.peerFin = true;
    });
    driver.on('closed', (reason: CloseReason) => this.onClosed(reason));
    driver.on('connect-failed', (err: Error) => this.destroy(err));
    driver.on('no-preamble', (reason: string) => {
      if (!this.fallBack(reason)) this.destroy(new NoMultipathError(reason));
    });
  }

  /**
   * Runs `fn` (which wraps this stream in a TLSSocket) while the stream
   * reports `allowHalfOpen = value`: node:tls copies the wrapped socket's
   * setting, and a TLSSocket must get node's default (false: end when the
   * peer ends) while the stream itself never ends on its own.
   */
  wrapWithHalfOpen<T>(value: boolean, fn: () => T): T {
    const own = this.allowHalfOpen;
    this.allowHalfOpen = value;
    try {
      return fn();
    } finally {
      this.allowHalfOpen = own;
    }
  }

  /** The TCP connection whose addresses stand for this stream: the raw one after fallback, else the lowest-id live subflow. */
  addressSocket(): net.Socket | undefined {
    if (this.raw) return this.raw;
    return this.driver.firstSocket();
  }

  /** Switch to plain TCP (client only, before the multipath handshake finished). */
  fallBack(reason: string): boolean {
    if (!this.fallback || !this.replay || this.mode !== 'userspace' || this.destroyed) return false;
    this.mode = 'fallback';
    this.fallbackReason = reason;
    const replay = this.replay;
    this.replay = undefined;
    this.driver.removeAllListeners('closed');
    this.driver.conn.abort(now());
    this.driver.destroyAll();
    const { host, port, localAddress } = this.fallback;
    const connect = this.fallback.connect ?? ((o) => net.connect(o));
    const raw = connect({ host, port, localAddress });
    this.raw = raw;
    raw.setNoDelay(true);
    for (const b of replay) raw.write(b);
    raw.on('data', (d: Buffer) => {
      if (!this.push(d)) raw.pause();
    });
    raw.on('end', () => this.push(null));
    raw.on('error', (e) => this.destroy(e));
    raw.on('close', () => {
      if (!this.destroyed && this.writableFinished && this.readableEnded) this.destroy();
    });
    raw.on('drain', () => {
      const cb = this.pendingWrite;
      this.pendingWrite = undefined;
      cb?.();
    });
    this.emit('fallback', reason);
    return true;
  }

  override _read(): void {
    if (this.raw) {
      this.raw.resume();
      return;
    }
    this.wantRead = true;
    this.driver.pump();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.writeChunks([chunk], cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.writeChunks(
      chunks.map((c) => c.chunk),
      cb,
    );
  }

  private writeChunks(chunks: Buffer[], cb: (err?: Error | null) => void): void {
    if (this.raw) {
      let ok = true;
      for (const c of chunks) ok = this.raw.write(c);
      if (ok) cb();
      else this.pendingWrite = cb;
      return;
    }
    const conn = this.driver.conn;
    if (conn.state === 'closed') {
      cb(new MptcpClosedError(conn.closeReason ?? 'reset'));
      return;
    }
    let ok = true;
    for (const c of chunks) {
      if (c.length === 0) continue;
      if (this.replay) this.replay.push(c);
      ok = conn.write(c);
    }
    if (ok) cb();
    else this.pendingWrite = cb;
    this.driver.pump();
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.raw) {
      this.raw.end(cb);
      return;
    }
    const conn = this.driver.conn;
    if (conn.state !== 'closed') conn.close(now());
    this.driver.pump();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.raw) {
      this.raw.destroy();
    } else if (!this.driver.isClosed && (err || !this.writableFinished)) {
      // An abrupt end: MP_FASTCLOSE. After end() the DATA_FIN exchange is
      // left to finish on its own, as the kernel finishes a closed socket.
      this.driver.conn.abort(now());
      this.driver.pump();
    }
    const w = this.pendingWrite;
    this.pendingWrite = undefined;
    w?.(err ?? new Error('stream destroyed'));
    cb(err);
  }

  /** Moves in-order bytes from the core to the consumer while it wants them. */
  private moveBytes(): void {
    if (this.raw) return;
    const conn = this.driver.conn;
    while (this.wantRead) {
      const d = conn.read();
      if (!d) break;
      this.wantRead = this.push(d);
    }
    if (this.peerFin && !this.ended && conn.readableLength === 0) {
      this.ended = true;
      this.push(null);
    }
  }

  private onClosed(reason: CloseReason): void {
    if (reason === 'handshake-timeout' && this.fallBack('no multipath handshake within the timeout')) return;
    if (reason === 'refused' && this.fallBack('the server refused multipath (MP_TCPRST to MP_CAPABLE)')) return;
    if (reason === 'done') {
      this.moveBytes();
      if (!this.ended) {
        this.ended = true;
        this.push(null);
      }
      return;
    }
    const w = this.pendingWrite;
    this.pendingWrite = undefined;
    const err = new MptcpClosedError(reason);
    w?.(err);
    // Bytes already in order still reach the reader before the error.
    this.moveBytes();
    this.destroy(err);
  }
}
