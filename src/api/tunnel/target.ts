/**
 * Where a tunnel goes: a host (a DNS name, an IPv4 or an IPv6 address) and a
 * port, checked before it is ever written into a CONNECT request line (a
 * name with a space, a CR or a LF would be request smuggling), and written
 * as an HTTP authority (`host:port`, `[v6]:port`).
 */
import net from 'node:net';

export interface TunnelTarget {
  host: string;
  port: number;
}

/** One DNS label: letters, digits, '_' and '-' (not at either end), 1-63 bytes. */
const LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** Whether `name` is a DNS name a proxy can resolve (ASCII, ≤ 253 bytes, a trailing dot allowed). */
export function isHostName(name: string): boolean {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  if (n.length === 0 || n.length > 253) return false;
  return n.split('.').every((label) => LABEL.test(label));
}

/** Why `host` cannot be a tunnel's target host, or undefined when it can. */
export function targetHostProblem(host: string): string | undefined {
  if (typeof host !== 'string' || host.length === 0) return 'an empty host';
  if (net.isIP(host)) return undefined;
  if (host.includes('%')) return `${JSON.stringify(host)}: an IPv6 zone cannot go through a proxy`;
  if (!isHostName(host)) return `${JSON.stringify(host)} is not a host name or an IP address`;
  return undefined;
}

/** Whether `port` is a port a connection can go to (1-65535). */
export function isTargetPort(port: unknown): port is number {
  return typeof port === 'number' && Number.isInteger(port) && port > 0 && port <= 65535;
}

/** `host:port`, IPv6 in brackets: the CONNECT request target and Host header. */
export function authority(target: TunnelTarget): string {
  return net.isIPv6(target.host) ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
}

/** The canonical text of 16 IPv6 address bytes (RFC 5952: lower case, the longest zero run as "::"). */
export function ipv6Text(bytes: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  // WHATWG URL serialises IPv6 hosts canonically.
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}
