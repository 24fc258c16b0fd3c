/**
 * The fuzzing machinery shared by `scripts/fuzz.mjs` (full runs, against
 * dist/) and `test/security/fuzz.test.ts` (small runs, against src/): input
 * generators, the decoder and frame-parser loops, the raw-TCP server
 * sessions, the server-side instrumentation that gives every closed session
 * its reason, and the key-material scan.
 *
 * Plain JavaScript with no imports of mptls itself: the caller hands in the
 * library (`lib`: decodeOption, FrameParser, …) so the same code runs over
 * the sources and the build. Everything random comes from a seeded PRNG, so
 * a failure prints a seed and an input in hex that reproduce it.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { concat } from './bytes.mjs';

// ───────────────────────────── randomness ─────────────────────────────────

/** sfc32: small, fast, seedable. */
export function makeRng(seed) {
  let a = 0x9e3779b9 ^ seed;
  let b = 0x243f6a88 ^ Math.imul(seed, 0x85ebca6b);
  let c = 0xb7e15162 ^ Math.imul(seed, 0xc2b2ae35);
  let d = 1;
  const next = () => {
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
  for (let i = 0; i < 16; i++) next();
  const rng = {
    seed,
    u32: next,
    /** 0..n-1 */
    int: (n) => (n <= 1 ? 0 : next() % n),
    /** lo..hi inclusive */
    range: (lo, hi) => lo + (hi > lo ? next() % (hi - lo + 1) : 0),
    float: () => next() / 4294967296,
    chance: (p) => next() / 4294967296 < p,
    pick: (xs) => xs[next() % xs.length],
    bytes: (n) => {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i += 4) {
        const v = next();
        out[i] = v;
        if (i + 1 < n) out[i + 1] = v >>> 8;
        if (i + 2 < n) out[i + 2] = v >>> 16;
        if (i + 3 < n) out[i + 3] = v >>> 24;
      }
      return out;
    },
    u64: () => (BigInt(next()) << 32n) | BigInt(next()),
    /** An index into `weights` with probability proportional to its weight. */
    weighted: (weights) => {
      let total = 0;
      for (const w of weights) total += w;
      let r = (next() / 4294967296) * total;
      for (let i = 0; i < weights.length; i++) {
        r -= weights[i];
        if (r < 0) return i;
      }
      return weights.length - 1;
    },
  };
  return rng;
}

export const hex = (b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

// ───────────────────────────── option generators ───────────────────────────

const SUBTYPES = ['MP_CAPABLE', 'MP_JOIN', 'DSS', 'ADD_ADDR', 'REMOVE_ADDR', 'MP_PRIO', 'MP_FAIL', 'MP_FASTCLOSE', 'MP_TCPRST', 'NEW_KEY'];
export const OPTION_SHAPES = [
  'MP_CAPABLE (keys)',
  'MP_CAPABLE (G-bit tokens)',
  'MP_JOIN syn',
  'MP_JOIN synack',
  'MP_JOIN ack',
  'DSS',
  'ADD_ADDR v4',
  'ADD_ADDR v6',
  'REMOVE_ADDR',
  'MP_PRIO',
  'MP_FAIL',
  'MP_FASTCLOSE',
  'MP_TCPRST',
  'NEW_KEY',
];

function randomIpv6(rng) {
  const groups = [];
  for (let i = 0; i < 8; i++) groups.push(rng.chance(0.3) ? '0' : rng.int(0x10000).toString(16));
  return groups.join(':');
}

/** A valid option object of the given shape (index into OPTION_SHAPES), as an API user would write it. */
export function randomOptionObject(rng, shape = rng.int(OPTION_SHAPES.length)) {
  switch (shape) {
    case 0: {
      const o = { subtype: 'MP_CAPABLE', version: rng.int(16), flags: rng.int(256) & ~0x02 };
      const n = rng.int(5);
      if (n >= 1) o.senderKey = rng.bytes(8);
      if (n >= 2) o.receiverKey = rng.bytes(8);
      if (n >= 3) o.dataLevelLength = rng.int(0x10000);
      if (n >= 4) o.checksum = rng.int(0x10000);
      return o;
    }
    case 1: {
      const o = { subtype: 'MP_CAPABLE', version: rng.int(16), flags: rng.int(256) | 0x02 };
      const n = rng.int(5);
      if (n >= 1) o.senderToken = rng.u32();
      if (n >= 2) o.receiverToken = rng.u32();
      if (n >= 3) o.dataLevelLength = rng.int(0x10000);
      if (n >= 4) o.checksum = rng.int(0x10000);
      return o;
    }
    case 2:
      return { subtype: 'MP_JOIN', stage: 'syn', backup: rng.chance(0.5), addressId: rng.int(256), receiverToken: rng.u32(), senderRandom: rng.u32() };
    case 3:
      return { subtype: 'MP_JOIN', stage: 'synack', backup: rng.chance(0.5), addressId: rng.int(256), truncatedHmac: rng.bytes(8), senderRandom: rng.u32() };
    case 4:
      return { subtype: 'MP_JOIN', stage: 'ack', hmac: rng.bytes(20) };
    case 5: {
      const o = { subtype: 'DSS', dataFin: rng.chance(0.2) };
      if (rng.chance(0.7)) {
        const is64 = rng.chance(0.5);
        o.dataAck = is64 ? rng.u64() : BigInt(rng.u32());
        o.dataAckIs64 = is64;
      }
      if (rng.chance(0.7)) {
        const is64 = rng.chance(0.5);
        o.dsn = is64 ? rng.u64() : BigInt(rng.u32());
        o.dsnIs64 = is64;
        o.ssn = rng.u32();
        o.dataLevelLength = rng.int(0x10000);
        if (rng.chance(0.2)) o.checksum = rng.int(0x10000);
      }
      return o;
    }
    case 6:
    case 7: {
      const echo = rng.chance(0.3);
      const o = { subtype: 'ADD_ADDR', echo, addressId: rng.int(256), address: shape === 6 ? `${rng.int(256)}.${rng.int(256)}.${rng.int(256)}.${rng.int(256)}` : randomIpv6(rng) };
      if (rng.chance(0.5)) o.port = rng.int(0x10000);
      if (!echo) o.truncatedHmac = rng.bytes(8);
      return o;
    }
    case 8: {
      const ids = [];
      const n = rng.range(1, rng.chance(0.9) ? 8 : 252);
      for (let i = 0; i < n; i++) ids.push(rng.int(256));
      return { subtype: 'REMOVE_ADDR', addressIds: ids };
    }
    case 9:
      return rng.chance(0.5) ? { subtype: 'MP_PRIO', backup: rng.chance(0.5) } : { subtype: 'MP_PRIO', backup: rng.chance(0.5), addressId: rng.int(256) };
    case 10:
      return { subtype: 'MP_FAIL', dsn: rng.u64() };
    case 11:
      return { subtype: 'MP_FASTCLOSE', receiverKey: rng.bytes(8) };
    case 12:
      return { subtype: 'MP_TCPRST', flags: rng.int(16), reason: rng.int(256) };
    default:
      return { subtype: 'NEW_KEY', keyId: rng.int(2), hmac: rng.bytes(8) };
  }
}

function dssLen(f) {
  return 4 + (f & 1 ? (f & 2 ? 8 : 4) : 0) + (f & 4 ? (f & 8 ? 8 : 4) + 6 : 0);
}

/** A valid encoding built at byte level (reserved bits random), independently of the encoder. */
export function randomValidOptionBytes(rng) {
  const subtype = rng.int(10);
  const r1 = rng.int(256);
  const r2 = rng.int(256);
  let len;
  let lo;
  let b3;
  switch (subtype) {
    case 0:
      lo = r1 & 0xf;
      b3 = r2;
      len = rng.pick(r2 & 2 ? [4, 8, 12, 14, 16] : [4, 12, 20, 22, 24]);
      break;
    case 1:
      len = rng.pick([12, 16, 24]);
      lo = r1 & 0xf;
      break;
    case 2: {
      let f = r2 & 0x1f;
      if (!(f & 1)) f &= ~2;
      if (!(f & 4)) f &= ~8;
      lo = r1 & 0xf;
      b3 = (r1 & 0xe0) | f; // the top three bits are reserved: ignored by the decoder
      len = dssLen(f) + (f & 4 && r1 & 1 ? 2 : 0);
      break;
    }
    case 3:
      lo = r1 & 0xf;
      len = rng.pick([8, 10, 20, 22]) + (lo & 1 ? 0 : 8);
      break;
    case 4:
      lo = r1 & 0xf;
      len = rng.range(4, 40);
      break;
    case 5:
      lo = r1 & 0xf;
      len = rng.pick([3, 4]);
      break;
    case 6:
    case 7:
    case 9:
      lo = r1 & 0xf;
      len = 12;
      break;
    default:
      lo = r1 & 0xf;
      len = 4;
      break;
  }
  const b = rng.bytes(len);
  b[0] = 30;
  b[1] = len;
  b[2] = (subtype << 4) | lo;
  if (b3 !== undefined && len > 3) b[3] = b3;
  return b;
}

/** Applies 1..maxMutations random mutations; `other` supplies bytes to splice in. */
export function mutate(rng, input, other, maxMutations = 3) {
  let b = input.slice();
  const n = rng.range(1, maxMutations);
  for (let k = 0; k < n; k++) {
    switch (rng.int(11)) {
      case 0: // bit flip
        if (b.length) b[rng.int(b.length)] ^= 1 << rng.int(8);
        break;
      case 1: // truncation
        b = b.slice(0, rng.int(b.length + 1));
        break;
      case 2: // length byte: any value
        if (b.length > 1) b[1] = rng.int(256);
        break;
      case 3: // length byte: off by a little
        if (b.length > 1) b[1] = (b[1] + rng.range(-3, 3)) & 0xff;
        break;
      case 4: // length byte: the real length of a shorter/longer buffer
        if (b.length > 1) b[1] = rng.chance(0.5) ? b.length : rng.int(b.length + 1);
        break;
      case 5: // splice: a prefix of b and a suffix of other
        if (other) {
          const cut = rng.int(b.length + 1);
          const from = rng.int(other.length + 1);
          b = concat([b.subarray(0, cut), other.subarray(from)]);
        }
        break;
      case 6: // splice: b then other whole (two options back to back)
        if (other) b = concat([b, other]);
        break;
      case 7: // a random byte
        if (b.length) b[rng.int(b.length)] = rng.int(256);
        break;
      case 8: // subtype nibble
        if (b.length > 2) b[2] = (rng.int(16) << 4) | (b[2] & 0x0f);
        break;
      case 9: // flags byte (DSS / MP_CAPABLE)
        if (b.length > 3) b[3] = rng.int(256);
        break;
      default: // append garbage
        b = concat([b, rng.bytes(rng.range(1, 8))]);
        break;
    }
  }
  return b;
}

// ───────────────────────────── decoder fuzzing ─────────────────────────────

const KNOWN_SUBTYPES = new Set(SUBTYPES);

/**
 * One decoder input per call: random bytes, valid encodings of every shape
 * (encoder- and byte-level) and their mutations and splices.
 */
export function decoderInput(rng, lib) {
  const kind = rng.int(100);
  if (kind < 18) {
    const b = rng.bytes(rng.int(rng.chance(0.9) ? 48 : 300));
    if (rng.chance(0.5) && b.length > 0) b[0] = 30;
    if (rng.chance(0.5) && b.length > 1) b[1] = b.length;
    return { b, valid: false };
  }
  const fromEncoder = () => lib.encodeOption(randomOptionObject(rng));
  if (kind < 26) return { b: fromEncoder(), valid: true };
  if (kind < 30) return { b: randomValidOptionBytes(rng), valid: true };
  const base = kind < 70 ? fromEncoder() : randomValidOptionBytes(rng);
  const other = rng.chance(0.5) ? fromEncoder() : randomValidOptionBytes(rng);
  return { b: mutate(rng, base, other, 4), valid: false };
}

/** Runs one input through decodeOption (and decodeOptions, readOption, a sub-range); returns an error text or null. */
export function checkDecoder(lib, b, valid, stats) {
  const t0 = performance.now();
  let r;
  let threw;
  try {
    r = lib.decodeOption(b);
  } catch (e) {
    threw = e;
  }
  const dt = performance.now() - t0;
  if (dt > stats.maxMs) stats.maxMs = dt;
  if (dt > 50) stats.slow.push({ ms: dt, hex: hex(b) });
  stats.inputs++;
  if (threw !== undefined) {
    if (!(threw instanceof lib.MptcpWireError)) return `decodeOption threw ${threw?.name ?? typeof threw}: ${String(threw?.message ?? threw)}`;
    if (!Number.isInteger(threw.offset) || threw.offset < 0 || threw.offset > b.length) return `MptcpWireError with offset ${threw.offset} outside the input`;
    if (typeof threw.reason !== 'string' || threw.reason.length < 5) return `MptcpWireError without a reason`;
    if (valid) return `a valid encoding was refused: ${threw.message}`;
    stats.wireErrors++;
  } else {
    if (!r || typeof r !== 'object' || !KNOWN_SUBTYPES.has(r.subtype)) return `decodeOption returned ${String(r)}`;
    stats.decoded++;
    stats.bySubtype[r.subtype] = (stats.bySubtype[r.subtype] ?? 0) + 1;
    if (valid) {
      // a valid encoding with zero reserved bits must re-encode to itself; with
      // reserved bits set, at least decode(encode(decode(b))) must be stable
      const again = lib.encodeOption(r);
      const twice = lib.encodeOption(lib.decodeOption(again));
      if (hex(again) !== hex(twice)) return `unstable decoding: ${hex(again)} vs ${hex(twice)}`;
    }
  }
  // the list decoder and the streaming reader obey the same rule
  for (const f of [() => lib.decodeOptions(b), () => lib.readOption(b, 0)]) {
    try {
      f();
    } catch (e) {
      if (!(e instanceof lib.MptcpWireError)) return `decodeOptions/readOption threw ${e?.name}: ${e?.message}`;
    }
  }
  return null;
}

export function newDecoderStats() {
  return { inputs: 0, decoded: 0, wireErrors: 0, maxMs: 0, slow: [], failures: [], bySubtype: {} };
}

/**
 * `n` decoder inputs. `probe(b)` (optional) is told each input before it is
 * decoded (a watchdog can then name the input that hung).
 */
export function fuzzDecoder(lib, rng, n, probe) {
  const stats = newDecoderStats();
  for (let i = 0; i < n; i++) {
    const { b, valid } = decoderInput(rng, lib);
    // now and then decode a window of a larger buffer (offset/end arguments)
    if (probe) probe(b);
    const err = checkDecoder(lib, b, valid, stats);
    if (err && stats.failures.length < 20) stats.failures.push({ error: err, hex: hex(b) });
    if ((i & 15) === 0 && b.length > 2) {
      const pad = concat([rng.bytes(rng.int(4)), b, rng.bytes(rng.int(4))]);
      const off = rng.int(pad.length);
      const end = off + rng.int(pad.length - off + 1);
      try {
        lib.decodeOption(pad, off, end);
      } catch (e) {
        if (!(e instanceof lib.MptcpWireError) && stats.failures.length < 20) stats.failures.push({ error: `decodeOption(buf, ${off}, ${end}) threw ${e?.name}: ${e?.message}`, hex: hex(pad) });
      }
    }
  }
  return stats;
}

// ───────────────────────────── frames on the wire ──────────────────────────

export const MAGIC = Uint8Array.of(0xa7, 0x4d, 0x50, 0x54);
export const preamble = (role = 1) => Uint8Array.of(0xa7, 0x4d, 0x50, 0x54, 3, role, 0, 0); // wire version 3 (frame.ts VERSION)

/**
 * One frame, written by hand (independently of the encoder). `optLen` /
 * `payloadLen` override the header fields (lie about the lengths).
 */
export function frame({ type = 1, flags, opts = new Uint8Array(0), payload = new Uint8Array(0), window, ack, optLen, payloadLen } = {}) {
  const h = new Uint8Array(16);
  const dv = new DataView(h.buffer);
  h[0] = type;
  let f = 0;
  if (window !== undefined) {
    f |= 1;
    dv.setUint32(8, window >>> 0);
  }
  if (ack !== undefined) {
    f |= 2;
    dv.setUint32(12, ack >>> 0);
  }
  h[1] = flags ?? f;
  dv.setUint16(2, optLen ?? opts.length);
  dv.setUint32(4, payloadLen ?? payload.length);
  return concat([h, opts, payload]);
}

/** A frame whose options are encoded with the library's encoder. */
export function frameOf(lib, options, extra = {}) {
  return frame({ ...extra, opts: options.length ? concat(options.map((o) => lib.encodeOption(o))) : new Uint8Array(0) });
}

/** A random stream of valid frames: { bytes, optionBytes, payload } (what a parser must give back). */
export function validFrameStream(rng, lib) {
  const parts = [preamble(rng.chance(0.5) ? 1 : 2)];
  const optParts = [];
  const payParts = [];
  const frames = rng.range(0, 8);
  for (let i = 0; i < frames; i++) {
    const opts = [];
    let optLen = 0;
    const nOpts = rng.int(4);
    for (let k = 0; k < nOpts; k++) {
      const e = lib.encodeOption(randomOptionObject(rng));
      if (optLen + e.length > 512) break;
      opts.push(e);
      optLen += e.length;
    }
    const plen = rng.chance(0.5) ? 0 : rng.chance(0.95) ? rng.int(3000) : rng.int(65536);
    const payload = rng.bytes(plen);
    const o = concat(opts);
    parts.push(frame({ opts: o, payload, window: rng.chance(0.5) ? rng.u32() : undefined, ack: rng.chance(0.5) ? rng.u32() : undefined }));
    optParts.push(o);
    payParts.push(payload);
  }
  return { bytes: concat(parts), optionBytes: concat(optParts), payload: concat(payParts) };
}

/** A stream for the parser: valid, or broken in one of many ways. */
export function parserStream(rng, lib) {
  const v = validFrameStream(rng, lib);
  const k = rng.int(12);
  const b = v.bytes.slice();
  const frameStart = 8; // the first header, if any
  switch (k) {
    case 0:
    case 1:
    case 2:
      return { bytes: b, valid: v, kind: 'valid' };
    case 3: // bit flips anywhere
      for (let i = rng.range(1, 5); i > 0; i--) b[rng.int(b.length)] ^= 1 << rng.int(8);
      return { bytes: b, kind: 'bit flips' };
    case 4: // first header: random type or flags
      if (b.length >= frameStart + 16) {
        if (rng.chance(0.5)) b[frameStart] = rng.int(256);
        else b[frameStart + 1] = rng.int(256);
      }
      return { bytes: b, kind: 'type/flags' };
    case 5: // first header: lying option length
      if (b.length >= frameStart + 16) new DataView(b.buffer).setUint16(frameStart + 2, rng.pick([0, 1, 2, 3, 511, 512, 513, 4096, 65535, rng.int(65536)]));
      return { bytes: b, kind: 'optLength' };
    case 6: // first header: lying payload length
      if (b.length >= frameStart + 16) new DataView(b.buffer).setUint32(frameStart + 4, rng.pick([0, 1, 65535, 65536, 0x7fffffff, 0xffffffff, rng.u32()]));
      return { bytes: b, kind: 'payloadLength' };
    case 7: // truncated
      return { bytes: b.slice(0, rng.int(b.length + 1)), kind: 'truncated' };
    case 8: // garbage inserted somewhere
    {
      const at = rng.int(b.length + 1);
      return { bytes: concat([b.subarray(0, at), rng.bytes(rng.range(1, 64)), b.subarray(at)]), kind: 'garbage inserted' };
    }
    case 9: // random bytes after the magic
      return { bytes: concat([MAGIC, rng.bytes(rng.int(2000))]), kind: 'random after magic' };
    case 10: // a mutated option inside a well-formed frame
    {
      const bad = mutate(rng, lib.encodeOption(randomOptionObject(rng)), randomValidOptionBytes(rng), 3);
      if (bad.length > 512) return { bytes: b, kind: 'valid' , valid: v };
      return { bytes: concat([preamble(1), frame({ opts: bad, payload: rng.bytes(rng.int(100)) })]), kind: 'mutated option' };
    }
    default:
      return { bytes: rng.bytes(rng.int(600)), kind: 'random' };
  }
}

/** Splits `b` into chunks at random boundaries (sometimes 1-byte or empty chunks). */
export function chunked(rng, b) {
  const out = [];
  let o = 0;
  let style = rng.int(4);
  if (style === 0 && b.length > 8192) style = 1; // byte by byte only for small streams
  while (o < b.length) {
    let n;
    if (style === 0) n = 1;
    else if (style === 1) n = rng.range(1, 16);
    else if (style === 2) n = rng.range(1, 2048);
    else n = rng.chance(0.1) ? 0 : rng.range(1, 70000);
    out.push(b.subarray(o, Math.min(b.length, o + n)));
    o += n;
  }
  return out;
}

export function newParserStats() {
  return { streams: 0, chunks: 0, items: 0, segments: 0, frameErrors: 0, validChecked: 0, maxMs: 0, maxPending: 0, slow: [], failures: [], byKind: {} };
}

/** `n` streams through a fresh FrameParser each, split at random boundaries. */
export function fuzzParser(lib, rng, n, probe) {
  const stats = newParserStats();
  for (let i = 0; i < n; i++) {
    const s = parserStream(rng, lib);
    if (probe) probe(s.bytes);
    const err = checkParser(lib, rng, s, stats);
    if (err && stats.failures.length < 20) stats.failures.push({ error: err, kind: s.kind, hex: hex(s.bytes).slice(0, 4000) });
  }
  return stats;
}

const MAX_HELD = 16 + 512;

export function checkParser(lib, rng, s, stats) {
  const p = new lib.FrameParser();
  stats.streams++;
  stats.byKind[s.kind] = (stats.byKind[s.kind] ?? 0) + 1;
  let failed;
  const opts = [];
  const pay = [];
  let preambles = 0;
  for (const c of chunked(rng, s.bytes)) {
    stats.chunks++;
    const t0 = performance.now();
    let items;
    try {
      items = p.push(c);
    } catch (e) {
      const dt = performance.now() - t0;
      if (dt > stats.maxMs) stats.maxMs = dt;
      if (!(e instanceof lib.FrameError)) return `push threw ${e?.name}: ${e?.message}`;
      if (failed && e !== failed) return 'a failed parser threw a different error';
      if (!failed) stats.frameErrors++;
      failed = e;
      if (s.valid) return `a valid stream was refused: ${e.message}`;
      continue;
    }
    const dt = performance.now() - t0;
    if (dt > stats.maxMs) stats.maxMs = dt;
    if (dt > 50) stats.slow.push({ ms: dt, kind: s.kind });
    if (failed) return 'a failed parser accepted more input';
    if (!Array.isArray(items)) return `push returned ${String(items)}`;
    if (p.pending > stats.maxPending) stats.maxPending = p.pending;
    if (p.pending > MAX_HELD) return `parser holds ${p.pending} bytes (more than one frame header and option area)`;
    for (const it of items) {
      stats.items++;
      if (it.kind === 'preamble') {
        preambles++;
        continue;
      }
      if (it.kind !== 'segment' || !it.segment || !Array.isArray(it.segment.options)) return `bad item ${JSON.stringify(it)}`;
      stats.segments++;
      for (const o of it.segment.options) opts.push(lib.encodeOption(o));
      if (it.segment.payload) {
        if (it.segment.payload.length > 65535) return 'a payload longer than 65 535';
        pay.push(it.segment.payload);
      }
    }
  }
  if (s.valid) {
    stats.validChecked++;
    if (preambles !== 1) return `${preambles} preambles`;
    if (hex(concat(opts)) !== hex(s.valid.optionBytes)) return 'options differ from the ones sent';
    if (hex(concat(pay)) !== hex(s.valid.payload)) return 'payload differs from the one sent';
  }
  return null;
}

// ───────────────────────────── raw TCP sessions ────────────────────────────

/**
 * A raw TCP connection to the server that reads the server's frames with
 * the library's parser. `outcome()` resolves once the server closed it (FIN
 * or RST) or answered MP_TCPRST / MP_FASTCLOSE (then we close), or at the
 * deadline.
 */
class RawConn {
  constructor(lib, opts) {
    this.lib = lib;
    this.parser = new lib.FrameParser();
    this.segments = [];
    this.waiters = [];
    this.closed = false;
    this.serverFin = false;
    this.serverRst = undefined; // MP_TCPRST reason
    this.serverFastclose = false;
    this.parseError = undefined;
    this.errorCode = undefined;
    this.bytesIn = 0;
    this.sock = net.connect({ host: opts.host, port: opts.port, localAddress: opts.localAddress });
    this.sock.on('error', (e) => {
      this.errorCode = e.code ?? e.message;
      opts.strings?.push(e.message);
    });
    this.connected = new Promise((resolve) => {
      this.sock.once('connect', () => {
        this.key = `${this.sock.localAddress}:${this.sock.localPort}`;
        resolve(true);
      });
      this.sock.once('close', () => resolve(false));
    });
    this.sock.on('data', (d) => {
      this.bytesIn += d.length;
      if (this.parseError) return;
      try {
        for (const it of this.parser.push(d)) {
          if (it.kind !== 'segment') continue;
          this.segments.push(it.segment);
          for (const o of it.segment.options) {
            if (o.subtype === 'MP_TCPRST' && this.serverRst === undefined) this.serverRst = o.reason;
            if (o.subtype === 'MP_FASTCLOSE') this.serverFastclose = true;
          }
        }
      } catch (e) {
        this.parseError = e.message;
      }
      this.wake();
    });
    this.sock.on('end', () => {
      this.serverFin = true;
      this.wake();
    });
    this.sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }
  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  /** Waits until `cond()` or the connection closes or `ms` pass. */
  async until(cond, ms) {
    const t0 = performance.now();
    while (!cond() && !this.closed) {
      const left = ms - (performance.now() - t0);
      if (left <= 0) return false;
      await new Promise((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return cond();
  }
  /** The first server segment with an option of this subtype (and stage), waiting up to ms. */
  async option(subtype, ms, stage) {
    let found;
    await this.until(() => {
      for (const s of this.segments) for (const o of s.options) if (o.subtype === subtype && (!stage || o.stage === stage)) return (found = o), true;
      return false;
    }, ms);
    return found;
  }
  get ended() {
    return this.closed || this.serverFin || this.serverRst !== undefined || this.serverFastclose;
  }
  send(bytes) {
    if (!this.sock.destroyed && this.sock.writable) this.sock.write(bytes);
  }
  /** The server's verdict, waiting for it until `deadline` (ms from now). */
  async outcome(ms) {
    const t0 = performance.now();
    await this.until(() => this.ended, ms);
    const o = this.serverRst !== undefined ? `MP_TCPRST reason ${this.serverRst}` : this.serverFastclose ? 'MP_FASTCLOSE' : this.serverFin ? 'FIN' : this.closed ? (this.errorCode ? `reset (${this.errorCode})` : 'closed') : 'deadline: still open';
    return { outcome: o, waitedMs: performance.now() - t0 };
  }
  destroy() {
    this.sock.destroy();
  }
}

const delay = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The kinds of bad session, with weights. Each is `async (ctx) => void`,
 * opening raw connections with `ctx.open()` and sending bad input; the runner
 * then waits for the server's verdict on every connection it opened.
 */
export const SESSION_KINDS = {
  'random bytes after the magic': [8, async (c) => {
    const s = c.open();
    await s.connected;
    s.send(concat([MAGIC, c.rng.bytes(c.rng.range(1, 600))]));
  }],
  'random bytes after the preamble': [8, async (c) => {
    const s = c.open();
    await s.connected;
    s.send(concat([preamble(c.rng.pick([0, 1, 2, 3, 255])), c.rng.bytes(c.rng.range(1, 2000))]));
  }],
  'truncated preamble, then stall': [4, async (c) => {
    const s = c.open();
    await s.connected;
    s.send(preamble(1).subarray(0, c.rng.range(1, 7)));
  }],
  'truncated preamble, then FIN': [3, async (c) => {
    const s = c.open();
    await s.connected;
    s.sock.end(preamble(1).subarray(0, c.rng.range(1, 7)));
  }],
  'preamble and half a first frame, then stall': [3, async (c) => {
    const s = c.open();
    await s.connected;
    const f = frameOf(c.lib, [{ subtype: 'MP_CAPABLE', version: 1, flags: 0x03 }]);
    s.send(concat([preamble(1), f.subarray(0, c.rng.range(1, f.length - 1))]));
  }],
  'connect and send nothing': [2, async (c) => {
    const s = c.open();
    await s.connected;
  }],
  'oversized option or payload length': [6, async (c) => {
    const s = c.open();
    await s.connected;
    const big = c.rng.chance(0.5) ? { optLen: c.rng.range(513, 65535) } : { payloadLen: c.rng.pick([65536, 0x10000 + c.rng.int(1e6), 0xffffffff, 0x80000000]) };
    s.send(concat([preamble(1), frame({ ...big, opts: c.lib.encodeOption({ subtype: 'MP_CAPABLE', version: 1, flags: 0x03 }) }), c.rng.bytes(c.rng.int(1000))]));
  }],
  'unknown frame type or flags': [6, async (c) => {
    const s = c.open();
    await s.connected;
    const bad = c.rng.chance(0.5) ? { type: c.rng.pick([0, 2, 3, 0x7f, 0x80, 0xff, c.rng.int(256) | 2]) } : { flags: c.rng.range(4, 255) };
    s.send(concat([preamble(1), frame({ ...bad, opts: c.lib.encodeOption({ subtype: 'MP_CAPABLE', version: 1, flags: 0x03 }) })]));
  }],
  'malformed first option': [8, async (c) => {
    const s = c.open();
    await s.connected;
    let bad = mutate(c.rng, c.lib.encodeOption(randomOptionObject(c.rng, c.rng.pick([1, 2]))), randomValidOptionBytes(c.rng), 3);
    if (bad.length > 512) bad = bad.subarray(0, 512);
    s.send(concat([preamble(1), frame({ opts: bad, payload: c.rng.bytes(c.rng.int(64)) })]));
  }],
  'first frame without MP_CAPABLE / MP_JOIN SYN': [5, async (c) => {
    const s = c.open();
    await s.connected;
    const shape = c.rng.pick([3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
    const opts = c.rng.chance(0.2) ? [] : [randomOptionObject(c.rng, shape)];
    s.send(concat([preamble(1), frameOf(c.lib, opts, { payload: c.rng.chance(0.3) ? c.rng.bytes(100) : undefined })]));
  }],
  'bad MP_CAPABLE SYN (version, tokens, payload)': [5, async (c) => {
    const s = c.open();
    await s.connected;
    const r = c.rng.int(4);
    const o = r === 0 ? { subtype: 'MP_CAPABLE', version: c.rng.pick([0, 2, 15]), flags: 0x03 } : r === 1 ? { subtype: 'MP_CAPABLE', version: 1, flags: 0x03, senderToken: c.rng.u32() } : r === 2 ? { subtype: 'MP_CAPABLE', version: 1, flags: 0x03, senderToken: c.rng.u32(), receiverToken: c.rng.u32() } : { subtype: 'MP_CAPABLE', version: 1, flags: 0x03 };
    s.send(concat([preamble(1), frameOf(c.lib, [o], { payload: r === 3 ? c.rng.bytes(c.rng.range(1, 500)) : undefined })]));
  }],
  'MP_JOIN SYN with an unknown token, then frames after the MP_TCPRST': [8, async (c) => {
    const s = c.open();
    await s.connected;
    s.send(concat([preamble(1), frameOf(c.lib, [{ subtype: 'MP_JOIN', stage: 'syn', backup: false, addressId: c.rng.int(256), receiverToken: c.rng.u32(), senderRandom: c.rng.u32() }])]));
    await s.option('MP_TCPRST', 2000);
    for (let i = 0; i < 3; i++) s.send(frameOf(c.lib, [randomOptionObject(c.rng)], { payload: c.rng.bytes(c.rng.int(200)) }));
  }],
  'MP_CAPABLE handshake, then a join before the keys': [4, async (c) => {
    const h = await capableHandshake(c, c.open());
    if (!h) return;
    const j = c.open();
    await j.connected;
    j.send(concat([preamble(1), frameOf(c.lib, [{ subtype: 'MP_JOIN', stage: 'syn', backup: false, addressId: 1, receiverToken: h.tokenB, senderRandom: c.rng.u32() }])]));
    await j.option('MP_TCPRST', 2000);
    // garbage on the initial subflow ends the connection
    h.s.send(c.rng.bytes(c.rng.range(16, 200)));
  }],
  'MP_CAPABLE SYN, then DSS before the third ACK': [3, async (c) => {
    const s = c.open();
    await s.connected;
    s.send(concat([preamble(1), frameOf(c.lib, [{ subtype: 'MP_CAPABLE', version: 1, flags: 0x03 }])]));
    await s.option('MP_CAPABLE', 2000);
    s.send(frameOf(c.lib, [{ subtype: 'DSS', dataFin: false, dsn: c.rng.u64(), dsnIs64: true, ssn: 1, dataLevelLength: 10 }], { payload: c.rng.bytes(10) }));
  }],
  'MP_CAPABLE third ACK with wrong tokens': [3, async (c) => {
    const s = c.open();
    await s.connected;
    s.send(concat([preamble(1), frameOf(c.lib, [{ subtype: 'MP_CAPABLE', version: 1, flags: 0x03 }])]));
    const synack = await s.option('MP_CAPABLE', 2000);
    if (!synack) return;
    const r = c.rng.int(3);
    const wrong =
      r === 0
        ? { flags: 0x03, senderToken: c.rng.u32(), receiverToken: (synack.senderToken + 1) >>> 0 }
        : r === 1
          ? { flags: 0x03, senderToken: c.rng.u32() }
          : { flags: 0x01, senderKey: c.rng.bytes(8), receiverKey: c.rng.bytes(8) }; // the other key mode
    s.send(frameOf(c.lib, [{ subtype: 'MP_CAPABLE', version: 1, ...wrong }]));
  }],
  'valid handshake, then absurd DSS': [14, async (c) => {
    const h = await capableHandshake(c, c.open());
    if (!h) return;
    const { s, idsnA } = h;
    const L = c.lib;
    const r = c.rng;
    const dsnAt = (off) => (idsnA + 1n + BigInt(off)) & 0xffffffffffffffffn;
    const variant = r.int(12);
    const sends = [];
    switch (variant) {
      case 0: // a huge DSN (outside any window) with its payload
        sends.push(frameOf(L, [{ subtype: 'DSS', dataFin: false, dsn: r.u64(), dsnIs64: true, ssn: 1, dataLevelLength: 100 }], { payload: r.bytes(100) }));
        break;
      case 1: // a data ACK beyond anything the server sent, with an absurd window
        sends.push(frameOf(L, [{ subtype: 'DSS', dataFin: false, dataAck: r.u64(), dataAckIs64: true }], { window: 0xffffffff, ack: r.u32() }));
        break;
      case 2: // data-level length 0 with a payload
        sends.push(frameOf(L, [{ subtype: 'DSS', dataFin: false, dsn: dsnAt(0), dsnIs64: true, ssn: 1, dataLevelLength: 0 }], { payload: r.bytes(r.range(1, 1000)) }));
        break;
      case 3: // data-level length 65535 with a short payload, then a different mapping
        sends.push(frameOf(L, [{ subtype: 'DSS', dataFin: false, dsn: dsnAt(0), dsnIs64: true, ssn: 1, dataLevelLength: 65535 }], { payload: r.bytes(r.range(1, 100)) }));
        sends.push(frameOf(L, [{ subtype: 'DSS', dataFin: false, dsn: dsnAt(5000), dsnIs64: true, ssn: 7, dataLevelLength: 10 }], { payload: r.bytes(10) }));
        break;
      case 4: // a mapping at the wrong subflow sequence number
        sends.push(frameOf(L, [{ subtype: 'DSS', dataFin: false, dsn: BigInt.asUintN(32, dsnAt(0)), dsnIs64: false, ssn: r.u32(), dataLevelLength: 50 }], { payload: r.bytes(50) }));
        break;
      case 5: // payload without any mapping
        sends.push(frame({ payload: r.bytes(r.range(1, 3000)) }));
        break;
      case 6: // a DATA_FIN at an absurd place, then data after it
        sends.push(frameOf(L, [{ subtype: 'DSS', dataFin: true, dsn: r.chance(0.5) ? r.u64() : dsnAt(r.int(1 << 22)), dsnIs64: true, ssn: 0, dataLevelLength: 1 }]));
        sends.push(frameOf(L, [{ subtype: 'DSS', dataFin: false, dsn: dsnAt(0), dsnIs64: true, ssn: 1, dataLevelLength: 20 }], { payload: r.bytes(20) }));
        break;
      case 7: { // out-of-order 1-byte pieces (held until the connection dies)
        for (let i = 0; i < 200; i++) sends.push(frameOf(L, [{ subtype: 'DSS', dataFin: false, dsn: dsnAt(2 + 2 * (200 - i)), dsnIs64: true, ssn: 1 + i, dataLevelLength: 1 }], { payload: r.bytes(1) }));
        break;
      }
      case 8: // control options nobody authenticated: FASTCLOSE with a wrong key, ADD_ADDR, REMOVE_ADDR, MP_PRIO, MP_FAIL, NEW_KEY
        sends.push(frameOf(L, [{ subtype: 'MP_FASTCLOSE', receiverKey: r.bytes(8) }]));
        sends.push(frameOf(L, [randomOptionObject(r, r.pick([6, 7])), { subtype: 'REMOVE_ADDR', addressIds: [r.int(256), 0] }, { subtype: 'MP_PRIO', backup: true }]));
        sends.push(frameOf(L, [{ subtype: 'MP_FAIL', dsn: r.u64() }, { subtype: 'NEW_KEY', keyId: r.int(2), hmac: r.bytes(8) }]));
        sends.push(frameOf(L, [{ subtype: 'MP_CAPABLE', version: 1, flags: 0x03, senderToken: r.u32(), receiverToken: r.u32() }]));
        sends.push(frameOf(L, [{ subtype: 'MP_JOIN', stage: 'ack', hmac: r.bytes(20) }]));
        break;
      case 9: // a valid mapping carrying garbage where a TLS ClientHello belongs
        sends.push(frameOf(L, [{ subtype: 'DSS', dataFin: false, dsn: dsnAt(0), dsnIs64: true, ssn: 1, dataLevelLength: 600 }], { payload: concat([Uint8Array.of(r.pick([0x16, 0x17, 0x80, 0x00])), r.bytes(599)]) }));
        break;
      case 10: // our own MP_TCPRST, then frames after it
        sends.push(frameOf(L, [{ subtype: 'MP_TCPRST', flags: 0, reason: r.int(256) }]));
        for (let i = 0; i < 3; i++) sends.push(frameOf(L, [randomOptionObject(r)], { payload: r.bytes(r.int(100)) }));
        break;
      default: // many random valid options in one frame
      {
        const opts = [];
        for (let i = 0; i < 6; i++) opts.push(randomOptionObject(r));
        let bytes = concat(opts.map((o) => L.encodeOption(o)));
        if (bytes.length > 512) bytes = L.encodeOption(opts[0]);
        sends.push(frame({ opts: bytes, payload: r.bytes(r.int(300)), window: r.u32(), ack: r.u32() }));
      }
    }
    for (const b of sends) s.send(b);
  }],
  'valid handshake, then garbage': [6, async (c) => {
    const h = await capableHandshake(c, c.open());
    if (!h) return;
    const g = c.rng.int(3);
    if (g === 0) h.s.send(c.rng.bytes(c.rng.range(1, 3000)));
    else if (g === 1) h.s.send(frame({ type: c.rng.range(2, 255) }));
    else {
      let bad = mutate(c.rng, c.lib.encodeOption(randomOptionObject(c.rng, 5)), randomValidOptionBytes(c.rng), 3);
      if (bad.length > 512) bad = bad.subarray(0, 512);
      h.s.send(frame({ opts: bad }));
    }
  }],
  'valid handshake, then silence': [2, async (c) => {
    await capableHandshake(c, c.open());
  }],
  'rfc8684 handshake, valid join, then attacks': [6, async (c) => {
    const L = c.lib;
    const s = c.open();
    await s.connected;
    const keyA = c.rng.bytes(8);
    s.send(concat([preamble(1), frameOf(L, [{ subtype: 'MP_CAPABLE', version: 1, flags: 0x01 }])]));
    const synack = await s.option('MP_CAPABLE', 3000);
    if (!synack?.senderKey) return; // refused (rfc8684 not accepted)
    const keyB = synack.senderKey;
    c.keys.push(keyA, keyB);
    s.send(frameOf(L, [{ subtype: 'MP_CAPABLE', version: 1, flags: 0x01, senderKey: keyA, receiverKey: keyB }]));
    const v = c.rng.int(5);
    if (v === 0) {
      // an authenticated MP_FASTCLOSE closes it
      s.send(frameOf(L, [{ subtype: 'MP_FASTCLOSE', receiverKey: keyB }]));
      return;
    }
    const tokenB = L.tokenFromKey(keyB);
    const j = c.open();
    await j.connected;
    const randA = c.rng.u32();
    j.send(concat([preamble(1), frameOf(L, [{ subtype: 'MP_JOIN', stage: 'syn', backup: false, addressId: 1, receiverToken: tokenB, senderRandom: randA }])]));
    const js = await j.option('MP_JOIN', 3000, 'synack');
    if (!js) return;
    const good = v !== 1;
    const hmac = good ? L.joinAckHmac(keyA, keyB, randA, js.senderRandom) : c.rng.bytes(20);
    j.send(frameOf(L, [{ subtype: 'MP_JOIN', stage: 'ack', hmac }]));
    if (!good) return;
    await j.until(() => j.segments.length >= 2, 2000);
    // the joined subflow then misbehaves
    if (v === 2) j.send(c.rng.bytes(c.rng.range(1, 500)));
    else if (v === 3) j.send(frameOf(L, [{ subtype: 'DSS', dataFin: false, dsn: c.rng.u64(), dsnIs64: true, ssn: 77, dataLevelLength: 65535 }], { payload: c.rng.bytes(10) }));
    else j.send(frameOf(L, [{ subtype: 'MP_CAPABLE', version: 1, flags: 0x01, senderKey: keyA }]));
    // and the first one sends a ClientHello-shaped lie
    const idsnA = L.idsnFromKey(keyA);
    s.send(frameOf(L, [{ subtype: 'DSS', dataFin: false, dsn: (idsnA + 1n) & 0xffffffffffffffffn, dsnIs64: true, ssn: 1, dataLevelLength: 300 }], { payload: concat([Uint8Array.of(0x16, 0x03, 0x01, 0x01, 0x20), c.rng.bytes(295)]) }));
  }],
  'no magic: garbage that TLS refuses at once': [4, async (c) => {
    const s = c.open();
    await s.connected;
    const r = c.rng.int(3);
    if (r === 0) s.send(new TextEncoder().encode('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    else if (r === 1) s.send(concat([Uint8Array.of(0x16, 0x03, 0x01, 0xff, 0xff), c.rng.bytes(c.rng.range(0, 300))]));
    else {
      // neither a TLS content type nor SSLv2 in the first byte, and no TLS major version
      // 3 in the second (else OpenSSL waits for the whole record: see the known issue below)
      const b = concat([Uint8Array.of(c.rng.pick([c.rng.int(0x14), 0x19 + c.rng.int(0x7f - 0x19)])), c.rng.bytes(c.rng.range(8, 300))]);
      if (b[1] === 3) b[1] = 4;
      s.send(b);
    }
  }, { plain: true }],
  'no magic: a partial TLS ClientHello, then stall': [1, async (c) => {
    const s = c.open();
    await s.connected;
    s.send(concat([Uint8Array.of(0x16, 0x03, 0x01, 0x02, 0x00, 0x01), c.rng.bytes(c.rng.range(0, 100))]));
  }, {
    plain: true,
    // fixed: src/api/server.ts destroys the socket on tlsClientError (it used to stay open for ever)
  }],
};

/** Client side of the G-bit MP_CAPABLE handshake (tokens only, no TLS). */
async function capableHandshake(c, s) {
  const L = c.lib;
  await s.connected;
  s.send(concat([preamble(1), frameOf(L, [{ subtype: 'MP_CAPABLE', version: 1, flags: 0x03 }])]));
  const synack = await s.option('MP_CAPABLE', 3000);
  if (!synack || synack.senderToken === undefined) return undefined;
  const tokenA = c.rng.u32();
  const tokenB = synack.senderToken;
  s.send(frameOf(L, [{ subtype: 'MP_CAPABLE', version: 1, flags: 0x03, senderToken: tokenA, receiverToken: tokenB }]));
  await delay(c.rng.int(20));
  return { s, tokenA, tokenB, idsnA: L.idsnExternal('initiator') };
}

/**
 * Runs one session of `kind`; resolves with what the client saw on each of
 * its connections. A connection counts as handled when the server closed it
 * or answered MP_TCPRST / MP_FASTCLOSE within `deadlineMs`.
 */
export async function runSession(lib, kind, rng, target, deadlineMs) {
  const conns = [];
  const ctx = {
    lib,
    rng,
    keys: [],
    open: () => {
      const s = new RawConn(lib, { ...target, localAddress: target.localAddress?.() });
      conns.push(s);
      return s;
    },
  };
  const t0 = performance.now();
  let scriptError;
  try {
    await SESSION_KINDS[kind][1](ctx);
  } catch (e) {
    scriptError = e;
  }
  const results = [];
  for (const s of conns) {
    await s.connected;
    const left = Math.max(0, deadlineMs - (performance.now() - t0));
    const r = await s.outcome(left);
    results.push({ key: s.key, outcome: r.outcome, parseError: s.parseError, ms: performance.now() - t0 });
    s.destroy();
  }
  return { kind, results, keys: ctx.keys, scriptError: scriptError ? String(scriptError?.stack ?? scriptError) : undefined, ms: performance.now() - t0 };
}

/** Metadata of a kind: { plain?: the server answers with TLS, not mptls; known?: an open issue this kind reproduces }. */
export const kindInfo = (kind) => SESSION_KINDS[kind][2] ?? {};

export function pickKind(rng, exclude = []) {
  const names = Object.keys(SESSION_KINDS).filter((n) => !exclude.includes(n));
  return names[rng.weighted(names.map((n) => SESSION_KINDS[n][0]))];
}

// ───────────────────────────── server instrumentation ──────────────────────

/** Normalises a reason for the histogram: numbers out, so equal causes count together. */
export function reasonClass(msg) {
  return String(msg)
    .replace(/^bad mptls frame at stream offset \d+: /, 'frame: ')
    .replace(/malformed MPTCP option at offset \d+: /, '')
    .replace(/0x[0-9a-f]+/gi, 'N')
    .replace(/\d+/g, 'N')
    .slice(0, 120);
}

/**
 * Hooks an mptls server (`createServer()` result, from src or dist) so that
 * every raw TCP connection it accepts gets a record and, when it closes, one
 * reason. Also gathers every string the server produced (reasons, errors)
 * and both keys of every connection it made, for the key-material scan.
 *
 * `keysOf` is `keysForTesting` from the same build as the server
 * (src/core/connection.ts or dist/core/connection/index.js): the keys are #private,
 * so nothing else can read them. Keys are read when the connection is
 * established, when its keys are installed, when its TLS session is up and
 * when it closes; `keyStats()` says how many connections gave how many keys.
 */
export function instrumentServer(server, { keysOf } = {}) {
  if (typeof keysOf !== 'function') throw new TypeError('instrumentServer(server, { keysOf }): pass keysForTesting from the build the server runs');
  const acceptor = server.mptcp.acceptor;
  const stats = acceptor.stats;
  const events = acceptor.events; // private in TypeScript, reachable at run time
  const records = [];
  const byKey = new Map();
  const bySocket = new WeakMap();
  const strings = [];
  const keys = [];
  const drivers = new Set();
  let lastTimeouts = stats.preambleTimeouts;
  let maxPending = 0;
  const t0 = performance.now();

  const recFor = (sock) => bySocket.get(sock);
  const note = (rec, ev) => {
    if (rec && !rec.events.includes(ev)) rec.events.push(ev);
  };
  const keySeen = new Set();
  /** Per connection (driver): the hex of its local and remote key once seen, its mode, whether TLS came up. */
  const connKeys = new Map();
  const keyStats = { connections: 0, externalSecure: 0, readErrors: 0 };
  const collectKeys = (driver) => {
    let rec = connKeys.get(driver);
    if (!rec) connKeys.set(driver, (rec = { mode: driver.conn.mode, local: undefined, remote: undefined, secure: false }));
    let got;
    try {
      got = keysOf(driver.conn);
    } catch (e) {
      keyStats.readErrors++;
      strings.push(String(e?.message ?? e));
      return rec;
    }
    for (const side of ['local', 'remote']) {
      const k = got?.[`${side}Key`];
      if (!(k instanceof Uint8Array) || k.length === 0 || k.every((b) => b === 0)) continue;
      const h = hex(k);
      rec[side] ??= h;
      if (!keySeen.has(h)) {
        keySeen.add(h);
        keys.push(Uint8Array.from(k));
      }
    }
    return rec;
  };

  const handle = acceptor.handle.bind(acceptor);
  acceptor.handle = (socket) => {
    const rec = { key: `${socket.remoteAddress}:${socket.remotePort}`, at: performance.now() - t0, events: [], closedAt: undefined };
    records.push(rec);
    byKey.set(rec.key, rec);
    bySocket.set(socket, rec);
    const overload = stats.overload;
    const destroy = socket.destroy;
    socket.destroy = function (err) {
      if (stats.preambleTimeouts > lastTimeouts) {
        lastTimeouts = stats.preambleTimeouts;
        note(rec, 'preamble timeout');
      }
      return destroy.call(this, err);
    };
    socket.once('error', (e) => {
      strings.push(e.message);
      note(rec, `socket error ${e.code ?? ''}`.trim());
    });
    socket.once('close', () => (rec.closedAt = performance.now() - t0));
    handle(socket);
    if (stats.overload > overload) note(rec, 'overload (maxPendingSubflows)');
    if (acceptor.pendingSubflows > maxPending) maxPending = acceptor.pendingSubflows;
  };

  const refused = events.refused;
  events.refused = (reason, socket) => {
    strings.push(reason);
    note(recFor(socket), reason.startsWith('bad mptls frame') ? `first frame: ${reasonClass(reason).replace(/^frame: /, '')}` : `refused: ${reasonClass(reason)}`);
    return refused(reason, socket);
  };
  const plain = events.plain;
  events.plain = (socket) => {
    note(recFor(socket), 'plain TLS');
    return plain(socket);
  };
  const connection = events.connection;
  events.connection = (driver) => {
    drivers.add(driver);
    keyStats.connections++;
    collectKeys(driver);
    driver.on('established', () => collectKeys(driver));
    driver.on('keys-installed', () => collectKeys(driver));
    const first = driver.firstSocket();
    const rec = first && recFor(first);
    note(rec, 'connection');
    const subRecs = new Map([[0, rec]]);
    const attach = driver.attach.bind(driver);
    driver.attach = (id, socket, ...rest) => {
      const r = recFor(socket);
      subRecs.set(id, r);
      note(r, 'join');
      return attach(id, socket, ...rest);
    };
    driver.on('frame-error', (id, e) => {
      strings.push(String(e?.message ?? e));
      note(subRecs.get(id), `frame error: ${reasonClass(e?.reason ?? e?.message ?? e)}`);
    });
    driver.once('closed', (reason) => {
      collectKeys(driver);
      for (const r of subRecs.values()) note(r, `closed: ${reason}`);
      drivers.delete(driver);
    });
    return connection(driver);
  };
  const onTlsError = (err, tlsSocket) => {
    strings.push(err.message);
    const code = err.code ?? reasonClass(err.message);
    const driver = tlsSocket?.mptcp?.driver;
    if (driver) {
      const s = driver.firstSocket();
      note(s && recFor(s), `TLS: ${code}`);
    } else {
      const rec = byKey.get(`${tlsSocket?.remoteAddress}:${tlsSocket?.remotePort}`);
      note(rec, `TLS: ${code}`);
    }
  };
  server.on('tlsClientError', onTlsError);
  server.on('secureConnection', (s) => {
    s.on('error', (e) => strings.push(e.message));
    const sd = s.mptcp?.driver;
    if (sd) {
      // TLS is up: an external-mode connection has installed both keys by now.
      const rec = collectKeys(sd);
      if (!rec.secure && rec.mode === 'external') keyStats.externalSecure++;
      rec.secure = true;
    }
    s.once('close', () => {
      const d = s.mptcp?.driver;
      if (d) {
        collectKeys(d);
        for (const e of d.errors) strings.push(e);
      }
    });
  });

  /** One reason per closed record (see the histogram in the report). */
  const reasonOf = (rec) => {
    const ev = rec.events;
    if (ev.length === 0) return rec.closedAt === undefined ? 'open' : 'peer closed before its first frame';
    if (ev[0] === 'connection' || ev[0] === 'join') {
      const rest = ev.slice(1);
      const detail = rest.filter((e) => !e.startsWith('closed:'));
      const closed = rest.find((e) => e.startsWith('closed:'));
      return `${ev[0] === 'join' ? 'join' : 'connection'} ${closed ?? (rec.closedAt === undefined ? 'open' : 'subflow closed')}${detail.length ? ` after ${detail.join(', ')}` : ''}`;
    }
    return ev.join(' + ');
  };

  return {
    records,
    strings,
    keys,
    get maxPending() {
      return maxPending;
    },
    /** Records still open. */
    open: () => records.filter((r) => r.closedAt === undefined).length,
    histogram() {
      const h = {};
      for (const r of records) {
        const k = reasonOf(r);
        h[k] = (h[k] ?? 0) + 1;
      }
      return h;
    },
    /** [{ key, at, reason }] for joining with the client's sessions. */
    reasons: () => records.map((r) => ({ key: r.key, at: r.at, reason: reasonOf(r), closed: r.closedAt !== undefined })),
    liveDrivers: () => drivers.size,
    /**
     * How many keys came from how many connections: `connections` seen,
     * `withBothKeys`, `externalSecure` (external mode, TLS up: each must give
     * two keys), `externalMissing` (those that did not), `keys` (distinct).
     */
    keyStats() {
      let withBothKeys = 0;
      let externalMissing = 0;
      let rfc8684WithKeys = 0;
      for (const r of connKeys.values()) {
        if (r.local && r.remote) withBothKeys++;
        if (r.mode === 'external' && r.secure && !(r.local && r.remote)) externalMissing++;
        if (r.mode === 'rfc8684' && r.local && r.remote) rfc8684WithKeys++;
      }
      return { ...keyStats, withBothKeys, externalMissing, rfc8684WithKeys, keys: keys.length };
    },
  };
}

// ───────────────────────────── key-material scan ───────────────────────────

/** Every text form a key could take in a log line or error message. */
function keyForms(k) {
  const b = Buffer.from(k);
  const h = b.toString('hex');
  return [h, h.toUpperCase(), b.toString('base64').replace(/=+$/, ''), b.toString('base64url'), BigInt(`0x${h}`).toString(), Array.from(b).join(', '), Array.from(b).join(','), b.toString('latin1')];
}

/** Returns the strings that contain any form of any key (nothing, we hope). */
export function scanForKeys(strings, keys) {
  const forms = [];
  const seen = new Set();
  for (const k of keys) {
    const h = hex(k);
    if (seen.has(h) || /^(00)+$/.test(h)) continue;
    seen.add(h);
    for (const f of keyForms(k)) if (f.length >= 8) forms.push([h, f]);
  }
  const hits = [];
  for (const s of strings) {
    for (const [h, f] of forms) {
      if (s.includes(f)) {
        hits.push({ key: h, line: s.slice(0, 200) });
        break;
      }
    }
  }
  return { keys: seen.size, strings: strings.length, hits };
}

/** What a planted line starts with (see plantLine / auditKeys). */
export const PLANT_MARK = 'mptls-fuzz self-check, a planted key:';

/**
 * A log line carrying `key` in one of its text forms (0 hex, 1 HEX, 2 base64,
 * 3 base64url, 4 decimal, 5 byte list; hex when the form is too short to be
 * searched). Planted into the scanned output, it proves the scan can fail.
 */
export function plantLine(key, form = 0) {
  const forms = keyForms(key).slice(0, 6);
  const f = forms[((form % forms.length) + forms.length) % forms.length];
  return `${PLANT_MARK} ${f.length >= 8 ? f : forms[0]}`;
}

const distinctKeys = (ks) => {
  const m = new Map();
  for (const k of ks) {
    if (!(k instanceof Uint8Array) || k.length === 0 || k.every((b) => b === 0)) continue;
    m.set(hex(k), k);
  }
  return m;
};

/**
 * The key-leak check, in a form that can fail. `server` / `client` are every
 * key each side's connections held; `strings` everything that was said
 * (planted lines included); `plants` the lines planted into them, each
 * `{ side, line }`. Fails (in `failures`) when
 *  - any string, planted lines cut out, contains any form of any key;
 *  - no line was planted, a planted line is missing from `strings`, or the
 *    scan does not find it with that side's keys alone;
 *  - a side has fewer keys than `minServerKeys` / `minClientKeys`
 *    (callers pass 2 × the external-mode connections that side established);
 *  - a key in `serverMustHave` (e.g. the legitimate clients' keys, which the
 *    server's connections hold too) was not among the server's keys.
 */
export function auditKeys({ strings, server, client, plants = [], minServerKeys = 1, minClientKeys = 1, serverMustHave = [] }) {
  const s = distinctKeys(server);
  const c = distinctKeys(client);
  const all = new Map([...s, ...c]);
  const failures = [];
  const cleaned = plants.length ? strings.map((str) => plants.reduce((acc, p) => (acc.includes(p.line) ? acc.split(p.line).join('') : acc), str)) : strings;
  const scan = scanForKeys(cleaned, [...all.values()]);
  if (scan.hits.length) failures.push(`${scan.hits.length} strings contain key material`);
  const planted = plants.map((p) => {
    const side = p.side === 'server' ? s : c;
    const carriers = strings.filter((str) => str.includes(p.line));
    const bySide = carriers.length ? scanForKeys(carriers, [...side.values()]).hits.length : 0;
    const byAll = carriers.length ? scanForKeys(carriers, [...all.values()]).hits.length : 0;
    const found = carriers.length > 0 && bySide === carriers.length && byAll === carriers.length;
    if (!found) failures.push(`self-check: the ${p.side} key planted as "${p.line.slice(0, 60)}…" was ${carriers.length ? 'not found by the scan' : 'not in the scanned output'}`);
    return { side: p.side, carriers: carriers.length, found };
  });
  if (!plants.some((p) => p.side === 'server')) failures.push('self-check: no server key was planted (no server key to plant?)');
  if (!plants.some((p) => p.side === 'client')) failures.push('self-check: no client key was planted (no client key to plant?)');
  if (s.size < Math.max(1, minServerKeys)) failures.push(`implausible: ${s.size} server-side keys, expected at least ${Math.max(1, minServerKeys)}`);
  if (c.size < Math.max(1, minClientKeys)) failures.push(`implausible: ${c.size} client-side keys, expected at least ${Math.max(1, minClientKeys)}`);
  const missing = [...distinctKeys(serverMustHave).keys()].filter((h) => !s.has(h));
  if (missing.length) failures.push(`${missing.length} keys of legitimate connections were not among the server's keys`);
  return {
    keys: { server: s.size, client: c.size, total: all.size },
    strings: strings.length,
    hits: scan.hits,
    planted,
    failures,
  };
}

// ───────────────────────────── the session pool ────────────────────────────

/**
 * Runs `sessions` bad sessions `concurrency` at a time. `hooks.every` is
 * awaited after each `everyN` sessions started (a legitimate client proves
 * the server still accepts).
 */
export async function runSessions(lib, { sessions, concurrency, seed, target, deadlineMs, everyN, every, onProgress, exclude = [] }) {
  const master = makeRng(seed);
  let started = 0;
  const done = [];
  const everyResults = [];
  const pending = new Set();
  const t0 = performance.now();
  const launch = () => {
    const i = started++;
    const rng = makeRng((seed * 1000003 + i) >>> 0);
    const kind = pickKind(master, exclude);
    const p = runSession(lib, kind, rng, target, deadlineMs).then((r) => {
      r.index = i;
      r.seed = (seed * 1000003 + i) >>> 0;
      done.push(r);
      pending.delete(p);
      onProgress?.(done.length);
    });
    pending.add(p);
  };
  while (started < sessions) {
    while (pending.size < concurrency && started < sessions) {
      launch();
      if (every && everyN && started % everyN === 0) {
        everyResults.push(await every(started));
      }
    }
    await Promise.race(pending);
  }
  await Promise.all(pending);
  return { sessions: done, everyResults, ms: performance.now() - t0 };
}

/** Client-side summary: per kind, what the client saw; and the sessions nobody ended. */
export function summariseSessions(done) {
  const byKind = {};
  const byOutcome = {};
  const unhandled = [];
  const known = [];
  const scriptErrors = [];
  const parseErrors = [];
  let conns = 0;
  for (const s of done) {
    byKind[s.kind] = (byKind[s.kind] ?? 0) + 1;
    if (s.scriptError) scriptErrors.push({ kind: s.kind, seed: s.seed, error: s.scriptError.slice(0, 300) });
    for (const r of s.results) {
      conns++;
      const o = r.outcome.replace(/reason \d+/, (m) => m);
      byOutcome[o] = (byOutcome[o] ?? 0) + 1;
      const info = kindInfo(s.kind);
      if (r.outcome.startsWith('deadline')) (info.known ? known : unhandled).push({ kind: s.kind, seed: s.seed, key: r.key, ...(info.known ? { issue: info.known } : {}) });
      if (r.parseError && !info.plain) parseErrors.push({ kind: s.kind, seed: s.seed, error: r.parseError });
    }
  }
  return { sessions: done.length, connections: conns, byKind, byOutcome, unhandled, known, scriptErrors, parseErrors };
}

/** Joins the client's connections with the server's records (by address:port, in order): kind → server reason. */
export function crossTab(done, serverReasons) {
  const queues = new Map();
  for (const r of serverReasons) {
    let q = queues.get(r.key);
    if (!q) queues.set(r.key, (q = []));
    q.push(r);
  }
  const conns = [];
  for (const s of done) for (const r of s.results) conns.push({ kind: s.kind, key: r.key, ms: r.ms });
  const tab = {};
  let unmatched = 0;
  for (const c of conns) {
    const q = c.key ? queues.get(c.key) : undefined;
    const r = q?.shift();
    if (!r) {
      unmatched++;
      continue;
    }
    const row = (tab[c.kind] ??= {});
    row[r.reason] = (row[r.reason] ?? 0) + 1;
  }
  return { tab, unmatched };
}
