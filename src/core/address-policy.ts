/**
 * Which announced server addresses (ADD_ADDR) a client joins.
 *
 * An authenticated ADD_ADDR only proves that the server (or whoever holds
 * the connection's keys) chose the address: it says nothing about whether
 * the address belongs to the server. A client that joins every announcement
 * lets a malicious server point it at any host and port, over and over (a
 * blind port scanner, a request forger sending client bytes where the
 * server wants). The default policy below keeps joins where a multihomed
 * server can plausibly be: the same address family, a unicast address, the
 * same scope as the server (loopback and link-local only from a server
 * there), and the server's own port unless the application allows others.
 *
 * Pure: no node: imports, no I/O; addresses are parsed by src/wire/address.ts.
 */
import { parseIpv4, parseIpv6 } from '../wire/address.js';
import type { AddressInfo } from './types.js';

/**
 * A custom policy: return true to join the announced address. `server` is
 * the address and port the application connected to (the initial subflow's,
 * as given: possibly a host name). Called with peer input: it must not
 * throw (if it does, the announcement is refused).
 */
export type AddAddrPolicy = (announced: AddressInfo, server: AddressInfo) => boolean;

/** 'default': `checkAnnouncedAddress`; 'any': join every authenticated announcement (RFC 8684, Linux's in-kernel PM). */
export type AddAddrPolicyOption = 'default' | 'any' | AddAddrPolicy;

export interface AddressPolicyOptions {
  /** Join an announced port other than the server's. Default false. */
  allowAnnouncedPorts?: boolean;
}

type Scope = 'loopback' | 'link-local' | 'global';

interface Classified {
  family: 4 | 6;
  scope: Scope;
  /** Not a unicast destination: unspecified, multicast, broadcast, reserved. */
  bad?: string;
}

/** Family, scope and badness of an IP address literal, or null for anything else (a host name). */
export function classifyAddress(text: string): Classified | null {
  const v4 = parseIpv4(text);
  if (v4) return classifyV4(v4);
  const v6 = parseIpv6(text);
  if (!v6) return null;
  // IPv4-mapped (::ffff:a.b.c.d): an IPv4 address in IPv6 clothing.
  if (v6.subarray(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff) return classifyV4(v6.subarray(12));
  if (v6.every((b) => b === 0)) return { family: 6, scope: 'global', bad: 'unspecified' };
  if (v6[0] === 0xff) return { family: 6, scope: 'global', bad: 'multicast' };
  if (v6.subarray(0, 15).every((b) => b === 0) && v6[15] === 1) return { family: 6, scope: 'loopback' };
  if (v6[0] === 0xfe && (v6[1] & 0xc0) === 0x80) return { family: 6, scope: 'link-local' };
  return { family: 6, scope: 'global' };
}

function classifyV4(b: Uint8Array): Classified {
  if (b[0] === 0) return { family: 4, scope: 'global', bad: 'unspecified' }; // 0.0.0.0/8, "this network"
  if (b[0] === 127) return { family: 4, scope: 'loopback' };
  if (b[0] >= 224 && b[0] <= 239) return { family: 4, scope: 'global', bad: 'multicast' };
  if (b[0] === 255 && b[1] === 255 && b[2] === 255 && b[3] === 255) return { family: 4, scope: 'global', bad: 'broadcast' };
  if (b[0] >= 240) return { family: 4, scope: 'global', bad: 'reserved' }; // 240.0.0.0/4
  if (b[0] === 169 && b[1] === 254) return { family: 4, scope: 'link-local' };
  return { family: 4, scope: 'global' };
}

/** RFC 6761 §6.3: "localhost" and names under it are the loopback host. */
function isLocalhostName(name: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, '');
  return n === 'localhost' || n.endsWith('.localhost');
}

/**
 * The default policy. Returns undefined when the client may join
 * `announced`, or why not. `server` is the initial subflow's remote address
 * and port (as the application gave it).
 *
 * - the announced address must be an IP literal and unicast: not
 *   unspecified (0.0.0.0/8, ::), multicast (224.0.0.0/4, ff00::/8),
 *   broadcast (255.255.255.255) or reserved (240.0.0.0/4);
 * - the same family as the server's address (IPv4-mapped IPv6 counts as
 *   IPv4); not checked when the application connected by host name, which
 *   may have both;
 * - loopback (127.0.0.0/8, ::1) only from a server on loopback
 *   ("localhost" counts), and a server on loopback only gets loopback
 *   addresses; link-local (169.254.0.0/16, fe80::/10) only from a
 *   link-local server;
 * - the server's own port (an announcement without a port means it),
 *   unless `allowAnnouncedPorts`.
 */
export function checkAnnouncedAddress(announced: AddressInfo, server: AddressInfo, options: AddressPolicyOptions = {}): string | undefined {
  const a = classifyAddress(announced.address);
  if (!a) return 'not an IP address';
  if (a.bad) return a.bad;
  const s = classifyAddress(server.address);
  const serverScope: Scope = s ? s.scope : isLocalhostName(server.address) ? 'loopback' : 'global';
  if (s && s.family !== a.family) return `IPv${a.family} address on an IPv${s.family} connection`;
  if (a.scope === 'loopback' && serverScope !== 'loopback') return 'loopback address from a server not on loopback';
  if (a.scope !== 'loopback' && serverScope === 'loopback') return 'non-loopback address from a server on loopback';
  if (a.scope === 'link-local' && serverScope !== 'link-local') return 'link-local address from a server not on the link';
  if (!options.allowAnnouncedPorts && announced.port !== undefined && server.port !== undefined && announced.port !== server.port) {
    return 'a port other than the server\'s';
  }
  return undefined;
}

/** The verdict of a policy option: undefined = join, otherwise why not. Never throws. */
export function applyAddAddrPolicy(
  policy: AddAddrPolicyOption | undefined,
  announced: AddressInfo,
  server: AddressInfo,
  options: AddressPolicyOptions = {},
): string | undefined {
  if (policy === 'any') return undefined;
  if (policy === undefined || policy === 'default') return checkAnnouncedAddress(announced, server, options);
  try {
    return policy({ ...announced }, { ...server }) === true ? undefined : 'refused by the application\'s policy';
  } catch {
    return 'the application\'s policy threw';
  }
}
