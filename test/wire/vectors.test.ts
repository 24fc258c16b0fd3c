/**
 * Hand-written byte vectors, one per subtype and per length of RFC 8684 §3
 * (plus the G-bit MP_CAPABLE form and NEW_KEY). The expected bytes are
 * written out from the RFC layouts, not produced by the encoder.
 */
import { describe, it, expect } from 'vitest';
import {
  decodeOption,
  decodeOptions,
  encodeOption,
  encodeOptionInto,
  encodeOptions,
  encodeDssInto,
  dssOptionLength,
  optionLength,
  readOption,
  parseTcpOptions,
  mptcpOptionsFromTcpOptions,
  MptcpWireError,
  type MptcpOption,
} from '../../src/wire/index.js';

/** "1e 04 01 81" -> bytes (spaces, newlines and | separators ignored). */
function hex(s: string): Uint8Array {
  const clean = s.replace(/[\s|]/g, '');
  if (clean.length % 2) throw new Error(`odd hex: ${s}`);
  return Uint8Array.from(clean.match(/../g) ?? [], (h) => parseInt(h, 16));
}

const K1 = hex('01 02 03 04 05 06 07 08');
const K2 = hex('11 12 13 14 15 16 17 18');
const H8 = hex('a1 a2 a3 a4 a5 a6 a7 a8');
const H20 = hex('b0 b1 b2 b3 b4 b5 b6 b7 b8 b9 ba bb bc bd be bf c0 c1 c2 c3');

interface Vector {
  name: string;
  bytes: string;
  option: MptcpOption;
}

const VECTORS: Vector[] = [
  // ---- MP_CAPABLE, RFC 8684 form --------------------------------------------------------
  {
    name: 'MP_CAPABLE SYN (4)',
    bytes: '1e 04 01 81',
    option: { subtype: 'MP_CAPABLE', version: 1, flags: 0x81 },
  },
  {
    name: 'MP_CAPABLE SYN/ACK, sender key (12)',
    bytes: '1e 0c 01 01 | 01 02 03 04 05 06 07 08',
    option: { subtype: 'MP_CAPABLE', version: 1, flags: 0x01, senderKey: K1 },
  },
  {
    name: 'MP_CAPABLE v0 SYN with key (12)',
    bytes: '1e 0c 00 81 | 01 02 03 04 05 06 07 08',
    option: { subtype: 'MP_CAPABLE', version: 0, flags: 0x81, senderKey: K1 },
  },
  {
    name: 'MP_CAPABLE ACK, both keys (20)',
    bytes: '1e 14 01 21 | 01 02 03 04 05 06 07 08 | 11 12 13 14 15 16 17 18',
    option: { subtype: 'MP_CAPABLE', version: 1, flags: 0x21, senderKey: K1, receiverKey: K2 },
  },
  {
    name: 'MP_CAPABLE ACK with data-level length (22)',
    bytes: '1e 16 01 01 | 01 02 03 04 05 06 07 08 | 11 12 13 14 15 16 17 18 | 05 dc',
    option: { subtype: 'MP_CAPABLE', version: 1, flags: 0x01, senderKey: K1, receiverKey: K2, dataLevelLength: 1500 },
  },
  {
    name: 'MP_CAPABLE ACK with data-level length and checksum (24)',
    bytes: '1e 18 01 81 | 01 02 03 04 05 06 07 08 | 11 12 13 14 15 16 17 18 | 05 dc | ab cd',
    option: {
      subtype: 'MP_CAPABLE',
      version: 1,
      flags: 0x81,
      senderKey: K1,
      receiverKey: K2,
      dataLevelLength: 1500,
      checksum: 0xabcd,
    },
  },
  // ---- MP_CAPABLE, G-bit form -----------------------------------------------------------
  {
    name: 'MP_CAPABLE G SYN (4)',
    bytes: '1e 04 01 03',
    option: { subtype: 'MP_CAPABLE', version: 1, flags: 0x03 },
  },
  {
    name: 'MP_CAPABLE G SYN/ACK, sender token (8)',
    bytes: '1e 08 01 03 | de ad be ef',
    option: { subtype: 'MP_CAPABLE', version: 1, flags: 0x03, senderToken: 0xdeadbeef },
  },
  {
    name: 'MP_CAPABLE G ACK, both tokens (12)',
    bytes: '1e 0c 01 83 | de ad be ef | 00 00 00 2a',
    option: { subtype: 'MP_CAPABLE', version: 1, flags: 0x83, senderToken: 0xdeadbeef, receiverToken: 42 },
  },
  {
    name: 'MP_CAPABLE G ACK with data-level length (14)',
    bytes: '1e 0e 01 03 | de ad be ef | 00 00 00 2a | 00 10',
    option: { subtype: 'MP_CAPABLE', version: 1, flags: 0x03, senderToken: 0xdeadbeef, receiverToken: 42, dataLevelLength: 16 },
  },
  {
    name: 'MP_CAPABLE G ACK with data-level length and checksum (16)',
    bytes: '1e 10 01 83 | de ad be ef | 00 00 00 2a | 00 10 | 12 34',
    option: {
      subtype: 'MP_CAPABLE',
      version: 1,
      flags: 0x83,
      senderToken: 0xdeadbeef,
      receiverToken: 42,
      dataLevelLength: 16,
      checksum: 0x1234,
    },
  },
  // ---- MP_JOIN --------------------------------------------------------------------------
  {
    name: 'MP_JOIN SYN, backup (12)',
    bytes: '1e 0c 11 05 | ca fe ba be | 01 02 03 04',
    option: { subtype: 'MP_JOIN', stage: 'syn', backup: true, addressId: 5, receiverToken: 0xcafebabe, senderRandom: 0x01020304 },
  },
  {
    name: 'MP_JOIN SYN, no backup (12)',
    bytes: '1e 0c 10 ff | 00 00 00 01 | ff ff ff ff',
    option: { subtype: 'MP_JOIN', stage: 'syn', backup: false, addressId: 255, receiverToken: 1, senderRandom: 0xffffffff },
  },
  {
    name: 'MP_JOIN SYN/ACK (16)',
    bytes: '1e 10 11 05 | a1 a2 a3 a4 a5 a6 a7 a8 | 0a 0b 0c 0d',
    option: { subtype: 'MP_JOIN', stage: 'synack', backup: true, addressId: 5, truncatedHmac: H8, senderRandom: 0x0a0b0c0d },
  },
  {
    name: 'MP_JOIN ACK (24)',
    bytes: '1e 18 10 00 | b0 b1 b2 b3 b4 b5 b6 b7 b8 b9 ba bb bc bd be bf c0 c1 c2 c3',
    option: { subtype: 'MP_JOIN', stage: 'ack', hmac: H20 },
  },
  // ---- DSS ------------------------------------------------------------------------------
  { name: 'DSS no flags (4)', bytes: '1e 04 20 00', option: { subtype: 'DSS', dataFin: false } },
  { name: 'DSS DATA_FIN alone (4)', bytes: '1e 04 20 10', option: { subtype: 'DSS', dataFin: true } },
  {
    name: 'DSS 32-bit data ACK (8)',
    bytes: '1e 08 20 01 | 00 00 01 00',
    option: { subtype: 'DSS', dataFin: false, dataAck: 256n, dataAckIs64: false },
  },
  {
    name: 'DSS 64-bit data ACK (12)',
    bytes: '1e 0c 20 03 | 01 02 03 04 05 06 07 08',
    option: { subtype: 'DSS', dataFin: false, dataAck: 0x0102030405060708n, dataAckIs64: true },
  },
  {
    name: 'DSS 32-bit mapping (14)',
    bytes: '1e 0e 20 04 | 11 22 33 44 | 00 00 00 01 | 05 a0',
    option: { subtype: 'DSS', dataFin: false, dsn: 0x11223344n, dsnIs64: false, ssn: 1, dataLevelLength: 1440 },
  },
  {
    name: 'DSS 32-bit mapping with checksum (16)',
    bytes: '1e 10 20 04 | 11 22 33 44 | 00 00 00 01 | 05 a0 | be ef',
    option: { subtype: 'DSS', dataFin: false, dsn: 0x11223344n, dsnIs64: false, ssn: 1, dataLevelLength: 1440, checksum: 0xbeef },
  },
  {
    name: 'DSS 64-bit mapping (18)',
    bytes: '1e 12 20 0c | ff ee dd cc bb aa 99 88 | 80 00 00 00 | 00 00',
    option: { subtype: 'DSS', dataFin: false, dsn: 0xffeeddccbbaa9988n, dsnIs64: true, ssn: 0x80000000, dataLevelLength: 0 },
  },
  {
    name: 'DSS 64-bit mapping with checksum (20)',
    bytes: '1e 14 20 0c | ff ee dd cc bb aa 99 88 | 80 00 00 00 | 00 00 | 00 01',
    option: { subtype: 'DSS', dataFin: false, dsn: 0xffeeddccbbaa9988n, dsnIs64: true, ssn: 0x80000000, dataLevelLength: 0, checksum: 1 },
  },
  {
    name: 'DSS 32-bit ACK + 32-bit mapping + DATA_FIN (18)',
    bytes: '1e 12 20 15 | 00 00 00 07 | 00 00 00 08 | 00 00 00 09 | 00 01',
    option: { subtype: 'DSS', dataFin: true, dataAck: 7n, dataAckIs64: false, dsn: 8n, dsnIs64: false, ssn: 9, dataLevelLength: 1 },
  },
  {
    name: 'DSS 32-bit ACK + 32-bit mapping + checksum (20)',
    bytes: '1e 14 20 05 | 00 00 00 07 | 00 00 00 08 | 00 00 00 09 | 00 01 | ff ff',
    option: { subtype: 'DSS', dataFin: false, dataAck: 7n, dataAckIs64: false, dsn: 8n, dsnIs64: false, ssn: 9, dataLevelLength: 1, checksum: 0xffff },
  },
  {
    name: 'DSS 64-bit ACK + 32-bit mapping (22)',
    bytes: '1e 16 20 07 | 00 00 00 01 00 00 00 02 | 00 00 00 08 | 00 00 00 09 | 00 01',
    option: { subtype: 'DSS', dataFin: false, dataAck: 0x100000002n, dataAckIs64: true, dsn: 8n, dsnIs64: false, ssn: 9, dataLevelLength: 1 },
  },
  {
    name: 'DSS 32-bit ACK + 64-bit mapping + checksum (24)',
    bytes: '1e 18 20 0d | 00 00 00 07 | 00 00 00 01 00 00 00 08 | 00 00 00 09 | 00 01 | 12 34',
    option: {
      subtype: 'DSS',
      dataFin: false,
      dataAck: 7n,
      dataAckIs64: false,
      dsn: 0x100000008n,
      dsnIs64: true,
      ssn: 9,
      dataLevelLength: 1,
      checksum: 0x1234,
    },
  },
  {
    name: 'DSS 64-bit ACK + 64-bit mapping (26)',
    bytes: '1e 1a 20 0f | ff ff ff ff ff ff ff ff | 00 00 00 00 00 00 00 00 | ff ff ff ff | ff ff',
    option: {
      subtype: 'DSS',
      dataFin: false,
      dataAck: 0xffffffffffffffffn,
      dataAckIs64: true,
      dsn: 0n,
      dsnIs64: true,
      ssn: 0xffffffff,
      dataLevelLength: 0xffff,
    },
  },
  {
    name: 'DSS everything: 64-bit ACK + 64-bit mapping + checksum + DATA_FIN (28)',
    bytes: '1e 1c 20 1f | 00 00 00 00 00 00 00 01 | 00 00 00 00 00 00 00 02 | 00 00 00 03 | 00 04 | 00 05',
    option: {
      subtype: 'DSS',
      dataFin: true,
      dataAck: 1n,
      dataAckIs64: true,
      dsn: 2n,
      dsnIs64: true,
      ssn: 3,
      dataLevelLength: 4,
      checksum: 5,
    },
  },
  {
    name: 'DSS DATA_FIN with 32-bit ACK, no mapping (8)',
    bytes: '1e 08 20 11 | 00 00 00 63',
    option: { subtype: 'DSS', dataFin: true, dataAck: 99n, dataAckIs64: false },
  },
  // ---- ADD_ADDR -------------------------------------------------------------------------
  {
    name: 'ADD_ADDR echo IPv4 (8)',
    bytes: '1e 08 31 01 | c0 00 02 01',
    option: { subtype: 'ADD_ADDR', echo: true, addressId: 1, address: '192.0.2.1' },
  },
  {
    name: 'ADD_ADDR echo IPv4 + port (10)',
    bytes: '1e 0a 31 01 | c0 00 02 01 | 01 bb',
    option: { subtype: 'ADD_ADDR', echo: true, addressId: 1, address: '192.0.2.1', port: 443 },
  },
  {
    name: 'ADD_ADDR echo IPv6 (20)',
    bytes: '1e 14 31 02 | 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01',
    option: { subtype: 'ADD_ADDR', echo: true, addressId: 2, address: '2001:db8::1' },
  },
  {
    name: 'ADD_ADDR echo IPv6 + port (22)',
    bytes: '1e 16 31 02 | 20 01 0d b8 00 00 00 01 00 00 00 00 00 00 00 01 | 00 00',
    option: { subtype: 'ADD_ADDR', echo: true, addressId: 2, address: '2001:db8:0:1::1', port: 0 },
  },
  {
    name: 'ADD_ADDR IPv4 with HMAC (16)',
    bytes: '1e 10 30 09 | 0a 00 00 01 | a1 a2 a3 a4 a5 a6 a7 a8',
    option: { subtype: 'ADD_ADDR', echo: false, addressId: 9, address: '10.0.0.1', truncatedHmac: H8 },
  },
  {
    name: 'ADD_ADDR IPv4 + port with HMAC (18)',
    bytes: '1e 12 30 09 | 0a 00 00 01 | ff ff | a1 a2 a3 a4 a5 a6 a7 a8',
    option: { subtype: 'ADD_ADDR', echo: false, addressId: 9, address: '10.0.0.1', port: 65535, truncatedHmac: H8 },
  },
  {
    name: 'ADD_ADDR IPv6 with HMAC (28)',
    bytes: '1e 1c 30 00 | fe 80 00 00 00 00 00 00 02 00 5e ff fe 00 53 af | a1 a2 a3 a4 a5 a6 a7 a8',
    option: { subtype: 'ADD_ADDR', echo: false, addressId: 0, address: 'fe80::200:5eff:fe00:53af', truncatedHmac: H8 },
  },
  {
    name: 'ADD_ADDR IPv4-mapped IPv6 + port with HMAC (30)',
    bytes: '1e 1e 30 ff | 00 00 00 00 00 00 00 00 00 00 ff ff c0 00 02 80 | 1f 90 | a1 a2 a3 a4 a5 a6 a7 a8',
    option: { subtype: 'ADD_ADDR', echo: false, addressId: 255, address: '::ffff:192.0.2.128', port: 8080, truncatedHmac: H8 },
  },
  // ---- REMOVE_ADDR ----------------------------------------------------------------------
  { name: 'REMOVE_ADDR one id (4)', bytes: '1e 04 40 07', option: { subtype: 'REMOVE_ADDR', addressIds: [7] } },
  {
    name: 'REMOVE_ADDR three ids (6)',
    bytes: '1e 06 40 00 01 ff',
    option: { subtype: 'REMOVE_ADDR', addressIds: [0, 1, 255] },
  },
  // ---- MP_PRIO --------------------------------------------------------------------------
  { name: 'MP_PRIO backup (3)', bytes: '1e 03 51', option: { subtype: 'MP_PRIO', backup: true } },
  { name: 'MP_PRIO regular (3)', bytes: '1e 03 50', option: { subtype: 'MP_PRIO', backup: false } },
  {
    name: 'MP_PRIO RFC 6824 with address id (4)',
    bytes: '1e 04 51 09',
    option: { subtype: 'MP_PRIO', backup: true, addressId: 9 },
  },
  // ---- MP_FAIL / MP_FASTCLOSE / MP_TCPRST / NEW_KEY -------------------------------------
  {
    name: 'MP_FAIL (12)',
    bytes: '1e 0c 60 00 | 01 02 03 04 05 06 07 08',
    option: { subtype: 'MP_FAIL', dsn: 0x0102030405060708n },
  },
  {
    name: 'MP_FASTCLOSE (12)',
    bytes: '1e 0c 70 00 | 11 12 13 14 15 16 17 18',
    option: { subtype: 'MP_FASTCLOSE', receiverKey: K2 },
  },
  {
    name: 'MP_TCPRST transient, middlebox interference (4)',
    bytes: '1e 04 81 06',
    option: { subtype: 'MP_TCPRST', flags: 0x1, reason: 6 },
  },
  { name: 'MP_TCPRST all flags (4)', bytes: '1e 04 8f ff', option: { subtype: 'MP_TCPRST', flags: 0xf, reason: 0xff } },
  {
    name: 'NEW_KEY K=1 (12)',
    bytes: '1e 0c 91 00 | a1 a2 a3 a4 a5 a6 a7 a8',
    option: { subtype: 'NEW_KEY', keyId: 1, hmac: H8 },
  },
  {
    name: 'NEW_KEY K=0 (12)',
    bytes: '1e 0c 90 00 | 01 02 03 04 05 06 07 08',
    option: { subtype: 'NEW_KEY', keyId: 0, hmac: K1 },
  },
];

describe('hand-written vectors', () => {
  it('every subtype is covered', () => {
    const subtypes = new Set(VECTORS.map((v) => v.option.subtype));
    expect(subtypes.size).toBe(10);
  });

  for (const v of VECTORS) {
    describe(v.name, () => {
      const bytes = hex(v.bytes);
      it('length byte matches the vector', () => {
        expect(bytes[1]).toBe(bytes.length);
      });
      it('encodes to the vector', () => {
        expect(encodeOption(v.option)).toEqual(bytes);
        expect(optionLength(v.option)).toBe(bytes.length);
      });
      it('decodes from the vector', () => {
        expect(decodeOption(bytes)).toEqual(v.option);
      });
      it('decodes at an offset inside a larger buffer', () => {
        const big = new Uint8Array(bytes.length + 10).fill(0xee);
        big.set(bytes, 5);
        expect(decodeOption(big, 5, 5 + bytes.length)).toEqual(v.option);
        expect(readOption(big, 5)).toEqual({ option: v.option, next: 5 + bytes.length });
        // and from a subarray with a non-zero byteOffset
        expect(decodeOption(big.subarray(5, 5 + bytes.length))).toEqual(v.option);
      });
      it('encodeOptionInto writes the vector at an offset', () => {
        const buf = new Uint8Array(bytes.length + 7).fill(0x55);
        expect(encodeOptionInto(v.option, buf, 3)).toBe(bytes.length);
        expect(buf.subarray(3, 3 + bytes.length)).toEqual(bytes);
        expect(buf[2]).toBe(0x55);
        expect(buf[3 + bytes.length]).toBe(0x55);
      });
    });
  }

  it('decoded keys and HMACs are copies, not views of the input', () => {
    const bytes = hex('1e 0c 70 00 | 11 12 13 14 15 16 17 18');
    const o = decodeOption(bytes) as { receiverKey: Uint8Array };
    bytes[4] = 0;
    expect(o.receiverKey[0]).toBe(0x11);
  });

  it('decoding a Node Buffer yields plain Uint8Array copies', () => {
    for (const v of VECTORS) {
      const buf = Buffer.from(hex(v.bytes));
      const d = decodeOption(buf);
      expect(d).toEqual(v.option);
      for (const val of Object.values(d)) {
        if (val instanceof Uint8Array) {
          expect(Buffer.isBuffer(val)).toBe(false);
          expect(val.buffer).not.toBe(buf.buffer);
        }
      }
    }
  });
});

describe('normalisation of reserved and meaningless bits', () => {
  const cases: [string, string, string][] = [
    // [input, canonical re-encoding, what]
    ['1e 18 1f ff | b0 b1 b2 b3 b4 b5 b6 b7 b8 b9 ba bb bc bd be bf c0 c1 c2 c3', '1e 18 10 00 | b0 b1 b2 b3 b4 b5 b6 b7 b8 b9 ba bb bc bd be bf c0 c1 c2 c3', 'MP_JOIN ACK reserved'],
    ['1e 0c 1f 05 | ca fe ba be | 01 02 03 04', '1e 0c 11 05 | ca fe ba be | 01 02 03 04', 'MP_JOIN SYN reserved bits beside B'],
    ['1e 04 2f f0', '1e 04 20 10', 'DSS reserved nibble and flag bits 5..7'],
    ['1e 04 20 02', '1e 04 20 00', 'DSS a without A'],
    ['1e 04 20 0a', '1e 04 20 00', 'DSS a and m without A and M'],
    ['1e 0c 20 0b | 01 02 03 04 05 06 07 08', '1e 0c 20 03 | 01 02 03 04 05 06 07 08', 'DSS m without M'],
    ['1e 08 3f 01 | c0 00 02 01', '1e 08 31 01 | c0 00 02 01', 'ADD_ADDR reserved bits beside E'],
    ['1e 04 4f 07', '1e 04 40 07', 'REMOVE_ADDR reserved nibble'],
    ['1e 03 5f', '1e 03 51', 'MP_PRIO reserved bits'],
    ['1e 0c 6f ff | 01 02 03 04 05 06 07 08', '1e 0c 60 00 | 01 02 03 04 05 06 07 08', 'MP_FAIL reserved'],
    ['1e 0c 7f ff | 01 02 03 04 05 06 07 08', '1e 0c 70 00 | 01 02 03 04 05 06 07 08', 'MP_FASTCLOSE reserved'],
    ['1e 0c 9f ff | 01 02 03 04 05 06 07 08', '1e 0c 91 00 | 01 02 03 04 05 06 07 08', 'NEW_KEY reserved'],
  ];
  for (const [input, canon, what] of cases) {
    it(what, () => {
      const d = decodeOption(hex(input));
      expect(encodeOption(d)).toEqual(hex(canon));
      expect(decodeOption(hex(canon))).toEqual(d);
    });
  }

  it('encode writes a/m as zero when the field is absent', () => {
    expect(encodeOption({ subtype: 'DSS', dataFin: false, dataAckIs64: true, dsnIs64: true })).toEqual(hex('1e 04 20 00'));
  });
  it('encode defaults dataAckIs64/dsnIs64 to false', () => {
    expect(encodeOption({ subtype: 'DSS', dataFin: false, dataAck: 1n, dsn: 2n, ssn: 3, dataLevelLength: 4 })).toEqual(
      hex('1e 12 20 05 | 00 00 00 01 | 00 00 00 02 | 00 00 00 03 | 00 04'),
    );
  });
  it('ADD_ADDR address text is canonicalised', () => {
    const o = decodeOption(
      encodeOption({ subtype: 'ADD_ADDR', echo: true, addressId: 1, address: '2001:DB8:0:0:0:0:0:0001' }),
    );
    expect(o).toEqual({ subtype: 'ADD_ADDR', echo: true, addressId: 1, address: '2001:db8::1' });
  });
});

describe('decode errors', () => {
  const bad: [string, string, number, RegExp][] = [
    // [bytes, what, expected error offset, reason pattern]
    ['', 'empty buffer', 0, /truncated/],
    ['1e', 'kind only', 1, /length byte is missing/],
    ['02 04 05 b4', 'MSS option', 0, /kind 2 is not MPTCP/],
    ['1e 02 00', 'length 2', 1, /below the MPTCP minimum/],
    ['1e 00', 'length 0', 1, /below the MPTCP minimum/],
    ['1e 05 00 81', 'length larger than buffer', 1, /truncated/],
    ['1e 04 01 81 00', 'trailing byte', 1, /does not match/],
    ['1e 03 a0', 'subtype 0xa', 2, /unknown MPTCP option subtype 0xa/],
    ['1e 04 f0 00', 'MP_EXPERIMENTAL', 2, /MP_EXPERIMENTAL/],
    ['1e 03 00', 'MP_CAPABLE without flags', 1, /MP_CAPABLE length 3/],
    ['1e 08 01 81 00 00 00 00', 'MP_CAPABLE RFC form length 8', 1, /RFC 8684 \(key\) form/],
    ['1e 10 01 81 00 00 00 00 00 00 00 00 00 00 00 00', 'MP_CAPABLE RFC form length 16', 1, /RFC 8684/],
    ['1e 14 01 03 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00', 'MP_CAPABLE G form length 20', 1, /G-bit/],
    ['1e 0b 10 00 00 00 00 00 00 00 00', 'MP_JOIN length 11', 1, /MP_JOIN length 11/],
    ['1e 14 10 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00', 'MP_JOIN length 20', 1, /MP_JOIN/],
    ['1e 03 20', 'DSS without flags byte', 1, /DSS length 3/],
    ['1e 08 20 00 00 00 00 00', 'DSS no flags but 8 bytes', 1, /expected 4 \(no mapping/],
    ['1e 06 20 01 00 00', 'DSS A with 2 bytes', 1, /DSS length 6/],
    ['1e 0a 20 01 00 00 00 00 00 00', 'DSS A + checksum-sized tail without M', 1, /no mapping, so no checksum/],
    ['1e 10 20 0c 00 00 00 00 00 00 00 00 00 00 00 00', 'DSS M+m with 16 bytes', 1, /expected 18 or 20/],
    ['1e 09 31 01 c0 00 02 01 00', 'ADD_ADDR echo length 9', 1, /address family/],
    ['1e 08 30 01 c0 00 02 01', 'ADD_ADDR E=0 length 8 (no HMAC)', 1, /E=0.*address family/],
    ['1e 14 30 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00', 'ADD_ADDR E=0 length 20', 1, /address family/],
    ['1e 08 34 01 c0 00 02 01', 'RFC 6824 ADD_ADDR IPVer=4', 1, /address family/],
    ['1e 03 40', 'REMOVE_ADDR with no ids', 1, /no address id/],
    ['1e 05 50 01 02', 'MP_PRIO length 5', 1, /MP_PRIO length 5/],
    ['1e 04 60 00', 'MP_FAIL length 4', 1, /MP_FAIL length 4/],
    ['1e 0d 70 00 00 00 00 00 00 00 00 00 00', 'MP_FASTCLOSE length 13', 1, /MP_FASTCLOSE/],
    ['1e 03 80', 'MP_TCPRST length 3', 1, /MP_TCPRST/],
    ['1e 04 90 00', 'NEW_KEY length 4', 1, /NEW_KEY/],
  ];
  for (const [bytes, what, offset, reason] of bad) {
    it(what, () => {
      let err: unknown;
      try {
        decodeOption(hex(bytes));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(MptcpWireError);
      const w = err as MptcpWireError;
      expect(w.offset).toBe(offset);
      expect(w.reason).toMatch(reason);
      expect(w.code).toBe('ERR_MPTCP_WIRE');
      expect(w.message).toContain(w.reason);
    });
  }

  it('error offsets are relative to the whole buffer', () => {
    const buf = hex('00 00 00 1e 03 a0');
    expect(() => decodeOption(buf, 3)).toThrow(MptcpWireError);
    try {
      decodeOption(buf, 3);
    } catch (e) {
      expect((e as MptcpWireError).offset).toBe(5);
    }
  });

  it('bad arguments are MptcpWireErrors too', () => {
    expect(() => decodeOption(null as unknown as Uint8Array)).toThrow(MptcpWireError);
    expect(() => decodeOption([30, 3, 0x50] as unknown as Uint8Array)).toThrow(MptcpWireError);
    expect(() => decodeOption(hex('1e 03 50'), -1)).toThrow(MptcpWireError);
    expect(() => decodeOption(hex('1e 03 50'), 0.5)).toThrow(MptcpWireError);
    expect(() => decodeOption(hex('1e 03 50'), 0, 4)).toThrow(MptcpWireError);
    expect(() => decodeOption(hex('1e 03 50'), 2, 1)).toThrow(MptcpWireError);
    expect(() => decodeOptions(undefined as unknown as Uint8Array)).toThrow(MptcpWireError);
    expect(() => readOption(hex('1e 03 50'), 9)).toThrow(MptcpWireError);
  });
});

describe('encode validation', () => {
  const invalid: [string, unknown][] = [
    ['not an object', 42],
    ['null', null],
    ['unknown subtype', { subtype: 'MP_EXPERIMENTAL' }],
    ['MP_CAPABLE version 16', { subtype: 'MP_CAPABLE', version: 16, flags: 1 }],
    ['MP_CAPABLE flags 256', { subtype: 'MP_CAPABLE', version: 1, flags: 256 }],
    ['MP_CAPABLE flags -1', { subtype: 'MP_CAPABLE', version: 1, flags: -1 }],
    ['MP_CAPABLE 7-byte key', { subtype: 'MP_CAPABLE', version: 1, flags: 1, senderKey: new Uint8Array(7) }],
    ['MP_CAPABLE key as array', { subtype: 'MP_CAPABLE', version: 1, flags: 1, senderKey: [1, 2, 3, 4, 5, 6, 7, 8] }],
    ['MP_CAPABLE receiver key alone', { subtype: 'MP_CAPABLE', version: 1, flags: 1, receiverKey: K1 }],
    ['MP_CAPABLE dll with one key', { subtype: 'MP_CAPABLE', version: 1, flags: 1, senderKey: K1, dataLevelLength: 1 }],
    ['MP_CAPABLE checksum without dll', { subtype: 'MP_CAPABLE', version: 1, flags: 1, senderKey: K1, receiverKey: K2, checksum: 1 }],
    ['MP_CAPABLE tokens without G', { subtype: 'MP_CAPABLE', version: 1, flags: 1, senderToken: 1 }],
    ['MP_CAPABLE keys with G', { subtype: 'MP_CAPABLE', version: 1, flags: 3, senderKey: K1 }],
    ['MP_CAPABLE G receiver token alone', { subtype: 'MP_CAPABLE', version: 1, flags: 3, receiverToken: 1 }],
    ['MP_CAPABLE G token 2^32', { subtype: 'MP_CAPABLE', version: 1, flags: 3, senderToken: 2 ** 32 }],
    ['MP_CAPABLE G token 1.5', { subtype: 'MP_CAPABLE', version: 1, flags: 3, senderToken: 1.5 }],
    ['MP_CAPABLE dll 65536', { subtype: 'MP_CAPABLE', version: 1, flags: 3, senderToken: 1, receiverToken: 2, dataLevelLength: 65536 }],
    ['MP_JOIN bad stage', { subtype: 'MP_JOIN', stage: 'fin' }],
    ['MP_JOIN address id 256', { subtype: 'MP_JOIN', stage: 'syn', backup: false, addressId: 256, receiverToken: 1, senderRandom: 1 }],
    ['MP_JOIN backup not boolean', { subtype: 'MP_JOIN', stage: 'syn', backup: 1, addressId: 1, receiverToken: 1, senderRandom: 1 }],
    ['MP_JOIN negative token', { subtype: 'MP_JOIN', stage: 'syn', backup: false, addressId: 1, receiverToken: -1, senderRandom: 1 }],
    ['MP_JOIN 4-byte truncated HMAC', { subtype: 'MP_JOIN', stage: 'synack', backup: false, addressId: 1, truncatedHmac: new Uint8Array(4), senderRandom: 1 }],
    ['MP_JOIN 32-byte HMAC', { subtype: 'MP_JOIN', stage: 'ack', hmac: new Uint8Array(32) }],
    ['DSS dataFin missing', { subtype: 'DSS' }],
    ['DSS 32-bit ack too big', { subtype: 'DSS', dataFin: false, dataAck: 2n ** 32n }],
    ['DSS 64-bit ack too big', { subtype: 'DSS', dataFin: false, dataAck: 2n ** 64n, dataAckIs64: true }],
    ['DSS negative ack', { subtype: 'DSS', dataFin: false, dataAck: -1n }],
    ['DSS ack as number', { subtype: 'DSS', dataFin: false, dataAck: 5 }],
    ['DSS partial mapping', { subtype: 'DSS', dataFin: false, dsn: 1n, ssn: 1 }],
    ['DSS ssn without dsn', { subtype: 'DSS', dataFin: false, ssn: 1, dataLevelLength: 1 }],
    ['DSS checksum without mapping', { subtype: 'DSS', dataFin: false, dataAck: 1n, checksum: 1 }],
    ['DSS checksum 65536', { subtype: 'DSS', dataFin: false, dsn: 1n, ssn: 1, dataLevelLength: 1, checksum: 65536 }],
    ['DSS ssn 2^32', { subtype: 'DSS', dataFin: false, dsn: 1n, ssn: 2 ** 32, dataLevelLength: 1 }],
    ['DSS dsnIs64 not boolean', { subtype: 'DSS', dataFin: false, dsn: 1n, dsnIs64: 'yes', ssn: 1, dataLevelLength: 1 }],
    ['ADD_ADDR bad address', { subtype: 'ADD_ADDR', echo: true, addressId: 1, address: '1.2.3' }],
    ['ADD_ADDR leading zeros', { subtype: 'ADD_ADDR', echo: true, addressId: 1, address: '01.2.3.4' }],
    ['ADD_ADDR zone id', { subtype: 'ADD_ADDR', echo: true, addressId: 1, address: 'fe80::1%eth0' }],
    ['ADD_ADDR hostname', { subtype: 'ADD_ADDR', echo: true, addressId: 1, address: 'localhost' }],
    ['ADD_ADDR address not a string', { subtype: 'ADD_ADDR', echo: true, addressId: 1, address: 0x7f000001 }],
    ['ADD_ADDR echo with HMAC', { subtype: 'ADD_ADDR', echo: true, addressId: 1, address: '1.2.3.4', truncatedHmac: H8 }],
    ['ADD_ADDR no echo without HMAC', { subtype: 'ADD_ADDR', echo: false, addressId: 1, address: '1.2.3.4' }],
    ['ADD_ADDR port 65536', { subtype: 'ADD_ADDR', echo: true, addressId: 1, address: '1.2.3.4', port: 65536 }],
    ['ADD_ADDR 9-byte HMAC', { subtype: 'ADD_ADDR', echo: false, addressId: 1, address: '1.2.3.4', truncatedHmac: new Uint8Array(9) }],
    ['REMOVE_ADDR empty', { subtype: 'REMOVE_ADDR', addressIds: [] }],
    ['REMOVE_ADDR id 256', { subtype: 'REMOVE_ADDR', addressIds: [1, 256] }],
    ['REMOVE_ADDR 253 ids', { subtype: 'REMOVE_ADDR', addressIds: new Array(253).fill(1) }],
    ['REMOVE_ADDR not an array', { subtype: 'REMOVE_ADDR', addressIds: new Uint8Array([1]) }],
    ['MP_PRIO address id -1', { subtype: 'MP_PRIO', backup: true, addressId: -1 }],
    ['MP_FAIL dsn as number', { subtype: 'MP_FAIL', dsn: 1 }],
    ['MP_FAIL dsn 2^64', { subtype: 'MP_FAIL', dsn: 2n ** 64n }],
    ['MP_FASTCLOSE 16-byte key', { subtype: 'MP_FASTCLOSE', receiverKey: new Uint8Array(16) }],
    ['MP_TCPRST flags 16', { subtype: 'MP_TCPRST', flags: 16, reason: 0 }],
    ['MP_TCPRST reason 256', { subtype: 'MP_TCPRST', flags: 0, reason: 256 }],
    ['NEW_KEY keyId 2', { subtype: 'NEW_KEY', keyId: 2, hmac: H8 }],
    ['NEW_KEY 20-byte HMAC', { subtype: 'NEW_KEY', keyId: 0, hmac: H20 }],
  ];
  for (const [what, opt] of invalid) {
    it(what, () => {
      expect(() => encodeOption(opt as MptcpOption)).toThrow(MptcpWireError);
      expect(() => encodeOptions([opt as MptcpOption])).toThrow(MptcpWireError);
    });
  }

  it('REMOVE_ADDR with 252 ids is the largest option', () => {
    const b = encodeOption({ subtype: 'REMOVE_ADDR', addressIds: new Array(252).fill(3) });
    expect(b.length).toBe(255);
    expect(b[1]).toBe(255);
  });

  it('encodeOptionInto writes nothing when the option does not fit', () => {
    const buf = new Uint8Array(10).fill(0x55);
    expect(() => encodeOptionInto({ subtype: 'MP_FAIL', dsn: 1n }, buf, 0)).toThrow(MptcpWireError);
    expect(() =>
      encodeOptionInto({ subtype: 'DSS', dataFin: false, dsn: 1n, ssn: 1, dataLevelLength: 1 }, buf, 0),
    ).toThrow(MptcpWireError);
    expect(() => encodeOptionInto({ subtype: 'MP_PRIO', backup: true }, buf, 8)).toThrow(MptcpWireError);
    expect(buf.every((x) => x === 0x55)).toBe(true);
  });
});

describe('DSS fast path', () => {
  it('encodeDssInto writes the same bytes as encodeOption and returns the length', () => {
    const opt: MptcpOption = {
      subtype: 'DSS',
      dataFin: false,
      dataAck: 0x0102030405060708n,
      dataAckIs64: true,
      dsn: 0x1122334455667788n,
      dsnIs64: true,
      ssn: 77,
      dataLevelLength: 1400,
      checksum: 0xfeed,
    };
    const buf = new Uint8Array(64);
    const n = encodeDssInto(buf, 13, opt);
    expect(n).toBe(28);
    expect(dssOptionLength(opt)).toBe(28);
    expect(buf.subarray(13, 13 + n)).toEqual(encodeOption(opt));
    // also into a view with a byteOffset over a shared ArrayBuffer
    const view = new Uint8Array(new ArrayBuffer(100), 33, 40);
    expect(encodeDssInto(view, 1, opt)).toBe(28);
    expect(view.subarray(1, 29)).toEqual(encodeOption(opt));
  });
});

describe('option lists and TCP options areas', () => {
  it('encodeOptions / decodeOptions concatenate', () => {
    const opts: MptcpOption[] = [
      { subtype: 'DSS', dataFin: false, dataAck: 1n, dataAckIs64: false },
      { subtype: 'MP_PRIO', backup: true },
      { subtype: 'REMOVE_ADDR', addressIds: [4, 5] },
    ];
    const bytes = encodeOptions(opts);
    expect(bytes).toEqual(hex('1e 08 20 01 00 00 00 01 | 1e 03 51 | 1e 05 40 04 05'));
    expect(decodeOptions(bytes)).toEqual(opts);
    expect(decodeOptions(new Uint8Array(0))).toEqual([]);
    expect(encodeOptions([])).toEqual(new Uint8Array(0));
  });

  it('decodeOptions reports the offset of the bad option', () => {
    try {
      decodeOptions(hex('1e 03 51 | 1e 05 40 04'));
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(MptcpWireError);
      expect((e as MptcpWireError).offset).toBe(4);
    }
    expect(() => decodeOptions(hex('1e 03 51 01'))).toThrow(MptcpWireError);
  });

  it('parseTcpOptions walks NOP / EOL / kind-length options', () => {
    // MSS 1460, NOP, NOP, SACK-permitted, MP_CAPABLE SYN, EOL, garbage
    const area = hex('02 04 05 b4 | 01 01 | 04 02 | 1e 04 01 81 | 00 | ff ff ff');
    const found = parseTcpOptions(area);
    expect(found.map((o) => [o.kind, o.offset, o.raw.length])).toEqual([
      [2, 0, 4],
      [4, 6, 2],
      [30, 8, 4],
    ]);
    expect(found[0].data).toEqual(hex('05 b4'));
    expect(mptcpOptionsFromTcpOptions(area)).toEqual([{ subtype: 'MP_CAPABLE', version: 1, flags: 0x81 }]);
  });

  it('parseTcpOptions rejects bad lengths', () => {
    expect(() => parseTcpOptions(hex('02 04 05'))).toThrow(MptcpWireError);
    expect(() => parseTcpOptions(hex('01 02'))).toThrow(MptcpWireError);
    expect(() => parseTcpOptions(hex('08 01 00 00'))).toThrow(MptcpWireError);
    expect(() => mptcpOptionsFromTcpOptions(hex('01 1e 02 00'))).toThrow(MptcpWireError);
    try {
      mptcpOptionsFromTcpOptions(hex('01 01 1e 03 a0 00'));
      expect.unreachable();
    } catch (e) {
      expect((e as MptcpWireError).offset).toBe(4);
    }
  });
});
