/**
 * Data-level reassembly: bytes arrive on any subflow, in any order, possibly
 * twice (reinjection, redundant scheduling); the application reads them once,
 * in order. Offsets are data-level stream offsets. Holds views into received
 * buffers: no copy.
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

export interface InsertResult {
  /** New bytes kept (in order or out of order). */
  accepted: number;
  /** Bytes already received or already delivered. */
  duplicate: number;
  /** True when the bytes were queued out of order. */
  outOfOrder: boolean;
  /** Refused: queuing them would charge more than the caller's limit (see PIECE_CHARGE). */
  overLimit?: boolean;
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
    return { accepted, duplicate: dup + (data.length - accepted), outOfOrder: true };
  }

  /** The next in-order bytes, or null. */
  read(): Uint8Array | null {
    if (this.readyHead >= this.ready.length) return null;
    const d = this.ready[this.readyHead];
    this.ready[this.readyHead++] = EMPTY;
    this.readyBytes -= d.length;
    if (this.readyHead === this.ready.length) {
      this.ready = [];
      this.readyHead = 0;
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
    // A short view would keep its whole socket read alive: copy it.
    const data = piece.length < PIECE_CHARGE ? piece.slice() : piece;
    this.ooo.splice(i, 0, { start, data });
    this.oooBytes += data.length;
    this.oooCharged += Math.max(data.length, PIECE_CHARGE);
  }

  private pushReady(d: Uint8Array): void {
    if (d.length === 0) return;
    this.ready.push(d);
    this.readyBytes += d.length;
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
