/**
 * The bytes of one tunnel: what the local client sends before the tunnel is
 * up (`EarlyBuffer`, bounded: past `limit` the local socket is paused), then
 * both directions spliced (`splice`) with backpressure end to end (a write
 * that returns false pauses the other side until 'drain') and half-close
 * passing through (an 'end' on one side is an `end()` on the other; both
 * sockets are half-open). Either side failing destroys both, the local one
 * with a RST (`abort`): a tunnel cut short must never look like a clean end
 * of stream to the application. A side that closes cleanly (both its
 * directions finished) lets the other finish writing what it holds.
 */
import type net from 'node:net';
import type { Duplex } from 'node:stream';

/** Default bound of the bytes held before the tunnel is up: 64 KiB (then the local socket is paused). */
export const DEFAULT_EARLY_DATA_LIMIT = 64 * 1024;

/** The local client's bytes before the tunnel is up. */
export class EarlyBuffer {
  private chunks: Buffer[] = [];
  private bytes = 0;
  /** The local side sent its FIN already. */
  ended = false;
  private socket: net.Socket | undefined;
  private readonly onData = (chunk: Buffer) => this.add(chunk);
  private readonly onEnd = () => {
    this.ended = true;
  };

  constructor(private readonly limit = DEFAULT_EARLY_DATA_LIMIT) {}

  /** Bytes held. */
  get length(): number {
    return this.bytes;
  }

  /** Starts taking `socket`'s bytes (it flows until the bound, then is paused). */
  attach(socket: net.Socket): void {
    this.socket = socket;
    socket.on('data', this.onData);
    socket.once('end', this.onEnd);
    if (this.bytes < this.limit) socket.resume();
  }

  /** Bytes that came with the data that finished a SOCKS request. */
  add(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    if (this.bytes >= this.limit) this.socket?.pause();
  }

  /** Stops taking bytes; returns what was held (the socket stays paused). */
  take(): Buffer[] {
    const s = this.socket;
    if (s) {
      s.pause();
      s.removeListener('data', this.onData);
      s.removeListener('end', this.onEnd);
    }
    const out = this.chunks;
    this.chunks = [];
    this.bytes = 0;
    return out;
  }
}

export interface SpliceCounters {
  up(n: number): void;
  down(n: number): void;
}

/** Ends a local socket with a RST (a clean FIN would pass for a complete stream); any other stream is destroyed. */
export function abort(s: Duplex): void {
  if (s.destroyed) return;
  const reset = (s as Partial<net.Socket>).resetAndDestroy;
  if (typeof reset === 'function' && (s as unknown as { _handle?: unknown })._handle) {
    try {
      reset.call(s);
      return;
    } catch {
      // no handle after all: destroy below
    }
  }
  s.destroy();
}

/** What `splice` holds now, per socket: unread (readable) and unsent (writable) bytes. */
export function heldBytes(s: Duplex): number {
  return s.readableLength + s.writableLength;
}

/**
 * Splices `local` and `remote` (both half-open, both paused): `early` goes
 * up first (then `remote.end()` if `localEnded`), `rest` down first.
 * `onClosed` runs once, when both sockets closed, with the first error.
 */
export function splice(
  local: net.Socket,
  remote: Duplex,
  early: { chunks: Buffer[]; ended: boolean },
  rest: Buffer,
  counters: SpliceCounters,
  onClosed: (error: Error | undefined) => void,
): void {
  let error: Error | undefined;
  let closed = 0;
  const onError = (other: Duplex) => (e: Error) => {
    error ??= e;
    abort(other);
  };
  const onClose = (self: Duplex, other: Duplex) => () => {
    // A clean close (read to the end, everything written): the other side finishes on its own.
    if (!(self.readableEnded && self.writableFinished)) abort(other);
    if (++closed === 2) onClosed(error);
  };
  local.on('error', onError(remote));
  remote.on('error', onError(local));
  local.once('close', onClose(local, remote));
  remote.once('close', onClose(remote, local));

  if (rest.length) {
    counters.down(rest.length);
    local.write(rest);
  }
  for (const c of early.chunks) {
    counters.up(c.length);
    remote.write(c);
  }
  pump(remote, local, counters.down);
  if (early.ended) remote.end();
  else pump(local, remote, counters.up);
}

/** `src` into `dst`: paused while `dst` needs a drain, `dst.end()` at `src`'s end. */
function pump(src: Duplex, dst: Duplex, count: (n: number) => void): void {
  src.on('data', (chunk: Buffer) => {
    count(chunk.length);
    if (!dst.write(chunk)) src.pause();
  });
  dst.on('drain', () => src.resume());
  src.once('end', () => dst.end());
  if (!dst.writableNeedDrain) src.resume();
}
