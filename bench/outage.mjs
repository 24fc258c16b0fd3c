// Scenario 6 (issue 13, "connections that outlive their paths"): a 40 MiB
// upload (client → server, SHA-256 checked) over 2 × 50 Mbit/s through three
// outages, mptls userspace vs Linux kernel MPTCP (mptls kernel mode: node:tls
// over an IPPROTO_MPTCP socket, the kernel's path manager and endpoints), the
// same harness as test/mobility (test/mobility/harness.mjs: scenarios,
// peers, measurement at the receiver). A fresh topology per run.
//   node bench/outage.mjs [--runs N] [--kinds userspace,kernel] [--scenarios reset,links-down,address-move] [--no-kernel-endpoint] [--json FILE] [--svg]
// (standalone it prints JSON, writes the SVGs only with --svg and never RESULTS.md; --no-kernel-endpoint: address-move without
// the kernel's `ip mptcp endpoint add` for the new address.)
// (npm run bench -- --only outage runs it through bench/run.mjs.)
import fs from 'node:fs';
import { median } from './lib/common.mjs';
import { svgLines } from './lib/svg.mjs';
import { SCENARIOS, runScenario, throughputSeries, topologyOptions, MiB } from '../test/mobility/harness.mjs';

const { Topology } = await import('../build/testbed/test/support/topology.js');
const log = (m) => process.stderr.write(`[outage] ${m}\n`);

const KIND_LABEL = { userspace: 'mptls userspace', kernel: 'Linux kernel MPTCP' };

function brief(r) {
  const { timeline, sha256, startSubflows, ...rest } = r;
  return { ...rest, sha256Match: sha256.sent !== undefined && sha256.sent === sha256.received };
}

/** In words, what happened to the runs that did not complete. */
function outcome(failed) {
  if (!failed.length) return undefined;
  const hung = failed.every((r) => /DEADLINE/.test(r.receiverError ?? '') && /DEADLINE|SIGTERM/.test(r.senderError ?? 'DEADLINE'));
  if (hung) {
    const lastByte = Math.max(...failed.map((r) => r.stallFromMs ?? 0));
    return `the connection stops for good: no byte after t = ${sec(lastByte)}, and neither end gets an error or an end (each run stopped ${sec(Math.min(...failed.map((r) => r.endMs - (r.stallFromMs ?? 0))))} later)`;
  }
  return failed[0].error;
}

/** Summary of N runs of one kind in one scenario. */
function aggregate(runs) {
  const done = runs.filter((r) => r.completed);
  const stalls = runs.map((r) => r.maxStallMs).filter((x) => typeof x === 'number');
  return {
    completed: done.length,
    total: runs.length,
    // Median over the runs that completed (a connection that died has no finite stall).
    maxStallMs: done.length ? median(done.map((r) => r.maxStallMs)) : undefined,
    maxStallMsAll: stalls.length ? median(stalls) : undefined,
    bytesDelivered: median(runs.map((r) => r.receivedBytes)),
    durationMs: done.length ? median(done.map((r) => r.endMs - r.firstByteMs)) : undefined,
    errors: [...new Set(runs.map((r) => r.error).filter(Boolean))],
    outcome: outcome(runs.filter((r) => !r.completed)),
  };
}

/** The run whose stall is the median (for the chart). */
function medianRun(runs) {
  const pool = runs.filter((r) => r.completed).length ? runs.filter((r) => r.completed) : runs;
  const sorted = [...pool].sort((a, b) => a.maxStallMs - b.maxStallMs);
  return sorted[(sorted.length - 1) >> 1];
}

const sec = (ms) => (typeof ms === 'number' ? `${(ms / 1000).toFixed(2)} s` : '—');

/** Plain-text facts of a scenario's runs, for RESULTS.md. */
function details(scenario, kind, rs) {
  const label = KIND_LABEL[kind];
  const out = [`${SCENARIOS[scenario].title}, ${label}: per run ${rs.map((r) => (r.completed ? `stall ${sec(r.maxStallMs)} (from t = ${sec(r.stallFromMs)})` : `FAILED after ${((r.receivedBytes ?? 0) / MiB).toFixed(1)} MiB (${r.error})`)).join('; ')}.`];
  if (scenario === 'reset') {
    const k = rs.map((r) => r.actions?.find((a) => a.killed !== undefined)).filter(Boolean);
    const look = rs.map((r) => r.actions?.find((a) => a.mptcp)).filter(Boolean);
    if (k.length) out.push(`  ss -K killed ${k.map((a) => `${a.killed} of ${a.establishedBefore}`).join(', ')} established subflows; 1.5 s later: TCP subflows (client/server) ${look.map((a) => `${a.tcp.client}/${a.tcp.server}`).join(', ')}, kernel MPTCP sockets (client/server) ${look.map((a) => `${a.mptcp.client}/${a.mptcp.server}`).join(', ')}.`);
  }
  if (kind === 'userspace') {
    const fmt = (r) => {
      const ev = r.events?.client ?? [];
      const lost = ev.find((e) => e.name === 'paths-lost');
      const back = ev.filter((e) => e.name === 'paths-restored').pop();
      const paths = [...new Set((r.endSubflows?.client ?? []).filter((x) => x.state === 'established').map((x) => x.local))].join(' + ');
      return `${lost ? `paths-lost at ${sec(lost.t)}` : 'no paths-lost'}${back ? `, paths-restored at ${sec(back.t)}` : ''}${paths ? `, the client's established subflows at the end from ${paths}` : ''}`;
    };
    out.push(`  mptls events (client): ${rs.map(fmt).join('; ')}.`);
  }
  return out.join('\n');
}

export async function outageBench({ runs = 3, kinds = ['userspace', 'kernel'], scenarios = Object.keys(SCENARIOS), bytes = 40 * MiB, kernelEndpoint = true, charts = true } = {}) {
  const avail = Topology.available();
  if (!avail.ok) return { note: `skipped: ${avail.reason}` };
  const out = {
    note: `2 × 50 Mbit/s (tbf both ends), a ${bytes / MiB} MiB upload client → server with its SHA-256 checked; the receiver measures the longest gap between two reads ("stall"). Times from the client's secureConnect. A fresh pair of namespaces per run; medians of ${runs} runs (stall: over the runs that completed). Kernel side: mptls kernel mode (node:tls over IPPROTO_MPTCP), client endpoint 198.18.2.1 subflow, limits 8/8, no server endpoints. Harness: test/mobility/harness.mjs.`,
    bytes,
    scenarios: [],
    details: [],
  };
  fs.mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  for (const scenario of scenarios) {
    const spec = SCENARIOS[scenario];
    const row = { scenario, title: spec.title, boundMs: spec.boundMs };
    const chartSeries = [];
    for (const kind of kinds) {
      const rs = [];
      for (let i = 0; i < runs; i++) {
        const topo = await Topology.create(topologyOptions('mob'));
        try {
          const r = await runScenario(topo, { scenario, kind, bytes, kernelEndpoint });
          log(`${scenario} ${kind} #${i + 1}: ${r.completed ? 'completed' : `FAILED (${r.error})`}, stall ${r.maxStallMs?.toFixed(0)} ms, ${r.receivedBytes} B delivered`);
          rs.push(r);
        } catch (e) {
          log(`${scenario} ${kind} #${i + 1}: harness error ${e.message}`);
          rs.push({ scenario, kind, completed: false, error: `harness: ${e.message}`, receivedBytes: 0, timeline: [], sha256: {} });
        } finally {
          topo.destroy();
        }
      }
      row[kind] = { ...aggregate(rs), runs: rs.map(brief) };
      out.details.push(details(scenario, kind, rs));
      const m = medianRun(rs);
      if (m?.timeline?.length) {
        chartSeries.push({ label: `${KIND_LABEL[kind]}: ${m.completed ? `done, stall ${(m.maxStallMs / 1000).toFixed(2)} s` : `failed, ${(m.receivedBytes / MiB).toFixed(1)} MiB`}`, pts: throughputSeries(m.timeline) });
        row[kind].series = { run: rs.indexOf(m) + 1, binMs: 200, pts: throughputSeries(m.timeline).map(([t, v]) => [Math.round(t), Number(v.toFixed(2))]) };
      }
    }
    if (charts && chartSeries.length) {
      const name = `outage-${scenario}.svg`;
      const spans = scenario === 'links-down' ? [{ from: 1500, to: 4500 }] : scenario === 'address-move' ? [{ from: 1500, to: 2500 }] : [];
      const endMs = Math.min(20000, Math.max(...chartSeries.flatMap((s) => s.pts.map((p) => p[0]))));
      fs.writeFileSync(new URL(`./results/${name}`, import.meta.url), svgLines(chartSeries, { title: `2 × 50 Mbit/s, 40 MiB upload: ${spec.title} (median run)`, marks: spec.marks, spans, endMs }));
      row.svg = `results/${name}`;
    }
    out.scenarios.push(row);
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const opt = (k) => (args.includes(k) ? args[args.indexOf(k) + 1] : undefined);
  const r = await outageBench({
    runs: Number(opt('--runs') ?? 3),
    kinds: opt('--kinds')?.split(',') ?? ['userspace', 'kernel'],
    scenarios: opt('--scenarios')?.split(',') ?? Object.keys(SCENARIOS),
    kernelEndpoint: !args.includes('--no-kernel-endpoint'),
    charts: args.includes('--svg'),
  });
  const file = opt('--json');
  const text = JSON.stringify(r, (k, v) => (k === 'events' || k === 'pts' ? undefined : v), 2);
  if (file) fs.writeFileSync(file, JSON.stringify(r, null, 2) + '\n');
  console.log(text);
  process.exit(0);
}
