import { isIP } from 'node:net';
import { sha256 } from '@noble/hashes/sha2.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { be32 } from '../support/bytes.mjs';
import {
  addAddrHmac,
  addAddrHmacMessage,
  addressToBytes,
  bytesToAddress,
  idsnFromKey,
  idsnExternal,
  ipVersion,
  joinAckHmac,
  joinSynAckHmac,
  mptcpHmac,
  newKeyHmac,
  randomBytes,
  randomKey,
  randomUint32,
  timingSafeEqual,
  tokenFromKey,
} from '../../src/crypto/index.js';

const key = fc.uint8Array({ minLength: 8, maxLength: 8 });
const u32 = fc.nat({ max: 0xffffffff });
const addr = fc.oneof(fc.ipV4(), fc.ipV6());
const port = fc.option(fc.nat({ max: 65535 }), { nil: undefined });

const eq = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

describe('key schedule properties', () => {
  it('token is an unsigned 32-bit integer; IDSN an unsigned 64-bit one', () => {
    fc.assert(
      fc.property(key, (k) => {
        const t = tokenFromKey(k);
        expect(Number.isInteger(t) && t >= 0 && t <= 0xffffffff).toBe(true);
        const i = idsnFromKey(k);
        expect(i >= 0n && i < 1n << 64n).toBe(true);
        const d = sha256(k);
        expect(t).toBe(new DataView(d.buffer).getUint32(0));
        expect(i).toBe(new DataView(d.buffer).getBigUint64(24));
      }),
    );
  });

  it('different keys give different tokens and IDSNs', () => {
    fc.assert(
      fc.property(key, key, (a, b) => {
        fc.pre(!eq(a, b));
        expect(tokenFromKey(a)).not.toBe(tokenFromKey(b));
        expect(idsnFromKey(a)).not.toBe(idsnFromKey(b));
      }),
    );
  });

  it('the two G-mode IDSNs are distinct 64-bit values', () => {
    const a = idsnExternal('initiator');
    const b = idsnExternal('responder');
    expect(a >= 0n && a < 1n << 64n && b >= 0n && b < 1n << 64n).toBe(true);
    expect(a).not.toBe(b);
  });
});

describe('HMAC properties', () => {
  it('mptcpHmac is 32 bytes and depends on the key order', () => {
    fc.assert(
      fc.property(key, key, fc.uint8Array({ maxLength: 40 }), (k1, k2, m) => {
        const x = mptcpHmac(k1, k2, m);
        expect(x.length).toBe(32);
        if (!eq(k1, k2)) expect(eq(x, mptcpHmac(k2, k1, m))).toBe(false);
      }),
    );
  });

  it('joinSynAckHmac is the 8-byte prefix, joinAckHmac the 20-byte prefix, of mptcpHmac', () => {
    fc.assert(
      fc.property(key, key, u32, u32, (kA, kB, rA, rB) => {
        const b = joinSynAckHmac(kB, kA, rB, rA);
        expect(b.length).toBe(8);
        expect(eq(b, mptcpHmac(kB, kA, be32(rB, rA)).subarray(0, 8))).toBe(true);
        const a = joinAckHmac(kA, kB, rA, rB);
        expect(a.length).toBe(20);
        expect(eq(a, mptcpHmac(kA, kB, be32(rA, rB)).subarray(0, 20))).toBe(true);
        // With the roles swapped the SYN/ACK HMAC is the ACK HMAC's first 8 bytes.
        expect(eq(joinSynAckHmac(kA, kB, rA, rB), a.subarray(0, 8))).toBe(true);
      }),
    );
  });

  it('different nonces or keys give different join HMACs', () => {
    fc.assert(
      fc.property(key, key, u32, u32, u32, (kA, kB, rA, rB, rX) => {
        fc.pre(rX !== rA);
        expect(eq(joinAckHmac(kA, kB, rA, rB), joinAckHmac(kA, kB, rX, rB))).toBe(false);
        expect(eq(joinSynAckHmac(kB, kA, rB, rA), joinSynAckHmac(kB, kA, rB, rX))).toBe(false);
        if (!eq(kA, kB)) {
          expect(eq(joinAckHmac(kA, kB, rA, rB), joinAckHmac(kB, kA, rA, rB))).toBe(false);
        }
      }),
    );
  });

  it('addAddrHmac is the 8-byte suffix of mptcpHmac over id‖addr‖port', () => {
    fc.assert(
      fc.property(key, key, fc.nat({ max: 255 }), addr, port, (ks, kr, id, a, p) => {
        const msg = addAddrHmacMessage(id, a, p);
        const bytes = addressToBytes(a);
        expect(msg.length).toBe(1 + bytes.length + 2);
        expect(msg[0]).toBe(id);
        expect(eq(msg.subarray(1, 1 + bytes.length), bytes)).toBe(true);
        expect((msg[msg.length - 2] << 8) | msg[msg.length - 1]).toBe(p ?? 0);
        const x = addAddrHmac(ks, kr, id, a, p);
        expect(x.length).toBe(8);
        expect(eq(x, mptcpHmac(ks, kr, msg).subarray(24))).toBe(true);
      }),
    );
  });

  it('ADD_ADDR without a port is the same as port 0; other ports, ids and key orders differ', () => {
    fc.assert(
      fc.property(key, key, fc.nat({ max: 254 }), addr, fc.integer({ min: 1, max: 65535 }), (ks, kr, id, a, p) => {
        const base = addAddrHmac(ks, kr, id, a);
        expect(eq(base, addAddrHmac(ks, kr, id, a, 0))).toBe(true);
        expect(eq(base, addAddrHmac(ks, kr, id, a, p))).toBe(false);
        expect(eq(base, addAddrHmac(ks, kr, id + 1, a))).toBe(false);
        if (!eq(ks, kr)) expect(eq(base, addAddrHmac(kr, ks, id, a))).toBe(false);
      }),
    );
  });

  it('newKeyHmac is 8 bytes, side-specific, and binds the key', () => {
    fc.assert(
      fc.property(u32, u32, fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.uint8Array({ minLength: 1, maxLength: 64 }), (s, r, k1, k2) => {
        const x = newKeyHmac(s, r, k1);
        expect(x.length).toBe(8);
        if (s !== r) expect(eq(x, newKeyHmac(r, s, k1))).toBe(false);
        if (!eq(k1, k2)) expect(eq(x, newKeyHmac(s, r, k2))).toBe(false);
      }),
    );
  });
});

describe('timingSafeEqual', () => {
  it('agrees with a plain comparison', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ maxLength: 40 }), (a, b) => {
        expect(timingSafeEqual(a, b)).toBe(eq(a, b));
        expect(timingSafeEqual(a, a.slice())).toBe(true);
      }),
    );
  });
  it('different lengths compare unequal, even when one is a prefix or zero-padded', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }), (a) => {
        expect(timingSafeEqual(a, a.subarray(0, a.length - 1))).toBe(false);
        const padded = new Uint8Array(a.length + 1);
        padded.set(a);
        expect(timingSafeEqual(a, padded)).toBe(false);
        expect(timingSafeEqual(padded, a)).toBe(false);
      }),
    );
    expect(timingSafeEqual(new Uint8Array(0), new Uint8Array(0))).toBe(true);
    expect(timingSafeEqual(new Uint8Array(0), new Uint8Array(1))).toBe(false);
  });
  it('a single flipped bit anywhere is caught', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 32 }), fc.nat(), fc.nat({ max: 7 }), (a, i, bit) => {
        const b = a.slice();
        b[i % b.length] ^= 1 << bit;
        expect(timingSafeEqual(a, b)).toBe(false);
      }),
    );
  });
});

describe('address text', () => {
  it('agrees with node:net isIP on IP-like and arbitrary strings (no zone ids)', () => {
    const ipish = fc.oneof(
      fc.ipV4(),
      fc.ipV6(),
      fc.ipV4Extended(),
      fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:.x'.split('')), maxLength: 45 }),
      fc.string(),
    );
    fc.assert(
      fc.property(ipish, (s) => {
        fc.pre(!s.includes('%'));
        expect(ipVersion(s)).toBe(isIP(s));
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips through bytes and prints canonical text', () => {
    fc.assert(
      fc.property(addr, (s) => {
        const b = addressToBytes(s);
        expect(b.length).toBe(s.includes(':') ? 16 : 4);
        const canon = bytesToAddress(b);
        expect(eq(addressToBytes(canon), b)).toBe(true);
        expect(bytesToAddress(addressToBytes(canon))).toBe(canon);
      }),
    );
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 })), (b) => {
        const s = bytesToAddress(b);
        expect(isIP(s)).toBe(b.length === 4 ? 4 : 6);
        expect(eq(addressToBytes(s), b)).toBe(true);
      }),
    );
  });

  it('follows RFC 5952 on known examples', () => {
    const cases: [string, string][] = [
      ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
      ['0:0:0:0:0:0:0:0', '::'],
      ['0:0:0:0:0:0:0:1', '::1'],
      ['1:0:0:0:0:0:0:0', '1::'],
      ['::ffff:c612:0102', '::ffff:198.18.1.2'],
      ['198.18.1.2', '198.18.1.2'],
    ];
    for (const [input, want] of cases) expect(bytesToAddress(addressToBytes(input))).toBe(want);
    expect(() => addressToBytes('fe80::1%eth0')).toThrow(TypeError);
    expect(() => addressToBytes('01.2.3.4')).toThrow(TypeError);
    expect(() => bytesToAddress(new Uint8Array(5))).toThrow(RangeError);
  });
});

describe('randomness', () => {
  it('returns fresh bytes of the asked length', () => {
    expect(randomBytes(0).length).toBe(0);
    expect(randomBytes(100_000).length).toBe(100_000);
    expect(randomKey().length).toBe(8);
    expect(eq(randomBytes(32), randomBytes(32))).toBe(false);
    const r = randomUint32();
    expect(Number.isInteger(r) && r >= 0 && r <= 0xffffffff).toBe(true);
    expect(() => randomBytes(-1)).toThrow(RangeError);
  });
});
