/**
 * The userspace client transport: a core `Connection` from the process-wide
 * client endpoint, its driver and first subflow, and the `MultipathStream`
 * TLS runs over (falling back to plain TCP when the server does not speak
 * multipath, if allowed).
 */
import net from 'node:net';
import { Endpoint } from '../../core/endpoint.js';
import { createTcpProbe, type TcpProbe } from '../kernel/probe.js';
import type { ClientOpenOptions, ClientTransport, OpenedConnection } from '../types.js';
import { MultipathDriver, now } from './driver.js';
import { UserspaceInfo, userspaceConnection, userspaceKeyBinding } from './info.js';
import { MultipathStream } from './stream.js';
import { traceDriver } from './trace.js';
import { TRANSPORT_MSS } from '../../core/config.js';
import type { ConnectionEvent } from '../../core/types.js';
import {
  AddressTracker,
  familyOf,
  hostInterfaces,
  isLinkLocal, isLoopback,
  plainAddress,
  selectAddresses,
  watchAddresses,
  type AddressSelection,
  type InterfaceMonitor,
  type Interfaces,
} from './addresses.js';

let probe: TcpProbe | undefined | null = null;
/** The TCP_INFO probe for userspace subflows (Linux with koffi), made once. */
export function tcpProbe(): TcpProbe | undefined {
  if (probe === null) probe = createTcpProbe();
  return probe;
}

let sharedEndpoint: Endpoint | undefined;
/** The process-wide client endpoint: its token table keeps client tokens unique. */
export function clientEndpoint(): Endpoint {
  sharedEndpoint ??= new Endpoint({ acceptModes: [] });
  return sharedEndpoint;
}

/** Emits 'subflow' on `target` once for each subflow of `info` that is established. */
export function reportSubflows(target: net.Socket, info: UserspaceInfo): () => void {
  const reported = new Set<number>();
  return () => {
    for (const s of info.subflows()) {
      if (s.state === 'established' && !reported.has(s.id)) {
        reported.add(s.id);
        target.emit('subflow', s);
      }
    }
  };
}

/**
 * Re-emits the driver's path events on `target` (the TLS socket):
 * 'subflow' (each established subflow, once), 'subflow-down' `{ id, reason }`,
 * 'paths-lost' (every subflow gone: the connection is parked) and
 * 'paths-restored' (a join resumed it).
 */
export function reportPaths(target: net.Socket, driver: MultipathDriver, info: UserspaceInfo): void {
  driver.on('subflow', reportSubflows(target, info));
  driver.on('subflow-down', (ev: Extract<ConnectionEvent, { type: 'subflow-down' }>) => {
    target.emit('subflow-down', { id: ev.subflow, reason: ev.reason });
  });
  driver.on('paths-lost', () => target.emit('paths-lost'));
  driver.on('paths-restored', () => target.emit('paths-restored'));
}

/** The port-less IP of `host`, or undefined for a name. */
function ipOf(host: string): string | undefined {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return net.isIP(plainAddress(h)) ? plainAddress(h) : undefined;
}

/**
 * Follows the host's addresses for a client connection: `'auto'` (every
 * suitable address) or a fixed list (its addresses as they disappear and
 * come back). New ones are given to the core (`addLocalAddress`), vanished
 * ones taken away (`removeLocalAddress`). Stops when the connection closes
 * or falls back.
 */
function followAddresses(driver: MultipathDriver, stream: MultipathStream, sel: AddressSelection, initial: string[], first: Interfaces | undefined, monitor: InterfaceMonitor): void {
  const conn = driver.conn;
  const tracker = new AddressTracker(
    sel,
    {
      added: (address) => {
        if (conn.state === 'closed') return;
        conn.addLocalAddress(address, false, now());
        driver.pump();
      },
      removed: (address) => {
        if (conn.state === 'closed') return;
        conn.removeLocalAddress(address, now());
        driver.pump();
      },
    },
    initial,
    first,
  );
  const stop = watchAddresses(monitor, tracker);
  driver.once('closed', stop);
  stream.once('fallback', stop);
  stream.once('close', stop);
}

/** Options of `userspaceClient` beyond the transport's: where the host's interfaces come from. */
export interface UserspaceClientOptions {
  /** The host's interfaces (default: `os.networkInterfaces()` every second, shared process-wide). */
  interfaces?: InterfaceMonitor;
}

/** The userspace client transport (with `options`, e.g. a fake interface source for tests). */
export function makeUserspaceClient(options: UserspaceClientOptions = {}): ClientTransport {
  return {
    name: 'userspace',
    open: (o) => openUserspace(o, options.interfaces ?? hostInterfaces()),
  };
}

function openUserspace({ host, port, mptcp: mp }: ClientOpenOptions, monitor: InterfaceMonitor): OpenedConnection {
  const auto = mp.localAddresses === 'auto';
  const serverIp = ipOf(host);
  // 'auto' needs the server's family: known now for an IP, at the first subflow's connect for a name.
  let first: Interfaces | undefined;
  let fixed: string[] | undefined;
  if (auto) {
    if (serverIp) {
      first = monitor.current();
      fixed = selectAddresses(first, { family: familyOf(serverIp) as 4 | 6, linkLocal: isLinkLocal(serverIp), loopbackPeer: isLoopback(serverIp) });
    }
  } else if (mp.localAddresses) {
    fixed = [...mp.localAddresses];
    first = monitor.current();
  }
  const bindFirst = fixed?.[0];
  const timers = mp.resumeTimeoutMs !== undefined ? { resumeTimeoutMs: mp.resumeTimeoutMs } : undefined;
  const conn = clientEndpoint().connect({
    mode: mp.keyMode ?? 'external',
    remote: { address: host, port },
    localAddresses: fixed && fixed.length > 0 ? fixed.map((address) => ({ address })) : undefined,
    scheduler: mp.scheduler,
    mss: TRANSPORT_MSS,
    limits: { ...mp.limits, ...(mp.maxSubflows ? { maxSubflows: mp.maxSubflows } : {}) },
    ...(timers ? { timers } : {}),
    addAddrPolicy: mp.addAddrPolicy,
    allowAnnouncedPorts: mp.allowAnnouncedPorts,
  }, now());
  const driver = new MultipathDriver(conn, { defaultPort: port, probe: tcpProbe() });
  const firstSocket = net.connect({ host, port, localAddress: bindFirst });
  // No pump yet: the MP_CAPABLE SYN leaves with the ClientHello, in the pump
  // TLS's first write makes (the microtask is the safety net).
  driver.attach(0, firstSocket, undefined, [], false);
  queueMicrotask(() => driver.pump());
  const fallbackAllowed = mp.fallback ?? true;
  const stream = new MultipathStream(driver, fallbackAllowed ? { host, port, localAddress: bindFirst } : undefined);
  traceDriver(driver, { stream }); // NODE_DEBUG=mptls
  // Following the host's addresses starts on the next turn, after the first
  // flight is written: nothing in it is needed before the joins (at the SYN/ACK).
  const later = (fn: () => void) =>
    setImmediate(() => {
      if (conn.state !== 'closed' && stream.mode === 'userspace' && !stream.destroyed) fn();
    });
  if (auto && !serverIp) {
    // A host name: the family is the one it resolved to; the first subflow's own address is in use already.
    firstSocket.once('connect', () => {
      if (conn.state === 'closed' || stream.mode !== 'userspace') return;
      const remote = firstSocket.remoteAddress;
      const local = firstSocket.localAddress;
      if (!remote) return;
      const sel: AddressSelection = { family: familyOf(remote) === 6 ? 6 : 4, linkLocal: isLinkLocal(remote), loopbackPeer: isLoopback(remote) };
      const present = selectAddresses(monitor.current(), sel);
      const own = local ? plainAddress(local) : undefined;
      followAddresses(driver, stream, sel, present, undefined, monitor);
      // The ones there already (but the first subflow's): joined once keys are confirmed.
      for (const a of present) if (a !== own) conn.addLocalAddress(a, false, now());
      driver.pump();
    });
  } else if (auto && serverIp) {
    later(() => followAddresses(driver, stream, { family: familyOf(serverIp) as 4 | 6, linkLocal: isLinkLocal(serverIp), loopbackPeer: isLoopback(serverIp) }, fixed ?? [], undefined, monitor));
  } else if (fixed && fixed.length > 0) {
    later(() => followAddresses(driver, stream, { family: familyOf(fixed[0]!) === 6 ? 6 : 4, only: fixed }, fixed, first, monitor));
  }
  const info = new UserspaceInfo(driver);
  const keys = userspaceKeyBinding(driver, () => info.mode === 'userspace');
  return userspaceConnection(stream, info, keys, (tlsSocket) => {
    stream.on('fallback', (reason: string) => {
      info.mode = 'fallback';
      info.fallbackReason = reason;
    });
    reportPaths(tlsSocket, driver, info);
  });
}

export const userspaceClient: ClientTransport = makeUserspaceClient();
