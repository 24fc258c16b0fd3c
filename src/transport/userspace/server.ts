/**
 * The userspace server transport: a server's own `Endpoint` (token allocator,
 * server id, limits) and the `Acceptor` that takes over its 'connection'
 * events. Multipath connections become `OpenedConnection`s over a
 * `MultipathStream`; every other socket goes to `handlers.plain` (node:tls).
 */
import type net from 'node:net';
import { Endpoint } from '../../core/endpoint.js';
import { ServerIdTokenAllocator } from '../../core/token.js';
import { randomBytes } from '../../crypto/random.js';
import type { KeyBinding, OpenedConnection, ServerHandlers, ServerTransport, TransportConnection, TransportServerOptions } from '../types.js';
import { Acceptor } from './acceptor.js';
import { reportSubflows, tcpProbe } from './client.js';
import type { MultipathDriver } from './driver.js';
import { exposeAddresses, FallbackInfo, UserspaceInfo, userspaceKeyBinding } from './info.js';
import { MultipathStream } from './stream.js';
import { TRANSPORT_MSS } from '../../core/config.js';

/** What `server.mptcp` reports. */
export interface ServerMptcpInfo {
  readonly endpoint: Endpoint;
  readonly acceptor: Acceptor;
  counters(): ReturnType<Endpoint['counters']>;
  readonly connections: number;
}

/** An accepted multipath connection, for the API to run TLS (server side) over. */
function serverConnection(driver: MultipathDriver): OpenedConnection {
  const stream = new MultipathStream(driver);
  const info = new UserspaceInfo(driver);
  const keys = userspaceKeyBinding(driver);
  return {
    transport: 'userspace',
    socket: stream,
    keys,
    wrap: (allowHalfOpen, make) => stream.wrapWithHalfOpen(allowHalfOpen, make),
    attach: (tlsSocket) => {
      exposeAddresses(tlsSocket, () => stream.addressSocket());
      driver.on('subflow', reportSubflows(tlsSocket, info));
      return info;
    },
  };
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

/** The userspace server transport with these options. */
export function userspaceServer(options: TransportServerOptions = {}): UserspaceServerTransport {
  return {
    name: 'userspace',
    listen(server: net.Server, handlers: ServerHandlers): ServerMptcpInfo {
      const mp = options;
      const random = randomBytes;
      const endpoint = new Endpoint({
        random,
        acceptModes: mp.keyModes ?? ['external'],
        tokenAllocator: mp.serverId !== undefined ? new ServerIdTokenAllocator(mp.serverId, random) : undefined,
        maxConnections: mp.maxConnections,
        maxPendingJoins: mp.maxPendingJoins,
        maxPendingJoinsPerSource: mp.maxPendingJoinsPerSource,
        server: {
          mss: TRANSPORT_MSS,
          announce: (mp.announce ?? []).map((address) => ({ address })),
          limits: { ...mp.limits, ...(mp.maxSubflows ? { maxSubflows: mp.maxSubflows } : {}) },
        },
      });
      let live = 0;
      const acceptor = new Acceptor(
        endpoint,
        {
          plain: (socket) => handlers.plain(socket),
          connection: (driver) => {
            live++;
            driver.once('closed', () => live--);
            handlers.connection(serverConnection(driver));
          },
          refused: () => {},
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
      };
    },
    /** Every socket node:tls accepted itself is a plain TLS client as far as this transport goes. */
    accepted: () => plainConnection(),
  };
}
