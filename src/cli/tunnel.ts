/**
 * `mptls tunnel`: any TCP application over TLS-bound multipath, the client
 * side of `mptls proxy`. ssh's -L (a local port forwarded to a fixed
 * target) and -D (a local SOCKS5 server), each local connection over its
 * own multipath connection to the proxy, which connects on (HTTP CONNECT).
 * The library does the work (src/api/tunnel.ts); this file parses the
 * command line (-L/-D specs exactly as ssh writes them, --local checked as
 * `get` checks it), prints one line per listener on stdout and one per
 * tunnel on stderr, and runs until SIGINT/SIGTERM (or `signal`).
 */
import dns from 'node:dns';
import fs from 'node:fs';
import net from 'node:net';
import { createTunnel, type TunnelForward, type TunnelOptions, type TunnelSocks, type TunnelTarget } from '../api/tunnel.js';
import { isBearerToken } from '../api/tunnel/connect-head.js';
import { targetHostProblem } from '../api/tunnel/target.js';
import { normalizePin } from '../tls/pin.js';
import { kernelSupport } from '../transport/kernel/index.js';
import { parse, readFileOrUsage, UsageError } from './args.js';
import { formatBytes, hostPort } from './format.js';
import { describeError, EXIT_ERROR, EXIT_INTERFACE, EXIT_OK, EXIT_RESOLVE, type Out } from './io.js';
import { untilStopped } from './listen.js';
import { localAddressProblem } from './local-address.js';

export const HELP = `Usage: mptls tunnel --server HOST:PORT (-L [BIND:]PORT:HOST:HOSTPORT)... (-D [BIND:]PORT)... [options]

Carries any TCP application over TLS-bound multipath TCP to an "mptls proxy"
(HTTP CONNECT over multipath), which connects on to the target. Each local
connection gets its own multipath connection to the proxy. At least one -L
or -D.

  -L, --forward [BIND:]PORT:HOST:HOSTPORT
                         listen on BIND:PORT (default 127.0.0.1) and tunnel
                         each connection to HOST:HOSTPORT, as ssh -L:
                         8080:db.internal:5432, 127.0.0.1:8080:10.0.0.5:22,
                         [::1]:8080:[2001:db8::5]:22; BIND "localhost" is
                         127.0.0.1, "*" or empty all IPv4 interfaces; the
                         proxy resolves HOST; PORT 0: any free port (printed)
  -D, --socks [BIND:]PORT
                         a SOCKS5 server on BIND:PORT (default 127.0.0.1):
                         CONNECT only, no authentication (so keep it on
                         loopback: any other bind prints a warning); names
                         go to the proxy unresolved (curl --socks5-hostname)
  --server HOST:PORT     the proxy ([V6]:PORT for an IPv6 address)
  --cacert FILE          trust the CA certificate(s) in FILE (PEM)
  --pin PIN              require the proxy key's SPKI SHA-256 (sha256//BASE64,
                         curl's --pinnedpubkey format); without --cacert the
                         pin alone is checked (no CA, no name); repeatable
  -k, --insecure         do not verify the proxy's certificate
  --cert FILE, --key FILE
                         a client certificate and its key (PEM)
  --token-file FILE      send the token on the file's first line that is not
                         empty or a # comment as "Proxy-Authorization: Bearer"
  --local ADDR           local address for a subflow: the first one for the
                         initial subflow, each further one opens a join;
                         repeatable. An address that is not this host's, or
                         not of the proxy's family, is an error (exit 45).
                         --local auto: every address of this host in the
                         proxy's family, followed as addresses come and go
                         (a new one is joined, a vanished one's subflows
                         closed; mptcp.localAddresses 'auto')
  --kernel               Linux kernel MPTCP instead of the userspace
                         transport (at most one --local)
  --no-fallback          fail a tunnel instead of falling back to plain TLS
                         when the proxy does not speak multipath
  --connect-timeout SECONDS
                         TCP, MP_CAPABLE, TLS and the proxy's answer within
                         this, per tunnel (default 10)
  -q, --quiet            no per-tunnel lines on stderr
  -h, --help             this help

Prints one line per listener ("forwarding 127.0.0.1:8080 -> db.internal:5432
via HOST:PORT", "socks5 on 127.0.0.1:1080 via HOST:PORT") and, on stderr, one
per tunnel when it ends (the local peer, the target, the multipath mode and
subflows, bytes each way, the duration, or why it failed). A forward the
proxy refuses is reset; a SOCKS client gets the matching SOCKS5 reply (02
for 403/407, 04 for 502, 06 for 504, 01 otherwise). Runs until SIGINT or
SIGTERM. Exit status: 0 stopped, 1 cannot listen, 2 usage, 6 the proxy's
name does not resolve, 45 unusable --local.`;

const TUNNEL_OPTIONS = {
  server: { type: 'string' },
  forward: { type: 'string', short: 'L', multiple: true },
  socks: { type: 'string', short: 'D', multiple: true },
  cacert: { type: 'string' },
  pin: { type: 'string', multiple: true },
  insecure: { type: 'boolean', short: 'k' },
  cert: { type: 'string' },
  key: { type: 'string' },
  'token-file': { type: 'string' },
  local: { type: 'string', multiple: true },
  kernel: { type: 'boolean' },
  'no-fallback': { type: 'boolean' },
  'connect-timeout': { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
} as const;

/** One field of a spec: its text, and whether it was in brackets (an IPv6 address). */
interface Field {
  text: string;
  bracketed: boolean;
}

/** ssh's colon-separated spec fields, "[v6]" fields whole; undefined when the brackets do not close. */
export function splitSpec(spec: string): Field[] | undefined {
  const out: Field[] = [];
  let i = 0;
  for (;;) {
    if (spec[i] === '[') {
      const j = spec.indexOf(']', i);
      if (j < 0) return undefined;
      out.push({ text: spec.slice(i + 1, j), bracketed: true });
      i = j + 1;
      if (i === spec.length) return out;
      if (spec[i] !== ':') return undefined;
      i++;
    } else {
      const j = spec.indexOf(':', i);
      if (j < 0) {
        out.push({ text: spec.slice(i), bracketed: false });
        return out;
      }
      out.push({ text: spec.slice(i, j), bracketed: false });
      i = j + 1;
    }
  }
}

function portOf(f: Field, min: number): number | undefined {
  if (f.bracketed || !/^\d{1,5}$/.test(f.text)) return undefined;
  const p = Number(f.text);
  return p >= min && p <= 65535 ? p : undefined;
}

/** A bind address: an IP, "localhost" (127.0.0.1), "*" or empty (0.0.0.0); undefined when it is none. */
function bindOf(f: Field): string | undefined {
  if (f.bracketed) return net.isIPv6(f.text) ? f.text : undefined;
  if (f.text === '' || f.text === '*') return '0.0.0.0';
  if (f.text === 'localhost') return '127.0.0.1';
  return net.isIPv4(f.text) ? f.text : undefined;
}

function hostOf(f: Field): string | undefined {
  if (f.bracketed) return net.isIPv6(f.text) ? f.text : undefined;
  return targetHostProblem(f.text) === undefined && !net.isIPv6(f.text) ? f.text : undefined;
}

const L_SYNTAX = '-L needs [BIND:]PORT:HOST:HOSTPORT (8080:db.internal:5432, 127.0.0.1:8080:10.0.0.5:22, [::1]:8080:[2001:db8::5]:22)';

/** `-L [BIND:]PORT:HOST:HOSTPORT`, as ssh. */
export function parseForward(spec: string): TunnelForward {
  const f = splitSpec(spec);
  if (!f || (f.length !== 3 && f.length !== 4)) throw new UsageError(`${L_SYNTAX}, got ${JSON.stringify(spec)}`);
  const [b, p, h, hp] = (f.length === 4 ? f : [undefined, ...f]) as [Field | undefined, Field, Field, Field];
  const bind = b === undefined ? '127.0.0.1' : bindOf(b);
  if (bind === undefined) throw new UsageError(`-L ${spec}: the bind address ${JSON.stringify(b!.text)} is not an IP address, localhost or *`);
  const port = portOf(p, 0);
  if (port === undefined) throw new UsageError(`-L ${spec}: ${JSON.stringify(p.text)} is not a port (0-65535)`);
  const host = hostOf(h);
  if (host === undefined) throw new UsageError(`-L ${spec}: ${JSON.stringify(h.text)} is not a host name or an IP address (IPv6 in brackets)`);
  const targetPort = portOf(hp, 1);
  if (targetPort === undefined) throw new UsageError(`-L ${spec}: ${JSON.stringify(hp.text)} is not a port (1-65535)`);
  return { bind, port, target: { host, port: targetPort } };
}

/** `-D [BIND:]PORT`, as ssh. */
export function parseSocks(spec: string): TunnelSocks {
  const f = splitSpec(spec);
  if (!f || (f.length !== 1 && f.length !== 2)) throw new UsageError(`-D needs [BIND:]PORT (1080, 127.0.0.1:1080, [::1]:1080), got ${JSON.stringify(spec)}`);
  const [b, p] = (f.length === 2 ? f : [undefined, f[0]]) as [Field | undefined, Field];
  const bind = b === undefined ? '127.0.0.1' : bindOf(b);
  if (bind === undefined) throw new UsageError(`-D ${spec}: the bind address ${JSON.stringify(b!.text)} is not an IP address, localhost or *`);
  const port = portOf(p, 0);
  if (port === undefined) throw new UsageError(`-D ${spec}: ${JSON.stringify(p.text)} is not a port (0-65535)`);
  return { bind, port };
}

/** `--server HOST:PORT` ([V6]:PORT). */
export function parseServer(spec: string): { host: string; port: number } {
  const f = splitSpec(spec);
  const host = f?.length === 2 ? hostOf(f[0]) : undefined;
  const port = f?.length === 2 ? portOf(f[1], 1) : undefined;
  if (host === undefined || port === undefined) throw new UsageError(`--server needs HOST:PORT ([V6]:PORT for IPv6), got ${JSON.stringify(spec)}`);
  return { host, port };
}

/** The first line of a token file that is neither empty nor a # comment. */
export function readToken(file: string): string {
  const text = readFileOrUsage(file, 'token file').toString('utf8');
  const line = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .find((l) => l !== '' && !l.startsWith('#'));
  if (line === undefined) throw new UsageError(`the token file ${file} has no token (only empty lines and # comments)`);
  if (!isBearerToken(line)) throw new UsageError(`the token in ${file} is not a bearer token (letters, digits, -._~+/ and trailing =)`);
  return line;
}

function isLoopback(address: string): boolean {
  return address === '::1' || /^127\./.test(address) || address === 'localhost';
}

function targetText(t: TunnelTarget | undefined): string {
  return t ? hostPort(t.host, t.port) : '?';
}

/** SECONDS (decimals allowed, > 0) in ms. */
function seconds(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(v) || Number(v) <= 0) throw new UsageError(`${what} needs a number of seconds > 0, got ${JSON.stringify(v)}`);
  return Math.round(Number(v) * 1000);
}

export async function tunnelCommand(args: string[], o: Out, signal?: AbortSignal): Promise<number> {
  const { values } = parse(args, TUNNEL_OPTIONS);
  if (values.server === undefined) throw new UsageError('--server HOST:PORT is required');
  const server = parseServer(values.server);
  const forwards = (values.forward ?? []).map(parseForward);
  const socks = (values.socks ?? []).map(parseSocks);
  if (forwards.length === 0 && socks.length === 0) throw new UsageError('at least one -L [BIND:]PORT:HOST:HOSTPORT or -D [BIND:]PORT is required');
  if ((values.cert === undefined) !== (values.key === undefined)) throw new UsageError('--cert and --key go together');
  const auto = values.local?.includes('auto') ?? false;
  if (auto && values.local!.length > 1) throw new UsageError('--local auto takes no other --local');
  const local = auto ? [] : (values.local ?? []);
  for (const a of local) if (!net.isIP(a)) throw new UsageError(`--local needs an IP address or auto, got ${JSON.stringify(a)}`);
  const kernel = values.kernel ?? false;
  if (kernel && auto) throw new UsageError('--kernel and --local auto: the kernel path manager follows the addresses itself (ip mptcp endpoint)');
  if (kernel && local.length > 1) throw new UsageError('--kernel takes one --local at most: the kernel path manager opens the other subflows (ip mptcp endpoint add ADDR dev IF subflow)');
  const pins = values.pin;
  for (const p of pins ?? []) {
    try {
      for (const one of p.split(';').filter((x) => x.trim())) normalizePin(one);
    } catch (e) {
      throw new UsageError(`--pin: ${(e as Error).message}`);
    }
  }
  const ca = values.cacert !== undefined ? readFileOrUsage(values.cacert, 'CA file') : undefined;
  const cert = values.cert !== undefined ? readFileOrUsage(values.cert, 'certificate') : undefined;
  const key = values.key !== undefined ? readFileOrUsage(values.key, 'key') : undefined;
  const tokenFile = values['token-file'];
  const token = tokenFile !== undefined ? readToken(tokenFile) : undefined;
  const connectTimeoutMs = seconds(values['connect-timeout'], '--connect-timeout');
  const quiet = values.quiet ?? false;
  const fallback = !values['no-fallback'];
  if (tokenFile !== undefined) {
    try {
      if (process.platform !== 'win32' && (fs.statSync(tokenFile).mode & 0o077) !== 0) o.err(`mptls tunnel: warning: the token file ${tokenFile} is readable by other users (chmod 600 it)`);
    } catch {
      // read above: a stat that fails now changes nothing
    }
  }

  // The proxy's address, once (as get): the --local checks need its family.
  let ip = server.host;
  if (!net.isIP(ip)) {
    try {
      const family = local.length ? net.isIP(local[0]) : 0;
      ip = (await dns.promises.lookup(server.host, family ? { family } : {})).address;
    } catch (e) {
      o.err(`mptls tunnel: cannot resolve the proxy ${server.host}: ${describeError(e)}`);
      return EXIT_RESOLVE;
    }
  }
  for (const l of local) {
    const problem = localAddressProblem(l, ip);
    if (problem) {
      o.err(`mptls tunnel: ${problem}`);
      return EXIT_INTERFACE;
    }
  }
  if (kernel) {
    const k = kernelSupport();
    if (!k.ok) {
      if (!fallback) {
        o.err(`mptls tunnel: --kernel --no-fallback: kernel MPTCP ${k.reason ?? 'unavailable'}`);
        return EXIT_ERROR;
      }
      o.err(`mptls tunnel: warning: --kernel: kernel MPTCP ${k.reason ?? 'unavailable'}; using plain TCP`);
    }
  }

  const options: TunnelOptions = {
    server: { host: ip, port: server.port },
    ...(net.isIP(server.host) ? {} : { servername: server.host }),
    ...(ca ? { ca } : {}),
    ...(cert && key ? { cert, key } : {}),
    ...(pins ? { pin: pins } : {}),
    // A pin without a CA is the check on its own (an ssh-like key pin); --insecure checks nothing else either.
    ...(values.insecure || (pins && !ca) ? { rejectUnauthorized: false } : {}),
    mptcp: { ...(auto ? { localAddresses: 'auto' as const } : local.length ? { localAddresses: local } : {}), fallback, ...(kernel ? { transport: 'kernel' as const } : {}) },
    ...(token !== undefined ? { token } : {}),
    forwards,
    socks,
    ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}),
  };
  const via = hostPort(server.host, server.port);
  const tunnel = createTunnel(options);
  if (!quiet) {
    tunnel.on('tunnel-close', (e) => {
      const kind = e.listener === 'socks' ? 'socks5' : 'forward';
      o.err(
        `${hostPort(e.local.address, e.local.port)} -> ${targetText(e.target)} (${kind}): ${e.mode}, ${e.subflows} subflow${e.subflows === 1 ? '' : 's'}, ` +
          `${formatBytes(e.bytesUp)} up, ${formatBytes(e.bytesDown)} down, ${e.durationMs.toFixed(0)} ms${e.error ? `, ended by an error: ${e.error}` : ''}`,
      );
    });
    tunnel.on('error-connection', (e) => {
      const kind = e.listener === 'socks' ? 'socks5' : 'forward';
      o.err(`${hostPort(e.local.address, e.local.port)}${e.target ? ` -> ${targetText(e.target)}` : ''} (${kind}): failed: ${e.reason}`);
    });
  }
  tunnel.on('error', (e) => o.err(`mptls tunnel: ${describeError(e)}`));
  try {
    await tunnel.listen();
  } catch (e) {
    o.err(`mptls tunnel: cannot listen: ${describeError(e)}`);
    return EXIT_ERROR;
  }
  if (values.insecure) o.err('mptls tunnel: warning: --insecure: the proxy is not authenticated (anyone on the path can be the proxy)');
  for (const a of tunnel.addresses()) {
    const at = hostPort(a.address, a.port);
    if (a.kind === 'forward') o.out(`forwarding ${at} -> ${targetText(a.target)} via ${via}`);
    else o.out(`socks5 on ${at} via ${via}`);
    if (!isLoopback(a.address)) {
      o.err(
        a.kind === 'socks'
          ? `mptls tunnel: warning: the SOCKS5 server on ${at} is not on loopback and authenticates nobody: anyone who can reach it can use the tunnel (and your token) to reach anything the proxy allows`
          : `mptls tunnel: warning: the forward on ${at} is not on loopback: anyone who can reach it can use the tunnel to ${targetText(a.target)}`,
      );
    }
  }
  await untilStopped(signal);
  await tunnel.close();
  return EXIT_OK;
}
