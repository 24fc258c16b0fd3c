/**
 * The framework examples in examples/ (fetch with the undici connector,
 * axios, got, ws, Express, Fastify), each run as its own process: exit 0, a
 * multipath connection with 2 subflows seen by the server, nothing on stderr.
 *
 * They import the built package ('mptls' resolves to dist/), so they need
 * `npm run build` first; `npm test` builds before vitest. (examples/demo.mjs
 * has its own test, test/api/demo.test.ts.)
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TIMEOUT_MS = 30_000;

function run(file: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

/** Each example, and the lines (beyond the common ones) its output must have. */
const EXAMPLES: Array<[string, RegExp[]]> = [
  ['examples/fetch.mjs', [/^GET \/hello -> 200 /m, /^POST \/echo -> 200 \{"method":"POST","path":"\/echo","received":21,"mode":"userspace","subflows":2\}$/m, /^ {2}subflow 1: 127\.0\.0\.2:\d+ -> 127\.0\.0\.1:\d+$/m, /^server saw: mode userspace, 2 subflows, 1 connection\(s\)$/m]],
  ['examples/axios.mjs', [/^client: mode userspace, TLS TLSv1\.3, certificate verified: true$/m, /^POST \/echo -> 200 .*"received":21,"mode":"userspace","subflows":2\}$/m, /^server saw: mode userspace, 2 subflows, 1 connection\(s\)$/m]],
  ['examples/got.mjs', [/^client: mode userspace, TLS TLSv1\.3, certificate verified: true$/m, /^POST \/echo -> 200 .*"received":21,"mode":"userspace","subflows":2\}$/m, /^server saw: mode userspace, 2 subflows, 1 connection\(s\)$/m]],
  ['examples/ws.mjs', [/^server -> client: \{"hello":"from the server","mode":"userspace"\}$/m, /^client -> server -> client: echo: hi from the client$/m, /^client -> server: 1 MiB binary, server answered \{"got":1048576,.*"subflows":2\}$/m, /^server saw: mode userspace, 2 subflows$/m]],
  ['examples/express.mjs', [/^GET \/hello -> 200 \{"hello":"from express","secure":true\}$/m, /^GET \/whoami -> 200 \{"mode":"userspace","subflows":\["127\.0\.0\.1:\d+","127\.0\.0\.2:\d+"\]/m, /^server saw: mode userspace, 2 subflows$/m]],
  ['examples/tunnel.mjs', [/^echoed 4194304 bytes through the tunnel: intact$/m, /^proxy: 1 tunnel\(s\), 4194304 bytes up, 4194304 down; the tunnel used 2 subflows$/m]],
  ['examples/fastify.mjs', [/^GET \/hello -> 200 \{"hello":"from fastify","protocol":"https"\}$/m, /^GET \/whoami -> 200 \{"mode":"userspace","subflows":\["127\.0\.0\.1:\d+","127\.0\.0\.2:\d+"\]/m, /^server saw: mode userspace, 2 subflows$/m]],
];

describe('examples', () => {
  it.for(EXAMPLES)('%s runs over two subflows and exits 0', { timeout: TIMEOUT_MS + 5_000 }, async ([file, lines], ctx) => {
    if (!fs.existsSync(`${ROOT}dist/index.js`)) {
      if (process.env.CI === 'true') throw new Error('dist/ is missing: npm test builds it first');
      ctx.skip();
    }
    const r = await run(file);
    const shown = `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
    expect(r.timedOut, `killed after ${TIMEOUT_MS / 1000} s\n${shown}`).toBe(false);
    expect(r.code, shown).toBe(0);
    expect(r.stdout, shown).toMatch(/^server: (https|wss):\/\/127\.0\.0\.1:\d+\/? /m);
    for (const line of lines) expect(r.stdout, shown).toMatch(line);
    expect(r.stdout).toMatch(/^OK$/m);
    expect(r.stderr, shown).toBe('');
  });
});
