// Scenario 8: any TCP application over TLS-bound multipath (issue 17), on the
// namespace testbed, 2 × 50 Mbit/s. A plain TCP source in the client
// namespace sends 40 MiB to a plain TCP sink in the server namespace
// (test/support/tunnel-peer.mjs), three ways, 3 runs each (medians):
//   - plain TCP over path 1 (the baseline one link gives);
//   - `mptls tunnel -L` → `mptls proxy` (userspace multipath, one local
//     address per path);
//   - `mptcpize run` on both ends with kernel MPTCP (Linux's own, the
//     kernel path manager joining path 2: client endpoint 198.18.2.1 subflow).
// Goodput = 40 MiB over the time from the source's connect to the sink's
// answer (SHA-256 checked).
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { median } from './lib/common.mjs';

const { Topology } = await import('../build/testbed/test/support/topology.js');
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const CLI = `${ROOT}bin/mptls.js`;
const PEER = `${ROOT}test/support/tunnel-peer.mjs`;
const FIX = `${ROOT}certs-fixtures/`;
const NODE = process.execPath;
const MiB = 1 << 20;

/** Runs the source (`prefix` = the program and its wrapper) in the client namespace; its JSON result. */
function source(topo, prefix, args) {
  const r = topo.exec('client', prefix[0], [...prefix.slice(1), PEER, 'source', ...args], { allowFail: true, timeoutMs: 120_000 });
  const last = r.stdout.trim().split('\n').pop();
  try {
    return JSON.parse(last);
  } catch {
    return { error: `no result: ${r.stderr.slice(0, 200)}` };
  }
}

function oneRun(topo, kind, bytes) {
  const s1 = topo.serverAddress(1);
  let out;
  if (kind === 'tcp') out = source(topo, [NODE], [s1, '5001', String(bytes)]);
  else if (kind === 'tunnel') out = source(topo, [NODE], ['127.0.0.1', '6001', String(bytes)]);
  else out = source(topo, ['mptcpize', 'run', NODE], [s1, '5003', String(bytes)]);
  const intact = out.reply && out.reply.bytes === bytes && out.reply.sha256 === out.sha256;
  return { mbit: intact ? out.mbit : NaN, intact: Boolean(intact), error: out.error ?? out.reply?.error };
}

export async function tunnelBench({ runs = 3, bytes = 40 * MiB } = {}) {
  const avail = Topology.available();
  if (!avail.ok) return { note: `skipped: ${avail.reason}` };
  if (spawnSync('sh', ['-c', 'command -v mptcpize']).status !== 0) return { note: 'skipped: mptcpize is not installed' };
  const topo = await Topology.create({ paths: [{ rateMbit: 50 }, { rateMbit: 50 }], clientMptcpEndpoints: true, mptcpLimits: { subflows: 8, addAddrAccepted: 8 } });
  const procs = [];
  try {
    const start = async (side, cmd, args, ready) => {
      const p = topo.start(side, cmd, args);
      procs.push(p);
      await p.waitFor(ready, 20_000);
    };
    const s1 = topo.serverAddress(1);
    await start('server', NODE, [PEER, 'sink', s1, '5001'], /"port"/);
    await start('server', 'mptcpize', ['run', NODE, PEER, 'sink', s1, '5003'], /"port"/);
    await start('server', NODE, [CLI, 'proxy', '--cert', `${FIX}server.pem`, '--key', `${FIX}server.key`, '--host', '0.0.0.0', '--port', '8443', '--allow', `${s1}:5001`, '-q'], /proxying on/);
    await start('client', NODE, [CLI, 'tunnel', '--server', `${s1}:8443`, '--cacert', `${FIX}ca.pem`, '--local', topo.clientAddress(1), '--local', topo.clientAddress(2), '-L', `6001:${s1}:5001`, '-q'], /forwarding/);
    const rows = [];
    for (const [kind, title] of [
      ['tcp', 'plain TCP, one path (baseline)'],
      ['tunnel', 'mptls tunnel -L → mptls proxy (userspace multipath)'],
      ['kernel', 'mptcpize run, kernel MPTCP both ends'],
    ]) {
      const rs = [];
      for (let i = 0; i < runs; i++) rs.push(oneRun(topo, kind, bytes));
      rows.push({ kind, title, mbit: median(rs.filter((r) => r.intact).map((r) => r.mbit)), intact: rs.filter((r) => r.intact).length, runs: rs });
    }
    return {
      cores: os.availableParallelism(),
      bytes,
      rows,
      note: `Two namespaces, 2 × 50 Mbit/s (tbf), a plain TCP source in the client namespace sends ${bytes / MiB} MiB to a plain TCP sink in the server namespace; goodput from connect to the sink's answer (SHA-256 checked). Medians of ${runs} runs.`,
    };
  } finally {
    for (const p of procs) p.kill('SIGKILL');
    topo.destroy();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await tunnelBench({ runs: Number(process.env.RUNS ?? 3) }), null, 2));
  process.exit(0);
}
