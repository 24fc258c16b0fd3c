/** Numbers the connection's modules share (not options: docs/PROTOCOL.md and RFC 8684 fix them). */
export const MASK64 = (1n << 64n) - 1n;
export const MAX_MSS = 65535;
/** What we may send before the peer's first window arrives (TCP's unscaled maximum). */
export const INITIAL_PEER_WINDOW = 65535;
/** Bytes counted against a subflow's queue for a segment's framing and options. */
export const SEGMENT_OVERHEAD = 40;

export function sameMap(m: { start: number; ssn: number; len: number }, start: number, ssn: number | undefined, len: number): boolean {
  return m.start === start && m.ssn === ssn && m.len === len;
}
