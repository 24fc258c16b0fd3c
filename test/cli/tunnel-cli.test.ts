/**
 * `mptls tunnel` (src/cli/tunnel.ts), called directly (main.ts registers
 * it): ssh's -L / -D spec syntax, the usage errors (exit 2 as main reports
 * a UsageError), an unusable --local (45, as get, before any packet), and
 * one -L tunnel through the command against the test-only CONNECT proxy,
 * with a token file and two subflows, logged per tunnel on stderr.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/cli/args.js';
import { EXIT_INTERFACE, EXIT_OK, EXIT_USAGE, makeOut } from '../../src/cli/io.js';
import { parseForward, parseServer, parseSocks, readToken, splitSpec, tunnelCommand } from '../../src/cli/tunnel.js';
import { startConnectProxy, type ConnectProxy } from '../support/connect-proxy.js';
import { close, listen, until } from '../support/servers.js';
import { sink } from '../support/sink.js';
import { CA } from './helpers.js';

let tmp: string;
let proxy: ConnectProxy;
let echo: net.Server;
let echoPort: number;
let tokenFile: string;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mptls-tunnel-cli-'));
  tokenFile = path.join(tmp, 'token');
  fs.writeFileSync(tokenFile, '# the proxy token\n\n  tok-3n_Az.9~  \nsecond-line-ignored\n', { mode: 0o600 });
  proxy = await startConnectProxy({ token: 'tok-3n_Az.9~' });
  echo = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  echoPort = await listen(echo);
});

afterAll(async () => {
  await proxy.close();
  await close(echo, 200);
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The command as main runs it: a UsageError is exit 2 with its message. */
async function run(args: string[], signal?: AbortSignal) {
  const stdout = sink();
  const stderr = sink();
  let code: number;
  try {
    code = await tunnelCommand(args, makeOut({ stdout, stderr }), signal);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    stderr.write(`mptls tunnel: ${e.message}\n`);
    code = EXIT_USAGE;
  }
  await new Promise((r) => setImmediate(r));
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

describe('mptls tunnel: the command line', () => {
  it('-L and -D specs exactly as ssh writes them', () => {
    expect(parseForward('8080:db.internal:5432')).toEqual({ bind: '127.0.0.1', port: 8080, target: { host: 'db.internal', port: 5432 } });
    expect(parseForward('127.0.0.1:8080:10.0.0.5:22')).toEqual({ bind: '127.0.0.1', port: 8080, target: { host: '10.0.0.5', port: 22 } });
    expect(parseForward('[::1]:8080:[2001:db8::5]:22')).toEqual({ bind: '::1', port: 8080, target: { host: '2001:db8::5', port: 22 } });
    expect(parseForward('localhost:0:localhost:1')).toEqual({ bind: '127.0.0.1', port: 0, target: { host: 'localhost', port: 1 } });
    expect(parseForward('*:8080:h:1').bind).toBe('0.0.0.0');
    expect(parseForward(':8080:h:1').bind).toBe('0.0.0.0');
    expect(parseSocks('1080')).toEqual({ bind: '127.0.0.1', port: 1080 });
    expect(parseSocks('127.0.0.2:1080')).toEqual({ bind: '127.0.0.2', port: 1080 });
    expect(parseSocks('[::1]:0')).toEqual({ bind: '::1', port: 0 });
    expect(parseServer('proxy.example:8443')).toEqual({ host: 'proxy.example', port: 8443 });
    expect(parseServer('[2001:db8::1]:443')).toEqual({ host: '2001:db8::1', port: 443 });
    expect(splitSpec('[::1:80')).toBeUndefined();
    for (const bad of ['8080', '8080:host', '8080:h:0', '8080:h:65536', 'x:8080:h:1', 'a:b:c:d:e', '8080:2001:db8::5:22', '8080:[db.internal]:22', '8080:a b:1', '8080:h\r\nX:1', '[::1:8080:h:1', '99999:h:1', '8080:h:']) {
      expect(() => parseForward(bad), bad).toThrow(UsageError);
    }
    for (const bad of ['', 'x', '70000', '1.2.3.4:x', 'host.name:1080', '[::1]1080']) expect(() => parseSocks(bad), bad).toThrow(UsageError);
    for (const bad of ['host', 'host:0', '[::1]', '::1:443', 'a b:1']) expect(() => parseServer(bad), bad).toThrow(UsageError);
  });

  it('the token is the first line that is neither empty nor a # comment', () => {
    expect(readToken(tokenFile)).toBe('tok-3n_Az.9~');
    const onlyComments = path.join(tmp, 'empty-token');
    fs.writeFileSync(onlyComments, '# nothing\n\n');
    expect(() => readToken(onlyComments)).toThrow(/no token/);
    const spaced = path.join(tmp, 'spaced-token');
    fs.writeFileSync(spaced, 'two words\n');
    expect(() => readToken(spaced)).toThrow(/not a bearer token/);
  });

  it('usage errors: exit 2 with a message, nothing listens', async () => {
    const server = ['--server', `127.0.0.1:${proxy.port}`];
    const cases: [string[], RegExp][] = [
      [[...server], /at least one -L/],
      [['-L', '0:127.0.0.1:1'], /--server HOST:PORT is required/],
      [[...server, '-L', '8080:host'], /-L needs \[BIND:\]PORT:HOST:HOSTPORT/],
      [[...server, '-L', '8080:2001:db8::5:22'], /-L needs/],
      [[...server, '-L', '0:h:0'], /not a port/],
      [[...server, '-D', 'x:1080'], /bind address/],
      [[...server, '-L', '0:h:1', '--token-file', path.join(tmp, 'missing')], /cannot read token file/],
      [[...server, '-L', '0:h:1', '--cert', CA], /--cert and --key go together/],
      [[...server, '-L', '0:h:1', '--pin', 'sha256//short'], /--pin: invalid SPKI pin/],
      [[...server, '-L', '0:h:1', '--local', 'eth0'], /--local needs an IP address/],
      [[...server, '-L', '0:h:1', '--kernel', '--local', '127.0.0.1', '--local', '127.0.0.2'], /--kernel takes one --local/],
      [[...server, '-L', '0:h:1', '--local', 'auto', '--local', '127.0.0.1'], /--local auto takes no other --local/],
      [[...server, '-L', '0:h:1', '--kernel', '--local', 'auto'], /--kernel and --local auto/],
      [[...server, '-L', '0:h:1', '--connect-timeout', '0'], /--connect-timeout needs/],
      [[...server, '-L', '0:h:1', '--bogus'], /Unknown option/],
    ];
    for (const [args, message] of cases) {
      const r = await run(args);
      expect(r.code, args.join(' ')).toBe(EXIT_USAGE);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.stdout).toBe('');
    }
  });

  it('an unusable --local is exit 45 (as get), decided before any socket', async () => {
    let connections = 0;
    const count = () => connections++;
    proxy.server.on('connection', count);
    for (const bad of ['192.0.2.1', '::1']) {
      const r = await run(['--server', `127.0.0.1:${proxy.port}`, '-L', '0:127.0.0.1:1', '--local', '127.0.0.1', '--local', bad]);
      expect(r.code, bad).toBe(EXIT_INTERFACE);
      expect(r.stderr).toMatch(bad === '::1' ? /is IPv6 but the server 127\.0\.0\.1 is IPv4/ : /is not an address of this host/);
      expect(r.stdout).toBe('');
    }
    proxy.server.removeListener('connection', count);
    expect(connections).toBe(0);
    expect(proxy.requests.length).toBe(0);
  });
});

describe('mptls tunnel: one -L tunnel through the command', () => {
  it('forwards over two subflows with the token file; one line per listener, one per tunnel; stops on the signal', async () => {
    const stop = new AbortController();
    const stdout = sink();
    const stderr = sink();
    const running = tunnelCommand(
      ['--server', `127.0.0.1:${proxy.port}`, '--cacert', CA, '--token-file', tokenFile, '--local', '127.0.0.1', '--local', '127.0.0.2', '-L', `0:127.0.0.1:${echoPort}`, '-L', `127.0.0.1:0:localhost:${echoPort}`, '-D', '0'],
      makeOut({ stdout, stderr }),
      stop.signal,
    );
    await until(() => stdout.text().split('\n').length >= 4, 10000, 'the listener lines');
    const lines = stdout.text().trim().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^forwarding 127\\.0\\.0\\.1:\\d+ -> 127\\.0\\.0\\.1:${echoPort} via 127\\.0\\.0\\.1:${proxy.port}$`));
    expect(lines[1]).toMatch(new RegExp(`^forwarding 127\\.0\\.0\\.1:\\d+ -> localhost:${echoPort} via 127\\.0\\.0\\.1:${proxy.port}$`));
    expect(lines[2]).toMatch(new RegExp(`^socks5 on 127\\.0\\.0\\.1:\\d+ via 127\\.0\\.0\\.1:${proxy.port}$`));
    const port = Number(/127\.0\.0\.1:(\d+) ->/.exec(lines[0])![1]);

    const payload = Buffer.alloc(300 * 1024, 'x');
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const got: Buffer[] = [];
    c.on('data', (d: Buffer) => got.push(d));
    c.end(payload);
    await new Promise((r) => c.once('end', r));
    c.destroy();
    expect(Buffer.concat(got).equals(payload)).toBe(true);
    expect(proxy.requests.at(-1)).toMatchObject({ target: `127.0.0.1:${echoPort}`, status: 200, headers: { 'proxy-authorization': 'Bearer tok-3n_Az.9~' } });
    await until(() => /\(forward\): userspace/.test(stderr.text()), 5000, 'the tunnel line');
    expect(stderr.text()).toMatch(new RegExp(`^127\\.0\\.0\\.1:\\d+ -> 127\\.0\\.0\\.1:${echoPort} \\(forward\\): userspace, 2 subflows, 300\\.0 KiB up, 300\\.0 KiB down, \\d+ ms$`, 'm'));
    stop.abort();
    expect(await running).toBe(EXIT_OK);
  });

  it('a tunnel the proxy refuses is logged with the reason (and -q logs nothing)', async () => {
    for (const quiet of [false, true]) {
      const stop = new AbortController();
      const stdout = sink();
      const stderr = sink();
      const running = tunnelCommand(['--server', `127.0.0.1:${proxy.port}`, '--cacert', CA, '-L', `0:127.0.0.1:${echoPort}`, ...(quiet ? ['-q'] : [])], makeOut({ stdout, stderr }), stop.signal);
      await until(() => stdout.text().includes('forwarding'), 10000, 'the listener line');
      const port = Number(/127\.0\.0\.1:(\d+) ->/.exec(stdout.text())![1]);
      const c = net.connect({ port, host: '127.0.0.1' });
      await new Promise((r) => c.once('close', r).once('error', () => {}));
      if (!quiet) {
        await until(() => stderr.text().includes('failed'), 5000, 'the failure line');
        expect(stderr.text()).toMatch(new RegExp(`^127\\.0\\.0\\.1:\\d+ -> 127\\.0\\.0\\.1:${echoPort} \\(forward\\): failed: the proxy refused: 407 Proxy Authentication Required \\[Proxy-Authenticate: Bearer realm="test"\\]`, 'm'));
      } else {
        await new Promise((r) => setTimeout(r, 200));
        expect(stderr.text()).toBe('');
      }
      stop.abort();
      expect(await running).toBe(EXIT_OK);
    }
  });
});
