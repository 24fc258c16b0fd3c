/**
 * `mptls proxy`: an HTTP CONNECT proxy over TLS-bound multipath TCP (and
 * plain TLS, on the same port): `createProxyServer` (src/api/proxy.ts) with
 * the allow list, client certificates and bearer tokens from the command
 * line. Refuses to start without --allow. Access log on stderr: one line per
 * tunnel when it closes (client, target, mode, subflows, bytes, duration)
 * and one per refusal (status and reason); stops on SIGINT/SIGTERM or when
 * `signal` aborts.
 */
import net from 'node:net';
import { createProxyServer, isBearerToken, parseAllowPattern, type ProxyServer, type ProxyTunnel, type ProxyTunnelSummary } from '../api/proxy.js';
import { kernelSupport } from '../transport/kernel/index.js';
import { kernelListening, listenOrReport, untilStopped } from './listen.js';
import { parse, readFileOrUsage, UsageError } from './args.js';
import { hostPort } from './format.js';
import { describeError, EXIT_ERROR, EXIT_OK, type Out } from './io.js';

export const HELP = `Usage: mptls proxy --cert FILE --key FILE --allow HOST:PORT [--allow HOST:PORT]... [--host H] [--port N] [--client-ca FILE] [--token-file FILE] [--announce ADDR]... [--kernel] [--idle-timeout S] [--connect-timeout S] [-q]

An HTTP CONNECT proxy (RFC 9110) over TLS-bound multipath TCP: clients
("mptls tunnel", or "curl -p --proxy https://HOST:PORT --proxy-cacert CA")
send "CONNECT host:port HTTP/1.1" over TLS, and once the target is allowed
and connected get "200 Connection Established" and a raw byte stream to it.
Multipath (userspace) and plain TLS clients on one port.

  --cert FILE         server certificate chain (PEM)
  --key FILE          private key (PEM)
  --allow HOST:PORT   where tunnels may go (required; repeatable). HOST: an
                      exact name (case-insensitive; matches the name as the
                      client asked for it), an IP address, a CIDR block
                      (10.0.0.0/8, 2001:db8::/32: matches an IP, or a name
                      whose resolved address is inside it) or *; PORT: a
                      number, FROM-TO, or *. E.g. 10.0.0.5:22, db.internal:*,
                      *:443. Anything else: 403
  --client-ca FILE    require a client certificate signed by this CA (PEM)
  --token-file FILE   require "Proxy-Authorization: Bearer TOKEN", TOKEN one
                      of the file's lines (blank lines and # comments
                      skipped); missing or wrong: 407
  --host H            address to listen on (default 127.0.0.1)
  --port N            port (default 8443; 0 = any free port, printed)
  --announce ADDR     extra address to announce to multipath clients
                      (ADD_ADDR); repeatable
  --kernel            also listen with Linux kernel MPTCP
  --idle-timeout S    close a tunnel after S seconds without a byte either
                      way (default 300; 0 = never)
  --connect-timeout S resolving and connecting to a target (default 10): 504
  -q, --quiet         no access log on stderr
  -h, --help          this help

Without --client-ca or --token-file anyone who reaches the port may open
tunnels to what --allow names (a warning says so): use both, and keep the
allow list narrow ("*:*" makes an open relay, loopback and the proxy's own
host included). The access log (stderr) has one line per tunnel when it
closes: the client, the target and the address connected to, the mode
(userspace, fallback or kernel), subflows, bytes up/down, duration; and
one per refused request: its status and reason. Prints
"proxying on https://HOST:PORT/" on stdout; stops on SIGINT/SIGTERM.`;

/** SECONDS (decimals allowed, >= 0) in ms; undefined when absent. */
function seconds(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(v)) throw new UsageError(`${what} needs a number of seconds, got ${JSON.stringify(v)}`);
  return Math.round(Number(v) * 1000);
}

/** The tokens of a token file: one per line, blank lines and # comments skipped. */
export function parseTokenFile(text: string, file: string): string[] {
  const tokens: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') return;
    if (!isBearerToken(line)) throw new UsageError(`--token-file ${file} line ${i + 1}: not a bearer token (letters, digits, - . _ ~ + / and trailing =)`);
    tokens.push(line);
  });
  if (tokens.length === 0) throw new UsageError(`--token-file ${file} holds no token`);
  return tokens;
}

export async function proxyCommand(args: string[], o: Out, signal: AbortSignal | undefined): Promise<number> {
  const { values } = parse(args, {
    cert: { type: 'string' },
    key: { type: 'string' },
    host: { type: 'string' },
    port: { type: 'string' },
    allow: { type: 'string', multiple: true },
    'client-ca': { type: 'string' },
    'token-file': { type: 'string' },
    announce: { type: 'string', multiple: true },
    kernel: { type: 'boolean' },
    'idle-timeout': { type: 'string' },
    'connect-timeout': { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
  });
  if (!values.cert || !values.key) throw new UsageError('--cert and --key are required');
  const allow = values.allow ?? [];
  if (allow.length === 0) throw new UsageError('--allow HOST:PORT is required (without an allow list the proxy would be an open relay)');
  for (const a of allow) {
    try {
      parseAllowPattern(a);
    } catch (e) {
      throw new UsageError(`--allow: ${(e as Error).message}`);
    }
  }
  const port = values.port === undefined ? 8443 : /^\d+$/.test(values.port) ? Number(values.port) : NaN;
  if (!Number.isInteger(port) || port > 65535) throw new UsageError(`bad --port ${values.port}`);
  const host = values.host ?? '127.0.0.1';
  const announce = values.announce ?? [];
  for (const a of announce) if (!net.isIP(a)) throw new UsageError(`--announce needs an IP address, got ${JSON.stringify(a)}`);
  const idleTimeoutMs = seconds(values['idle-timeout'], '--idle-timeout');
  const connectTimeoutMs = seconds(values['connect-timeout'], '--connect-timeout');
  if (connectTimeoutMs === 0) throw new UsageError('--connect-timeout must be more than 0');
  const cert = readFileOrUsage(values.cert, 'certificate');
  const key = readFileOrUsage(values.key, 'key');
  const clientCa = values['client-ca'] === undefined ? undefined : readFileOrUsage(values['client-ca'], 'client CA');
  const tokenFile = values['token-file'];
  const tokens = tokenFile === undefined ? undefined : parseTokenFile(readFileOrUsage(tokenFile, 'token file').toString('utf8'), tokenFile);
  const quiet = values.quiet ?? false;
  const kernel = values.kernel ?? false;

  if (kernel) {
    const k = kernelSupport();
    if (!k.ok) {
      o.err(`mptls proxy: --kernel: kernel MPTCP is ${k.reason ?? 'unavailable'}`);
      return EXIT_ERROR;
    }
  }

  let server: ProxyServer;
  try {
    server = createProxyServer({
      cert,
      key,
      allow,
      ...(clientCa ? { clientCa } : {}),
      ...(tokens ? { tokens } : {}),
      ...(idleTimeoutMs !== undefined ? { idleTimeoutMs } : {}),
      ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}),
      mptcp: { announce, ...(kernel ? { kernel: true } : {}) },
    });
  } catch (e) {
    o.err(`mptls proxy: ${describeError(e)}`);
    return EXIT_ERROR;
  }
  if (!quiet) {
    server.on('tunnel', (t: ProxyTunnel) => {
      const client = hostPort(t.socket.remoteAddress, t.socket.remotePort);
      const peer = client !== '?' ? client : (() => {
        const first = t.subflows()[0];
        return first ? hostPort(first.remoteAddress, first.remotePort) : '?';
      })();
      const mode = t.mode;
      t.once('close', (s: ProxyTunnelSummary) => {
        const n = t.subflowsUsed();
        const why = s.reason === 'done' ? '' : ` (${s.reason}${s.error ? `: ${describeError(s.error)}` : ''})`;
        o.err(
          `${peer} CONNECT ${t.target} -> ${hostPort(t.address, t.port)} 200 ${mode} ${n} subflow${n > 1 ? 's' : ''} ` +
            `up ${s.bytesUp} B down ${s.bytesDown} B ${s.durationMs.toFixed(0)} ms${why}`,
        );
      });
    });
    server.on('refused', (r) => {
      const mode = r.socket.mptcp?.mode ?? '?';
      o.err(`${r.client} CONNECT ${r.target ?? '-'} ${r.status} ${mode} "${r.reason}"`);
    });
    server.on('tlsClientError', (err: Error, s: net.Socket) => {
      o.err(`${hostPort(s.remoteAddress, s.remotePort)} TLS error: ${describeError(err)}`);
    });
  }
  if (!(await listenOrReport(server, port, host, o, 'proxy'))) return EXIT_ERROR;
  server.on('error', (e) => o.err(`mptls proxy: ${describeError(e)}`));
  const stop = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    const grace = new Promise<void>((resolve) => setTimeout(resolve, 6000).unref());
    await Promise.race([closed, grace]);
  };
  if (kernel && !kernelListening(server, o, 'proxy')) {
    await stop();
    return EXIT_ERROR;
  }
  const addr = server.address() as net.AddressInfo;
  o.out(`proxying on https://${hostPort(addr.address, addr.port)}/`);
  const auth = [clientCa ? 'client certificates' : '', tokens ? `${tokens.length} bearer token${tokens.length > 1 ? 's' : ''}` : ''].filter(Boolean).join(' and ');
  o.out(`  CONNECT to ${allow.join(', ')}; ${auth ? `requires ${auth}` : 'no authentication'}; multipath and plain TLS on the same port${announce.length ? `; announcing ${announce.join(', ')}` : ''}`);
  if (!clientCa && !tokens) {
    o.err(`mptls proxy: warning: no --client-ca or --token-file: anyone who reaches ${hostPort(addr.address, addr.port)} may open tunnels to ${allow.join(', ')}`);
  }

  await untilStopped(signal);
  await stop();
  return EXIT_OK;
}

