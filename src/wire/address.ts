/**
 * IP address text <-> bytes, used by ADD_ADDR (RFC 8684 §3.4.1).
 *
 * Canonical text is the dotted quad for IPv4 and RFC 5952 for IPv6:
 * lowercase hex, no leading zeros, the longest run of two or more zero
 * groups compressed to "::" (the first one on a tie), and IPv4-mapped
 * addresses (::ffff:0:0/96) written in mixed notation, "::ffff:192.0.2.1".
 *
 * Nothing in here throws: parsers return `null` on bad input.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** Parses dotted-quad IPv4 text (no leading zeros) into 4 bytes, or null. */
export function parseIpv4(text: string): Uint8Array | null {
  if (typeof text !== 'string' || !isIPv4(text)) return null;
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    if (!/^\d{1,3}$/.test(p)) return null;
    const v = Number(p);
    if (v > 255) return null;
    out[i] = v;
  }
  return out;
}

function groupsToWords(groups: string[], allowV4Tail: boolean): number[] | null {
  const words: number[] = [];
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i];
    if (allowV4Tail && i === groups.length - 1 && g.includes('.')) {
      const v4 = parseIpv4(g);
      if (!v4) return null;
      words.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
    } else {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      words.push(parseInt(g, 16));
    }
  }
  return words;
}

/**
 * Parses IPv6 text (any RFC 4291 form, including embedded IPv4; no zone id)
 * into 16 bytes, or null.
 */
export function parseIpv6(text: string): Uint8Array | null {
  if (typeof text !== 'string' || !isIPv6(text) || text.includes('%')) return null;
  const dbl = text.indexOf('::');
  if (dbl >= 0 && text.indexOf('::', dbl + 1) >= 0) return null;
  let words: number[];
  if (dbl >= 0) {
    const headStr = text.slice(0, dbl);
    const tailStr = text.slice(dbl + 2);
    const head = headStr === '' ? [] : groupsToWords(headStr.split(':'), false);
    const tail = tailStr === '' ? [] : groupsToWords(tailStr.split(':'), true);
    if (!head || !tail) return null;
    if (head.length + tail.length > 7) return null;
    words = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    const all = groupsToWords(text.split(':'), true);
    if (!all || all.length !== 8) return null;
    words = all;
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = words[i] >>> 8;
    out[2 * i + 1] = words[i] & 0xff;
  }
  return out;
}

/** Parses IPv4 or IPv6 text into 4 or 16 bytes, or null. */
export function parseIpAddress(text: string): Uint8Array | null {
  return parseIpv4(text) ?? parseIpv6(text);
}

/** Dotted quad of bytes[offset..offset+4). The caller guarantees the bounds. */
export function formatIpv4(bytes: Uint8Array, offset = 0): string {
  return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
}

/** RFC 5952 text of bytes[offset..offset+16). The caller guarantees the bounds. */
export function formatIpv6(bytes: Uint8Array, offset = 0): string {
  const w: number[] = new Array(8);
  for (let i = 0; i < 8; i++) w[i] = (bytes[offset + 2 * i] << 8) | bytes[offset + 2 * i + 1];
  // IPv4-mapped ::ffff:a.b.c.d (RFC 5952 §5).
  if (w[0] === 0 && w[1] === 0 && w[2] === 0 && w[3] === 0 && w[4] === 0 && w[5] === 0xffff) {
    return `::ffff:${formatIpv4(bytes, offset + 12)}`;
  }
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number, b: number) => w.slice(a, b).map((x) => x.toString(16)).join(':');
  if (bestLen < 2) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLen, 8)}`;
}

/** Canonical text of a 4- or 16-byte address. */
export function formatIpAddress(bytes: Uint8Array): string {
  if (bytes.length === 4) return formatIpv4(bytes);
  if (bytes.length === 16) return formatIpv6(bytes);
  throw new RangeError(`an IP address has 4 or 16 bytes, not ${bytes.length}`);
}

/** Canonical text of an address given as any valid text, or null if invalid. */
export function canonicalIpAddress(text: string): string | null {
  const b = parseIpAddress(text);
  return b ? formatIpAddress(b) : null;
}
