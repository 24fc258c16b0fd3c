/**
 * `mptls get`'s curl options, each against real servers on loopback: an
 * in-process `mptls serve --dir`, and an mptls https server (src/api) with
 * echo, redirect, flaky and broken routes. Where curl can talk to the same
 * server as a plain TLS client, /usr/bin/curl (7.88) runs the same options
 * and the two must agree: -w, -I, -i, -L (and POST→GET), -d, -X, -H, -r,
 * -O, --max-redirs, --retry, -m, --connect-timeout, and the exit codes.
 * Also: a server that accepts TCP and never speaks fails within
 * --connect-timeout with 28, an unusable --local is 45 and never used, the
 * progress meter only on a terminal.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import type http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as https from '../../src/api/https.js';
import { parseHeader, remoteName } from '../../src/cli/get.js';
import {
  EXIT_CERT,
  EXIT_CONNECT,
  EXIT_EMPTY_REPLY,
  EXIT_ERROR,
  EXIT_HTTP,
  EXIT_INTERFACE,
  EXIT_OK,
  EXIT_PARTIAL,
  EXIT_PIN,
  EXIT_REDIRECTS,
  EXIT_RESOLVE,
  EXIT_TIMEOUT,
  EXIT_TLS,
  EXIT_USAGE,
  EXIT_WRITE,
} from '../../src/cli/main.js';
import { isHostAddress, localAddressProblem } from '../../src/cli/local-address.js';
import { classify, TransferError } from '../../src/cli/transfer-errors.js';
import { renderWriteOut } from '../../src/cli/write-out.js';
import { fixtures } from '../support/fixtures.mjs';
import { CA, curl, freePort, ROOT, run, serve, stableHeaders, type Served } from './helpers.js';

let tmp: string;
let www: string;
let big: Buffer;
let dir: Served;
/** The mptls https server with the test routes, and what it saw. */
let app: { base: string; server: ReturnType<typeof https.createServer> };
const hits = new Map<string, number>();

function hit(key: string): number {
  const n = (hits.get(key) ?? 0) + 1;
  hits.set(key, n);
  return n;
}

function routes(req: http.IncomingMessage, res: http.ServerResponse): void {
  const u = new URL(req.url ?? '/', 'https://x');
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const mode = (req.socket as { mptcp?: { mode?: string } }).mptcp?.mode ?? '?';
    switch (u.pathname) {
      case '/echo':
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ method: req.method, headers: req.rawHeaders, body, mode }));
        return;
      case '/redirect': {
        res.writeHead(Number(u.searchParams.get('code') ?? 302), { location: u.searchParams.get('to') ?? '/echo' });
        res.end('moving\n');
        return;
      }
      case '/loop':
        res.writeHead(302, { location: '/loop' });
        res.end();
        return;
      case '/flaky': {
        // Fails twice per key with 503, then answers.
        const n = hit(`flaky:${u.searchParams.get('key')}`);
        if (n <= 2) {
          res.writeHead(503, { 'content-type': 'text/plain' });
          res.end('busy\n');
        } else res.end(`ok after ${n}\n`);
        return;
      }
      case '/status': {
        hit(`status:${u.searchParams.get('key')}`);
        res.writeHead(Number(u.searchParams.get('code')), { 'content-type': 'text/plain' });
        res.end('status\n');
        return;
      }
      case '/stall':
        // Headers and a first piece, then nothing.
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
        res.write('x'.repeat(10));
        return;
      case '/truncated':
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
        res.write('y'.repeat(10), () => setTimeout(() => req.socket.destroy(), 50));
        return;
      case '/drop':
        req.socket.destroy();
        return;
      default:
        res.writeHead(404);
        res.end('no such route\n');
    }
  });
}

beforeAll(async () => {
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'mptls-get-')));
  www = path.join(tmp, 'www');
  fs.mkdirSync(path.join(www, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(www, 'hello.txt'), 'hello over multipath\n');
  big = Buffer.alloc(3_000_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
  fs.writeFileSync(path.join(www, 'sub', 'data.bin'), big);
  dir = await serve(['--dir', www]);
  const server = https.createServer({ key: fixtures.key, cert: fixtures.cert }, routes);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  app = { server, base: `https://127.0.0.1:${(server.address() as net.AddressInfo).port}` };
});

afterAll(async () => {
  if (dir) expect(await dir.stop()).toBe(EXIT_OK);
  if (app) {
    app.server.closeAllConnections();
    await new Promise<void>((resolve) => app.server.close(() => resolve()));
  }
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const ca = ['--cacert', CA];

describe('-w / --write-out', () => {
  it('prints the same "%{http_code} %{size_download}" as curl, for a file and a 404 (curl -f)', async () => {
    for (const p of ['hello.txt', 'sub/data.bin', 'nope.txt']) {
      const ours = await run(['get', `${dir.base}${p}`, ...ca, '-o', path.join(tmp, 'w.out'), '-w', '%{http_code} %{size_download}\\n']);
      const theirs = await curl(['-s', '-f', ...ca, '-o', path.join(tmp, 'w.curl'), '-w', '%{http_code} %{size_download}\\n', `${dir.base}${p}`]);
      expect(ours.stdout, p).toBe(theirs.stdout.toString());
      expect(ours.code, p).toBe(theirs.code);
    }
  });

  it('reports the multipath connection: num_subflows, mptcp_mode, addresses, times in order', async () => {
    const r = await run([
      'get', `${dir.base}sub/data.bin`, ...ca, '--local', '127.0.0.1', '--local', '127.0.0.2', '--no-fallback', '-o', path.join(tmp, 'two.bin'),
      '-w', '%{num_subflows} %{mptcp_mode} %{remote_ip} %{remote_port} %{local_ip} %{url_effective} %{num_redirects} %{time_connect} %{time_appconnect} %{time_starttransfer} %{time_total}',
    ]);
    expect(r.code, r.stderr).toBe(EXIT_OK);
    const [subflows, mode, ip, port, local, url, redirects, ...times] = r.stdout.split(' ');
    expect(Number(subflows)).toBe(2);
    expect(mode).toBe('userspace');
    expect(ip).toBe('127.0.0.1');
    expect(Number(port)).toBe(dir.port);
    expect(local).toBe('127.0.0.1');
    expect(url).toBe(`${dir.base}sub/data.bin`);
    expect(redirects).toBe('0');
    const t = times.map(Number);
    for (const x of times) expect(x).toMatch(/^\d+\.\d{6}$/);
    expect(t[0]).toBeGreaterThan(0);
    expect(t[0]).toBeLessThanOrEqual(t[1]);
    expect(t[1]).toBeLessThanOrEqual(t[2]);
    expect(t[2]).toBeLessThanOrEqual(t[3]);
    expect(fs.readFileSync(path.join(tmp, 'two.bin')).equals(big)).toBe(true);
  });

  it('a single-subflow connection has num_subflows 1; a plain-TLS one (fallback) too', async () => {
    const one = await run(['get', `${dir.base}hello.txt`, ...ca, '-w', '%{num_subflows} %{mptcp_mode}']);
    expect(one.stdout).toBe('hello over multipath\n1 userspace');
    const plain = tls.createServer({ key: fixtures.key, cert: fixtures.cert }, (s) => {
      s.once('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc'));
    });
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    try {
      const fb = await run(['get', `https://127.0.0.1:${(plain.address() as net.AddressInfo).port}/`, ...ca, '-w', '%{num_subflows} %{mptcp_mode} %{http_code}']);
      expect(fb.code).toBe(EXIT_OK);
      expect(fb.stdout).toBe('abc1 fallback 200');
    } finally {
      await new Promise<void>((resolve) => plain.close(() => resolve()));
    }
  });

  it('%{json} is one JSON object with curl\'s names; %{stderr} switches; escapes and unknown names as curl', async () => {
    const r = await run(['get', `${dir.base}hello.txt`, ...ca, '-o', path.join(tmp, 'j.out'), '-w', '%{json}%{stderr}err %{http_code}%{stdout}\\t%{nope}%%\\q']);
    expect(r.code).toBe(EXIT_OK);
    const end = r.stdout.lastIndexOf('}') + 1;
    const j = JSON.parse(r.stdout.slice(0, end));
    expect(j.http_code).toBe(200);
    expect(j.size_download).toBe(21);
    expect(j.num_subflows).toBe(1);
    expect(j.url_effective).toBe(`${dir.base}hello.txt`);
    expect(j.exitcode).toBe(0);
    expect(r.stdout.slice(end)).toBe('\t%\\q');
    expect(r.stderr).toContain('err 200');
    expect(r.stderr).toContain("unknown --write-out variable: 'nope'");
    const theirs = await curl(['-s', ...ca, '-o', '/dev/null', '-w', '%{stderr}%{stdout}\\t%{nope}%%\\q', `${dir.base}hello.txt`]);
    expect(theirs.stdout.toString()).toBe('\t%\\q');
    expect(theirs.stderr).toContain("unknown --write-out variable: 'nope'");
  });

  it('%header{name} and http_code 000 when nothing answered (as curl)', async () => {
    const h = await run(['get', `${dir.base}hello.txt`, ...ca, '-o', path.join(tmp, 'h.out'), '-w', '%header{content-type}|%header{x-missing}|%{content_type}']);
    expect(h.stdout).toBe('text/plain; charset=utf-8||text/plain; charset=utf-8');
    const port = await freePort();
    const ours = await run(['get', `https://127.0.0.1:${port}/`, ...ca, '-s', '-w', '%{http_code} %{exitcode}']);
    const theirs = await curl(['-s', ...ca, '-w', '%{http_code} %{exitcode}', `https://127.0.0.1:${port}/`]);
    expect(ours.stdout).toBe(theirs.stdout.toString());
    expect(ours.stdout).toBe(`000 ${EXIT_CONNECT}`);
    expect(ours.stderr).toBe(''); // -s: no error message, as curl
  });

  it('renderWriteOut on its own', () => {
    const warn: string[] = [];
    const out = renderWriteOut('%{http_code}|%{time_total}|%{remote_ip}|%{x}|100%|%{|\\n', { http_code: 7, time_total: 1.5, remote_ip: null }, () => undefined, (m) => warn.push(m));
    expect(out).toEqual([{ to: 'stdout', text: '007|1.500000|||100%|%{|\n' }]);
    expect(renderWriteOut('a%{stderr}b%{stdout}c', {}, () => undefined, () => {})).toEqual([
      { to: 'stdout', text: 'a' },
      { to: 'stderr', text: 'b' },
      { to: 'stdout', text: 'c' },
    ]);
    expect(warn).toEqual(["unknown --write-out variable: 'x'"]);
  });
});

describe('-I, -i', () => {
  it('-I prints the same header block as curl -I (but Date/Connection)', async () => {
    for (const p of ['hello.txt', 'sub', 'nope.txt']) {
      const ours = await run(['get', '-I', `${dir.base}${p}`, ...ca]);
      const theirs = await curl(['-s', '-f', '-I', ...ca, `${dir.base}${p}`]);
      expect(stableHeaders(ours.stdout), p).toBe(stableHeaders(theirs.stdout.toString()));
      expect(ours.code, p).toBe(theirs.code); // 404: 22 with the headers printed, as curl -f -I
    }
    const r = await run(['get', '-I', `${dir.base}hello.txt`, ...ca]);
    expect(r.stdout).toMatch(/^HTTP\/1\.1 200 OK\r\ncontent-type: text\/plain; charset=utf-8\r\ncontent-length: 21\r\n/);
    expect(r.stdout.endsWith('\r\n\r\n')).toBe(true);
    expect(dir.log.text()).toMatch(/"HEAD \/hello\.txt" 200 21 userspace/);
  });

  it('-i prints the headers, then the body, as curl -i', async () => {
    const ours = await run(['get', '-i', `${dir.base}hello.txt`, ...ca]);
    const theirs = await curl(['-s', '-i', ...ca, `${dir.base}hello.txt`]);
    expect(stableHeaders(ours.stdout)).toBe(stableHeaders(theirs.stdout.toString()));
    expect(ours.stdout.endsWith('\r\n\r\nhello over multipath\n')).toBe(true);
  });
});

describe('-L / --location', () => {
  it('follows a directory redirect like curl -L: same body, num_redirects, url_effective', async () => {
    const w = ['-w', '\\n%{num_redirects} %{url_effective} %{http_code}'];
    const ours = await run(['get', '-L', `${dir.base}sub`, ...ca, ...w]);
    const theirs = await curl(['-s', '-L', ...ca, ...w, `${dir.base}sub`]);
    expect(ours.code).toBe(EXIT_OK);
    expect(ours.stdout).toBe(theirs.stdout.toString());
    expect(ours.stdout).toContain(`\n1 ${dir.base}sub/ 200`);
  });

  it('without -L a redirect is the answer (its body, exit 0, redirect_url), as curl', async () => {
    const w = ['-w', '|%{http_code} %{redirect_url}'];
    const ours = await run(['get', `${dir.base}sub`, ...ca, ...w]);
    const theirs = await curl(['-s', ...ca, ...w, `${dir.base}sub`]);
    expect(ours.code).toBe(EXIT_OK);
    expect(ours.stdout).toBe(theirs.stdout.toString());
    expect(ours.stdout).toBe(`Moved to /sub/\n|301 ${dir.base}sub/`);
  });

  it('-i -L prints every hop\'s headers, as curl', async () => {
    const ours = await run(['get', '-i', '-L', `${dir.base}sub`, ...ca]);
    const theirs = await curl(['-s', '-i', '-L', ...ca, `${dir.base}sub`]);
    expect(stableHeaders(ours.stdout)).toBe(stableHeaders(theirs.stdout.toString()));
    expect(ours.stdout.match(/^HTTP\/1\.1 /gm)).toHaveLength(2);
  });

  it('301/302/303 turn a POST into a GET, 307/308 keep it and its body; -X sticks (all as curl)', async () => {
    const cases: [string, string[]][] = [
      ['302', ['-d', 'a=1']],
      ['301', ['-d', 'a=1']],
      ['303', ['-d', 'a=1']],
      ['307', ['-d', 'a=1']],
      ['308', ['-d', 'a=1']],
      ['303', ['-X', 'PUT', '-d', 'a=1']],
      ['302', ['-X', 'POST', '-d', 'a=1']],
    ];
    for (const [code, opts] of cases) {
      const url = `${app.base}/redirect?code=${code}&to=/echo`;
      const ours = await run(['get', '-L', url, ...ca, ...opts]);
      const theirs = await curl(['-s', '-L', ...ca, ...opts, url]);
      expect(ours.code, `${code} ${opts.join(' ')}: ${ours.stderr}`).toBe(EXIT_OK);
      const a = JSON.parse(ours.stdout);
      const b = JSON.parse(theirs.stdout.toString());
      expect({ method: a.method, body: a.body }, `${code} ${opts.join(' ')}`).toEqual({ method: b.method, body: b.body });
    }
  });

  it('relative Locations resolve against the current URL', async () => {
    const url = `${app.base}/redirect?code=302&to=${encodeURIComponent('echo?x=1')}`;
    const r = await run(['get', '-L', url, ...ca, '-o', path.join(tmp, 'rel.out'), '-w', '%{url_effective}']);
    expect(r.stdout).toBe(`${app.base}/echo?x=1`);
  });

  it('--max-redirs: 47 after too many, as curl; the default is 50', async () => {
    const ours = await run(['get', '-L', '--max-redirs', '3', `${app.base}/loop`, ...ca, '-w', '%{num_redirects}']);
    const theirs = await curl(['-s', '-L', '--max-redirs', '3', ...ca, '-w', '%{num_redirects}', `${app.base}/loop`]);
    expect(ours.code).toBe(EXIT_REDIRECTS);
    expect(theirs.code).toBe(EXIT_REDIRECTS);
    expect(ours.stdout).toBe(theirs.stdout.toString());
    expect(ours.stderr).toMatch(/maximum \(3\) redirects followed/i);
    const def = await run(['get', '-L', `${app.base}/loop`, ...ca, '-s', '-w', '%{num_redirects}']);
    expect(def.code).toBe(EXIT_REDIRECTS);
    expect(def.stdout).toBe('50');
  });

  it('refuses a redirect from https: to http: (no downgrade of a TLS-bound connection)', async () => {
    const url = `${app.base}/redirect?code=302&to=${encodeURIComponent('http://127.0.0.1:9/')}`;
    const r = await run(['get', '-L', url, ...ca]);
    expect(r.code).toBe(EXIT_ERROR);
    expect(r.stderr).toContain('refusing to follow the redirect');
    expect(r.stderr).toContain('http://127.0.0.1:9/');
    expect(r.stderr).toMatch(/bound to TLS/);
  });
});

describe('-d, -X, -H', () => {
  /** The request the echo route saw, without the headers that differ by design (User-Agent's value, Connection). */
  function seen(stdout: string): { method: string; body: string; headers: string[] } {
    const e = JSON.parse(stdout) as { method: string; body: string; headers: string[] };
    const headers: string[] = [];
    for (let i = 0; i < e.headers.length; i += 2) {
      const n = e.headers[i].toLowerCase();
      if (n === 'connection') continue;
      headers.push(`${n}: ${n === 'user-agent' ? (e.headers[i + 1] === '' ? '' : '(agent)') : e.headers[i + 1]}`);
    }
    // The order differs (curl puts -H headers before its Content-Length): compare the sets.
    return { method: e.method, body: e.body, headers: headers.sort() };
  }

  it('sends what curl sends for -d, --data-binary, -d @file, -X, -H (add, replace, remove, empty)', async () => {
    const file = path.join(tmp, 'form.txt');
    fs.writeFileSync(file, 'x=1\r\ny=2\n');
    const cases: string[][] = [
      ['-d', 'a=1'],
      ['-d', 'a=1', '-d', 'b=2'],
      ['-d', `@${file}`],
      ['--data-binary', `@${file}`],
      ['--data-raw', '@literal'],
      ['-d', 'a=1', '-H', 'Content-Type: application/json'],
      ['-X', 'PUT', '-d', 'v'],
      ['-X', 'DELETE'],
      ['-H', 'X-One: 1', '-H', 'X-Two:  two words '],
      ['-H', 'Accept: text/plain', '-H', 'User-Agent:'],
      ['-H', 'X-Empty;'],
      ['-r', '0-9'],
    ];
    for (const opts of cases) {
      const ours = await run(['get', `${app.base}/echo`, ...ca, ...opts]);
      const theirs = await curl(['-s', ...ca, ...opts, `${app.base}/echo`]);
      expect(ours.code, `${opts.join(' ')}: ${ours.stderr}`).toBe(EXIT_OK);
      expect(seen(ours.stdout), opts.join(' ')).toEqual(seen(theirs.stdout.toString()));
    }
    const ua = JSON.parse((await run(['get', `${app.base}/echo`, ...ca])).stdout).headers as string[];
    expect(ua[ua.indexOf('User-Agent') + 1]).toMatch(/^mptls\//);
  });

  it('-H without a colon, -I with -d and a bad -X are usage errors', async () => {
    expect((await run(['get', `${app.base}/echo`, '-H', 'NoColon'])).code).toBe(EXIT_USAGE);
    expect((await run(['get', `${app.base}/echo`, '-I', '-d', 'x'])).code).toBe(EXIT_USAGE);
    expect((await run(['get', `${app.base}/echo`, '-X', 'GET /x'])).code).toBe(EXIT_USAGE);
    expect((await run(['get', `${app.base}/echo`, '-r', 'bytes=1'])).code).toBe(EXIT_USAGE);
    expect(parseHeader('A: b')).toEqual(['A', 'b']);
    expect(parseHeader('A:')).toEqual(['A', null]);
    expect(parseHeader('A;')).toEqual(['A', '']);
  });
});

describe('-r, -o, -O', () => {
  it('-r ranges give the same bytes as curl -r', async () => {
    for (const r of ['0-99', '-500', '2999000-', '10-10', '0-1,5-6']) {
      const ours = await run(['get', '-r', r, `${dir.base}sub/data.bin`, ...ca]);
      const theirs = await curl(['-s', '-r', r, ...ca, `${dir.base}sub/data.bin`]);
      expect(ours.code, r).toBe(EXIT_OK);
      expect(ours.raw.equals(theirs.stdout), r).toBe(true);
    }
    const past = await run(['get', '-r', '5000000-', `${dir.base}sub/data.bin`, ...ca, '-w', '%{http_code}']);
    const curlPast = await curl(['-s', '-f', '-r', '5000000-', ...ca, '-w', '%{http_code}', `${dir.base}sub/data.bin`]);
    expect(past.code).toBe(EXIT_HTTP);
    expect(curlPast.code).toBe(EXIT_HTTP);
    expect(past.stdout).toBe('416');
    expect(curlPast.stdout.toString()).toBe('416');
  });

  it('-O names the file after the URL\'s last segment (--output-dir), as curl -O', async () => {
    const ours = path.join(tmp, 'O-ours');
    const theirs = path.join(tmp, 'O-curl');
    fs.mkdirSync(ours);
    fs.mkdirSync(theirs);
    const r = await run(['get', '-O', '--output-dir', ours, `${dir.base}sub/data.bin?x=1`, ...ca]);
    expect(r.code).toBe(EXIT_OK);
    expect(r.stdout).toBe('');
    const c = await curl(['-s', '-O', '--output-dir', theirs, ...ca, `${dir.base}sub/data.bin?x=1`]);
    expect(c.code).toBe(0);
    expect(fs.readdirSync(ours)).toEqual(fs.readdirSync(theirs));
    expect(fs.readdirSync(ours)).toEqual(['data.bin']);
    expect(fs.readFileSync(path.join(ours, 'data.bin')).equals(big)).toBe(true);
    expect(remoteName(new URL('https://h/a/b%20c.txt'))).toBe('b%20c.txt');
  });

  it('-O without a file name in the URL is 23 before connecting, as curl', async () => {
    const before = dir.log.text().length;
    const ours = await run(['get', '-O', '--output-dir', tmp, dir.base, ...ca]);
    const theirs = await curl(['-s', '-O', '--output-dir', tmp, ...ca, dir.base]);
    expect(ours.code).toBe(EXIT_WRITE);
    expect(theirs.code).toBe(EXIT_WRITE);
    expect(ours.stderr).toMatch(/no file name/);
    expect(dir.log.text().length).toBe(before);
  });

  it('-O in the current directory (the built CLI, spawned with cwd = a temp dir)', async (ctx) => {
    if (!fs.existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) {
      if (process.env.CI === 'true') throw new Error('dist/ not built');
      ctx.skip();
    }
    const cwd = path.join(tmp, 'O-cwd');
    fs.mkdirSync(cwd);
    const code = await new Promise<number>((resolve) => {
      execFile(process.execPath, [path.join(ROOT, 'bin', 'mptls.js'), 'get', '-O', `${dir.base}hello.txt`, '--cacert', CA], { cwd, timeout: 20_000 }, (e) =>
        resolve(e ? Number((e as { code?: number }).code ?? -1) : 0),
      );
    });
    expect(code).toBe(0);
    expect(fs.readFileSync(path.join(cwd, 'hello.txt'), 'utf8')).toBe('hello over multipath\n');
  });

  it('an unwritable -o is 23, as curl; a failed transfer leaves no file', async () => {
    const bad = path.join(tmp, 'no-such-dir', 'x');
    const ours = await run(['get', `${dir.base}hello.txt`, ...ca, '-o', bad]);
    const theirs = await curl(['-s', ...ca, '-o', bad, `${dir.base}hello.txt`]);
    expect(ours.code).toBe(EXIT_WRITE);
    expect(theirs.code).toBe(EXIT_WRITE);
    const out = path.join(tmp, 'trunc.out');
    const t = await run(['get', `${app.base}/truncated`, ...ca, '-o', out]);
    expect(t.code).toBe(EXIT_PARTIAL);
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe('timeouts', () => {
  it('a server that accepts TCP and never speaks: --connect-timeout 1 fails in < 3 s with 28 (curl too)', async () => {
    const silent = net.createServer((s) => s.on('error', () => {}));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const url = `https://127.0.0.1:${(silent.address() as net.AddressInfo).port}/`;
    try {
      for (const extra of [[], ['--kernel'], ['--local', '127.0.0.1', '--local', '127.0.0.2']]) {
        if (extra[0] === '--kernel' && process.platform !== 'linux') continue;
        const r = await run(['get', url, ...ca, '--connect-timeout', '1', ...extra]);
        expect(r.code, extra.join(' ')).toBe(EXIT_TIMEOUT);
        expect(r.ms).toBeGreaterThanOrEqual(950);
        expect(r.ms).toBeLessThan(3000);
        expect(r.stderr).toMatch(/connection timed out after 1000 milliseconds/);
      }
      const t0 = performance.now();
      const c = await curl(['-s', ...ca, '--connect-timeout', '1', url]);
      expect(c.code).toBe(EXIT_TIMEOUT);
      expect(performance.now() - t0).toBeLessThan(3000);
    } finally {
      silent.close();
    }
  });

  it('the default --connect-timeout is 10 s (never a hang)', async () => {
    const silent = net.createServer((s) => s.on('error', () => {}));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const r = await run(['get', `https://127.0.0.1:${(silent.address() as net.AddressInfo).port}/`, ...ca]);
      expect(r.code).toBe(EXIT_TIMEOUT);
      expect(r.ms).toBeGreaterThanOrEqual(9900);
      expect(r.ms).toBeLessThan(12_000);
    } finally {
      silent.close();
    }
  });

  it('-m bounds the whole transfer: a body that stalls is 28 within -m, as curl', async () => {
    const ours = await run(['get', `${app.base}/stall`, ...ca, '-m', '1', '-w', '%{size_download}']);
    expect(ours.code).toBe(EXIT_TIMEOUT);
    expect(ours.ms).toBeLessThan(3000);
    expect(ours.stderr).toMatch(/operation timed out after 1000 milliseconds with 10 bytes received/);
    const theirs = await curl(['-s', ...ca, '-m', '1', '-w', '%{size_download}', `${app.base}/stall`]);
    expect(theirs.code).toBe(EXIT_TIMEOUT);
    expect(ours.stdout.endsWith('10')).toBe(true);
    expect(theirs.stdout.toString().endsWith('10')).toBe(true);
  });
});

describe('--retry', () => {
  it('retries 503 twice then succeeds: 3 attempts, like curl with the same options', async () => {
    const ours = await run(['get', `${app.base}/flaky?key=ours`, ...ca, '--retry', '3', '--retry-delay', '1']);
    expect(ours.code, ours.stderr).toBe(EXIT_OK);
    expect(ours.stdout).toBe('ok after 3\n');
    expect(hits.get('flaky:ours')).toBe(3);
    expect(ours.stderr.match(/Will retry in 1 seconds/g)).toHaveLength(2);
    // -f: mptls get always fails on HTTP >= 400, curl only with --fail (without it curl writes every 503's body).
    const theirs = await curl(['-s', '-f', ...ca, '--retry', '3', '--retry-delay', '1', `${app.base}/flaky?key=curl`]);
    expect(theirs.code).toBe(0);
    expect(theirs.stdout.toString()).toBe('ok after 3\n');
    expect(hits.get('flaky:curl')).toBe(3);
  });

  it('waits 1 s, then 2 s by default; gives up after N retries with the last status', async () => {
    const r = await run(['get', `${app.base}/status?code=500&key=backoff`, ...ca, '--retry', '2']);
    expect(r.code).toBe(EXIT_HTTP);
    expect(hits.get('status:backoff')).toBe(3);
    expect(r.ms).toBeGreaterThanOrEqual(2900);
    expect(r.ms).toBeLessThan(6000);
    expect(r.stderr).toMatch(/Will retry in 1 seconds[^]*Will retry in 2 seconds/);
  });

  it('does not retry what is not transient (404), as curl', async () => {
    const ours = await run(['get', `${app.base}/status?code=404&key=ours404`, ...ca, '--retry', '3', '-s']);
    const theirs = await curl(['-s', '-f', ...ca, '--retry', '3', `${app.base}/status?code=404&key=curl404`]);
    expect(ours.code).toBe(EXIT_HTTP);
    expect(theirs.code).toBe(EXIT_HTTP);
    expect(hits.get('status:ours404')).toBe(1);
    expect(hits.get('status:curl404')).toBe(1);
  });

  it('retries a refused connection and a timeout too; --retry-max-time stops early', async () => {
    const port = await freePort();
    const refused = await run(['get', `https://127.0.0.1:${port}/`, ...ca, '--retry', '2', '--retry-delay', '0.1']);
    expect(refused.code).toBe(EXIT_CONNECT);
    expect(refused.stderr.match(/Will retry/g)).toHaveLength(2);
    const silent = net.createServer((s) => s.on('error', () => {}));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    let accepted = 0;
    silent.on('connection', () => accepted++);
    try {
      const url = `https://127.0.0.1:${(silent.address() as net.AddressInfo).port}/`;
      const r = await run(['get', url, ...ca, '--connect-timeout', '0.3', '--retry', '5', '--retry-delay', '0.1', '--retry-max-time', '0.5']);
      expect(r.code).toBe(EXIT_TIMEOUT);
      expect(accepted).toBe(2); // 0.3 s, retry, 0.7 s > 0.5 s: no third
      expect(r.ms).toBeLessThan(2000);
    } finally {
      silent.close();
    }
  });
});

describe('--local', () => {
  it('an address that is not this host\'s is 45 with a message, and no connection is made', async () => {
    expect(isHostAddress('198.18.0.77')).toBe(false);
    expect(isHostAddress('127.0.0.2')).toBe(true);
    expect(isHostAddress('::1')).toBe(true);
    const counting = net.createServer((s) => s.destroy());
    let accepted = 0;
    counting.on('connection', () => accepted++);
    await new Promise<void>((resolve) => counting.listen(0, '127.0.0.1', resolve));
    try {
      const url = `https://127.0.0.1:${(counting.address() as net.AddressInfo).port}/`;
      const r = await run(['get', url, ...ca, '--local', '198.18.0.77']);
      expect(r.code).toBe(EXIT_INTERFACE);
      expect(r.stderr).toContain('--local 198.18.0.77 is not an address of this host');
      // Not silently dropped as a join's address either.
      const joined = await run(['get', url, ...ca, '--local', '127.0.0.1', '--local', '198.18.0.77']);
      expect(joined.code).toBe(EXIT_INTERFACE);
      const k = await run(['get', url, ...ca, '--kernel', '--local', '198.18.0.77']);
      expect(k.code).toBe(EXIT_INTERFACE);
      await new Promise((r2) => setTimeout(r2, 50));
      expect(accepted).toBe(0);
    } finally {
      counting.close();
    }
  });

  it('an address of the other family is 45: ::1 for an IPv4 server', async () => {
    const r = await run(['get', `${dir.base}hello.txt`, ...ca, '--local', '::1']);
    expect(r.code).toBe(EXIT_INTERFACE);
    expect(r.stderr).toContain('--local ::1 is IPv6 but the server 127.0.0.1 is IPv4');
    expect(localAddressProblem('127.0.0.2', '127.0.0.1')).toBeUndefined();
    expect(localAddressProblem('127.0.0.1', '::1')).toMatch(/IPv4 but/);
  });

  it('localhost resolves in the family of --local', async () => {
    const r = await run(['get', `https://localhost:${dir.port}/hello.txt`, ...ca, '--local', '127.0.0.1', '-w', '|%{remote_ip}']);
    expect(r.code, r.stderr).toBe(EXIT_OK);
    expect(r.stdout).toBe('hello over multipath\n|127.0.0.1');
  });

  it('--kernel takes one --local only', async () => {
    const r = await run(['get', `${dir.base}hello.txt`, '--kernel', '--local', '127.0.0.1', '--local', '127.0.0.2']);
    expect(r.code).toBe(EXIT_USAGE);
    expect(r.stderr).toContain('--kernel takes one --local at most');
  });
});

describe('exit codes for broken servers, as curl', () => {
  it('35: the peer is not TLS', async () => {
    const garbage = net.createServer((s) => {
      s.on('error', () => {});
      s.once('data', () => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    });
    await new Promise<void>((resolve) => garbage.listen(0, '127.0.0.1', resolve));
    try {
      const url = `https://127.0.0.1:${(garbage.address() as net.AddressInfo).port}/`;
      const ours = await run(['get', url, ...ca]);
      const theirs = await curl(['-s', ...ca, url]);
      expect(ours.code, ours.stderr).toBe(EXIT_TLS);
      expect(theirs.code).toBe(EXIT_TLS);
    } finally {
      garbage.close();
    }
  });

  it('52: TLS, then closed without a response', async () => {
    const mute = tls.createServer({ key: fixtures.key, cert: fixtures.cert }, (s) => {
      s.on('error', () => {});
      s.once('data', () => s.end());
    });
    await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve));
    try {
      const url = `https://127.0.0.1:${(mute.address() as net.AddressInfo).port}/`;
      const ours = await run(['get', url, ...ca]);
      const theirs = await curl(['-s', ...ca, url]);
      expect(ours.code, ours.stderr).toBe(EXIT_EMPTY_REPLY);
      expect(theirs.code).toBe(EXIT_EMPTY_REPLY);
    } finally {
      mute.close();
    }
  });

  it('18: the body ends before its Content-Length', async () => {
    const ours = await run(['get', `${app.base}/truncated`, ...ca]);
    const theirs = await curl(['-s', ...ca, `${app.base}/truncated`]);
    expect(ours.code, ours.stderr).toBe(EXIT_PARTIAL);
    expect(theirs.code).toBe(EXIT_PARTIAL);
  });

  it('60: an unknown CA; 90: a wrong --pin (curl --pinnedpubkey)', async () => {
    const ours = await run(['get', `${dir.base}hello.txt`]);
    const theirs = await curl(['-s', `${dir.base}hello.txt`]);
    expect(ours.code).toBe(EXIT_CERT);
    expect(theirs.code).toBe(EXIT_CERT);
    const wrong = 'sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
    const p = await run(['get', `${dir.base}hello.txt`, ...ca, '--pin', wrong]);
    const cp = await curl(['-s', ...ca, '--pinnedpubkey', wrong, `${dir.base}hello.txt`]);
    expect(p.code).toBe(EXIT_PIN);
    expect(cp.code).toBe(EXIT_PIN);
  });

  it('classify maps error codes by phase', () => {
    const e = (code: string, message = code) => Object.assign(new Error(message), { code });
    expect(classify(e('ENOTFOUND'), 'resolve').exit).toBe(EXIT_RESOLVE);
    expect(classify(e('ECONNREFUSED'), 'connect').exit).toBe(EXIT_CONNECT);
    expect(classify(e('EADDRNOTAVAIL'), 'connect').exit).toBe(EXIT_INTERFACE);
    expect(classify(e('ECONNRESET'), 'connect').exit).toBe(EXIT_TLS);
    expect(classify(e('ECONNRESET', 'socket hang up'), 'request').exit).toBe(EXIT_EMPTY_REPLY);
    expect(classify(e('DEPTH_ZERO_SELF_SIGNED_CERT'), 'connect').exit).toBe(EXIT_CERT);
    expect(classify(e('ERR_TLS_CERT_ALTNAME_INVALID'), 'connect').exit).toBe(EXIT_CERT);
    expect(classify(new TransferError(47, 'x'), 'body').exit).toBe(47);
  });
});

describe('progress meter and -v', () => {
  it('never on a stderr that is not a terminal; on one, unless -s', async () => {
    const url = `${dir.base}sub/data.bin`;
    const plain = await run(['get', url, ...ca, '-o', path.join(tmp, 'p1')]);
    expect(plain.code).toBe(EXIT_OK);
    expect(plain.stderr).toBe('');
    const tty = await run(['get', url, ...ca, '-o', path.join(tmp, 'p2')], { tty: true });
    expect(tty.stderr).toContain('\r');
    expect(tty.stderr).toMatch(/2\.86 MiB/);
    const silent = await run(['get', url, ...ca, '-o', path.join(tmp, 'p3'), '-s'], { tty: true });
    expect(silent.stderr).toBe('');
  });

  it('-v shows the request and response headers and the multipath facts', async () => {
    const r = await run(['get', `${dir.base}hello.txt`, ...ca, '-v', '--no-fallback']);
    expect(r.code).toBe(EXIT_OK);
    expect(r.stderr).toMatch(/^> GET \/hello\.txt HTTP\/1\.1$/m);
    expect(r.stderr).toMatch(/^> User-Agent: mptls\//m);
    expect(r.stderr).toMatch(/^< HTTP\/1\.1 200 OK$/m);
    expect(r.stderr).toContain('multipath: userspace');
    expect(r.stderr).toMatch(/^\* tokens: client [0-9a-f]{8}, server [0-9a-f]{8}/m);
  });
});
