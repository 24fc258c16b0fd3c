/**
 * The directory server of `mptls serve --dir`, on its own: `resolveUnder`
 * (traversal, `..`, encoded slashes, NUL, symlink escape, directories,
 * 404/403), `contentType`, the listing, and `serveFile` behind a plain
 * node:http server on loopback (GET, HEAD, headers, error bodies).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contentType, directoryListing, resolveUnder, serveFile } from '../../src/cli/static-files.js';

let base: string; // holds root/ and, beside it, secret.txt
let root: string;

beforeAll(() => {
  base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'mptls-static-')));
  root = path.join(base, 'root');
  fs.mkdirSync(path.join(root, 'sub', 'deeper'), { recursive: true });
  fs.mkdirSync(path.join(root, 'site'));
  fs.mkdirSync(path.join(root, 'with space'));
  fs.writeFileSync(path.join(base, 'secret.txt'), 'secret\n');
  fs.writeFileSync(path.join(root, 'hello.txt'), 'hello\n');
  fs.writeFileSync(path.join(root, 'page.HTML'), '<p>hi</p>');
  fs.writeFileSync(path.join(root, 'blob'), Buffer.from([0, 1, 2, 3]));
  fs.writeFileSync(path.join(root, 'sub', 'a.json'), '{}');
  fs.writeFileSync(path.join(root, 'sub', '<b>&.txt'), 'x');
  fs.writeFileSync(path.join(root, 'site', 'index.html'), '<h1>index</h1>');
  fs.writeFileSync(path.join(root, 'with space', 'f.txt'), 'f');
  fs.symlinkSync(path.join(base, 'secret.txt'), path.join(root, 'escape.txt'));
  fs.symlinkSync(base, path.join(root, 'escape-dir'));
  fs.symlinkSync(path.join(root, 'hello.txt'), path.join(root, 'inside.txt'));
  fs.symlinkSync(path.join(root, 'missing'), path.join(root, 'dangling'));
});

afterAll(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

describe('resolveUnder', () => {
  it('maps a path to the file under the root (query and fragment ignored)', async () => {
    for (const target of ['/hello.txt', '/hello.txt?x=1', '/hello.txt#top', '/./hello.txt', '//hello.txt', '/%68ello.txt']) {
      const r = await resolveUnder(root, target);
      expect(r.kind, target).toBe('file');
      if (r.kind === 'file') {
        expect(r.file).toBe(path.join(root, 'hello.txt'));
        expect(r.stat.size).toBe(6);
      }
    }
  });

  it('refuses .. segments, encoded or not, with 403', async () => {
    for (const target of ['/../secret.txt', '/sub/../../secret.txt', '/sub/../hello.txt', '/%2e%2e/secret.txt', '/%2E%2E/secret.txt', '/..']) {
      expect(await resolveUnder(root, target), target).toEqual({ kind: 'error', status: 403, message: 'Forbidden' });
    }
  });

  it('refuses encoded slashes and backslashes with 403', async () => {
    for (const target of ['/sub%2fa.json', '/sub/..%2f..%2fsecret.txt', '/sub%5Ca.json', '/..%5Csecret.txt']) {
      expect(await resolveUnder(root, target), target).toEqual({ kind: 'error', status: 403, message: 'Forbidden' });
    }
  });

  it('answers 400 to NUL bytes, bad percent-encoding and targets that are not a path', async () => {
    for (const target of ['/hello.txt%00', '/%00/hello.txt', '/%E0%A4%A', '/%', 'hello.txt', '*', 'http://example.com/hello.txt', '']) {
      expect(await resolveUnder(root, target), JSON.stringify(target)).toEqual({ kind: 'error', status: 400, message: 'Bad Request' });
    }
  });

  it('refuses symlinks that lead out of the root (403), follows the ones that stay inside', async () => {
    expect(await resolveUnder(root, '/escape.txt')).toEqual({ kind: 'error', status: 403, message: 'Forbidden' });
    expect(await resolveUnder(root, '/escape-dir/secret.txt')).toEqual({ kind: 'error', status: 403, message: 'Forbidden' });
    expect(await resolveUnder(root, '/escape-dir/')).toEqual({ kind: 'error', status: 403, message: 'Forbidden' });
    const inside = await resolveUnder(root, '/inside.txt');
    expect(inside.kind).toBe('file');
    if (inside.kind === 'file') expect(inside.file).toBe(path.join(root, 'hello.txt'));
  });

  it('answers 404 to what does not exist (dangling symlinks included)', async () => {
    for (const target of ['/nope.txt', '/sub/nope/', '/hello.txt/more', '/dangling']) {
      expect(await resolveUnder(root, target), target).toEqual({ kind: 'error', status: 404, message: 'Not Found' });
    }
  });

  it('redirects a directory without its trailing slash, keeping the path encoded', async () => {
    expect(await resolveUnder(root, '/sub')).toEqual({ kind: 'redirect', location: '/sub/' });
    expect(await resolveUnder(root, '/sub/deeper?q')).toEqual({ kind: 'redirect', location: '/sub/deeper/' });
    expect(await resolveUnder(root, '/with%20space')).toEqual({ kind: 'redirect', location: '/with%20space/' });
  });

  it('serves index.html of a directory, or lists it', async () => {
    const site = await resolveUnder(root, '/site/');
    expect(site.kind).toBe('file');
    if (site.kind === 'file') expect(site.file).toBe(path.join(root, 'site', 'index.html'));
    expect(await resolveUnder(root, '/')).toEqual({ kind: 'dir', dir: root, urlPath: '/' });
    expect(await resolveUnder(root, '/sub/')).toEqual({ kind: 'dir', dir: path.join(root, 'sub'), urlPath: '/sub/' });
    expect(await resolveUnder(root, '/with%20space/')).toEqual({ kind: 'dir', dir: path.join(root, 'with space'), urlPath: '/with%20space/' });
  });

  it('refuses what is neither a file nor a directory with 403', async (ctx) => {
    const fifo = path.join(root, 'fifo');
    try {
      execFileSync('mkfifo', [fifo]);
    } catch {
      ctx.skip();
    }
    try {
      expect(await resolveUnder(root, '/fifo')).toEqual({ kind: 'error', status: 403, message: 'Forbidden' });
    } finally {
      fs.rmSync(fifo, { force: true });
    }
  });
});

describe('contentType', () => {
  it('goes by the extension, in any case; unknown or none is application/octet-stream', () => {
    expect(contentType('/x/a.html')).toBe('text/html; charset=utf-8');
    expect(contentType('/x/a.HTML')).toBe('text/html; charset=utf-8');
    expect(contentType('a.json')).toBe('application/json');
    expect(contentType('a.tar.gz')).toBe('application/gzip');
    expect(contentType('a.svg')).toBe('image/svg+xml');
    expect(contentType('a.wasm')).toBe('application/wasm');
    expect(contentType('a.unknown')).toBe('application/octet-stream');
    expect(contentType('Makefile')).toBe('application/octet-stream');
    expect(contentType('.html')).toBe('application/octet-stream'); // a dotfile has no extension
  });
});

describe('directoryListing', () => {
  it('lists the names sorted, directories with "/", escaped and encoded, with "../" below the root', async () => {
    const top = await directoryListing(root, '/');
    expect(top).toContain('<title>Index of /</title>');
    expect(top).not.toContain('href="../"');
    expect(top).toContain('<li><a href="sub/">sub/</a></li>');
    expect(top).toContain('<li><a href="with%20space/">with space/</a></li>');
    expect(top.indexOf('blob')).toBeLessThan(top.indexOf('hello.txt'));
    const sub = await directoryListing(path.join(root, 'sub'), '/sub/');
    expect(sub).toContain('<li><a href="../">../</a></li>');
    expect(sub).toContain('<li><a href="%3Cb%3E%26.txt">&lt;b&gt;&amp;.txt</a></li>');
    expect(sub).not.toContain('<b>');
    expect(await directoryListing(path.join(root, 'with space'), '/with%20space/')).toContain('<title>Index of /with space/</title>');
  });
});

describe('serveFile', () => {
  let server: http.Server;
  let port: number;

  beforeAll(async () => {
    server = http.createServer((req, res) => void serveFile(req, res, root));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  function request(target: string, method = 'GET'): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: target, method, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('GET sends the bytes with type, length, last-modified and nosniff', async () => {
    const r = await request('/hello.txt');
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('hello\n');
    expect(r.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(r.headers['content-length']).toBe('6');
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    expect(r.headers['last-modified']).toBe(fs.statSync(path.join(root, 'hello.txt')).mtime.toUTCString());
    const blob = await request('/blob');
    expect(blob.headers['content-type']).toBe('application/octet-stream');
    expect([...blob.body]).toEqual([0, 1, 2, 3]);
  });

  it('HEAD sends the same headers and no body', async () => {
    const get = await request('/page.HTML');
    const head = await request('/page.HTML', 'HEAD');
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    expect(head.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(head.headers['content-length']).toBe(String(get.body.length));
    const missing = await request('/nope', 'HEAD');
    expect(missing.status).toBe(404);
    expect(missing.body.length).toBe(0);
    expect(missing.headers['content-length']).toBe('10');
  });

  it('answers refusals and misses with one line of text', async () => {
    for (const [target, status, text] of [
      ['/../secret.txt', 403, 'Forbidden'],
      ['/escape.txt', 403, 'Forbidden'],
      ['/nope.txt', 404, 'Not Found'],
      ['/hello.txt%00', 400, 'Bad Request'],
    ] as const) {
      const r = await request(target);
      expect(r.status, target).toBe(status);
      expect(r.body.toString(), target).toBe(`${text}\n`);
      expect(r.headers['content-type']).toBe('text/plain; charset=utf-8');
      expect(r.body.toString()).not.toContain('secret');
    }
  });

  it('redirects a directory with 301 and lists one without index.html (not cached)', async () => {
    const redirect = await request('/sub');
    expect(redirect.status).toBe(301);
    expect(redirect.headers.location).toBe('/sub/');
    expect(redirect.body.toString()).toBe('Moved to /sub/\n');
    const list = await request('/sub/');
    expect(list.status).toBe(200);
    expect(list.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(list.headers['cache-control']).toBe('no-store');
    expect(list.body.toString()).toContain('a.json');
    const index = await request('/site/');
    expect(index.body.toString()).toBe('<h1>index</h1>');
  });
});
