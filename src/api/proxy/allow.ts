/**
 * The proxy's allow list: which `host:port` a CONNECT may reach. A pattern
 * is `HOST:PORT`:
 *
 * - HOST: `*` (anything), an exact name (`db.internal`, case-insensitive, a
 *   trailing dot ignored), an IP address (`10.0.0.5`, `::1`, `[::1]`) or a
 *   CIDR block (`10.0.0.0/8`, `2001:db8::/32`, `[2001:db8::]/32`);
 * - PORT: a number (1–65535), a range `8000-8100`, or `*`.
 *
 * IPv6 hosts may be bracketed; unbracketed, the port is what follows the
 * last colon (`2001:db8::/32:443`).
 *
 * Matching (`AllowList`):
 *
 * - a name pattern matches that name as the client wrote it, before any
 *   resolution (the name is trusted: whatever DNS says it is, is allowed),
 *   and never an IP literal;
 * - an IP or CIDR pattern matches an IP literal inside it, or a name whose
 *   resolved address is inside it: the proxy then connects to that very
 *   address, never to one resolved again later (no rebinding between the
 *   check and the connection);
 * - `*` matches every name and every address.
 *
 * The unspecified addresses (0.0.0.0, ::) are never a destination, whatever
 * the list says (connecting to them reaches the proxy's own host).
 */
import net from 'node:net';
import { coded, type CodedError } from '../errors.js';

/** What a pattern's HOST is. */
export type AllowHost =
  | { kind: 'any' }
  | { kind: 'name'; name: string }
  | { kind: 'address'; family: 4 | 6; address: string; prefix: number };

/** One parsed `HOST:PORT` pattern. */
export interface AllowPattern {
  /** The pattern as written. */
  source: string;
  host: AllowHost;
  /** Inclusive port range (`*` is 1–65535). */
  ports: { from: number; to: number };
}

/** A pattern that does not parse: a `TypeError` with `code` `ERR_MPTLS_INVALID_OPTION`. */
export function allowPatternError(pattern: string, why: string): CodedError<TypeError> {
  return coded(new TypeError(`bad allow pattern ${JSON.stringify(pattern)}: ${why} (HOST:PORT, HOST a name, an IP, a CIDR or *, PORT a number, FROM-TO or *)`), 'ERR_MPTLS_INVALID_OPTION');
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/**
 * A host name as the allow list and the request parser accept it: labels of
 * letters, digits, `-` and `_`, at most 253 characters; lower-cased, one
 * trailing dot removed. Names whose last label is numeric (`127.1`,
 * `0x7f.1`, `1.2.3.04`) are refused: resolvers read them as IPv4 addresses,
 * which would let a name slip past the address patterns. Undefined when not
 * a name.
 */
export function normaliseName(raw: string): string | undefined {
  let name = raw.toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name.length === 0 || name.length > 253) return undefined;
  const labels = name.split('.');
  if (!labels.every((l) => LABEL.test(l))) return undefined;
  const last = labels[labels.length - 1];
  if (/^(?:\d+|0x[0-9a-f]*)$/.test(last)) return undefined;
  return name;
}

/** An IP address in its canonical text form (IPv4-mapped IPv6 as IPv4), or undefined. */
export function canonicalAddress(raw: string): { address: string; family: 4 | 6 } | undefined {
  const family = net.isIP(raw);
  if (family === 0 || raw.includes('%')) return undefined;
  if (family === 4) return { address: raw, family: 4 };
  const address = new net.SocketAddress({ address: raw, family: 'ipv6' }).address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(address);
  if (mapped && net.isIPv4(mapped[1])) return { address: mapped[1], family: 4 };
  return { address, family: 6 };
}

/** 0.0.0.0 or :: (in any spelling): never a destination. */
export function isUnspecified(address: string): boolean {
  const a = canonicalAddress(address);
  return a !== undefined && (a.address === '0.0.0.0' || a.address === '::');
}

function parsePorts(pattern: string, raw: string): { from: number; to: number } {
  if (raw === '*') return { from: 1, to: 65535 };
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(raw);
  if (!m) throw allowPatternError(pattern, `bad port ${JSON.stringify(raw)}`);
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  if (from < 1 || to > 65535 || from > to) throw allowPatternError(pattern, `bad port ${JSON.stringify(raw)}`);
  return { from, to };
}

function parseHost(pattern: string, raw: string): AllowHost {
  if (raw === '*') return { kind: 'any' };
  const slash = raw.indexOf('/');
  if (slash >= 0) {
    let base = raw.slice(0, slash);
    const bits = raw.slice(slash + 1);
    if (base.startsWith('[') && base.endsWith(']')) base = base.slice(1, -1);
    const a = net.isIP(base) && !base.includes('%') ? { address: base, family: net.isIP(base) as 4 | 6 } : undefined;
    if (!a) throw allowPatternError(pattern, `bad CIDR address ${JSON.stringify(base)}`);
    const max = a.family === 4 ? 32 : 128;
    if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) throw allowPatternError(pattern, `bad CIDR prefix ${JSON.stringify(bits)} (0-${max})`);
    // Kept as written: net.BlockList masks the host bits itself.
    return { kind: 'address', family: a.family, address: a.address, prefix: Number(bits) };
  }
  const a = canonicalAddress(raw);
  if (a) return { kind: 'address', family: a.family, address: a.address, prefix: a.family === 4 ? 32 : 128 };
  const name = normaliseName(raw);
  if (name === undefined) throw allowPatternError(pattern, `${JSON.stringify(raw)} is neither a host name, an IP address nor a CIDR block`);
  return { kind: 'name', name };
}

/** Parses one `HOST:PORT` pattern; throws `allowPatternError` when it does not parse. */
export function parseAllowPattern(pattern: string): AllowPattern {
  if (typeof pattern !== 'string') throw allowPatternError(String(pattern), 'not a string');
  const s = pattern.trim();
  let host: string;
  let port: string;
  const bracketed = /^\[([^\]]*)\](\/\d+)?:([^:]*)$/.exec(s);
  const bracketedCidr = /^\[([^\]]*\/\d+)\]:([^:]*)$/.exec(s);
  if (bracketedCidr) {
    host = bracketedCidr[1];
    port = bracketedCidr[2];
    if (net.isIPv6(host.split('/')[0]) === false) throw allowPatternError(pattern, 'brackets are for IPv6 addresses');
  } else if (bracketed) {
    if (!net.isIPv6(bracketed[1])) throw allowPatternError(pattern, 'brackets are for IPv6 addresses');
    host = bracketed[1] + (bracketed[2] ?? '');
    port = bracketed[3];
  } else {
    const colon = s.lastIndexOf(':');
    if (colon <= 0) throw allowPatternError(pattern, 'no :PORT');
    host = s.slice(0, colon);
    port = s.slice(colon + 1);
    if (host.includes(':') && !net.isIPv6(host.split('/')[0])) throw allowPatternError(pattern, `bad host ${JSON.stringify(host)}`);
  }
  return { source: pattern, host: parseHost(pattern, host), ports: parsePorts(pattern, port) };
}

interface Compiled {
  pattern: AllowPattern;
  block?: net.BlockList;
}

/** A parsed, non-empty allow list. */
export class AllowList {
  readonly patterns: readonly AllowPattern[];
  private readonly compiled: readonly Compiled[];

  /** Throws `allowPatternError` for a bad pattern, or for an empty list (it would refuse everyone: a mistake). */
  constructor(patterns: readonly string[]) {
    if (!Array.isArray(patterns) || patterns.length === 0) {
      throw coded(new TypeError('allow must be a non-empty list of HOST:PORT patterns (without one the proxy would be an open relay)'), 'ERR_MPTLS_INVALID_OPTION');
    }
    this.patterns = patterns.map(parseAllowPattern);
    this.compiled = this.patterns.map((pattern) => {
      if (pattern.host.kind !== 'address') return { pattern };
      const block = new net.BlockList();
      block.addSubnet(pattern.host.address, pattern.host.prefix, pattern.host.family === 4 ? 'ipv4' : 'ipv6');
      return { pattern, block };
    });
  }

  private inPorts(c: Compiled, port: number): boolean {
    return port >= c.pattern.ports.from && port <= c.pattern.ports.to;
  }

  /** A name target (normalised by `normaliseName`): is it allowed by a name pattern or `*`, without resolving it? */
  allowsName(name: string, port: number): boolean {
    return this.compiled.some((c) => this.inPorts(c, port) && (c.pattern.host.kind === 'any' || (c.pattern.host.kind === 'name' && c.pattern.host.name === name)));
  }

  /** An address (an IP literal, or what a name resolved to): allowed by an IP/CIDR pattern or `*`? Never the unspecified address. */
  allowsAddress(address: string, port: number): boolean {
    const a = canonicalAddress(address);
    if (!a || isUnspecified(a.address)) return false;
    const type = a.family === 4 ? 'ipv4' : 'ipv6';
    return this.compiled.some((c) => this.inPorts(c, port) && (c.pattern.host.kind === 'any' || (c.block !== undefined && c.block.check(a.address, type))));
  }

  /** Could a name on this port be allowed through its resolved address (is there an IP/CIDR pattern for the port)? */
  hasAddressPatterns(port: number): boolean {
    return this.compiled.some((c) => this.inPorts(c, port) && c.pattern.host.kind === 'address');
  }
}
