/** Types of test/support/bytes.mjs. */
export function concat(parts: readonly Uint8Array[]): Uint8Array;
export function be32(a: number, b: number): Uint8Array;
