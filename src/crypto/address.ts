/**
 * IP address text <-> network-order bytes for the HMAC messages. The parser
 * and the RFC 5952 formatter live in src/wire/address.ts (one implementation
 * in the tree); this adds the error behaviour the crypto functions want.
 */
import { formatIpAddress, parseIpv4, parseIpv6 } from '../wire/address.js';

/** 4 for IPv4 text, 6 for IPv6 text, 0 otherwise (like node:net isIP, minus zone ids). */
export function ipVersion(text: string): 0 | 4 | 6 {
  if (parseIpv4(text)) return 4;
  if (parseIpv6(text)) return 6;
  return 0;
}

/**
 * Network-order bytes of an IP address: 4 bytes for IPv4, 16 for IPv6.
 * Throws TypeError for anything that is not an IP address.
 */
export function addressToBytes(text: string): Uint8Array {
  const b = text.includes(':') ? parseIpv6(text) : parseIpv4(text);
  if (!b) throw new TypeError(`not an IPv4 or IPv6 address: ${JSON.stringify(text)}`);
  return b;
}

/** Canonical text of 4 or 16 address bytes (dotted quad, or RFC 5952). */
export function bytesToAddress(bytes: Uint8Array): string {
  if (bytes.length !== 4 && bytes.length !== 16) throw new RangeError(`address must be 4 or 16 bytes, got ${bytes.length}`);
  return formatIpAddress(bytes);
}
