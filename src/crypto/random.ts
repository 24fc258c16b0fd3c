/**
 * Cryptographically secure randomness through the Web Crypto API
 * (globalThis.crypto, present in Node >= 19 and in browsers), so the core
 * needs no platform module.
 */

/** getRandomValues fills at most 65536 bytes per call. */
const MAX_CHUNK = 65536;

function webCrypto(): { getRandomValues<T extends ArrayBufferView>(array: T): T } {
  const c = (globalThis as { crypto?: { getRandomValues?: unknown } }).crypto;
  if (!c || typeof c.getRandomValues !== 'function') {
    throw new Error('mptls: globalThis.crypto.getRandomValues is not available');
  }
  return c as { getRandomValues<T extends ArrayBufferView>(array: T): T };
}

/** `n` random bytes. */
export function randomBytes(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`randomBytes: bad length ${n}`);
  const out = new Uint8Array(n);
  const c = webCrypto();
  for (let off = 0; off < n; off += MAX_CHUNK) {
    c.getRandomValues(out.subarray(off, Math.min(n, off + MAX_CHUNK)));
  }
  return out;
}

/** A random unsigned 32-bit integer (e.g. an MP_JOIN nonce or a G-bit token). */
export function randomUint32(): number {
  const b = randomBytes(4);
  return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
}

/** A random 64-bit MPTCP key (8 bytes, network order). */
export function randomKey(): Uint8Array {
  return randomBytes(8);
}
