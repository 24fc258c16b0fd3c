/**
 * `mptls get --local ADDR`: an address the subflows may be bound to must be
 * one of this host's (os.networkInterfaces(), or inside a loopback
 * interface's subnet: 127.0.0.2 is as local as 127.0.0.1 on Linux) and of
 * the server address's family. Decided before any socket exists, so an
 * address that is not ours never sends a packet (not even with
 * net.ipv4.ip_nonlocal_bind set).
 */
import net from 'node:net';
import os from 'node:os';

type Interfaces = ReturnType<typeof os.networkInterfaces>;

/** An IP address without its IPv6 zone ("%eth0"), lower case. */
function plain(a: string): string {
  return a.split('%', 1)[0].toLowerCase();
}

function v4ToInt(a: string): number {
  return a.split('.').reduce((n, part) => ((n << 8) | Number(part)) >>> 0, 0);
}

/** Whether `address` (IPv4) is in the subnet of `ifaceAddress`/`netmask`. */
function inV4Subnet(address: string, ifaceAddress: string, netmask: string): boolean {
  const mask = v4ToInt(netmask);
  return ((v4ToInt(address) & mask) >>> 0) === ((v4ToInt(ifaceAddress) & mask) >>> 0);
}

/** Whether `address` is one of this host's. */
export function isHostAddress(address: string, interfaces: Interfaces = os.networkInterfaces()): boolean {
  const a = plain(address);
  const family = net.isIP(a);
  for (const list of Object.values(interfaces)) {
    for (const i of list ?? []) {
      if (plain(i.address) === a) return true;
      // Linux answers for the whole loopback subnet (127.0.0.0/8 on lo).
      if (family === 4 && i.family === 'IPv4' && i.internal && inV4Subnet(a, i.address, i.netmask)) return true;
    }
  }
  // A v4-mapped IPv6 address is the IPv4 one.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  return mapped !== null && isHostAddress(mapped[1], interfaces);
}

/**
 * Why `local` cannot carry a subflow to `server` (an IP), or undefined when
 * it can: not an address of this host, or not the server's family.
 */
export function localAddressProblem(local: string, server: string, interfaces: Interfaces = os.networkInterfaces()): string | undefined {
  const lf = net.isIP(plain(local));
  const sf = net.isIP(plain(server));
  if (lf === 0) return `--local ${local} is not an IP address`;
  if (sf !== 0 && lf !== sf) return `--local ${local} is IPv${lf} but the server ${server} is IPv${sf}`;
  if (!isHostAddress(local, interfaces)) return `--local ${local} is not an address of this host`;
  return undefined;
}
