/**
 * The MPTCP option codec (TCP option kind 30), exact to the byte:
 * RFC 8684 §3, the G-bit (explicit token) form of MP_CAPABLE, and NEW_KEY
 * (draft-baerts-tcpm-mptcpext).
 *
 * Encoders validate their input and throw `MptcpWireError` (offset 0) for
 * shapes that cannot be put on the wire. Decoders throw `MptcpWireError`
 * with the offset of the offending byte for anything malformed, and never
 * any other exception; they never read outside the range they are given.
 *
 * Reserved bits are written as zero and ignored when decoding, so
 * `encode(decode(b))` reproduces `b` byte for byte for every `b` whose
 * reserved bits are zero (and the DSS `a`/`m` bits are only set together
 * with `A`/`M`).
 *
 * Decoded values are normalised:
 *  - keys, HMACs and truncated HMACs are fresh copies (not views of the input);
 *  - optional fields are present only when they are on the wire;
 *  - DSS: `dataAckIs64` is present (true/false) exactly when `dataAck` is,
 *    `dsnIs64` exactly when `dsn` is;
 *  - ADD_ADDR addresses are canonical text (see ./address.ts).
 */
import { MptcpWireError } from './errors.js';
import { formatIpv4, formatIpv6, parseIpv4, parseIpv6 } from './address.js';
import {
  MPTCP_OPTION_KIND,
  Subtype,
  type AddAddrOption,
  type DssOption,
  type MpCapableOption,
  type MptcpOption,
  type MpTcpRstOption,
} from './types.js';

// ---------------------------------------------------------------------------
// Constants

/** DSS flag bits (low 5 bits of the fourth byte). */
export const DssFlag = {
  /** A: data ACK present. */
  DATA_ACK: 0x01,
  /** a: data ACK is 8 octets. */
  DATA_ACK_64: 0x02,
  /** M: DSN, SSN, data-level length (and maybe checksum) present. */
  MAPPING: 0x04,
  /** m: DSN is 8 octets. */
  DSN_64: 0x08,
  /** F: DATA_FIN. */
  DATA_FIN: 0x10,
} as const;

const U64_MAX = 0xffff_ffff_ffff_ffffn;
const U32_MAX_BIG = 0xffff_ffffn;

/** The largest MPTCP option (the TCP option length byte is 8 bits). */
export const MAX_OPTION_LENGTH = 255;

const SUBTYPE_NAMES: readonly string[] = [
  'MP_CAPABLE',
  'MP_JOIN',
  'DSS',
  'ADD_ADDR',
  'REMOVE_ADDR',
  'MP_PRIO',
  'MP_FAIL',
  'MP_FASTCLOSE',
  'MP_TCPRST',
  'NEW_KEY',
];

// ---------------------------------------------------------------------------
// Byte helpers (allocation-free). 64-bit values go through a one-element
// BigUint64Array: several times faster than DataView get/setBigUint64 on an
// arbitrary buffer (no per-call DataView, no bounds-check deopts).

const big64 = new BigUint64Array(1);
const big64Bytes = new Uint8Array(big64.buffer);
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * A fresh plain Uint8Array copy of b[start..end). (Not `b.slice(start, end)`: on a
 * Node Buffer that returns a view sharing memory, and a Buffer at that.)
 */
function copyBytes(b: Uint8Array, start: number, end: number): Uint8Array {
  const out = new Uint8Array(end - start);
  for (let i = start; i < end; i++) out[i - start] = b[i];
  return out;
}

function u16(b: Uint8Array, o: number): number {
  return (b[o] << 8) | b[o + 1];
}

function u32(b: Uint8Array, o: number): number {
  return b[o] * 0x1000000 + ((b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]);
}

function u64(b: Uint8Array, o: number): bigint {
  const s = big64Bytes;
  if (HOST_LE) {
    s[7] = b[o];
    s[6] = b[o + 1];
    s[5] = b[o + 2];
    s[4] = b[o + 3];
    s[3] = b[o + 4];
    s[2] = b[o + 5];
    s[1] = b[o + 6];
    s[0] = b[o + 7];
  } else {
    for (let i = 0; i < 8; i++) s[i] = b[o + i];
  }
  return big64[0];
}

function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 8;
  b[o + 1] = v;
}

function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

/** Reads a 32-bit big-endian value as a bigint (faster than BigInt(number)). */
function u32big(b: Uint8Array, o: number): bigint {
  const s = big64Bytes;
  if (HOST_LE) {
    s[3] = b[o];
    s[2] = b[o + 1];
    s[1] = b[o + 2];
    s[0] = b[o + 3];
    s[4] = s[5] = s[6] = s[7] = 0;
  } else {
    s[0] = s[1] = s[2] = s[3] = 0;
    for (let i = 0; i < 4; i++) s[4 + i] = b[o + i];
  }
  return big64[0];
}

/** Writes v (already checked to be in [0, 2^32)) big-endian. */
function put32big(b: Uint8Array, o: number, v: bigint): void {
  big64[0] = v;
  const s = big64Bytes;
  if (HOST_LE) {
    b[o] = s[3];
    b[o + 1] = s[2];
    b[o + 2] = s[1];
    b[o + 3] = s[0];
  } else {
    for (let i = 0; i < 4; i++) b[o + i] = s[4 + i];
  }
}

/** Writes v (already checked to be in [0, 2^64)) big-endian. */
function put64(b: Uint8Array, o: number, v: bigint): void {
  big64[0] = v;
  const s = big64Bytes;
  if (HOST_LE) {
    b[o] = s[7];
    b[o + 1] = s[6];
    b[o + 2] = s[5];
    b[o + 3] = s[4];
    b[o + 4] = s[3];
    b[o + 5] = s[2];
    b[o + 6] = s[1];
    b[o + 7] = s[0];
  } else {
    for (let i = 0; i < 8; i++) b[o + i] = s[i];
  }
}

// ---------------------------------------------------------------------------
// Decoding

function fail(offset: number, reason: string): never {
  throw new MptcpWireError(offset, reason);
}

function subtypeLabel(st: number): string {
  if (st < SUBTYPE_NAMES.length) return SUBTYPE_NAMES[st];
  if (st === 0xf) return 'MP_EXPERIMENTAL (0xf)';
  return `0x${st.toString(16)}`;
}

/**
 * Decodes the option at bytes[o..o+len), where bytes[o] == 30 and
 * 3 <= len <= bytes.length - o have already been checked.
 */
function decodeBody(b: Uint8Array, o: number, len: number): MptcpOption {
  const b2 = b[o + 2];
  const st = b2 >>> 4;
  const lo = b2 & 0x0f;
  const lenAt = o + 1;
  switch (st) {
    case Subtype.MP_CAPABLE: {
      if (len < 4) fail(lenAt, `MP_CAPABLE length ${len} is too short for the flags byte (minimum 4)`);
      const flags = b[o + 3];
      const opt: MpCapableOption = { subtype: 'MP_CAPABLE', version: lo, flags };
      if (flags & 0x02) {
        // G-bit form: explicit 32-bit tokens instead of keys.
        if (len !== 4 && len !== 8 && len !== 12 && len !== 14 && len !== 16)
          fail(lenAt, `MP_CAPABLE length ${len} is not valid for the G-bit (token) form: expected 4, 8, 12, 14 or 16`);
        if (len >= 8) opt.senderToken = u32(b, o + 4);
        if (len >= 12) opt.receiverToken = u32(b, o + 8);
        if (len >= 14) opt.dataLevelLength = u16(b, o + 12);
        if (len >= 16) opt.checksum = u16(b, o + 14);
        return opt;
      }
      if (len !== 4 && len !== 12 && len !== 20 && len !== 22 && len !== 24)
        fail(lenAt, `MP_CAPABLE length ${len} is not valid for the RFC 8684 (key) form: expected 4, 12, 20, 22 or 24`);
      if (len >= 12) opt.senderKey = copyBytes(b, o + 4, o + 12);
      if (len >= 20) opt.receiverKey = copyBytes(b, o + 12, o + 20);
      if (len >= 22) opt.dataLevelLength = u16(b, o + 20);
      if (len >= 24) opt.checksum = u16(b, o + 22);
      return opt;
    }
    case Subtype.MP_JOIN:
      switch (len) {
        case 12:
          return {
            subtype: 'MP_JOIN',
            stage: 'syn',
            backup: (lo & 1) === 1,
            addressId: b[o + 3],
            receiverToken: u32(b, o + 4),
            senderRandom: u32(b, o + 8),
          };
        case 16:
          return {
            subtype: 'MP_JOIN',
            stage: 'synack',
            backup: (lo & 1) === 1,
            addressId: b[o + 3],
            truncatedHmac: copyBytes(b, o + 4, o + 12),
            senderRandom: u32(b, o + 12),
          };
        case 24:
          return { subtype: 'MP_JOIN', stage: 'ack', hmac: copyBytes(b, o + 4, o + 24) };
        default:
          fail(lenAt, `MP_JOIN length ${len} is not valid: expected 12 (SYN), 16 (SYN/ACK) or 24 (ACK)`);
      }
    case Subtype.DSS: {
      if (len < 4) fail(lenAt, `DSS length ${len} is too short for the flags byte (minimum 4)`);
      const f = b[o + 3] & 0x1f;
      const hasAck = (f & DssFlag.DATA_ACK) !== 0;
      const ack64 = hasAck && (f & DssFlag.DATA_ACK_64) !== 0;
      const hasMap = (f & DssFlag.MAPPING) !== 0;
      const dsn64 = hasMap && (f & DssFlag.DSN_64) !== 0;
      const ackLen = hasAck ? (ack64 ? 8 : 4) : 0;
      const expected = 4 + ackLen + (hasMap ? (dsn64 ? 8 : 4) + 6 : 0);
      let hasCsum = false;
      if (len !== expected) {
        if (hasMap && len === expected + 2) hasCsum = true;
        else
          fail(
            lenAt,
            hasMap
              ? `DSS length ${len} does not match flags 0x${f.toString(16)}: expected ${expected} or ${expected + 2} (with checksum)`
              : `DSS length ${len} does not match flags 0x${f.toString(16)}: expected ${expected} (no mapping, so no checksum)`,
          );
      }
      const opt: DssOption = { subtype: 'DSS', dataFin: (f & DssFlag.DATA_FIN) !== 0 };
      let p = o + 4;
      if (hasAck) {
        if (ack64) {
          opt.dataAck = u64(b, p);
          p += 8;
        } else {
          opt.dataAck = u32big(b, p);
          p += 4;
        }
        opt.dataAckIs64 = ack64;
      }
      if (hasMap) {
        if (dsn64) {
          opt.dsn = u64(b, p);
          p += 8;
        } else {
          opt.dsn = u32big(b, p);
          p += 4;
        }
        opt.dsnIs64 = dsn64;
        opt.ssn = u32(b, p);
        opt.dataLevelLength = u16(b, p + 4);
        if (hasCsum) opt.checksum = u16(b, p + 6);
      }
      return opt;
    }
    case Subtype.ADD_ADDR: {
      const echo = (lo & 1) === 1;
      const base = echo ? len : len - 8;
      let v6: boolean;
      let port: boolean;
      switch (base) {
        case 8:
          v6 = false;
          port = false;
          break;
        case 10:
          v6 = false;
          port = true;
          break;
        case 20:
          v6 = true;
          port = false;
          break;
        case 22:
          v6 = true;
          port = true;
          break;
        default:
          fail(
            lenAt,
            echo
              ? `ADD_ADDR echo (E=1) length ${len} matches no address family: expected 8 (IPv4), 10 (IPv4+port), 20 (IPv6) or 22 (IPv6+port)`
              : `ADD_ADDR (E=0, with HMAC) length ${len} matches no address family: expected 16 (IPv4), 18 (IPv4+port), 28 (IPv6) or 30 (IPv6+port)`,
          );
      }
      const opt: AddAddrOption = {
        subtype: 'ADD_ADDR',
        echo,
        addressId: b[o + 3],
        address: v6 ? formatIpv6(b, o + 4) : formatIpv4(b, o + 4),
      };
      let p = o + (v6 ? 20 : 8);
      if (port) {
        opt.port = u16(b, p);
        p += 2;
      }
      if (!echo) opt.truncatedHmac = copyBytes(b, p, p + 8);
      return opt;
    }
    case Subtype.REMOVE_ADDR:
      if (len < 4) fail(lenAt, `REMOVE_ADDR length ${len} carries no address id (minimum 4)`);
      return { subtype: 'REMOVE_ADDR', addressIds: Array.from(b.subarray(o + 3, o + len)) };
    case Subtype.MP_PRIO:
      if (len === 3) return { subtype: 'MP_PRIO', backup: (lo & 1) === 1 };
      if (len === 4) return { subtype: 'MP_PRIO', backup: (lo & 1) === 1, addressId: b[o + 3] };
      fail(lenAt, `MP_PRIO length ${len} is not valid: expected 3 (RFC 8684) or 4 (RFC 6824, with address id)`);
    case Subtype.MP_FAIL:
      if (len !== 12) fail(lenAt, `MP_FAIL length ${len} is not valid: expected 12`);
      return { subtype: 'MP_FAIL', dsn: u64(b, o + 4) };
    case Subtype.MP_FASTCLOSE:
      if (len !== 12) fail(lenAt, `MP_FASTCLOSE length ${len} is not valid: expected 12`);
      return { subtype: 'MP_FASTCLOSE', receiverKey: copyBytes(b, o + 4, o + 12) };
    case Subtype.MP_TCPRST:
      if (len !== 4) fail(lenAt, `MP_TCPRST length ${len} is not valid: expected 4`);
      return { subtype: 'MP_TCPRST', flags: lo, reason: b[o + 3] };
    case Subtype.NEW_KEY:
      if (len !== 12) fail(lenAt, `NEW_KEY length ${len} is not valid: expected 12`);
      return { subtype: 'NEW_KEY', keyId: (lo & 1) as 0 | 1, hmac: copyBytes(b, o + 4, o + 12) };
    default:
      fail(o + 2, `unknown MPTCP option subtype ${subtypeLabel(st)}`);
  }
}

/**
 * Checks the kind and length of the option starting at `offset` and returns
 * its length. `limit` is the end of the region the option must fit in.
 */
function checkHeader(b: Uint8Array, offset: number, limit: number): number {
  const avail = limit - offset;
  if (avail < 1) fail(offset, 'truncated: no bytes left for an MPTCP option');
  const kind = b[offset];
  if (kind !== MPTCP_OPTION_KIND) fail(offset, `TCP option kind ${kind} is not MPTCP (${MPTCP_OPTION_KIND})`);
  if (avail < 2) fail(offset + 1, 'truncated: the option length byte is missing');
  const len = b[offset + 1];
  if (len < 3) fail(offset + 1, `option length ${len} is below the MPTCP minimum of 3`);
  if (len > avail) fail(offset + 1, `option length ${len} runs past the ${avail} bytes available (truncated option)`);
  return len;
}

function checkInput(bytes: unknown, offset: unknown, end: unknown): asserts bytes is Uint8Array {
  if (!(bytes instanceof Uint8Array)) fail(0, 'input is not a Uint8Array');
  if (typeof offset !== 'number' || !Number.isInteger(offset) || offset < 0 || offset > bytes.length)
    fail(0, `offset ${String(offset)} is outside the ${bytes.length}-byte buffer`);
  if (typeof end !== 'number' || !Number.isInteger(end) || end < offset || end > bytes.length)
    fail(offset, `end ${String(end)} is outside [${offset}, ${bytes.length}]`);
}

/**
 * Decodes one MPTCP option occupying exactly bytes[offset..end) (by default
 * the whole buffer): its length byte must equal `end - offset`.
 * Error offsets are relative to the start of `bytes`.
 */
export function decodeOption(bytes: Uint8Array, offset = 0, end: number = bytes?.length): MptcpOption {
  checkInput(bytes, offset, end);
  const len = checkHeader(bytes, offset, end);
  if (len !== end - offset)
    fail(offset + 1, `option length ${len} does not match the ${end - offset} bytes given (trailing bytes)`);
  return decodeBody(bytes, offset, len);
}

/**
 * Decodes the option starting at `offset` (its length byte says where it
 * ends) and returns it with the offset just past it.
 */
export function readOption(bytes: Uint8Array, offset = 0): { option: MptcpOption; next: number } {
  checkInput(bytes, offset, bytes?.length);
  const len = checkHeader(bytes, offset, bytes.length);
  return { option: decodeBody(bytes, offset, len), next: offset + len };
}

/** Decodes a concatenation of MPTCP options (no padding between them). */
export function decodeOptions(bytes: Uint8Array): MptcpOption[] {
  checkInput(bytes, 0, bytes?.length);
  const out: MptcpOption[] = [];
  let o = 0;
  while (o < bytes.length) {
    const len = checkHeader(bytes, o, bytes.length);
    out.push(decodeBody(bytes, o, len));
    o += len;
  }
  return out;
}

// ---------------------------------------------------------------------------
// TCP options area

/** One option found in a TCP options area (EOL and NOP are not reported). */
export interface TcpOption {
  kind: number;
  /** Offset of the kind byte within the options area. */
  offset: number;
  /** The whole option, kind and length bytes included (a view, not a copy). */
  raw: Uint8Array;
  /** The option's data after the kind and length bytes (a view). */
  data: Uint8Array;
}

/**
 * Walks a TCP options area (RFC 9293 §3.1): kind 0 (EOL) ends it, kind 1
 * (NOP) is one byte, every other option is kind, length (>= 2), data.
 * Throws `MptcpWireError` when an option's length is invalid or runs past
 * the area.
 */
export function parseTcpOptions(bytes: Uint8Array): TcpOption[] {
  checkInput(bytes, 0, bytes?.length);
  const out: TcpOption[] = [];
  let o = 0;
  while (o < bytes.length) {
    const kind = bytes[o];
    if (kind === 0) break;
    if (kind === 1) {
      o++;
      continue;
    }
    if (o + 1 >= bytes.length) fail(o + 1, `TCP option kind ${kind} is missing its length byte`);
    const len = bytes[o + 1];
    if (len < 2) fail(o + 1, `TCP option kind ${kind} has invalid length ${len}`);
    if (o + len > bytes.length)
      fail(o + 1, `TCP option kind ${kind} length ${len} runs past the ${bytes.length}-byte options area`);
    out.push({ kind, offset: o, raw: bytes.subarray(o, o + len), data: bytes.subarray(o + 2, o + len) });
    o += len;
  }
  return out;
}

/** Decodes every MPTCP option (kind 30) of a TCP options area, in order. */
export function mptcpOptionsFromTcpOptions(bytes: Uint8Array): MptcpOption[] {
  const out: MptcpOption[] = [];
  for (const t of parseTcpOptions(bytes)) {
    if (t.kind !== MPTCP_OPTION_KIND) continue;
    if (t.raw.length < 3) fail(t.offset + 1, `option length ${t.raw.length} is below the MPTCP minimum of 3`);
    out.push(decodeBody(bytes, t.offset, t.raw.length)); // error offsets relative to the area
  }
  return out;
}

// ---------------------------------------------------------------------------
// Encoding: validation helpers

function bad(reason: string): never {
  throw new MptcpWireError(0, reason);
}

function isUint(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
}

function needUint(v: unknown, max: number, what: string): number {
  if (!isUint(v, max)) bad(`${what} must be an integer in [0, ${max}], got ${describe(v)}`);
  return v;
}

function needU64(v: unknown, max: bigint, what: string): bigint {
  if (typeof v !== 'bigint' || v < 0n || v > max) bad(`${what} must be a bigint in [0, ${max}], got ${describe(v)}`);
  return v;
}

function needBytes(v: unknown, n: number, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) bad(`${what} must be a Uint8Array of ${n} bytes, got ${describe(v)}`);
  if (v.length !== n) bad(`${what} must be ${n} bytes, got ${v.length}`);
  return v;
}

function needBool(v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') bad(`${what} must be a boolean, got ${describe(v)}`);
  return v;
}

function optBool(v: unknown, what: string): boolean {
  if (v === undefined) return false;
  return needBool(v, what);
}

function describe(v: unknown): string {
  if (typeof v === 'bigint') return `${v}n`;
  if (v instanceof Uint8Array) return `Uint8Array(${v.length})`;
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 60) + '…' : v);
  if (v === null || typeof v !== 'object') return String(v);
  return Array.isArray(v) ? `array(${v.length})` : 'object';
}

// ---------------------------------------------------------------------------
// Encoding: DSS (hot path, writes straight into the caller's buffer)

/**
 * Length in bytes of the DSS option for `opt` (validates nothing but the
 * presence of fields; see encodeDssInto).
 */
export function dssOptionLength(opt: DssOption): number {
  let len = 4;
  if (opt.dataAck !== undefined) len += opt.dataAckIs64 ? 8 : 4;
  if (opt.dsn !== undefined) len += (opt.dsnIs64 ? 8 : 4) + 6 + (opt.checksum !== undefined ? 2 : 0);
  return len;
}

/**
 * Writes the DSS option for `opt` at buf[offset..] and returns its length.
 * Validates the shape (throws MptcpWireError, writing nothing) and allocates
 * nothing. A 32-bit data ACK or DSN must already be reduced to 32 bits
 * (`BigInt.asUintN(32, x)`).
 */
export function encodeDssInto(buf: Uint8Array, offset: number, opt: DssOption): number {
  const dataFin = needBool(opt.dataFin, 'DSS dataFin');
  const ack = opt.dataAck;
  const dsn = opt.dsn;
  let flags = dataFin ? DssFlag.DATA_FIN : 0;
  let len = 4;
  let ack64 = false;
  let dsn64 = false;
  if (ack !== undefined) {
    ack64 = optBool(opt.dataAckIs64, 'DSS dataAckIs64');
    needU64(ack, ack64 ? U64_MAX : U32_MAX_BIG, ack64 ? 'DSS 64-bit dataAck' : 'DSS 32-bit dataAck (set dataAckIs64, or reduce it with BigInt.asUintN(32, x))');
    flags |= ack64 ? DssFlag.DATA_ACK | DssFlag.DATA_ACK_64 : DssFlag.DATA_ACK;
    len += ack64 ? 8 : 4;
  } else if (opt.dataAckIs64 !== undefined) {
    optBool(opt.dataAckIs64, 'DSS dataAckIs64');
  }
  const hasMap = dsn !== undefined || opt.ssn !== undefined || opt.dataLevelLength !== undefined;
  if (hasMap) {
    if (dsn === undefined || opt.ssn === undefined || opt.dataLevelLength === undefined)
      bad('DSS mapping needs dsn, ssn and dataLevelLength together');
    dsn64 = optBool(opt.dsnIs64, 'DSS dsnIs64');
    needU64(dsn, dsn64 ? U64_MAX : U32_MAX_BIG, dsn64 ? 'DSS 64-bit dsn' : 'DSS 32-bit dsn (set dsnIs64, or reduce it with BigInt.asUintN(32, x))');
    needUint(opt.ssn, 0xffffffff, 'DSS ssn');
    needUint(opt.dataLevelLength, 0xffff, 'DSS dataLevelLength');
    if (opt.checksum !== undefined) {
      needUint(opt.checksum, 0xffff, 'DSS checksum');
      len += 2;
    }
    flags |= dsn64 ? DssFlag.MAPPING | DssFlag.DSN_64 : DssFlag.MAPPING;
    len += (dsn64 ? 8 : 4) + 6;
  } else {
    if (opt.checksum !== undefined) bad('DSS checksum is only possible with a mapping (dsn, ssn, dataLevelLength)');
    if (opt.dsnIs64 !== undefined) optBool(opt.dsnIs64, 'DSS dsnIs64');
  }
  if (!(buf instanceof Uint8Array)) bad('output buffer is not a Uint8Array');
  if (!isUint(offset, buf.length) || buf.length - offset < len)
    bad(`no room for a ${len}-byte DSS option at offset ${String(offset)} of a ${buf.length}-byte buffer`);
  buf[offset] = MPTCP_OPTION_KIND;
  buf[offset + 1] = len;
  buf[offset + 2] = Subtype.DSS << 4;
  buf[offset + 3] = flags;
  let p = offset + 4;
  if (ack !== undefined) {
    if (ack64) {
      put64(buf, p, ack);
      p += 8;
    } else {
      put32big(buf, p, ack);
      p += 4;
    }
  }
  if (hasMap) {
    if (dsn64) {
      put64(buf, p, dsn!);
      p += 8;
    } else {
      put32big(buf, p, dsn!);
      p += 4;
    }
    put32(buf, p, opt.ssn!);
    put16(buf, p + 4, opt.dataLevelLength!);
    if (opt.checksum !== undefined) put16(buf, p + 6, opt.checksum);
  }
  return len;
}

// ---------------------------------------------------------------------------
// Encoding: everything

/** Writes `opt` at b[0..] (b has room for MAX_OPTION_LENGTH) and returns its length. */
function writeOption(b: Uint8Array, opt: MptcpOption): number {
  if (opt === null || typeof opt !== 'object') bad(`option must be an object, got ${describe(opt)}`);
  b[0] = MPTCP_OPTION_KIND;
  switch (opt.subtype) {
    case 'MP_CAPABLE': {
      const version = needUint(opt.version, 0xf, 'MP_CAPABLE version');
      const flags = needUint(opt.flags, 0xff, 'MP_CAPABLE flags');
      b[2] = (Subtype.MP_CAPABLE << 4) | version;
      b[3] = flags;
      const has = (v: unknown) => v !== undefined;
      let len = 4;
      if (flags & 0x02) {
        if (has(opt.senderKey) || has(opt.receiverKey))
          bad('MP_CAPABLE with the G flag carries tokens (senderToken/receiverToken), not keys');
        if (has(opt.receiverToken) && !has(opt.senderToken)) bad('MP_CAPABLE receiverToken needs senderToken');
        if (has(opt.dataLevelLength) && !has(opt.receiverToken))
          bad('MP_CAPABLE (G form) dataLevelLength needs both tokens');
        if (has(opt.senderToken)) {
          put32(b, 4, needUint(opt.senderToken, 0xffffffff, 'MP_CAPABLE senderToken'));
          len = 8;
        }
        if (has(opt.receiverToken)) {
          put32(b, 8, needUint(opt.receiverToken, 0xffffffff, 'MP_CAPABLE receiverToken'));
          len = 12;
        }
      } else {
        if (has(opt.senderToken) || has(opt.receiverToken))
          bad('MP_CAPABLE tokens need the G flag (0x02); the RFC 8684 form carries keys');
        if (has(opt.receiverKey) && !has(opt.senderKey)) bad('MP_CAPABLE receiverKey needs senderKey');
        if (has(opt.dataLevelLength) && !has(opt.receiverKey))
          bad('MP_CAPABLE dataLevelLength needs both keys');
        if (has(opt.senderKey)) {
          b.set(needBytes(opt.senderKey, 8, 'MP_CAPABLE senderKey'), 4);
          len = 12;
        }
        if (has(opt.receiverKey)) {
          b.set(needBytes(opt.receiverKey, 8, 'MP_CAPABLE receiverKey'), 12);
          len = 20;
        }
      }
      if (has(opt.checksum) && !has(opt.dataLevelLength)) bad('MP_CAPABLE checksum needs dataLevelLength');
      if (has(opt.dataLevelLength)) {
        put16(b, len, needUint(opt.dataLevelLength, 0xffff, 'MP_CAPABLE dataLevelLength'));
        len += 2;
      }
      if (has(opt.checksum)) {
        put16(b, len, needUint(opt.checksum, 0xffff, 'MP_CAPABLE checksum'));
        len += 2;
      }
      b[1] = len;
      return len;
    }
    case 'MP_JOIN': {
      switch (opt.stage) {
        case 'syn':
          b[1] = 12;
          b[2] = (Subtype.MP_JOIN << 4) | (needBool(opt.backup, 'MP_JOIN backup') ? 1 : 0);
          b[3] = needUint(opt.addressId, 0xff, 'MP_JOIN addressId');
          put32(b, 4, needUint(opt.receiverToken, 0xffffffff, 'MP_JOIN receiverToken'));
          put32(b, 8, needUint(opt.senderRandom, 0xffffffff, 'MP_JOIN senderRandom'));
          return 12;
        case 'synack':
          b[1] = 16;
          b[2] = (Subtype.MP_JOIN << 4) | (needBool(opt.backup, 'MP_JOIN backup') ? 1 : 0);
          b[3] = needUint(opt.addressId, 0xff, 'MP_JOIN addressId');
          b.set(needBytes(opt.truncatedHmac, 8, 'MP_JOIN truncatedHmac'), 4);
          put32(b, 12, needUint(opt.senderRandom, 0xffffffff, 'MP_JOIN senderRandom'));
          return 16;
        case 'ack':
          b[1] = 24;
          b[2] = Subtype.MP_JOIN << 4;
          b[3] = 0;
          b.set(needBytes(opt.hmac, 20, 'MP_JOIN hmac'), 4);
          return 24;
        default:
          bad(`MP_JOIN stage must be 'syn', 'synack' or 'ack', got ${describe((opt as { stage: unknown }).stage)}`);
      }
    }
    case 'DSS':
      return encodeDssInto(b, 0, opt);
    case 'ADD_ADDR': {
      const echo = needBool(opt.echo, 'ADD_ADDR echo');
      const addressId = needUint(opt.addressId, 0xff, 'ADD_ADDR addressId');
      if (typeof opt.address !== 'string') bad(`ADD_ADDR address must be a string, got ${describe(opt.address)}`);
      const addr = parseIpv4(opt.address) ?? parseIpv6(opt.address);
      if (!addr) bad(`ADD_ADDR address ${describe(opt.address)} is not valid IPv4 or IPv6 text`);
      if (echo && opt.truncatedHmac !== undefined) bad('ADD_ADDR echo (E=1) carries no truncatedHmac');
      if (!echo && opt.truncatedHmac === undefined) bad('ADD_ADDR without echo (E=0) needs a truncatedHmac');
      b[2] = (Subtype.ADD_ADDR << 4) | (echo ? 1 : 0);
      b[3] = addressId;
      b.set(addr, 4);
      let p = 4 + addr.length;
      if (opt.port !== undefined) {
        put16(b, p, needUint(opt.port, 0xffff, 'ADD_ADDR port'));
        p += 2;
      }
      if (!echo) {
        b.set(needBytes(opt.truncatedHmac, 8, 'ADD_ADDR truncatedHmac'), p);
        p += 8;
      }
      b[1] = p;
      return p;
    }
    case 'REMOVE_ADDR': {
      const ids = opt.addressIds;
      if (!Array.isArray(ids) || ids.length < 1 || ids.length > MAX_OPTION_LENGTH - 3)
        bad(`REMOVE_ADDR addressIds must be an array of 1 to ${MAX_OPTION_LENGTH - 3} ids, got ${describe(ids)}`);
      b[1] = 3 + ids.length;
      b[2] = Subtype.REMOVE_ADDR << 4;
      for (let i = 0; i < ids.length; i++) b[3 + i] = needUint(ids[i], 0xff, `REMOVE_ADDR addressIds[${i}]`);
      return 3 + ids.length;
    }
    case 'MP_PRIO': {
      b[2] = (Subtype.MP_PRIO << 4) | (needBool(opt.backup, 'MP_PRIO backup') ? 1 : 0);
      if (opt.addressId === undefined) {
        b[1] = 3;
        return 3;
      }
      b[1] = 4;
      b[3] = needUint(opt.addressId, 0xff, 'MP_PRIO addressId');
      return 4;
    }
    case 'MP_FAIL':
      b[1] = 12;
      b[2] = Subtype.MP_FAIL << 4;
      b[3] = 0;
      put64(b, 4, needU64(opt.dsn, U64_MAX, 'MP_FAIL dsn'));
      return 12;
    case 'MP_FASTCLOSE':
      b[1] = 12;
      b[2] = Subtype.MP_FASTCLOSE << 4;
      b[3] = 0;
      b.set(needBytes(opt.receiverKey, 8, 'MP_FASTCLOSE receiverKey'), 4);
      return 12;
    case 'MP_TCPRST': {
      const o: MpTcpRstOption = opt;
      b[1] = 4;
      b[2] = (Subtype.MP_TCPRST << 4) | needUint(o.flags, 0xf, 'MP_TCPRST flags');
      b[3] = needUint(o.reason, 0xff, 'MP_TCPRST reason');
      return 4;
    }
    case 'NEW_KEY':
      if (opt.keyId !== 0 && opt.keyId !== 1) bad(`NEW_KEY keyId must be 0 or 1, got ${describe(opt.keyId)}`);
      b[1] = 12;
      b[2] = (Subtype.NEW_KEY << 4) | opt.keyId;
      b[3] = 0;
      b.set(needBytes(opt.hmac, 8, 'NEW_KEY hmac'), 4);
      return 12;
    default:
      bad(`unknown MPTCP option subtype ${describe((opt as { subtype: unknown }).subtype)}`);
  }
}

const scratch = new Uint8Array(MAX_OPTION_LENGTH);

/** Encodes one MPTCP option: kind 30, length, subtype…, no padding. */
export function encodeOption(opt: MptcpOption): Uint8Array {
  scratch.fill(0);
  const n = writeOption(scratch, opt);
  return scratch.slice(0, n);
}

/**
 * Encodes `opt` into buf at `offset` and returns the number of bytes written.
 * Throws MptcpWireError (writing nothing) if the shape is invalid or does
 * not fit.
 */
export function encodeOptionInto(opt: MptcpOption, buf: Uint8Array, offset = 0): number {
  if (opt !== null && typeof opt === 'object' && opt.subtype === 'DSS') return encodeDssInto(buf, offset, opt);
  scratch.fill(0);
  const n = writeOption(scratch, opt);
  if (!(buf instanceof Uint8Array)) bad('output buffer is not a Uint8Array');
  if (!isUint(offset, buf.length) || buf.length - offset < n)
    bad(`no room for a ${n}-byte option at offset ${String(offset)} of a ${buf.length}-byte buffer`);
  buf.set(scratch.subarray(0, n), offset);
  return n;
}

/** Length in bytes of the encoding of `opt` (validates it). */
export function optionLength(opt: MptcpOption): number {
  scratch.fill(0);
  return writeOption(scratch, opt);
}

/** Encodes a concatenation of MPTCP options (no padding). */
export function encodeOptions(opts: readonly MptcpOption[]): Uint8Array {
  if (!Array.isArray(opts)) bad(`options must be an array, got ${describe(opts)}`);
  const parts = opts.map((o) => encodeOption(o));
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
