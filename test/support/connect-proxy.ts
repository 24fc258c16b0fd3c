/**
 * A TEST-ONLY HTTP CONNECT proxy on an mptls server (src/api/server.ts), for
 * the tunnel tests while the real one (`mptls proxy`) is written: on each
 * secure socket it reads the CONNECT head (8 KiB at most, else 431), checks
 * the bearer token when one is set (407 with `Proxy-Authenticate: Bearer`),
 * refuses anything but loopback targets (403), lets the test answer a
 * status of its choice (`decide`, e.g. 403 or 504, possibly after a
 * delay), and otherwise connects to the target half-open: 200 then both
 * directions piped, 502 when the target refuses, 504 after 5 s. Failures
 * are a status line, headers and a short text body, then the end, as the
 * real proxy answers.
 */
import net from 'node:net';
import type { MptlsSocket, ServerOptions } from '../../src/api/index.js';
import { close, listen, mptlsServer, type Server } from './servers.js';
import { STATUS_TEXT } from '../../src/api/proxy/reply.js';

export interface ProxiedRequest {
  target: string;
  headers: Record<string, string>;
  status: number;
}

export interface ConnectProxyOptions {
  /** Require `Proxy-Authorization: Bearer TOKEN`. */
  token?: string;
  /** A status to answer instead of connecting (undefined: connect); may wait first. */
  decide?: (target: { host: string; port: number }, headers: Record<string, string>) => number | undefined | Promise<number | undefined>;
  server?: Partial<ServerOptions>;
}

export interface ConnectProxy {
  port: number;
  server: Server;
  requests: ProxiedRequest[];
  /** The proxy's secure sockets open now. */
  sockets: Set<MptlsSocket>;
  /** Target connections open now. */
  targets: Set<net.Socket>;
  close(): Promise<void>;
}

/** The real proxy's status texts (src/api/proxy/reply.ts), so the client meets the same words. */
const REASONS: Readonly<Record<number, string>> = STATUS_TEXT;

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function parseAuthority(a: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(a);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1] ?? m[2], port };
}

export async function startConnectProxy(options: ConnectProxyOptions = {}): Promise<ConnectProxy> {
  const requests: ProxiedRequest[] = [];
  const sockets = new Set<MptlsSocket>();
  const targets = new Set<net.Socket>();

  const refuse = (s: MptlsSocket, status: number, extra = '') => {
    const body = `${status} ${REASONS[status] ?? 'Error'}\n`;
    s.end(`HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\nContent-Type: text/plain\r\nConnection: close\r\n${extra}Content-Length: ${body.length}\r\n\r\n${body}`);
    setTimeout(() => s.destroy(), 1000).unref();
  };

  const onSocket = (s: MptlsSocket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) {
        if (buf.length > 8192) {
          s.removeListener('data', onData);
          refuse(s, 431);
        }
        return;
      }
      s.removeListener('data', onData);
      s.pause();
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
      const leftover = buf.subarray(end + 4);
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      void handle(s, lines[0], headers, leftover);
    };
    s.on('data', onData);
  };

  const handle = async (s: MptlsSocket, line: string, headers: Record<string, string>, leftover: Buffer) => {
    const m = /^(\S+) (\S+) HTTP\/1\.1$/.exec(line);
    const record = (status: number) => requests.push({ target: m?.[2] ?? line, headers, status });
    if (!m) return refuse(s, 400), record(400);
    if (m[1] !== 'CONNECT') return refuse(s, 405), record(405);
    const target = parseAuthority(m[2]);
    if (!target || headers.host !== m[2]) return refuse(s, 400), record(400);
    if (options.token !== undefined && headers['proxy-authorization'] !== `Bearer ${options.token}`) {
      return refuse(s, 407, 'Proxy-Authenticate: Bearer realm="test"\r\n'), record(407);
    }
    if (!isLoopback(target.host)) return refuse(s, 403), record(403); // tests never leave loopback
    const decided = await options.decide?.(target, headers);
    if (decided !== undefined) return refuse(s, decided), record(decided);
    if (s.destroyed) return;
    const t = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    targets.add(t);
    t.once('close', () => targets.delete(t));
    const timer = setTimeout(() => {
      t.destroy();
      refuse(s, 504);
      record(504);
    }, 5000);
    t.once('error', () => {
      if (t.connecting || !t.remoteAddress) {
        clearTimeout(timer);
        refuse(s, 502);
        record(502);
      }
    });
    t.once('connect', () => {
      clearTimeout(timer);
      record(200);
      t.on('error', () => s.destroy());
      s.on('error', () => t.destroy());
      const abortIfUnclean = (self: net.Socket, other: net.Socket) => () => {
        if (!(self.readableEnded && self.writableFinished)) other.destroy();
      };
      t.once('close', abortIfUnclean(t, s));
      s.once('close', abortIfUnclean(s, t));
      s.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (leftover.length) t.write(leftover);
      s.pipe(t);
      t.pipe(s);
      s.resume();
    });
  };

  const server = mptlsServer({ allowHalfOpen: true, ...options.server }, onSocket);
  const port = await listen(server);
  return {
    port,
    server,
    requests,
    sockets,
    targets,
    close: async () => {
      for (const s of sockets) s.destroy();
      for (const t of targets) t.destroy();
      await close(server, 500);
    },
  };
}
