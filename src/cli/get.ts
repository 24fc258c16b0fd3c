/**
 * `mptls get URL`: a small curl over multipath. The options, the output and
 * the exit codes are curl's (-H -X -d -I -i -L -o -O -r -w -m --retry
 * --connect-timeout …), the connection is mptls's: userspace multipath with
 * one subflow per --local, or with --kernel Linux's IPPROTO_MPTCP. The body
 * goes to stdout, -o FILE or -O (removed on failure); a progress meter on a
 * terminal's stderr only; -v the headers and the connection's multipath
 * facts. Nothing here waits without a deadline before the TLS handshake
 * ends (--connect-timeout, default 10 s), and -m bounds everything.
 */
import dns from 'node:dns';
import fs from 'node:fs';
import type http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { https, type MptcpSubflow, type MptlsSocket } from '../api/index.js';
import { kernelSupport } from '../transport/kernel/index.js';
import { readFileOrUsage, UsageError } from './args.js';
import { connectionFacts } from './facts.js';
import { formatBytes, formatRate, hostPort } from './format.js';
import { EXIT_ERROR, EXIT_HTTP, EXIT_INTERFACE, EXIT_OK, EXIT_PARTIAL, EXIT_REDIRECTS, EXIT_TIMEOUT, EXIT_WRITE, type CliWritable, type Out, version } from './io.js';
import { localAddressProblem } from './local-address.js';
import { classify, TransferError, type Phase } from './transfer-errors.js';
import { renderWriteOut, type WriteOutVars } from './write-out.js';

export const HELP = `Usage: mptls get URL [options]

Fetches an https:// URL over TLS-bound multipath TCP, with curl's options and
exit codes. The body goes to stdout (or -o FILE, -O). An HTTP status >= 400 is
an error (exit 22, as curl --fail), its body is not written.

Request:
  -X, --request METHOD   the method (default GET, POST with -d, HEAD with -I);
                         kept across redirects, as in curl
  -H, --header "Name: value"
                         add a header or replace a default one (Host,
                         User-Agent, Accept); "Name:" removes it, "Name;"
                         sends it empty; repeatable
  -d, --data DATA        send DATA as the body (POST; Content-Type
                         application/x-www-form-urlencoded unless -H sets
                         one); @FILE reads FILE without its CR and LF, @-
                         stdin; several -d are joined with "&"
      --data-binary DATA like -d, but @FILE is sent byte for byte
      --data-raw DATA    like -d, "@" is not special (--data-ascii: -d)
  -r, --range RANGE      ask for bytes RANGE only ("0-99", "-500", "100-")
  -I, --head             HEAD: write the response headers instead of a body
  -L, --location         follow redirects (301 302 303 307 308, relative ones
                         too); 301/302/303 turn a POST into a GET and 303 any
                         method but HEAD, as curl; never from https: to http:
      --max-redirs N     at most N redirects with -L (default 50; -1: no limit)

Output:
  -o, --output FILE      write to FILE ("-": stdout); removed on failure
  -O, --remote-name      write to the URL path's last segment as a file name
                         (in the current directory or --output-dir)
      --output-dir DIR   where -O and a relative -o write
  -i, --include          write the response headers before the body
  -w, --write-out FORMAT after the transfer write FORMAT to stdout (curl's
                         syntax, below; @FILE reads FORMAT from FILE)
  -s, --silent           no progress meter, no error messages
      --no-progress-meter  no progress meter
  -S, --show-error       error messages even with -s
  -v, --verbose          request and response headers, and the connection's
                         multipath facts, on stderr
  -f, --fail             accepted for curl command lines (always so here)

Connection:
  --local ADDR           local address for a subflow: the first one for the
                         initial subflow, each further one opens a join;
                         repeatable. An address that is not this host's, or
                         not of the server's family, is an error (exit 45)
  --kernel               Linux kernel MPTCP (IPPROTO_MPTCP) instead of the
                         userspace transport: the kernel's path manager opens
                         the other subflows (ip mptcp endpoint), so at most
                         one --local; warns and uses plain TCP when the
                         kernel cannot (with --no-fallback: an error)
  -k, --insecure         do not verify the server certificate
  --cacert FILE          trust the CA certificate(s) in FILE (PEM)
  --pin PIN              also require the server key's SPKI SHA-256
                         (sha256//BASE64, curl's --pinnedpubkey format)
  --no-fallback          fail instead of falling back to plain TLS when the
                         server does not speak multipath
  --connect-timeout SECONDS
                         TCP, MP_CAPABLE and the TLS handshake within this
                         (default 10; decimals allowed; 0: the default)
  -m, --max-time SECONDS the whole transfer, redirects included (default: no
                         limit; decimals allowed)
  --retry N              retry a transient failure up to N times: a timeout,
                         a refused or reset connection, an empty reply, a
                         host that does not resolve, HTTP 408 429 500 502
                         503 504; waits 1 s, then twice as long each time (up
                         to 10 min), or what Retry-After says
  --retry-delay SECONDS  wait this long between retries instead
  --retry-max-time SECONDS
                         no new attempt once this long has passed since the
                         first one
  --retry-connrefused    accepted for curl command lines (a refused
                         connection is always retried here)
  -h, --help             this help

Write-out (-w): %{name} for a variable, %header{name} for a response header,
%{json} for all variables, %{stderr} / %{stdout} to switch streams, %% for %,
\\n \\r \\t. Variables: http_code (000 without a response), response_code,
http_version, method, scheme, content_type, url, url_effective, redirect_url,
num_redirects, num_connects, num_headers, remote_ip, remote_port, local_ip,
local_port, size_download, size_header, size_request, size_upload,
speed_download, speed_upload, time_namelookup, time_connect, time_appconnect,
time_pretransfer, time_starttransfer, time_redirect, time_total (seconds),
filename_effective, exitcode, errormsg, urlnum, and mptls's own: num_subflows
(how many distinct subflows the connection established; 1 for a connection
that fell back to plain TLS), mptcp_mode (userspace, kernel or fallback),
mptcp_fallback_reason.

A progress meter goes to stderr when stderr is a terminal (never with -s).
Exit status, curl's: 0 ok, 1 other errors (--no-fallback without multipath,
a redirect to http:), 2 usage, 6 the host does not resolve, 7 cannot connect,
18 the body ended early, 22 HTTP status >= 400, 23 write error (or -O without
a file name), 28 timeout (--connect-timeout, -m), 35 TLS handshake failed,
45 unusable --local, 47 too many redirects, 52 empty reply, 56 failure while
receiving, 60 certificate verification failed, 90 --pin mismatch.`;

const GET_OPTIONS = {
  local: { type: 'string', multiple: true },
  output: { type: 'string', short: 'o' },
  'remote-name': { type: 'boolean', short: 'O' },
  'output-dir': { type: 'string' },
  insecure: { type: 'boolean', short: 'k' },
  cacert: { type: 'string' },
  pin: { type: 'string', multiple: true },
  'no-fallback': { type: 'boolean' },
  kernel: { type: 'boolean' },
  silent: { type: 'boolean', short: 's' },
  'show-error': { type: 'boolean', short: 'S' },
  'no-progress-meter': { type: 'boolean' },
  verbose: { type: 'boolean', short: 'v' },
  fail: { type: 'boolean', short: 'f' },
  header: { type: 'string', short: 'H', multiple: true },
  request: { type: 'string', short: 'X' },
  data: { type: 'string', short: 'd', multiple: true },
  'data-binary': { type: 'string', multiple: true },
  'data-raw': { type: 'string', multiple: true },
  'data-ascii': { type: 'string', multiple: true },
  range: { type: 'string', short: 'r' },
  head: { type: 'boolean', short: 'I' },
  include: { type: 'boolean', short: 'i' },
  location: { type: 'boolean', short: 'L' },
  'max-redirs': { type: 'string' },
  'write-out': { type: 'string', short: 'w' },
  'connect-timeout': { type: 'string' },
  'max-time': { type: 'string', short: 'm' },
  retry: { type: 'string' },
  'retry-delay': { type: 'string' },
  'retry-max-time': { type: 'string' },
  'retry-connrefused': { type: 'boolean' },
} as const;

/** The default of --connect-timeout (curl's is 300 s; a multipath handshake that takes 10 s is dead). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** The default of --max-redirs (curl's). */
export const DEFAULT_MAX_REDIRS = 50;
/** curl's cap on the doubling retry delay. */
const MAX_RETRY_BACKOFF_MS = 600_000;
/** HTTP statuses curl's --retry retries. */
const TRANSIENT_HTTP = new Set([408, 429, 500, 502, 503, 504]);
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Everything the command line says about the transfer. */
export interface GetRequest {
  /** A failure found before connecting that is not a usage error (-O without a file name: 23, as curl). */
  refuse?: TransferError;
  url: URL;
  /** -X: sent as is on every hop. */
  customMethod?: string;
  head: boolean;
  /** -H, in order: a value, or null to remove a default header. */
  headers: [string, string | null][];
  body?: Buffer;
  range?: string;
  follow: boolean;
  /** -1: no limit. */
  maxRedirs: number;
  /** A file (resolved against --output-dir), or undefined for stdout. */
  outFile?: string;
  include: boolean;
  writeOut?: string;
  silent: boolean;
  showError: boolean;
  verbose: boolean;
  progress: boolean;
  local: string[];
  kernel: boolean;
  insecure: boolean;
  ca?: Buffer;
  pin?: string[];
  fallback: boolean;
  connectTimeoutMs: number;
  /** 0: none. */
  maxTimeMs: number;
  retry: number;
  retryDelayMs?: number;
  retryMaxTimeMs?: number;
}

/** SECONDS (decimals allowed, >= 0) in ms; undefined when absent. */
function seconds(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(v)) throw new UsageError(`${what} needs a number of seconds, got ${JSON.stringify(v)}`);
  return Math.round(Number(v) * 1000);
}

function count(v: string | undefined, what: string, min = 0): number | undefined {
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v) || Number(v) < min) throw new UsageError(`${what} needs an integer >= ${min}, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** curl's -d family: `@FILE` (or `@-`, stdin), CR/LF stripped unless binary. */
function dataArg(kind: 'data' | 'data-binary' | 'data-raw', v: string): Buffer {
  if (kind === 'data-raw' || !v.startsWith('@')) return Buffer.from(v);
  const name = v.slice(1);
  let bytes: Buffer;
  if (name === '-') {
    try {
      bytes = fs.readFileSync(0);
    } catch (e) {
      throw new UsageError(`cannot read the data from stdin: ${(e as Error).message}`);
    }
  } else bytes = readFileOrUsage(name, 'data file');
  if (kind === 'data-binary') return bytes;
  return Buffer.from(bytes.filter((b) => b !== 0x0d && b !== 0x0a));
}

/** "Name: value" → [Name, value]; "Name:" → [Name, null] (remove); "Name;" → [Name, ''] (empty). */
export function parseHeader(h: string): [string, string | null] {
  const semi = /^([^:;\s]+);\s*$/.exec(h);
  if (semi && TOKEN.test(semi[1])) return [semi[1], ''];
  const i = h.indexOf(':');
  if (i <= 0) throw new UsageError(`-H needs "Name: value", got ${JSON.stringify(h)}`);
  const name = h.slice(0, i).trim();
  if (!TOKEN.test(name)) throw new UsageError(`-H: not a header name: ${JSON.stringify(name)}`);
  const value = h.slice(i + 1).trim();
  if (/[\r\n\0]/.test(value)) throw new UsageError(`-H ${name}: the value has a line break or NUL`);
  return [name, value === '' ? null : value];
}

/** -O's file name: the URL path's last segment as it is written in the URL (as curl); undefined when empty. */
export function remoteName(url: URL): string | undefined {
  const seg = url.pathname.slice(url.pathname.lastIndexOf('/') + 1);
  return seg === '' || seg === '.' || seg === '..' ? undefined : seg;
}

/**
 * curl takes the argument after an option that needs one whatever it looks
 * like (`-r -500`, `--max-redirs -1`, `-d -x`); util.parseArgs refuses one
 * that starts with "-". Such pairs become `--name=value`.
 */
function joinDashValues(args: string[]): string[] {
  const takesValue = new Map<string, string>();
  for (const [name, spec] of Object.entries(GET_OPTIONS)) {
    if (spec.type !== 'string') continue;
    takesValue.set(`--${name}`, name);
    if ('short' in spec) takesValue.set(`-${spec.short}`, name);
  }
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--') {
      out.push(...args.slice(i));
      break;
    }
    const name = takesValue.get(a);
    const next = args[i + 1];
    if (name !== undefined && next !== undefined && next.startsWith('-') && next !== '-') {
      out.push(`--${name}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/** Parses the command line into a GetRequest; every mistake is a UsageError. */
export function parseGetArgs(args: string[], o: Out): GetRequest {
  let parsed;
  try {
    parsed = parseArgs({ args: joinDashValues(args), options: GET_OPTIONS, allowPositionals: true, strict: true, tokens: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals, tokens } = parsed;
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'a URL is required' : `one URL only, got ${positionals.join(' ')}`);
  let text = positionals[0];
  // As curl guesses a scheme: a URL without one is https:// here.
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) text = `https://${text}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`not a URL: ${positionals[0]}`);
  }
  if (url.protocol !== 'https:') throw new UsageError(`only https:// URLs (multipath is bound to TLS), got ${url.protocol}`);
  url.hash = '';
  const local = values.local ?? [];
  for (const a of local) if (!net.isIP(a)) throw new UsageError(`--local needs an IP address, got ${JSON.stringify(a)}`);
  const kernel = values.kernel ?? false;
  if (kernel && local.length > 1) throw new UsageError('--kernel takes one --local at most: the kernel path manager opens the other subflows (ip mptcp endpoint add ADDR dev IF subflow)');
  const ca = values.cacert !== undefined ? readFileOrUsage(values.cacert, 'CA file') : undefined;

  // The -d family, in command-line order, joined with "&" as curl does.
  const parts: Buffer[] = [];
  for (const t of tokens ?? []) {
    if (t.kind !== 'option' || t.value === undefined) continue;
    if (t.name === 'data' || t.name === 'data-ascii') parts.push(dataArg('data', t.value));
    else if (t.name === 'data-binary') parts.push(dataArg('data-binary', t.value));
    else if (t.name === 'data-raw') parts.push(dataArg('data-raw', t.value));
  }
  const body = parts.length ? Buffer.concat(parts.flatMap((p, i) => (i ? [Buffer.from('&'), p] : [p]))) : undefined;
  const head = values.head ?? false;
  if (head && body) throw new UsageError('-I and -d exclude each other (one request method only)');
  const customMethod = values.request;
  if (customMethod !== undefined && !TOKEN.test(customMethod)) throw new UsageError(`-X needs a method name, got ${JSON.stringify(customMethod)}`);
  const headers = (values.header ?? []).map(parseHeader);
  if (values.range !== undefined && !/^(\d+-\d*|-\d+)(,(\d+-\d*|-\d+))*$/.test(values.range)) throw new UsageError(`-r needs a byte range like 0-99, -500 or 100-, got ${JSON.stringify(values.range)}`);

  let refuse: TransferError | undefined;
  let outFile: string | undefined = values.output !== undefined && values.output !== '-' ? values.output : undefined;
  if (values['remote-name']) {
    if (values.output !== undefined) throw new UsageError('-o and -O exclude each other');
    const name = remoteName(url);
    if (name === undefined) refuse = new TransferError(EXIT_WRITE, `-O: the URL ${url.href} has no file name in its path (remote file name has no length)`);
    outFile = name;
  }
  if (outFile !== undefined && values['output-dir'] !== undefined && !path.isAbsolute(outFile)) outFile = path.join(values['output-dir'], outFile);

  let writeOut = values['write-out'];
  if (writeOut?.startsWith('@')) writeOut = writeOut === '@-' ? fs.readFileSync(0, 'utf8') : readFileOrUsage(writeOut.slice(1), 'write-out file').toString('utf8');

  const silent = values.silent ?? false;
  const connectTimeout = seconds(values['connect-timeout'], '--connect-timeout');
  const maxRedirs = values['max-redirs'] === undefined ? DEFAULT_MAX_REDIRS : count(values['max-redirs'], '--max-redirs', -1)!;
  const retryDelay = seconds(values['retry-delay'], '--retry-delay');
  return {
    refuse,
    url,
    customMethod,
    head,
    headers,
    body,
    range: values.range,
    follow: values.location ?? false,
    maxRedirs,
    outFile,
    include: values.include ?? false,
    writeOut,
    silent,
    showError: values['show-error'] ?? false,
    verbose: values.verbose ?? false,
    progress: !silent && !values['no-progress-meter'] && o.stderr.isTTY === true,
    local,
    kernel,
    insecure: values.insecure ?? false,
    ca,
    pin: values.pin,
    fallback: !values['no-fallback'],
    connectTimeoutMs: connectTimeout || DEFAULT_CONNECT_TIMEOUT_MS,
    maxTimeMs: seconds(values['max-time'], '--max-time') ?? 0,
    retry: count(values.retry, '--retry') ?? 0,
    // curl: --retry-delay 0 means the doubling backoff.
    retryDelayMs: retryDelay ? retryDelay : undefined,
    retryMaxTimeMs: seconds(values['retry-max-time'], '--retry-max-time') || undefined,
  };
}

/** Where the output goes: stdout, or a file opened at the first byte (and created empty at a successful end). */
class Output {
  private file?: fs.WriteStream;
  private opening?: Promise<fs.WriteStream>;
  /** Bytes written to stdout in this attempt (a retry cannot take them back). */
  stdoutBytes = 0;
  writeError: Error | undefined;
  private readonly onStdoutError = (e: Error) => {
    this.writeError ??= e;
  };

  constructor(
    private readonly stdout: CliWritable,
    readonly path: string | undefined,
  ) {
    if (!path) stdout.on('error', this.onStdoutError);
  }

  private async dest(): Promise<NodeJS.WritableStream> {
    if (!this.path) return this.stdout;
    if (this.file) return this.file;
    this.opening ??= fs.promises.open(this.path, 'w').then(
      (h) => {
        const f = h.createWriteStream();
        f.on('error', (e) => {
          this.writeError ??= e;
        });
        this.file = f;
        return f;
      },
      (e: unknown) => {
        throw new TransferError(EXIT_WRITE, `cannot create ${this.path}: ${(e as Error).message}`);
      },
    );
    return this.opening;
  }

  async write(chunk: Buffer | string, until: <T>(p: Promise<T>) => Promise<T>): Promise<void> {
    const d = await until(this.dest());
    if (this.writeError) throw this.failed();
    if (!this.path) this.stdoutBytes += chunk.length;
    if (!d.write(chunk)) {
      await until(
        new Promise<void>((resolve, reject) => {
          const done = () => {
            d.removeListener('drain', done);
            d.removeListener('error', done);
            d.removeListener('close', done);
            if (this.writeError) reject(this.failed());
            else resolve();
          };
          d.on('drain', done);
          d.on('error', done);
          d.on('close', done);
        }),
      );
    }
    if (this.writeError) throw this.failed();
  }

  failed(): TransferError {
    return new TransferError(EXIT_WRITE, `failed writing the output${this.path ? ` to ${this.path}` : ''}: ${this.writeError?.message ?? 'closed'}`);
  }

  /** Closes the file (creating it, empty, if nothing came). */
  async finish(until: <T>(p: Promise<T>) => Promise<T>): Promise<void> {
    if (!this.path) return;
    const f = (await until(this.dest())) as fs.WriteStream;
    await until(new Promise<void>((resolve) => f.end(() => resolve())));
    if (this.writeError) throw this.failed();
  }

  /** Closes and removes the file (a failed transfer leaves none). */
  async discard(): Promise<void> {
    if (!this.path) return;
    const f = this.file ?? (this.opening ? await this.opening.catch(() => undefined) : undefined);
    if (!f) return;
    if (!f.closed) {
      await new Promise<void>((resolve) => {
        f.once('close', () => resolve());
        f.destroy();
      });
    }
    await fs.promises.unlink(this.path).catch(() => {});
  }

  release(): void {
    if (!this.path) this.stdout.removeListener('error', this.onStdoutError);
  }
}

/** Ends every wait at once with one error: --max-time, --connect-timeout. */
class Deadline {
  error: Error | undefined;
  private readonly waiters = new Set<(e: Error) => void>();
  private readonly hooks: ((e: Error) => void)[] = [];

  fire(e: Error): void {
    if (this.error) return;
    this.error = e;
    for (const h of this.hooks) h(e);
    for (const w of this.waiters) w(e);
    this.waiters.clear();
  }

  onFire(h: (e: Error) => void): void {
    this.hooks.push(h);
  }

  /** `p`, or the deadline's error if it comes first. */
  readonly until = <T>(p: Promise<T>): Promise<T> => {
    if (this.error) {
      p.catch(() => {});
      return Promise.reject(this.error);
    }
    return new Promise<T>((resolve, reject) => {
      const w = (e: Error) => reject(e);
      this.waiters.add(w);
      p.then(
        (v) => {
          this.waiters.delete(w);
          resolve(v);
        },
        (e: unknown) => {
          this.waiters.delete(w);
          reject(e);
        },
      );
    });
  };
}

/** What one attempt ends with. */
interface Attempt {
  exit: number;
  message?: string;
  transient: boolean;
  retryAfterMs?: number;
  vars: WriteOutVars;
  headerOf: (name: string) => string | undefined;
  stdoutBytes: number;
}

function headerBlock(res: http.IncomingMessage): string {
  let s = `HTTP/${res.httpVersion} ${res.statusCode ?? 0}${res.statusMessage ? ` ${res.statusMessage}` : ''}\r\n`;
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) s += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`;
  return s + '\r\n';
}

/** Retry-After as ms: delay-seconds or an HTTP date. */
function retryAfter(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

/** The server's address: the URL's IP, or its name resolved (in the family of the first --local). */
async function resolveHost(hostname: string, local: string[]): Promise<string> {
  const h = hostname.replace(/^\[(.*)\]$/, '$1');
  if (net.isIP(h)) return h;
  const family = local.length ? net.isIP(local[0]) : 0;
  const r = await dns.promises.lookup(h, family ? { family } : {});
  return r.address;
}

/** One attempt: every redirect hop, to the final response's body. */
async function transfer(rq: GetRequest, o: Out): Promise<Attempt> {
  const started = performance.now();
  let failed = false;
  const since = () => (performance.now() - started) / 1000;
  const deadline = new Deadline();
  const output = new Output(o.stdout, rq.outFile);
  const mptcp = {
    ...(rq.local.length ? { localAddresses: rq.local } : {}),
    fallback: rq.fallback,
    ...(rq.kernel ? { transport: 'kernel' as const } : {}),
  };
  const agent = new https.Agent({ keepAlive: false, mptcp });
  let current: { req?: http.ClientRequest; res?: http.IncomingMessage } = {};
  let received = 0;
  deadline.onFire((e) => {
    current.req?.destroy(e);
    current.res?.destroy(e);
  });
  const maxTimer = rq.maxTimeMs > 0 ? setTimeout(() => deadline.fire(new TransferError(EXIT_TIMEOUT, `operation timed out after ${rq.maxTimeMs} milliseconds with ${received} bytes received (--max-time)`, true)), rq.maxTimeMs) : undefined;

  let url = rq.url;
  let method = rq.customMethod ?? (rq.head ? 'HEAD' : rq.body ? 'POST' : 'GET');
  let body = rq.body;
  let userHeaders = rq.headers;
  let phase: Phase = 'resolve';
  let redirects = 0;
  let connects = 0;
  let headerBytes = 0;
  let requestBytes = 0;
  let uploaded = 0;
  let lastRes: http.IncomingMessage | undefined;
  let redirectUrl: string | null = null;
  let socket: MptlsSocket | undefined;
  let mode: string | null = null;
  let fallbackReason: string | null = null;
  let remote: { ip: string | null; port: number | null; localIp: string | null; localPort: number | null } = { ip: null, port: null, localIp: null, localPort: null };
  let subflowIds = new Set<number>();
  const t = { namelookup: 0, connect: 0, appconnect: 0, pretransfer: 0, starttransfer: 0, redirect: 0 };
  let lastSubflows: MptcpSubflow[] | undefined;
  let tlsFacts: { protocol: string | null; cipher: string | undefined } | undefined;
  let total: number | undefined;
  let lastDraw = 0;

  const noteSubflows = (s: MptlsSocket | undefined) => {
    for (const sf of s?.mptcp?.subflows() ?? []) if (sf.state === 'established') subflowIds.add(sf.id);
  };
  const draw = (final = false) => {
    if (!rq.progress) return;
    const now = performance.now();
    if (!final && now - lastDraw < 100) return;
    lastDraw = now;
    const n = subflowIds.size;
    const pct = total ? ` ${((received / total) * 100).toFixed(0).padStart(3)}%` : '';
    const line = `  ${formatBytes(received)}${total !== undefined ? ` / ${formatBytes(total)}` : ''}${pct}  ${formatRate(received, now - started)}  ${mode ?? ''}${n ? ` ${n} subflow${n > 1 ? 's' : ''}` : ''}`;
    o.stderr.write(`\r${line}\x1b[K${final ? '\n' : ''}`);
  };

  const vars = (exit: number, message?: string): WriteOutVars => {
    const total_ = since();
    const res = lastRes;
    return {
      content_type: (res?.headers['content-type'] as string | undefined) ?? null,
      errormsg: message ?? null,
      exitcode: exit,
      filename_effective: rq.outFile ?? null,
      http_code: res?.statusCode ?? 0,
      http_version: res ? res.httpVersion : '0',
      local_ip: remote.localIp,
      local_port: remote.localPort,
      method,
      mptcp_fallback_reason: fallbackReason,
      mptcp_mode: mode,
      num_connects: connects,
      num_headers: res ? res.rawHeaders.length / 2 : 0,
      num_redirects: redirects,
      num_subflows: Math.max(subflowIds.size, mode === 'fallback' && remote.ip !== null ? 1 : 0),
      redirect_url: redirectUrl,
      remote_ip: remote.ip,
      remote_port: remote.port,
      response_code: res?.statusCode ?? 0,
      scheme: 'HTTPS',
      size_download: received,
      size_header: headerBytes,
      size_request: requestBytes,
      size_upload: uploaded,
      speed_download: total_ > 0 ? Math.round(received / total_) : 0,
      speed_upload: total_ > 0 ? Math.round(uploaded / total_) : 0,
      time_appconnect: t.appconnect,
      time_connect: t.connect,
      time_namelookup: t.namelookup,
      time_pretransfer: t.pretransfer,
      time_redirect: t.redirect,
      time_starttransfer: t.starttransfer,
      time_total: total_,
      url: rq.url.href,
      url_effective: url.href,
      urlnum: 0,
    };
  };
  const headerOf = (name: string): string | undefined => {
    const v = lastRes?.headers[name];
    return Array.isArray(v) ? v.join(', ') : v;
  };

  try {
    for (;;) {
      // One hop: resolve, connect (TCP + MP_CAPABLE + TLS within --connect-timeout), request, response.
      phase = 'resolve';
      const hopStart = since();
      if (redirects > 0) t.redirect = hopStart;
      let connectTimer: NodeJS.Timeout | undefined = setTimeout(
        () => deadline.fire(new TransferError(EXIT_TIMEOUT, `connection timed out after ${rq.connectTimeoutMs} milliseconds (TCP, MP_CAPABLE and the TLS handshake, --connect-timeout)`, true)),
        rq.connectTimeoutMs,
      );
      const clearConnect = () => {
        clearTimeout(connectTimer);
        connectTimer = undefined;
      };
      try {
        if (rq.verbose) o.err(`* Resolving ${url.hostname}`);
        const ip = await deadline.until(resolveHost(url.hostname, rq.local));
        t.namelookup = since();
        for (const l of rq.local) {
          const problem = localAddressProblem(l, ip);
          if (problem) throw new TransferError(EXIT_INTERFACE, problem);
        }
        phase = 'connect';
        if (rq.verbose) o.err(`* Trying ${hostPort(ip, Number(url.port || 443))}${rq.kernel ? ' (kernel MPTCP)' : ''}...`);
        const headers = requestHeaders(rq, url, userHeaders, body);
        const hop = https.request({
          host: ip,
          port: Number(url.port || 443),
          path: url.pathname + url.search,
          method,
          headers,
          agent,
          servername: net.isIP(url.hostname.replace(/^\[(.*)\]$/, '$1')) ? '' : url.hostname,
          ca: rq.ca,
          rejectUnauthorized: !rq.insecure,
          ...(rq.pin ? { pin: rq.pin } : {}),
        });
        current = { req: hop };
        connects++;
        subflowIds = new Set();
        mode = null;
        fallbackReason = null;
        remote = { ip: null, port: null, localIp: null, localPort: null };
        // Errors after the response reach the response; never an unhandled 'error'.
        hop.on('error', () => {});
        t.connect = 0;
        hop.on('socket', (s) => {
          const ms = s as MptlsSocket;
          socket = ms;
          const connected = () => {
            if (!t.connect) t.connect = since();
          };
          ms.once('connect', connected);
          ms.on('subflow', (sf: MptcpSubflow) => {
            if (!subflowIds.size) connected();
            subflowIds.add(sf.id);
          });
          ms.once('secureConnect', () => {
            clearConnect();
            phase = 'request';
            t.appconnect = since();
            if (!t.connect) t.connect = t.appconnect;
            const first = ms.mptcp?.subflows().find((x) => x.state === 'established');
            remote = {
              ip: ms.remoteAddress ?? first?.remoteAddress ?? null,
              port: ms.remotePort ?? first?.remotePort ?? null,
              localIp: ms.localAddress ?? first?.localAddress ?? null,
              localPort: ms.localPort ?? first?.localPort ?? null,
            };
            mode = ms.mptcp?.mode ?? null;
            fallbackReason = ms.mptcp?.fallbackReason ?? null;
            tlsFacts = { protocol: ms.getProtocol(), cipher: ms.getCipher()?.name };
            noteSubflows(ms);
            if (rq.verbose) o.err(`* Connected to ${url.hostname} (${remote.ip ?? '?'}) port ${remote.port ?? '?'}, ${tlsFacts.protocol ?? '?'}, multipath: ${mode ?? '?'}${fallbackReason ? ` (${fallbackReason})` : ''}`);
          });
        });
        hop.once('finish', () => {
          t.pretransfer = since();
          const raw = (hop as unknown as { _header?: string })._header;
          requestBytes += (raw?.length ?? 0) + (body?.length ?? 0);
          uploaded += body?.length ?? 0;
          if (rq.verbose && raw) for (const line of raw.split('\r\n').filter((l) => l !== '')) o.err(`> ${line}`);
        });
        const res = await deadline.until(
          new Promise<http.IncomingMessage>((resolve, reject) => {
            hop.once('response', resolve);
            hop.once('error', reject);
            hop.end(body);
          }),
        );
        clearConnect();
        phase = 'body';
        res.on('error', () => {}); // the body loop below sees it
        current.res = res;
        lastRes = res;
        t.starttransfer = since();
        mode = socket?.mptcp?.mode ?? mode;
        fallbackReason = socket?.mptcp?.fallbackReason ?? fallbackReason;
        noteSubflows(socket);
        const block = headerBlock(res);
        headerBytes += Buffer.byteLength(block);
        if (rq.verbose) for (const line of block.split('\r\n').filter((l) => l !== '')) o.err(`< ${line}`);
        const status = res.statusCode ?? 0;
        const location = res.headers.location;

        if (rq.follow && REDIRECTS.has(status) && location !== undefined) {
          res.resume();
          if (rq.include || rq.head) await output.write(block, deadline.until);
          if (rq.maxRedirs >= 0 && redirects >= rq.maxRedirs) throw new TransferError(EXIT_REDIRECTS, `maximum (${rq.maxRedirs}) redirects followed (--max-redirs)`);
          let next: URL;
          try {
            next = new URL(location, url);
          } catch {
            throw new TransferError(EXIT_ERROR, `the redirect to ${JSON.stringify(location)} is not a URL`);
          }
          if (next.protocol !== 'https:') {
            throw new TransferError(EXIT_ERROR, `refusing to follow the redirect from ${url.href} to ${next.href}: multipath is bound to TLS, only https:// is followed (no downgrade)`);
          }
          next.hash = '';
          // curl: 303 makes anything but HEAD a GET, 301/302 turn a POST into a GET; -X's method stays.
          const toGet = (status === 303 && method !== 'HEAD') || ((status === 301 || status === 302) && method === 'POST');
          if (toGet) {
            if (rq.customMethod === undefined) method = 'GET';
            body = undefined;
          }
          // Credentials given with -H go to the first host only (curl, without --location-trusted).
          if (next.host !== url.host) userHeaders = userHeaders.filter(([n]) => !['authorization', 'cookie'].includes(n.toLowerCase()));
          await deadline.until(new Promise<void>((resolve) => {
            if (res.complete || res.destroyed) resolve();
            else {
              res.once('end', resolve);
              res.once('close', resolve);
            }
          }));
          if (rq.verbose) o.err(`* Following the redirect (${status}) to ${next.href}`);
          redirects++;
          url = next;
          continue;
        }

        if (REDIRECTS.has(status) && location !== undefined) {
          try {
            redirectUrl = new URL(location, url).href;
          } catch {
            redirectUrl = null;
          }
        }
        if (status >= 400) {
          res.resume();
          if (rq.include || rq.head) await output.write(block, deadline.until);
          lastSubflows = socket?.mptcp?.subflows();
          const message = `HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''} from ${url.href}`;
          const after = status === 429 || status === 503 ? retryAfter(headerOf('retry-after')) : undefined;
          await output.discard();
          return { exit: EXIT_HTTP, message, transient: TRANSIENT_HTTP.has(status), retryAfterMs: after, vars: vars(EXIT_HTTP, message), headerOf, stdoutBytes: output.stdoutBytes };
        }

        // The body (none for HEAD): to the output, checked against Content-Length.
        const len = res.headers['content-length'];
        total = method !== 'HEAD' && len !== undefined && /^\d+$/.test(len) ? Number(len) : undefined;
        if (rq.include || rq.head) await output.write(block, deadline.until);
        res.once('end', () => {
          lastSubflows = socket?.mptcp?.subflows();
          noteSubflows(socket);
        });
        for await (const chunk of res as AsyncIterable<Buffer>) {
          received += chunk.length;
          noteSubflows(socket);
          draw();
          await output.write(chunk, deadline.until);
        }
        if (deadline.error) throw deadline.error;
        if (!res.complete) throw new TransferError(EXIT_PARTIAL, `the connection closed after ${received} bytes of the body${total !== undefined ? ` (of ${total})` : ''}`, true);
        if (total !== undefined && received !== total) throw new TransferError(EXIT_PARTIAL, `transfer closed with ${total - received} bytes remaining to read`, true);
        lastSubflows ??= socket?.mptcp?.subflows();
        await output.finish(deadline.until);
        draw(true);
        break;
      } finally {
        clearConnect();
      }
    }
    if (rq.verbose && socket) {
      const f = connectionFacts(socket);
      if (tlsFacts) f.tls = tlsFacts;
      if (lastSubflows) f.subflows = lastSubflows;
      if (mode) f.mode = mode;
      const ms = since() * 1000;
      o.err(`* HTTP ${lastRes?.statusCode ?? 0}, ${formatBytes(received)} in ${(ms / 1000).toFixed(2)} s (${formatRate(received, ms)})`);
      o.err(`* ${f.tls.protocol ?? '?'} ${f.tls.cipher ?? ''}; multipath: ${f.mode}${f.fallbackReason ? ` (${f.fallbackReason})` : ''}`);
      if (f.tokens) o.err(`* tokens: client ${f.tokens.local}, server ${f.tokens.remote}; keys confirmed: ${f.keysConfirmed ? 'yes' : 'no'}`);
      if (f.keyFingerprints) o.err(`* key fingerprints: A ${f.keyFingerprints.keyA}, B ${f.keyFingerprints.keyB}`);
      for (const s of f.subflows) {
        o.err(`* subflow ${s.id}: ${hostPort(s.localAddress, s.localPort)} -> ${hostPort(s.remoteAddress, s.remotePort)} ${s.state}, ${formatBytes(s.bytesReceived)} in, RTT ${s.rttMs === undefined ? '-' : s.rttMs.toFixed(1) + ' ms'}`);
      }
    }
    return { exit: EXIT_OK, transient: false, vars: vars(EXIT_OK), headerOf, stdoutBytes: output.stdoutBytes };
  } catch (e) {
    failed = true;
    if (rq.progress && received > 0) o.stderr.write('\n');
    const c = classify(deadline.error ?? (output.writeError ? output.failed() : e), phase);
    await output.discard();
    return { exit: c.exit, message: c.message, transient: c.transient, vars: vars(c.exit, c.message), headerOf, stdoutBytes: output.stdoutBytes };
  } finally {
    clearTimeout(maxTimer);
    current.req?.destroy();
    agent.destroy();
    output.release();
  }
}

/** The headers of one hop: curl's defaults (Host, User-Agent, Accept), -r, the body's, then -H's (replacing or removing). */
function requestHeaders(rq: GetRequest, url: URL, user: [string, string | null][], body: Buffer | undefined): Record<string, string> {
  const h = new Map<string, [string, string]>();
  const set = (name: string, value: string) => h.set(name.toLowerCase(), [name, value]);
  set('Host', url.host);
  set('User-Agent', `mptls/${version()}`);
  set('Accept', '*/*');
  if (rq.range !== undefined) set('Range', `bytes=${rq.range}`);
  if (body) {
    set('Content-Length', String(body.length));
    set('Content-Type', 'application/x-www-form-urlencoded');
  }
  for (const [name, value] of user) {
    if (value === null) h.delete(name.toLowerCase());
    else set(name, value); // a default keeps its place, with -H's spelling
  }
  return Object.fromEntries(h.values());
}

export async function getCommand(args: string[], o: Out): Promise<number> {
  const rq = parseGetArgs(args, o);
  const showErrors = !rq.silent || rq.showError;
  if (rq.refuse) {
    if (showErrors) o.err(`mptls get: ${rq.refuse.message}`);
    return rq.refuse.exit;
  }
  if (rq.kernel) {
    const k = kernelSupport();
    if (!k.ok) {
      if (!rq.fallback) {
        if (showErrors) o.err(`mptls get: --kernel --no-fallback: kernel MPTCP ${k.reason ?? 'unavailable'}`);
        return EXIT_ERROR;
      }
      if (!rq.silent) o.err(`mptls get: warning: --kernel: kernel MPTCP ${k.reason ?? 'unavailable'}; using plain TCP`);
    }
  }
  const first = performance.now();
  let backoff = 1000;
  let left = rq.retry;
  let r: Attempt;
  for (;;) {
    r = await transfer(rq, o);
    if (r.exit === EXIT_OK || !r.transient || left <= 0 || r.stdoutBytes > 0) break;
    let delay = rq.retryDelayMs ?? backoff;
    const elapsed = performance.now() - first;
    if (r.retryAfterMs !== undefined) {
      delay = r.retryAfterMs;
      if (rq.retryMaxTimeMs !== undefined && elapsed + delay > rq.retryMaxTimeMs) break;
    }
    if (rq.retryMaxTimeMs !== undefined && elapsed >= rq.retryMaxTimeMs) break;
    if (!rq.silent) o.err(`mptls get: warning: ${r.message ?? 'transient failure'}. Will retry in ${(delay / 1000).toFixed(delay % 1000 ? 1 : 0)} seconds. ${left} retr${left === 1 ? 'y' : 'ies'} left.`);
    left--;
    if (rq.retryDelayMs === undefined) backoff = Math.min(backoff * 2, MAX_RETRY_BACKOFF_MS);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
  if (rq.writeOut !== undefined) {
    for (const piece of renderWriteOut(rq.writeOut, r.vars, r.headerOf, (m) => o.err(`mptls get: warning: ${m}`))) {
      (piece.to === 'stdout' ? o.stdout : o.stderr).write(piece.text);
    }
  }
  if (r.exit !== EXIT_OK && showErrors) o.err(r.exit === EXIT_HTTP ? `mptls get: ${r.message}` : `mptls get: ${rq.url.href}: ${r.message}`);
  return r.exit;
}
