/**
 * Cross-check against the openssl command line (an independent SHA-256 and
 * HMAC implementation), when openssl is on PATH.
 */
import { spawnSync } from 'node:child_process';
import { bytesToHex } from '@noble/hashes/utils.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { be32 } from '../support/bytes.mjs';
import {
  addAddrHmac,
  addAddrHmacMessage,
  idsnFromKey,
  joinAckHmac,
  joinSynAckHmac,
  mptcpHmac,
  newKeyHmac,
  tokenFromKey,
} from '../../src/crypto/index.js';

const hasOpenssl = (() => {
  const r = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  return !r.error && r.status === 0;
})();
if (!hasOpenssl) console.warn('openssl not on PATH: openssl cross-checks skipped');

/** Runs `openssl dgst -sha256 [-mac HMAC -macopt hexkey:K]` on msg; returns the hex digest. */
function openssl(msg: Uint8Array, hexKey?: string): string {
  const args = ['dgst', '-sha256'];
  if (hexKey !== undefined) args.push('-mac', 'HMAC', '-macopt', `hexkey:${hexKey}`);
  const r = spawnSync('openssl', args, { input: msg, encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
  const m = /([0-9a-f]{64})\s*$/.exec(r.stdout.trim());
  if (!m) throw new Error(`unexpected openssl output: ${r.stdout}`);
  return m[1];
}

const key = fc.uint8Array({ minLength: 8, maxLength: 8 });
const u32 = fc.nat({ max: 0xffffffff });
const runs = { numRuns: 8 };

describe.skipIf(!hasOpenssl)('openssl cross-check', () => {
  it('token and IDSN are the ends of openssl SHA-256(key)', () => {
    fc.assert(
      fc.property(key, (k) => {
        const d = openssl(k);
        expect(tokenFromKey(k)).toBe(parseInt(d.slice(0, 8), 16));
        expect(idsnFromKey(k)).toBe(BigInt(`0x${d.slice(48)}`));
      }),
      runs,
    );
  });

  it('mptcpHmac equals openssl HMAC keyed by key1‖key2', () => {
    fc.assert(
      fc.property(key, key, fc.uint8Array({ maxLength: 64 }), (k1, k2, msg) => {
        expect(bytesToHex(mptcpHmac(k1, k2, msg))).toBe(openssl(msg, bytesToHex(k1) + bytesToHex(k2)));
      }),
      runs,
    );
  });

  it('MP_JOIN HMACs are the leftmost 64/160 bits of openssl HMAC', () => {
    fc.assert(
      fc.property(key, key, u32, u32, (kA, kB, rA, rB) => {
        const b = openssl(be32(rB, rA), bytesToHex(kB) + bytesToHex(kA));
        expect(bytesToHex(joinSynAckHmac(kB, kA, rB, rA))).toBe(b.slice(0, 16));
        const a = openssl(be32(rA, rB), bytesToHex(kA) + bytesToHex(kB));
        expect(bytesToHex(joinAckHmac(kA, kB, rA, rB))).toBe(a.slice(0, 40));
      }),
      runs,
    );
  });

  it('ADD_ADDR HMAC is the rightmost 64 bits of openssl HMAC', () => {
    const addr = fc.oneof(fc.ipV4(), fc.ipV6());
    fc.assert(
      fc.property(key, key, fc.nat({ max: 255 }), addr, fc.option(fc.nat({ max: 65535 }), { nil: undefined }), (ks, kr, id, a, port) => {
        const full = openssl(addAddrHmacMessage(id, a, port), bytesToHex(ks) + bytesToHex(kr));
        expect(bytesToHex(addAddrHmac(ks, kr, id, a, port))).toBe(full.slice(48));
      }),
      runs,
    );
  });

  it('NEW_KEY HMAC is the low-order 64 bits of openssl HMAC keyed by the tokens', () => {
    fc.assert(
      fc.property(u32, u32, fc.uint8Array({ minLength: 1, maxLength: 48 }), (ts, tr, ext) => {
        const full = openssl(ext, bytesToHex(be32(ts, tr)));
        expect(bytesToHex(newKeyHmac(ts, tr, ext))).toBe(full.slice(48));
      }),
      runs,
    );
  });
});
