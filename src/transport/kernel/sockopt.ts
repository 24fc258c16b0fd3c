/**
 * Linux MPTCP and TCP socket options: constants, decoders for the structs of
 * include/uapi/linux/mptcp.h and include/uapi/linux/tcp.h, and the getsockopt
 * calls that fetch them.
 *
 * Layouts are ABI facts (x86-64/arm64, little-endian, natural alignment).
 * Structs only ever grow at their end; the kernel copies
 * min(what we offered, what it has) and says how much in optlen. Every
 * decoder reads only the bytes the kernel returned: a field past the end is
 * left undefined (older kernel), and bytes past what we know are ignored
 * (newer kernel).
 */
import { formatIpv4, formatIpv6, parseIpv4, parseIpv6 } from '../../wire/address.js';
import { getsockoptInt, ifNameToIndex, nativeAlloc, setsockoptInt, SyscallError, sysGetsockopt } from './ffi.js';

// --- constants ---------------------------------------------------------------

export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;

export const IPPROTO_TCP = 6;
export const SOL_TCP = 6;
export const IPPROTO_IPV6 = 41;
export const IPPROTO_MPTCP = 262;
export const SOL_MPTCP = 284;
export const SOL_SOCKET = 1;

export const SO_REUSEADDR = 2;
export const SO_RCVBUF = 8;
export const SO_PROTOCOL = 38;
export const IPV6_V6ONLY = 26;
export const TCP_INFO = 11;
export const TCP_NOTSENT_LOWAT = 25;

export const MPTCP_INFO = 1;
export const MPTCP_TCPINFO = 2;
export const MPTCP_SUBFLOW_ADDRS = 3;
export const MPTCP_FULL_INFO = 4;

/** mptcpi_flags */
export const MPTCP_INFO_FLAG_FALLBACK = 1 << 0;
export const MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED = 1 << 1;

/** sizeof(struct mptcp_info) as of Linux 6.10+ (what this decoder knows). */
export const MPTCP_INFO_SIZE = 96;
/** sizeof(struct mptcp_subflow_data): 4×u32, aligned(8). */
export const MPTCP_SUBFLOW_DATA_SIZE = 16;
/** sizeof(struct __kernel_sockaddr_storage): each half of struct mptcp_subflow_addrs. */
export const SOCKADDR_STORAGE_SIZE = 128;
/** sizeof(struct mptcp_subflow_addrs): local union, then remote union. */
export const MPTCP_SUBFLOW_ADDRS_SIZE = 2 * SOCKADDR_STORAGE_SIZE;
/** struct mptcp_subflow_info: u32 id, then the 8-aligned addrs. */
export const MPTCP_SUBFLOW_INFO_ADDRS_OFFSET = 8;
export const MPTCP_SUBFLOW_INFO_SIZE = MPTCP_SUBFLOW_INFO_ADDRS_OFFSET + MPTCP_SUBFLOW_ADDRS_SIZE;
/** offsetof(struct mptcp_full_info, mptcp_info): the header before the embedded mptcp_info. */
export const MPTCP_FULL_INFO_HEADER_SIZE = 40;
/** The part of struct tcp_info this decoder knows (Linux 6.18: 280, of which the last 4 are AccECN flag bits not decoded). */
export const TCP_INFO_DECODED_SIZE = 276;
/** What we offer the kernel for one tcp_info / mptcp_info: more than any kernel has, so we always get all of it. */
const OFFER = 512;

// --- little helpers -------------------------------------------------------------

function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

type Kind = 'u8' | 'u16' | 'u32' | 'u64' | 'seq64';
const WIDTH: Record<Kind, number> = { u8: 1, u16: 2, u32: 4, u64: 8, seq64: 8 };

function read(dv: DataView, off: number, kind: Kind): number | bigint {
  switch (kind) {
    case 'u8':
      return dv.getUint8(off);
    case 'u16':
      return dv.getUint16(off, true);
    case 'u32':
      return dv.getUint32(off, true);
    case 'u64':
      return Number(dv.getBigUint64(off, true));
    case 'seq64':
      return dv.getBigUint64(off, true);
  }
}

/** Decodes the fields of `layout` that lie entirely within buf[0..len). */
function decodeFields(buf: Uint8Array, len: number, layout: ReadonlyArray<readonly [string, number, Kind]>): Record<string, number | bigint> {
  const n = Math.min(len, buf.length);
  const dv = view(buf);
  const out: Record<string, number | bigint> = {};
  for (const [name, off, kind] of layout) if (off + WIDTH[kind] <= n) out[name] = read(dv, off, kind);
  return out;
}

// --- struct mptcp_info -----------------------------------------------------------

/** struct mptcp_info. Fields after rcvNxt exist only on newer kernels (version in brackets). */
export interface MptcpInfo {
  /** Bytes the kernel returned (its sizeof(struct mptcp_info), or less if we offered less). */
  size: number;
  /** Subflows besides the initial one (kernel's count of additional subflows). */
  subflows: number;
  addAddrSignal: number;
  addAddrAccepted: number;
  subflowsMax: number;
  addAddrSignalMax: number;
  addAddrAcceptedMax: number;
  flags: number;
  /** MPTCP_INFO_FLAG_FALLBACK: the connection fell back to plain TCP. */
  fallback: boolean;
  remoteKeyReceived: boolean;
  /** This side's token (RFC 8684: derived from this side's key). */
  token: number;
  writeSeq: bigint;
  sndUna: bigint;
  rcvNxt: bigint;
  localAddrUsed?: number; // 5.12
  localAddrMax?: number; // 5.12
  csumEnabled?: number; // 5.14
  retransmits?: number; // 6.5: MPTCP-level retransmission timeouts
  bytesRetrans?: number; // 6.5: bytes reinjected at the MPTCP level
  bytesSent?: number; // 6.5
  bytesReceived?: number; // 6.5
  bytesAcked?: number; // 6.5
  subflowsTotal?: number; // 6.8: all subflows, the initial one included
  lastDataSent?: number; // 6.10, ms ago
  lastDataRecv?: number; // 6.10, ms ago
  lastAckRecv?: number; // 6.10, ms ago
}

const MPTCP_INFO_LAYOUT = [
  ['subflows', 0, 'u8'],
  ['addAddrSignal', 1, 'u8'],
  ['addAddrAccepted', 2, 'u8'],
  ['subflowsMax', 3, 'u8'],
  ['addAddrSignalMax', 4, 'u8'],
  ['addAddrAcceptedMax', 5, 'u8'],
  ['flags', 8, 'u32'],
  ['token', 12, 'u32'],
  ['writeSeq', 16, 'seq64'],
  ['sndUna', 24, 'seq64'],
  ['rcvNxt', 32, 'seq64'],
  ['localAddrUsed', 40, 'u8'],
  ['localAddrMax', 41, 'u8'],
  ['csumEnabled', 42, 'u8'],
  ['retransmits', 44, 'u32'],
  ['bytesRetrans', 48, 'u64'],
  ['bytesSent', 56, 'u64'],
  ['bytesReceived', 64, 'u64'],
  ['bytesAcked', 72, 'u64'],
  ['subflowsTotal', 80, 'u8'],
  // 81..83 reserved
  ['lastDataSent', 84, 'u32'],
  ['lastDataRecv', 88, 'u32'],
  ['lastAckRecv', 92, 'u32'],
] as const;

/** The first kernel (5.9) returned 40 bytes: anything shorter is not a struct mptcp_info. */
const MPTCP_INFO_MIN = 40;

export function decodeMptcpInfo(buf: Uint8Array, len: number): MptcpInfo {
  if (Math.min(len, buf.length) < MPTCP_INFO_MIN) throw new RangeError(`struct mptcp_info needs ≥ ${MPTCP_INFO_MIN} bytes, got ${len}`);
  const f = decodeFields(buf, len, MPTCP_INFO_LAYOUT) as unknown as Omit<MptcpInfo, 'size' | 'fallback' | 'remoteKeyReceived'>;
  return {
    size: len,
    ...f,
    fallback: (f.flags & MPTCP_INFO_FLAG_FALLBACK) !== 0,
    remoteKeyReceived: (f.flags & MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED) !== 0,
  };
}

// --- struct tcp_info --------------------------------------------------------------

/** struct tcp_info. Times in µs unless noted; fields after totalRetrans depend on the kernel version. */
export interface TcpInfo {
  /** Bytes the kernel returned (its sizeof(struct tcp_info), or less if we offered less). */
  size: number;
  state: number;
  caState: number;
  retransmits: number;
  probes: number;
  backoff: number;
  options: number;
  sndWscale: number;
  rcvWscale: number;
  deliveryRateAppLimited: boolean;
  fastopenClientFail: number;
  rto: number;
  ato: number;
  sndMss: number;
  rcvMss: number;
  unacked: number;
  sacked: number;
  lost: number;
  retrans: number;
  fackets: number;
  lastDataSent: number; // ms
  lastAckSent: number; // ms
  lastDataRecv: number; // ms
  lastAckRecv: number; // ms
  pmtu: number;
  rcvSsthresh: number;
  rtt: number;
  rttvar: number;
  sndSsthresh: number;
  sndCwnd: number;
  advmss: number;
  reordering: number;
  rcvRtt: number;
  rcvSpace: number;
  totalRetrans: number;
  pacingRate?: number; // bytes/s
  maxPacingRate?: number;
  bytesAcked?: number;
  bytesReceived?: number;
  segsOut?: number;
  segsIn?: number;
  notsentBytes?: number;
  minRtt?: number;
  dataSegsIn?: number;
  dataSegsOut?: number;
  deliveryRate?: number; // bytes/s
  busyTime?: number;
  rwndLimited?: number;
  sndbufLimited?: number;
  delivered?: number;
  deliveredCe?: number;
  bytesSent?: number;
  bytesRetrans?: number;
  dsackDups?: number;
  reordSeen?: number;
  rcvOoopack?: number;
  sndWnd?: number;
  rcvWnd?: number;
  rehash?: number;
  totalRto?: number;
  totalRtoRecoveries?: number;
  totalRtoTime?: number; // ms
  receivedCe?: number;
  deliveredE1Bytes?: number;
  deliveredE0Bytes?: number;
  deliveredCeBytes?: number;
  receivedE1Bytes?: number;
  receivedE0Bytes?: number;
  receivedCeBytes?: number;
}

const TCP_INFO_LAYOUT = [
  ['state', 0, 'u8'],
  ['caState', 1, 'u8'],
  ['retransmits', 2, 'u8'],
  ['probes', 3, 'u8'],
  ['backoff', 4, 'u8'],
  ['options', 5, 'u8'],
  // 6: snd_wscale:4, rcv_wscale:4; 7: delivery_rate_app_limited:1, fastopen_client_fail:2 (decoded below)
  ['rto', 8, 'u32'],
  ['ato', 12, 'u32'],
  ['sndMss', 16, 'u32'],
  ['rcvMss', 20, 'u32'],
  ['unacked', 24, 'u32'],
  ['sacked', 28, 'u32'],
  ['lost', 32, 'u32'],
  ['retrans', 36, 'u32'],
  ['fackets', 40, 'u32'],
  ['lastDataSent', 44, 'u32'],
  ['lastAckSent', 48, 'u32'],
  ['lastDataRecv', 52, 'u32'],
  ['lastAckRecv', 56, 'u32'],
  ['pmtu', 60, 'u32'],
  ['rcvSsthresh', 64, 'u32'],
  ['rtt', 68, 'u32'],
  ['rttvar', 72, 'u32'],
  ['sndSsthresh', 76, 'u32'],
  ['sndCwnd', 80, 'u32'],
  ['advmss', 84, 'u32'],
  ['reordering', 88, 'u32'],
  ['rcvRtt', 92, 'u32'],
  ['rcvSpace', 96, 'u32'],
  ['totalRetrans', 100, 'u32'],
  ['pacingRate', 104, 'u64'],
  ['maxPacingRate', 112, 'u64'],
  ['bytesAcked', 120, 'u64'],
  ['bytesReceived', 128, 'u64'],
  ['segsOut', 136, 'u32'],
  ['segsIn', 140, 'u32'],
  ['notsentBytes', 144, 'u32'],
  ['minRtt', 148, 'u32'],
  ['dataSegsIn', 152, 'u32'],
  ['dataSegsOut', 156, 'u32'],
  ['deliveryRate', 160, 'u64'],
  ['busyTime', 168, 'u64'],
  ['rwndLimited', 176, 'u64'],
  ['sndbufLimited', 184, 'u64'],
  ['delivered', 192, 'u32'],
  ['deliveredCe', 196, 'u32'],
  ['bytesSent', 200, 'u64'],
  ['bytesRetrans', 208, 'u64'],
  ['dsackDups', 216, 'u32'],
  ['reordSeen', 220, 'u32'],
  ['rcvOoopack', 224, 'u32'],
  ['sndWnd', 228, 'u32'],
  ['rcvWnd', 232, 'u32'],
  ['rehash', 236, 'u32'],
  ['totalRto', 240, 'u16'],
  ['totalRtoRecoveries', 242, 'u16'],
  ['totalRtoTime', 244, 'u32'],
  ['receivedCe', 248, 'u32'],
  ['deliveredE1Bytes', 252, 'u32'],
  ['deliveredE0Bytes', 256, 'u32'],
  ['deliveredCeBytes', 260, 'u32'],
  ['receivedE1Bytes', 264, 'u32'],
  ['receivedE0Bytes', 268, 'u32'],
  ['receivedCeBytes', 272, 'u32'],
  // 276: AccECN mode / option-seen / fail-mode bits, whose layout changed between releases: not decoded.
] as const;

/** Every kernel Node 20 runs on returns at least up to tcpi_total_retrans. */
const TCP_INFO_MIN = 104;

export function decodeTcpInfo(buf: Uint8Array, len: number): TcpInfo {
  if (Math.min(len, buf.length) < TCP_INFO_MIN) throw new RangeError(`struct tcp_info needs ≥ ${TCP_INFO_MIN} bytes, got ${len}`);
  const f = decodeFields(buf, len, TCP_INFO_LAYOUT) as unknown as TcpInfo;
  const b6 = buf[6];
  const b7 = buf[7];
  return {
    ...f,
    size: len,
    sndWscale: b6 & 0x0f,
    rcvWscale: b6 >> 4,
    deliveryRateAppLimited: (b7 & 1) !== 0,
    fastopenClientFail: (b7 >> 1) & 3,
  };
}

/** include/net/tcp_states.h, in the lower-case words mptls uses for subflow states. */
const TCP_STATES = ['unknown', 'established', 'syn-sent', 'syn-received', 'fin-wait-1', 'fin-wait-2', 'time-wait', 'closed', 'close-wait', 'last-ack', 'listen', 'closing', 'new-syn-received', 'bound-inactive'];

export function tcpStateName(state: number): string {
  return TCP_STATES[state] ?? `state-${state}`;
}

// --- sockaddr ---------------------------------------------------------------------

export interface SockAddr {
  family: 4 | 6;
  address: string;
  port: number;
  flowinfo?: number;
  scopeId?: number;
}

/** struct sockaddr_in / sockaddr_in6 at buf[off..): null for AF_UNSPEC or an unknown family. */
export function decodeSockaddr(buf: Uint8Array, off = 0, len = buf.length - off): SockAddr | null {
  if (len < 2) return null;
  const dv = view(buf);
  const family = dv.getUint16(off, true);
  if (family === AF_INET && len >= 8) {
    return { family: 4, address: formatIpv4(buf, off + 4), port: dv.getUint16(off + 2, false) };
  }
  if (family === AF_INET6 && len >= 24) {
    const a: SockAddr = { family: 6, address: formatIpv6(buf, off + 8), port: dv.getUint16(off + 2, false), flowinfo: dv.getUint32(off + 4, false) };
    if (len >= 28) a.scopeId = dv.getUint32(off + 24, true);
    return a;
  }
  return null;
}

/**
 * sockaddr_in (16 bytes) or sockaddr_in6 (28 bytes) for `address` and `port`.
 * An IPv6 zone may be numeric or an interface name ("fe80::1%eth0").
 */
export function encodeSockaddr(address: string, port: number): Buffer {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`bad port ${port}`);
  const v4 = parseIpv4(address);
  if (v4) {
    const b = Buffer.alloc(16);
    b.writeUInt16LE(AF_INET, 0);
    b.writeUInt16BE(port, 2);
    b.set(v4, 4);
    return b;
  }
  const pct = address.indexOf('%');
  const bare = pct >= 0 ? address.slice(0, pct) : address;
  const v6 = parseIpv6(bare);
  if (!v6) throw new TypeError(`not an IP address: ${JSON.stringify(address)}`);
  let scope = 0;
  if (pct >= 0) {
    const zone = address.slice(pct + 1);
    scope = /^\d+$/.test(zone) ? Number(zone) : ifNameToIndex(zone);
  }
  const b = Buffer.alloc(28);
  b.writeUInt16LE(AF_INET6, 0);
  b.writeUInt16BE(port, 2);
  b.set(v6, 8);
  b.writeUInt32LE(scope >>> 0, 24);
  return b;
}

// --- struct mptcp_subflow_data (MPTCP_TCPINFO, MPTCP_SUBFLOW_ADDRS) ---------------------

export interface SubflowDataHeader {
  /** Echo of what we sent: the header size userspace uses. */
  sizeSubflowData: number;
  /** Subflows the connection has (even those that did not fit). */
  numSubflows: number;
  /** The kernel's size of one element. */
  sizeKernel: number;
  /** The size of one element it copied: min(ours, its own). */
  sizeUser: number;
}

export function decodeSubflowDataHeader(buf: Uint8Array): SubflowDataHeader {
  const dv = view(buf);
  return {
    sizeSubflowData: dv.getUint32(0, true),
    numSubflows: dv.getUint32(4, true),
    sizeKernel: dv.getUint32(8, true),
    sizeUser: dv.getUint32(12, true),
  };
}

export interface SubflowArray<T> {
  header: SubflowDataHeader;
  /** optlen as the kernel returned it: header + copied elements. */
  optlen: number;
  items: T[];
}

/**
 * MPTCP_TCPINFO / MPTCP_SUBFLOW_ADDRS: a mptcp_subflow_data header followed
 * by an array. Offers room for `capacity` elements of `elemOffer` bytes and
 * grows once if the kernel reports more subflows than fit.
 */
function getSubflowArray<T>(fd: number, optname: number, elemOffer: number, decode: (buf: Uint8Array, len: number) => T, capacity = 8): SubflowArray<T> {
  for (let attempt = 0; ; attempt++) {
    const buf = Buffer.alloc(MPTCP_SUBFLOW_DATA_SIZE + capacity * elemOffer);
    buf.writeUInt32LE(MPTCP_SUBFLOW_DATA_SIZE, 0); // size_subflow_data
    buf.writeUInt32LE(elemOffer, 12); // size_user; num_subflows and size_kernel must be 0
    const optlen = sysGetsockopt(fd, SOL_MPTCP, optname, buf);
    const header = decodeSubflowDataHeader(buf);
    const copied = header.sizeUser > 0 ? Math.floor(Math.max(0, Math.min(optlen, buf.length) - header.sizeSubflowData) / header.sizeUser) : 0;
    if (copied < header.numSubflows && attempt === 0) {
      capacity = header.numSubflows + 4;
      continue;
    }
    const items: T[] = [];
    for (let i = 0; i < copied; i++) {
      const start = header.sizeSubflowData + i * header.sizeUser;
      items.push(decode(buf.subarray(start, start + header.sizeUser), header.sizeUser));
    }
    return { header, optlen, items };
  }
}

export interface SubflowAddrs {
  local: SockAddr | null;
  remote: SockAddr | null;
}

/** struct mptcp_subflow_addrs: two sockaddr_storage-sized unions, local then remote. */
export function decodeSubflowAddrs(buf: Uint8Array, len: number): SubflowAddrs {
  const n = Math.min(len, buf.length);
  return {
    local: decodeSockaddr(buf, 0, Math.min(n, SOCKADDR_STORAGE_SIZE)),
    remote: n > SOCKADDR_STORAGE_SIZE ? decodeSockaddr(buf, SOCKADDR_STORAGE_SIZE, n - SOCKADDR_STORAGE_SIZE) : null,
  };
}

// --- getsockopt entry points --------------------------------------------------------------

/** SO_PROTOCOL: 262 (IPPROTO_MPTCP) for an MPTCP socket, 6 for TCP. */
export function getSockProtocol(fd: number): number {
  return getsockoptInt(fd, SOL_SOCKET, SO_PROTOCOL);
}

/**
 * MPTCP_INFO. Throws a SyscallError with code EOPNOTSUPP when the
 * connection fell back to TCP (the kernel then answers SOL_MPTCP options as
 * a TCP socket would), or when `fd` is not an MPTCP socket.
 */
export function getMptcpInfo(fd: number): MptcpInfo {
  const buf = Buffer.alloc(OFFER);
  const len = sysGetsockopt(fd, SOL_MPTCP, MPTCP_INFO, buf);
  return decodeMptcpInfo(buf, len);
}

/** MPTCP_TCPINFO: struct tcp_info of every subflow. */
export function getSubflowTcpInfo(fd: number): SubflowArray<TcpInfo> {
  return getSubflowArray(fd, MPTCP_TCPINFO, OFFER, decodeTcpInfo);
}

/** MPTCP_SUBFLOW_ADDRS: local and remote address of every subflow. */
export function getSubflowAddrs(fd: number): SubflowArray<SubflowAddrs> {
  return getSubflowArray(fd, MPTCP_SUBFLOW_ADDRS, OFFER, decodeSubflowAddrs);
}

export interface FullInfoSubflow {
  /** The kernel's subflow id (1 = the initial subflow). */
  id: number;
  local: SockAddr | null;
  remote: SockAddr | null;
  tcp: TcpInfo | null;
}

export interface FullInfo {
  sizeTcpinfoKernel: number;
  sizeTcpinfoUser: number;
  sizeSfinfoKernel: number;
  sizeSfinfoUser: number;
  /** Subflows the connection has, even those beyond what we asked for. */
  numSubflows: number;
  optlen: number;
  mptcp: MptcpInfo;
  subflows: FullInfoSubflow[];
}

/**
 * MPTCP_FULL_INFO (Linux 6.5+): mptcp_info, and per subflow its id,
 * addresses and tcp_info, in one consistent snapshot. The two arrays are
 * written by the kernel through pointers in the request, so they live in
 * native memory. Throws SyscallError (EOPNOTSUPP/ENOPROTOOPT) where the
 * kernel does not have it or the connection fell back.
 */
export function getFullInfo(fd: number, maxSubflows = 16): FullInfo {
  const sf = nativeAlloc(maxSubflows * OFFER);
  const ti = nativeAlloc(maxSubflows * OFFER);
  try {
    const buf = Buffer.alloc(MPTCP_FULL_INFO_HEADER_SIZE + OFFER);
    // size_tcpinfo_kernel (0) must be 0
    buf.writeUInt32LE(OFFER, 4); // size_tcpinfo_user
    // size_sfinfo_kernel (8) must be 0
    buf.writeUInt32LE(OFFER, 12); // size_sfinfo_user
    // num_subflows (16) must be 0
    buf.writeUInt32LE(maxSubflows, 20); // size_arrays_user
    buf.writeBigUInt64LE(sf.address, 24); // subflow_info
    buf.writeBigUInt64LE(ti.address, 32); // tcp_info
    const optlen = sysGetsockopt(fd, SOL_MPTCP, MPTCP_FULL_INFO, buf);
    const dv = view(buf);
    const sizeTcpinfoKernel = dv.getUint32(0, true);
    const sizeTcpinfoUser = dv.getUint32(4, true);
    const sizeSfinfoKernel = dv.getUint32(8, true);
    const sizeSfinfoUser = dv.getUint32(12, true);
    const numSubflows = dv.getUint32(16, true);
    const mptcp = decodeMptcpInfo(buf.subarray(MPTCP_FULL_INFO_HEADER_SIZE), optlen - MPTCP_FULL_INFO_HEADER_SIZE);
    const subflows: FullInfoSubflow[] = [];
    const sfBytes = Buffer.from(sf.bytes); // copy out of native memory before freeing it
    const tiBytes = Buffer.from(ti.bytes);
    for (let i = 0; i < Math.min(numSubflows, maxSubflows); i++) {
      const s = sfBytes.subarray(i * sizeSfinfoUser, (i + 1) * sizeSfinfoUser);
      const a = decodeSubflowAddrs(s.subarray(MPTCP_SUBFLOW_INFO_ADDRS_OFFSET), Math.max(0, sizeSfinfoUser - MPTCP_SUBFLOW_INFO_ADDRS_OFFSET));
      const t = tiBytes.subarray(i * sizeTcpinfoUser, (i + 1) * sizeTcpinfoUser);
      subflows.push({
        id: sizeSfinfoUser >= 4 ? s.readUInt32LE(0) : i + 1,
        local: a.local,
        remote: a.remote,
        tcp: sizeTcpinfoUser >= TCP_INFO_MIN ? decodeTcpInfo(t, sizeTcpinfoUser) : null,
      });
    }
    return { sizeTcpinfoKernel, sizeTcpinfoUser, sizeSfinfoKernel, sizeSfinfoUser, numSubflows, optlen, mptcp, subflows };
  } finally {
    sf.free();
    ti.free();
  }
}

/** TCP_INFO (on a TCP socket, or on an MPTCP socket: its first subflow). */
export function getTcpInfo(fd: number): TcpInfo {
  const buf = Buffer.alloc(OFFER);
  const len = sysGetsockopt(fd, SOL_TCP, TCP_INFO, buf);
  return decodeTcpInfo(buf, len);
}

/** TCP_NOTSENT_LOWAT: wake the writer only when fewer than `bytes` unsent bytes are queued. */
export function setNotsentLowat(fd: number, bytes: number): void {
  setsockoptInt(fd, SOL_TCP, TCP_NOTSENT_LOWAT, bytes);
}

export function getNotsentLowat(fd: number): number {
  return getsockoptInt(fd, SOL_TCP, TCP_NOTSENT_LOWAT);
}

/** The sizes this kernel reports for the structs (from optlen and the size_kernel fields). */
export interface KernelStructSizes {
  mptcpInfo: number;
  tcpInfo: number;
  subflowAddrs: number;
  subflowInfo?: number;
  fullInfoMptcpInfo?: number;
}

/** Asks the kernel, on an MPTCP socket that did not fall back, how big its structs are. */
export function kernelStructSizes(fd: number): KernelStructSizes {
  const mptcpInfo = getMptcpInfo(fd).size;
  const tcpInfo = getSubflowTcpInfo(fd).header.sizeKernel;
  const subflowAddrs = getSubflowAddrs(fd).header.sizeKernel;
  const out: KernelStructSizes = { mptcpInfo, tcpInfo, subflowAddrs };
  try {
    const full = getFullInfo(fd, 1);
    out.subflowInfo = full.sizeSfinfoKernel;
    out.fullInfoMptcpInfo = full.optlen - MPTCP_FULL_INFO_HEADER_SIZE;
  } catch (e) {
    if (!(e instanceof SyscallError)) throw e;
  }
  return out;
}

// --- getting an fd from node's sockets ------------------------------------------------------

interface HandleLike {
  fd?: number;
  _parent?: HandleLike;
}
interface SocketLike {
  _handle?: HandleLike | null;
  _parent?: SocketLike | null;
}

/**
 * The file descriptor under a net.Socket, or under a tls.TLSSocket that
 * wraps one (Linux; `socket._handle.fd`). undefined once the socket is closed
 * (never a stale number: after close the fd may belong to someone else), or
 * for a socket that is not backed by an OS socket (a JS stream).
 */
export function socketFd(socket: unknown): number | undefined {
  const s = socket as SocketLike | null | undefined;
  if (!s) return undefined;
  const direct = s._handle?.fd;
  if (typeof direct === 'number' && direct >= 0) return direct;
  // A TLSSocket: its handle is the TLSWrap, whose _parent is the TCP handle;
  // its _parent is the net.Socket it took over.
  const viaWrap = s._handle?._parent?.fd;
  if (typeof viaWrap === 'number' && viaWrap >= 0) return viaWrap;
  const viaParent = s._parent?._handle?.fd;
  if (s._handle !== null && typeof viaParent === 'number' && viaParent >= 0) return viaParent;
  return undefined;
}
