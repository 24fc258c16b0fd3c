/**
 * Seeded randomness for tests: nothing in a test draws from Math.random, so
 * a failure replays exactly. A test file takes its seed from `TEST_SEED`
 * (decimal or 0x-hex) or its own fixed default, and prints it when a test fails.
 */
import { beforeEach, onTestFailed } from 'vitest';

/** mulberry32: a tiny 32-bit PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function seededBytes(rand: () => number): (n: number) => Uint8Array {
  return (n: number) => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
    return b;
  };
}

/** `TEST_SEED` if set, else `fallback`. */
export function testSeed(fallback: number): number {
  const env = process.env.TEST_SEED;
  if (env === undefined || env.trim() === '') return fallback >>> 0;
  const n = Number(env);
  if (!Number.isInteger(n)) throw new TypeError(`TEST_SEED=${env}: not an integer`);
  return n >>> 0;
}

export interface SeededRandom {
  readonly seed: number;
  /** Uniform in [0, 1). */
  next(): number;
  /** A uniform 32-bit unsigned integer. */
  u32(): number;
  bytes(n: number): Uint8Array;
}

/**
 * A seeded source for the tests of one file (call at module level): re-seeded
 * before each test, so a test draws the same values alone as in a full run,
 * and a failing test prints the seed to replay it with.
 */
export function useTestSeed(fallback: number): SeededRandom {
  const seed = testSeed(fallback);
  let rand = mulberry32(seed);
  beforeEach(() => {
    rand = mulberry32(seed);
    onTestFailed(() => {
      console.error(`test seed ${seed} (0x${seed.toString(16)}): replay with TEST_SEED=${seed}`);
    });
  });
  return {
    seed,
    next: () => rand(),
    u32: () => (rand() * 2 ** 32) >>> 0,
    bytes: (n) => seededBytes(() => rand())(n),
  };
}
