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
import { COPY_MIN, SendSlabs } from './send-slabs.js';

export type StreamMode = 'userspace' | 'fallback';

/**
 * The code a multipath failure carries: the one TCP gives for the same
 * failure, where it has one (every subflow reset: ECONNRESET; no path for
 * too long: ETIMEDOUT), so code written for node:tls matches it; the
 * multipath-only failures keep their own (`ERR_MPTLS_KEY_MISMATCH`…).
 */
const TCP_CODES: Partial<Record<CloseReason, string>> = {
  reset: 'ECONNRESET',
  fastclose: 'ECONNRESET',
  'no-subflows': 'ECONNRESET',
  'resume-timeout': 'ETIMEDOUT',
  timeout: 'ETIMEDOUT',
  'handshake-timeout': 'ETIMEDOUT',
};

/** Closes that are the peer's orderly doing: an `'end'` for the application, never an error (`isOrderly`). */
const ORDERLY: ReadonlySet<CloseReason> = new Set<CloseReason>(['done', 'fastclose']);

/**
 * A multipath connection that failed. `code` is TCP's where TCP has one
 * (ECONNRESET, ETIMEDOUT); `mptlsCode` always names the multipath reason
 * (`ERR_MPTLS_NO_SUBFLOWS`, `ERR_MPTLS_RESUME_TIMEOUT`…), `reason` is the
 * core's `CloseReason`.
 */
export class MptcpClosedError extends Error {
  override readonly name = 'MptcpClosedError';
  readonly code: string;
  readonly mptlsCode: string;
  constructor(readonly reason: CloseReason) {
    super(`multipath connection closed: ${reason}`);
    this.mptlsCode = `ERR_MPTLS_${reason.toUpperCase().replace(/-/g, '_')}`;
    this.code = TCP_CODES[reason] ?? this.mptlsCode;
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
  /** Bulk writes are copied here (see send-slabs.ts); created on the first one. */
  private slabs: SendSlabs | undefined;
  /** Bytes handed to the core so far (its stream offset). */
  private written = 0;
  private readonly writeToCore = (view: Uint8Array): boolean => this.driver.conn.write(view);
  /** moveBytes is pushing (see _read). */
  private moving = false;
  private pendingWrite: ((err?: Error | null) => void) | undefined;
  private peerFin = false;
  private ended = false;
  /** Client: writes kept until the MP_CAPABLE handshake succeeds, for a fallback replay. */
  private replay: Uint8Array[] | undefined;
  private raw: net.Socket | undefined;
  /** The TLS socket over this stream ends its side when the peer ends (node's default, allowHalfOpen false). */
  private upperHalfOpen = false;
  /** The connection ended in order (DATA_FIN, or the peer's MP_FASTCLOSE): writes from here on go nowhere, quietly. */
  private orderly = false;
  private upperError = false;
  /** The TLS socket over this stream (`attach`), which a failure reaches directly. */
  upper: Duplex | undefined;

  constructor(
    readonly driver: MultipathDriver,
    private readonly fallback?: FallbackPlan,
  ) {
    super({ allowHalfOpen: true, decodeStrings: true });
    if (fallback) this.replay = [];
    driver.on('pump', () => {
      this.slabs?.release(driver.conn.sendAcked, this.written);
      this.moveBytes();
    });
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
    this.upperHalfOpen = value;
    try {
      return fn();
    } finally {
      this.allowHalfOpen = own;
    }
  }

  // ─── what a net.Socket offers, for every subflow ────────────────────────
  // (tls.TLSSocket over a JS stream reaches none of these itself: the API
  // points the TLS socket's own methods here.)

  /** TCP_NODELAY on every subflow, present and future (default: on). */
  setNoDelay(enable = true): this {
    this.driver.configure({ noDelay: enable });
    this.raw?.setNoDelay(enable);
    return this;
  }

  /** TCP keepalive on every subflow, present and future. */
  setKeepAlive(enable = false, initialDelayMs = 0): this {
    this.driver.configure({ keepAlive: enable, keepAliveDelayMs: initialDelayMs });
    this.raw?.setKeepAlive(enable, initialDelayMs);
    return this;
  }

  /** Let the event loop exit while this connection is open (every subflow, present and future; the connection's timers never hold it). */
  unref(): this {
    this.driver.configure({ ref: false });
    this.raw?.unref();
    return this;
  }

  /** Undo `unref()`. */
  ref(): this {
    this.driver.configure({ ref: true });
    this.raw?.ref();
    return this;
  }

  get remoteAddress(): string | undefined {
    return this.addressSocket()?.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.addressSocket()?.remotePort;
  }
  get remoteFamily(): string | undefined {
    return this.addressSocket()?.remoteFamily;
  }
  get localAddress(): string | undefined {
    return this.addressSocket()?.localAddress;
  }
  get localPort(): number | undefined {
    return this.addressSocket()?.localPort;
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
    // Half-open, as the multipath stream is: the TLS socket on top ends it (its close_notify first).
    raw.allowHalfOpen = true;
    const settings = this.driver.subflowSettings;
    raw.setNoDelay(settings.noDelay);
    if (settings.keepAlive) raw.setKeepAlive(true, settings.keepAliveDelayMs);
    if (!settings.ref) raw.unref();
    for (const b of replay) raw.write(b);
    raw.on('data', (d: Buffer) => {
      if (!this.push(d)) raw.pause();
    });
    let rawEnded = false;
    raw.on('end', () => {
      rawEnded = true;
      this.push(null);
    });
    // After the peer's FIN, what our last writes meet (EPIPE, ECONNRESET) is
    // no failure of the connection: node's own TLS socket is closed by then.
    raw.on('error', (e) => this.destroy(rawEnded && !this.upperHalfOpen ? undefined : e));
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
    // Asked again while moveBytes is handing over bytes (the consumer read
    // them synchronously): its loop goes on; another pump would do nothing.
    if (this.moving) return;
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
      cb(this.afterClose(conn.closeReason ?? 'reset'));
      return;
    }
    let ok = true;
    for (const c of chunks) {
      if (c.length === 0) continue;
      if (this.replay) this.replay.push(c);
      if (c.length >= COPY_MIN) ok = (this.slabs ??= new SendSlabs(conn.limits.sendBufferLimit)).copy(c, this.written, this.writeToCore);
      else ok = conn.write(c);
      this.written += c.length;
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
    // A write still pending is settled without an error: failed, it would
    // reach the TLS socket on top again, after its 'close'.
    const w = this.pendingWrite;
    this.pendingWrite = undefined;
    w?.();
    cb(err);
  }

  /** Moves in-order bytes from the core to the consumer while it wants them. */
  private moveBytes(): void {
    if (this.raw) return;
    const conn = this.driver.conn;
    this.moving = true;
    try {
      while (this.wantRead) {
        const d = conn.read();
        if (!d) break;
        this.wantRead = false;
        // push() may call _read() synchronously (setting wantRead again).
        if (this.push(d)) this.wantRead = true;
      }
    } finally {
      this.moving = false;
    }
    if (this.peerFin && !this.ended && conn.readableLength === 0) {
      this.ended = true;
      this.push(null);
    }
  }

  /**
   * What a write meets once the connection is closed. After an orderly close
   * a TLS socket that ends with its peer (node's default) still writes its
   * close_notify: it goes nowhere, as on a TCP socket whose peer sent FIN.
   * Otherwise the write fails: EPIPE after an orderly close (as TCP gives a
   * half-open writer), the failure itself after a failure.
   */
  private afterClose(reason: CloseReason): Error | undefined {
    if (!this.isOrderly(reason)) return new MptcpClosedError(reason);
    if (!this.upperHalfOpen) return undefined;
    return Object.assign(new Error('write after the peer closed the multipath connection'), { code: 'EPIPE', reason });
  }

  /**
   * DATA_FIN both ways, or the peer's MP_FASTCLOSE when it proves the peer
   * sent it: with external keys only the peer knows the key it carries. With
   * RFC 8684 keys (sent in clear) anyone who saw the handshake can forge
   * one: it is a reset (ECONNRESET), as RFC 8684 defines it.
   */
  private isOrderly(reason: CloseReason): boolean {
    if (reason === 'fastclose') return this.driver.conn.mode === 'external';
    return ORDERLY.has(reason);
  }

  private onClosed(reason: CloseReason): void {
    // Our own destroy() aborted the connection: its error (if any) is the one to report.
    if (this.destroyed) return;
    if (reason === 'handshake-timeout' && this.fallBack('no multipath handshake within the timeout')) return;
    if (reason === 'refused' && this.fallBack('the server refused multipath (MP_TCPRST to MP_CAPABLE)')) return;
    const w = this.pendingWrite;
    this.pendingWrite = undefined;
    if (this.isOrderly(reason)) {
      // 'end' for the reader, after the bytes already in order; the stream
      // closes once the TLS socket on top has ended its side too.
      this.orderly = true;
      w?.(this.afterClose(reason));
      this.peerFin = true;
      this.moveBytes();
      this.finishIfDone();
      return;
    }
    const err = new MptcpClosedError(reason);
    // Bytes already in order still reach the reader before the error.
    this.moveBytes();
    // The TLS socket on top fails first, itself: through the stream and
    // node's JS stream wrapper the error would reach it a turn later, after
    // a 'drain' for the write still pending (settled here, without an error),
    // or followed by a second 'error' (ECANCELED) after its 'close'.
    // A TLS socket already destroyed has reported its end: an error emitted
    // on this stream then would reach no listener (node's JS stream wrapper
    // re-emits it on itself) and be an uncaught exception.
    if (this.upper) {
      if (!this.upper.destroyed) this.upper.destroy(err);
      w?.();
      this.destroy();
      return;
    }
    w?.();
    this.destroy(err);
  }

  /**
   * The TLS socket on top failed (a bad record, an alert): it reads and
   * writes nothing more. Once the connection is closed in order too there is
   * nothing left to wait for.
   */
  upperFailed(): void {
    this.upperError = true;
    if (this.orderly && !this.destroyed) this.destroy();
  }

  /** After an orderly close: both sides ended (ours by the TLS socket) → destroyed, 'close' without error. */
  private finishIfDone(): void {
    if (!this.orderly || this.destroyed) return;
    if (this.upperError) {
      this.destroy();
      return;
    }
    if (this.ended && this.writableFinished) this.destroy();
    else if (this.ended && !this.writableEnded && !this.upperHalfOpen) this.once('finish', () => this.finishIfDone());
    else if (this.ended && this.writableEnded) this.once('finish', () => this.finishIfDone());
  }
}
