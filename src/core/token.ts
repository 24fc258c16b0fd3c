/**
 * Token allocation for the G-bit handshake.
 *
 * With explicit tokens (draft-paasch-mptcp-application-authentication) a
 * token is chosen, not derived from a key, so uniqueness needs no
 * trial-and-error: the allocators below draw tokens from a keyed 32-bit (or
 * shorter) permutation of a counter. A permutation never repeats a value, so
 * every token issued is distinct by construction until the counter wraps;
 * only then is the live-token table consulted. The permutation key is secret,
 * so tokens are not predictable from earlier ones.
 *
 * `ServerIdTokenAllocator` puts a server id in the top 8 bits so a load
 * balancer routes MP_JOINs by reading one byte (docs/PROTOCOL.md §Tokens).
 */
import { sha256 } from '@noble/hashes/sha2.js';

export type RandomSource = (n: number) => Uint8Array;

export interface TokenAllocator {
  /** Returns a token not in use (per `inUse`), or null if none can be found. */
  allocate(inUse: (token: number) => boolean): number | null;
  /** Describes the layout, for logs and `mptls info`. */
  readonly description: string;
}

/** A keyed Feistel permutation over `bits` (even, 2..32) bits. */
export class KeyedPermutation {
  private readonly half: number;
  private readonly mask: number;
  private readonly buf = new Uint8Array(16 + 1 + 4);
  constructor(
    readonly bits: number,
    key: Uint8Array,
  ) {
    if (bits % 2 !== 0 || bits < 2 || bits > 32) throw new RangeError('bits must be even, 2..32');
    this.half = bits / 2;
    this.mask = this.half === 16 ? 0xffff : (1 << this.half) - 1;
    this.buf.set(key.subarray(0, 16));
  }
  private round(r: number, x: number): number {
    const b = this.buf;
    b[16] = r;
    b[17] = x >>> 24;
    b[18] = (x >>> 16) & 0xff;
    b[19] = (x >>> 8) & 0xff;
    b[20] = x & 0xff;
    const h = sha256(b);
    return (((h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3]) >>> 0) & this.mask;
  }
  permute(x: number): number {
    let l = (x >>> this.half) & this.mask;
    let r = x & this.mask;
    for (let i = 0; i < 4; i++) {
      const t = r;
      r = (l ^ this.round(i, r)) & this.mask;
      l = t;
    }
    return ((l * 2 ** this.half) + r) >>> 0;
  }
}

/** Random-looking 32-bit tokens, distinct by construction. */
export class RandomTokenAllocator implements TokenAllocator {
  readonly description = 'random 32-bit (keyed permutation of a counter)';
  private readonly perm: KeyedPermutation;
  private counter: number;
  constructor(random: RandomSource) {
    this.perm = new KeyedPermutation(32, random(16));
    const start = random(4);
    this.counter = ((start[0] << 24) | (start[1] << 16) | (start[2] << 8) | start[3]) >>> 0;
  }
  allocate(inUse: (token: number) => boolean): number | null {
    // Distinct until 2^32 allocations; after that, skip live tokens (bounded).
    for (let i = 0; i < 1024; i++) {
      const t = this.perm.permute(this.counter);
      this.counter = (this.counter + 1) >>> 0;
      if (t !== 0 && !inUse(t)) return t;
    }
    return null;
  }
}

/**
 * Tokens whose top 8 bits are `serverId` (0..255); the low 24 bits come from
 * a keyed permutation of a counter, so they are distinct for 2^24 allocations
 * and unpredictable without the key.
 */
export class ServerIdTokenAllocator implements TokenAllocator {
  readonly description: string;
  private readonly perm: KeyedPermutation;
  private counter: number;
  constructor(
    readonly serverId: number,
    random: RandomSource,
  ) {
    if (!Number.isInteger(serverId) || serverId < 0 || serverId > 255) {
      throw new RangeError(`serverId must be an integer 0..255, got ${serverId}`);
    }
    this.description = `server id ${serverId} in bits 31..24, 24-bit permutation below`;
    this.perm = new KeyedPermutation(24, random(16));
    const start = random(3);
    this.counter = (start[0] << 16) | (start[1] << 8) | start[2];
  }
  allocate(inUse: (token: number) => boolean): number | null {
    for (let i = 0; i < 1024; i++) {
      const low = this.perm.permute(this.counter);
      this.counter = (this.counter + 1) & 0xffffff;
      const t = ((this.serverId << 24) | low) >>> 0;
      if (t !== 0 && !inUse(t)) return t;
    }
    return null;
  }
}

/** The server id a `ServerIdTokenAllocator` (or `WorkerTokenAllocator` with a host id) token carries. */
export function serverIdOfToken(token: number): number {
  return token >>> 24;
}

/**
 * Tokens of one worker of a multi-process server (cluster mode): the worker
 * id (0..255) in bits 23..16, so the process that owns the listening port
 * routes a join to its worker by one byte (the second of the token). With a
 * host id (`serverId`, 0..255) bits 31..24 carry it, as a
 * `ServerIdTokenAllocator`'s do, and a load balancer in front of several
 * hosts routes by the first byte: the low 16 bits come from a keyed 16-bit
 * permutation of a counter (2^16 distinct tokens per worker before the
 * live-token table is consulted). Without one, bits 31..24 and 15..0 come
 * from a keyed 24-bit permutation (2^24).
 */
export class WorkerTokenAllocator implements TokenAllocator {
  readonly description: string;
  private readonly perm: KeyedPermutation;
  private readonly span: number;
  private counter: number;
  constructor(
    readonly workerId: number,
    readonly hostId: number | undefined,
    random: RandomSource,
  ) {
    const byte = (v: number | undefined) => Number.isInteger(v) && v! >= 0 && v! <= 255;
    if (!byte(workerId)) throw new RangeError(`workerId must be an integer 0..255, got ${workerId}`);
    if (hostId !== undefined && !byte(hostId)) throw new RangeError(`serverId must be an integer 0..255, got ${hostId}`);
    const bits = hostId === undefined ? 24 : 16;
    this.span = 2 ** bits;
    this.description =
      hostId === undefined
        ? `worker id ${workerId} in bits 23..16, a 24-bit permutation in bits 31..24 and 15..0`
        : `server id ${hostId} in bits 31..24, worker id ${workerId} in bits 23..16, 16-bit permutation below`;
    this.perm = new KeyedPermutation(bits, random(16));
    const start = random(3);
    this.counter = ((start[0] << 16) | (start[1] << 8) | start[2]) % this.span;
  }
  allocate(inUse: (token: number) => boolean): number | null {
    for (let i = 0; i < 1024; i++) {
      const p = this.perm.permute(this.counter);
      this.counter = (this.counter + 1) % this.span;
      const high = this.hostId ?? p >>> 16;
      const t = ((high << 24) | (this.workerId << 16) | (p & 0xffff)) >>> 0;
      if (t !== 0 && !inUse(t)) return t;
    }
    return null;
  }
}

/** The worker id a `WorkerTokenAllocator` token carries (its second byte). */
export function workerIdOfToken(token: number): number {
  return (token >>> 16) & 0xff;
}
