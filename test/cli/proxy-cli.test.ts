/**
 * `mptls proxy` (src/cli/proxy.ts), run in-process through `proxyCommand`:
 * its usage errors (no --allow, a bad pattern, an unreadable or empty token
 * file, a bad timeout), the warning without authentication, and tunnels
 * through it on loopback: /usr/bin/curl -p --proxy https://… with a token
 * from the file, an mptls client over two subflows, a refusal; the access
 * log's lines for each.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type ConnectOptions, type MptlsSocket } from '../../src/api/client.js';
import { UsageError } from '../../src/cli/args.js';
import { EXIT_OK, makeOut } from '../../src/cli/io.js';
import { HELP, parseTokenFile, proxyCommand } from '../../src/cli/proxy.js';
import { fixtures } from '../support/fixtures.mjs';
import { close, listen, until } from '../support/servers.js';
import { sink } from '../support/sink.js';
import { CA, CERT, curl, KEY } from './helpers.js';

let tmp: string;
let tokenFile: string;

beforeAll(() => {
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'mptls-proxy-')));
  tokenFile = path.join(tmp, 'tokens');
  fs.writeFileSync(tokenFile, '# the proxy\'s tokens\n\n  alpha-token  \nbeta.token= # the second\n');
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

interface Started {
  port: number;
  stdout: ReturnType<typeof sink>;
  log: ReturnType<typeof sink>;
  stop(): Promise<number>;
}

/** `mptls proxy --cert … --key … --port 0 ARGS` in-process, once it prints its address. */
async function start(args: string[]): Promise<Started> {
  const stop = new AbortController();
  const stdout = sink();
  const log = sink();
  let exited: number | undefined;
  const running = proxyCommand(['--cert', CERT, '--key', KEY, '--port', '0', ...args], makeOut({ stdout, stderr: log }), stop.signal).then((c) => (exited = c));
  let m: RegExpMatchArray | null = null;
  const deadline = Date.now() + 10_000;
  while (!(m = stdout.text().match(/proxying on https:\/\/127\.0\.0\.1:(\d+)\//)) && Date.now() < deadline && exited === undefined) {
    await new Promise((r) => setTimeout(r, 10));
  }
  if (!m) {
    stop.abort();
    throw new Error(`proxy did not start (exit ${exited}): ${stdout.text()} ${log.text()}`);
  }
  return {
    port: Number(m[1]),
    stdout,
    log,
    stop: async () => {
      stop.abort();
      return running;
    },
  };
}

/** proxyCommand's rejection for ARGS: a UsageError's message. */
async function usage(args: string[]): Promise<string> {
  const o = makeOut({ stdout: sink(), stderr: sink() });
  try {
    await proxyCommand(args, o, AbortSignal.abort());
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error(`no usage error for ${args.join(' ')}`);
}

describe('mptls proxy: usage errors', () => {
  const base = ['--cert', CERT, '--key', KEY];

  it('refuses to start without --allow, with a bad pattern, a bad token file, a bad timeout', async () => {
    expect(await usage(base)).toMatch(/--allow HOST:PORT is required .*open relay/);
    expect(await usage(['--allow', '*:443'])).toMatch(/--cert and --key are required/);
    expect(await usage([...base, '--allow', '10.0.0.5'])).toMatch(/--allow: bad allow pattern "10\.0\.0\.5": no :PORT/);
    expect(await usage([...base, '--allow', '10.0.0.0/40:22'])).toMatch(/bad CIDR prefix/);
    expect(await usage([...base, '--allow', 'db.internal:99999'])).toMatch(/bad port/);
    expect(await usage([...base, '--allow', '*:443', '--token-file', path.join(tmp, 'missing')])).toMatch(/cannot read token file .*missing/);
    const empty = path.join(tmp, 'empty');
    fs.writeFileSync(empty, '# nothing but comments\n\n');
    expect(await usage([...base, '--allow', '*:443', '--token-file', empty])).toMatch(/holds no token/);
    const bad = path.join(tmp, 'bad');
    fs.writeFileSync(bad, 'ok-token\nnot a token\n');
    expect(await usage([...base, '--allow', '*:443', '--token-file', bad])).toMatch(/line 2: not a bearer token/);
    expect(await usage([...base, '--allow', '*:443', '--client-ca', path.join(tmp, 'missing.pem')])).toMatch(/cannot read client CA/);
    expect(await usage([...base, '--allow', '*:443', '--idle-timeout', 'soon'])).toMatch(/--idle-timeout needs a number of seconds/);
    expect(await usage([...base, '--allow', '*:443', '--port', '70000'])).toMatch(/bad --port/);
    expect(await usage([...base, '--allow', '*:443', '--announce', 'example.org'])).toMatch(/--announce needs an IP address/);
    expect(await usage([...base, '--allow', '*:443', '--nope'])).toMatch(/Unknown option '--nope'/);
  });

  it('the token file: one token a line, blank lines and # comments skipped; the help names the rules', () => {
    expect(parseTokenFile(fs.readFileSync(tokenFile, 'utf8'), tokenFile)).toEqual(['alpha-token', 'beta.token=']);
    expect(HELP).toMatch(/--allow HOST:PORT\s+where tunnels may go \(required; repeatable\)/);
    expect(HELP).toMatch(/open relay/);
  });
});

describe('mptls proxy: tunnels', () => {
  it('curl with a token from --token-file and an mptls client over two subflows get through; the access log shows each, and the refusals', async () => {
    const file = randomBytes(1 << 20);
    const web = http.createServer((_req, res) => res.end(file));
    const webPort = await listen(web);
    const p = await start(['--allow', `127.0.0.1:${webPort}`, '--token-file', tokenFile, '--idle-timeout', '30']);
    try {
      expect(p.stdout.text()).toContain('requires 2 bearer tokens');
      expect(p.log.text()).not.toContain('warning');
      const base = ['-s', '-S', '-p', '--proxy', `https://127.0.0.1:${p.port}`, '--proxy-cacert', CA];
      const ok = await curl([...base, '--proxy-header', 'Proxy-Authorization: Bearer beta.token=', `http://127.0.0.1:${webPort}/file`]);
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stdout.equals(file)).toBe(true);
      const refused = await curl([...base, `http://127.0.0.1:${webPort}/file`]);
      expect(refused.code).toBe(56);
      const outside = await curl([...base, '--proxy-header', 'Proxy-Authorization: Bearer alpha-token', 'http://127.0.0.1:1/']);
      expect(outside.code).toBe(56);

      // An mptls client (two subflows) through the same proxy, to a TCP echo target.
      const echo = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
      const echoPort = await listen(echo);
      const p2 = await start(['--allow', `127.0.0.1:${echoPort}`, '--token-file', tokenFile]);
      try {
        const s = await new Promise<MptlsSocket>((resolve, reject) => {
          const c = connect({ host: '127.0.0.1', port: p2.port, ca: fixtures.ca, mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] }, allowHalfOpen: true } as ConnectOptions);
          c.once('secureConnect', () => resolve(c));
          c.once('error', reject);
        });
        const head = `CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: 127.0.0.1:${echoPort}\r\nProxy-Authorization: Bearer alpha-token\r\n\r\n`;
        const data = randomBytes(2 << 20);
        const received: Buffer[] = [];
        s.on('data', (d: Buffer) => received.push(d));
        s.write(head);
        await until(() => Buffer.concat(received).includes('\r\n\r\n'), 5000, 'the 200');
        expect(Buffer.concat(received).toString('latin1')).toMatch(/^HTTP\/1\.1 200 Connection Established\r\n\r\n/);
        received.length = 0;
        await until(() => s.mptcp.subflows().length === 2, 5000, 'the second subflow');
        s.end(data);
        await new Promise((r) => s.once('end', r));
        const back = Buffer.concat(received);
        expect(createHash('sha256').update(back).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
        await until(() => /CONNECT 127\.0\.0\.1:\d+ -> .* userspace/.test(p2.log.text()), 5000, 'the access log line');
        expect(p2.log.text()).toMatch(new RegExp(`^127\\.0\\.0\\.1:\\d+ CONNECT 127\\.0\\.0\\.1:${echoPort} -> 127\\.0\\.0\\.1:${echoPort} 200 userspace 2 subflows up ${data.length} B down ${data.length} B \\d+ ms\\n`, 'm'));
      } finally {
        expect(await p2.stop()).toBe(EXIT_OK);
        await close(echo, 200);
      }

      await until(() => p.log.text().split('\n').length >= 4, 5000, 'three log lines');
      const log = p.log.text();
      expect(log).toMatch(new RegExp(`^127\\.0\\.0\\.1:\\d+ CONNECT 127\\.0\\.0\\.1:${webPort} -> 127\\.0\\.0\\.1:${webPort} 200 fallback 1 subflow up \\d+ B down \\d+ B \\d+ ms$`, 'm'));
      expect(log).toMatch(new RegExp(`^127\\.0\\.0\\.1:\\d+ CONNECT 127\\.0\\.0\\.1:${webPort} 407 fallback "proxy authentication required`, 'm'));
      expect(log).toMatch(/^127\.0\.0\.1:\d+ CONNECT 127\.0\.0\.1:1 403 fallback "127\.0\.0\.1:1 is not in the allow list"$/m);
    } finally {
      expect(await p.stop()).toBe(EXIT_OK);
      await close(web, 200);
    }
  });

  it('without --client-ca or --token-file it starts with a warning; -q keeps the access log quiet', async () => {
    const p = await start(['--allow', '127.0.0.1:1', '-q']);
    try {
      expect(p.stdout.text()).toContain('no authentication');
      expect(p.log.text()).toMatch(/warning: no --client-ca or --token-file: anyone who reaches 127\.0\.0\.1:\d+ may open tunnels to 127\.0\.0\.1:1/);
      const r = await curl(['-s', '-p', '--proxy', `https://127.0.0.1:${p.port}`, '--proxy-cacert', CA, 'http://127.0.0.1:1/']);
      expect(r.code).toBe(56);
      expect(p.log.text().split('\n').filter(Boolean).length).toBe(1);
    } finally {
      expect(await p.stop()).toBe(EXIT_OK);
    }
  });

  it('--client-ca: curl with the client certificate gets through', async () => {
    const web = http.createServer((_req, res) => res.end('mutual'));
    const webPort = await listen(web);
    const p = await start(['--allow', `127.0.0.1:${webPort}`, '--client-ca', CA]);
    try {
      expect(p.stdout.text()).toContain('requires client certificates');
      const base = ['-s', '-S', '-p', '--proxy', `https://127.0.0.1:${p.port}`, '--proxy-cacert', CA];
      const dir = path.dirname(CA);
      const ok = await curl([...base, '--proxy-cert', path.join(dir, 'client.pem'), '--proxy-key', path.join(dir, 'client.key'), `http://127.0.0.1:${webPort}/`]);
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stdout.toString()).toBe('mutual');
      const without = await curl([...base, `http://127.0.0.1:${webPort}/`]);
      expect(without.code).not.toBe(0);
    } finally {
      expect(await p.stop()).toBe(EXIT_OK);
      await close(web, 200);
    }
  });
});
