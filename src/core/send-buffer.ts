/**
 * Bytes the application wrote, kept until the peer data-ACKs them so they can
 * be reinjected on another subflow. Offsets are data-level stream offsets
 * (0 = first byte the application wrote). Holds the caller's buffers: no copy.
 */
export class SendBuffer {
  private chunks: Uint8Array[] = [];
  private starts: number[] = [];
  private head = 0;
  /** Offset of the first byte still held (everything below is acknowledged). */
  private base = 0;
  /** Offset one past the last byte written. */
  end = 0;

  push(data: Uint8Array): void {
    if (data.length === 0) return;
    this.chunks.push(data);
    this.starts.push(this.end);
    this.end += data.length;
  }

  /** Bytes held: written but not yet data-ACKed. */
  get held(): number {
    return this.end - this.base;
  }

  /**
   * Up to `max` bytes from `offset`, as one view into one written buffer (so
   * never more than that buffer holds). `offset` must be held.
   */
  slice(offset: number, max: number): Uint8Array {
    if (offset < this.base || offset >= this.end) throw new RangeError(`offset ${offset} not held`);
    // Binary search the chunk holding `offset`.
    let lo = this.head;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.starts[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    const chunk = this.chunks[lo];
    const from = offset - this.starts[lo];
    return chunk.subarray(from, Math.min(chunk.length, from + max));
  }

  /** Drops everything below `upTo`. */
  ack(upTo: number): void {
    if (upTo <= this.base) return;
    this.base = Math.min(upTo, this.end);
    while (this.head < this.chunks.length && this.starts[this.head] + this.chunks[this.head].length <= this.base) {
      this.head++;
    }
    if (this.head > 64 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.starts = this.starts.slice(this.head);
      this.head = 0;
    }
  }
}
