/**
 * Bulk writes are copied into reused slabs (src/transport/userspace/send-slabs.ts):
 * the bytes the core holds are exactly the bytes written, a slab comes back
 * only once all of it is acknowledged, and an idle connection holds none.
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { SendSlabs, SLAB_BYTES } from '../../src/transport/userspace/send-slabs.js';

describe('send slabs', () => {
  it('hands the core views that hold exactly the written bytes, split at slab ends', () => {
    const slabs = new SendSlabs(2 * 1024 * 1024);
    const data = randomBytes(SLAB_BYTES + 1000);
    const views: Uint8Array[] = [];
    slabs.copy(data.subarray(0, 1000), 0, (v) => (views.push(v), true));
    slabs.copy(data.subarray(1000), 1000, (v) => (views.push(v), true));
    expect(views.map((v) => v.length)).toEqual([1000, SLAB_BYTES - 1000, 1000]);
    expect(Buffer.concat(views).equals(data)).toBe(true);
    // Copies, not views of the caller's buffer: the caller may reuse it.
    data.fill(0);
    expect(views[0].some((b) => b !== 0)).toBe(true);
    expect(slabs.allocated).toBe(2);
  });

  it('reuses a slab only once all of it is acknowledged, and lets everything go when nothing is outstanding', () => {
    const slabs = new SendSlabs(2 * 1024 * 1024);
    const chunk = Buffer.alloc(SLAB_BYTES / 2, 1);
    let at = 0;
    const write = (n: number) => {
      for (let i = 0; i < n; i++) {
        slabs.copy(chunk, at, () => true);
        at += chunk.length;
      }
    };
    write(8); // 4 slabs
    expect(slabs.allocated).toBe(4);
    slabs.release(SLAB_BYTES + 1, at); // only the first is done
    const first = slabs.heldBytes;
    write(2); // the 4th slab is full: this goes into the first one, reused
    expect(slabs.allocated).toBe(4);
    slabs.release(SLAB_BYTES, at);
    expect(slabs.heldBytes).toBe(first);
    // A steady stream: with acknowledgements keeping up, no new allocations.
    for (let round = 0; round < 100; round++) {
      write(4);
      slabs.release(at - SLAB_BYTES, at);
    }
    expect(slabs.allocated).toBeLessThanOrEqual(12);
    // Everything acknowledged: an idle connection holds no slab.
    slabs.release(at, at);
    expect(slabs.heldBytes).toBe(0);
  });
});
