/**
 * The server side of `scripts/fuzz.mjs`: one mptls server (from dist/) on
 * 127.0.0.1, instrumented so every raw connection it accepts ends with a
 * reason, reporting over IPC. It records (and survives, to report them) any
 * 'uncaughtException' or unhandled rejection: the fuzz run fails on either.
 *
 * Messages in: { type: 'stats' } | { type: 'final', plantIndex?, plantForm? } | { type: 'exit' }.
 * Messages out: { type: 'ready', port } | { type: 'stats', … } | { type: 'final', … }.
 *
 * Keys: every server connection's keys are read with `keysForTesting` (the
 * one sanctioned reader of the core's #private keys) and sent in 'final' with
 * `keyStats`; before that the child logs one of them as a planted line (`plant`),
 * which the parent's scan must find in this process's output.
 */
import { format } from 'node:util';
import { createServer } from '../dist/index.js';
import { keysForTesting } from '../dist/core/connection/index.js';
import { instrumentServer, plantLine } from '../test/support/fuzz-lib.mjs';
import { fixtures } from '../test/support/fixtures.mjs';

const opts = JSON.parse(process.argv[2] ?? '{}');
const uncaught = [];
const unhandled = [];
process.on('uncaughtException', (e) => uncaught.push(String(e?.stack ?? e).slice(0, 2000)));
process.on('unhandledRejection', (e) => unhandled.push(String(e?.stack ?? e).slice(0, 2000)));

// Every line the process would log, kept for the key-material scan (and still printed).
const logLines = [];
for (const m of ['log', 'info', 'warn', 'error', 'debug', 'trace']) {
  const orig = console[m].bind(console);
  console[m] = (...args) => {
    logLines.push(format(...args));
    orig(...args);
  };
}
for (const stream of [process.stdout, process.stderr]) {
  const write = stream.write.bind(stream);
  stream.write = (chunk, ...rest) => {
    logLines.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('latin1'));
    return write(chunk, ...rest);
  };
}
process.on('warning', (w) => logLines.push(String(w?.stack ?? w)));

const server = createServer(
  {
    key: fixtures.key,
    cert: fixtures.cert,
    handshakeTimeout: opts.handshakeTimeoutMs ?? 2000,
    // the multipath handshake (MP_CAPABLE + TLS) has its own timeout; plain TLS keeps handshakeTimeout
    mptcp: { preambleTimeoutMs: opts.preambleTimeoutMs ?? 1500, handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 2000, keyModes: ['external', 'rfc8684'] },
  },
  (s) => {
    // the legitimate clients: echo
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end());
    s.on('error', () => {});
  },
);
const inst = instrumentServer(server, { keysOf: keysForTesting });

const peaks = { rss: 0, handles: 0, pending: 0, connections: 0, endpointConnections: 0 };
const handles = () => process.getActiveResourcesInfo().filter((r) => r !== 'Timeout').length;
const sample = () => {
  const rss = process.memoryUsage().rss;
  peaks.rss = Math.max(peaks.rss, rss);
  peaks.handles = Math.max(peaks.handles, handles());
  peaks.pending = Math.max(peaks.pending, server.mptcp.acceptor.pendingSubflows, inst.maxPending);
  peaks.connections = Math.max(peaks.connections, server.mptcp.connections);
  peaks.endpointConnections = Math.max(peaks.endpointConnections, server.mptcp.endpoint.connectionCount);
};
setInterval(sample, 100).unref();

const stats = () => ({
  type: 'stats',
  acceptor: { ...server.mptcp.acceptor.stats },
  counters: server.mptcp.counters(),
  pending: server.mptcp.acceptor.pendingSubflows,
  pendingJoins: server.mptcp.endpoint.pendingJoinCount,
  connections: server.mptcp.connections,
  endpointConnections: server.mptcp.endpoint.connectionCount,
  openRecords: inst.open(),
  liveDrivers: inst.liveDrivers(),
  rss: process.memoryUsage().rss,
  heapUsed: process.memoryUsage().heapUsed,
  handles: handles(),
  peaks,
  uncaught: uncaught.length,
  unhandled: unhandled.length,
});

process.on('message', (m) => {
  if (m.type === 'stats') {
    sample();
    process.send(stats());
  } else if (m.type === 'final') {
    sample();
    // The scan's self-check: log one of the server's own keys the way a leak
    // would look; the parent must find it in this process's output.
    const plantKey = inst.keys[(m.plantIndex ?? 0) % Math.max(1, inst.keys.length)];
    const plant = plantKey ? plantLine(plantKey, m.plantForm ?? 0) : undefined;
    if (plant) console.log(plant);
    process.send({
      plant,
      keyStats: inst.keyStats(),
      ...stats(),
      type: 'final',
      histogram: inst.histogram(),
      reasons: inst.reasons(),
      strings: [...inst.strings, ...logLines],
      keys: inst.keys.map((k) => Buffer.from(k).toString('hex')),
      uncaughtErrors: uncaught,
      unhandledErrors: unhandled,
    });
  } else if (m.type === 'exit') {
    server.close();
    setTimeout(() => process.exit(0), 100);
  }
});

server.listen(0, '127.0.0.1', () => {
  process.send({ type: 'ready', port: server.address().port, baseline: stats() });
});
