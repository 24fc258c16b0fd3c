// Shared bits of the benchmarks: fixtures, stats, a delay relay, process RSS.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { execSync } from 'node:child_process';

export { fixtures } from '../../test/support/fixtures.mjs';

const root = new URL('../../', import.meta.url);

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function machine() {
  const cpus = os.cpus();
  let kernel = os.release();
  return {
    cpu: `${cpus[0]?.model ?? 'unknown'} × ${cpus.length}`,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel,
    node: process.version,
    os: `${os.type()} ${os.arch()}`,
  };
}

export function rssKiB(pid = process.pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(s)[1]);
}

/**
 * A TCP relay that delays every chunk by `oneWayMs` in each direction: a path
 * of known RTT without netem (absent on this kernel).
 */
export async function delayRelay(targetPort, oneWayMs, host = '127.0.0.1') {
  const server = net.createServer((a) => {
    const b = net.connect({ host, port: targetPort });
    // A path delays bytes; it does not coalesce them: no Nagle on the relay's
    // own sockets (with it, a small chunk behind an unacknowledged one waits
    // for the peer's delayed ACK, up to 40 ms, which no router would add).
    a.setNoDelay(true);
    b.setNoDelay(true);
    for (const [from, to] of [[a, b], [b, a]]) {
      from.on('data', (d) => setTimeout(() => to.write(d), oneWayMs));
      from.on('end', () => setTimeout(() => to.end(), oneWayMs));
      from.on('error', () => to.destroy());
      from.on('close', () => setTimeout(() => to.destroy(), oneWayMs + 5));
    }
  });
  await new Promise((r) => server.listen(0, host, r));
  return { port: server.address().port, close: () => server.close() };
}

export function gitRev() {
  try {
    return execSync('git rev-parse --short HEAD', { cwd: new URL('.', root) }).toString().trim();
  } catch {
    return 'unknown';
  }
}
