/**
 * node:tls beside mptls, on the same case: a server and a connected client
 * of either kind, and an event recorder that notes what the application
 * sees ('end', 'close:false', 'error:ECONNRESET', …) and any event emitted
 * after 'close' (which node never does). test/api/parity.test.ts compares
 * the two recordings.
 */
import net from 'node:net';
import tls from 'node:tls';
import { createServer, connect, type MptlsSocket } from '../../src/api/index.js';
import { fixtures, listen, until } from './servers.js';

export type Impl = 'node' | 'mptls';
export const IMPLS: Impl[] = ['node', 'mptls'];

/** Events an application sees, in order; `late` holds events after 'close'. */
export interface Recording {
  events: string[];
  late: string[];
  closed: Promise<void>;
}

const WATCHED = new Set(['end', 'close', 'error', 'timeout', 'drain', 'finish', 'secureConnect', 'secure']);

/** Records the application-visible events of `socket` (never consumes data: the caller reads or not). */
export function record(socket: net.Socket): Recording {
  const events: string[] = [];
  const late: string[] = [];
  let isClosed = false;
  let done!: () => void;
  const closed = new Promise<void>((r) => (done = r));
  const emit = socket.emit;
  socket.emit = function (this: net.Socket, name: string | symbol, ...args: unknown[]): boolean {
    if (typeof name === 'string' && (WATCHED.has(name) || isClosed)) {
      const label = name === 'error' ? `error:${(args[0] as { code?: string }).code ?? (args[0] as Error).message}` : name === 'close' ? `close:${String(args[0] ?? false)}` : name;
      if (isClosed && !name.startsWith('_') && name !== 'data') late.push(label);
      else if (WATCHED.has(name) && name !== 'secure' && name !== 'drain' && name !== 'finish') events.push(label);
      if (name === 'close') {
        isClosed = true;
        done();
      }
    }
    return (emit as (this: net.Socket, name: string | symbol, ...a: unknown[]) => boolean).call(this, name, ...args);
  } as typeof socket.emit;
  // Like plain application code: an 'error' handler, so a recorded error is not a crash.
  socket.on('error', () => {});
  return { events, late, closed };
}

export interface Pair {
  impl: Impl;
  server: tls.Server;
  port: number;
  client: tls.TLSSocket;
  /** node: the TCP socket under the client (made for it, so a test can reset it). */
  raw?: net.Socket;
  accepted: tls.TLSSocket;
  close(): Promise<void>;
}

const TWO_PATHS = { localAddresses: ['127.0.0.1', '127.0.0.2'] };

/** A server of `impl` and one connected client of the same kind (mptls: two subflows up). */
export async function pair(impl: Impl, opts: { serverOptions?: tls.TlsOptions; client?: Partial<tls.ConnectionOptions>; onServer?: (s: tls.TLSSocket) => void } = {}): Promise<Pair> {
  const base = { key: fixtures.key, cert: fixtures.cert, ...opts.serverOptions };
  const server: tls.Server = impl === 'node' ? tls.createServer(base) : createServer(base);
  const got = new Promise<tls.TLSSocket>((r) =>
    server.once('secureConnection', (s: tls.TLSSocket) => {
      opts.onServer?.(s);
      r(s);
    }),
  );
  const port = await listen(server);
  const co = { host: '127.0.0.1', port, ca: fixtures.ca, ...opts.client };
  const raw = impl === 'node' ? net.connect({ host: co.host, port }) : undefined;
  const client: tls.TLSSocket = raw ? tls.connect({ ...co, socket: raw }) : connect({ ...co, mptcp: TWO_PATHS });
  await new Promise<void>((resolve, reject) => {
    client.once('secureConnect', () => resolve());
    client.once('error', reject);
  });
  const accepted = await got;
  if (impl === 'mptls') await until(() => (client as MptlsSocket).mptcp.subflows().filter((s) => s.state === 'established').length === 2, 5000, 'two subflows');
  return {
    impl,
    server,
    port,
    client,
    raw,
    accepted,
    close: async () => {
      client.destroy();
      accepted.destroy();
      (server as net.Server & { closeAllConnections?: () => void }).closeAllConnections?.();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Waits for a socket's 'close', and a little more, so late events would show. */
export async function settle(rec: Recording, ms = 5000): Promise<void> {
  await Promise.race([rec.closed, new Promise((r) => setTimeout(r, ms))]);
  await new Promise((r) => setTimeout(r, 100));
}
