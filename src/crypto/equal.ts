/**
 * Compares two byte strings in time that depends only on their lengths
 * (which are public: they are fixed by the option format), never on where
 * they differ. Inputs of different lengths compare unequal, after the same
 * full pass. Use this for every HMAC check.
 */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  const n = a.length > b.length ? a.length : b.length;
  // Non-zero when the lengths differ; the loop below still runs to the end.
  let diff = a.length ^ b.length;
  for (let i = 0; i < n; i++) {
    // Indices past the shorter input read 0 (a branch on lengths only).
    const x = i < a.length ? a[i] : 0;
    const y = i < b.length ? b[i] : 0;
    diff |= x ^ y;
  }
  return diff === 0;
}
