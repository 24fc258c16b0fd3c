/**
 * The published types as users meet them (issue 15 §7): test/types/consumer.ts
 * compiled against 'mptls' (dist/*.d.ts, made by `npm run build`, which
 * `npm test` runs first) with `tsc --strict --noEmit`. `.mptcp` is typed in
 * 'secureConnection' listeners and on `req.socket`, the `https.get(url, cb)`
 * overloads exist, `counters()` gives plain numbers, and the
 * `@ts-expect-error` lines prove none of it is `any`.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

describe('published types', () => {
  it('a strict consumer program compiles against dist/index.d.ts', () => {
    const r = spawnSync(process.execPath, [`${ROOT}node_modules/typescript/bin/tsc`, '-p', 'test/types/tsconfig.json'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  }, 60_000);
});
