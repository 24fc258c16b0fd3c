import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { Assembler } from '../../src/core/assembler.js';
import { SendBuffer } from '../../src/core/send-buffer.js';
import { KeyedPermutation, RandomTokenAllocator, ServerIdTokenAllocator, serverIdOfToken, WorkerTokenAllocator, workerIdOfToken } from '../../src/core/token.js';
import { MinRttScheduler, RedundantScheduler, RoundRobinScheduler, type SchedSubflow } from '../../src/core/scheduler.js';
import { seededBytes, mulberry32 } from '../support/random.js';

describe('Assembler', () => {
  it('delivers each byte once, in order, whatever the arrival order and overlaps', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4000 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 300 })), { minLength: 1, maxLength: 60 }),
        (total, pieces) => {
          const data = Uint8Array.from({ length: total }, (_, i) => (i * 31 + 7) & 0xff);
          const a = new Assembler();
          const out: number[] = [];
          const feed = (start: number, len: number) => {
            const s = start % total;
            a.insert(s, data.subarray(s, Math.min(total, s + len)));
            for (let d = a.read(); d; d = a.read()) out.push(...d);
          };
          for (const [s, l] of pieces) feed(s, l);
          // then everything, in chunks, to finish
          for (let s = 0; s < total; s += 97) feed(s, 97);
          expect(a.rcvNxt).toBe(total);
          expect(a.buffered).toBe(0);
          expect(Uint8Array.from(out)).toEqual(data);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('counts buffered bytes (in order unread + out of order) exactly', () => {
    const a = new Assembler();
    a.insert(10, new Uint8Array(5));
    expect(a.outOfOrderBytes).toBe(5);
    a.insert(12, new Uint8Array(10)); // overlaps 12..15, adds 15..22
    expect(a.outOfOrderBytes).toBe(12);
    a.insert(0, new Uint8Array(10));
    expect(a.rcvNxt).toBe(22);
    expect(a.outOfOrderBytes).toBe(0);
    expect(a.readable).toBe(22);
  });
});

describe('Assembler against shredded data', () => {
  it('charges tiny out-of-order pieces, copies them, and refuses past the limit', async () => {
    const { PIECE_CHARGE } = await import('../../src/core/assembler.js');
    const a = new Assembler();
    const read = new Uint8Array(65536); // one socket read
    const limit = 64 * PIECE_CHARGE;
    let refused = 0;
    for (let i = 0; i < 100; i++) {
      // 1-byte pieces at falling offsets, never in order
      const r = a.insert(1000 - i * 2, read.subarray(i, i + 1), limit);
      if (r.overLimit) refused++;
    }
    expect(a.outOfOrderPieces).toBe(64);
    expect(refused).toBe(36);
    expect(a.buffered).toBe(64 * PIECE_CHARGE);
    expect(a.heldBytes).toBe(64);
    // pieces do not pin the read they came from
    const held = (a as unknown as { ooo: { data: Uint8Array }[] }).ooo;
    for (const p of held) expect(p.data.buffer).not.toBe(read.buffer);
  });
});

/** Memory behind everything an Assembler holds plus `extra` (views its reader still holds): distinct backing buffers. */
function retainedBy(a: Assembler, extra: Uint8Array[] = []): number {
  const inner = a as unknown as { ready: Uint8Array[]; readyHead: number; ooo: { data: Uint8Array }[] };
  const bufs = new Set<ArrayBufferLike>();
  for (let i = inner.readyHead; i < inner.ready.length; i++) bufs.add(inner.ready[i].buffer);
  for (const p of inner.ooo) bufs.add(p.data.buffer);
  for (const v of extra) bufs.add(v.buffer);
  let n = 0;
  for (const b of bufs) n += b.byteLength;
  return n;
}

describe('Assembler retention (issue 11 §2: views must not pin whole socket reads)', () => {
  const READ = 65536;
  it('copies an in-order byte out of each 64 KiB read; packs the copies', async () => {
    const { COPY_BUFFER } = await import('../../src/core/assembler.js');
    const a = new Assembler();
    for (let i = 0; i < 4096; i++) {
      const read = Buffer.alloc(READ, i & 0xff); // a socket read: 1 in-order byte, the rest elsewhere
      a.insert(i, read.subarray(100, 101));
    }
    expect(a.readable).toBe(4096);
    // the open run (the last read) plus packed copies, not 4096 reads
    expect(retainedBy(a)).toBeLessThanOrEqual(READ + COPY_BUFFER);
    const out: Uint8Array[] = [];
    for (let d = a.read(); d; d = a.read()) out.push(d);
    // packed into copy buffers of 1 byte (the first is exact), 1, 2 and 4 KiB (they grow while small copies keep coming)
    expect(out.length).toBeLessThanOrEqual(5);
    expect(Buffer.concat(out)).toEqual(Buffer.from(Array.from({ length: 4096 }, (_, i) => i & 0xff)));
    expect(a.copiedBytes).toBe(4096);
  });

  it('holds no copy buffer once everything was read (an idle connection kept 16 KiB for its ClientHello)', () => {
    const a = new Assembler();
    const read = Buffer.alloc(READ, 7);
    a.insert(0, read.subarray(0, 300)); // a small first flight in a large read: copied out
    a.insert(300, Buffer.alloc(10, 8)); // the next read closes the run
    const out: Uint8Array[] = [];
    for (let d = a.read(); d; d = a.read()) out.push(d);
    expect(Buffer.concat(out).length).toBe(310);
    expect(out[0].buffer.byteLength).toBe(300); // the first copy is exact: the read is not pinned, nothing to spare
    expect((a as unknown as { copyBuf: Uint8Array | null }).copyBuf).toBeNull();
  });

  it('small pieces read one by one share copy buffers: a reader holding them pins no buffer per piece', () => {
    const a = new Assembler();
    const held: Uint8Array[] = []; // node:tls with its application paused: 16 KiB of pieces
    let off = 0;
    for (let i = 0; i < 2048; i++) {
      const read = Buffer.alloc(READ, i & 0xff); // one socket read: 8 in-order bytes, the rest beyond the window
      a.insert(off, read.subarray(200, 208));
      off += 8;
      a.insert(off, Buffer.alloc(0)); // the run ends with the read
      for (let d = a.read(); d; d = a.read()) held.push(d);
    }
    expect(held.reduce((n, d) => n + d.length, 0)).toBe(16384);
    const buffers = new Set(held.map((d) => d.buffer));
    let behind = 0;
    for (const b of buffers) behind += b.byteLength;
    // 16 KiB of pieces behind about as much memory (2 MiB when each piece got a fresh 1 KiB buffer)
    expect(behind).toBeLessThanOrEqual(2 * 16384 + 16384);
  });

  it('copies out-of-order pieces of 2 KiB or more that are a small part of their read (Buffer views too)', () => {
    const a = new Assembler();
    for (let i = 0; i < 256; i++) {
      const read = Buffer.alloc(READ);
      a.insert(1 + i * 2048, read.subarray(64, 64 + 2048)); // behind a hole at 0
    }
    expect(a.outOfOrderBytes).toBe(256 * 2048);
    expect(retainedBy(a)).toBe(256 * 2048);
    // a piece that is most of its read stays a view
    const big = Buffer.alloc(READ);
    a.insert(1 + 256 * 2048, big.subarray(32, 32 + 40_000));
    const inner = a as unknown as { ooo: { data: Uint8Array }[] };
    expect(inner.ooo[inner.ooo.length - 1].data.buffer).toBe(big.buffer);
  });

  it('keeps legitimate reads (mostly payload, several frames or a frame split across reads) as views: no copy', () => {
    const a = new Assembler();
    let off = 0;
    let got = 0;
    for (let r = 0; r < 64; r++) {
      const read = Buffer.alloc(READ);
      // frame heads of ~40 bytes between payloads; the first and last payload pieces continue frames of the neighbouring reads
      const cuts = [0, 10_000 + r * 100, 30_000, 50_000 + r * 7, READ];
      for (let k = 0; k + 1 < cuts.length; k++) {
        const p = read.subarray(cuts[k] + (k === 0 ? 0 : 40), cuts[k + 1]);
        a.insert(off, p);
        off += p.length;
      }
      for (let d = a.read(); d; d = a.read()) got += d.length;
    }
    expect(got).toBe(off);
    expect(a.copiedBytes).toBe(0);
  });

  it('bounds the memory behind held bytes: assembler + a FIFO reader ≤ 2 × bytes + 2 reads + 2 copy buffers', async () => {
    const { COPY_BUFFER } = await import('../../src/core/assembler.js');
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.oneof(fc.constant(READ), fc.integer({ min: 1, max: READ })), // read size
            // pieces: offset from rcvNxt (in order, duplicate or ahead), length (often tiny, as an attacker sends)
            fc.array(fc.tuple(fc.oneof(fc.constant(0), fc.integer({ min: -300, max: 6000 })), fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 40_000 }))), {
              minLength: 1,
              maxLength: 4,
            }),
            fc.nat({ max: 3 }), // reader: entries to take
            fc.nat({ max: 4 }), // reader: entries to consume (drop)
          ),
          { minLength: 1, maxLength: 150 },
        ),
        (ops) => {
          const a = new Assembler();
          const held: Uint8Array[] = [];
          const stream = (o: number) => (o * 131 + 17) & 0xff;
          let nextCheck = 0;
          for (const [size, pieces, take, drop] of ops) {
            const read = new Uint8Array(size);
            let pos = 0;
            for (const [rel, len0] of pieces) {
              if (pos >= size) break;
              const len = Math.min(len0, size - pos);
              const start = Math.max(0, a.rcvNxt + rel);
              for (let i = 0; i < len; i++) read[pos + i] = stream(start + i);
              a.insert(start, read.subarray(pos, pos + len));
              pos += len + 40;
            }
            for (let k = 0; k < take; k++) {
              const d = a.read();
              if (!d) break;
              held.push(d);
            }
            for (let k = 0; k < drop && held.length > 0; k++) {
              const d = held.shift()!;
              for (let i = 0; i < d.length; i++) if (d[i] !== stream(nextCheck + i)) throw new Error(`wrong byte at ${nextCheck + i}`);
              nextCheck += d.length;
            }
            const bytes = a.heldBytes + held.reduce((n, d) => n + d.length, 0);
            expect(retainedBy(a, held)).toBeLessThanOrEqual(2 * bytes + 2 * READ + 2 * COPY_BUFFER);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('SendBuffer', () => {
  it('slices without copying and frees on ack', () => {
    const b = new SendBuffer();
    const w1 = new Uint8Array([1, 2, 3]);
    const w2 = new Uint8Array([4, 5, 6, 7]);
    b.push(w1);
    b.push(w2);
    expect(b.held).toBe(7);
    const s = b.slice(2, 10);
    expect([...s]).toEqual([3]);
    expect(s.buffer).toBe(w1.buffer);
    expect([...b.slice(3, 2)]).toEqual([4, 5]);
    b.ack(4);
    expect(b.held).toBe(3);
    expect(() => b.slice(3, 1)).toThrow(RangeError);
    expect([...b.slice(4, 9)]).toEqual([5, 6, 7]);
  });
});

describe('token allocators', () => {
  it('a keyed permutation is a bijection (24 bits, sampled) ', () => {
    const p = new KeyedPermutation(16, seededBytes(mulberry32(1))(16));
    const seen = new Set<number>();
    for (let i = 0; i < 65536; i++) seen.add(p.permute(i));
    expect(seen.size).toBe(65536);
  });

  it('random tokens: 100 000 distinct, no trial-and-error', () => {
    const a = new RandomTokenAllocator(seededBytes(mulberry32(2)));
    const seen = new Set<number>();
    let lookups = 0;
    for (let i = 0; i < 100_000; i++) {
      const t = a.allocate((x) => {
        lookups++;
        return seen.has(x);
      });
      expect(t).not.toBeNull();
      seen.add(t!);
    }
    expect(seen.size).toBe(100_000);
    expect(lookups).toBe(100_000); // one check each: never had to retry
  });

  it('server-id tokens carry the id in the top byte and stay distinct', () => {
    const a = new ServerIdTokenAllocator(42, seededBytes(mulberry32(3)));
    const seen = new Set<number>();
    for (let i = 0; i < 50_000; i++) {
      const t = a.allocate((x) => seen.has(x))!;
      expect(serverIdOfToken(t)).toBe(42);
      seen.add(t);
    }
    expect(seen.size).toBe(50_000);
    expect(() => new ServerIdTokenAllocator(256, seededBytes(mulberry32(3)))).toThrow(RangeError);
  });

  it('returns null when every candidate is taken (no endless loop)', () => {
    const a = new RandomTokenAllocator(seededBytes(mulberry32(4)));
    expect(a.allocate(() => true)).toBeNull();
  });
});

describe('schedulers', () => {
  const sf = (id: number, srtt: number | undefined, o: Partial<SchedSubflow> = {}): SchedSubflow => ({ id, srtt, backup: false, stale: false, hasRoom: true, ...o });
  it('minrtt: lowest RTT with room; backups only when no active subflow is usable', () => {
    const s = new MinRttScheduler();
    expect(s.select([sf(0, 30), sf(1, 10)]).map((x) => x.id)).toEqual([1]);
    expect(s.select([sf(0, 30), sf(1, 10, { hasRoom: false })]).map((x) => x.id)).toEqual([0]);
    // an active subflow that is full keeps the backup idle
    expect(s.select([sf(0, 30, { hasRoom: false }), sf(1, 1, { backup: true })])).toEqual([]);
    // only when the active one is stale does the backup carry data
    expect(s.select([sf(0, 30, { stale: true }), sf(1, 50, { backup: true })]).map((x) => x.id)).toEqual([1]);
    // stale subflows are the last resort
    expect(s.select([sf(0, 30, { stale: true })]).map((x) => x.id)).toEqual([0]);
  });
  it('roundrobin takes turns', () => {
    const s = new RoundRobinScheduler();
    const all = [sf(0, 1), sf(1, 1), sf(2, 1)];
    expect([0, 1, 2, 3].map(() => s.select(all)[0].id)).toEqual([0, 1, 2, 0]);
  });
  it('redundant picks every usable subflow with room', () => {
    const s = new RedundantScheduler();
    expect(s.select([sf(0, 1), sf(1, 1, { hasRoom: false }), sf(2, 1)]).map((x) => x.id)).toEqual([0, 2]);
  });
});

describe('Assembler: the out-of-order queue tail (OFOQueueTail)', () => {
  it('marks a piece queued after every piece already held, not one that lands before one', () => {
    const a = new Assembler();
    expect(a.insert(4096, new Uint8Array(4096)).atTail).toBe(true);
    expect(a.insert(12288, new Uint8Array(4096)).atTail).toBe(true);
    expect(a.insert(8192, new Uint8Array(4096)).atTail).toBe(false);
    expect(a.insert(0, new Uint8Array(4096)).outOfOrder).toBe(false);
  });
});

describe('WorkerTokenAllocator (cluster mode)', () => {
  it('puts the worker id in bits 23..16 and the host id in 31..24; distinct tokens; a fresh key gives other tokens', () => {
    const rnd = (seed: number) => {
      const r = mulberry32(seed);
      return (n: number) => Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
    };
    const a = new WorkerTokenAllocator(3, 7, rnd(1));
    const seen = new Set<number>();
    for (let i = 0; i < 5000; i++) {
      const t = a.allocate(() => false)!;
      expect(workerIdOfToken(t)).toBe(3);
      expect(serverIdOfToken(t)).toBe(7);
      seen.add(t);
    }
    expect(seen.size).toBe(5000);
    const noHost = new WorkerTokenAllocator(200, undefined, rnd(2));
    const tops = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      const t = noHost.allocate(() => false)!;
      expect(workerIdOfToken(t)).toBe(200);
      tops.add(t >>> 24);
    }
    expect(tops.size).toBeGreaterThan(100); // the top byte is permuted too without a host id
    const again = new WorkerTokenAllocator(3, 7, rnd(3));
    const overlap = Array.from({ length: 1000 }, () => again.allocate(() => false)!).filter((t) => seen.has(t)).length;
    expect(overlap).toBeLessThan(200); // a restarted worker (fresh key) does not replay the old sequence
    expect(() => new WorkerTokenAllocator(256, undefined, rnd(4))).toThrow(RangeError);
    expect(() => new WorkerTokenAllocator(0, 256, rnd(4))).toThrow(RangeError);
  });
});

describe('stall timeout', () => {
  it('doubles after each spurious stall (up to 8×, capped at maxStallMs); a path the kernel shows delivering is no stall', async () => {
    const { Subflow } = await import('../../src/core/subflow.js');
    const { stallDeadline } = await import('../../src/core/connection/timers.js');
    const sf = new Subflow(1, 'established', { initial: true, localAddressId: 0, remoteAddressId: 0, backup: false, path: {}, now: 0 });
    sf.sampleRtt(20);
    const base = sf.stallTimeout(100, 2000, 1000);
    expect(base).toBe(100);
    sf.stallBackoff = 2;
    expect(sf.stallTimeout(100, 2000, 1000)).toBe(200);
    sf.stallBackoff = 8;
    expect(sf.stallTimeout(100, 150, 1000)).toBe(150);
    sf.stallBackoff = 1;
    // A stale subflow that recovers by itself: each time, twice the timeout, at most 8×.
    const { Connection } = await import('../../src/core/connection/index.js');
    const fake = { resume: { parkedSince: undefined, seeking: true }, mib: { inc() {} } };
    for (const want of [2, 4, 8, 8]) {
      sf.stale = true;
      Connection.prototype.recover.call(fake, sf);
      expect(sf.stale).toBe(false);
      expect(sf.stallBackoff).toBe(want);
    }
    sf.stallBackoff = 1;
    // Something unacked since t = 0: stalled at 100 ms, unless the path was seen alive later.
    sf.sentBytes = 1000;
    sf.outstanding.push({ start: 0, end: 1000, subflowEnd: 1000, sentAt: 0, reinjected: false });
    const c = { timers: { minStallMs: 100, maxStallMs: 2000, initialStallMs: 1000 } } as unknown as Parameters<typeof stallDeadline>[0];
    expect(stallDeadline(c, sf)).toBe(100);
    sf.pathAliveAt = 500;
    expect(stallDeadline(c, sf)).toBe(600);
    // …but not for ever: a TCP-terminating middlebox ACKs what it never forwards.
    sf.pathAliveAt = 60_000;
    expect(stallDeadline(c, sf)).toBe(4 * 2000 + 100);
  });
});
