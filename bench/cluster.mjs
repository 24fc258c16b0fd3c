// Scenario 7: cluster mode (issue 16). One mptls server in one process
// (today's), then cluster mode with 1 and with 2 workers, on loopback; the
// clients in a separate process (bench/lib/cluster-client.mjs):
//   - bulk: 64 two-path connections downloading 1 MiB bodies back to back →
//     aggregate MB/s;
//   - connect: new connection + join + one request, 32 at a time → per second
//     (counted only when the second subflow was up at the server);
// and each server process's CPU (user + system from /proc/PID/stat) over
// each phase: the primary's share, and its CPU per subflow it dispatched.
// This machine has 2 cores: the client process needs one of them, which
// caps what a second worker can add; the numbers say so as they are.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import readline from 'node:readline';

const TICK_S = 1 / 100; // USER_HZ

function cpuSeconds(pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) * TICK_S; // utime, stime
  } catch {
    return NaN;
  }
}

async function startServer(mode) {
  const child = spawn(process.execPath, [new URL('./lib/cluster-server.mjs', import.meta.url).pathname, String(mode)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const first = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`server ${mode} did not start`)), 20_000);
    readline.createInterface({ input: child.stdout }).once('line', (l) => {
      clearTimeout(t);
      resolve(JSON.parse(l));
    });
  });
  return {
    ...first,
    stop: async () => {
      child.stdin.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
      clearTimeout(t);
    },
  };
}

function runClient(port, args, timeoutMs) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [new URL('./lib/cluster-client.mjs', import.meta.url).pathname, String(port), ...args.map(String)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`client ${args.join(' ')} timed out`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(t);
      if (code !== 0) return reject(new Error(`client ${args.join(' ')} exited ${code}`));
      resolve(JSON.parse(out.trim().split('\n').pop()));
    });
  });
}

async function phase(server, args, seconds) {
  const pids = [server.primary, ...server.workers].filter(Boolean);
  const before = pids.map(cpuSeconds);
  const r = await runClient(server.port, args, (seconds + 60) * 1000);
  const after = pids.map(cpuSeconds);
  const used = after.map((a, i) => a - before[i]);
  const primary = server.primary ? used[0] : 0;
  const total = used.reduce((a, b) => a + b, 0);
  return { ...r, serverCpuS: total, primaryCpuS: primary, primaryShare: server.primary ? primary / total : 0, workersCpuS: total - primary };
}

export async function clusterBench({ seconds = 8, connections = 64, concurrency = 32, size = 1 << 20 } = {}) {
  const rows = [];
  for (const mode of ['single', 1, 2]) {
    const server = await startServer(mode);
    try {
      const bulk = await phase(server, ['bulk', connections, seconds, size], seconds);
      const conn = await phase(server, ['connect', concurrency, seconds], seconds);
      // Subflows the primary dispatched in the connect phase: a new connection and a join each.
      const perSubflowUs = server.primary ? (conn.primaryCpuS / (2 * conn.connections)) * 1e6 : undefined;
      rows.push({ mode: mode === 'single' ? 'one process (no primary)' : `cluster, ${mode} worker${mode > 1 ? 's' : ''}`, workers: mode === 'single' ? 1 : mode, bulk, connect: conn, primaryCpuPerSubflowUs: perSubflowUs });
    } finally {
      await server.stop();
    }
  }
  return {
    cores: os.availableParallelism(),
    seconds,
    connections,
    concurrency,
    size,
    rows,
    note: `Loopback, ${os.availableParallelism()} cores; the clients run in one separate process (two-path connections, 127.0.0.1 + 127.0.0.2). bulk: ${connections} connections downloading ${size >> 20} MiB bodies back to back for ${seconds} s; connect: new connection + join + one request, ${concurrency} at a time, for ${seconds} s, counted when the second subflow was up at the server. Server CPU = user + system of its processes over the phase.`,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await clusterBench();
  console.log(JSON.stringify(r, null, 2));
}
