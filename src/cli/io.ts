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
