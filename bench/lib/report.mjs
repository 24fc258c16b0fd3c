// Renders bench/RESULTS.md from the newest result of each scenario in bench/results/.
import fs from 'node:fs';
import path from 'node:path';

const dir = new URL('../results/', import.meta.url);
const f1 = (x) => (x === undefined || x === null || Number.isNaN(x) ? '—' : x.toFixed(1));
const f2 = (x) => (x === undefined || x === null || Number.isNaN(x) ? '—' : x.toFixed(2));
const pct = (x) => (x === undefined || x === null || Number.isNaN(x) ? '—' : `${(x * 100).toFixed(0)}%`);
const met = (ok) => (ok === undefined ? '' : ok ? 'met' : '**not met**');

function latestByScenario() {
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort() : [];
  const latest = {};
  for (const f of files) {
    const r = JSON.parse(fs.readFileSync(new URL(f, dir), 'utf8'));
    for (const [name, data] of Object.entries(r.scenarios ?? {})) latest[name] = { run: r, data, file: f };
  }
  return latest;
}

function header(run, file) {
  return `Run ${run.date} · commit ${run.commit} · \`${run.command}\` · ${run.machine.cpu}, ${run.machine.memoryGiB} GiB, Linux ${run.machine.kernel}, Node ${run.machine.node} · raw: [results/${file}](results/${file})\n`;
}

export function writeResultsMd() {
  const L = latestByScenario();
  const out = ['# mptls benchmark results', '', 'Produced by `npm run bench` (= `node bench/run.mjs`; `--only NAME` runs one scenario). Every scenario measures mptls and its baselines in the same run; numbers are medians of the runs listed in the raw JSON. Targets come from the benchmark issue and are recorded whether met or not.', ''];

  if (L.loopback) {
    const { run, data, file } = L.loopback;
    out.push('## 1. Loopback, one path, bulk transfer', '', header(run, file), 'Client and server in two processes on 127.0.0.1; CPU = user + system of both.', '');
    out.push('| transport | MB/s | CPU s per GiB (user + sys) | vs plain node:tls | vs the JS-stream floor | CPU vs the floor | target |', '|---|---|---|---|---|---|---|');
    const row = (k, label, target, ok) => {
      const d = data[k];
      if (!d) return;
      if (d.error) out.push(`| ${label} | error: ${d.error} | | | | | ${target} |`);
      else out.push(`| ${label} | ${f1(d.MBps)} | ${f2(d.cpuSecPerGiB)}${d.userSecPerGiB === undefined ? '' : ` (${f2(d.userSecPerGiB)} + ${f2(d.sysSecPerGiB)})`} | ${pct(d.ratioToTls)} | ${pct(d.ratioToFloor ?? d.ratioToJsDuplex)} | ${d.cpuToFloor === undefined ? '—' : `${f2(d.cpuToFloor)}×`} | ${target} ${ok === undefined ? '' : met(ok(d))} |`);
    };
    row('tls', 'plain node:tls (baseline)', '', undefined);
    row('jsduplex', 'node:tls over a pass-through JS Duplex (baseline)', '', undefined);
    row('jsduplex-writev', 'node:tls over the best pass-through JS Duplex we could write: 64 KiB reads, corked writev (baseline)', '', undefined);
    row('userspace', 'mptls userspace, one subflow', '≥ 90% of the floor, ≤ 1.2× its CPU', (d) => d.ratioToFloor >= 0.9 && d.cpuToFloor <= 1.2);
    const one = data.userspace?.MBps;
    row('userspace2', 'mptls userspace, two subflows (127.0.0.1 + 127.0.0.2)', 'not slower than one subflow', one ? (d) => d.MBps >= one * 0.97 : undefined);
    row('kernel', 'mptls kernel mode', '≥ 90% of plain node:tls', (d) => d.ratioToTls >= 0.9);
    if (data.floor) out.push('', `The floor: ${data.floor.kind === 'jsduplex' ? 'the plain pass-through Duplex' : 'the corked-writev pass-through Duplex'}, ${f1(data.floor.MBps)} MB/s, ${f2(data.floor.cpuSecPerGiB)} CPU s per GiB (the better of the two, this run). A target counts as met within 3 % (run-to-run spread).`);
    const rk = data.rawKernel;
    if (rk) out.push('', rk.error ? `Linux by itself (iperf3, TCP vs MPTCP on loopback): ${rk.error}.` : `Linux by itself, same run: iperf3 on loopback moves ${f1(rk.tcpGbps)} Gbit/s over TCP and ${f1(rk.mptcpGbps)} Gbit/s over MPTCP (\`mptcpize run iperf3\`, one subflow): MPTCP is ${pct(rk.ratio)} of TCP with no TLS and no Node at all.`);
    const runsOf = (k) => data[k]?.runs?.map((r) => f1(r.MBps)).join(' / ');
    if (data.userspace?.runs) out.push('', `Every run, MB/s (runs interleaved across kinds): ${['tls', 'jsduplex-writev', 'userspace', 'userspace2', 'kernel'].filter((k) => data[k]?.runs).map((k) => `${k} ${runsOf(k)}`).join('; ')}.`);
    out.push('');
  }

  if (L.netns) {
    const { run, data, file } = L.netns;
    out.push('## 2. Aggregation over shaped paths (network namespaces)', '', header(run, file), data.note ?? '', '');
    out.push('| paths | sum of rates | mptls userspace | kernel MPTCP | plain TLS, one path | mptls / kernel | mptls / sum | target (≥ kernel) |', '|---|---|---|---|---|---|---|---|');
    for (const a of data.aggregation ?? []) {
      out.push(`| ${a.name} | ${f1(a.sumMbit)} | ${f1(a.mptls?.mbit)} | ${f1(a.kernel?.mbit)} | ${f1(a.plainTls?.mbit)} | ${pct(a.mptls?.mbit / a.kernel?.mbit)} | ${pct(a.mptls?.mbit / a.sumMbit)} | ${met(a.mptls?.mbit >= a.kernel?.mbit)} |`);
    }
    out.push('', '## 3. Failover (2 × 50 Mbit/s, path 1 fails at t = 2 s)', '');
    out.push('| failure | mptls longest stall | mptls bytes lost | kernel longest stall | kernel bytes lost | target (stall ≤ kernel, 0 lost) | chart |', '|---|---|---|---|---|---|---|');
    for (const f of data.failover ?? []) {
      out.push(`| ${f.kind} | ${f1(f.mptls?.maxStallMs)} ms | ${f.mptls?.bytesLost ?? '—'} | ${f1(f.kernel?.maxStallMs)} ms | ${f.kernel?.bytesLost ?? '—'} | ${met(f.mptls?.maxStallMs <= f.kernel?.maxStallMs && f.mptls?.bytesLost === 0)} | ${f.svg ? `[${path.basename(f.svg)}](${f.svg})` : ''} |`);
    }
    out.push('');
  }

  if (L.handshake) {
    const { run, data, file } = L.handshake;
    out.push('## 4. Handshakes', '', header(run, file));
    if (data.paths) {
      out.push(`Paths of known RTT: a userspace relay delaying each direction (netem is absent on this kernel); the TCP connect to the relay is instant, so plain TLS 1.3 costs one RTT. Each row: medians of the runs shown, after ${data.paths[0].warmupRuns ?? 10} discarded warm-up connections of each kind straight to the servers (cold JIT on every side); plain node:tls, node:tls over a JS Duplex, mptls and mptls against a plain TLS server (fallback) alternating; client, servers and relays in three processes. Client on 127.0.0.1 + 127.0.0.2.`, '');
      out.push('| path RTT | runs | plain node:tls → secureConnect (baseline) | node:tls over a JS Duplex (client side only) | mptls first subflow usable | over plain | target ≤ +0.25 RTT | second subflow established | target ≤ 3.5 RTT | fallback to a plain TLS server | over plain |', '|---|---|---|---|---|---|---|---|---|---|---|');
      for (const p of data.paths) {
        out.push(`| ${p.pathRttMs} ms | ${p.runs} | ${f1(p.plainTlsConnectMs)} ms = ${f2(p.plainTlsInRtts)} RTT | ${f1(p.tlsOverJsDuplexMs)} ms | ${f1(p.firstSubflowUsableMs)} ms = ${f2(p.firstSubflowInRtts)} RTT | +${f2(p.firstSubflowOverPlainRtts)} RTT | ${met(p.targets?.usableWithinQuarterRtt)} | ${f1(p.secondSubflowJoinedMs)} ms = ${f2(p.joinedInRtts)} RTT | ${met(p.targets?.joinedWithin3_5Rtt)} | ${f1(p.fallbackUsableMs)} ms | +${f2(p.fallbackOverPlainRtts)} RTT |`);
      }
      const c = data.paths[0].coldLoopback;
      if (c) out.push('', `Cold, for comparison: the first ${c.runs} connections of fresh processes, loopback without delay: plain node:tls ${f1(c.plainTlsMs)} ms, mptls ${f1(c.mptlsUsableMs)} ms to a usable first subflow (JIT not yet warm; node:tls's handshake is C++).`);
      out.push('');
    } else {
      out.push(`Path of known RTT: ${data.pathRttMs} ms (a userspace relay delaying each direction by ${data.pathRttMs / 2} ms; netem is absent on this kernel).`, '');
    }
    out.push('| measure | value |', '|---|---|');
    if (!data.paths) {
      out.push(`| plain node:tls, TCP connect → secureConnect (baseline) | ${f1(data.plainTlsConnectMs)} ms |`);
      out.push(`| mptls, first subflow usable (secureConnect) | ${f1(data.firstSubflowUsableMs)} ms = ${f2(data.firstSubflowInRtts)} RTT |`);
      out.push(`| mptls, second subflow joined | ${f1(data.secondSubflowJoinedMs)} ms = ${f2(data.joinedInRtts)} RTT |`);
    }
    out.push(`| HMAC cost per join (4 HMAC-SHA256: compute + verify on both sides) | ${f1(data.hmac?.microsecondsPerJoin)} µs |`);
    const j = data.joinsPerSecond;
    if (j) out.push(`| new connections with one join each, per second (one server process; client in another; ${j.concurrency} in flight; includes the TLS handshakes) | ${f1(j.joinsPerSecond)} /s (${j.joins} joins, ${j.refused} refused; runs ${(j.runs ?? []).map(f1).join(', ')}) |`);
    if (data.plainTlsPerSecond) out.push(`| baseline: plain node:tls connections per second, same client and concurrency, the server ends each at once | ${f1(data.plainTlsPerSecond.perSecond)} /s (runs ${data.plainTlsPerSecond.runs.map(f1).join(', ')}) |`);
    if (data.coreJoinsPerSecond) out.push(`| server core alone: MP_JOIN SYN → SYN/ACK → ACK verified, per second | ${f1(data.coreJoinsPerSecond)} /s |`);
    const h = data.heldJoin;
    if (h) {
      out.push(`| server cost per held early join (${h.heldJoins} held at once, from 16 source addresses; JS heap + external after GC) | ${f1(h.perHeldJoinBytes.js / 1024)} KiB JS, ${f1(h.perHeldJoinBytes.rss / 1024)} KiB RSS (for comparison, a connection whose TLS has not finished: ${f1(h.perConnectionBytes.js / 1024)} KiB JS) |`);
    }
    out.push('');
  }

  if (L.memory) {
    const { run, data, file } = L.memory;
    out.push('## 5. Memory per idle connection (2 subflows each)', '', header(run, file));
    out.push('RSS after GC, before and after opening the connections; server and client in separate processes. This machine caps open files at 20 000 per process, so 10 000 connections run as 2 shards of 5 000 (RSS summed).', '');
    out.push('| connections | joined | server KiB / connection | client KiB / connection | server RSS | client RSS |', '|---|---|---|---|---|---|');
    for (const m of data) out.push(`| ${m.connections} | ${m.joined} | ${f1(m.serverKiBPerConnection)} | ${f1(m.clientKiBPerConnection)} | ${f1(m.serverRssMiB)} MiB | ${f1(m.clientRssMiB)} MiB |`);
    out.push('');
  }

  if (L.outage) {
    const { run, data, file } = L.outage;
    out.push('## 6. Connections that outlive their paths (issue 13)', '', header(run, file), data.note ?? '', '');
    if (data.scenarios) {
      const MiB = 1024 * 1024;
      const s = (ms) => (ms === undefined ? '—' : `${(ms / 1000).toFixed(2)} s`);
      const side = (d) => {
        if (!d) return ['—', '—', '—'];
        const delivered = `${f1(d.bytesDelivered / MiB)} MiB`;
        const n = d.total ?? (Array.isArray(d.runs) ? d.runs.length : d.runs);
        if (d.completed === n) return [`${d.completed}/${n} completed, SHA-256 equal`, s(d.maxStallMs), delivered];
        const why = d.outcome ? `: ${d.outcome}` : d.errors?.[0] ? `: ${d.errors[0]}` : '';
        return [`**${d.completed}/${n} completed**${why}`, d.completed ? `${s(d.maxStallMs)} (completed runs)` : `no end (≥ ${s(d.maxStallMsAll)} without a byte)`, delivered];
      };
      out.push('| scenario | target: longest receive stall | mptls userspace | mptls stall | mptls delivered | kernel MPTCP | kernel stall | kernel delivered | target met (mptls) | chart |', '|---|---|---|---|---|---|---|---|---|---|');
      for (const r of data.scenarios) {
        const u = side(r.userspace);
        const k = side(r.kernel);
        const ok = r.userspace ? r.userspace.completed === (r.userspace.total ?? r.userspace.runs.length) && r.userspace.maxStallMs <= r.boundMs : undefined;
        out.push(`| ${r.title} | ≤ ${s(r.boundMs)} | ${u[0]} | ${u[1]} | ${u[2]} | ${k[0]} | ${k[1]} | ${k[2]} | ${met(ok)} | ${r.svg ? `[${path.basename(r.svg)}](${r.svg})` : ''} |`);
      }
      if (data.details?.length) out.push('', ...data.details.map((d) => `- ${d}`));
    }
    out.push('');
  }

  if (L.cluster) {
    const { run, data, file } = L.cluster;
    out.push('## 7. Cluster mode: all cores (issue 16)', '', header(run, file), data.note ?? '', '');
    out.push('| server | bulk MB/s (64 conns) | server CPU s | client CPU s | primary share | new conn + join /s | server CPU s | client CPU s | primary share | primary CPU per dispatched subflow |', '|---|---|---|---|---|---|---|---|---|---|');
    for (const r of data.rows) {
      const us = r.primaryCpuPerSubflowUs === undefined ? '—' : `${r.primaryCpuPerSubflowUs.toFixed(0)} µs`;
      out.push(`| ${r.mode} | ${f1(r.bulk.MBps)} | ${f1(r.bulk.serverCpuS)} | ${f1(r.bulk.clientCpuS)} | ${r.workers && r.mode.startsWith('cluster') ? pct(r.bulk.primaryShare) : '—'} | ${f1(r.connect.perSecond)} | ${f1(r.connect.serverCpuS)} | ${f1(r.connect.clientCpuS)} | ${r.mode.startsWith('cluster') ? pct(r.connect.primaryShare) : '—'} | ${us} |`);
    }
    if (data.details?.length) out.push('', ...data.details.map((d) => `- ${d}`));
    out.push('');
  }

  if (L.tunnel) {
    const { run, data, file } = L.tunnel;
    out.push('## 8. Any TCP application: mptls tunnel + proxy (issue 17)', '', header(run, file), data.note ?? '', '');
    if (data.rows) {
      const base = data.rows.find((r) => r.kind === 'tcp')?.mbit;
      out.push('| path | Mbit/s | vs one path | intact runs |', '|---|---|---|---|');
      for (const r of data.rows) out.push(`| ${r.title} | ${f1(r.mbit)} | ${base ? pct(r.mbit / base) : '—'} | ${r.intact}/${r.runs.length} |`);
    }
    out.push('');
  }

  const notes = new URL('../NOTES.md', import.meta.url);
  if (fs.existsSync(notes)) out.push(fs.readFileSync(notes, 'utf8'));
  fs.writeFileSync(new URL('../RESULTS.md', import.meta.url), out.join('\n') + '\n');
}
