/**
 * `mptls serve`: HTTPS over TLS-bound multipath TCP (and plain TLS) on one
 * port; a directory (`--dir`, static-files.ts), a status page (`--status`,
 * status-page.ts), or a minimal page. Access log on stderr; stops on
 * SIGINT/SIGTERM or when `io.signal` aborts.
 */
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import { https, type MptcpSocketInfo, type MptlsSocket } from '../api/index.js';
import { parse, readFileOrUsage, UsageError } from './args.js';
import { hostPort } from './format.js';
import { describeError, EXIT_ERROR, EXIT_OK, type Out } from './io.js';
import { sendBody, sendText } from './reply.js';
import { serveFile } from './static-files.js';
import { MINIMAL_PAGE, sendStatus } from './status-page.js';

export const HELP = `Usage: mptls serve --cert FILE --key FILE [--port N] [--host H] [--announce ADDR]... [--dir DIR | --status]

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
Prints "listening on https://HOST:PORT/" on stdout; stops on SIGINT/SIGTERM.`;

export async function serveCommand(args: string[], o: Out, signal: AbortSignal | undefined): Promise<number> {
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
    if (!sendStatus(res, p, socket, server.mptcp, head)) sendText(res, 404, 'Not Found', head);
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

  await untilStopped(signal);
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  const grace = new Promise<void>((resolve) => setTimeout(resolve, 2000).unref());
  await Promise.race([closed, grace]);
  return EXIT_OK;
}

/** Resolves when `signal` aborts, or without one on the process's first SIGINT or SIGTERM. */
async function untilStopped(signal: AbortSignal | undefined): Promise<void> {
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
}
