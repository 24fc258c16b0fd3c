/**
 * The mptls CLI, run in-process through `main(argv, io)`: `info --json`,
 * usage errors, and `serve --dir` + `get` over two subflows on loopback
 * (file bytes identical, `..` refused, 404 → 22, an unverified certificate →
 * 60, connection refused → 7, curl's codes). One run of the built `bin/mptls.js` checks the shim.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import type http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { sink } from '../support/sink.js';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CERT, EXIT_CONNECT, EXIT_HTTP, EXIT_OK, EXIT_USAGE, main, type CliIo } from '../../src/cli/main.js';
import * as https from '../../src/api/https.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURES = path.join(ROOT, 'certs-fixtures');
const CA = path.join(FIXTURES, 'ca.pem');

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string; raw: Buffer }> {
  const stdout = sink();
  const stderr = sink();
  const code = await main(argv, { stdout, stderr });
  await new Promise((r) => setImmediate(r));
  return { code, stdout: stdout.text(), stderr: stderr.text(), raw: stdout.bytes() };
}

describe('mptls info', () => {
  it('--json reports the host, the kernel MPTCP sysctls, koffi and the transports', async () => {
    const r = await run(['info', '--json']);
    expect(r.code).toBe(EXIT_OK);
    const info = JSON.parse(r.stdout);
    expect(info.node.version).toBe(process.version);
    expect(info.node.platform).toBe(process.platform);
    expect(info.mptls.version).toBe(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);
    expect(info.transports.userspace.available).toBe(true);
    expect(typeof info.transports.kernel.prerequisitesMet).toBe('boolean');
    expect(Array.isArray(info.transports.kernel.missing)).toBe(true);
    expect(typeof info.koffi.loads).toBe('boolean');
    expect(typeof info.ip.available).toBe('boolean');
    const enabledFile = '/proc/sys/net/mptcp/enabled';
    if (fs.existsSync(enabledFile)) {
      const v = fs.readFileSync(enabledFile, 'utf8').trim();
      expect(info.kernelMptcp.available).toBe(true);
      expect(info.kernelMptcp.sysctls['net.mptcp.enabled']).toBe(v);
      expect(info.kernelMptcp.enabled).toBe(v === '1');
    } else {
      expect(info.kernelMptcp.available).toBe(false);
      expect(info.kernelMptcp.enabled).toBe(false);
    }
    if (info.koffi.loads && info.kernelMptcp.enabled && process.platform === 'linux') {
      expect(info.kernelMptcp.socketProbe).not.toBeNull();
    }
  });

  it('prints aligned text without --json', async () => {
    const r = await run(['info']);
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toMatch(/^userspace transport\s+available/m);
    expect(r.stdout).toMatch(/^kernel MPTCP\s+/m);
    expect(r.stdout).toMatch(/^koffi\s+/m);
  });
});

describe('mptls usage', () => {
  it('--help and per-command help go to stdout with status 0', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toContain('Usage: mptls <command>');
    for (const cmd of ['serve', 'get', 'info']) {
      const h = await run([cmd, '--help']);
      expect(h.code).toBe(EXIT_OK);
      expect(h.stdout).toContain(`Usage: mptls ${cmd}`);
    }
    const serve = (await run(['serve', '--help'])).stdout;
    expect(serve).toContain('--status');
    expect(serve).toMatch(/shown to ANY client/);
  });

  it('an unknown command prints the usage on stderr and returns 2', async () => {
    const r = await run(['frobnicate']);
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('unknown command "frobnicate"');
    expect(r.stderr).toContain('Usage: mptls <command>');
    expect((await run([])).code).toBe(EXIT_USAGE);
  });

  it('bad options are usage errors', async () => {
    expect((await run(['get'])).code).toBe(EXIT_USAGE);
    expect((await run(['get', 'http://127.0.0.1/'])).code).toBe(EXIT_USAGE);
    expect((await run(['get', 'https://127.0.0.1/', '--local', 'nope'])).code).toBe(EXIT_USAGE);
    expect((await run(['get', 'https://127.0.0.1/', '--bogus'])).code).toBe(EXIT_USAGE);
    expect((await run(['serve', '--port', '0'])).code).toBe(EXIT_USAGE);
    const both = await run(['serve', '--cert', path.join(FIXTURES, 'server.pem'), '--key', path.join(FIXTURES, 'server.key'), '--status', '--dir', '.']);
    expect(both.code).toBe(EXIT_USAGE);
    expect(both.stderr).toContain('--status and --dir exclude each other');
    expect((await run(['info', '--bogus'])).code).toBe(EXIT_USAGE);
  });
});

describe('mptls serve --dir + mptls get', () => {
  let tmp: string;
  let root: string;
  let base: string;
  const stop = new AbortController();
  let served: Promise<number>;
  const serverLog = sink();

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mptls-cli-'));
    root = path.join(tmp, 'www');
    fs.mkdirSync(path.join(root, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(tmp, 'secret.txt'), 'outside the root\n');
    fs.writeFileSync(path.join(root, 'hello.txt'), 'hello over multipath\n');
    // 3 MB of varied bytes: many TLS records, every byte value.
    const big = Buffer.alloc(3_000_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
    fs.writeFileSync(path.join(root, 'sub', 'data.bin'), big);
    fs.symlinkSync(path.join(tmp, 'secret.txt'), path.join(root, 'escape.txt'));

    const stdout = sink();
    const io: CliIo = { stdout, stderr: serverLog, signal: stop.signal };
    served = main(['serve', '--cert', path.join(FIXTURES, 'server.pem'), '--key', path.join(FIXTURES, 'server.key'), '--port', '0', '--host', '127.0.0.1', '--dir', root], io);
    const deadline = Date.now() + 10_000;
    let m: RegExpMatchArray | null = null;
    while (!(m = stdout.text().match(/listening on (https:\/\/127\.0\.0\.1:\d+\/)/)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    if (!m) throw new Error(`serve did not start: ${stdout.text()} ${serverLog.text()}`);
    base = m[1];
  });

  afterAll(async () => {
    stop.abort();
    if (served) expect(await served).toBe(EXIT_OK);
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('get --local ×2 -o FILE writes exactly the file', async () => {
    const out = path.join(tmp, 'out.bin');
    const r = await run(['get', `${base}sub/data.bin`, '--cacert', CA, '--local', '127.0.0.1', '--local', '127.0.0.2', '-o', out, '-v', '--no-fallback']);
    expect(r.stderr).toContain('multipath: userspace');
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toBe('');
    expect(fs.readFileSync(out).equals(fs.readFileSync(path.join(root, 'sub', 'data.bin')))).toBe(true);
    expect(serverLog.text()).toMatch(/"GET \/sub\/data\.bin" 200 3000000 userspace/);
  });

  it('get without -o writes the body to stdout', async () => {
    const r = await run(['get', `${base}hello.txt`, '--cacert', CA]);
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toBe('hello over multipath\n');
  });

  it('a directory gets a listing, without its trailing slash a redirect', async () => {
    const r = await run(['get', `${base}sub/`, '--cacert', CA]);
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toContain('href="data.bin"');
    expect((await status('/sub')).status).toBe(301);
  });

  /** A raw request target (no URL normalisation), over multipath. */
  function status(target: string, method = 'GET'): Promise<{ status: number; body: string }> {
    const u = new URL(base);
    return new Promise((resolve, reject) => {
      const req = https.request(
        { host: u.hostname, port: Number(u.port), path: target, method, ca: fs.readFileSync(CA), agent: new https.Agent({ keepAlive: false }), mptcp: { fallback: false } },
        (res: http.IncomingMessage) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  it('refuses to leave the root: .., encoded .., encoded slash, symlinks', async () => {
    for (const target of ['/../secret.txt', '/sub/../../secret.txt', '/%2e%2e/secret.txt', '/sub/..%2f..%2fsecret.txt', '/escape.txt']) {
      const r = await status(target);
      expect([403, 404], target).toContain(r.status);
      expect(r.body).not.toContain('outside the root');
    }
    expect((await status('/%00')).status).toBe(400);
    expect((await status('/hello.txt', 'POST')).status).toBe(405);
  });

  it('get of a missing file returns 22 (HTTP error) and writes no file', async () => {
    const out = path.join(tmp, 'missing.out');
    const r = await run(['get', `${base}nope.txt`, '--cacert', CA, '-o', out]);
    expect(r.code).toBe(EXIT_HTTP);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('HTTP 404');
    expect(fs.existsSync(out)).toBe(false);
  });

  it('get without the CA fails verification with status 60 (curl\'s)', async () => {
    const r = await run(['get', `${base}hello.txt`]);
    expect(r.code).toBe(EXIT_CERT);
    expect(r.stderr).toMatch(/certificate/i);
  });

  it('get of a closed port returns 7 (curl\'s) with the connection error', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const r = await run(['get', `https://127.0.0.1:${port}/`, '--cacert', CA]);
    expect(r.code).toBe(EXIT_CONNECT);
    expect(r.stderr).toContain('ECONNREFUSED');
  });
});

describe('mptls serve --status', () => {
  const stop = new AbortController();
  let served: Promise<number>;
  let base: string;
  const stdout = sink();

  beforeAll(async () => {
    served = main(['serve', '--cert', path.join(FIXTURES, 'server.pem'), '--key', path.join(FIXTURES, 'server.key'), '--port', '0', '--status', '-q'], { stdout, stderr: sink(), signal: stop.signal });
    const deadline = Date.now() + 10_000;
    let m: RegExpMatchArray | null = null;
    while (!(m = stdout.text().match(/listening on (https:\/\/127\.0\.0\.1:\d+\/)/)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    if (!m) throw new Error(`serve did not start: ${stdout.text()}`);
    base = m[1];
  });
  afterAll(async () => {
    stop.abort();
    if (served) expect(await served).toBe(EXIT_OK);
  });

  it('"/" and "/status.json" show the connection, the server counters and the connection count', async () => {
    expect(stdout.text()).toContain('status page at / and /status.json');
    const html = await run(['get', base, '--cacert', CA, '--no-fallback']);
    expect(html.code).toBe(EXIT_OK);
    expect(html.stdout).toContain('<h2>Server</h2>');
    expect(html.stdout).toContain('multipath connections open');
    expect(html.stdout).toContain('MPCapableSYNRX');
    const json = await run(['get', `${base}status.json`, '--cacert', CA, '--no-fallback']);
    expect(json.code).toBe(EXIT_OK);
    const st = JSON.parse(json.stdout);
    expect(st.connection.mode).toBe('userspace');
    expect(typeof st.server.connections).toBe('number');
    expect(st.server.counters.MPCapableSYNRX).toBeGreaterThanOrEqual(2);
  });
});

describe('bin/mptls.js', () => {
  it('runs the built CLI and exits with its status', () => {
    const bin = path.join(ROOT, 'bin', 'mptls.js');
    const built = fs.existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'));
    if (!built && process.env.CI !== 'true') {
      console.warn('skipped: dist/ not built (npm run build)');
      return;
    }
    const v = spawnSync(process.execPath, [bin, '--version'], { encoding: 'utf8', timeout: 10_000 });
    expect(v.status).toBe(0);
    expect(v.stdout.trim()).toBe(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);
    const bad = spawnSync(process.execPath, [bin, 'nope'], { encoding: 'utf8', timeout: 10_000 });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('Usage: mptls');
  });
});
