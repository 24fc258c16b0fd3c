/**
 * Minimal pcap writer and a solid pcap/pcapng reader for TCP traffic.
 *
 * Writer: classic pcap (microsecond timestamps), linktype 1 (Ethernet) or
 * 101 (raw IP); IPv4 or IPv6 (chosen per packet from the address text) and
 * TCP headers with correct checksums; the TCP options area is NOP-padded to
 * a multiple of 4 (at most 40 bytes).
 *
 * Reader: classic pcap (either byte order, µs or ns timestamps) and pcapng
 * (SHB/IDB/EPB/SPB/obsolete PB, either byte order, if_tsresol/if_tsoffset);
 * linktypes 0 NULL / 108 LOOP, 1 Ethernet (with 802.1Q/802.1ad tags),
 * 12/14/101 raw IP, 113 Linux cooked (SLL), 228 raw IPv4, 229 raw IPv6,
 * 276 Linux cooked v2 (SLL2). IPv4 (options, non-first fragments skipped)
 * and IPv6 (extension headers walked). Returns the TCP segments only.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { encodeOption, parseIpv4, parseIpv6, formatIpv4, formatIpv6, type MptcpOption } from '../../src/wire/index.js';
import { concat } from './bytes.mjs';

// ---------------------------------------------------------------------------
// TCP flags

export const TcpFlags = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
  ECE: 0x40,
  CWR: 0x80,
} as const;

export interface TcpFlagSet {
  fin: boolean;
  syn: boolean;
  rst: boolean;
  psh: boolean;
  ack: boolean;
  urg: boolean;
  ece: boolean;
  cwr: boolean;
}

function flagSet(bits: number): TcpFlagSet {
  return {
    fin: (bits & 0x01) !== 0,
    syn: (bits & 0x02) !== 0,
    rst: (bits & 0x04) !== 0,
    psh: (bits & 0x08) !== 0,
    ack: (bits & 0x10) !== 0,
    urg: (bits & 0x20) !== 0,
    ece: (bits & 0x40) !== 0,
    cwr: (bits & 0x80) !== 0,
  };
}

// ---------------------------------------------------------------------------
// Writer

export interface TcpPacketSpec {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** Raw TCP flag bits (TcpFlags.*); default ACK. */
  flags?: number;
  seq?: number;
  ack?: number;
  window?: number;
  /** MPTCP options (or already-encoded options of any kind) for the options area. */
  options?: (MptcpOption | Uint8Array)[];
  payload?: Uint8Array;
  /** Seconds since the epoch; default: 1 700 000 000 + index / 1000. */
  timestamp?: number;
}

/** Concatenates encoded TCP options and NOP-pads to a multiple of 4; throws above 40 bytes. */
export function tcpOptionsArea(options: readonly (MptcpOption | Uint8Array)[]): Uint8Array {
  const parts = options.map((o) => (o instanceof Uint8Array ? o : encodeOption(o)));
  const len = parts.reduce((n, p) => n + p.length, 0);
  const padded = (len + 3) & ~3;
  if (padded > 40) throw new Error(`TCP options need ${len} bytes (padded ${padded}); at most 40 fit`);
  const out = new Uint8Array(padded).fill(1);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function sum16(b: Uint8Array, start: number, end: number, acc: number): number {
  let i = start;
  for (; i + 1 < end; i += 2) acc += (b[i] << 8) | b[i + 1];
  if (i < end) acc += b[i] << 8;
  return acc;
}

function fold(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + Math.floor(acc / 0x10000);
  return ~acc & 0xffff;
}

function parseAddr(text: string): Uint8Array {
  const a = parseIpv4(text) ?? parseIpv6(text);
  if (!a) throw new Error(`bad IP address ${JSON.stringify(text)}`);
  return a;
}

/** Builds an IPv4 or IPv6 packet (no link header) carrying one TCP segment. */
export function buildIpTcpPacket(spec: TcpPacketSpec): Uint8Array {
  const src = parseAddr(spec.src);
  const dst = parseAddr(spec.dst);
  if (src.length !== dst.length) throw new Error('src and dst must be the same address family');
  const opts = tcpOptionsArea(spec.options ?? []);
  const payload = spec.payload ?? new Uint8Array(0);
  const tcpLen = 20 + opts.length + payload.length;
  const tcp = new Uint8Array(tcpLen);
  const tv = new DataView(tcp.buffer);
  tv.setUint16(0, spec.sport);
  tv.setUint16(2, spec.dport);
  tv.setUint32(4, (spec.seq ?? 1000) >>> 0);
  tv.setUint32(8, (spec.ack ?? 0) >>> 0);
  tcp[12] = ((20 + opts.length) / 4) << 4;
  tcp[13] = spec.flags ?? TcpFlags.ACK;
  tv.setUint16(14, spec.window ?? 65535);
  tcp.set(opts, 20);
  tcp.set(payload, 20 + opts.length);
  // Pseudo-header checksum.
  let acc = sum16(src, 0, src.length, 0);
  acc = sum16(dst, 0, dst.length, acc);
  acc += 6 + tcpLen;
  acc = sum16(tcp, 0, tcp.length, acc);
  tv.setUint16(16, fold(acc));

  if (src.length === 4) {
    const ip = new Uint8Array(20 + tcpLen);
    const v = new DataView(ip.buffer);
    ip[0] = 0x45;
    v.setUint16(2, ip.length);
    v.setUint16(4, 0x1234);
    v.setUint16(6, 0x4000);
    ip[8] = 64;
    ip[9] = 6;
    ip.set(src, 12);
    ip.set(dst, 16);
    v.setUint16(10, fold(sum16(ip, 0, 20, 0)));
    ip.set(tcp, 20);
    return ip;
  }
  const ip = new Uint8Array(40 + tcpLen);
  const v = new DataView(ip.buffer);
  v.setUint32(0, 0x60000000);
  v.setUint16(4, tcpLen);
  ip[6] = 6;
  ip[7] = 64;
  ip.set(src, 8);
  ip.set(dst, 24);
  ip.set(tcp, 40);
  return ip;
}

/** Builds a classic pcap file (µs timestamps) of the given TCP segments. */
export function buildPcap(packets: readonly TcpPacketSpec[], linktype: 1 | 101 = 1): Uint8Array {
  const frames = packets.map((p) => {
    const ip = buildIpTcpPacket(p);
    if (linktype === 101) return ip;
    const eth = new Uint8Array(14 + ip.length);
    eth.set([0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01], 0);
    eth[12] = ip[0] >> 4 === 6 ? 0x86 : 0x08;
    eth[13] = ip[0] >> 4 === 6 ? 0xdd : 0x00;
    eth.set(ip, 14);
    return eth;
  });
  const total = 24 + frames.reduce((n, f) => n + 16 + f.length, 0);
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0xa1b2c3d4, true);
  v.setUint16(4, 2, true);
  v.setUint16(6, 4, true);
  v.setUint32(16, 65535, true);
  v.setUint32(20, linktype, true);
  let o = 24;
  frames.forEach((f, i) => {
    const ts = packets[i].timestamp ?? 1_700_000_000 + i / 1000;
    const sec = Math.floor(ts);
    v.setUint32(o, sec, true);
    v.setUint32(o + 4, Math.round((ts - sec) * 1e6) % 1_000_000, true);
    v.setUint32(o + 8, f.length, true);
    v.setUint32(o + 12, f.length, true);
    out.set(f, o + 16);
    o += 16 + f.length;
  });
  return out;
}

export interface RawFrame {
  data: Uint8Array;
  /** Original length on the wire (default data.length; larger means snaplen-truncated). */
  origLen?: number;
  /** Nanoseconds since the epoch (default: 1.7e18 + index * 1e6). */
  timestampNs?: bigint;
  /** pcapng only: the interface (index into the linktypes) the frame was captured on. */
  interfaceId?: number;
}

function defaultTs(i: number): bigint {
  return 1_700_000_000_000_000_000n + BigInt(i) * 1_000_000n;
}

/** Classic pcap of arbitrary link-layer frames, in either byte order, µs or ns timestamps. */
export function buildPcapFrames(
  frames: readonly RawFrame[],
  linktype: number,
  opts: { bigEndian?: boolean; nano?: boolean; snaplen?: number } = {},
): Uint8Array {
  const le = !opts.bigEndian;
  const total = 24 + frames.reduce((n, f) => n + 16 + f.data.length, 0);
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  v.setUint32(0, opts.nano ? 0xa1b23c4d : 0xa1b2c3d4, le);
  v.setUint16(4, 2, le);
  v.setUint16(6, 4, le);
  v.setUint32(16, opts.snaplen ?? 262144, le);
  v.setUint32(20, linktype, le);
  let o = 24;
  frames.forEach((f, i) => {
    const ts = f.timestampNs ?? defaultTs(i);
    v.setUint32(o, Number(ts / 1_000_000_000n), le);
    const frac = ts % 1_000_000_000n;
    v.setUint32(o + 4, Number(opts.nano ? frac : frac / 1000n), le);
    v.setUint32(o + 8, f.data.length, le);
    v.setUint32(o + 12, f.origLen ?? f.data.length, le);
    out.set(f.data, o + 16);
    o += 16 + f.data.length;
  });
  return out;
}

/**
 * pcapng with one section and one interface per linktype (if_tsresol 9 = ns
 * when `nano`), frames as enhanced packet blocks on `frame.interfaceId`
 * (default 0), in either byte order.
 */
export function buildPcapngFrames(
  frames: readonly RawFrame[],
  linktype: number | readonly number[],
  opts: { bigEndian?: boolean; nano?: boolean } = {},
): Uint8Array {
  const linktypes = typeof linktype === 'number' ? [linktype] : linktype;
  const le = !opts.bigEndian;
  const blocks: Uint8Array[] = [];
  const block = (type: number, body: Uint8Array) => {
    const padded = (body.length + 3) & ~3;
    const len = 12 + padded;
    const b = new Uint8Array(len);
    const v = new DataView(b.buffer);
    v.setUint32(0, type, le);
    v.setUint32(4, len, le);
    b.set(body, 8);
    v.setUint32(len - 4, len, le);
    blocks.push(b);
  };
  // Section header: byte-order magic, version 1.0, section length -1.
  const shb = new Uint8Array(16);
  const sv = new DataView(shb.buffer);
  sv.setUint32(0, 0x1a2b3c4d, le);
  sv.setUint16(4, 1, le);
  sv.setUint16(6, 0, le);
  sv.setBigInt64(8, -1n, le);
  block(0x0a0d0d0a, shb);
  // Interface descriptions, with if_tsresol when nano.
  for (const lt of linktypes) {
    const idb = new Uint8Array(opts.nano ? 8 + 8 + 4 : 8 + 4);
    const iv = new DataView(idb.buffer);
    iv.setUint16(0, lt, le);
    iv.setUint32(4, 262144, le);
    let p = 8;
    if (opts.nano) {
      iv.setUint16(p, 9, le);
      iv.setUint16(p + 2, 1, le);
      idb[p + 4] = 9;
      p += 8;
    }
    iv.setUint32(p, 0, le); // opt_endofopt
    block(1, idb);
  }
  frames.forEach((f, i) => {
    const ts = f.timestampNs ?? defaultTs(i);
    const units = opts.nano ? ts : ts / 1000n;
    const body = new Uint8Array(20 + f.data.length);
    const bv = new DataView(body.buffer);
    bv.setUint32(0, f.interfaceId ?? 0, le);
    bv.setUint32(4, Number(units >> 32n), le);
    bv.setUint32(8, Number(units & 0xffffffffn), le);
    bv.setUint32(12, f.data.length, le);
    bv.setUint32(16, f.origLen ?? f.data.length, le);
    body.set(f.data, 20);
    block(6, body);
  });
  return concat(blocks);
}

/** Wraps an IP packet in a link-layer header. */
export function linkFrame(linktype: 1 | 101 | 113 | 276 | 228 | 229 | 0, ip: Uint8Array, vlanTags = 0): Uint8Array {
  const v6 = ip[0] >> 4 === 6;
  const et = v6 ? [0x86, 0xdd] : [0x08, 0x00];
  let head: number[];
  switch (linktype) {
    case 1:
      head = [0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
      for (let i = 0; i < vlanTags; i++) head.push(i === 0 && vlanTags > 1 ? 0x88 : 0x81, i === 0 && vlanTags > 1 ? 0xa8 : 0x00, 0x00, 0x64 + i);
      head.push(...et);
      break;
    case 113:
      // packet type 0 (to us), ARPHRD_ETHER 1, addr len 6, addr (8 bytes), protocol
      head = [0, 0, 0, 1, 0, 6, 0x02, 0, 0, 0, 0, 0x01, 0, 0, ...et];
      break;
    case 276:
      // protocol, reserved, ifindex, ARPHRD 1, packet type 4 (outgoing), addr len 6, addr (8 bytes)
      head = [...et, 0, 0, 0, 0, 0, 1, 0, 1, 4, 6, 0x02, 0, 0, 0, 0, 0x01, 0, 0];
      break;
    case 0:
      // BSD loopback: AF_INET 2 / AF_INET6 24 (the value all BSDs accept), host (little-endian) order.
      head = v6 ? [24, 0, 0, 0] : [2, 0, 0, 0];
      break;
    default:
      head = [];
  }
  const out = new Uint8Array(head.length + ip.length);
  out.set(head, 0);
  out.set(ip, head.length);
  return out;
}

export function writePcap(path: string, packets: readonly TcpPacketSpec[], linktype: 1 | 101 = 1): void {
  writeFileSync(path, buildPcap(packets, linktype));
}

// ---------------------------------------------------------------------------
// Reader

export interface PcapTcpPacket {
  /** 1-based record number in the file, counting every record (like Wireshark's frame.number). */
  frame: number;
  /** Seconds since the epoch (float); `timestampNs` is exact. */
  timestamp: number;
  timestampNs: bigint;
  linktype: number;
  ipVersion: 4 | 6;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  /** Raw flag byte (TcpFlags.*), plus the decoded set. */
  flagBits: number;
  flags: TcpFlagSet;
  window: number;
  /** The TCP options area (data offset * 4 - 20 bytes), including NOP/EOL padding. */
  tcpOptions: Uint8Array;
  /** The captured TCP payload (may be shorter than on the wire if `truncated`). */
  payload: Uint8Array;
  /** The payload length on the wire, from the IP header. */
  payloadLength: number;
  truncated: boolean;
}

interface RawRecord {
  frame: number;
  linktype: number;
  timestampNs: bigint;
  data: Uint8Array;
  origLen: number;
}

class Reader {
  readonly v: DataView;
  constructor(
    readonly b: Uint8Array,
    public le: boolean,
  ) {
    this.v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  u16(o: number): number {
    return this.v.getUint16(o, this.le);
  }
  u32(o: number): number {
    return this.v.getUint32(o, this.le);
  }
}

function readClassic(b: Uint8Array): RawRecord[] {
  if (b.length < 24) throw new Error('pcap: file shorter than its 24-byte header');
  const magicLe = new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
  let le: boolean;
  let nano: boolean;
  switch (magicLe) {
    case 0xa1b2c3d4:
      le = true;
      nano = false;
      break;
    case 0xa1b23c4d:
      le = true;
      nano = true;
      break;
    case 0xd4c3b2a1:
      le = false;
      nano = false;
      break;
    case 0x4d3cb2a1:
      le = false;
      nano = true;
      break;
    default:
      throw new Error(`pcap: unknown magic 0x${magicLe.toString(16)}`);
  }
  const r = new Reader(b, le);
  const linktype = r.u32(20) & 0xffff;
  const out: RawRecord[] = [];
  let o = 24;
  let frame = 0;
  while (o + 16 <= b.length) {
    const sec = r.u32(o);
    const frac = r.u32(o + 4);
    const incl = r.u32(o + 8);
    const orig = r.u32(o + 12);
    if (o + 16 + incl > b.length) break; // partial last record (capture cut short)
    frame++;
    out.push({
      frame,
      linktype,
      timestampNs: BigInt(sec) * 1_000_000_000n + BigInt(frac) * (nano ? 1n : 1000n),
      data: b.subarray(o + 16, o + 16 + incl),
      origLen: orig,
    });
    o += 16 + incl;
  }
  return out;
}

interface Iface {
  linktype: number;
  /** Timestamp units per second. */
  unitsPerSec: bigint;
  offsetSec: bigint;
}

function readPcapng(b: Uint8Array): RawRecord[] {
  const out: RawRecord[] = [];
  let ifaces: Iface[] = [];
  let frame = 0;
  let o = 0;
  let r = new Reader(b, true);
  while (o + 12 <= b.length) {
    const typeLe = new DataView(b.buffer, b.byteOffset + o, 4).getUint32(0, true);
    if (typeLe === 0x0a0d0d0a) {
      // Section header: decide the byte order from the byte-order magic.
      const bom = new DataView(b.buffer, b.byteOffset + o + 8, 4).getUint32(0, true);
      if (bom === 0x1a2b3c4d) r = new Reader(b, true);
      else if (bom === 0x4d3c2b1a) r = new Reader(b, false);
      else throw new Error(`pcapng: bad byte-order magic at ${o}`);
      ifaces = [];
    }
    const type = r.u32(o);
    const len = r.u32(o + 4);
    if (len < 12 || len % 4 !== 0 || o + len > b.length) break; // partial/garbled tail
    const body = o + 8;
    const bodyEnd = o + len - 4;
    if (type === 1 && bodyEnd - body >= 8) {
      // Interface description block.
      const iface: Iface = { linktype: r.u16(body), unitsPerSec: 1_000_000n, offsetSec: 0n };
      let p = body + 8;
      while (p + 4 <= bodyEnd) {
        const code = r.u16(p);
        const olen = r.u16(p + 2);
        if (code === 0 || p + 4 + olen > bodyEnd) break;
        if (code === 9 && olen >= 1) {
          const res = b[p + 4];
          iface.unitsPerSec = res & 0x80 ? 1n << BigInt(res & 0x7f) : 10n ** BigInt(res);
        } else if (code === 14 && olen >= 8) {
          // A 64-bit integer in section byte order.
          const a = BigInt(r.u32(p + 4));
          const c = BigInt(r.u32(p + 8));
          iface.offsetSec = BigInt.asIntN(64, r.le ? (c << 32n) | a : (a << 32n) | c);
        }
        p += 4 + ((olen + 3) & ~3);
      }
      ifaces.push(iface);
    } else if (type === 6 && bodyEnd - body >= 20) {
      // Enhanced packet block.
      const ifId = r.u32(body);
      const ts = (BigInt(r.u32(body + 4)) << 32n) | BigInt(r.u32(body + 8));
      const cap = r.u32(body + 12);
      const orig = r.u32(body + 16);
      frame++;
      const iface = ifaces[ifId];
      if (iface && body + 20 + cap <= bodyEnd) {
        out.push({
          frame,
          linktype: iface.linktype,
          timestampNs: tsToNs(ts, iface),
          data: b.subarray(body + 20, body + 20 + cap),
          origLen: orig,
        });
      }
    } else if (type === 3 && bodyEnd - body >= 4) {
      // Simple packet block (interface 0, no timestamp).
      const orig = r.u32(body);
      const cap = Math.min(orig, bodyEnd - body - 4);
      frame++;
      const iface = ifaces[0];
      if (iface)
        out.push({ frame, linktype: iface.linktype, timestampNs: 0n, data: b.subarray(body + 4, body + 4 + cap), origLen: orig });
    } else if (type === 2 && bodyEnd - body >= 20) {
      // Obsolete packet block.
      const ifId = r.u16(body);
      const ts = (BigInt(r.u32(body + 4)) << 32n) | BigInt(r.u32(body + 8));
      const cap = r.u32(body + 12);
      const orig = r.u32(body + 16);
      frame++;
      const iface = ifaces[ifId];
      if (iface && body + 20 + cap <= bodyEnd)
        out.push({
          frame,
          linktype: iface.linktype,
          timestampNs: tsToNs(ts, iface),
          data: b.subarray(body + 20, body + 20 + cap),
          origLen: orig,
        });
    }
    o += len;
  }
  return out;
}

function tsToNs(ts: bigint, iface: Iface): bigint {
  return (ts * 1_000_000_000n) / iface.unitsPerSec + iface.offsetSec * 1_000_000_000n;
}

/** Finds the IP packet inside a link-layer frame; returns its offset or -1. */
function ipOffset(linktype: number, d: Uint8Array): number {
  switch (linktype) {
    case 1: {
      // Ethernet II, possibly with 802.1Q / 802.1ad / QinQ tags.
      let o = 12;
      for (;;) {
        if (o + 2 > d.length) return -1;
        const et = (d[o] << 8) | d[o + 1];
        if (et === 0x8100 || et === 0x88a8 || et === 0x9100) {
          o += 4;
          continue;
        }
        return et === 0x0800 || et === 0x86dd ? o + 2 : -1;
      }
    }
    case 113: {
      if (d.length < 16) return -1;
      const et = (d[14] << 8) | d[15];
      return et === 0x0800 || et === 0x86dd ? 16 : -1;
    }
    case 276: {
      if (d.length < 20) return -1;
      const et = (d[0] << 8) | d[1];
      return et === 0x0800 || et === 0x86dd ? 20 : -1;
    }
    case 0:
    case 108:
      // BSD loopback: 4-byte address family (host or network order); look at the IP version instead.
      return d.length > 4 ? 4 : -1;
    case 12:
    case 14:
    case 101:
    case 228:
    case 229:
      return 0;
    default:
      return -1;
  }
}

const IPV6_EXT = new Set([0, 43, 60, 51, 44, 135, 139, 140]);

function parseTcp(rec: RawRecord): PcapTcpPacket | null {
  const d = rec.data;
  const ipo = ipOffset(rec.linktype, d);
  if (ipo < 0 || ipo >= d.length) return null;
  const ver = d[ipo] >> 4;
  let src: string;
  let dst: string;
  let l4: number; // TCP header offset
  let l4End: number; // end of the TCP segment as captured
  let l4WireLen: number; // TCP segment length on the wire
  if (ver === 4) {
    if (ipo + 20 > d.length) return null;
    const ihl = (d[ipo] & 0x0f) * 4;
    if (ihl < 20 || ipo + ihl > d.length) return null;
    if (d[ipo + 9] !== 6) return null;
    const fragOff = ((d[ipo + 6] & 0x1f) << 8) | d[ipo + 7];
    if (fragOff !== 0) return null;
    let total = (d[ipo + 2] << 8) | d[ipo + 3];
    if (total === 0) total = rec.origLen - ipo; // TSO: length left zero by the NIC
    if (total < ihl) return null;
    src = formatIpv4(d, ipo + 12);
    dst = formatIpv4(d, ipo + 16);
    l4 = ipo + ihl;
    l4WireLen = total - ihl;
    l4End = Math.min(d.length, ipo + total);
  } else if (ver === 6) {
    if (ipo + 40 > d.length) return null;
    let next = d[ipo + 6];
    let p = ipo + 40;
    const plen = (d[ipo + 4] << 8) | d[ipo + 5];
    const end = plen === 0 ? rec.origLen : ipo + 40 + plen;
    while (IPV6_EXT.has(next)) {
      if (p + 8 > d.length) return null;
      const nh = d[p];
      let hlen: number;
      if (next === 44) {
        const fragOff = ((d[p + 2] << 8) | d[p + 3]) >> 3;
        if (fragOff !== 0) return null;
        hlen = 8;
      } else if (next === 51) hlen = (d[p + 1] + 2) * 4;
      else hlen = (d[p + 1] + 1) * 8;
      next = nh;
      p += hlen;
    }
    if (next !== 6) return null;
    src = formatIpv6(d, ipo + 8);
    dst = formatIpv6(d, ipo + 24);
    l4 = p;
    l4WireLen = end - p;
    l4End = Math.min(d.length, end);
  } else return null;
  if (l4 + 20 > l4End) return null;
  const doff = (d[l4 + 12] >> 4) * 4;
  if (doff < 20 || l4 + doff > l4End) return null;
  const u32 = (o: number) => ((d[o] << 24) | (d[o + 1] << 16) | (d[o + 2] << 8) | d[o + 3]) >>> 0;
  const flagBits = d[l4 + 13];
  const payload = d.subarray(l4 + doff, l4End);
  const payloadLength = Math.max(0, l4WireLen - doff);
  return {
    frame: rec.frame,
    timestamp: Number(rec.timestampNs) / 1e9,
    timestampNs: rec.timestampNs,
    linktype: rec.linktype,
    ipVersion: ver as 4 | 6,
    src,
    dst,
    sport: (d[l4] << 8) | d[l4 + 1],
    dport: (d[l4 + 2] << 8) | d[l4 + 3],
    seq: u32(l4 + 4),
    ack: u32(l4 + 8),
    flagBits,
    flags: flagSet(flagBits),
    window: (d[l4 + 14] << 8) | d[l4 + 15],
    tcpOptions: d.slice(l4 + 20, l4 + doff),
    payload: d.slice(l4 + doff, l4End),
    payloadLength,
    truncated: payload.length < payloadLength,
  };
}

/** Parses a classic pcap or pcapng capture; returns its TCP segments in file order. */
export function readPcap(data: Uint8Array): PcapTcpPacket[] {
  if (data.length < 4) throw new Error('capture file is too short');
  const first = new DataView(data.buffer, data.byteOffset, 4).getUint32(0, true);
  const recs = first === 0x0a0d0d0a ? readPcapng(data) : readClassic(data);
  const out: PcapTcpPacket[] = [];
  for (const r of recs) {
    const p = parseTcp(r);
    if (p) out.push(p);
  }
  return out;
}

export function readPcapFile(path: string): PcapTcpPacket[] {
  const buf = readFileSync(path);
  return readPcap(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
}
