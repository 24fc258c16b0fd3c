/**
 * Kernel-mode interop with programs that are not Node, made MPTCP by
 * `mptcpize run` (LD_PRELOAD: their TCP sockets become IPPROTO_MPTCP):
 *
 * (a) `mptcpize run curl` against `mptls serve --kernel`: the server's
 *     `req.socket.mptcp.mode` is 'kernel' (in /status.json, and in the access
 *     log of a --dir server, whose bytes curl gets intact); plain curl on the
 *     same port is 'fallback' (the control: the mode tells them apart);
 * (b) `mptcpize run openssl s_client` sends a GET to `mptls serve --kernel`
 *     and reads the body; the access log says 'kernel';
 * (c) `mptls get --kernel` against `mptcpize run openssl s_server -www`:
 *     exit 0 with s_server's status page; `ss -M` lists s_server's MPTCP
 *     listener, the client socket's MPTCP_INFO says MPTCP (no fallback:
 *     -w %{mptcp_mode} = kernel) and the kernel's MPTcpExt MPCapableSYNACKRX
 *     counter moved; against s_server without mptcpize it is 'fallback'.
 *
 * Needs Linux with kernel MPTCP (net.mptcp.enabled = 1), koffi, and the
 * mptcpize, curl, openssl and ss (iproute2) commands. Without them the
 * suite is skipped with the reason printed, except under CI (process.env.CI),
 * where a missing prerequisite fails the run. Loopback only (127.0.0.1).
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_OK } from '../../src/cli/main.js';
import { kernelSupport, readMptcpNetstat } from '../../src/transport/kernel/index.js';
import { CA, CERT, freePort, KEY, run, serve, type Served } from '../cli/helpers.js';

const IN_CI = Boolean(process.env.CI);

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
}

function prerequisites(): string | undefined {
  if (process.platform !== 'linux') return `platform is ${process.platform}, not linux`;
  const k = kernelSupport();
  if (!k.ok) return `kernel MPTCP: ${k.reason}`;
  for (const cmd of ['mptcpize', 'curl', 'openssl', 'ss']) if (!have(cmd)) return `${cmd} not found (Debian: apt-get install ${cmd === 'ss' ? 'iproute2' : cmd})`;
  return undefined;
}
const unmet = prerequisites();
if (unmet && !IN_CI) console.warn(`[mptcpize interop] skipped: ${unmet}`);

// Under CI this must run: a missing prerequisite is a failure, never a skip.
describe('mptcpize interop prerequisites', () => {
  it('are all present whenever CI is set', () => {
    if (unmet !== undefined && IN_CI) throw new Error(`mptcpize interop tests cannot run under CI: ${unmet}`);
    expect(unmet === undefined || !IN_CI).toBe(true);
  });
});

interface Ran {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** A command, asynchronously (the servers run in this process), with optional stdin. */
function exec(cmd: string, args: string[], input?: string, timeoutMs = 20_000): Promise<Ran> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { encoding: 'buffer', timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof (error as { code?: unknown }).code === 'number' ? (error as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr: stderr.toString('utf8') });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** `ss -Mln` (MPTCP sockets only, listening): their local "ADDR:PORT". */
function mptcpListeners(): string[] {
  const r = spawnSync('ss', ['-Mln'], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[0] === 'LISTEN')
    .map((f) => f[3]);
}

/** The access-log line of the last request for `target`. */
function logLine(s: Served, target: string): string | undefined {
  return s.log
    .text()
    .split('\n')
    .filter((l) => l.includes(`"GET ${target}"`))
    .at(-1);
}

async function waitFor<T>(f: () => T | undefined, what: () => string, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.skipIf(unmet !== undefined)('mptcpize: non-Node programs over kernel MPTCP', () => {
  let tmp: string;
  let file: Buffer;
  let dir: Served;
  let status: Served;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mptls-mptcpize-'));
    file = Buffer.alloc(1_000_000);
    for (let i = 0; i < file.length; i++) file[i] = (i * 2654435761) >>> 24;
    fs.writeFileSync(path.join(tmp, 'file.bin'), file);
    fs.writeFileSync(path.join(tmp, 'hello.txt'), 'hello from mptls serve --kernel\n');
    dir = await serve(['--kernel', '--dir', tmp]);
    status = await serve(['--kernel', '--status']);
  });

  afterAll(async () => {
    if (dir) expect(await dir.stop()).toBe(EXIT_OK);
    if (status) expect(await status.stop()).toBe(EXIT_OK);
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('serve --kernel listens on an MPTCP socket (ss -M) and says so', () => {
    expect(dir.stdout.text()).toContain('multipath (userspace and Linux kernel MPTCP) and plain TLS');
    expect(mptcpListeners()).toContain(`127.0.0.1:${dir.port}`);
    expect(mptcpListeners()).toContain(`127.0.0.1:${status.port}`);
  });

  it('(a) mptcpize run curl: the server sees a kernel MPTCP connection; plain curl is fallback', async () => {
    const json = await exec('mptcpize', ['run', 'curl', '-sS', '--fail', '--cacert', CA, `${status.base}status.json`]);
    expect(json.code, json.stderr).toBe(0);
    const st = JSON.parse(json.stdout.toString('utf8'));
    expect(st.connection.mode).toBe('kernel');
    expect(st.connection.subflows.length).toBeGreaterThanOrEqual(1);
    const plain = await exec('curl', ['-sS', '--fail', '--cacert', CA, `${status.base}status.json`]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(JSON.parse(plain.stdout.toString('utf8')).connection.mode).toBe('fallback');

    const out = path.join(tmp, 'curl.out');
    const got = await exec('mptcpize', ['run', 'curl', '-sS', '--fail', '--cacert', CA, '-o', out, `${dir.base}file.bin`]);
    expect(got.code, got.stderr).toBe(0);
    expect(fs.readFileSync(out).equals(file)).toBe(true);
    const line = await waitFor(() => logLine(dir, '/file.bin'), () => `the access log line of /file.bin in: ${dir.log.text()}`);
    expect(line).toMatch(/"GET \/file\.bin" 200 1000000 kernel \d+ subflows?/);
  });

  it('(b) mptcpize run openssl s_client: a GET by hand, the body back, a kernel connection', async () => {
    const request = 'GET /hello.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n';
    const r = await exec('mptcpize', ['run', 'openssl', 's_client', '-connect', `127.0.0.1:${dir.port}`, '-CAfile', CA, '-verify_return_error', '-quiet'], request);
    expect(r.code, r.stderr).toBe(0);
    const text = r.stdout.toString('utf8');
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(text.slice(text.indexOf('\r\n\r\n') + 4)).toBe('hello from mptls serve --kernel\n');
    const line = await waitFor(() => logLine(dir, '/hello.txt'), () => `the access log line of /hello.txt in: ${dir.log.text()}`);
    expect(line).toMatch(/"GET \/hello\.txt" 200 32 kernel/);
  });

  describe('(c) mptls get --kernel against openssl s_server -www', () => {
    const children: ChildProcess[] = [];
    afterAll(() => {
      for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    });

    async function sServer(mptcpize: boolean): Promise<number> {
      const port = await freePort();
      const args = ['s_server', '-www', '-accept', `127.0.0.1:${port}`, '-cert', CERT, '-key', KEY];
      const child = mptcpize ? spawn('mptcpize', ['run', 'openssl', ...args]) : spawn('openssl', args);
      children.push(child);
      let out = '';
      child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
      await waitFor(() => out.includes('ACCEPT') || child.exitCode !== null, () => `openssl s_server: ${out}`);
      if (!out.includes('ACCEPT')) throw new Error(`openssl s_server did not start: ${out}`);
      return port;
    }

    it('exits 0 with the status page over a kernel MPTCP connection', async () => {
      const port = await sServer(true);
      expect(mptcpListeners()).toContain(`127.0.0.1:${port}`);
      const before = readMptcpNetstat();
      const r = await run(['get', '--kernel', '--no-fallback', `https://127.0.0.1:${port}/`, '--cacert', CA, '-w', '\\n%{mptcp_mode} %{num_subflows} %{http_code}']);
      const after = readMptcpNetstat();
      expect(r.code, r.stderr).toBe(EXIT_OK);
      expect(r.stdout).toContain('<HTML><BODY BGCOLOR="#ffffff">');
      expect(r.stdout).toContain(`s_server -www -accept 127.0.0.1:${port}`);
      expect(r.stdout).toContain('Ciphers supported in s_server binary');
      expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('kernel 1 200');
      // The kernel's own count: a SYN/ACK with MP_CAPABLE received (namespace-wide, so at least one).
      expect((after.MPCapableSYNACKRX ?? 0) - (before.MPCapableSYNACKRX ?? 0)).toBeGreaterThanOrEqual(1);
    });

    it('without mptcpize the same command is a fallback (the mode is the kernel\'s answer, not a label)', async () => {
      const port = await sServer(false);
      expect(mptcpListeners()).not.toContain(`127.0.0.1:${port}`);
      const r = await run(['get', '--kernel', `https://127.0.0.1:${port}/`, '--cacert', CA, '-w', '\\n%{mptcp_mode} %{mptcp_fallback_reason}']);
      expect(r.code, r.stderr).toBe(EXIT_OK);
      expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('fallback peer does not speak MPTCP');
      const strict = await run(['get', '--kernel', '--no-fallback', `https://127.0.0.1:${port}/`, '--cacert', CA]);
      expect(strict.code).not.toBe(EXIT_OK);
      expect(strict.stderr).toMatch(/multipath|MPTCP/);
    });
  });
});
