/** Byte helpers shared by the tests and the fuzzer (plain JavaScript: scripts/ runs it with node). */

/** The parts, one after another, in a fresh Uint8Array. */
export function concat(parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Two 32-bit numbers, big-endian, as 8 bytes (the R_A || R_B message of the MP_JOIN HMACs). */
export function be32(a, b) {
  const out = new Uint8Array(8);
  const v = new DataView(out.buffer);
  v.setUint32(0, a);
  v.setUint32(4, b);
  return out;
}
