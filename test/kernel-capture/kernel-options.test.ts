/**
 * Ground truth from the Linux kernel's MPTCP: two namespaces joined by two
 * veth paths (198.18.1.0/24 and 198.18.2.0/24), a python3 MPTCP client and
 * server exchanging data both ways while the client's path manager opens
 * joins and the server's signals ADD_ADDR, tcpdump capturing everything.
 * The capture is decoded with src/wire and every key, token, IDSN and HMAC
 * the kernel put on the wire is recomputed with src/crypto. The kernel's own
 * view (MPTCP_INFO: token, write_seq, rcv_nxt) is checked as well.
 *
 * Needs root, `ip netns`, kernel MPTCP, tcpdump and python3. Without them it
 * skips with the reason printed, except under CI (process.env.CI), where it
 * fails.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bytesToHex } from '@noble/hashes/utils.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addAddrHmac,
  idsnFromKey,
  joinAckHmac,
  joinSynAckHmac,
  timingSafeEqual,
  tokenFromKey,
} from '../../src/crypto/index.js';
import { decodeOption, encodeOption, parseTcpOptions } from '../../src/wire/options.js';
import {
  MPTCP_OPTION_KIND,
  type AddAddrOption,
  type DssOption,
  type MpCapableOption,
  type MpJoinAckOption,
  type MpJoinSynAckOption,
  type MpJoinSynOption,
  type MptcpOption,
} from '../../src/wire/types.js';
import { NetnsLab, netnsAvailable, sweepStaleNamespaces } from '../support/netns.js';
import { type PcapTcpPacket, readPcapFile } from '../support/pcap.js';
import { useTestSeed } from '../support/random.js';

const IN_CI = Boolean(process.env.CI);
const MASK64 = (1n << 64n) - 1n;
const MASK32 = (1n << 32n) - 1n;
const rng = useTestSeed(0x6b0e);

// Path 1: client 198.18.1.1 <-> server 198.18.1.2; path 2: 198.18.2.1 <-> 198.18.2.2.
const C1 = '198.18.1.1';
const S1 = '198.18.1.2';
const C2 = '198.18.2.1';
const S2 = '198.18.2.2';
const CLIENT_ADDRS = new Set([C1, C2]);

/** Why the test cannot run here, or undefined when it can. */
function unmetPrerequisite(): string | undefined {
  const ns = netnsAvailable();
  if (!ns.ok) return ns.reason;
  for (const tool of ['tcpdump', 'python3']) {
    const r = spawnSync(tool, ['--version'], { encoding: 'utf8' });
    if (r.error) return `${tool} is not on PATH`;
  }
  const mptcp = spawnSync('sysctl', ['-n', 'net.mptcp.enabled'], { encoding: 'utf8' });
  if (mptcp.status !== 0 || mptcp.stdout.trim() !== '1') return 'kernel MPTCP is not available (net.mptcp.enabled != 1)';
  return undefined;
}

const unmet = unmetPrerequisite();
if (unmet && !IN_CI) console.warn(`[kernel-capture] skipped: ${unmet}`);

/**
 * One python3 script for both ends. It prints a JSON line with what it sent
 * and received and the kernel's MPTCP_INFO (SOL_MPTCP 284, MPTCP_INFO 1:
 * struct mptcp_info starts u8 x6, pad, u32 flags, u32 token, u64 write_seq,
 * u64 snd_una, u64 rcv_nxt), read while the connection is still open.
 */
const PEER_PY = String.raw`
import json, socket, struct, sys, time
IPPROTO_MPTCP, SOL_MPTCP, MPTCP_INFO = 262, 284, 1

def info(s):
    raw = s.getsockopt(SOL_MPTCP, MPTCP_INFO, 256)
    f = struct.unpack_from("=6B2xIIQQQ", raw)
    return {"subflows": f[0], "add_addr_signal": f[1], "add_addr_accepted": f[2],
            "token": f[7], "write_seq": str(f[8]), "snd_una": str(f[9]), "rcv_nxt": str(f[10])}

def recv_exact(s, n):
    got = 0
    while got < n:
        d = s.recv(min(65536, n - got))
        if not d:
            raise SystemExit("peer closed early after %d of %d bytes" % (got, n))
        got += len(d)
    return got

mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
C2S, S2C = 8192, 16384
if mode == "server":
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(4)
    print("ready", flush=True)
    c, _ = ls.accept()
    recv_exact(c, C2S)
    c.sendall(b"S" * S2C)
    got = C2S
    # Read the client's trickle until it says "bye", then report and close
    # (the client closes only after seeing this side's close).
    tail = b""
    while not tail.endswith(b"bye"):
        d = c.recv(65536)
        if not d:
            raise SystemExit("client closed before bye")
        got += len(d)
        tail = (tail + d)[-3:]
    out = {"role": "server", "sent": S2C, "received": got}
    out.update(info(c))
    print(json.dumps(out), flush=True)
    c.close()
    ls.close()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    s.connect((host, port))
    s.sendall(b"C" * C2S)
    sent = C2S
    recv_exact(s, S2C)
    # Keep the connection busy until the path managers have done their work
    # (two extra subflows, the ADD_ADDR accepted), at most 2 s.
    deadline = time.time() + 2.0
    settled_at = None
    while time.time() < deadline:
        s.sendall(b"c" * 500)
        sent += 500
        i = info(s)
        if settled_at is None and i["subflows"] >= 2 and i["add_addr_accepted"] >= 1:
            settled_at = time.time()
        if settled_at is not None and time.time() - settled_at > 0.3:
            break
        time.sleep(0.05)
    # Report before "bye": the server closes only after reading it, so no
    # DATA_FIN has been received yet and every sent byte is in write_seq.
    out = {"role": "client", "sent": sent, "received": S2C}
    out.update(info(s))
    s.sendall(b"bye")
    while s.recv(65536):
        pass
    print(json.dumps(out), flush=True)
    s.close()
`;

interface PeerReport {
  role: 'client' | 'server';
  sent: number;
  received: number;
  subflows: number;
  add_addr_signal: number;
  add_addr_accepted: number;
  token: number;
  write_seq: string;
  snd_una: string;
  rcv_nxt: string;
}

interface SeenOption {
  pkt: PcapTcpPacket;
  raw: Uint8Array;
  opt: MptcpOption;
}

interface Capture {
  packets: PcapTcpPacket[];
  options: SeenOption[];
  client: PeerReport;
  server: PeerReport;
}

function parseReport(stdout: string, role: string): PeerReport {
  const line = stdout
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l.startsWith('{'));
  if (!line) throw new Error(`no report from the ${role}; output:\n${stdout}`);
  return JSON.parse(line) as PeerReport;
}

async function runCapture(lab: NetnsLab, dir: string): Promise<Capture> {
  const nsC = lab.addNamespace('c');
  const nsS = lab.addNamespace('s');
  lab.addVeth(nsC, 'p1', `${C1}/24`, nsS, 'p1', `${S1}/24`);
  lab.addVeth(nsC, 'p2', `${C2}/24`, nsS, 'p2', `${S2}/24`);
  for (const ns of [nsC, nsS]) lab.ip(ns, 'mptcp', 'limits', 'set', 'subflows', '8', 'add_addr_accepted', '8');
  // Client-side source routing: each source address leaves by its own path.
  lab.ip(nsC, 'rule', 'add', 'from', C1, 'table', '101');
  lab.ip(nsC, 'route', 'add', '198.18.0.0/15', 'dev', 'p1', 'table', '101');
  lab.ip(nsC, 'rule', 'add', 'from', C2, 'table', '102');
  lab.ip(nsC, 'route', 'add', '198.18.0.0/15', 'dev', 'p2', 'table', '102');
  lab.ip(nsC, 'mptcp', 'endpoint', 'add', C2, 'dev', 'p2', 'subflow');
  lab.ip(nsS, 'mptcp', 'endpoint', 'add', S2, 'dev', 'p2', 'signal');

  const script = join(dir, 'peer.py');
  writeFileSync(script, PEER_PY);
  const pcap = join(dir, 'kernel.pcap');
  const port = String(20000 + (rng.u32() % 40000));

  // Capture in the server namespace on every interface (both paths).
  // Immediate mode, so that stopping tcpdump loses nothing still sitting in
  // a ring-buffer block; a small snapshot length (headers only: the reader
  // takes payload lengths from the IP header), because in immediate mode
  // each ring slot is snaplen-sized and the default 256 KiB slots overflow
  // on the first burst (seen as "packets dropped by kernel").
  const tcpdump = lab.spawn(nsS, 'tcpdump', [
    '-i', 'any', '--immediate-mode', '-s', '256', '-B', '4096', '-U', '-n', '-Z', 'root', '-w', pcap,
    'tcp', 'port', port,
  ]);
  await tcpdump.waitFor(/listening on/, 5000);

  const server = lab.spawn(nsS, 'python3', [script, 'server', '0.0.0.0', port]);
  await server.waitFor(/ready/, 5000);
  const client = lab.spawn(nsC, 'python3', [script, 'client', S1, port]);
  const [cc, sc] = await Promise.all([client.exit(10_000), server.exit(10_000)]);
  if (cc !== 0) throw new Error(`client failed (${cc}):\n${client.output()}`);
  if (sc !== 0) throw new Error(`server failed (${sc}):\n${server.output()}`);
  // Let the closing segments reach the capture, then stop tcpdump (it flushes on SIGINT).
  await new Promise((r) => setTimeout(r, 300));
  tcpdump.kill('SIGINT');
  await tcpdump.exit(5000);
  const dropped = /(\d+) packets? dropped by kernel/.exec(tcpdump.output());
  if (!dropped || dropped[1] !== '0') throw new Error(`tcpdump lost packets:\n${tcpdump.output()}`);

  const packets = readPcapFile(pcap);
  const options: SeenOption[] = [];
  for (const pkt of packets) {
    for (const t of parseTcpOptions(pkt.tcpOptions)) {
      if (t.kind !== MPTCP_OPTION_KIND) continue;
      const raw = t.raw.slice();
      options.push({ pkt, raw, opt: decodeOption(raw) });
    }
  }
  return {
    packets,
    options,
    client: parseReport(client.output(), 'client'),
    server: parseReport(server.output(), 'server'),
  };
}

const fromClient = (p: PcapTcpPacket) => CLIENT_ADDRS.has(p.src);
const subflowKey = (p: PcapTcpPacket) =>
  fromClient(p) ? `${p.src}:${p.sport}>${p.dst}:${p.dport}` : `${p.dst}:${p.dport}>${p.src}:${p.sport}`;
const hex = bytesToHex;

describe.skipIf(unmet !== undefined && !IN_CI)('Linux kernel MPTCP on the wire', () => {
  let lab: NetnsLab | undefined;
  let dir: string | undefined;
  let cap: Capture;
  let clientKey: Uint8Array;
  let serverKey: Uint8Array;
  let initialSubflow: string;

  beforeAll(async () => {
    if (unmet !== undefined) throw new Error(`kernel-capture cannot run under CI: ${unmet}`);
    sweepStaleNamespaces();
    lab = new NetnsLab('kc');
    dir = mkdtempSync(join(tmpdir(), 'mptls-kc-'));
    try {
      cap = await runCapture(lab, dir);
    } finally {
      lab.cleanup();
    }
    const capable = cap.options.filter((o) => o.opt.subtype === 'MP_CAPABLE');
    const synAck = capable.find((o) => o.pkt.flags.syn && o.pkt.flags.ack);
    const ack = capable.find((o) => !o.pkt.flags.syn && fromClient(o.pkt));
    if (!synAck || !ack) throw new Error('no MP_CAPABLE handshake in the capture');
    serverKey = (synAck.opt as MpCapableOption).senderKey!;
    clientKey = (ack.opt as MpCapableOption).senderKey!;
    initialSubflow = subflowKey(synAck.pkt);
  }, 30_000);

  afterAll(() => {
    lab?.cleanup();
    // MPTLS_KC_KEEP=1 keeps the capture (in os.tmpdir()) for a look with tshark.
    if (dir && process.env.MPTLS_KC_KEEP) console.warn(`[kernel-capture] capture kept in ${dir}`);
    else if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('re-encodes every captured MPTCP option to exactly its bytes', () => {
    expect(cap.options.length).toBeGreaterThan(20);
    const subtypes = new Set<string>();
    for (const { raw, opt, pkt } of cap.options) {
      subtypes.add(opt.subtype);
      expect(hex(encodeOption(opt)), `frame ${pkt.frame} ${opt.subtype}`).toBe(hex(raw));
    }
    for (const s of ['MP_CAPABLE', 'MP_JOIN', 'DSS', 'ADD_ADDR']) expect(subtypes).toContain(s);
  });

  it('MP_CAPABLE: v1, H=0x01, SYN 4 bytes, SYN/ACK 12 with the server key, ACK 20/22 with both keys', () => {
    const mpc = cap.options.filter((o) => o.opt.subtype === 'MP_CAPABLE' && subflowKey(o.pkt) === initialSubflow);
    const syn = mpc.filter((o) => o.pkt.flags.syn && !o.pkt.flags.ack);
    const synAck = mpc.filter((o) => o.pkt.flags.syn && o.pkt.flags.ack);
    const acks = mpc.filter((o) => !o.pkt.flags.syn && fromClient(o.pkt));
    expect(syn.length).toBeGreaterThanOrEqual(1);
    expect(synAck.length).toBeGreaterThanOrEqual(1);
    expect(acks.length).toBeGreaterThanOrEqual(1);
    for (const o of [...syn, ...synAck, ...acks]) {
      const c = o.opt as MpCapableOption;
      expect(c.version).toBe(1);
      expect(c.flags).toBe(0x01);
    }
    for (const o of syn) {
      expect(o.raw.length).toBe(4);
      expect((o.opt as MpCapableOption).senderKey).toBeUndefined();
    }
    for (const o of synAck) {
      expect(o.raw.length).toBe(12);
      expect(hex((o.opt as MpCapableOption).senderKey!)).toBe(hex(serverKey));
    }
    for (const o of acks) {
      const c = o.opt as MpCapableOption;
      expect([20, 22]).toContain(o.raw.length);
      expect(hex(c.senderKey!)).toBe(hex(clientKey));
      expect(hex(c.receiverKey!)).toBe(hex(serverKey));
      // A mapping may cover more than this one segment (the kernel coalesces under load).
      if (o.raw.length === 22) expect(c.dataLevelLength!).toBeGreaterThanOrEqual(Math.min(1, o.pkt.payloadLength));
    }
    expect(hex(clientKey)).not.toBe(hex(serverKey));
  });

  it("tokens: the kernel's own MPTCP_INFO tokens equal tokenFromKey of the keys on the wire", () => {
    expect(cap.client.token).toBe(tokenFromKey(clientKey));
    expect(cap.server.token).toBe(tokenFromKey(serverKey));
  });

  it('MP_JOIN: token = tokenFromKey(server key); SYN/ACK and ACK HMACs match joinSynAckHmac/joinAckHmac', () => {
    const joins = cap.options.filter((o) => o.opt.subtype === 'MP_JOIN');
    const bySubflow = new Map<string, SeenOption[]>();
    for (const o of joins) bySubflow.set(subflowKey(o.pkt), [...(bySubflow.get(subflowKey(o.pkt)) ?? []), o]);
    // The client's "subflow" endpoint joins S1, the signalled S2 is joined too.
    expect(bySubflow.size).toBeGreaterThanOrEqual(2);
    for (const [sf, opts] of bySubflow) {
      const syn = opts.find((o) => o.pkt.flags.syn && !o.pkt.flags.ack);
      const synAck = opts.find((o) => o.pkt.flags.syn && o.pkt.flags.ack);
      const ack = opts.find((o) => !o.pkt.flags.syn);
      expect(syn && synAck && ack, `complete join on ${sf}`).toBeTruthy();
      // A = the host that sent the MP_JOIN SYN.
      const aIsClient = fromClient(syn!.pkt);
      expect(aIsClient).toBe(true);
      const keyA = aIsClient ? clientKey : serverKey;
      const keyB = aIsClient ? serverKey : clientKey;
      const s = syn!.opt as MpJoinSynOption;
      const sa = synAck!.opt as MpJoinSynAckOption;
      const a = ack!.opt as MpJoinAckOption;
      expect([syn!.raw.length, synAck!.raw.length, ack!.raw.length]).toEqual([12, 16, 24]);
      expect(s.stage).toBe('syn');
      expect(sa.stage).toBe('synack');
      expect(a.stage).toBe('ack');
      expect(s.receiverToken).toBe(tokenFromKey(keyB));
      const wantB = joinSynAckHmac(keyB, keyA, sa.senderRandom, s.senderRandom);
      expect(hex(sa.truncatedHmac)).toBe(hex(wantB));
      expect(timingSafeEqual(sa.truncatedHmac, wantB)).toBe(true);
      const wantA = joinAckHmac(keyA, keyB, s.senderRandom, sa.senderRandom);
      expect(hex(a.hmac)).toBe(hex(wantA));
      expect(timingSafeEqual(a.hmac, wantA)).toBe(true);
    }
    // And a path of each kind was joined.
    const dsts = new Set([...bySubflow.keys()].map((k) => k.split('>')[1].split(':')[0]));
    expect(dsts).toEqual(new Set([S1, S2]));
  });

  it('DSS: the first mapping of each side on the initial subflow has DSN = IDSN + SSN (first byte IDSN + 1)', () => {
    for (const [side, key, isClient] of [
      ['client', clientKey, true],
      ['server', serverKey, false],
    ] as const) {
      const maps = cap.options
        .filter(
          (o) =>
            o.opt.subtype === 'DSS' &&
            (o.opt as DssOption).dsn !== undefined &&
            // SSN 0 marks a DATA_FIN-only mapping (RFC 8684 §3.3.3), checked below.
            (o.opt as DssOption).ssn !== 0 &&
            fromClient(o.pkt) === isClient &&
            subflowKey(o.pkt) === initialSubflow,
        )
        .map((o) => o.opt as DssOption)
        .sort((x, y) => x.ssn! - y.ssn!);
      expect(maps.length, `${side} DSS mappings`).toBeGreaterThan(0);
      const first = maps[0];
      const idsn = idsnFromKey(key);
      const want = (idsn + BigInt(first.ssn!)) & MASK64;
      if (first.dsnIs64) expect(first.dsn, side).toBe(want);
      else expect(first.dsn, side).toBe(want & MASK32);
      if (first.ssn !== 1) {
        // The first bytes went in the MP_CAPABLE option of the third ACK (implicit DSN IDSN + 1).
        const mpcData = cap.options.find(
          (o) => o.opt.subtype === 'MP_CAPABLE' && (o.opt as MpCapableOption).dataLevelLength !== undefined && fromClient(o.pkt) === isClient,
        );
        expect(mpcData, `${side} first data in MP_CAPABLE`).toBeDefined();
      }
    }
  });

  it('DSS DATA_FIN: DSN = IDSN + 1 + bytes sent, SSN 0, length 1 when on its own', () => {
    for (const [side, key, isClient, total] of [
      ['client', clientKey, true, cap.server.received],
      ['server', serverKey, false, cap.server.sent],
    ] as const) {
      const fins = cap.options
        .filter((o) => o.opt.subtype === 'DSS' && (o.opt as DssOption).dataFin && fromClient(o.pkt) === isClient)
        .map((o) => ({ d: o.opt as DssOption, pkt: o.pkt }));
      expect(fins.length, `${side} DATA_FIN`).toBeGreaterThan(0);
      for (const { d, pkt } of fins) {
        expect(d.dsn).toBeDefined();
        // A DATA_FIN mapping covers the data in the segment (if any) plus the FIN's one DSN.
        const finDsn = (idsnFromKey(key) + 1n + BigInt(total)) & MASK64;
        const mask = d.dsnIs64 ? MASK64 : MASK32;
        expect((d.dsn! + BigInt(d.dataLevelLength!) - 1n) & mask, side).toBe(finDsn & mask);
        if (pkt.payloadLength === 0) {
          expect(d.ssn).toBe(0);
          expect(d.dataLevelLength).toBe(1);
        }
      }
    }
  });

  it("DSS data ACKs acknowledge the peer's IDSN-based sequence space, and MPTCP_INFO agrees", () => {
    const idsnC = idsnFromKey(clientKey);
    const idsnS = idsnFromKey(serverKey);
    // MPTCP_INFO write_seq / rcv_nxt are 64-bit DSNs: IDSN + 1 + bytes.
    expect(BigInt(cap.client.write_seq)).toBe((idsnC + 1n + BigInt(cap.client.sent)) & MASK64);
    // The server's report counts the client's closing "bye" too.
    expect(BigInt(cap.server.rcv_nxt)).toBe((idsnC + 1n + BigInt(cap.server.received)) & MASK64);
    expect(cap.server.received).toBe(cap.client.sent + 3);
    expect(BigInt(cap.server.write_seq)).toBe((idsnS + 1n + BigInt(cap.server.sent)) & MASK64);
    expect(BigInt(cap.client.rcv_nxt)).toBe((idsnS + 1n + BigInt(cap.client.received)) & MASK64);
    for (const [ackerIsClient, peerIdsn, peerSent] of [
      [false, idsnC, cap.server.received],
      [true, idsnS, cap.server.sent],
    ] as const) {
      const acks = cap.options
        .filter((o) => o.opt.subtype === 'DSS' && (o.opt as DssOption).dataAck !== undefined && fromClient(o.pkt) === ackerIsClient)
        .map((o) => o.opt as DssOption);
      expect(acks.length).toBeGreaterThan(0);
      for (const a of acks) {
        // Offset of the data ACK above IDSN + 1, modulo the field width; a DATA_FIN adds one.
        const mask = a.dataAckIs64 ? MASK64 : MASK32;
        const off = (a.dataAck! - (peerIdsn + 1n)) & mask;
        expect(off <= BigInt(peerSent) + 1n, `data ack ${a.dataAck} vs IDSN ${peerIdsn}`).toBe(true);
      }
    }
  });

  it('ADD_ADDR: HMAC = rightmost 64 bits of HMAC(sender key ‖ receiver key, id ‖ addr ‖ port-or-0); the echo comes back', () => {
    const adds = cap.options.filter((o) => o.opt.subtype === 'ADD_ADDR').map((o) => ({ ...o, a: o.opt as AddAddrOption }));
    const signals = adds.filter((o) => !o.a.echo);
    const echoes = adds.filter((o) => o.a.echo);
    expect(signals.length).toBeGreaterThanOrEqual(1);
    for (const o of signals) {
      expect(fromClient(o.pkt)).toBe(false); // the server's "signal" endpoint
      expect(o.a.address).toBe(S2);
      expect(o.raw.length).toBe(o.a.port === undefined ? 16 : 18);
      const want = addAddrHmac(serverKey, clientKey, o.a.addressId, o.a.address, o.a.port);
      expect(hex(o.a.truncatedHmac!)).toBe(hex(want));
      expect(timingSafeEqual(o.a.truncatedHmac!, want)).toBe(true);
      // The other key order does not verify: sender's key goes first.
      expect(timingSafeEqual(o.a.truncatedHmac!, addAddrHmac(clientKey, serverKey, o.a.addressId, o.a.address, o.a.port))).toBe(false);
      // An explicit port 0 is the same message as no port.
      if (o.a.port === undefined) {
        expect(hex(addAddrHmac(serverKey, clientKey, o.a.addressId, o.a.address, 0))).toBe(hex(want));
      }
    }
    expect(echoes.length).toBeGreaterThanOrEqual(1);
    for (const e of echoes) {
      expect(fromClient(e.pkt)).toBe(true);
      expect(e.a.truncatedHmac).toBeUndefined();
      expect(e.raw.length).toBe(e.a.port === undefined ? 8 : 10);
      expect(signals.some((s) => s.a.addressId === e.a.addressId && s.a.address === e.a.address && s.a.port === e.a.port)).toBe(true);
    }
    expect(cap.client.add_addr_accepted).toBeGreaterThanOrEqual(1);
  });
});
