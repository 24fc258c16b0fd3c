/**
 * Known answers computed outside this code base: test/fixtures/crypto-vectors.json
 * is produced by scripts/gen-crypto-vectors.py with Python's hashlib/hmac
 * (and ipaddress for address bytes).
 */
import { readFileSync } from 'node:fs';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import {
  addAddrHmac,
  addAddrHmacMessage,
  addressToBytes,
  idsnFromKey,
  idsnExternal,
  joinAckHmac,
  joinSynAckHmac,
  mptcpHmac,
  newKeyHmac,
  timingSafeEqual,
  tokenFromKey,
} from '../../src/crypto/index.js';

interface Vectors {
  keys: { key: string; token: number; idsn: string; sha256: string }[];
  mptcpHmac: { key1: string; key2: string; msg: string; hmac: string }[];
  joinSynAckHmac: { keyB: string; keyA: string; randB: number; randA: number; hmac: string }[];
  joinAckHmac: { keyA: string; keyB: string; randA: number; randB: number; hmac: string }[];
  addAddrHmac: {
    senderKey: string;
    receiverKey: string;
    addressId: number;
    address: string;
    addressBytes: string;
    msg: string;
    port?: number;
    hmac: string;
  }[];
  newKeyHmac: { senderToken: number; receiverToken: number; externalKey: string; hmac: string }[];
  idsnExternal: { sender: 'initiator' | 'responder'; idsn: string }[];
}

const V = JSON.parse(
  readFileSync(new URL('../fixtures/crypto-vectors.json', import.meta.url), 'utf8'),
) as Vectors;
const h = hexToBytes;

describe('crypto known answers (Python hashlib/hmac)', () => {
  it('has a few dozen cases', () => {
    const total = Object.values(V).reduce((n, v) => n + (Array.isArray(v) ? v.length : 0), 0);
    expect(total).toBeGreaterThanOrEqual(36);
  });

  it.each(V.keys)('token and IDSN of key $key', (c) => {
    expect(tokenFromKey(h(c.key))).toBe(c.token);
    expect(idsnFromKey(h(c.key))).toBe(BigInt(c.idsn));
    // The token is the top 32 bits, the IDSN the bottom 64 bits of SHA-256(key).
    expect(c.token.toString(16).padStart(8, '0')).toBe(c.sha256.slice(0, 8));
    expect(BigInt(c.idsn).toString(16).padStart(16, '0')).toBe(c.sha256.slice(48));
  });

  it.each(V.mptcpHmac)('mptcpHmac #$#', (c) => {
    expect(bytesToHex(mptcpHmac(h(c.key1), h(c.key2), h(c.msg)))).toBe(c.hmac);
  });

  it.each(V.joinSynAckHmac)('joinSynAckHmac randB=$randB randA=$randA', (c) => {
    const got = joinSynAckHmac(h(c.keyB), h(c.keyA), c.randB, c.randA);
    expect(got.length).toBe(8);
    expect(bytesToHex(got)).toBe(c.hmac);
    expect(timingSafeEqual(got, h(c.hmac))).toBe(true);
  });

  it.each(V.joinAckHmac)('joinAckHmac randA=$randA randB=$randB', (c) => {
    const got = joinAckHmac(h(c.keyA), h(c.keyB), c.randA, c.randB);
    expect(got.length).toBe(20);
    expect(bytesToHex(got)).toBe(c.hmac);
  });

  it.each(V.addAddrHmac)('addAddrHmac id=$addressId $address port=$port', (c) => {
    expect(bytesToHex(addressToBytes(c.address))).toBe(c.addressBytes);
    expect(bytesToHex(addAddrHmacMessage(c.addressId, c.address, c.port))).toBe(c.msg);
    const got = addAddrHmac(h(c.senderKey), h(c.receiverKey), c.addressId, c.address, c.port);
    expect(got.length).toBe(8);
    expect(bytesToHex(got)).toBe(c.hmac);
    // Same answer from raw address bytes.
    expect(bytesToHex(addAddrHmac(h(c.senderKey), h(c.receiverKey), c.addressId, h(c.addressBytes), c.port))).toBe(
      c.hmac,
    );
  });

  it.each(V.newKeyHmac)('newKeyHmac tokens $senderToken/$receiverToken', (c) => {
    const got = newKeyHmac(c.senderToken, c.receiverToken, h(c.externalKey));
    expect(got.length).toBe(8);
    expect(bytesToHex(got)).toBe(c.hmac);
  });

  it.each(V.idsnExternal)('idsnExternal $sender', (c) => {
    expect(idsnExternal(c.sender)).toBe(BigInt(c.idsn));
  });

  it('the committed fixture is what the generator produces', async () => {
    const { spawnSync } = await import('node:child_process');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const py = spawnSync('python3', ['--version']);
    if (py.error || py.status !== 0) {
      console.warn('python3 not on PATH: generator reproducibility not checked');
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'mptls-vectors-'));
    try {
      const out = join(dir, 'v.json');
      const script = new URL('../../scripts/gen-crypto-vectors.py', import.meta.url).pathname;
      const r = spawnSync('python3', [script, out], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      expect(readFileSync(out, 'utf8')).toBe(
        readFileSync(new URL('../fixtures/crypto-vectors.json', import.meta.url), 'utf8'),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('argument checks', () => {
  it('rejects keys that are not 8 bytes for token/IDSN', () => {
    expect(() => tokenFromKey(new Uint8Array(7))).toThrow(RangeError);
    expect(() => idsnFromKey(new Uint8Array(9))).toThrow(RangeError);
  });
  it('rejects out-of-range 32-bit values, ids and ports', () => {
    const k = new Uint8Array(8);
    expect(() => joinSynAckHmac(k, k, -1, 0)).toThrow(RangeError);
    expect(() => joinAckHmac(k, k, 0, 2 ** 32)).toThrow(RangeError);
    expect(() => joinAckHmac(k, k, 0.5, 0)).toThrow(RangeError);
    expect(() => addAddrHmac(k, k, 256, '198.18.0.1')).toThrow(RangeError);
    expect(() => addAddrHmac(k, k, 1, '198.18.0.1', 65536)).toThrow(RangeError);
    expect(() => addAddrHmac(k, k, 1, 'not an address')).toThrow(TypeError);
    expect(() => addAddrHmac(k, k, 1, new Uint8Array(5))).toThrow(RangeError);
    expect(() => newKeyHmac(2 ** 32, 0, k)).toThrow(RangeError);
    expect(() => idsnExternal('client' as 'initiator')).toThrow(RangeError);
  });
});
