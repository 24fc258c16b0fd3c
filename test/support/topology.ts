/**
 * The N-path testbed (design notes §6): a client and a server network
 * namespace joined by N veth pairs, each end shaped with a token bucket.
 *
 *   path i (1-based):  client  va<i>  198.18.i.1/24  <->  198.18.i.2/24  vb<i>  server
 *
 * - Namespaces are `mptls-<name>-<pid>-<hex>-c` and `…-s` (the naming of
 *   test/support/netns.ts), so leftovers of crashed runs are recognised and
 *   swept by the next `create`. Only 198.18.0.0/15 addresses are used, and
 *   only inside these namespaces; nothing is created in the root namespace.
 * - rp_filter is 0 (`all` and `default`, set before any link exists) and IPv6
 *   is disabled in both namespaces (no router/neighbour solicitations).
 * - Path identity is the client address. The client routes by source:
 *   `ip rule add from 198.18.i.1 table 100+i` with `198.18.0.0/15 dev va<i>`
 *   in that table, so a socket bound to 198.18.i.1 uses path i whatever
 *   server address it connects to. Each of those tables also holds an
 *   `unreachable 198.18.0.0/15 metric 4096` fallback: when path i's link is
 *   down its device route disappears, and without the fallback the lookup
 *   would fall through to the main table and leak 198.18.i.1-sourced packets
 *   onto another path; with it such sockets get EHOSTUNREACH instead.
 * - The server routes by destination (its main table has only the connected
 *   198.18.i.0/24 routes), which is already symmetric: a packet from
 *   198.18.i.1 arrives on vb<i> whichever server address it targets, and the
 *   reply to 198.18.i.1 leaves by vb<i>. (Source rules on the server would
 *   break that for cross-path connections, so there are none.)
 * - Shaping: `tc qdisc replace dev X root tbf rate R burst 32kbit latency
 *   100ms` on both ends of every path. tbf counts link-layer bytes, so TCP
 *   goodput of a bulk transfer is about 95.6% of R (1448 payload bytes per
 *   1514-byte frame). Measured receiver goodput here (iperf3, 3 s): 20 Mbit ->
 *   19.1, 50 -> 47.8, 100 -> 94.7, 200 -> 188.4 (a 128kbit burst gives only
 *   95.6 / 190.0 at 100 / 200), so 32kbit is accurate enough through
 *   100 Mbit/s and is kept; `burstKbit` overrides it.
 * - Delay: sch_netem does not exist on this kernel, so a non-zero `delayMs`
 *   is rejected with an error rather than silently ignored. (A future
 *   implementation could use a tc-bpf program setting skb->tstamp under the
 *   fq qdisc, or a userspace relay.)
 * - Kernel MPTCP: `ip mptcp limits set subflows S add_addr_accepted A` in both
 *   namespaces (default 8/8); `clientMptcpEndpoints` adds
 *   `endpoint 198.18.i.1 dev va<i> subflow` for i >= 2 (the kernel path
 *   manager then joins a subflow per extra path), `serverMptcpEndpoints` adds
 *   `endpoint 198.18.i.2 dev vb<i> signal` for i >= 2 (ADD_ADDR).
 *
 * `destroy()` kills every process started in the namespaces and deletes
 * them (which deletes the veths). It is idempotent, registered on process
 * 'exit', and run by `withTopology` and by `await using`.
 */
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  type LabProcess,
  NetnsLab,
  netnsAvailable,
  run,
  type RunResult,
  sweepStaleNamespaces,
} from './netns.js';

export type Side = 'client' | 'server';

export interface PathSpec {
  /** Rate of the token bucket on each end, Mbit/s (1 Mbit = 10^6 bit). */
  rateMbit: number;
  /** One-way delay. Not supported (no netem): a non-zero value is rejected. */
  delayMs?: number;
}

export interface TopologyOptions {
  paths: PathSpec[];
  /** Tag in the namespace names, [a-z0-9]{1,12}; default 'topo'. */
  name?: string;
  /** `ip mptcp endpoint add 198.18.i.2 dev vb<i> signal` on the server for i >= 2. */
  serverMptcpEndpoints?: boolean;
  /** `ip mptcp endpoint add 198.18.i.1 dev va<i> subflow` on the client for i >= 2. */
  clientMptcpEndpoints?: boolean;
  /** Kernel MPTCP limits set in both namespaces; default 8 and 8 (the kernel maximum). */
  mptcpLimits?: { subflows: number; addAddrAccepted: number };
  /** tbf burst in kbit (1000 bit); default 32. */
  burstKbit?: number;
}

export interface PathState {
  index: number;
  /** The configured rate (what `revivePath` restores). */
  rateMbit: number;
  up: boolean;
  blackholed: boolean;
  clientInterface: string;
  serverInterface: string;
  clientAddress: string;
  serverAddress: string;
}

export interface LinkStats {
  rxBytes: number;
  rxPackets: number;
  txBytes: number;
  txPackets: number;
  txDropped: number;
}

export interface QdiscInfo {
  /** 'tbf' normally. */
  kind: string;
  /** Rate in bit/s as the kernel holds it (absent if the root qdisc is not a rate limiter). */
  rateBitPerSec?: number;
  /** Bucket size in bytes (tc rounds 32kbit = 4000 bytes to about 4095). */
  burstBytes?: number;
}

export type Availability = { ok: true } | { ok: false; reason: string };

const DEFAULT_BURST_KBIT = 32;
const LATENCY = '100ms';
const BLACKHOLE_KBIT = 1;
const MAX_PATHS = 250;

let availabilityCache: Availability | undefined;

function tbfArgs(dev: string, rateKbit: number, burstKbit: number): string[] {
  return ['qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', `${rateKbit}kbit`, 'burst', `${burstKbit}kbit`, 'latency', LATENCY];
}

function validate(opts: TopologyOptions): void {
  if (!opts || !Array.isArray(opts.paths) || opts.paths.length < 1 || opts.paths.length > MAX_PATHS) {
    throw new RangeError(`Topology: paths must be an array of 1..${MAX_PATHS} path specs`);
  }
  opts.paths.forEach((p, k) => {
    if (!(typeof p.rateMbit === 'number' && Number.isFinite(p.rateMbit) && p.rateMbit > 0)) {
      throw new RangeError(`Topology: path ${k + 1}: rateMbit must be a positive number, got ${String(p.rateMbit)}`);
    }
    if (Math.round(p.rateMbit * 1000) < 1) throw new RangeError(`Topology: path ${k + 1}: rateMbit below 1 kbit/s`);
    if (p.delayMs !== undefined && p.delayMs !== 0) {
      throw new Error(
        `Topology: path ${k + 1}: delayMs=${p.delayMs} is not supported: the netem qdisc does not exist on this ` +
          'kernel and no userspace delay is implemented; leave delayMs unset (or 0)',
      );
    }
  });
  if (opts.name !== undefined && !/^[a-z0-9]{1,12}$/.test(opts.name)) {
    throw new RangeError(`Topology: name must match [a-z0-9]{1,12}, got ${JSON.stringify(opts.name)}`);
  }
  if (opts.burstKbit !== undefined && !(Number.isInteger(opts.burstKbit) && opts.burstKbit >= 16)) {
    throw new RangeError('Topology: burstKbit must be an integer >= 16 (a burst below one MTU frame stalls tbf)');
  }
  const lim = opts.mptcpLimits;
  if (lim) {
    for (const [k, v] of Object.entries(lim)) {
      if (!(Number.isInteger(v) && v >= 0 && v <= 8)) throw new RangeError(`Topology: mptcpLimits.${k} must be an integer 0..8`);
    }
  }
}

export class Topology {
  readonly clientNs: string;
  readonly serverNs: string;
  readonly pathCount: number;
  private readonly lab: NetnsLab;
  private readonly burstKbit: number;
  private readonly state: PathState[];
  private destroyed_ = false;

  private constructor(lab: NetnsLab, opts: TopologyOptions) {
    this.lab = lab;
    this.clientNs = `${lab.prefix}-c`;
    this.serverNs = `${lab.prefix}-s`;
    this.pathCount = opts.paths.length;
    this.burstKbit = opts.burstKbit ?? DEFAULT_BURST_KBIT;
    this.state = opts.paths.map((p, k) => ({
      index: k + 1,
      rateMbit: p.rateMbit,
      up: true,
      blackholed: false,
      clientInterface: `va${k + 1}`,
      serverInterface: `vb${k + 1}`,
      clientAddress: `198.18.${k + 1}.1`,
      serverAddress: `198.18.${k + 1}.2`,
    }));
  }

  /**
   * Whether the testbed can run here: Linux, root, `ip netns` works, kernel
   * MPTCP present (/proc/sys/net/mptcp/enabled), `tc` on PATH. Cached.
   */
  static available(): Availability {
    if (availabilityCache) return availabilityCache;
    let res: Availability = netnsAvailable();
    if (res.ok) {
      if (!existsSync('/proc/sys/net/mptcp/enabled')) res = { ok: false, reason: 'kernel MPTCP is absent (no net.mptcp.enabled sysctl)' };
      else if (run('tc', ['-V'], { allowFail: true }).status !== 0) res = { ok: false, reason: 'tc (iproute2) is not on PATH' };
    }
    availabilityCache = res;
    return res;
  }

  /** Builds the namespaces, paths, routing, shaping and MPTCP settings; on any failure cleans up and throws. */
  static async create(opts: TopologyOptions): Promise<Topology> {
    validate(opts);
    const avail = Topology.available();
    if (!avail.ok) throw new Error(`Topology: cannot build the netns testbed here: ${avail.reason}`);
    sweepStaleNamespaces();
    const lab = new NetnsLab(opts.name ?? 'topo');
    const topo = new Topology(lab, opts);
    try {
      topo.build(opts);
    } catch (e) {
      topo.destroy();
      throw e;
    }
    return topo;
  }

  private build(opts: TopologyOptions): void {
    const { lab } = this;
    // addNamespace sets rp_filter=0 (all, default), disables IPv6 and brings lo up, before any link exists.
    lab.addNamespace('c');
    lab.addNamespace('s');
    const C = this.clientNs;
    const S = this.serverNs;
    for (const p of this.state) {
      lab.addVeth(C, p.clientInterface, `${p.clientAddress}/24`, S, p.serverInterface, `${p.serverAddress}/24`);
      const table = String(100 + p.index);
      lab.ip(C, 'rule', 'add', 'from', p.clientAddress, 'table', table);
      lab.ip(C, 'route', 'add', '198.18.0.0/15', 'dev', p.clientInterface, 'table', table);
      lab.ip(C, 'route', 'add', 'unreachable', '198.18.0.0/15', 'metric', '4096', 'table', table);
      this.shape(p, Math.round(p.rateMbit * 1000));
    }
    const lim = opts.mptcpLimits ?? { subflows: 8, addAddrAccepted: 8 };
    for (const ns of [C, S]) {
      lab.ip(ns, 'mptcp', 'limits', 'set', 'subflows', String(lim.subflows), 'add_addr_accepted', String(lim.addAddrAccepted));
    }
    for (const p of this.state.slice(1)) {
      if (opts.clientMptcpEndpoints) lab.ip(C, 'mptcp', 'endpoint', 'add', p.clientAddress, 'dev', p.clientInterface, 'subflow');
      if (opts.serverMptcpEndpoints) lab.ip(S, 'mptcp', 'endpoint', 'add', p.serverAddress, 'dev', p.serverInterface, 'signal');
    }
  }

  private shape(p: PathState, rateKbit: number): void {
    run('tc', ['-n', this.clientNs, ...tbfArgs(p.clientInterface, rateKbit, this.burstKbit)]);
    run('tc', ['-n', this.serverNs, ...tbfArgs(p.serverInterface, rateKbit, this.burstKbit)]);
  }

  private path(i: number): PathState {
    if (!Number.isInteger(i) || i < 1 || i > this.pathCount) throw new RangeError(`Topology: no path ${i} (paths are 1..${this.pathCount})`);
    return this.state[i - 1];
  }

  private alive(): void {
    if (this.destroyed_) throw new Error('Topology: already destroyed');
  }

  private ns(side: Side): string {
    if (side === 'client') return this.clientNs;
    if (side === 'server') return this.serverNs;
    throw new RangeError(`Topology: side must be 'client' or 'server', got ${String(side)}`);
  }

  get destroyed(): boolean {
    return this.destroyed_;
  }

  /** 198.18.i.1 */
  clientAddress(i: number): string {
    return this.path(i).clientAddress;
  }

  /** 198.18.i.2 */
  serverAddress(i: number): string {
    return this.path(i).serverAddress;
  }

  /** va<i> (in the client namespace) */
  clientInterface(i: number): string {
    return this.path(i).clientInterface;
  }

  /** vb<i> (in the server namespace) */
  serverInterface(i: number): string {
    return this.path(i).serverInterface;
  }

  /** A copy of path i's current state. */
  pathState(i: number): PathState {
    return { ...this.path(i) };
  }

  /** Runs `cmd args` inside the side's namespace and waits; throws with its output on failure unless allowFail. */
  exec(side: Side, cmd: string, args: readonly string[] = [], opts: { allowFail?: boolean; timeoutMs?: number } = {}): RunResult {
    this.alive();
    return this.lab.exec(this.ns(side), cmd, args, opts);
  }

  /** `ip -n <ns> ARGS…`; throws on failure. */
  ip(side: Side, ...args: string[]): RunResult {
    this.alive();
    return this.lab.ip(this.ns(side), ...args);
  }

  /**
   * Starts `cmd args` inside the side's namespace (`ip netns exec` execs it,
   * so child.pid is the command's own pid) and returns the ChildProcess;
   * default stdio is stdin ignored and stdout/stderr piped (read them, or
   * pass `stdio: 'ignore'`/'inherit'). Killed by `destroy()`.
   */
  spawn(side: Side, cmd: string, args: readonly string[] = [], opts: SpawnOptions = {}): ChildProcess {
    this.alive();
    return this.lab.spawnChild(this.ns(side), cmd, args, opts);
  }

  /** Like `spawn`, wrapped in a LabProcess that buffers the output (`output()`, `waitFor(re)`, `exit()`). */
  start(side: Side, cmd: string, args: readonly string[] = [], opts: Omit<SpawnOptions, 'stdio' | 'detached'> = {}): LabProcess {
    this.alive();
    return this.lab.spawn(this.ns(side), cmd, args, opts);
  }

  /**
   * Takes path i down: `ip link set … down` on both ends. Sockets bound to
   * 198.18.i.1 then get EHOSTUNREACH (they never leak onto another path).
   * 198.18.i.2 stays a local address of the server (weak host model, as on a
   * real multi-homed host), so it remains reachable over the other live paths.
   */
  killPath(i: number): void {
    this.alive();
    const p = this.path(i);
    this.lab.ip(this.clientNs, 'link', 'set', p.clientInterface, 'down');
    this.lab.ip(this.serverNs, 'link', 'set', p.serverInterface, 'down');
    p.up = false;
  }

  /**
   * Brings path i back: both ends up, the source-routing route (removed by the
   * kernel when the link went down) re-added, and the configured rate
   * re-applied (which also undoes `blackholePath`).
   */
  revivePath(i: number): void {
    this.alive();
    const p = this.path(i);
    this.lab.ip(this.clientNs, 'link', 'set', p.clientInterface, 'up');
    this.lab.ip(this.serverNs, 'link', 'set', p.serverInterface, 'up');
    this.lab.ip(this.clientNs, 'route', 'replace', '198.18.0.0/15', 'dev', p.clientInterface, 'table', String(100 + p.index));
    this.shape(p, Math.round(p.rateMbit * 1000));
    p.up = true;
    p.blackholed = false;
  }

  /**
   * Makes path i silently drop (almost) everything: a 1 kbit/s tbf on both
   * ends, link still up. Same burst and latency as the normal shaping, so up
   * to one burst (4 kB at 32kbit) may still pass right after the switch.
   * Undo with `revivePath(i)` or `setRate(i, …)`.
   */
  blackholePath(i: number): void {
    this.alive();
    const p = this.path(i);
    this.shape(p, BLACKHOLE_KBIT);
    p.blackholed = true;
  }

  /**
   * Random loss on path i: nftables drops `percent` % of the packets leaving
   * each end of it (`numgen random mod 100 < percent`, one table per
   * namespace, `mptls_loss`). 0 removes the rules. A lossy path stays up: TCP
   * retransmits, the RTT and the rate it reaches suffer.
   */
  lossPath(i: number, percent: number): void {
    this.alive();
    const p = this.path(i);
    if (!(Number.isInteger(percent) && percent >= 0 && percent < 100)) throw new RangeError(`Topology: lossPath: percent must be an integer 0..99, got ${percent}`);
    for (const [side, dev] of [['client', p.clientInterface], ['server', p.serverInterface]] as const) {
      const ns = this.ns(side);
      this.lab.exec(ns, 'nft', ['add', 'table', 'inet', 'mptls_loss']);
      this.lab.exec(ns, 'nft', ['add', 'chain', 'inet', 'mptls_loss', `out_${dev}`, '{ type filter hook output priority 0 ; }']);
      this.lab.exec(ns, 'nft', ['flush', 'chain', 'inet', 'mptls_loss', `out_${dev}`]);
      if (percent > 0) this.lab.exec(ns, 'nft', ['add', 'rule', 'inet', 'mptls_loss', `out_${dev}`, 'oifname', dev, 'numgen', 'random', 'mod', '100', '<', String(percent), 'counter', 'drop']);
    }
  }

  /** Packets `lossPath` dropped so far on path i's end on `side` (its nftables counter). */
  lossDrops(side: Side, i: number): number {
    this.alive();
    const p = this.path(i);
    const dev = side === 'client' ? p.clientInterface : p.serverInterface;
    const r = this.lab.exec(this.ns(side), 'nft', ['list', 'chain', 'inet', 'mptls_loss', `out_${dev}`], { allowFail: true });
    const m = /counter packets (\d+)/.exec(r.stdout);
    return m ? Number(m[1]) : 0;
  }

  /** Changes path i's rate on both ends (in place, mid-transfer is fine) and makes it the configured rate. */
  setRate(i: number, mbit: number): void {
    this.alive();
    const p = this.path(i);
    if (!(Number.isFinite(mbit) && mbit > 0 && Math.round(mbit * 1000) >= 1)) {
      throw new RangeError(`Topology: setRate: rate must be a positive number of Mbit/s (>= 0.001), got ${mbit}`);
    }
    this.shape(p, Math.round(mbit * 1000));
    p.rateMbit = mbit;
    p.blackholed = false;
  }

  /** Interface counters of path i's end on the given side. */
  linkStats(side: Side, i: number): LinkStats {
    this.alive();
    const p = this.path(i);
    const dev = side === 'client' ? p.clientInterface : p.serverInterface;
    const out = this.lab.ip(this.ns(side), '-j', '-s', 'link', 'show', 'dev', dev).stdout;
    const [link] = JSON.parse(out) as { stats64: { rx: { bytes: number; packets: number }; tx: { bytes: number; packets: number; dropped: number } } }[];
    const s = link.stats64;
    return { rxBytes: s.rx.bytes, rxPackets: s.rx.packets, txBytes: s.tx.bytes, txPackets: s.tx.packets, txDropped: s.tx.dropped };
  }

  /** The root qdisc of path i's end on the given side, from `tc -j qdisc show`. */
  qdisc(side: Side, i: number): QdiscInfo {
    this.alive();
    const p = this.path(i);
    const dev = side === 'client' ? p.clientInterface : p.serverInterface;
    const out = run('tc', ['-n', this.ns(side), '-j', 'qdisc', 'show', 'dev', dev]).stdout;
    const list = JSON.parse(out) as { kind: string; root?: boolean; options?: { rate?: number; burst?: number } }[];
    const q = list.find((x) => x.root) ?? list[0];
    const info: QdiscInfo = { kind: q.kind };
    if (typeof q.options?.rate === 'number') info.rateBitPerSec = q.options.rate * 8;
    if (typeof q.options?.burst === 'number') info.burstBytes = q.options.burst;
    return info;
  }

  /**
   * Kills every process started in the namespaces (tracked children, then
   * anything else still inside, by pid) and deletes both namespaces, which
   * deletes the veths. Idempotent; also runs on process 'exit'.
   */
  destroy(): void {
    if (this.destroyed_) return;
    this.destroyed_ = true;
    this.lab.cleanup();
  }

  [Symbol.dispose](): void {
    this.destroy();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.destroy();
  }
}

/** Builds a topology, runs `fn` with it, and always destroys it, also when `fn` throws (the error is rethrown). */
export async function withTopology<T>(opts: TopologyOptions, fn: (topo: Topology) => Promise<T> | T): Promise<T> {
  const topo = await Topology.create(opts);
  try {
    return await fn(topo);
  } finally {
    topo.destroy();
  }
}

export { LabProcess, type RunResult } from './netns.js';
