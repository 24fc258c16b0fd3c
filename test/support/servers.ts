/**
 * Servers and clients over loopback for the transport, security and API
 * tests: listen on a free port, close with a grace period, mptls server and
 * client with the fixtures, bulk transfers with a hash, polling.
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import type tls from 'node:tls';
import { createServer, connect, type ConnectOptions, type MptlsSocket, type ServerOptions } from '../../src/api/index.js';
import { fixtures } from './fixtures.mjs';

export { fixtures };

export type Server = ReturnType<typeof createServer>;

/** Tracks the raw connections of a server so `close` can end them. */
const tracked = new WeakMap<net.Server, Set<net.Socket>>();

export async function listen(server: net.Server, host = '127.0.0.1'): Promise<number> {
  const set = new Set<net.Socket>();
  tracked.set(server, set);
  server.on('connection', (s: net.Socket) => {
    set.add(s);
    s.on('close', () => set.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return (server.address() as net.AddressInfo).port;
}

/** A TCP port on 127.0.0.1 that was free a moment ago (for a program that must be told its port). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, host, r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Closes a server; connections still open after `graceMs` are destroyed (a test failed half-way). */
export function close(server: net.Server, graceMs = 2000): Promise<void> {
  const sockets = tracked.get(server) ?? new Set<net.Socket>();
  return new Promise((r) => {
    const t = setTimeout(() => {
      for (const s of sockets) s.destroy();
      (server as net.Server & { closeAllConnections?: () => void }).closeAllConnections?.();
    }, graceMs);
    server.close(() => {
      clearTimeout(t);
      r();
    });
  });
}

export interface SendOptions {
  /** Bytes per write (default 1 MiB). */
  chunk?: number;
  /** Leave the socket open once everything is written (default: end() it). */
  keepOpen?: boolean;
  /** Called with the running total after each write. */
  onSent?: (sent: number) => void;
}

/** `size` random bytes, written with backpressure; resolves with their SHA-256 once written (then `end()` unless `keepOpen`). */
export function sendBulk(socket: net.Socket, size: number, options: number | SendOptions = {}): Promise<string> {
  const { chunk = 1 << 20, keepOpen = false, onSent } = typeof options === 'number' ? { chunk: options } : options;
  const block = randomBytes(chunk);
  const h = createHash('sha256');
  let sent = 0;
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    const pump = () => {
      while (sent < size) {
        const n = Math.min(chunk, size - sent);
        const b = n === chunk ? block : block.subarray(0, n);
        h.update(b);
        sent += n;
        onSent?.(sent);
        if (!socket.write(b)) {
          socket.once('drain', pump);
          return;
        }
      }
      if (!keepOpen) socket.end();
      resolve(h.digest('hex'));
    };
    pump();
  });
}

/** Reads until the peer's end; resolves with the byte count and SHA-256. */
export function receiveAll(socket: net.Socket): Promise<{ bytes: number; sha256: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  return new Promise((resolve, reject) => {
    socket.on('data', (d: Buffer) => {
      h.update(d);
      bytes += d.length;
    });
    socket.once('end', () => resolve({ bytes, sha256: h.digest('hex') }));
    socket.once('error', reject);
    socket.resume();
  });
}

export function mptlsServer(opts: Partial<ServerOptions> = {}, onSocket?: (s: MptlsSocket) => void): Server {
  return createServer({ key: fixtures.key, cert: fixtures.cert, ...opts }, onSocket);
}

export function mptlsConnect(port: number, opts: Partial<ConnectOptions> = {}): Promise<MptlsSocket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ca: fixtures.ca, ...opts });
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Waits until `cond()` holds (polling), or fails after `ms`. */
export async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
