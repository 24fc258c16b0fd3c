/**
 * The pcap helpers: the writer's packets are well-formed (checksums), and
 * the reader handles every container/linktype/IP variant it claims to, checked
 * against our own expectations and, where tshark is installed, against
 * tshark's reading of the very same files (including files converted by
 * editcap).
 */
import { describe, it, expect, afterAll } from 'vitest';
import fc from 'fast-check';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  buildIpTcpPacket,
  buildPcap,
  buildPcapFrames,
  buildPcapngFrames,
  linkFrame,
  readPcap,
  readPcapFile,
  tcpOptionsArea,
  TcpFlags,
  type PcapTcpPacket,
  type RawFrame,
  type TcpPacketSpec,
} from '../support/pcap.js';
import { fields, tsharkAvailable, TSHARK } from '../support/tshark.js';
import { mptcpOptionsFromTcpOptions, type MptcpOption } from '../../src/wire/index.js';

const dir = mkdtempSync(join(tmpdir(), 'mptls-pcap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const enc = new TextEncoder();

const SPECS: TcpPacketSpec[] = [
  {
    src: '10.1.2.3',
    dst: '10.3.2.1',
    sport: 51000,
    dport: 443,
    seq: 0xfffffff0,
    ack: 0,
    flags: TcpFlags.SYN,
    window: 64240,
    options: [Uint8Array.from([2, 4, 5, 0xb4]), { subtype: 'MP_CAPABLE', version: 1, flags: 0x81 }],
  },
  {
    src: '2001:db8::1',
    dst: '2001:db8::2',
    sport: 443,
    dport: 51000,
    seq: 1,
    ack: 0xfffffff1,
    flags: TcpFlags.SYN | TcpFlags.ACK,
    options: [{ subtype: 'MP_CAPABLE', version: 1, flags: 0x81, senderKey: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]) }],
  },
  {
    src: '10.1.2.3',
    dst: '10.3.2.1',
    sport: 51000,
    dport: 443,
    seq: 2,
    ack: 3,
    flags: TcpFlags.PSH | TcpFlags.ACK | TcpFlags.ECE | TcpFlags.CWR,
    options: [
      { subtype: 'DSS', dataFin: false, dataAck: 9n, dsn: 10n, ssn: 1, dataLevelLength: 5, checksum: 0xabcd },
      { subtype: 'MP_PRIO', backup: true },
    ],
    payload: enc.encode('hello'),
  },
  {
    src: 'fe80::1:2:3:4',
    dst: '::ffff:10.0.0.1',
    sport: 1,
    dport: 65535,
    flags: TcpFlags.FIN | TcpFlags.RST | TcpFlags.URG | TcpFlags.ACK,
    payload: enc.encode('odd'),
  },
  {
    src: '192.0.2.1',
    dst: '192.0.2.2',
    sport: 7,
    dport: 8,
    flags: TcpFlags.ACK,
    options: [{ subtype: 'ADD_ADDR', echo: false, addressId: 1, address: '2001:db8::99', port: 80, truncatedHmac: new Uint8Array(8).fill(7) }],
    payload: new Uint8Array(1000).map((_, i) => i),
  },
];

function expectMatchesSpec(p: PcapTcpPacket, s: TcpPacketSpec): void {
  expect(p.src).toBe(s.src);
  expect(p.dst).toBe(s.dst);
  expect(p.ipVersion).toBe(s.src.includes(':') ? 6 : 4);
  expect(p.sport).toBe(s.sport);
  expect(p.dport).toBe(s.dport);
  expect(p.seq).toBe(s.seq ?? 1000);
  expect(p.ack).toBe(s.ack ?? 0);
  expect(p.flagBits).toBe(s.flags ?? TcpFlags.ACK);
  expect(p.window).toBe(s.window ?? 65535);
  expect(p.tcpOptions).toEqual(tcpOptionsArea(s.options ?? []));
  expect(p.payload).toEqual(s.payload ?? new Uint8Array(0));
  expect(p.payloadLength).toBe((s.payload ?? new Uint8Array(0)).length);
  expect(p.truncated).toBe(false);
}

/** One's-complement sum over the IP header / TCP pseudo-header must verify. */
function checksumsOk(ip: Uint8Array): boolean {
  const sum = (b: Uint8Array, acc = 0) => {
    for (let i = 0; i + 1 < b.length; i += 2) acc += (b[i] << 8) | b[i + 1];
    if (b.length % 2) acc += b[b.length - 1] << 8;
    return acc;
  };
  const fold = (a: number) => {
    while (a > 0xffff) a = (a & 0xffff) + Math.floor(a / 0x10000);
    return a;
  };
  if (ip[0] >> 4 === 4) {
    const ihl = (ip[0] & 0xf) * 4;
    if (fold(sum(ip.subarray(0, ihl))) !== 0xffff) return false;
    const tcp = ip.subarray(ihl);
    return fold(sum(tcp, sum(ip.subarray(12, 20)) + 6 + tcp.length)) === 0xffff;
  }
  const tcp = ip.subarray(40);
  return fold(sum(tcp, sum(ip.subarray(8, 40)) + 6 + tcp.length)) === 0xffff;
}

describe('pcap writer', () => {
  it('writes correct IPv4/IPv6/TCP checksums', () => {
    for (const s of SPECS) expect(checksumsOk(buildIpTcpPacket(s))).toBe(true);
  });

  it('pads the options area with NOPs to a multiple of 4 and refuses more than 40 bytes', () => {
    expect(tcpOptionsArea([{ subtype: 'MP_PRIO', backup: true }])).toEqual(Uint8Array.from([30, 3, 0x51, 1]));
    expect(tcpOptionsArea([])).toEqual(new Uint8Array(0));
    expect(() => tcpOptionsArea([{ subtype: 'REMOVE_ADDR', addressIds: new Array(38).fill(1) }])).toThrow(/40/);
  });

  for (const linktype of [1, 101] as const) {
    it(`round-trips through the reader (linktype ${linktype})`, () => {
      const got = readPcap(buildPcap(SPECS, linktype));
      expect(got.length).toBe(SPECS.length);
      got.forEach((p, i) => {
        expect(p.frame).toBe(i + 1);
        expect(p.linktype).toBe(linktype);
        expectMatchesSpec(p, SPECS[i]);
      });
      expect(mptcpOptionsFromTcpOptions(got[2].tcpOptions).map((o: MptcpOption) => o.subtype)).toEqual(['DSS', 'MP_PRIO']);
    });
  }
});

// ---------------------------------------------------------------------------
// Reader variants

function withIpv6ExtHeaders(ip: Uint8Array): Uint8Array {
  // IPv6 header | Hop-by-Hop (PadN) | Destination Options (PadN) | atomic Fragment | TCP
  const ext = Uint8Array.from([
    60, 0, 1, 4, 0, 0, 0, 0, // HBH -> DestOpts
    44, 0, 1, 4, 0, 0, 0, 0, // DestOpts -> Fragment
    6, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, // Fragment offset 0, M=0 -> TCP
  ]);
  const out = new Uint8Array(ip.length + ext.length);
  out.set(ip.subarray(0, 40), 0);
  out.set(ext, 40);
  out.set(ip.subarray(40), 40 + ext.length);
  out[6] = 0; // next header: Hop-by-Hop
  const plen = ((ip[4] << 8) | ip[5]) + ext.length;
  out[4] = plen >> 8;
  out[5] = plen & 0xff;
  return out;
}

interface Variant {
  name: string;
  file: Uint8Array;
  linktype: number;
  specs: TcpPacketSpec[];
  nano: boolean;
}

const v4Specs = SPECS.filter((s) => !s.src.includes(':'));
const v6Specs = SPECS.filter((s) => s.src.includes(':'));
const frames = (lt: Parameters<typeof linkFrame>[0], ss: TcpPacketSpec[], vlan = 0): RawFrame[] =>
  ss.map((s) => ({ data: linkFrame(lt, buildIpTcpPacket(s), vlan) }));

const VARIANTS: Variant[] = [
  { name: 'classic LE µs Ethernet', file: buildPcapFrames(frames(1, SPECS), 1), linktype: 1, specs: SPECS, nano: false },
  { name: 'classic BE ns Ethernet', file: buildPcapFrames(frames(1, SPECS), 1, { bigEndian: true, nano: true }), linktype: 1, specs: SPECS, nano: true },
  { name: 'classic Ethernet 802.1Q', file: buildPcapFrames(frames(1, SPECS, 1), 1), linktype: 1, specs: SPECS, nano: false },
  { name: 'classic Ethernet QinQ', file: buildPcapFrames(frames(1, SPECS, 2), 1), linktype: 1, specs: SPECS, nano: false },
  { name: 'classic raw IP (101)', file: buildPcapFrames(frames(101, SPECS), 101), linktype: 101, specs: SPECS, nano: false },
  { name: 'classic raw IPv4 (228)', file: buildPcapFrames(frames(228, v4Specs), 228), linktype: 228, specs: v4Specs, nano: false },
  { name: 'classic raw IPv6 (229)', file: buildPcapFrames(frames(229, v6Specs), 229), linktype: 229, specs: v6Specs, nano: false },
  { name: 'classic Linux SLL (113)', file: buildPcapFrames(frames(113, SPECS), 113), linktype: 113, specs: SPECS, nano: false },
  { name: 'classic Linux SLL2 (276)', file: buildPcapFrames(frames(276, SPECS), 276), linktype: 276, specs: SPECS, nano: true },
  { name: 'classic BSD NULL (0)', file: buildPcapFrames(frames(0, SPECS), 0), linktype: 0, specs: SPECS, nano: false },
  { name: 'pcapng LE µs Ethernet', file: buildPcapngFrames(frames(1, SPECS), 1), linktype: 1, specs: SPECS, nano: false },
  { name: 'pcapng BE ns SLL2', file: buildPcapngFrames(frames(276, SPECS), 276, { bigEndian: true, nano: true }), linktype: 276, specs: SPECS, nano: true },
  {
    name: 'classic Ethernet, IPv6 extension headers',
    file: buildPcapFrames(v6Specs.map((s) => ({ data: linkFrame(1, withIpv6ExtHeaders(buildIpTcpPacket(s))) })), 1),
    linktype: 1,
    specs: v6Specs,
    nano: false,
  },
];

describe('pcap reader', () => {
  for (const v of VARIANTS) {
    it(v.name, () => {
      const got = readPcap(v.file);
      expect(got.length).toBe(v.specs.length);
      got.forEach((p, i) => {
        expect(p.linktype).toBe(v.linktype);
        expect(p.frame).toBe(i + 1);
        expect(p.timestampNs).toBe(1_700_000_000_000_000_000n + BigInt(i) * 1_000_000n);
        expectMatchesSpec(p, v.specs[i]);
      });
    });
  }

  it('skips what is not TCP and counts frames like Wireshark', () => {
    const tcp = buildIpTcpPacket(SPECS[0]);
    const udp = tcp.slice(0, 28);
    udp[9] = 17;
    const frag = tcp.slice();
    frag[6] = 0x00;
    frag[7] = 0x10; // fragment offset 16 * 8
    const arp = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06, ...new Array(28).fill(0)]);
    const file = buildPcapFrames(
      [{ data: linkFrame(1, udp) }, { data: arp }, { data: linkFrame(1, frag) }, { data: linkFrame(1, tcp) }, { data: Uint8Array.from([1, 2]) }],
      1,
    );
    const got = readPcap(file);
    expect(got.map((p) => p.frame)).toEqual([4]);
  });

  it('ignores Ethernet padding after a short IPv4 packet', () => {
    const s: TcpPacketSpec = { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2, flags: TcpFlags.ACK };
    const eth = linkFrame(1, buildIpTcpPacket(s)); // 54 bytes
    const padded = new Uint8Array(60).fill(0xaa);
    padded.set(eth);
    const [p] = readPcap(buildPcapFrames([{ data: padded }], 1));
    expect(p.payload.length).toBe(0);
    expect(p.payloadLength).toBe(0);
  });

  it('reports snaplen-truncated payloads', () => {
    const eth = linkFrame(1, buildIpTcpPacket(SPECS[4]));
    const cut = eth.slice(0, eth.length - 900);
    const [p] = readPcap(buildPcapFrames([{ data: cut, origLen: eth.length }], 1, { snaplen: cut.length }));
    expect(p.truncated).toBe(true);
    expect(p.payloadLength).toBe(1000);
    expect(p.payload).toEqual(SPECS[4].payload!.subarray(0, 100));
    expect(p.tcpOptions).toEqual(tcpOptionsArea(SPECS[4].options!));
  });

  it('skips segments whose TCP header was cut by the snaplen', () => {
    const eth = linkFrame(1, buildIpTcpPacket(SPECS[0]));
    expect(readPcap(buildPcapFrames([{ data: eth.slice(0, 14 + 20 + 25), origLen: eth.length }], 1))).toEqual([]);
  });

  it('tolerates a partial last record (capture cut short)', () => {
    const file = buildPcap(SPECS, 1);
    expect(readPcap(file.slice(0, file.length - 10)).length).toBe(SPECS.length - 1);
    const ng = buildPcapngFrames(frames(1, SPECS), 1);
    expect(readPcap(ng.slice(0, ng.length - 10)).length).toBe(SPECS.length - 1);
  });

  it('rejects files that are not captures', () => {
    expect(() => readPcap(new Uint8Array(0))).toThrow();
    expect(() => readPcap(new Uint8Array(100))).toThrow(/magic/);
  });

  it('never hangs and only throws Errors on corrupted files', () => {
    const bases = [buildPcap(SPECS, 1), buildPcapngFrames(frames(276, SPECS), 276, { bigEndian: true, nano: true })];
    fc.assert(
      fc.property(
        fc.constantFrom(0, 1),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
        fc.nat(),
        (which, sets, cut) => {
          const f = bases[which].slice(0, Math.max(4, bases[which].length - (cut % 64)));
          for (const [pos, val] of sets) f[4 + (pos % (f.length - 4))] = val; // keep the magic
          try {
            for (const p of readPcap(f)) {
              expect(p.tcpOptions.length % 4).toBe(0);
              expect(p.tcpOptions.length).toBeLessThanOrEqual(40);
            }
          } catch (e) {
            expect(e).toBeInstanceOf(Error);
          }
        },
      ),
      { numRuns: 1500 },
    );
  });
});

// ---------------------------------------------------------------------------
// Cross-check with tshark (and editcap conversions)

const tshark = tsharkAvailable();
const EDITCAP = join(dirname(TSHARK), 'editcap');

const TS_FIELDS = [
  'frame.number',
  'frame.time_epoch',
  'ip.src',
  'ip.dst',
  'ipv6.src',
  'ipv6.dst',
  'tcp.srcport',
  'tcp.dstport',
  'tcp.seq_raw',
  'tcp.ack_raw',
  'tcp.flags',
  'tcp.window_size_value',
  'tcp.options',
  'tcp.payload',
  'tcp.len',
];

function compareWithTshark(file: string): number {
  const ours = readPcapFile(file);
  const theirs = fields(file, TS_FIELDS).filter((r) => r['tcp.srcport'] !== '');
  expect(ours.length).toBe(theirs.length);
  ours.forEach((p, i) => {
    const t = theirs[i];
    expect(p.frame).toBe(Number(t['frame.number']));
    const [sec, frac = ''] = t['frame.time_epoch'].split('.');
    expect(p.timestampNs).toBe(BigInt(sec) * 1_000_000_000n + BigInt(frac.padEnd(9, '0').slice(0, 9)));
    // tshark prints the innermost address last when there are several layers
    const last = (s: string) => s.split(',').pop() ?? '';
    if (p.ipVersion === 4) {
      expect(p.src).toBe(last(t['ip.src']));
      expect(p.dst).toBe(last(t['ip.dst']));
    } else {
      expect(p.src).toBe(last(t['ipv6.src']));
      expect(p.dst).toBe(last(t['ipv6.dst']));
    }
    expect(p.sport).toBe(Number(t['tcp.srcport']));
    expect(p.dport).toBe(Number(t['tcp.dstport']));
    expect(p.seq).toBe(Number(t['tcp.seq_raw']));
    expect(p.ack).toBe(Number(t['tcp.ack_raw']));
    expect(p.flagBits).toBe(parseInt(t['tcp.flags'], 16) & 0xff);
    expect(p.window).toBe(Number(t['tcp.window_size_value']));
    expect(Buffer.from(p.tcpOptions).toString('hex')).toBe(t['tcp.options'].replace(/:/g, ''));
    expect(p.payloadLength).toBe(Number(t['tcp.len']));
    // (tshark shows no tcp.payload for a RST carrying data: it dissects it as a reset cause)
    if (t['tcp.payload'] !== '' || !p.flags.rst)
      expect(Buffer.from(p.payload).toString('hex')).toBe(t['tcp.payload'].replace(/:/g, ''));
  });
  return ours.length;
}

describe.skipIf(!tshark.ok)('pcap reader agrees with tshark', () => {
  // One multi-interface pcapng holding every link-layer variant, so that tshark runs once.
  it('on every link type (one pcapng, one interface per variant)', () => {
    const variants = VARIANTS.filter((v) => v.name.startsWith('classic') && !v.name.includes('BE'));
    const all: RawFrame[] = [];
    variants.forEach((v, iface) => {
      for (const f of readRawFrames(v.file)) all.push({ data: f, interfaceId: iface });
    });
    const file = join(dir, 'multi.pcapng');
    writeFileSync(file, buildPcapngFrames(all, variants.map((v) => v.linktype), { nano: true }));
    const got = readPcapFile(file);
    expect(got.length).toBe(all.length);
    expect(compareWithTshark(file)).toBe(all.length);
    expect(new Set(got.map((p) => p.linktype))).toEqual(new Set(variants.map((v) => v.linktype)));
  });

  it.skipIf(!existsSync(EDITCAP))('on files converted by editcap (pcapng, nanosecond pcap)', () => {
    const src = join(dir, 'src.pcap');
    writeFileSync(src, buildPcap(SPECS, 1));
    for (const fmt of ['pcapng', 'nsecpcap']) {
      const out = join(dir, `conv.${fmt}`);
      execFileSync(EDITCAP, ['-F', fmt, src, out], { stdio: 'ignore' });
      const got = readPcapFile(out);
      expect(got.length).toBe(SPECS.length);
      got.forEach((p, i) => expectMatchesSpec(p, SPECS[i]));
    }
    compareWithTshark(join(dir, 'conv.pcapng'));
  });
});

/** The frames of a little-endian classic pcap written by buildPcapFrames. */
function readRawFrames(file: Uint8Array): Uint8Array[] {
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const out: Uint8Array[] = [];
  for (let o = 24; o + 16 <= file.length; ) {
    const n = v.getUint32(o + 8, true);
    out.push(file.subarray(o + 16, o + 16 + n));
    o += 16 + n;
  }
  return out;
}
