/**
 * `mptls serve`: HTTPS over TLS-bound multipath TCP (and plain TLS) on one
 * port, with --kernel also to Linux kernel MPTCP clients; a directory
 * (`--dir`, static-files.ts, byte ranges included), a status page
 * (`--status`, status-page.ts), or a minimal page; with --metrics the
 * server's Prometheus metrics on a second, plain HTTP, loopback port
 * (metrics-server.ts). Access log on stderr (with each connection's mode:
 * userspace, kernel or fallback); stops on SIGINT/SIGTERM or when
 * `io.signal` aborts.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { cluster, https, type MptcpSocketInfo, type MptcpSubflow, type MptlsSocket } from '../api/index.js';
import { kernelSupport } from '../transport/kernel/index.js';
import { kernelListening, listenOrReport, untilStopped } from './listen.js';
import { parse, readFileOrUsage, UsageError } from './args.js';
import { hostPort } from './format.js';
import { describeError, EXIT_ERROR, EXIT_OK, type Out } from './io.js';
import { sendBody, sendText } from './reply.js';
import { startMetricsServer } from './metrics-server.js';
import { serveFile } from './static-files.js';
import { MINIMAL_PAGE, sendStatus } from './status-page.js';

export const HELP = `Usage: mptls serve --cert FILE --key FILE [--port N] [--host H] [--announce ADDR]... [--kernel] [--dir DIR | --status] [--metrics PORT] [--workers N]

Serves HTTPS on one port to multipath clients (mptls, userspace transport) and
plain TLS clients alike; with --kernel to Linux kernel MPTCP clients too.

  --cert FILE       server certificate chain (PEM)
  --key FILE        private key (PEM)
  --port N          port (default 8443; 0 = any free port, printed)
  --host H          address to listen on (default 127.0.0.1)
  --announce ADDR   extra address to announce to clients (ADD_ADDR, sent only
                    after both ends confirmed the TLS-derived keys); repeatable
  --kernel          also listen with Linux kernel MPTCP (an IPPROTO_MPTCP
                    socket): "mptcpize run curl", "mptls get --kernel" and
                    other kernel-MPTCP clients get MPTCP, everyone else is
                    served as without it; an error when the kernel cannot
                    (not Linux, koffi missing, net.mptcp.enabled = 0)
  --dir DIR         serve the files under DIR (GET/HEAD; no escape out of
                    DIR); one byte range per request ("curl -r 0-99", "-500",
                    "100-": 206 with Content-Range; past the end: 416 with
                    Content-Range bytes */SIZE; If-Range with the
                    Last-Modified date); several ranges get the whole file
                    (200)
  --status          serve a status page (off by default): "/" in HTML,
                    "/status.json" as JSON (the requesting connection's mode,
                    tokens, key fingerprints and subflows, and the
                    server-wide counters and open-connection count,
                    shown to ANY client: use it on a test server, not a
                    public one); not with --dir
  --metrics PORT    serve Prometheus metrics (server.mptcp.metrics()) over
                    plain HTTP at http://127.0.0.1:PORT/metrics (0 = any free
                    port, printed)
  --metrics-host H  the metrics address instead of 127.0.0.1 (they show every
                    connection's addresses and tokens: keep them private)
  --workers N       N processes (0 = one per core; default 1): this one owns
                    the port and hands each new TCP connection to a worker,
                    every join to the worker that owns its connection (the
                    worker id is in its token); a worker that dies is
                    replaced (its connections are gone); --metrics then
                    shows every worker's, labelled worker="ID"
  -q, --quiet       no access log on stderr
  -h, --help        this help

Without --dir or --status, "/" is a minimal page that says nothing about any
connection or the server's counters, and every other path is 404.
The access log (stderr) has one line per request: the client, the request,
status, length, the connection's mode (userspace, kernel or fallback) and its
subflows. Prints "listening on https://HOST:PORT/" (and with --metrics
"metrics on http://HOST:PORT/metrics") on stdout; stops on SIGINT/SIGTERM.`;

export async function serveCommand(args: string[], o: Out, signal: AbortSignal | undefined): Promise<number> {
  const { values } = parse(args, {
    cert: { type: 'string' },
    key: { type: 'string' },
    port: { type: 'string' },
    host: { type: 'string' },
    announce: { type: 'string', multiple: true },
    dir: { type: 'string' },
    status: { type: 'boolean' },
    kernel: { type: 'boolean' },
    metrics: { type: 'string' },
    'metrics-host': { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
    workers: { type: 'string' },
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
  const metricsPort = values.metrics === undefined ? undefined : Number(values.metrics);
  if (metricsPort !== undefined && (!/^\d+$/.test(values.metrics ?? '') || metricsPort > 65535)) throw new UsageError(`bad --metrics port ${values.metrics}`);
  if (values['metrics-host'] !== undefined && metricsPort === undefined) throw new UsageError('--metrics-host needs --metrics PORT');
  const metricsHost = values['metrics-host'] ?? '127.0.0.1';
  const workers = values.workers === undefined ? 1 : /^\d+$/.test(values.workers) ? Number(values.workers) : NaN;
  if (!Number.isInteger(workers) || workers > 256) throw new UsageError(`bad --workers ${values.workers} (0 = one per core, at most 256)`);
  const kernel = values.kernel ?? false;
  if (kernel) {
    const k = kernelSupport();
    if (!k.ok) {
      o.err(`mptls serve: --kernel: kernel MPTCP is ${k.reason ?? 'unavailable'}`);
      return EXIT_ERROR;
    }
  }

  const worker = cluster.workerIdentity();
  const processes = workers === 0 ? os.availableParallelism() : workers;
  if (processes > 1 && !worker) {
    return servePrimary({ port, host, processes, kernel, args, metricsHost, metricsPort, root, statusPage, announce }, o, signal);
  }

  const server = https.createServer({ cert, key, mptcp: { announce, ...(kernel ? { kernel: true } : {}) } }, (req, res) => {
    const socket = req.socket as MptlsSocket;
    const started = performance.now();
    if (!quiet) {
      // A TLSSocket over a multipath stream has no remoteAddress of its own: use the initial subflow's.
      const peerOf = (subflows: MptcpSubflow[]) => {
        const first = subflows.find((s) => s.id === 0) ?? subflows[0];
        return socket.remoteAddress !== undefined ? hostPort(socket.remoteAddress, socket.remotePort) : first ? hostPort(first.remoteAddress, first.remotePort) : undefined;
      };
      const peerAtStart = peerOf((socket.mptcp as MptcpSocketInfo | undefined)?.subflows() ?? []);
      let logged = false;
      // One line per request: at 'finish', or at 'close' for a response the client did not wait for.
      const log = (cut: boolean) => {
        if (logged) return;
        logged = true;
        const m = socket.mptcp as MptcpSocketInfo | undefined;
        const subflows = m?.subflows() ?? [];
        const n = subflows.length;
        o.err(
          `${peerAtStart ?? peerOf(subflows) ?? '?'} "${req.method} ${req.url}" ${res.statusCode} ` +
            `${res.getHeader('content-length') ?? '-'} ${m?.mode ?? '?'}${n ? ` ${n} subflow${n > 1 ? 's' : ''}` : ''} ${(performance.now() - started).toFixed(0)} ms` +
            (cut ? ' (connection closed before the response finished)' : ''),
        );
      };
      res.once('finish', () => log(false));
      res.once('close', () => log(!res.writableFinished));
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

  if (!(await listenOrReport(server, port, host, o, 'serve'))) return EXIT_ERROR;
  server.on('error', (e) => o.err(`mptls serve: ${describeError(e)}`));
  const stopServer = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    const grace = new Promise<void>((resolve) => setTimeout(resolve, 2000).unref());
    await Promise.race([closed, grace]);
  };
  if (worker) {
    // A worker of `--workers N`: the primary owns the port, prints, serves the metrics and stops it.
    await untilStopped(signal, true);
    await stopServer();
    return EXIT_OK;
  }
  if (kernel && !kernelListening(server, o, 'serve')) {
    await stopServer();
    return EXIT_ERROR;
  }
  const addr = server.address() as net.AddressInfo;
  let metrics: Awaited<ReturnType<typeof startMetricsServer>> | undefined;
  if (metricsPort !== undefined) {
    try {
      metrics = await startMetricsServer(metricsHost, metricsPort, () => server.mptcp.metrics());
    } catch (e) {
      o.err(`mptls serve: cannot listen for --metrics on ${hostPort(metricsHost, metricsPort)}: ${describeError(e)}`);
      await stopServer();
      return EXIT_ERROR;
    }
  }
  o.out(`listening on https://${hostPort(addr.address, addr.port)}/`);
  if (metrics) o.out(`metrics on http://${hostPort(metrics.address, metrics.port)}/metrics`);
  const transports = kernel ? 'multipath (userspace and Linux kernel MPTCP)' : 'multipath (userspace)';
  o.out(`  ${root !== undefined ? `serving ${root}` : statusPage ? 'status page at / and /status.json (server-wide counters, shown to any client)' : 'minimal page at / (no status page: --status)'}; ${transports} and plain TLS on the same port${announce.length ? `; announcing ${announce.join(', ')}` : ''}`);

  await untilStopped(signal);
  await Promise.all([stopServer(), metrics?.close()]);
  return EXIT_OK;
}

interface PrimaryPlan {
  port: number;
  host: string;
  processes: number;
  kernel: boolean;
  args: string[];
  metricsHost: string;
  metricsPort: number | undefined;
  root: string | undefined;
  statusPage: boolean;
  announce: string[];
}

/** `--workers N`: this process owns the port and dispatches; N workers (this CLI, same arguments) serve. */
async function servePrimary(plan: PrimaryPlan, o: Out, signal: AbortSignal | undefined): Promise<number> {
  let primary: cluster.ClusterPrimary;
  try {
    primary = await cluster.primary({
      port: plan.port,
      host: plan.host,
      workers: plan.processes,
      kernel: plan.kernel,
      exec: fileURLToPath(new URL('../../bin/mptls.js', import.meta.url)),
      args: ['serve', ...plan.args],
    });
  } catch (e) {
    o.err(`mptls serve: cannot listen on ${hostPort(plan.host, plan.port)}: ${describeError(e)}`);
    return EXIT_ERROR;
  }
  primary.on('exit', (w: cluster.ClusterWorker, code: number | null, sig: string | null, replaced: boolean) =>
    o.err(`mptls serve: worker ${w.id} exited (${sig ?? `code ${code}`}); its connections are gone${replaced ? '; starting a new one' : ''}`),
  );
  primary.on('error', (e: Error) => o.err(`mptls serve: ${describeError(e)}`));
  if (plan.kernel && !kernelListening(primary.server, o, 'serve')) {
    await primary.close();
    return EXIT_ERROR;
  }
  let metrics: Awaited<ReturnType<typeof startMetricsServer>> | undefined;
  if (plan.metricsPort !== undefined) {
    try {
      metrics = await startMetricsServer(plan.metricsHost, plan.metricsPort, () => primary.metrics());
    } catch (e) {
      o.err(`mptls serve: cannot listen for --metrics on ${hostPort(plan.metricsHost, plan.metricsPort)}: ${describeError(e)}`);
      await primary.close();
      return EXIT_ERROR;
    }
  }
  const addr = primary.address;
  o.out(`listening on https://${hostPort(addr.address, addr.port)}/`);
  if (metrics) o.out(`metrics on http://${hostPort(metrics.address, metrics.port)}/metrics`);
  const what = plan.root !== undefined ? `serving ${plan.root}` : plan.statusPage ? 'status page at / and /status.json (per worker)' : 'minimal page at / (no status page: --status)';
  o.out(`  ${what}; ${plan.processes} workers (joins routed to the worker whose id their token carries); ${plan.kernel ? 'userspace and Linux kernel MPTCP' : 'userspace multipath'} and plain TLS on the same port`);
  await untilStopped(signal);
  await Promise.all([primary.close(), metrics?.close()]);
  return EXIT_OK;
}
