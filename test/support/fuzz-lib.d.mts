/** Types of test/support/fuzz-lib.mjs, for the tests that share it. */
import type net from 'node:net';

export interface Rng {
  seed: number;
  u32(): number;
  int(n: number): number;
  range(lo: number, hi: number): number;
  float(): number;
  chance(p: number): boolean;
  pick<T>(xs: readonly T[]): T;
  bytes(n: number): Uint8Array;
  u64(): bigint;
  weighted(weights: readonly number[]): number;
}
export function makeRng(seed: number): Rng;
export function hex(b: Uint8Array): string;

/** The parts of mptls the fuzzer uses (src/index.ts or dist/index.js). */
export interface FuzzLib {
  decodeOption(bytes: Uint8Array, offset?: number, end?: number): unknown;
  decodeOptions(bytes: Uint8Array): unknown[];
  readOption(bytes: Uint8Array, offset?: number): unknown;
  encodeOption(opt: never): Uint8Array;
  MptcpWireError: abstract new (...args: never[]) => Error;
  FrameParser: new () => { push(chunk: Uint8Array): unknown[]; readonly pending: number };
  FrameError: abstract new (...args: never[]) => Error;
  tokenFromKey(key: Uint8Array): number;
  idsnFromKey(key: Uint8Array): bigint;
  idsnExternal(sender: 'initiator' | 'responder'): bigint;
  joinAckHmac(keyA: Uint8Array, keyB: Uint8Array, randA: number, randB: number): Uint8Array;
}

export const OPTION_SHAPES: readonly string[];
export function randomOptionObject(rng: Rng, shape?: number): Record<string, unknown>;
export function randomValidOptionBytes(rng: Rng): Uint8Array;
export function mutate(rng: Rng, input: Uint8Array, other?: Uint8Array, maxMutations?: number): Uint8Array;

export interface Failure {
  error: string;
  hex: string;
  kind?: string;
}
export interface DecoderStats {
  inputs: number;
  decoded: number;
  wireErrors: number;
  maxMs: number;
  slow: { ms: number; hex: string }[];
  failures: Failure[];
  bySubtype: Record<string, number>;
}
export function fuzzDecoder(lib: FuzzLib, rng: Rng, n: number, probe?: (b: Uint8Array) => void): DecoderStats;

export interface ParserStats {
  streams: number;
  chunks: number;
  items: number;
  segments: number;
  frameErrors: number;
  validChecked: number;
  maxMs: number;
  maxPending: number;
  slow: { ms: number; kind: string }[];
  failures: Failure[];
  byKind: Record<string, number>;
}
export function fuzzParser(lib: FuzzLib, rng: Rng, n: number, probe?: (b: Uint8Array) => void): ParserStats;

export const MAGIC: Uint8Array;
export function preamble(role?: number): Uint8Array;
export function frame(f?: { type?: number; flags?: number; opts?: Uint8Array; payload?: Uint8Array; window?: number; ack?: number; optLen?: number; payloadLen?: number }): Uint8Array;
export function frameOf(lib: FuzzLib, options: Record<string, unknown>[], extra?: { payload?: Uint8Array; window?: number; ack?: number }): Uint8Array;

export const SESSION_KINDS: Record<string, [number, (ctx: unknown) => Promise<void>, { plain?: boolean; known?: string }?]>;
export function kindInfo(kind: string): { plain?: boolean; known?: string };

export interface SessionResult {
  kind: string;
  index: number;
  seed: number;
  results: { key: string | undefined; outcome: string; parseError?: string; ms: number }[];
  keys: Uint8Array[];
  scriptError?: string;
  ms: number;
}
export interface Target {
  host: string;
  port: number;
  localAddress?: () => string;
}
export function runSession(lib: FuzzLib, kind: string, rng: Rng, target: Target, deadlineMs: number): Promise<SessionResult>;
export function runSessions<E>(
  lib: FuzzLib,
  o: {
    sessions: number;
    concurrency: number;
    seed: number;
    target: Target;
    deadlineMs: number;
    everyN?: number;
    every?: (n: number) => Promise<E>;
    onProgress?: (done: number) => void;
    exclude?: string[];
  },
): Promise<{ sessions: SessionResult[]; everyResults: E[]; ms: number }>;

export interface Instrumented {
  records: { key: string; at: number; events: string[]; closedAt?: number }[];
  strings: string[];
  keys: Uint8Array[];
  readonly maxPending: number;
  open(): number;
  histogram(): Record<string, number>;
  reasons(): { key: string; at: number; reason: string; closed: boolean }[];
  liveDrivers(): number;
}
export interface KeyStats {
  /** server connections (drivers) seen */
  connections: number;
  /** connections whose local and remote key were both read */
  withBothKeys: number;
  /** external-mode connections whose TLS session came up (each holds two keys) */
  externalSecure: number;
  /** of those, how many gave fewer than two keys (must be 0) */
  externalMissing: number;
  /** rfc8684-mode connections with both keys */
  rfc8684WithKeys: number;
  /** keysOf threw */
  readErrors: number;
  /** distinct keys collected */
  keys: number;
}
/** `keysForTesting` of src/core/connection.ts or dist/core/connection/index.js. */
export type KeysOf = (conn: never) => { localKey?: Uint8Array; remoteKey?: Uint8Array };
export function instrumentServer(server: net.Server & { mptcp: unknown }, o: { keysOf: KeysOf }): Instrumented & { keyStats(): KeyStats };
export function reasonClass(msg: unknown): string;

export function scanForKeys(strings: string[], keys: Uint8Array[]): { keys: number; strings: number; hits: { key: string; line: string }[] };

export const PLANT_MARK: string;
export function plantLine(key: Uint8Array, form?: number): string;
export interface KeyAudit {
  keys: { server: number; client: number; total: number };
  strings: number;
  hits: { key: string; line: string }[];
  planted: { side: 'server' | 'client'; carriers: number; found: boolean }[];
  failures: string[];
}
export function auditKeys(o: {
  strings: string[];
  server: Uint8Array[];
  client: Uint8Array[];
  plants?: { side: 'server' | 'client'; line: string }[];
  minServerKeys?: number;
  minClientKeys?: number;
  serverMustHave?: Uint8Array[];
}): KeyAudit;

export interface SessionSummary {
  sessions: number;
  connections: number;
  byKind: Record<string, number>;
  byOutcome: Record<string, number>;
  unhandled: { kind: string; seed: number; key?: string }[];
  known: { kind: string; seed: number; key?: string; issue: string }[];
  scriptErrors: { kind: string; seed: number; error: string }[];
  parseErrors: { kind: string; seed: number; error: string }[];
}
export function summariseSessions(done: SessionResult[]): SessionSummary;
export function crossTab(done: SessionResult[], serverReasons: { key: string; at: number; reason: string }[]): { tab: Record<string, Record<string, number>>; unmatched: number };
