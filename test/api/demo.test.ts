/**
 * `npm run demo` in small: examples/demo.mjs (which imports the built package
 * as 'mptls') downloads 4 MiB over two subflows on loopback, checks the
 * SHA-256 and prints the subflow table and the security facts.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function runDemo(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['examples/demo.mjs', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('examples/demo.mjs', () => {
  it('downloads 4 MiB over two subflows, checks it, and prints the table', async (ctx) => {
    if (!fs.existsSync(`${ROOT}dist/index.js`)) {
      if (process.env.CI === 'true') throw new Error('dist/ is missing: npm test builds it first');
      ctx.skip();
    }
    const r = await runDemo(['--size', '4194304']);
    expect(r.code, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/SHA-256 [0-9a-f]{64} matches/);
    expect(out).toMatch(/downloaded 4\.0 MiB in [\d.]+ s/);
    // The subflow table: a header and one row per local address.
    expect(out).toMatch(/id\s+local -> remote\s+sent\s+received\s+share\s+RTT\s+state/);
    expect(out).toMatch(/^\s+0\s+127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+\s/m);
    expect(out).toMatch(/^\s+1\s+127\.0\.0\.2:\d+ -> 127\.0\.0\.1:\d+\s/m);
    // The security facts.
    expect(out).toMatch(/mode\s+userspace/);
    expect(out).toMatch(/tokens\s+client \(A\) [0-9a-f]{8}, server \(B\) [0-9a-f]{8}; the server sees the same: yes/);
    expect(out).toMatch(/key fingerprints\s+A [0-9a-f]{16}, B [0-9a-f]{16} .*same on both ends: yes/);
    expect(out).toMatch(/joins\s+client sent 1; server accepted 1 \(MPJoinAckRx\), refused 0/);
    expect(out).toMatch(/TLS\s+TLSv1\.[23] \S+; server certificate verified: yes/);
    expect(out).toContain('OK in');
    expect(r.stderr).toBe('');
  });
});
