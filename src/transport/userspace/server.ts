/**
 * The userspace server transport: a server's own `Endpoint` (token allocator,
 * server id, limits) and the `Acceptor` that takes over its 'connection'
 * events. Multipath connections become `OpenedConnection`s over a
 * `MultipathStream`; every other socket goes to `handlers.plain` (node:tls).
 */
import type net from 'node:net';
import { Endpoint } from '../../core/endpoint.js';
import { ServerIdTokenAllocator, WorkerTokenAllocator } from '../../core/token.js';
import { randomBytes } from '../../crypto/random.js';
import type { KeyBinding, OpenedConnection, ServerHandlers, ServerTransport, TransportConnection, TransportServerOptions } from '../types.js';
import { Acceptor } from './acceptor.js';
import { reportPaths, tcpProbe } from './client.js';
import type { MultipathDriver } from './driver.js';
import { FallbackInfo, UserspaceInfo, userspaceConnection, userspaceKeyBinding } from './info.js';
import { MultipathStream } from './stream.js';
import { traceDriver, traceRefused } from './trace.js';
import { TRANSPORT_MSS } from '../../core/config.js';
import { AddressTracker, familyOf, hostInterfaces, isLinkLocal, isLoopback, plainAddress, watchAddresses, type InterfaceMonitor } from './addresses.js';

/** What `server.mptcp` reports. */
export interface ServerMptcpInfo {
  readonly endpoint: Endpoint;
  readonly acceptor: Acceptor;
  counters(): ReturnType<Endpoint['counters']>;
  /** Multipath connections open now (parked ones included). */
  readonly connections: number;
  /** Of those, the ones parked: every subflow lost, waiting for the client to join again. */
  readonly parked: number;
}

/** An accepted multipath connection, for the API to run TLS (server side) over. */
function serverConnection(driver: MultipathDriver): OpenedConnection {
  const stream = new MultipathStream(driver);
  const info = new UserspaceInfo(driver);
  const keys = userspaceKeyBinding(driver);
  return userspaceConnection(stream, info, keys, (tlsSocket) => reportPaths(tlsSocket, driver, info));
}

const NO_KEYS: KeyBinding = {
  use: 'fingerprint',
  context: () => undefined,
  install: () => {},
  count: () => {},
};

/** A plain TLS client (no multipath offered): `.mptcp` says so. */
function plainConnection(): TransportConnection {
  return {
    transport: 'userspace',
    keys: NO_KEYS,
    attach: () => new FallbackInfo('the client did not offer multipath'),
  };
}

/** The userspace server transport: `listen` returns `server.mptcp`; every other socket is a plain TLS client to it. */
export interface UserspaceServerTransport extends ServerTransport<ServerMptcpInfo> {
  accepted(socket: net.Socket): TransportConnection;
}

/**
 * `announce: 'auto'` for one connection: once keys are confirmed, announce
 * the host's non-internal addresses of the family of the address the client
 * connected to (not that one), then follow them (announce the new ones,
 * REMOVE_ADDR the vanished ones) until the connection closes.
 */
function announceHostAddresses(driver: MultipathDriver, monitor: InterfaceMonitor): void {
  const conn = driver.conn;
  const local = driver.firstSocket()?.localAddress;
  if (!local || familyOf(local) === 0) return;
  const own = plainAddress(local);
  const start = () => {
    if (conn.state === 'closed') return;
    const ids = new Map<string, number>();
    const tracker = new AddressTracker(
      { family: familyOf(own) as 4 | 6, linkLocal: isLinkLocal(own), loopbackPeer: isLoopback(own), exclude: [own] },
      {
        added: (address) => {
          if (conn.state === 'closed') return;
          const id = conn.announce({ address });
          if (id !== undefined) ids.set(address, id);
          driver.pump();
        },
        removed: (address) => {
          const id = ids.get(address);
          ids.delete(address);
          if (id === undefined || conn.state === 'closed') return;
          conn.removeAddress(id);
          driver.pump();
        },
      },
    );
    tracker.update(monitor.snapshot());
    const stop = watchAddresses(monitor, tracker);
    driver.once('closed', stop);
  };
  if (conn.areKeysConfirmed) start();
  else driver.once('keys-confirmed', start);
}

/** Options of `userspaceServer` beyond the transport's: where the host's interfaces come from. */
export interface UserspaceServerExtras {
  /** The host's interfaces for `announce: 'auto'` (default: `os.networkInterfaces()` every second, shared process-wide). */
  interfaces?: InterfaceMonitor;
}

/** The userspace server transport with these options. */
export function userspaceServer(options: TransportServerOptions = {}, extras: UserspaceServerExtras = {}): UserspaceServerTransport {
  return {
    name: 'userspace',
    listen(server: net.Server, handlers: ServerHandlers): ServerMptcpInfo {
      const mp = options;
      const random = randomBytes;
      const endpoint = new Endpoint({
        random,
        acceptModes: mp.keyModes ?? ['external'],
        tokenAllocator:
          mp.workerId !== undefined
            ? new WorkerTokenAllocator(mp.workerId, mp.serverId, random)
            : mp.serverId !== undefined
              ? new ServerIdTokenAllocator(mp.serverId, random)
              : undefined,
        maxConnections: mp.maxConnections,
        maxPendingJoins: mp.maxPendingJoins,
        maxPendingJoinsPerSource: mp.maxPendingJoinsPerSource,
        server: {
          mss: TRANSPORT_MSS,
          announce: mp.announce === 'auto' ? [] : (mp.announce ?? []).map((address) => ({ address })),
          limits: { ...mp.limits, ...(mp.maxSubflows ? { maxSubflows: mp.maxSubflows } : {}) },
          ...(mp.resumeTimeoutMs !== undefined ? { timers: { resumeTimeoutMs: mp.resumeTimeoutMs } } : {}),
        },
      });
      const monitor = extras.interfaces ?? hostInterfaces();
      let live = 0;
      const acceptor = new Acceptor(
        endpoint,
        {
          plain: (socket) => handlers.plain(socket),
          connection: (driver) => {
            traceDriver(driver); // NODE_DEBUG=mptls
            live++;
            driver.once('closed', () => live--);
            if (mp.announce === 'auto') announceHostAddresses(driver, monitor);
            handlers.connection(serverConnection(driver));
          },
          refused: (reason, socket) => traceRefused(reason, socket), // NODE_DEBUG=mptls
        },
        { preambleTimeoutMs: mp.preambleTimeoutMs, driver: { probe: tcpProbe() } },
      );
      server.on('connection', (socket: net.Socket) => acceptor.handle(socket));
      return {
        endpoint,
        acceptor,
        counters: () => endpoint.counters(),
        get connections() {
          return live;
        },
        get parked() {
          return endpoint.parkedCount;
        },
      };
    },
    /** Every socket node:tls accepted itself is a plain TLS client as far as this transport goes. */
    accepted: () => plainConnection(),
  };
}
