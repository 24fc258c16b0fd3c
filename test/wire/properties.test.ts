/**
 * Property tests of the option codec: object round trips for every shape,
 * byte round trips for every valid encoding (generated at byte level,
 * independently of the encoder), and fuzzing of the decoder with random
 * bytes and mutations of valid encodings.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  canonicalIpAddress,
  decodeOption,
  decodeOptions,
  encodeDssInto,
  encodeOption,
  encodeOptions,
  readOption,
  MptcpWireError,
  type MptcpOption,
  type DssOption,
} from '../../src/wire/index.js';

// ---------------------------------------------------------------------------
// Object arbitraries (inputs as an API user may write them)

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const u32n = fc.bigInt({ min: 0n, max: 2n ** 32n - 1n });
const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });

const mpCapableRfc = fc
  .record({
    version: fc.integer({ min: 0, max: 15 }),
    flags: u8.map((f) => f & ~0x02),
    n: fc.integer({ min: 0, max: 4 }),
    k1: bytes(8),
    k2: bytes(8),
    dll: u16,
    csum: u16,
  })
  .map(({ version, flags, n, k1, k2, dll, csum }): MptcpOption => {
    const o: MptcpOption = { subtype: 'MP_CAPABLE', version, flags };
    if (n >= 1) o.senderKey = k1;
    if (n >= 2) o.receiverKey = k2;
    if (n >= 3) o.dataLevelLength = dll;
    if (n >= 4) o.checksum = csum;
    return o;
  });

const mpCapableG = fc
  .record({
    version: fc.integer({ min: 0, max: 15 }),
    flags: u8.map((f) => f | 0x02),
    n: fc.integer({ min: 0, max: 4 }),
    t1: u32,
    t2: u32,
    dll: u16,
    csum: u16,
  })
  .map(({ version, flags, n, t1, t2, dll, csum }): MptcpOption => {
    const o: MptcpOption = { subtype: 'MP_CAPABLE', version, flags };
    if (n >= 1) o.senderToken = t1;
    if (n >= 2) o.receiverToken = t2;
    if (n >= 3) o.dataLevelLength = dll;
    if (n >= 4) o.checksum = csum;
    return o;
  });

const mpJoin: fc.Arbitrary<MptcpOption> = fc.oneof(
  fc.record({
    subtype: fc.constant('MP_JOIN' as const),
    stage: fc.constant('syn' as const),
    backup: fc.boolean(),
    addressId: u8,
    receiverToken: u32,
    senderRandom: u32,
  }),
  fc.record({
    subtype: fc.constant('MP_JOIN' as const),
    stage: fc.constant('synack' as const),
    backup: fc.boolean(),
    addressId: u8,
    truncatedHmac: bytes(8),
    senderRandom: u32,
  }),
  fc.record({ subtype: fc.constant('MP_JOIN' as const), stage: fc.constant('ack' as const), hmac: bytes(20) }),
);

const dss = fc
  .record({
    dataFin: fc.boolean(),
    ack: fc.option(fc.oneof(fc.tuple(u64, fc.constant(true)), fc.tuple(u32n, fc.constantFrom(false, undefined))), {
      nil: undefined,
    }),
    map: fc.option(
      fc.record({
        dsn: fc.oneof(fc.tuple(u64, fc.constant(true)), fc.tuple(u32n, fc.constantFrom(false, undefined))),
        ssn: u32,
        dll: u16,
        csum: fc.option(u16, { nil: undefined }),
      }),
      { nil: undefined },
    ),
    strayA: fc.option(fc.boolean(), { nil: undefined }),
    strayM: fc.option(fc.boolean(), { nil: undefined }),
  })
  .map(({ dataFin, ack, map, strayA, strayM }): MptcpOption => {
    const o: DssOption = { subtype: 'DSS', dataFin };
    if (ack) {
      o.dataAck = ack[0];
      if (ack[1] !== undefined) o.dataAckIs64 = ack[1];
    } else if (strayA !== undefined) o.dataAckIs64 = strayA; // ignored by the encoder
    if (map) {
      o.dsn = map.dsn[0];
      if (map.dsn[1] !== undefined) o.dsnIs64 = map.dsn[1];
      o.ssn = map.ssn;
      o.dataLevelLength = map.dll;
      if (map.csum !== undefined) o.checksum = map.csum;
    } else if (strayM !== undefined) o.dsnIs64 = strayM;
    return o;
  });

const addAddr = fc
  .record({
    echo: fc.boolean(),
    addressId: u8,
    address: fc.oneof(fc.ipV4(), fc.ipV6()),
    port: fc.option(u16, { nil: undefined }),
    hmac: bytes(8),
  })
  .map(({ echo, addressId, address, port, hmac }): MptcpOption => {
    const o: MptcpOption = { subtype: 'ADD_ADDR', echo, addressId, address };
    if (port !== undefined) o.port = port;
    if (!echo) o.truncatedHmac = hmac;
    return o;
  });

const removeAddr = fc
  .array(u8, { minLength: 1, maxLength: 252 })
  .map((addressIds): MptcpOption => ({ subtype: 'REMOVE_ADDR', addressIds }));

const mpPrio = fc
  .record({ backup: fc.boolean(), addressId: fc.option(u8, { nil: undefined }) })
  .map(({ backup, addressId }): MptcpOption =>
    addressId === undefined ? { subtype: 'MP_PRIO', backup } : { subtype: 'MP_PRIO', backup, addressId },
  );

const mpFail = u64.map((dsn): MptcpOption => ({ subtype: 'MP_FAIL', dsn }));
const mpFastclose = bytes(8).map((receiverKey): MptcpOption => ({ subtype: 'MP_FASTCLOSE', receiverKey }));
const mpTcpRst = fc
  .record({ flags: fc.integer({ min: 0, max: 15 }), reason: u8 })
  .map(({ flags, reason }): MptcpOption => ({ subtype: 'MP_TCPRST', flags, reason }));
const newKey = fc
  .record({ keyId: fc.constantFrom(0 as const, 1 as const), hmac: bytes(8) })
  .map(({ keyId, hmac }): MptcpOption => ({ subtype: 'NEW_KEY', keyId, hmac }));

const SHAPES: [string, fc.Arbitrary<MptcpOption>][] = [
  ['MP_CAPABLE (keys)', mpCapableRfc],
  ['MP_CAPABLE (G-bit tokens)', mpCapableG],
  ['MP_JOIN', mpJoin],
  ['DSS', dss],
  ['ADD_ADDR', addAddr],
  ['REMOVE_ADDR', removeAddr],
  ['MP_PRIO', mpPrio],
  ['MP_FAIL', mpFail],
  ['MP_FASTCLOSE', mpFastclose],
  ['MP_TCPRST', mpTcpRst],
  ['NEW_KEY', newKey],
];
const anyOption = fc.oneof(...SHAPES.map(([, a]) => a));

/** What decode should return for an encoder input, written independently of the codec. */
function normalise(o: MptcpOption): MptcpOption {
  if (o.subtype === 'DSS') {
    const n: DssOption = { subtype: 'DSS', dataFin: o.dataFin };
    if (o.dataAck !== undefined) {
      n.dataAck = o.dataAck;
      n.dataAckIs64 = o.dataAckIs64 ?? false;
    }
    if (o.dsn !== undefined) {
      n.dsn = o.dsn;
      n.dsnIs64 = o.dsnIs64 ?? false;
      n.ssn = o.ssn;
      n.dataLevelLength = o.dataLevelLength;
      if (o.checksum !== undefined) n.checksum = o.checksum;
    }
    return n;
  }
  if (o.subtype === 'ADD_ADDR') return { ...o, address: canonicalIpAddress(o.address)! };
  return o;
}

// ---------------------------------------------------------------------------
// Byte-level generator of valid encodings (reserved bits zero), independent of the encoder

function dssLen(f: number): number {
  return 4 + (f & 1 ? (f & 2 ? 8 : 4) : 0) + (f & 4 ? (f & 8 ? 8 : 4) + 6 : 0);
}

const validBytes: fc.Arbitrary<Uint8Array> = fc
  .record({
    subtype: fc.integer({ min: 0, max: 9 }),
    r1: u8,
    r2: u8,
    pick: fc.nat(),
    fill: fc.uint8Array({ minLength: 40, maxLength: 40 }),
  })
  .map(({ subtype, r1, r2, pick, fill }) => {
    const choose = <T>(xs: T[]): T => xs[pick % xs.length];
    let len: number;
    let lo: number;
    let b3: number | undefined;
    switch (subtype) {
      case 0:
        lo = r1 & 0xf;
        b3 = r2;
        len = choose(r2 & 2 ? [4, 8, 12, 14, 16] : [4, 12, 20, 22, 24]);
        break;
      case 1:
        len = choose([12, 16, 24]);
        lo = len === 24 ? 0 : r1 & 1;
        if (len === 24) b3 = 0;
        break;
      case 2: {
        let f = r2 & 0x1f;
        if (!(f & 1)) f &= ~2;
        if (!(f & 4)) f &= ~8;
        lo = 0;
        b3 = f;
        len = dssLen(f) + (f & 4 && r1 & 1 ? 2 : 0);
        break;
      }
      case 3:
        lo = r1 & 1;
        len = choose([8, 10, 20, 22]) + (lo ? 0 : 8);
        break;
      case 4:
        lo = 0;
        len = 4 + (pick % 37); // up to 40 bytes, what fits a TCP header
        break;
      case 5:
        lo = r1 & 1;
        len = choose([3, 4]);
        break;
      case 6:
      case 7:
        lo = 0;
        b3 = 0;
        len = 12;
        break;
      case 8:
        lo = r1 & 0xf;
        len = 4;
        break;
      default:
        lo = r1 & 1;
        b3 = 0;
        len = 12;
        break;
    }
    const b = fill.slice(0, len);
    b[0] = 30;
    b[1] = len;
    b[2] = (subtype << 4) | lo;
    if (b3 !== undefined && len > 3) b[3] = b3;
    return b;
  });

// ---------------------------------------------------------------------------

function expectOnlyWireErrors(fn: () => unknown): unknown {
  try {
    return fn();
  } catch (e) {
    // (plain checks: `expect` is too slow for 20 000 iterations)
    if (!(e instanceof MptcpWireError)) throw new Error(`non-MptcpWireError thrown: ${String(e)}`);
    if (!Number.isInteger(e.offset) || e.offset < 0 || e.reason.length < 5) throw new Error(`bad error: ${e.message}`);
    return e;
  }
}

/** encode(o) must decode back to o (checked by comparing the re-encodings, cheaper than a deep equal). */
function sameDecoding(o: MptcpOption): void {
  const b = encodeOption(o);
  const again = encodeOption(decodeOption(b));
  if (again.length !== b.length || again.some((x, i) => x !== b[i])) throw new Error(`unstable decoding of ${b.join(',')}`);
}

describe('object round trip: decode(encode(x)) equals x, normalised', () => {
  for (const [name, arb] of SHAPES) {
    it(name, () => {
      fc.assert(
        fc.property(arb, (x) => {
          const b = encodeOption(x);
          expect(b[0]).toBe(30);
          expect(b[1]).toBe(b.length);
          const d = decodeOption(b);
          expect(d).toEqual(normalise(x));
          // and the normalised form is a fixed point
          expect(encodeOption(d)).toEqual(b);
        }),
        { numRuns: 300 },
      );
    });
  }

  it('lists of options', () => {
    fc.assert(
      fc.property(fc.array(anyOption, { maxLength: 8 }), (xs) => {
        const b = encodeOptions(xs);
        expect(decodeOptions(b)).toEqual(xs.map(normalise));
      }),
      { numRuns: 300 },
    );
  });

  it('encodeDssInto agrees with encodeOption at any offset', () => {
    const buf = new Uint8Array(64);
    fc.assert(
      fc.property(dss, fc.integer({ min: 0, max: 36 }), (x, off) => {
        const n = encodeDssInto(buf, off, x as DssOption);
        expect(buf.slice(off, off + n)).toEqual(encodeOption(x));
      }),
      { numRuns: 500 },
    );
  });
});

describe('byte round trip: encode(decode(b)) === b for valid encodings', () => {
  it('every subtype and length', () => {
    fc.assert(
      fc.property(validBytes, (b) => {
        expect(encodeOption(decodeOption(b))).toEqual(b);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('fuzzing: decode returns or throws MptcpWireError, nothing else', () => {
  it('20 000 random byte arrays', () => {
    let decoded = 0;
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 48 }),
        fc.boolean(),
        fc.boolean(),
        (b, forceKind, forceLen) => {
          // Steer half of the inputs past the kind/length checks.
          if (forceKind && b.length > 0) b[0] = 30;
          if (forceLen && b.length > 1) b[1] = b.length;
          const r = expectOnlyWireErrors(() => decodeOption(b));
          if (!(r instanceof MptcpWireError)) {
            decoded++;
            // whatever decodes re-encodes to something that decodes the same
            sameDecoding(r as MptcpOption);
          }
          expectOnlyWireErrors(() => decodeOptions(b));
          expectOnlyWireErrors(() => readOption(b, 0));
        },
      ),
      { numRuns: 20_000 },
    );
    expect(decoded).toBeGreaterThan(100);
  });

  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ kind: fc.constant('truncate' as const), pos: fc.nat() }),
    fc.record({ kind: fc.constant('length' as const), value: u8 }),
    fc.record({ kind: fc.constant('lengthDelta' as const), delta: fc.integer({ min: -3, max: 3 }) }),
    fc.record({ kind: fc.constant('set' as const), pos: fc.nat(), value: u8 }),
    fc.record({ kind: fc.constant('append' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
    fc.record({ kind: fc.constant('subtype' as const), value: fc.integer({ min: 0, max: 15 }) }),
  );

  it('20 000 mutations of valid encodings', () => {
    fc.assert(
      fc.property(validBytes, fc.array(mutation, { minLength: 1, maxLength: 3 }), (valid, muts) => {
        let b = valid.slice();
        for (const m of muts) {
          switch (m.kind) {
            case 'flip':
              if (b.length) b[m.pos % b.length] ^= 1 << m.bit;
              break;
            case 'truncate':
              b = b.slice(0, m.pos % (b.length + 1));
              break;
            case 'length':
              if (b.length > 1) b[1] = m.value;
              break;
            case 'lengthDelta':
              if (b.length > 1) b[1] = (b[1] + m.delta) & 0xff;
              break;
            case 'set':
              if (b.length) b[m.pos % b.length] = m.value;
              break;
            case 'append': {
              const c = new Uint8Array(b.length + m.extra.length);
              c.set(b);
              c.set(m.extra, b.length);
              b = c;
              break;
            }
            case 'subtype':
              if (b.length > 2) b[2] = (m.value << 4) | (b[2] & 0xf);
              break;
          }
        }
        const r = expectOnlyWireErrors(() => decodeOption(b));
        if (!(r instanceof MptcpWireError)) sameDecoding(r as MptcpOption);
        expectOnlyWireErrors(() => decodeOptions(b));
      }),
      { numRuns: 20_000 },
    );
  });

  it('never reads outside [offset, end): the surroundings do not change the result', () => {
    fc.assert(
      fc.property(
        fc.oneof(validBytes, fc.uint8Array({ maxLength: 40 })),
        fc.uint8Array({ maxLength: 8 }),
        fc.uint8Array({ maxLength: 8 }),
        (core, before, after) => {
          const alone = expectOnlyWireErrors(() => decodeOption(core));
          for (const fillByte of [0x00, 0xff, 0x1e]) {
            const big = new Uint8Array(before.length + core.length + after.length + 4).fill(fillByte);
            big.set(before, 0);
            big.set(core, before.length);
            big.set(after, before.length + core.length);
            const off = before.length;
            const inside = expectOnlyWireErrors(() => decodeOption(big, off, off + core.length));
            if (alone instanceof MptcpWireError) {
              expect(inside).toBeInstanceOf(MptcpWireError);
              expect((inside as MptcpWireError).offset).toBe(alone.offset + off);
              expect((inside as MptcpWireError).reason).toBe(alone.reason);
            } else expect(inside).toEqual(alone);
            // the same bytes through a subarray (non-zero byteOffset)
            const sub = big.subarray(off, off + core.length);
            const viaSub = expectOnlyWireErrors(() => decodeOption(sub));
            if (alone instanceof MptcpWireError) expect((viaSub as MptcpWireError).reason).toBe(alone.reason);
            else expect(viaSub).toEqual(alone);
          }
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('encoders throw only MptcpWireError on garbage input', () => {
    const garbage = fc.anything({ withBigInt: true, withTypedArray: true, withNullPrototype: true });
    const subtypes = ['MP_CAPABLE', 'MP_JOIN', 'DSS', 'ADD_ADDR', 'REMOVE_ADDR', 'MP_PRIO', 'MP_FAIL', 'MP_FASTCLOSE', 'MP_TCPRST', 'NEW_KEY'];
    fc.assert(
      fc.property(
        fc.constantFrom(...subtypes),
        fc.dictionary(
          fc.constantFrom('version', 'flags', 'senderKey', 'senderToken', 'stage', 'backup', 'addressId', 'dataFin', 'dataAck', 'dsn', 'ssn', 'dataLevelLength', 'echo', 'address', 'port', 'truncatedHmac', 'addressIds', 'hmac', 'keyId', 'reason', 'receiverKey', 'receiverToken', 'senderRandom', 'checksum', 'dataAckIs64', 'dsnIs64'),
          garbage,
        ),
        (subtype, fields) => {
          const r = expectOnlyWireErrors(() => encodeOption({ ...fields, subtype } as unknown as MptcpOption));
          if (r instanceof Uint8Array) expect(r[1]).toBe(r.length);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
