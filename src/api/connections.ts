/**
 * Connections counted as node:net counts them, one per connection, not one
 * per subflow: `server.getConnections()`, `'connection'` (once per
 * connection: the raw socket of a plain client, the multipath stream of a
 * multipath one), `maxConnections` (a two-path client is one connection, its
 * joins are never dropped) with node's `'drop'` event, and `server.close()`
 * waiting for multipath connections as it waits for sockets.
 *
 * node:net counts every accepted TCP connection in `server._connections`
 * and checks `maxConnections` before anyone knows what the connection is.
 * Here node's count keeps plain sockets and the ones not yet classified; a
 * TCP connection that turns out to be a subflow leaves it, and each
 * multipath connection enters it for its lifetime. The limit is checked once
 * the first bytes tell a new connection (plain TLS, MP_CAPABLE) from a join.
 */
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Acceptor } from '../transport/userspace/acceptor.js';

interface ServerInternals {
  _connections: number;
  _handle: { onconnection?: (...args: unknown[]) => unknown } | null;
  _emitCloseIfDrained?: () => void;
}

interface SocketInternals {
  _server: net.Server | null;
}

const wrapped = new WeakSet<object>();

export interface ConnectionCounting {
  /** A plain client, classified: node counts it already; the application's 'connection' listeners see it now. */
  plain(socket: net.Socket): void;
  /** A new multipath connection: counted until its stream closes; the application's 'connection' listeners see the stream. */
  opened(stream: Duplex): void;
}

/**
 * Takes over `server`'s 'connection' events (node's raw sockets go to
 * `accept`, the acceptor's entry) and its connection count.
 */
export function countConnections(server: net.Server, acceptor: Acceptor, accept: (socket: net.Socket) => void): ConnectionCounting {
  const internals = server as unknown as ServerInternals;
  const emit = server.emit;
  let ours = false;
  server.emit = function (this: net.Server, name: string | symbol, ...args: unknown[]): boolean {
    if (name === 'connection' && !ours) {
      accept(args[0] as net.Socket);
      return true;
    }
    return (emit as (this: net.Server, name: string | symbol, ...a: unknown[]) => boolean).call(this, name, ...args);
  } as typeof server.emit;
  const emitConnection = (socket: Duplex) => {
    ours = true;
    try {
      (emit as (this: net.Server, name: string, ...a: unknown[]) => boolean).call(server, 'connection', socket);
    } finally {
      ours = false;
    }
  };

  // maxConnections is the application's: node's own check (at accept, per
  // TCP connection) is switched off for the moment it runs, and the limit
  // applied per connection by `admit` below.
  let max = server.maxConnections as number | undefined;
  let accepting = false;
  Object.defineProperty(server, 'maxConnections', {
    configurable: true,
    enumerable: true,
    get: () => (accepting ? undefined : max),
    set: (v: number | undefined) => {
      max = v;
    },
  });
  server.prependListener('listening', () => {
    const handle = internals._handle;
    if (!handle || typeof handle.onconnection !== 'function' || wrapped.has(handle)) return;
    wrapped.add(handle);
    const onconnection = handle.onconnection;
    handle.onconnection = function (this: unknown, ...args: unknown[]) {
      accepting = true;
      try {
        return onconnection.apply(this, args);
      } finally {
        accepting = false;
      }
    };
  });

  acceptor.hooks = {
    admit: (socket) => {
      if (!max) return true;
      // Counted by node: this socket, the ones still unclassified, and the connections.
      const others = internals._connections - acceptor.pendingSubflows - 1;
      if (others < max) return true;
      server.emit('drop', {
        localAddress: socket.localAddress,
        localPort: socket.localPort,
        localFamily: socket.localFamily,
        remoteAddress: socket.remoteAddress,
        remotePort: socket.remotePort,
        remoteFamily: socket.remoteFamily,
      });
      return false;
    },
    subflow: (socket) => {
      const s = socket as unknown as SocketInternals;
      if (s._server !== server) return;
      s._server = null;
      internals._connections--;
      // A join may have been the last thing a closing server waited for; a
      // new connection is counted again (`opened`) before this runs.
      process.nextTick(() => internals._emitCloseIfDrained?.call(server));
    },
  };

  return {
    plain: (socket) => emitConnection(socket),
    opened: (stream) => {
      internals._connections++;
      stream.once('close', () => {
        internals._connections--;
        internals._emitCloseIfDrained?.call(server);
      });
      emitConnection(stream);
    },
  };
}
