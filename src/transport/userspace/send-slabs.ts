/**
 * Bulk writes, copied into a few slabs the connection owns and reuses.
 *
 * Why: the core keeps every written byte until the peer data-ACKs it (it may
 * have to reinject it on another subflow). Kept by reference, the buffers
 * node:tls hands down (one fresh Buffer per encrypted write, up to 1 MiB)
 * live for a round trip, survive V8's young-generation collections, get
 * promoted, and their memory comes back only with a full mark-compact: on
 * loopback 20–30 of them per 512 MiB, a third of the sending process's CPU
 * (perf: ConcurrentMarking, Sweeper). A copy (memcpy, ~0.1 s per GiB) lets
 * every such buffer die young; the slabs themselves are long-lived and never
 * garbage while the transfer runs.
 *
 * Small writes (under COPY_MIN) are kept by reference as before: they are
 * cheap to collect and an idle or chatty connection holds no slab. A slab is
 * reused once every byte in it is data-ACKed. A subflow's socket may still
 * have a frame from it queued (a stalled subflow whose data was reinjected
 * and then acknowledged elsewhere): those bytes are then overwritten, but
 * they lie below the peer's data ACK, so the peer drops them as duplicates
 * without looking (and TLS above would refuse any altered record). When
 * nothing is left unacknowledged every slab is let go.
 */

/** Writes at least this large are copied into slabs. */
export const COPY_MIN = 16 * 1024;
/** One slab. */
export const SLAB_BYTES = 256 * 1024;

interface Slab {
  buf: Buffer;
  /** Stream offset one past the last byte copied into it. */
  end: number;
}

export class SendSlabs {
  /** Slabs holding unacknowledged bytes, oldest first; the last one is being filled. */
  private readonly used: Slab[] = [];
  private readonly free: Buffer[] = [];
  /** Bytes of the last slab in use. */
  private fill = 0;

  /** Slabs allocated (diagnostics and tests). */
  allocated = 0;

  /**
   * `sendBufferLimit`: as many fully acknowledged slabs as it takes to hold
   * that much are kept for reuse (a data ACK may free several at once; with
   * fewer kept, every other slab was a new allocation).
   */
  constructor(sendBufferLimit: number) {
    this.keepFree = Math.ceil(sendBufferLimit / SLAB_BYTES) + 1;
  }
  private readonly keepFree: number;

  /**
   * Copies `chunk`, which starts at stream offset `at`, and hands each
   * piece (one view per slab) to `write`; returns what the last `write`
   * returned.
   */
  copy(chunk: Uint8Array, at: number, write: (view: Uint8Array) => boolean): boolean {
    let ok = true;
    let off = 0;
    while (off < chunk.length) {
      let slab = this.used[this.used.length - 1];
      if (!slab || this.fill === SLAB_BYTES) {
        slab = { buf: this.free.pop() ?? this.alloc(), end: at + off };
        this.used.push(slab);
        this.fill = 0;
      }
      const n = Math.min(chunk.length - off, SLAB_BYTES - this.fill);
      slab.buf.set(n === chunk.length ? chunk : chunk.subarray(off, off + n), this.fill);
      const view = slab.buf.subarray(this.fill, this.fill + n);
      this.fill += n;
      off += n;
      slab.end = at + off;
      ok = write(view);
    }
    return ok;
  }

  /**
   * Everything below stream offset `acked` is acknowledged; `written` is
   * the offset one past the last byte written. Reuses or drops the slabs
   * that are done.
   */
  release(acked: number, written: number): void {
    const u = this.used;
    if (u.length === 0) return;
    if (acked >= written) {
      // Nothing outstanding: an idle connection holds no slab.
      u.length = 0;
      this.free.length = 0;
      this.fill = 0;
      return;
    }
    // The slab being filled stays; older ones go once fully acknowledged.
    let n = 0;
    while (n < u.length - 1 && u[n].end <= acked) n++;
    if (n === 0) return;
    for (const s of u.splice(0, n)) if (this.free.length < this.keepFree) this.free.push(s.buf);
  }

  /** Bytes of slab memory held (in use and kept free). */
  get heldBytes(): number {
    return (this.used.length + this.free.length) * SLAB_BYTES;
  }

  private alloc(): Buffer {
    this.allocated++;
    return Buffer.allocUnsafeSlow(SLAB_BYTES);
  }
}
