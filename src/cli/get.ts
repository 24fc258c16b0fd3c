/**
 * `mptls get URL`: a small curl over multipath. The body goes to stdout or
 * `-o FILE` (removed on failure); a progress meter on a terminal's stderr;
 * `-v` prints the connection's multipath facts at the end.
 */
import fs from 'node:fs';
import type http from 'node:http';
import net from 'node:net';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { https, type MptcpSubflow, type MptlsSocket } from '../api/index.js';
import { parse, readFileOrUsage, UsageError } from './args.js';
import { connectionFacts } from './facts.js';
import { formatBytes, formatRate, hostPort } from './format.js';
import { describeError, EXIT_ERROR, EXIT_HTTP, EXIT_OK, type Out } from './io.js';

export const HELP = `Usage: mptls get URL [--local ADDR]... [-o FILE] [-k] [--cacert FILE] [--pin PIN] [--no-fallback]

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
1 connection/TLS/I/O error, 2 usage, 22 HTTP status >= 400.`;

export async function getCommand(args: string[], o: Out): Promise<number> {
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
