/**
 * What every command shares: where output goes (`CliIo`, `Out`), the exit
 * codes, how an error is described on stderr, and the package version.
 */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Where `main` writes and how `serve` is stopped; everything defaults to the process's own. */
export interface CliIo {
  stdout?: CliWritable;
  stderr?: CliWritable;
  /** `serve` stops when this aborts (default: SIGINT or SIGTERM). */
  signal?: AbortSignal;
}

export type CliWritable = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_USAGE = 2;
export const EXIT_HTTP = 22;

// `mptls get`'s other exit codes: curl's, for the same failures.
/** The host name does not resolve (curl's CURLE_COULDNT_RESOLVE_HOST). */
export const EXIT_RESOLVE = 6;
/** No connection: refused, unreachable (CURLE_COULDNT_CONNECT). */
export const EXIT_CONNECT = 7;
/** The body ended before its Content-Length (CURLE_PARTIAL_FILE). */
export const EXIT_PARTIAL = 18;
/** Writing the output failed, or -O found no file name (CURLE_WRITE_ERROR). */
export const EXIT_WRITE = 23;
/** --connect-timeout or --max-time ran out (CURLE_OPERATION_TIMEDOUT). */
export const EXIT_TIMEOUT = 28;
/** The TLS handshake failed (CURLE_SSL_CONNECT_ERROR). */
export const EXIT_TLS = 35;
/** An unusable --local address (CURLE_INTERFACE_FAILED). */
export const EXIT_INTERFACE = 45;
/** More redirects than --max-redirs (CURLE_TOO_MANY_REDIRECTS). */
export const EXIT_REDIRECTS = 47;
/** The server closed the connection without a response (CURLE_GOT_NOTHING). */
export const EXIT_EMPTY_REPLY = 52;
/** The connection failed while receiving (CURLE_RECV_ERROR). */
export const EXIT_RECV = 56;
/** The server certificate did not verify (CURLE_PEER_FAILED_VERIFICATION). */
export const EXIT_CERT = 60;
/** The server key did not match --pin (CURLE_SSL_PINNEDPUBKEYNOTMATCH). */
export const EXIT_PIN = 90;

/** The two streams, and line writers that add the missing newline. */
export interface Out {
  stdout: CliWritable;
  stderr: CliWritable;
  out(s: string): void;
  err(s: string): void;
}

export function makeOut(io: CliIo): Out {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  return {
    stdout,
    stderr,
    out: (s) => void stdout.write(s.endsWith('\n') ? s : s + '\n'),
    err: (s) => void stderr.write(s.endsWith('\n') ? s : s + '\n'),
  };
}

/** One line for stderr: the message, its `code` and its cause's message when they add anything. */
export function describeError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const code = (e as { code?: string }).code;
  let msg = e.message || e.name;
  if (code && !msg.includes(code)) msg += ` (${code})`;
  const cause = (e as { cause?: unknown }).cause;
  if (cause instanceof Error && cause.message && !msg.includes(cause.message)) msg += `: ${cause.message}`;
  return msg;
}

/** The version in package.json (two levels up from src/cli and from dist/cli). */
export function version(): string {
  try {
    const pkg = fileURLToPath(new URL('../../package.json', import.meta.url));
    return (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
