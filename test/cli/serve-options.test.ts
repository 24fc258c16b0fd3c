/**
 * `mptls serve`'s options against real clients on loopback: byte ranges of
 * --dir files fetched by /usr/bin/curl -r (206 / Content-Range, suffix and
 * open ranges, 416 with "bytes *\/SIZE", several ranges → the whole file,
 * If-Range, HEAD) and by `mptls get -r` over multipath; --kernel (listens
 * with kernel MPTCP, or fails with the kernel's reason); --status off by
 * default; --metrics on loopback plain HTTP with the Prometheus content
 * type, fed by server.mptcp.metrics(); the access log's mode.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_ERROR, EXIT_OK, EXIT_USAGE } from '../../src/cli/main.js';
import { parseRange } from '../../src/cli/static-files.js';
import { metricsContentType } from '../../src/api/server.js';
import { kernelSupport } from '../../src/transport/kernel/index.js';
import { CA, CERT, curl, KEY, run, serve, type Served } from './helpers.js';

let tmp: string;
let data: Buffer;
let dir: Served;
const ca = ['--cacert', CA];

beforeAll(async () => {
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'mptls-serve-')));
  data = Buffer.alloc(10_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  fs.writeFileSync(path.join(tmp, 'data.bin'), data);
  fs.writeFileSync(path.join(tmp, 'empty.txt'), '');
  dir = await serve(['--dir', tmp]);
});

afterAll(async () => {
  if (dir) expect(await dir.stop()).toBe(EXIT_OK);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** curl -i: the status, the headers (lower-case names) and the body. */
function parseIncluded(raw: Buffer): { status: number; headers: Record<string, string>; body: Buffer } {
  const end = raw.indexOf('\r\n\r\n');
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(lines[0].split(' ')[1]), headers, body: raw.subarray(end + 4) };
}

describe('parseRange', () => {
  it('one range: FIRST-LAST, FIRST-, -SUFFIX, clamped to the file', () => {
    expect(parseRange('bytes=0-99', 1000)).toEqual({ kind: 'partial', start: 0, end: 99 });
    expect(parseRange('bytes=100-', 1000)).toEqual({ kind: 'partial', start: 100, end: 999 });
    expect(parseRange('bytes=-500', 1000)).toEqual({ kind: 'partial', start: 500, end: 999 });
    expect(parseRange('bytes=-5000', 1000)).toEqual({ kind: 'partial', start: 0, end: 999 });
    expect(parseRange('bytes=990-5000', 1000)).toEqual({ kind: 'partial', start: 990, end: 999 });
    expect(parseRange('bytes=999-999', 1000)).toEqual({ kind: 'partial', start: 999, end: 999 });
    expect(parseRange(' Bytes = 1-2 ', 1000)).toEqual({ kind: 'partial', start: 1, end: 2 });
  });

  it('unsatisfiable: FIRST at or past the end, -0, anything of an empty file', () => {
    expect(parseRange('bytes=1000-', 1000)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=5000-6000', 1000)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=-0', 1000)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=0-0', 0)).toEqual({ kind: 'unsatisfiable' });
    expect(parseRange('bytes=-1', 0)).toEqual({ kind: 'unsatisfiable' });
  });

  it('ignored (the whole file): none, other units, malformed, LAST < FIRST, several ranges', () => {
    for (const h of [undefined, 'items=0-1', 'bytes=', 'bytes=-', 'bytes=a-b', 'bytes=5-2', 'bytes=0-1,5-6', 'bytes=0-1, -1', '0-1']) {
      expect(parseRange(h, 1000), String(h)).toEqual({ kind: 'full' });
    }
  });
});

describe('serve --dir: byte ranges, fetched by curl -r and mptls get -r', () => {
  it('206 with Content-Range and exactly those bytes; Accept-Ranges on every file response', async () => {
    const cases: [string, number, number][] = [
      ['0-99', 0, 99],
      ['-500', 9500, 9999],
      ['9000-', 9000, 9999],
      ['5-5', 5, 5],
      ['9990-20000', 9990, 9999],
    ];
    for (const [r, start, end] of cases) {
      const c = await curl(['-s', '-i', '-r', r, ...ca, `${dir.base}data.bin`]);
      expect(c.code, r).toBe(0);
      const res = parseIncluded(c.stdout);
      expect(res.status, r).toBe(206);
      expect(res.headers['content-range'], r).toBe(`bytes ${start}-${end}/10000`);
      expect(res.headers['content-length'], r).toBe(String(end - start + 1));
      expect(res.headers['accept-ranges']).toBe('bytes');
      expect(res.body.equals(data.subarray(start, end + 1)), r).toBe(true);
      const ours = await run(['get', '-r', r, `${dir.base}data.bin`, ...ca, '--no-fallback']);
      expect(ours.code, r).toBe(EXIT_OK);
      expect(ours.raw.equals(data.subarray(start, end + 1)), r).toBe(true);
    }
    expect(dir.log.text()).toMatch(/"GET \/data\.bin" 206 500 userspace/);
    const full = parseIncluded((await curl(['-s', '-i', ...ca, `${dir.base}data.bin`])).stdout);
    expect(full.status).toBe(200);
    expect(full.headers['accept-ranges']).toBe('bytes');
  });

  it('416 with Content-Range bytes */SIZE past the end, and for an empty file', async () => {
    for (const [file, r, size] of [['data.bin', '10000-', 10000], ['data.bin', '20000-30000', 10000], ['empty.txt', '0-10', 0]] as const) {
      const c = await curl(['-s', '-i', '-r', r, ...ca, `${dir.base}${file}`]);
      const res = parseIncluded(c.stdout);
      expect(res.status, r).toBe(416);
      expect(res.headers['content-range'], r).toBe(`bytes */${size}`);
    }
  });

  it('several ranges get the whole file (200), as documented', async () => {
    const c = await curl(['-s', '-i', '-r', '0-1,5-6', ...ca, `${dir.base}data.bin`]);
    const res = parseIncluded(c.stdout);
    expect(res.status).toBe(200);
    expect(res.headers['content-range']).toBeUndefined();
    expect(res.body.equals(data)).toBe(true);
  });

  it('If-Range: the Last-Modified date keeps the range, another date gets the whole file', async () => {
    const lastModified = fs.statSync(path.join(tmp, 'data.bin')).mtime.toUTCString();
    const same = parseIncluded((await curl(['-s', '-i', '-r', '0-9', '-H', `If-Range: ${lastModified}`, ...ca, `${dir.base}data.bin`])).stdout);
    expect(same.status).toBe(206);
    expect(same.body.length).toBe(10);
    const old = parseIncluded((await curl(['-s', '-i', '-r', '0-9', '-H', 'If-Range: Thu, 01 Jan 1998 00:00:00 GMT', ...ca, `${dir.base}data.bin`])).stdout);
    expect(old.status).toBe(200);
    expect(old.body.length).toBe(10_000);
    const etag = parseIncluded((await curl(['-s', '-i', '-r', '0-9', '-H', 'If-Range: "abc"', ...ca, `${dir.base}data.bin`])).stdout);
    expect(etag.status).toBe(200);
  });

  it('HEAD with a range: the 206 headers, no body (curl -I -r)', async () => {
    const c = await curl(['-s', '-I', '-r', '100-199', ...ca, `${dir.base}data.bin`]);
    const res = parseIncluded(c.stdout);
    expect(res.status).toBe(206);
    expect(res.headers['content-range']).toBe('bytes 100-199/10000');
    expect(res.headers['content-length']).toBe('100');
    expect(res.body.length).toBe(0);
    const ours = await run(['get', '-I', '-r', '100-199', `${dir.base}data.bin`, ...ca]);
    expect(ours.stdout).toMatch(/^HTTP\/1\.1 206 Partial Content\r\n/);
    expect(ours.stdout).toContain('content-range: bytes 100-199/10000\r\n');
  });
});

describe('serve --kernel', () => {
  const k = kernelSupport();

  it(k.ok ? 'listens with kernel MPTCP: mptls get --kernel is a kernel connection, userspace clients still userspace' : 'fails with the kernel\'s reason', async () => {
    if (!k.ok) {
      const r = await run(['serve', '--cert', CERT, '--key', KEY, '--port', '0', '--kernel']);
      expect(r.code).toBe(EXIT_ERROR);
      expect(r.stderr).toContain('--kernel: kernel MPTCP is unavailable');
      return;
    }
    const s = await serve(['--kernel', '--status']);
    try {
      expect(s.stdout.text()).toContain('multipath (userspace and Linux kernel MPTCP) and plain TLS');
      const kj = await run(['get', '--kernel', `${s.base}status.json`, ...ca]);
      expect(kj.code, kj.stderr).toBe(EXIT_OK);
      expect(JSON.parse(kj.stdout).connection.mode).toBe('kernel');
      const uj = await run(['get', `${s.base}status.json`, ...ca, '--no-fallback']);
      expect(JSON.parse(uj.stdout).connection.mode).toBe('userspace');
      const pj = await curl(['-s', ...ca, `${s.base}status.json`]);
      expect(JSON.parse(pj.stdout.toString()).connection.mode).toBe('fallback');
    } finally {
      expect(await s.stop()).toBe(EXIT_OK);
    }
  });

  it('the access log names each connection\'s mode', async () => {
    const s = await serve(['--dir', tmp, ...(k.ok ? ['--kernel'] : [])]);
    try {
      await run(['get', `${s.base}data.bin`, ...ca, '--no-fallback', '-o', path.join(tmp, 'log.out')]);
      await curl(['-s', '-o', '/dev/null', ...ca, `${s.base}empty.txt`]);
      if (k.ok) await run(['get', '--kernel', `${s.base}data.bin?k`, ...ca, '-o', path.join(tmp, 'log2.out')]);
      const log = s.log.text();
      expect(log).toMatch(/"GET \/data\.bin" 200 10000 userspace 1 subflow/);
      expect(log).toMatch(/"GET \/empty\.txt" 200 0 fallback/);
      if (k.ok) expect(log).toMatch(/"GET \/data\.bin\?k" 200 10000 kernel/);
    } finally {
      expect(await s.stop()).toBe(EXIT_OK);
    }
  });
});

describe('serve --status is opt-in', () => {
  it('without it no page shows any connection or counter; the help says it is off by default', async () => {
    for (const p of ['status.json', 'status']) {
      const r = await run(['get', `${dir.base}${p}`, ...ca, '-w', '%{http_code}']);
      expect(r.stdout).toBe('404');
    }
    const plain = await serve([]);
    try {
      const home = await run(['get', plain.base, ...ca]);
      expect(home.stdout).not.toMatch(/MPCapable|token|subflow/i);
      expect((await run(['get', `${plain.base}status.json`, ...ca, '-w', '%{http_code}'])).stdout).toBe('404');
    } finally {
      expect(await plain.stop()).toBe(EXIT_OK);
    }
    const help = (await run(['serve', '--help'])).stdout;
    expect(help).toMatch(/--status\s+serve a status page \(off by default\)/);
  });
});

describe('serve --metrics', () => {
  function fetchPlain(url: string, method = 'GET'): Promise<{ status: number; type: string | undefined; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(url, { method, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('serves server.mptcp.metrics() on 127.0.0.1 plain HTTP at /metrics, with the Prometheus content type', async () => {
    const s = await serve(['--dir', tmp, '--metrics', '0']);
    try {
      const m = s.stdout.text().match(/metrics on (http:\/\/127\.0\.0\.1:(\d+)\/metrics)/);
      expect(m).not.toBeNull();
      const url = m![1];
      const before = await fetchPlain(url);
      expect(before.status).toBe(200);
      expect(before.type).toBe('text/plain; version=0.0.4; charset=utf-8');
      expect(before.type).toBe(metricsContentType);
      const syn = (text: string) => Number(/^mptls_mp_capable_syn_rx_total (\d+)$/m.exec(text)?.[1] ?? NaN);
      expect(before.body).toMatch(/^# TYPE mptls_mp_capable_syn_rx_total counter$/m);
      const n0 = syn(before.body);
      expect(n0).toBe(0);
      expect((await run(['get', `${s.base}data.bin`, ...ca, '--no-fallback', '-o', path.join(tmp, 'm.out')])).code).toBe(EXIT_OK);
      const after = await fetchPlain(url);
      expect(syn(after.body)).toBe(n0 + 1);
      expect(after.body).toMatch(/^mptls_connections \d+$/m);
      // curl reads it like Prometheus would.
      const c = await curl(['-s', '-w', '\\n%{content_type}', url]);
      expect(c.stdout.toString()).toMatch(/mptls_mp_capable_syn_rx_total 1\n[^]*\ntext\/plain; version=0\.0\.4; charset=utf-8$/);
      expect((await fetchPlain(url.replace('/metrics', '/'))).status).toBe(404);
      expect((await fetchPlain(url, 'POST')).status).toBe(405);
      expect((await fetchPlain(url, 'HEAD')).status).toBe(200);
      // Not on the TLS port.
      expect((await run(['get', `${s.base}metrics`, ...ca, '-w', '%{http_code}'])).stdout).toBe('404');
    } finally {
      expect(await s.stop()).toBe(EXIT_OK);
    }
  });

  it('--metrics-host moves it; --metrics-host alone, a bad port and a busy port are errors', async () => {
    const s = await serve(['--metrics', '0', '--metrics-host', '127.0.0.2']);
    try {
      const m = s.stdout.text().match(/metrics on (http:\/\/127\.0\.0\.2:(\d+)\/metrics)/);
      expect(m).not.toBeNull();
      expect((await fetchPlain(m![1])).status).toBe(200);
      const busy = await run(['serve', '--cert', CERT, '--key', KEY, '--port', '0', '--metrics', m![2], '--metrics-host', '127.0.0.2']);
      expect(busy.code).toBe(EXIT_ERROR);
      expect(busy.stderr).toContain('cannot listen for --metrics');
    } finally {
      expect(await s.stop()).toBe(EXIT_OK);
    }
    expect((await run(['serve', '--cert', CERT, '--key', KEY, '--metrics-host', '127.0.0.1'])).code).toBe(EXIT_USAGE);
    expect((await run(['serve', '--cert', CERT, '--key', KEY, '--metrics', 'x'])).code).toBe(EXIT_USAGE);
    expect((await run(['serve', '--cert', CERT, '--key', KEY, '--metrics', '70000'])).code).toBe(EXIT_USAGE);
  });
});
