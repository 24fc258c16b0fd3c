/**
 * Cluster mode: one mptls server over every core, in the manner of
 * node:cluster. The primary calls `cluster.primary({ port, workers })`: it
 * forks the workers (node:cluster, the same script), owns the listening
 * port, and hands each new TCP connection to a worker by its first bytes
 * (src/transport/userspace/dispatch.ts): an MP_JOIN to the worker whose id
 * its token carries, new connections and plain TLS clients in turn. Each
 * worker runs its server as usual — `createServer` / `https.createServer` /
 * `http2.createSecureServer`, then `listen()` — and mptls, seeing it was
 * forked by a primary, makes that `listen` take its connections from the
 * primary instead of a port, and gives its tokens the worker's id
 * (`WorkerTokenAllocator`: bits 23..16; a `serverId` keeps bits 31..24, so
 * HAProxy in front of several hosts still routes by the first byte).
 *
 * A worker that dies takes its connections with it; the primary refuses the
 * joins for its id (MP_TCPRST, counted `MPJoinNoTokenFound`) and, unless
 * `restart: false`, forks a replacement with the same id and fresh tokens.
 * Only the first mptls server a worker listens with is served.
 */
import nodeCluster, { type Worker } from 'node:cluster';
import { EventEmitter, once } from 'node:events';
import net from 'node:net';
import os from 'node:os';
import type { MibCounters } from '../core/mib.js';
import { Dispatcher, useKernelListener, type DispatchWorker } from '../transport/index.js';
import { coded } from './errors.js';
import { renderPrometheus, type MetricFamily } from './metrics.js';

/** Set in a worker's environment by the primary: which worker it is, where the port is. */
export const CLUSTER_ENV = 'MPTLS_CLUSTER';

/** What a worker learns from its environment. */
export interface WorkerIdentity {
  workerId: number;
  address: net.AddressInfo;
  serverId?: number;
}

/** This process's identity as a worker of an mptls primary, or undefined. */
export function workerIdentity(): WorkerIdentity | undefined {
  const raw = process.env[CLUSTER_ENV];
  if (!raw || !nodeCluster.isWorker) return undefined;
  try {
    const v = JSON.parse(raw) as WorkerIdentity;
    if (!Number.isInteger(v.workerId) || v.workerId < 0 || v.workerId > 255 || typeof v.address?.port !== 'number') return undefined;
    return v;
  } catch {
    return undefined;
  }
}

export interface PrimaryOptions {
  /** Port to listen on (0: any free one, then `primary.address.port`). */
  port: number;
  /** Address to listen on (default: node's, every address). */
  host?: string;
  /** Workers to fork (default: one per core, `os.availableParallelism()`); at most 256. */
  workers?: number;
  /** Fork a replacement (same id, fresh tokens) when a worker dies (default true). */
  restart?: boolean;
  /** A host id for every worker's tokens (bits 31..24), for HAProxy in front of several hosts. */
  serverId?: number;
  /** Listen with Linux kernel MPTCP too (the workers' servers need `mptcp.kernel` to report it). */
  kernel?: boolean;
  /** Passed to `cluster.setupPrimary` (default: this script, its arguments). */
  exec?: string;
  args?: string[];
  /** Extra environment for the workers. */
  env?: NodeJS.ProcessEnv;
  /** A new connection must show its first bytes within this (default 10 000 ms). */
  firstBytesTimeoutMs?: number;
}

/** One worker as the primary sees it. */
export interface ClusterWorker {
  readonly id: number;
  readonly process: Worker;
  /** Its server called `listen()` and its channel is open: it is sent connections (false again from its 'disconnect' on). */
  readonly ready: boolean;
}

interface Slot extends DispatchWorker, ClusterWorker {
  ready: boolean;
}

/**
 * The primary of an mptls cluster. Events: 'worker' (a worker is ready,
 * `(worker: ClusterWorker)`), 'exit' (`(worker, code, signal, replaced)`:
 * a worker is gone; `replaced`: a new one is being forked), 'error'. During
 * `close()` workers exit without an 'exit' event.
 */
export class ClusterPrimary extends EventEmitter {
  readonly server: net.Server;
  readonly dispatcher: Dispatcher;
  private readonly slots = new Map<number, Slot>();
  private closing = false;
  /** Fork a replacement when a worker dies (`options.restart`, default true); may be changed at any time. */
  restart: boolean;

  constructor(private readonly options: PrimaryOptions & { workers: number }) {
    super();
    this.restart = options.restart ?? true;
    this.dispatcher = new Dispatcher({
      workers: () => [...this.slots.values()].filter((s) => s.ready),
      worker: (id) => {
        const s = this.slots.get(id);
        return s?.ready ? s : undefined;
      },
      firstBytesTimeoutMs: options.firstBytesTimeoutMs,
    });
    this.server = net.createServer({ pauseOnConnect: true }, (socket) => this.dispatcher.handle(socket));
    if (options.kernel) useKernelListener(this.server);
  }

  /** Where the primary listens. */
  get address(): net.AddressInfo {
    return this.server.address() as net.AddressInfo;
  }

  get workers(): ClusterWorker[] {
    return [...this.slots.values()];
  }

  /** The primary's own counters: `MPJoinNoTokenFound` (joins for a worker that is gone) and `MPRstTx`. */
  counters(): MibCounters {
    return this.dispatcher.mib.snapshot();
  }

  /** Listens, forks the workers and resolves once every one of them listens. */
  async start(): Promise<this> {
    const { port, host } = this.options;
    this.server.listen(host === undefined ? { port } : { port, host });
    await once(this.server, 'listening');
    nodeCluster.setupPrimary({ ...(this.options.exec ? { exec: this.options.exec } : {}), ...(this.options.args ? { args: this.options.args } : {}) });
    const readyAll = Array.from({ length: this.options.workers }, (_, id) => this.fork(id));
    await Promise.all(readyAll);
    return this;
  }

  private fork(id: number): Promise<void> {
    const identity: WorkerIdentity = { workerId: id, address: this.address, ...(this.options.serverId !== undefined ? { serverId: this.options.serverId } : {}) };
    const worker = nodeCluster.fork({ ...this.options.env, [CLUSTER_ENV]: JSON.stringify(identity) });
    const slot: Slot = {
      id,
      process: worker,
      ready: false,
      send: (socket, head) => {
        // Between a worker's channel closing and its 'exit', node:cluster
        // would report a send as an 'error' event (the primary's, unhandled:
        // a crash); the dispatcher hands the socket elsewhere instead.
        if (!worker.isConnected()) return false;
        worker.send({ mptls: 'connection', head: head.toString('base64') }, socket as unknown as net.Socket, { keepOpen: false } as never, (err: Error | null) => {
          if (!err) return;
          this.dispatcher.stats.dropped++;
          socket.destroy();
        });
        return true;
      },
    };
    this.slots.set(id, slot);
    return new Promise<void>((resolve) => {
      const onMessage = (msg: unknown) => {
        if ((msg as { mptls?: string } | null)?.mptls !== 'listening') return;
        slot.ready = true;
        this.emit('worker', slot);
        resolve();
      };
      worker.on('message', onMessage);
      worker.on('error', (err) => this.emit('error', err));
      // It takes no more connections from here on; 'exit' may come much later.
      worker.once('disconnect', () => {
        slot.ready = false;
      });
      worker.once('exit', (code, signal) => {
        if (this.slots.get(id) === slot) this.slots.delete(id);
        slot.ready = false;
        resolve(); // a worker that dies before it listens does not hold start() up
        const replace = this.restart && !this.closing;
        if (!this.closing) this.emit('exit', slot, code, signal, replace);
        if (replace) void this.fork(id);
      });
    });
  }

  /**
   * The cluster's metrics, in the Prometheus text format: every worker's
   * `server.mptcp.metrics()` families with a `worker` label added, and the
   * primary's own (`mptls_primary_*`: what it dispatched, the joins it
   * refused for a worker that is gone). A worker that does not answer within
   * `timeoutMs` is left out (`mptls_primary_metrics_missing`).
   */
  async metrics(timeoutMs = 2000): Promise<string> {
    const ready = [...this.slots.values()].filter((s) => s.ready);
    const replies = await Promise.all(ready.map((s) => askMetrics(s, timeoutMs)));
    const byName = new Map<string, MetricFamily & { samples: MetricFamily['samples'][number][] }>();
    let missing = 0;
    replies.forEach((fams, i) => {
      if (!fams) {
        missing++;
        return;
      }
      const worker = String(ready[i].id);
      for (const f of fams) {
        let into = byName.get(f.name);
        if (!into) byName.set(f.name, (into = { ...f, samples: [] }));
        for (const x of f.samples) into.samples.push({ labels: { worker, ...x.labels }, value: x.value });
      }
    });
    const st = this.dispatcher.stats;
    const own: MetricFamily[] = [
      { name: 'mptls_primary_workers', help: 'Workers ready to take connections.', type: 'gauge', samples: [{ value: ready.length }] },
      { name: 'mptls_primary_metrics_missing', help: 'Ready workers whose metrics did not arrive in time for this scrape.', type: 'gauge', samples: [{ value: missing }] },
      { name: 'mptls_primary_pending', help: 'Connections whose first bytes the primary is waiting for.', type: 'gauge', samples: [{ value: this.dispatcher.pending }] },
      ...Object.entries(st).map(([k, v]): MetricFamily => ({
        name: `mptls_primary_${k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}_total`,
        help: `Primary dispatcher: ${k} (see src/transport/userspace/dispatch.ts).`,
        type: 'counter',
        samples: [{ value: v }],
      })),
      { name: 'mptls_primary_mp_join_no_token_found_total', help: 'Joins the primary refused: no worker with the id their token carries (MPJoinNoTokenFound).', type: 'counter', samples: [{ value: this.dispatcher.mib.values.MPJoinNoTokenFound }] },
    ];
    return renderPrometheus([...own, ...byName.values()]);
  }

  /** Stops listening and disconnects every worker (their servers close as on `server.close()`). */
  async close(): Promise<void> {
    this.closing = true;
    await new Promise<void>((r) => this.server.close(() => r()));
    await Promise.all(
      [...this.slots.values()].map(
        (s) =>
          new Promise<void>((r) => {
            if (s.process.isDead()) return r();
            // A worker whose application keeps its event loop busy is stopped after 5 s.
            const kill = setTimeout(() => s.process.kill(), 5000);
            s.process.once('exit', () => {
              clearTimeout(kill);
              r();
            });
            s.process.disconnect();
          }),
      ),
    );
  }
}

/**
 * Starts an mptls cluster's primary (call it where `cluster.isPrimary`):
 * listens on `options.port`, forks `options.workers` workers of this script
 * and resolves once they all listen.
 */
export async function primary(options: PrimaryOptions): Promise<ClusterPrimary> {
  if (!nodeCluster.isPrimary) throw coded(new TypeError('cluster.primary() runs in the primary process (cluster.isPrimary)'), 'ERR_MPTLS_INVALID_OPTION');
  const workers = options.workers ?? os.availableParallelism();
  if (!Number.isInteger(workers) || workers < 1 || workers > 256) throw coded(new RangeError(`workers must be an integer 1..256, got ${String(options.workers)}`), 'ERR_MPTLS_INVALID_OPTION');
  if (options.serverId !== undefined && (!Number.isInteger(options.serverId) || options.serverId < 0 || options.serverId > 255)) {
    throw coded(new RangeError(`serverId must be an integer 0..255, got ${String(options.serverId)}`), 'ERR_MPTLS_INVALID_OPTION');
  }
  return new ClusterPrimary({ ...options, workers }).start();
}

/** Asks one worker for its metric families (values that JSON cannot carry travel as strings). */
function askMetrics(slot: Slot, timeoutMs: number): Promise<MetricFamily[] | undefined> {
  const id = Math.random().toString(36).slice(2);
  return new Promise((resolve) => {
    const done = (v: MetricFamily[] | undefined) => {
      clearTimeout(timer);
      slot.process.removeListener('message', onMessage);
      resolve(v);
    };
    const onMessage = (msg: unknown) => {
      const m = msg as { mptls?: string; id?: string; families?: MetricFamily[] } | null;
      if (m?.mptls !== 'metrics' || m.id !== id) return;
      done((m.families ?? []).map((f) => ({ ...f, samples: f.samples.map((x) => ({ labels: x.labels, value: Number(x.value) })) })));
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    slot.process.on('message', onMessage);
    try {
      // With a callback, a closed channel is reported here, not as an 'error' event.
      slot.process.send({ mptls: 'metrics', id }, (err: Error | null) => {
        if (err) done(undefined);
      });
    } catch {
      done(undefined);
    }
  });
}

/** True in a process forked by an mptls primary. */
export function isWorker(): boolean {
  return workerIdentity() !== undefined;
}

interface ServerInternals {
  _handle: unknown;
  _connectionKey?: string;
  _connections: number;
}

let served: net.Server | undefined;

/** A worker whose primary has gone has no one to tell (node:cluster ends it): no 'error' event for that. */
const ignoreSendError = (): void => {};

/**
 * In a worker: makes `server.listen(...)` take connections from the primary
 * (the arguments are ignored: the primary owns the port) and `address()`
 * report the primary's. Called by `enableMultipath`.
 * @internal
 */
export function serveFromPrimary(server: net.Server, identity: WorkerIdentity, families: () => MetricFamily[]): void {
  const internals = server as unknown as ServerInternals;
  const onMessage = (msg: unknown, handle: unknown) => {
    const m = msg as { mptls?: string; head?: string; id?: string } | null;
    if (m?.mptls === 'metrics' && served === server) {
      const fams = families().map((f) => ({ ...f, samples: f.samples.map((x) => ({ labels: x.labels, value: Number.isFinite(x.value) ? x.value : String(x.value) })) }));
      process.send?.({ mptls: 'metrics', id: m.id, families: fams }, undefined, undefined, ignoreSendError);
      return;
    }
    if (m?.mptls !== 'connection' || !(handle instanceof net.Socket)) return;
    if (served !== server) {
      handle.destroy();
      return;
    }
    const head = Buffer.from(m.head ?? '', 'base64');
    if (head.length > 0) handle.unshift(head);
    // As node:net's onconnection: counted, owned by this server.
    internals._connections++;
    (handle as unknown as { _server: net.Server | null; server: net.Server })._server = server;
    (handle as unknown as { server: net.Server }).server = server;
    server.emit('connection', handle);
  };
  const fakeHandle = {
    close: () => {
      process.removeListener('message', onMessage);
      if (served === server) served = undefined;
    },
    getsockname: (out: Record<string, unknown>) => {
      Object.assign(out, identity.address);
      return 0;
    },
    ref: () => {},
    unref: () => {},
  };
  const listen = function (this: net.Server, ...args: unknown[]): net.Server {
    const cb = typeof args[args.length - 1] === 'function' ? (args[args.length - 1] as () => void) : undefined;
    if (served && served !== server) {
      process.nextTick(() => server.emit('error', coded(new Error('this worker already serves another mptls server: only one per worker'), 'ERR_MPTLS_INVALID_OPTION')));
      return server;
    }
    served = server;
    internals._handle = fakeHandle;
    internals._connectionKey = `${identity.address.family === 'IPv6' ? 6 : 4}:${identity.address.address}:${identity.address.port}`;
    process.on('message', onMessage);
    if (cb) server.once('listening', cb);
    process.nextTick(() => {
      server.emit('listening');
      process.send?.({ mptls: 'listening' }, undefined, undefined, ignoreSendError);
    });
    return server;
  };
  Object.defineProperty(server, 'listen', { value: listen, configurable: true, writable: true });
}
