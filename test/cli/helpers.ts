/**
 * What the CLI option tests share: `main` run in-process with captured
 * streams, `mptls serve` started in-process, the system's curl (7.88) run
 * against the same servers, and a free loopback port.
 */
import { execFile } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { main, type CliIo } from '../../src/cli/main.js';
import { sink } from '../support/sink.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const FIXTURES = path.join(ROOT, 'certs-fixtures');
export const CA = path.join(FIXTURES, 'ca.pem');
export const CERT = path.join(FIXTURES, 'server.pem');
export const KEY = path.join(FIXTURES, 'server.key');
export const CURL = '/usr/bin/curl';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  raw: Buffer;
  ms: number;
}

/** `main(argv)` with captured stdout/stderr (stderr a fake terminal with `tty`). */
export async function run(argv: string[], options: { tty?: boolean } = {}): Promise<RunResult> {
  const stdout = sink();
  const stderr = sink();
  if (options.tty) Object.assign(stderr, { isTTY: true, columns: 80 });
  const t0 = performance.now();
  const code = await main(argv, { stdout, stderr });
  const ms = performance.now() - t0;
  await new Promise((r) => setImmediate(r));
  return { code, stdout: stdout.text(), stderr: stderr.text(), raw: stdout.bytes(), ms };
}

export interface Served {
  /** "https://127.0.0.1:PORT/" */
  base: string;
  port: number;
  stdout: ReturnType<typeof sink>;
  log: ReturnType<typeof sink>;
  stop(): Promise<number>;
}

/** `mptls serve --cert … --key … --port 0 ARGS` in-process, once it prints its address. */
export async function serve(args: string[]): Promise<Served> {
  const stop = new AbortController();
  const stdout = sink();
  const log = sink();
  const io: CliIo = { stdout, stderr: log, signal: stop.signal };
  let exited: number | undefined;
  const served = main(['serve', '--cert', CERT, '--key', KEY, '--port', '0', ...args], io).then((c) => (exited = c));
  const deadline = Date.now() + 10_000;
  let m: RegExpMatchArray | null = null;
  while (!(m = stdout.text().match(/listening on (https:\/\/(?:127\.0\.0\.1|\[::1\]):(\d+)\/)/)) && Date.now() < deadline && exited === undefined) {
    await new Promise((r) => setTimeout(r, 10));
  }
  if (!m) {
    stop.abort();
    throw new Error(`serve did not start (exit ${exited}): ${stdout.text()} ${log.text()}`);
  }
  return {
    base: m[1],
    port: Number(m[2]),
    stdout,
    log,
    stop: async () => {
      stop.abort();
      return served;
    },
  };
}

export interface CurlResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** The system's curl, asynchronously (the servers run in this process). */
export function curl(args: string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<CurlResult> {
  return new Promise((resolve) => {
    execFile(CURL, args, { encoding: 'buffer', timeout: options.timeoutMs ?? 30_000, cwd: options.cwd, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof (error as { code?: unknown }).code === 'number' ? ((error as { code: number }).code) : -1) : 0;
      resolve({ code, stdout, stderr: stderr.toString('utf8') });
    });
  });
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/** A response header block without the lines that differ between clients (Date, Connection, Keep-Alive). */
export function stableHeaders(block: string): string {
  return block
    .split('\r\n')
    .filter((l) => !/^(date|connection|keep-alive):/i.test(l))
    .join('\r\n');
}
