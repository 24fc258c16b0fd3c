/**
 * Option parsing for the commands: every mistake on the command line is a
 * `UsageError`, which `main` prints with the command's help and exit code 2.
 */
import fs from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { describeError } from './io.js';

/** A command-line mistake; never escapes `main`. */
export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;

/** What `parse` returns: `values` typed by the options, and `positionals`. */
export type Parsed<O extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: boolean; strict: true }>>;

/** `util.parseArgs` in strict mode, its errors as `UsageError`s. */
export function parse<O extends Options>(args: string[], options: O, positionals = false): Parsed<O> {
  try {
    return parseArgs({ args, options, allowPositionals: positionals, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** The bytes of a file named on the command line; an unreadable one is a usage error. */
export function readFileOrUsage(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new UsageError(`cannot read ${what} ${file}: ${describeError(e)}`);
  }
}

/** An optional option that must be a positive integer. */
export function positiveInt(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) <= 0) throw new UsageError(`${what} needs a positive integer, got ${JSON.stringify(v)}`);
  return Number(v);
}
