/**
 * The host's addresses as they come and go: `mptcp.localAddresses: 'auto'`
 * (client), `mptcp.announce: 'auto'` (server), and a fixed list whose
 * addresses disappear and come back.
 *
 * Node has no notification for address changes, so an `InterfaceMonitor`
 * reads `os.networkInterfaces()` (or an injected source, for tests) at a
 * small interval while anyone listens (one unref'd timer however many
 * connections watch), and each connection keeps an `AddressTracker` that
 * turns those snapshots into "added" / "removed" calls for the addresses it
 * cares about (`AddressSelection`).
 */
import net from 'node:net';
import os from 'node:os';
import { performance } from 'node:perf_hooks';

/** A snapshot of the host's interfaces, shaped like `os.networkInterfaces()`. */
export type Interfaces = NodeJS.Dict<os.NetworkInterfaceInfo[]>;
/** Where the snapshots come from (default `os.networkInterfaces`). */
export type InterfaceSource = () => Interfaces;

/** How often the host's interfaces are read while a connection watches them. */
export const ADDRESS_POLL_MS = 1_000;

/** Reads the host's interfaces at an interval while it has subscribers. */
export class InterfaceMonitor {
  private readonly listeners = new Set<(ifaces: Interfaces) => void>();
  private timer: NodeJS.Timeout | undefined;
  private last: Interfaces | undefined;
  private lastAt = -Infinity;

  /** `reuseMs`: how old a snapshot `current()` may hand out when the timer does not run (0: always read). */
  constructor(
    private readonly source: InterfaceSource = () => os.networkInterfaces(),
    readonly intervalMs = ADDRESS_POLL_MS,
    readonly reuseMs = 0,
  ) {}

  /** The interfaces now (read from the source). */
  snapshot(): Interfaces {
    try {
      this.lastAt = performance.now();
      this.last = this.source();
    } catch {
      // a failed read (e.g. EMFILE) changes nothing: keep the last snapshot
      this.last ??= {};
    }
    return this.last;
  }

  /**
   * The host's interfaces as of now, cheaply: the last snapshot while the
   * poll timer runs (at most `intervalMs` old; a change shows at the next
   * poll anyway) or when it is younger than `reuseMs`, else a fresh read. A new connection's setup uses this: one
   * `os.networkInterfaces()` costs ~0.2 ms on its critical path.
   */
  current(): Interfaces {
    if (this.last && (this.timer || performance.now() - this.lastAt < this.reuseMs)) return this.last;
    return this.snapshot();
  }

  /** Reads the source once and tells every subscriber (the timer calls it; tests may too). */
  poll(): void {
    const ifaces = this.snapshot();
    for (const fn of [...this.listeners]) fn(ifaces);
  }

  /** Calls `fn` with every snapshot from now on; returns the unsubscribe. The timer runs while there are subscribers. */
  subscribe(fn: (ifaces: Interfaces) => void): () => void {
    this.listeners.add(fn);
    if (!this.timer && this.intervalMs > 0) {
      this.timer = setInterval(() => this.poll(), this.intervalMs);
      this.timer.unref();
    }
    return () => {
      this.listeners.delete(fn);
      if (this.listeners.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  /** Subscribers right now (for tests and diagnostics). */
  get subscribers(): number {
    return this.listeners.size;
  }
}

let shared: InterfaceMonitor | undefined;
/** The process-wide monitor of `os.networkInterfaces()`. */
export function hostInterfaces(): InterfaceMonitor {
  shared ??= new InterfaceMonitor(undefined, ADDRESS_POLL_MS, ADDRESS_POLL_MS);
  return shared;
}

/** Which of the host's addresses a connection follows. */
export interface AddressSelection {
  /** The family of the peer's address: only addresses of this family. */
  family: 4 | 6;
  /**
   * `undefined` ('auto'): every non-internal address of `family`, link-local
   * ones only when `linkLocal`. A list: only these addresses (internal ones
   * too), each present while an interface has it (or, on a loopback
   * interface, its prefix holds it: 127.0.0.2 is on lo's 127.0.0.1/8).
   */
  only?: readonly string[];
  /** With 'auto': also link-local addresses (fe80::/10, 169.254/16): when the peer is link-local. */
  linkLocal?: boolean;
  /** With 'auto': the peer is on loopback, so only loopback addresses lead to it (as the ADD_ADDR policy). */
  loopbackPeer?: boolean;
  /** Never these (e.g. the server address the client connected to). */
  exclude?: readonly string[];
}

/** The address without an IPv6 zone and with an IPv4-mapped IPv6 address as IPv4. */
export function plainAddress(address: string): string {
  let a = address;
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  return mapped ? mapped[1]! : a;
}

/** 4 or 6 for an address (IPv4-mapped IPv6 counts as 4), 0 when it is none. */
export function familyOf(address: string): 0 | 4 | 6 {
  return net.isIP(plainAddress(address)) as 0 | 4 | 6;
}

export function isLoopback(address: string): boolean {
  const a = plainAddress(address);
  return a === '::1' || /^127\./.test(a);
}

export function isLinkLocal(address: string): boolean {
  const a = plainAddress(address);
  if (net.isIPv4(a)) return a.startsWith('169.254.');
  return /^fe[89ab]/i.test(a);
}

function familyNumber(f: os.NetworkInterfaceInfo['family'] | number): 4 | 6 {
  return f === 'IPv6' || f === 6 ? 6 : 4;
}

/** Does the CIDR `cidr` (e.g. '127.0.0.1/8') hold `address`? */
function inPrefix(cidr: string | null, address: string, family: 4 | 6): boolean {
  if (!cidr) return false;
  const list = prefixList(cidr, family);
  if (!list) return false;
  try {
    return list.check(plainAddress(address), family === 6 ? 'ipv6' : 'ipv4');
  } catch {
    return false;
  }
}

/** One BlockList per interface prefix, made once (a new one per check cost ~0.1 ms of every connect). */
const prefixLists = new Map<string, net.BlockList | null>();
function prefixList(cidr: string, family: 4 | 6): net.BlockList | null {
  const key = `${family}|${cidr}`;
  let list = prefixLists.get(key);
  if (list !== undefined) return list;
  const [base, len] = cidr.split('/');
  list = null;
  if (base && len !== undefined) {
    try {
      list = new net.BlockList();
      list.addSubnet(plainAddress(base), Number(len), family === 6 ? 'ipv6' : 'ipv4');
    } catch {
      list = null;
    }
  }
  if (prefixLists.size >= 1024) prefixLists.clear(); // interfaces come and go; keep it bounded
  prefixLists.set(key, list);
  return list;
}

/** The addresses of `ifaces` that `sel` selects, in interface order, each once. */
export function selectAddresses(ifaces: Interfaces, sel: AddressSelection): string[] {
  const exclude = new Set((sel.exclude ?? []).map(plainAddress));
  const entries: { address: string; internal: boolean; cidr: string | null; family: 4 | 6 }[] = [];
  for (const list of Object.values(ifaces)) {
    for (const i of list ?? []) entries.push({ address: plainAddress(i.address), internal: i.internal, cidr: i.cidr, family: familyNumber(i.family) });
  }
  const out: string[] = [];
  const add = (a: string) => {
    if (!exclude.has(a) && !out.includes(a)) out.push(a);
  };
  if (sel.only === undefined) {
    for (const e of entries) {
      if (e.family !== sel.family || e.internal) continue;
      if (sel.loopbackPeer && !isLoopback(e.address)) continue;
      if (isLinkLocal(e.address) && !sel.linkLocal) continue;
      add(e.address);
    }
    return out;
  }
  for (const wanted of sel.only) {
    const a = plainAddress(wanted);
    const fam = familyOf(a);
    if (fam === 0) continue;
    const present = entries.some((e) => e.family === fam && (e.address === a || (e.internal && inPrefix(e.cidr, a, fam))));
    if (present) add(a);
  }
  return out;
}

export interface AddressChanges {
  /** An address appeared (or, from a fixed list, came back). */
  added(address: string): void;
  /** An address the connection had disappeared. */
  removed(address: string): void;
}

/**
 * One connection's view of the host's addresses: given each snapshot, calls
 * `added` for the selected addresses it does not have and `removed` for the
 * ones it has that are gone.
 *
 * With a fixed list (`only`) the tracker never takes an address away that no
 * snapshot showed (it may be usable without being any interface's address,
 * and an empty snapshot must not end every path): an address is removed only
 * after a snapshot showed it. One of the `initial` addresses that the first
 * snapshot (`first`) lacks while showing other addresses of its family is
 * taken as absent, so it is added when it appears.
 */
export class AddressTracker {
  private readonly have = new Set<string>();
  private readonly seen = new Set<string>();

  /**
   * @param initial the addresses the connection already uses (e.g. the ones it was opened with)
   * @param first a snapshot taken when the connection was opened
   */
  constructor(
    private readonly sel: AddressSelection,
    private readonly changes: AddressChanges,
    initial: Iterable<string> = [],
    first?: Interfaces,
  ) {
    const present = first ? new Set(selectAddresses(first, sel)) : undefined;
    for (const raw of initial) {
      const a = plainAddress(raw);
      if (present?.has(a)) this.seen.add(a);
      else if (present && sel.only !== undefined && hasFamily(first!, familyOf(a))) continue;
      this.have.add(a);
    }
  }

  /** The addresses the connection has, as far as the tracker knows. */
  current(): string[] {
    return [...this.have];
  }

  update(ifaces: Interfaces): void {
    const now = selectAddresses(ifaces, this.sel);
    const present = new Set(now);
    for (const a of now) this.seen.add(a);
    for (const a of [...this.have]) {
      if (present.has(a)) continue;
      if (this.sel.only !== undefined && !this.seen.has(a)) continue;
      this.have.delete(a);
      this.changes.removed(a);
    }
    for (const a of now) {
      if (this.have.has(a)) continue;
      this.have.add(a);
      this.changes.added(a);
    }
  }
}

function hasFamily(ifaces: Interfaces, family: 0 | 4 | 6): boolean {
  if (family === 0) return false;
  return Object.values(ifaces).some((list) => (list ?? []).some((i) => familyNumber(i.family) === family));
}

/**
 * Follows `sel` on `monitor` until the returned stop is called: an
 * `AddressTracker` fed with every snapshot. The first update is the next
 * poll (call `tracker.update(monitor.snapshot())` for one at once).
 */
export function watchAddresses(monitor: InterfaceMonitor, tracker: AddressTracker): () => void {
  const unsubscribe = monitor.subscribe((ifaces) => {
    try {
      tracker.update(ifaces);
    } catch {
      // a connection's reaction to a change is its own business: never out of the timer
    }
  });
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    unsubscribe();
  };
}
