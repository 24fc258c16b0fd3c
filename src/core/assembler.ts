/**
 * Data-level reassembly: bytes arrive on any subflow, in any order, possibly
 * twice (reinjection, redundant scheduling); the application reads them once,
 * in order. Offsets are data-level stream offsets.
 *
 * Received bytes are kept as views into the buffers they arrived in (a socket
 * read, up to 64 KiB) unless a view would keep much more memory alive than it
 * is charged for. One retention rule covers everything the assembler holds and
 * everything `read()` hands on (a stream's buffer keeps those views too):
 *
 *  - out of order, each piece on its own (pieces leave in any order): kept
 *    as a view only when it is at least PIECE_CHARGE bytes and at least half
 *    of its backing buffer, else copied out (exact size);
 *  - in order, a run of consecutive entries from one backing buffer (what one
 *    socket read yields) is judged as a whole when the run ends (an entry
 *    from another buffer, or `read()`): kept as views when the run holds at
 *    least half of its buffer, else copied out into one compact entry (small
 *    copies share buffers of up to 16 KiB). In-order entries leave first in, first
 *    out, so only the run at the head can be partly gone.
 *
 * Bound: the memory behind received data (assembler + what its reader still
 * holds, consumed in order) ≤ 2 × those bytes + 2 × the largest backing
 * buffer (the open run and the partly read one) + 2 × COPY_BUFFER.
 * Legitimate bulk data (each read mostly payload) is not copied.
 */
interface Piece {
  start: number;
  data: Uint8Array;
}

/**
 * Each out-of-order piece is charged at least this many bytes against the
 * receive buffer, and a shorter one is copied out of the read it arrived in:
 * a peer that splits data into tiny out-of-order pieces can neither pin whole
 * socket reads with 1-byte views nor hold millions of pieces in a window
 * meant for bytes.
 */
export const PIECE_CHARGE = 2048;

/** Copies of small in-order runs are packed into shared buffers of this size. */
export const COPY_BUFFER = 16384;
/** The second copy buffer of a connection (the first is the copy's exact size); they double from here. */
export const COPY_BUFFER_MIN = 1024;

export interface InsertResult {
  /** New bytes kept (in order or out of order). */
  accepted: number;
  /** Bytes already received or already delivered. */
  duplicate: number;
  /** True when the bytes were queued out of order. */
  outOfOrder: boolean;
  /** Refused: queuing them would charge more than the caller's limit (see PIECE_CHARGE). */
  overLimit?: boolean;
  /** Queued out of order after every piece already held (Linux's OFO queue tail). */
  atTail?: boolean;
}

export class Assembler {
  /** Next in-order offset expected. */
  rcvNxt = 0;
  private ready: Uint8Array[] = [];
  private readyHead = 0;
  private readyBytes = 0;
  private ooo: Piece[] = [];
  private oooBytes = 0;
  /** oooBytes with each piece counted as at least PIECE_CHARGE. */
  private oooCharged = 0;
  /** Bytes copied out of received buffers by the retention rule (diagnostics). */
  copiedBytes = 0;
  /** The open in-order run: ready[runFrom..] all view `runBuf`, runBytes in all. */
  private runBuf: ArrayBufferLike | null = null;
  private runFrom = 0;
  private runBytes = 0;
  /** Shared buffer for small copies, filled from the front; `copyUsed` bytes handed out. */
  private copyBuf: Uint8Array | null = null;
  private copyUsed = 0;
  /**
   * Size of the next copy buffer. The first is exactly the copy (a first
   * flight: an idle connection then holds no 16 KiB buffer for its
   * ClientHello); then COPY_BUFFER_MIN, doubling up to COPY_BUFFER while
   * small copies keep coming.
   *
   * A buffer with room is kept when the reader empties the queue, so that
   * the next copies share it: abandoning it there would hand every small
   * piece a fresh buffer, and a reader that holds the pieces (node:tls's
   * 16 KiB of them while its application is paused) would pin a buffer per
   * piece (8-byte pieces: 2 MiB).
   */
  private copyNext = 0;

  /** Bytes held, as charged: in order but unread, plus out of order (small pieces charged PIECE_CHARGE). */
  get buffered(): number {
    return this.readyBytes + this.oooCharged;
  }
  /** Bytes actually held (no charge): in order but unread, plus out of order. */
  get heldBytes(): number {
    return this.readyBytes + this.oooBytes;
  }
  /** Out-of-order pieces held. */
  get outOfOrderPieces(): number {
    return this.ooo.length;
  }
  get readable(): number {
    return this.readyBytes;
  }
  get outOfOrderBytes(): number {
    return this.oooBytes;
  }
  /** Highest offset held out of order (or rcvNxt). */
  get highestReceived(): number {
    const last = this.ooo[this.ooo.length - 1];
    return last ? last.start + last.data.length : this.rcvNxt;
  }

  /**
   * `maxCharged`: out-of-order data that would take `buffered` above this is
   * refused whole (the caller decides what the peer's behaviour means).
   */
  insert(start: number, data: Uint8Array, maxCharged = Infinity): InsertResult {
    const len = data.length;
    let end = start + len;
    if (end <= this.rcvNxt) return { accepted: 0, duplicate: len, outOfOrder: false };
    let dup = 0;
    if (start < this.rcvNxt) {
      dup += this.rcvNxt - start;
      data = data.subarray(this.rcvNxt - start);
      start = this.rcvNxt;
    }
    if (start === this.rcvNxt) {
      // Trim against out-of-order pieces that this data overlaps: they will be
      // consumed by the drain below anyway, so only keep our own bytes.
      this.pushReady(data);
      this.rcvNxt = end;
      this.drain();
      return { accepted: len - dup, duplicate: dup, outOfOrder: false };
    }
    // Out of order: insert without overlapping existing pieces.
    if (this.buffered + Math.max(data.length, PIECE_CHARGE) > maxCharged) {
      return { accepted: 0, duplicate: 0, outOfOrder: true, overLimit: true };
    }
    let accepted = 0;
    let i = this.lowerBound(start);
    const atTail = i === this.ooo.length;
    const prev = this.ooo[i - 1];
    let s = start;
    if (prev && prev.start + prev.data.length > s) s = prev.start + prev.data.length;
    while (s < end) {
      const next = this.ooo[i];
      if (next && next.start < end) {
        if (next.start > s) {
          this.addPiece(i, s, data.subarray(s - start, next.start - start));
          accepted += next.start - s;
          i++;
        }
        s = Math.max(s, next.start + next.data.length);
        i++;
      } else {
        this.addPiece(i, s, data.subarray(s - start, end - start));
        accepted += end - s;
        s = end;
      }
    }
    end = start + data.length;
    return { accepted, duplicate: dup + (data.length - accepted), outOfOrder: true, atTail };
  }

  /** The next in-order bytes, or null. */
  read(): Uint8Array | null {
    this.closeRun();
    if (this.readyHead >= this.ready.length) return null;
    const d = this.ready[this.readyHead];
    this.ready[this.readyHead++] = EMPTY;
    this.readyBytes -= d.length;
    if (this.readyHead === this.ready.length) {
      this.ready = [];
      this.readyHead = 0;
      // Everything read: a full copy buffer lives on with its reader only; one
      // with room stays for the next copies (see copyNext).
      if (this.copyBuf !== null && this.copyUsed === this.copyBuf.length) {
        this.copyBuf = null;
        this.copyUsed = 0;
      }
    } else if (this.readyHead > 256 && this.readyHead * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.readyHead);
      this.readyHead = 0;
    }
    return d;
  }

  /** Consumes one sequence number with no data (DATA_FIN) at rcvNxt. */
  advance(n: number): void {
    this.rcvNxt += n;
  }

  private addPiece(i: number, start: number, piece: Uint8Array): void {
    // A short view, or one that is a small part of its buffer, would keep its
    // whole socket read alive for as long as the hole before it: copy it.
    let data = piece;
    if (piece.length < PIECE_CHARGE || piece.length * 2 < piece.buffer.byteLength) {
      // (a copy, whatever the view's class: Buffer#slice would be another view)
      data = new Uint8Array(piece);
      this.copiedBytes += piece.length;
    }
    this.ooo.splice(i, 0, { start, data });
    this.oooBytes += data.length;
    this.oooCharged += Math.max(data.length, PIECE_CHARGE);
  }

  private pushReady(d: Uint8Array): void {
    if (d.length === 0) return;
    if (d.buffer !== this.runBuf) {
      this.closeRun();
      this.runBuf = d.buffer;
      this.runFrom = this.ready.length;
    }
    this.ready.push(d);
    this.runBytes += d.length;
    this.readyBytes += d.length;
  }

  /**
   * Ends the open in-order run: kept as views when it holds at least half of
   * its backing buffer, else copied into one compact entry.
   */
  private closeRun(): void {
    const buf = this.runBuf;
    if (buf === null) return;
    const n = this.runBytes;
    const from = this.runFrom;
    this.runBuf = null;
    this.runBytes = 0;
    if (n * 2 >= buf.byteLength) return;
    this.copiedBytes += n;
    let dst: Uint8Array;
    let at = 0;
    let merged: Uint8Array;
    if (n * 4 > COPY_BUFFER) {
      dst = new Uint8Array(n);
      merged = dst;
    } else {
      if (this.copyBuf === null || this.copyBuf.length - this.copyUsed < n) {
        this.copyBuf = new Uint8Array(Math.max(this.copyNext, n));
        this.copyUsed = 0;
        this.copyNext = Math.min(COPY_BUFFER, Math.max(COPY_BUFFER_MIN, this.copyNext * 2));
      }
      dst = this.copyBuf;
      at = this.copyUsed;
      this.copyUsed += n;
      merged = dst.subarray(at, at + n);
    }
    for (let k = from; k < this.ready.length; k++) {
      const e = this.ready[k];
      dst.set(e, at);
      at += e.length;
    }
    this.ready.length = from;
    // Extend the previous entry when it is the unread copy just before this one.
    const prev = from > this.readyHead ? this.ready[from - 1] : undefined;
    if (prev && merged.buffer === prev.buffer && prev.byteOffset + prev.length === merged.byteOffset) {
      this.ready[from - 1] = new Uint8Array(prev.buffer, prev.byteOffset, prev.length + n);
    } else {
      this.ready.push(merged);
    }
  }

  private drain(): void {
    let k = 0;
    while (k < this.ooo.length && this.ooo[k].start <= this.rcvNxt) {
      const p = this.ooo[k++];
      this.oooBytes -= p.data.length;
      this.oooCharged -= Math.max(p.data.length, PIECE_CHARGE);
      const pEnd = p.start + p.data.length;
      if (pEnd > this.rcvNxt) {
        this.pushReady(p.data.subarray(this.rcvNxt - p.start));
        this.rcvNxt = pEnd;
      }
    }
    if (k > 0) this.ooo.splice(0, k);
  }

  /** First index whose start >= offset. */
  private lowerBound(offset: number): number {
    let lo = 0;
    let hi = this.ooo.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ooo[mid].start < offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

const EMPTY = new Uint8Array(0);
