/**
 * The `mptls` command line: `serve` (HTTPS over multipath, static files, or
 * with --status a status page), `get` (a small curl), `info` (what this host supports),
 * `haproxy-config` (an haproxy.cfg routing joins by the token's server id).
 *
 * `main(argv, io?)` returns the exit code instead of exiting, so tests run it
 * in-process; `bin/mptls.js` is the shim that calls it. Exit codes: 0 success,
 * 1 error (connection, TLS, I/O), 2 usage, 22 HTTP status >= 400 (as curl --fail).
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import fs from 'node:fs';
import type http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import * as https from './https.js';
import { haproxyConfig, HaproxyConfigError } from './haproxy.js';
import type { MptlsSocket } from './client.js';
import type { MptcpSocketInfo, MptcpSubflow } from './info.js';
import { ffiStatus } from '../transport/kernel/ffi.js';
import { kernelSupport, mptcpSysctls } from '../transport/kernel/socket.js';

/** Where `main` writes and how `serve` is stopped; everything defaults to the process's own. */
export interface CliIo {
  stdout?: CliWritable;
  stderr?: CliWritable;
  /** `serve` stops when this aborts (default: SIGINT or SIGTERM). */
  signal?: AbortSignal;
}

export type CliWritable = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_USAGE = 2;
export const EXIT_HTTP = 22;

class UsageError extends Error {}

interface Out {
  stdout: CliWritable;
  stderr: CliWritable;
  out(s: string): void;
  err(s: string): void;
}

const USAGE = `Usage: mptls <command> [options]

Commands:
  serve   HTTPS over TLS-bound multipath TCP: a directory, or (--status) a status page
  get     fetch an https:// URL over multipath (a small curl)
  info    what this host supports (kernel MPTCP, sysctls, koffi, transports)
  haproxy-config
          an haproxy.cfg (mode tcp) that routes joins by their token's server id
  help    help on a command

Options:
  -h, --help     this help (or "mptls <command> --help")
  -V, --version  print the version

Exit codes: 0 ok, 1 error, 2 usage, 22 HTTP status >= 400.`;

const HELP: Record<string, string> = {
  serve: `Usage: mptls serve --cert FILE --key FILE [--port N] [--host H] [--announce ADDR]... [--dir DIR | --status]

Serves HTTPS on one port to multipath clients (mptls, userspace transport) and
plain TLS clients alike.

  --cert FILE       server certificate chain (PEM)
  --key FILE        private key (PEM)
  --port N          port (default 8443; 0 = any free port, printed)
  --host H          address to listen on (default 127.0.0.1)
  --announce ADDR   extra address to announce to clients (ADD_ADDR, sent only
                    after both ends confirmed the TLS-derived keys); repeatable
  --dir DIR         serve the files under DIR (GET/HEAD; no escape out of DIR)
  --status          serve a status page: "/" in HTML, "/status.json" as JSON
                    (the requesting connection's mode, tokens, key
                    fingerprints and subflows, and the server-wide counters
                    and open-connection count, shown to ANY client: use it on
                    a test server, not a public one); not with --dir
  -q, --quiet       no access log on stderr
  -h, --help        this help

Without --dir or --status, "/" is a minimal page that says nothing about any
connection or the server's counters, and every other path is 404.
Prints "listening on https://HOST:PORT/" on stdout; stops on SIGINT/SIGTERM.`,
  get: `Usage: mptls get URL [--local ADDR]... [-o FILE] [-k] [--cacert FILE] [--pin PIN] [--no-fallback]

Fetches an https:// URL over multipath TCP; the body goes to stdout or FILE.

  --local ADDR      local address for a subflow: the first one for the initial
                    subflow, each further one opens a join; repeatable
  -o, --output FILE write the body to FILE ("-" = stdout); removed on failure
  -k, --insecure    do not verify the server certificate
  --cacert FILE     trust the CA certificate(s) in FILE (PEM)
  --pin PIN         also require the server key's SPKI SHA-256 (sha256//BASE64)
  --no-fallback     fail instead of falling back to plain TLS when the server
                    does not speak multipath
  -s, --silent      no progress meter
  -v, --verbose     print the connection's multipath facts on stderr at the end
  -h, --help        this help

Redirects are not followed. A progress meter goes to stderr when stderr is a
terminal. Exit status: 0 ok,
1 connection/TLS/I/O error, 2 usage, 22 HTTP status >= 400.`,
  'haproxy-config': `Usage: mptls haproxy-config --listen HOST:PORT --backend ID=HOST:PORT... [--no-token-routing]

Prints a complete haproxy.cfg (mode tcp) for mptls servers behind one HAProxy
frontend. Each server must run with createServer({ mptcp: { serverId: ID } }),
so the top byte of every token it issues is its ID. The frontend reads the
first bytes of each TCP connection: MP_JOIN subflows go to the backend whose ID
is their token's top byte (req.payload(28,1)); new multipath connections and
plain TLS clients are balanced round-robin. No stick tables: the balancer keeps
no per-connection state.

  --listen HOST:PORT      the frontend's address ([IPv6]:PORT for IPv6)
  --backend ID=HOST:PORT  an mptls server and its serverId (0..255, unique);
                          repeatable
  --no-token-routing      the naive config: every subflow round-robin (joins
                          then mostly reach the wrong server and are refused)
  --inspect-delay MS      how long to wait for the first bytes (default 5000)
  --maxconn N             HAProxy's global maxconn (default: from the FD limit)
  --no-log                no tcplog lines on HAProxy's stdout
  -o, --output FILE       write the config to FILE instead of stdout
  -h, --help              this help

Check it with "haproxy -c -f FILE"; run it with "haproxy -f FILE".`,
  info: `Usage: mptls info [--json]

Prints what this host supports: Linux kernel MPTCP (net.mptcp.enabled and the
other net.mptcp.* sysctls, an IPPROTO_MPTCP socket probe), "ip mptcp limits"
and "ip mptcp endpoint", whether the optional koffi FFI module loads, the Node
version, and the userspace transport (always available).

  --json       machine-readable output
  -h, --help   this help`,
};

function makeOut(io: CliIo): Out {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  return {
    stdout,
    stderr,
    out: (s) => void stdout.write(s.endsWith('\n') ? s : s + '\n'),
    err: (s) => void stderr.write(s.endsWith('\n') ? s : s + '\n'),
  };
}

function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: O, positionals = false) {
  try {
    return parseArgs({ args, options, allowPositionals: positionals, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** The version in package.json (two levels up from src/api and from dist/api). */
export function version(): string {
  try {
    const pkg = fileURLToPath(new URL('../../package.json', import.meta.url));
    return (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Runs the CLI; resolves to the exit code. */
export async function main(argv: string[], io: CliIo = {}): Promise<number> {
  const o = makeOut(io);
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case undefined:
        o.err(USAGE);
        return EXIT_USAGE;
      case '-h':
      case '--help':
        o.out(USAGE);
        return EXIT_OK;
      case '-V':
      case '--version':
        o.out(version());
        return EXIT_OK;
      case 'help': {
        const topic = rest[0];
        if (topic === undefined) o.out(USAGE);
        else if (HELP[topic]) o.out(HELP[topic]);
        else throw new UsageError(`no such command: ${topic}`);
        return EXIT_OK;
      }
      case 'serve':
      case 'get':
      case 'info':
      case 'haproxy-config':
        if (rest.includes('-h') || rest.includes('--help')) {
          o.out(HELP[cmd]);
          return EXIT_OK;
        }
        if (cmd === 'serve') return await serveCommand(rest, o, io.signal);
        if (cmd === 'get') return await getCommand(rest, o);
        if (cmd === 'haproxy-config') return await haproxyConfigCommand(rest, o);
        return await infoCommand(rest, o);
      default:
        o.err(`mptls: unknown command "${cmd}"\n`);
        o.err(USAGE);
        return EXIT_USAGE;
    }
  } catch (e) {
    if (e instanceof UsageError) {
      o.err(`mptls ${cmd ?? ''}: ${e.message}`.replace(/ +:/, ':'));
      o.err(cmd && HELP[cmd] ? HELP[cmd] : USAGE);
      return EXIT_USAGE;
    }
    o.err(`mptls ${cmd}: ${describeError(e)}`);
    return EXIT_ERROR;
  }
}

// ---------------------------------------------------------------- helpers

function describeError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const code = (e as { code?: string }).code;
  let msg = e.message || e.name;
  if (code && !msg.includes(code)) msg += ` (${code})`;
  const cause = (e as { cause?: unknown }).cause;
  if (cause instanceof Error && cause.message && !msg.includes(cause.message)) msg += `: ${cause.message}`;
  return msg;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

function formatRate(bytes: number, ms: number): string {
  if (ms <= 0) return '-';
  const mbit = (bytes * 8) / (ms / 1000) / 1e6;
  return `${mbit.toFixed(mbit < 10 ? 1 : 0)} Mbit/s`;
}

const hex32 = (n: number): string => (n >>> 0).toString(16).padStart(8, '0');

function hostPort(address: string | undefined, port: number | undefined): string {
  if (!address) return '?';
  const a = net.isIPv6(address) ? `[${address}]` : address;
  return port === undefined ? a : `${a}:${port}`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);
}

function readFileOrUsage(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new UsageError(`cannot read ${what} ${file}: ${describeError(e)}`);
  }
}

function nonZero(c: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(c).filter(([, v]) => v !== 0));
}

// ------------------------------------------------------------------ serve

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.csv': 'text/csv; charset=utf-8',
  '.xml': 'application/xml',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.wasm': 'application/wasm',
  '.pdf': 'application/pdf',
  '.zip': 'application/zip',
  '.gz': 'application/gzip',
  '.tar': 'application/x-tar',
  '.mp4': 'video/mp4',
};

type Resolved =
  | { kind: 'file'; file: string; stat: fs.Stats }
  | { kind: 'dir'; dir: string; urlPath: string }
  | { kind: 'redirect'; location: string }
  | { kind: 'error'; status: number; message: string };

/**
 * Maps a request target to a file under `root` (a realpath). Refuses `..`
 * segments, encoded slashes and NUL bytes, and anything (symlinks included)
 * that resolves outside the root.
 */
export async function resolveUnder(root: string, target: string): Promise<Resolved> {
  const rawPath = target.split(/[?#]/, 1)[0] ?? '';
  if (!rawPath.startsWith('/')) return { kind: 'error', status: 400, message: 'Bad Request' };
  const segments: string[] = [];
  for (const raw of rawPath.split('/')) {
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      return { kind: 'error', status: 400, message: 'Bad Request' };
    }
    if (seg.includes('\0')) return { kind: 'error', status: 400, message: 'Bad Request' };
    if (seg === '..' || seg.includes('/') || seg.includes('\\')) return { kind: 'error', status: 403, message: 'Forbidden' };
    if (seg === '' || seg === '.') continue;
    segments.push(seg);
  }
  const candidate = path.join(root, ...segments);
  if (candidate !== root && !candidate.startsWith(root + path.sep)) return { kind: 'error', status: 403, message: 'Forbidden' };
  let real: string;
  try {
    real = await fs.promises.realpath(candidate);
  } catch {
    return { kind: 'error', status: 404, message: 'Not Found' };
  }
  if (real !== root && !real.startsWith(root + path.sep)) return { kind: 'error', status: 403, message: 'Forbidden' };
  let stat: fs.Stats;
  try {
    stat = await fs.promises.stat(real);
  } catch {
    return { kind: 'error', status: 404, message: 'Not Found' };
  }
  const urlPath = '/' + segments.map(encodeURIComponent).join('/');
  if (stat.isDirectory()) {
    if (!rawPath.endsWith('/')) return { kind: 'redirect', location: urlPath === '/' ? '/' : urlPath + '/' };
    const index = path.join(real, 'index.html');
    try {
      const st = await fs.promises.stat(index);
      if (st.isFile()) return { kind: 'file', file: index, stat: st };
    } catch {
      /* no index: a listing */
    }
    return { kind: 'dir', dir: real, urlPath: urlPath === '/' ? '/' : urlPath + '/' };
  }
  if (!stat.isFile()) return { kind: 'error', status: 403, message: 'Forbidden' };
  return { kind: 'file', file: real, stat };
}

/** Sets the headers with setHeader (so the access log can read them back), then writes the head. */
function writeHead(res: http.ServerResponse, status: number, headers: Record<string, string | number>): void {
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.writeHead(status);
}

function sendText(res: http.ServerResponse, status: number, text: string, head = false, extra: Record<string, string> = {}): void {
  const body = Buffer.from(text + '\n');
  writeHead(res, status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length, ...extra });
  res.end(head ? undefined : body);
}

function sendBody(res: http.ServerResponse, status: number, type: string, text: string, head: boolean): void {
  const body = Buffer.from(text);
  writeHead(res, status, { 'content-type': type, 'content-length': body.length, 'cache-control': 'no-store' });
  res.end(head ? undefined : body);
}

async function serveFile(req: http.IncomingMessage, res: http.ServerResponse, root: string): Promise<void> {
  const head = req.method === 'HEAD';
  const r = await resolveUnder(root, req.url ?? '/');
  switch (r.kind) {
    case 'error':
      sendText(res, r.status, r.message, head);
      return;
    case 'redirect':
      sendText(res, 301, `Moved to ${r.location}`, head, { location: r.location });
      return;
    case 'dir': {
      const entries = await fs.promises.readdir(r.dir, { withFileTypes: true });
      entries.sort((a, b) => a.name.localeCompare(b.name));
      const items = entries.map((e) => {
        const name = e.name + (e.isDirectory() ? '/' : '');
        return `<li><a href="${escapeHtml(encodeURIComponent(e.name) + (e.isDirectory() ? '/' : ''))}">${escapeHtml(name)}</a></li>`;
      });
      const title = `Index of ${escapeHtml(decodeURIComponent(r.urlPath))}`;
      const up = r.urlPath === '/' ? '' : '<li><a href="../">../</a></li>';
      sendBody(res, 200, 'text/html; charset=utf-8', `<!doctype html><meta charset="utf-8"><title>${title}</title><h1>${title}</h1><ul>${up}${items.join('')}</ul>\n`, head);
      return;
    }
    case 'file': {
      const type = CONTENT_TYPES[path.extname(r.file).toLowerCase()] ?? 'application/octet-stream';
      const headers = {
        'content-type': type,
        'content-length': r.stat.size,
        'last-modified': r.stat.mtime.toUTCString(),
        'x-content-type-options': 'nosniff',
      };
      if (head) {
        writeHead(res, 200, headers);
        res.end();
        return;
      }
      const stream = fs.createReadStream(r.file);
      await new Promise<void>((resolve) => {
        stream.once('open', () => {
          writeHead(res, 200, headers);
          stream.pipe(res);
        });
        stream.once('error', (e) => {
          if (!res.headersSent) sendText(res, (e as NodeJS.ErrnoException).code === 'EACCES' ? 403 : 404, 'Cannot read the file');
          else res.destroy(e);
          resolve();
        });
        stream.once('end', resolve);
        res.once('close', () => {
          stream.destroy();
          resolve();
        });
      });
      return;
    }
  }
}

interface ConnectionFacts {
  mode: string;
  fallbackReason?: string;
  tokens?: { local: string; remote: string };
  keyFingerprints?: { keyA: string; keyB: string };
  keysConfirmed: boolean;
  tls: { protocol: string | null; cipher: string | undefined };
  subflows: ReturnType<MptcpSocketInfo['subflows']>;
}

function connectionFacts(socket: MptlsSocket): ConnectionFacts {
  const m = socket.mptcp as MptcpSocketInfo | undefined;
  const tokens = m?.tokens;
  return {
    mode: m?.mode ?? 'unknown',
    fallbackReason: m?.fallbackReason,
    // After a fallback the core still holds the local token it drew: not a fact about this connection.
    tokens: tokens && m?.mode !== 'fallback' ? { local: hex32(tokens.local), remote: hex32(tokens.remote) } : undefined,
    keyFingerprints: m?.keyFingerprints,
    keysConfirmed: m?.keysConfirmed ?? false,
    tls: { protocol: socket.getProtocol?.() ?? null, cipher: socket.getCipher?.()?.name },
    subflows: m?.subflows() ?? [],
  };
}

function statusHtml(facts: ConnectionFacts, counters: Record<string, number>, live: number): string {
  const row = (k: string, v: string) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`;
  const sub = facts.subflows
    .map(
      (s) =>
        `<tr><td>${s.id}</td><td>${escapeHtml(hostPort(s.remoteAddress, s.remotePort))}</td><td>${escapeHtml(hostPort(s.localAddress, s.localPort))}</td>` +
        `<td>${escapeHtml(s.state)}${s.backup ? ' (backup)' : ''}</td><td>${s.bytesReceived}</td><td>${s.bytesSent}</td><td>${s.rttMs === undefined ? '-' : s.rttMs.toFixed(1)}</td></tr>`,
    )
    .join('');
  const ctr = Object.entries(counters)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => row(k, String(v)))
    .join('');
  return `<!doctype html>
<meta charset="utf-8"><title>mptls status</title>
<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}</style>
<h1>mptls</h1>
<h2>Your connection</h2>
<table>
${row('mode', facts.mode + (facts.fallbackReason ? ` (${facts.fallbackReason})` : ''))}
${row('TLS', `${facts.tls.protocol ?? '?'} ${facts.tls.cipher ?? ''}`)}
${facts.tokens ? row('tokens (server / client)', `${facts.tokens.local} / ${facts.tokens.remote}`) : ''}
${facts.keyFingerprints ? row('key fingerprints (A / B)', `${facts.keyFingerprints.keyA} / ${facts.keyFingerprints.keyB}`) : ''}
${row('keys confirmed', facts.keysConfirmed ? 'yes' : 'no')}
</table>
<h2>Its subflows</h2>
${facts.subflows.length ? `<table><tr><th>id</th><th>client</th><th>server</th><th>state</th><th>bytes in</th><th>bytes out</th><th>RTT ms</th></tr>${sub}</table>` : '<p>none (not multipath)</p>'}
<p>Joins are opened once both ends confirmed the keys, so the first request of a connection often sees one subflow: reload.</p>
<h2>Server</h2>
<table>${row('multipath connections open', String(live))}${ctr}</table>
<p><a href="/status.json">status.json</a></p>
`;
}

/** "/" of `mptls serve` without --dir or --status: the same bytes for every client. */
const MINIMAL_PAGE = `<!doctype html>
<meta charset="utf-8"><title>mptls</title>
<h1>mptls</h1>
<p>HTTPS over TLS-bound multipath TCP, and plain TLS, on this port.</p>
`;

async function serveCommand(args: string[], o: Out, signal: AbortSignal | undefined): Promise<number> {
  const { values } = parse(args, {
    cert: { type: 'string' },
    key: { type: 'string' },
    port: { type: 'string' },
    host: { type: 'string' },
    announce: { type: 'string', multiple: true },
    dir: { type: 'string' },
    status: { type: 'boolean' },
    quiet: { type: 'boolean', short: 'q' },
  });
  if (!values.cert || !values.key) throw new UsageError('--cert and --key are required');
  if (values.status && values.dir !== undefined) throw new UsageError('--status and --dir exclude each other');
  const statusPage = values.status ?? false;
  const port = values.port === undefined ? 8443 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`bad --port ${values.port}`);
  const host = values.host ?? '127.0.0.1';
  const announce = values.announce ?? [];
  for (const a of announce) if (!net.isIP(a)) throw new UsageError(`--announce needs an IP address, got ${JSON.stringify(a)}`);
  const cert = readFileOrUsage(values.cert, 'certificate');
  const key = readFileOrUsage(values.key, 'key');
  let root: string | undefined;
  if (values.dir !== undefined) {
    try {
      root = await fs.promises.realpath(values.dir);
      if (!(await fs.promises.stat(root)).isDirectory()) throw new Error('not a directory');
    } catch (e) {
      throw new UsageError(`bad --dir ${values.dir}: ${describeError(e)}`);
    }
  }
  const quiet = values.quiet ?? false;

  const server = https.createServer({ cert, key, mptcp: { announce } }, (req, res) => {
    const socket = req.socket as MptlsSocket;
    const started = performance.now();
    if (!quiet) {
      res.once('finish', () => {
        const m = socket.mptcp as MptcpSocketInfo | undefined;
        const subflows = m?.subflows() ?? [];
        const n = subflows.length;
        // A TLSSocket over a multipath stream has no remoteAddress of its own: use the initial subflow's.
        const first = subflows.find((s) => s.id === 0) ?? subflows[0];
        const peer = socket.remoteAddress !== undefined ? hostPort(socket.remoteAddress, socket.remotePort) : hostPort(first?.remoteAddress, first?.remotePort);
        o.err(
          `${peer} "${req.method} ${req.url}" ${res.statusCode} ` +
            `${res.getHeader('content-length') ?? '-'} ${m?.mode ?? '?'}${n ? ` ${n} subflow${n > 1 ? 's' : ''}` : ''} ${(performance.now() - started).toFixed(0)} ms`,
        );
      });
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendText(res, 405, 'Method Not Allowed', false, { allow: 'GET, HEAD' });
      return;
    }
    const head = req.method === 'HEAD';
    if (root !== undefined) {
      serveFile(req, res, root).catch((e: unknown) => {
        if (!res.headersSent) sendText(res, 500, 'Internal Server Error', head);
        else res.destroy(e as Error);
      });
      return;
    }
    const p = (req.url ?? '/').split(/[?#]/, 1)[0];
    if (!statusPage) {
      // No --status: nothing about this connection, the others or the server's counters.
      if (p === '/') sendBody(res, 200, 'text/html; charset=utf-8', MINIMAL_PAGE, head);
      else sendText(res, 404, 'Not Found', head);
      return;
    }
    if (p === '/' || p === '/status.json') {
      const facts = connectionFacts(socket);
      const counters = nonZero(server.mptcp.counters());
      if (p === '/') sendBody(res, 200, 'text/html; charset=utf-8', statusHtml(facts, counters, server.mptcp.connections), head);
      else sendBody(res, 200, 'application/json', JSON.stringify({ connection: facts, server: { connections: server.mptcp.connections, counters } }, null, 2) + '\n', head);
      return;
    }
    sendText(res, 404, 'Not Found', head);
  });
  server.on('tlsClientError', (err: Error, s: net.Socket) => {
    if (!quiet) o.err(`${hostPort(s.remoteAddress, s.remotePort)} TLS error: ${describeError(err)}`);
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
  } catch (e) {
    o.err(`mptls serve: cannot listen on ${hostPort(host, port)}: ${describeError(e)}`);
    return EXIT_ERROR;
  }
  server.on('error', (e) => o.err(`mptls serve: ${describeError(e)}`));
  const addr = server.address() as net.AddressInfo;
  o.out(`listening on https://${hostPort(addr.address, addr.port)}/`);
  o.out(`  ${root !== undefined ? `serving ${root}` : statusPage ? 'status page at / and /status.json (server-wide counters, shown to any client)' : 'minimal page at / (no status page: --status)'}; multipath (userspace) and plain TLS on the same port${announce.length ? `; announcing ${announce.join(', ')}` : ''}`);

  let ownSignal: AbortController | undefined;
  if (!signal) {
    ownSignal = new AbortController();
    signal = ownSignal.signal;
  }
  const stop = () => ownSignal?.abort();
  if (ownSignal) {
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }
  try {
    if (!signal.aborted) await once(signal, 'abort');
  } finally {
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGTERM', stop);
  }
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  const grace = new Promise<void>((resolve) => setTimeout(resolve, 2000).unref());
  await Promise.race([closed, grace]);
  return EXIT_OK;
}

// -------------------------------------------------------------------- get

async function getCommand(args: string[], o: Out): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      local: { type: 'string', multiple: true },
      output: { type: 'string', short: 'o' },
      insecure: { type: 'boolean', short: 'k' },
      cacert: { type: 'string' },
      pin: { type: 'string', multiple: true },
      'no-fallback': { type: 'boolean' },
      silent: { type: 'boolean', short: 's' },
      verbose: { type: 'boolean', short: 'v' },
    },
    true,
  );
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'a URL is required' : `one URL only, got ${positionals.join(' ')}`);
  let url: URL;
  try {
    url = new URL(positionals[0]);
  } catch {
    throw new UsageError(`not a URL: ${positionals[0]}`);
  }
  if (url.protocol !== 'https:') throw new UsageError(`only https:// URLs (multipath is bound to TLS), got ${url.protocol}`);
  const local = values.local ?? [];
  for (const a of local) if (!net.isIP(a)) throw new UsageError(`--local needs an IP address, got ${JSON.stringify(a)}`);
  const ca = values.cacert !== undefined ? readFileOrUsage(values.cacert, 'CA file') : undefined;
  const toFile = values.output !== undefined && values.output !== '-' ? values.output : undefined;

  const mptcp = { ...(local.length ? { localAddresses: local } : {}), fallback: !values['no-fallback'] };
  const agent = new https.Agent({ keepAlive: false, mptcp });
  const progressOn = !values.silent && o.stderr.isTTY === true;
  const started = performance.now();
  let socket: MptlsSocket | undefined;
  let received = 0;
  let file: fs.WriteStream | undefined;
  let lastDraw = 0;
  let peakSubflows = 0;
  let total: number | undefined;
  const draw = (final = false) => {
    if (!progressOn) return;
    const t = performance.now();
    if (!final && t - lastDraw < 100) return;
    lastDraw = t;
    const up = socket?.mptcp?.subflows().filter((s) => s.state === 'established').length ?? 0;
    peakSubflows = Math.max(peakSubflows, up);
    const n = final ? peakSubflows : up;
    const pct = total ? ` ${((received / total) * 100).toFixed(0).padStart(3)}%` : '';
    const line = `  ${formatBytes(received)}${total !== undefined ? ` / ${formatBytes(total)}` : ''}${pct}  ${formatRate(received, t - started)}  ${socket?.mptcp?.mode ?? ''}${n ? ` ${n} subflow${n > 1 ? 's' : ''}` : ''}`;
    o.stderr.write(`\r${line}\x1b[K${final ? '\n' : ''}`);
  };

  try {
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = https.get(url, { agent, ca, rejectUnauthorized: !values.insecure, ...(values.pin ? { pin: values.pin } : {}) }, resolve);
      req.on('socket', (s) => {
        socket = s as MptlsSocket;
      });
      req.on('error', reject);
    });
    // The socket goes back to the agent (and is closed) when the body ends: read the facts now.
    const tlsFacts = socket ? { protocol: socket.getProtocol(), cipher: socket.getCipher()?.name } : undefined;
    const status = res.statusCode ?? 0;
    if (status >= 400) {
      res.resume();
      o.err(`mptls get: HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''} from ${url.href}`);
      return EXIT_HTTP;
    }
    const len = res.headers['content-length'];
    total = len !== undefined && /^\d+$/.test(len) ? Number(len) : undefined;
    // Subflow states and counts as they were when the body ended (the socket closes right after).
    let lastSubflows: MptcpSubflow[] | undefined;
    res.once('end', () => {
      lastSubflows = socket?.mptcp?.subflows();
    });
    const meter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        received += chunk.length;
        draw();
        cb(null, chunk);
      },
    });
    if (toFile !== undefined) {
      file = fs.createWriteStream(toFile);
      await pipeline(res, meter, file);
    } else {
      await pipeline(res, meter, o.stdout, { end: false });
    }
    if (!res.complete || (total !== undefined && received !== total)) {
      throw new Error(`connection closed after ${received} of ${total ?? '?'} bytes`);
    }
    draw(true);
    if (values.verbose && socket) {
      const f = connectionFacts(socket);
      if (tlsFacts) f.tls = tlsFacts;
      if (lastSubflows) f.subflows = lastSubflows;
      const ms = performance.now() - started;
      o.err(`* HTTP ${status}, ${formatBytes(received)} in ${(ms / 1000).toFixed(2)} s (${formatRate(received, ms)})`);
      o.err(`* ${f.tls.protocol ?? '?'} ${f.tls.cipher ?? ''}; multipath: ${f.mode}${f.fallbackReason ? ` (${f.fallbackReason})` : ''}`);
      if (f.tokens) o.err(`* tokens: client ${f.tokens.local}, server ${f.tokens.remote}; keys confirmed: ${f.keysConfirmed ? 'yes' : 'no'}`);
      if (f.keyFingerprints) o.err(`* key fingerprints: A ${f.keyFingerprints.keyA}, B ${f.keyFingerprints.keyB}`);
      for (const s of f.subflows) {
        o.err(`* subflow ${s.id}: ${hostPort(s.localAddress, s.localPort)} -> ${hostPort(s.remoteAddress, s.remotePort)} ${s.state}, ${formatBytes(s.bytesReceived)} in, RTT ${s.rttMs === undefined ? '-' : s.rttMs.toFixed(1) + ' ms'}`);
      }
    }
    return EXIT_OK;
  } catch (e) {
    if (progressOn && received > 0) o.stderr.write('\n');
    if (file) {
      file.destroy();
      await fs.promises.unlink(file.path).catch(() => {});
    }
    o.err(`mptls get: ${url.href}: ${describeError(e)}`);
    return EXIT_ERROR;
  } finally {
    agent.destroy();
  }
}

// ------------------------------------------------------------------- info

export interface HostInfo {
  mptls: { version: string };
  node: { version: string; platform: string; arch: string };
  os: { type: string; release: string };
  kernelMptcp: {
    /** /proc/sys/net/mptcp exists: the kernel (this network namespace) has MPTCP. */
    available: boolean;
    /** net.mptcp.enabled = 1 (null when unknown). */
    enabled: boolean | null;
    /** Every readable net.mptcp.* sysctl, by full name. */
    sysctls: Record<string, string>;
    /** socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP) through koffi, when koffi loads. */
    socketProbe: { ok: boolean; error?: string } | null;
  };
  ip: {
    available: boolean;
    limits: { raw: string; values: Record<string, number> } | null;
    endpoints: string[] | null;
    error?: string;
  };
  koffi: { loads: boolean; version?: string; error?: string };
  transports: {
    userspace: { available: true; note: string };
    kernel: { prerequisitesMet: boolean; missing: string[] };
  };
}

function run(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string; error?: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 3000, encoding: 'utf8' }, (error, stdout, stderr) =>
      resolve({ stdout, stderr, ...(error ? { error: error as NodeJS.ErrnoException } : {}) }),
    );
  });
}

/** Gathers what `mptls info` prints. */
export async function hostInfo(): Promise<HostInfo> {
  // Everything kernel-side comes from the kernel bridge (one implementation).
  const short = mptcpSysctls();
  const available = Object.keys(short).length > 0;
  const sysctls: Record<string, string> = {};
  for (const [n, v] of Object.entries(short)) sysctls[`net.mptcp.${n}`] = v.replace(/\s+/g, ' ');
  const enabledRaw = sysctls['net.mptcp.enabled'];
  const enabled = enabledRaw === undefined ? (available ? null : false) : enabledRaw === '1';
  const ffi = ffiStatus();
  const support = kernelSupport();
  const socketProbe = ffi.ok && process.platform === 'linux' && available && enabled !== false ? (support.ok ? { ok: true } : { ok: false, error: support.reason }) : null;

  const ip: HostInfo['ip'] = { available: false, limits: null, endpoints: null };
  const lim = await run('ip', ['mptcp', 'limits', 'show']);
  if (lim.error?.code === 'ENOENT') {
    ip.error = 'ip (iproute2) not found';
  } else {
    ip.available = true;
    if (lim.error) ip.error = (lim.stderr || lim.error.message).trim();
    else {
      const raw = lim.stdout.trim();
      const values: Record<string, number> = {};
      const parts = raw.split(/\s+/);
      for (let i = 0; i + 1 < parts.length; i += 2) if (/^\d+$/.test(parts[i + 1])) values[parts[i]] = Number(parts[i + 1]);
      ip.limits = { raw, values };
      const ep = await run('ip', ['mptcp', 'endpoint', 'show']);
      if (ep.error) ip.error = (ep.stderr || ep.error.message).trim();
      else ip.endpoints = ep.stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '');
    }
  }

  const missing: string[] = [];
  if (process.platform !== 'linux') missing.push('Linux');
  else if (!available) missing.push('kernel MPTCP (no /proc/sys/net/mptcp)');
  else if (enabled === false) missing.push('net.mptcp.enabled = 1');
  if (!ffi.ok) missing.push('koffi (optional dependency)');
  else if (socketProbe && !socketProbe.ok && enabled !== false && available) missing.push(`an IPPROTO_MPTCP socket (${socketProbe.error ?? 'failed'})`);

  return {
    mptls: { version: version() },
    node: { version: process.version, platform: process.platform, arch: process.arch },
    os: { type: os.type(), release: os.release() },
    kernelMptcp: { available, enabled, sysctls, socketProbe },
    ip,
    koffi: ffi.ok ? { loads: true } : { loads: false, error: ffi.reason },
    transports: {
      userspace: { available: true, note: 'multipath over ordinary TCP subflows; needs nothing from the kernel' },
      kernel: { prerequisitesMet: missing.length === 0, missing },
    },
  };
}

async function infoCommand(args: string[], o: Out): Promise<number> {
  const { values } = parse(args, { json: { type: 'boolean' } });
  const info = await hostInfo();
  if (values.json) {
    o.out(JSON.stringify(info, null, 2));
    return EXIT_OK;
  }
  const rows: [string, string][] = [];
  const k = info.kernelMptcp;
  rows.push(['mptls', info.mptls.version]);
  rows.push(['node', `${info.node.version} (${info.node.platform} ${info.node.arch})`]);
  rows.push(['kernel', `${info.os.type} ${info.os.release}`]);
  rows.push(['userspace transport', 'available (multipath over ordinary TCP subflows)']);
  rows.push(['kernel MPTCP', !k.available ? 'not available (no /proc/sys/net/mptcp)' : k.enabled ? 'enabled (net.mptcp.enabled = 1)' : k.enabled === false ? 'disabled (net.mptcp.enabled = 0)' : 'present, enabled state unknown']);
  for (const [name, v] of Object.entries(k.sysctls)) rows.push([`  ${name}`, v]);
  rows.push(['IPPROTO_MPTCP socket', k.socketProbe === null ? 'not probed (needs koffi on Linux)' : k.socketProbe.ok ? 'ok' : `fails: ${k.socketProbe.error ?? '?'}`]);
  if (!info.ip.available) rows.push(['ip mptcp', info.ip.error ?? 'ip not found']);
  else {
    rows.push(['ip mptcp limits', info.ip.limits ? info.ip.limits.raw || '(empty)' : `error: ${info.ip.error ?? '?'}`]);
    if (info.ip.endpoints) {
      if (info.ip.endpoints.length === 0) rows.push(['ip mptcp endpoint', '(none)']);
      info.ip.endpoints.forEach((l, i) => rows.push([i === 0 ? 'ip mptcp endpoint' : '', l]));
    } else if (info.ip.limits) rows.push(['ip mptcp endpoint', `error: ${info.ip.error ?? '?'}`]);
  }
  rows.push(['koffi', info.koffi.loads ? `loads${info.koffi.version ? ` (${info.koffi.version})` : ''}` : `does not load (${info.koffi.error ?? '?'})`]);
  const kt = info.transports.kernel;
  rows.push(['kernel transport', kt.prerequisitesMet ? 'host prerequisites present (Linux MPTCP enabled, koffi, socket probe)' : `host prerequisites missing: ${kt.missing.join('; ')}`]);
  const width = Math.max(...rows.map(([a]) => a.length));
  o.out(rows.map(([a, b]) => `${a.padEnd(width)}  ${b}`).join('\n'));
  return EXIT_OK;
}

// --------------------------------------------------------- haproxy-config

function positiveInt(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) <= 0) throw new UsageError(`${what} needs a positive integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

async function haproxyConfigCommand(args: string[], o: Out): Promise<number> {
  const { values } = parse(args, {
    listen: { type: 'string' },
    backend: { type: 'string', multiple: true },
    'no-token-routing': { type: 'boolean' },
    'inspect-delay': { type: 'string' },
    maxconn: { type: 'string' },
    'no-log': { type: 'boolean' },
    output: { type: 'string', short: 'o' },
  });
  if (values.listen === undefined) throw new UsageError('--listen HOST:PORT is required');
  const backends = values.backend ?? [];
  if (backends.length === 0) throw new UsageError('at least one --backend ID=HOST:PORT is required');
  let text: string;
  try {
    text = haproxyConfig({
      listen: values.listen,
      backends,
      tokenRouting: !values['no-token-routing'],
      inspectDelayMs: positiveInt(values['inspect-delay'], '--inspect-delay'),
      maxconn: positiveInt(values.maxconn, '--maxconn'),
      log: !values['no-log'],
    });
  } catch (e) {
    if (e instanceof HaproxyConfigError) throw new UsageError(e.message);
    throw e;
  }
  if (values.output !== undefined && values.output !== '-') await fs.promises.writeFile(values.output, text);
  else o.stdout.write(text);
  return EXIT_OK;
}
