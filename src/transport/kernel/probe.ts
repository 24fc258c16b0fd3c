/**
 * A cheap TCP_INFO probe for the userspace transport's own TCP subflows
 * (design notes §5): the kernel's unsent bytes and smoothed RTT are the
 * signals Linux's own MPTCP scheduler uses, and whether the path delivers
 * (segments unacknowledged, time since the last ACK). One getsockopt per
 * call into a reused buffer; only those fields are read.
 */
import { ffi, ffiStatus } from './ffi.js';
import { socketFd } from './sockopt.js';

const SOL_TCP = 6;
const TCP_INFO = 11;
/** struct tcp_info offsets (include/uapi/linux/tcp.h): tcpi_unacked (segments), tcpi_last_ack_recv (ms ago), tcpi_rtt (µs), tcpi_notsent_bytes. */
const OFF_UNACKED = 24;
const OFF_LAST_ACK_RECV = 56;
const OFF_RTT = 68;
const OFF_NOTSENT = 144;
const WANT = OFF_NOTSENT + 4;

export interface TcpProbeResult {
  /** Bytes the kernel holds that were never sent. */
  notsent: number;
  /** The kernel's smoothed RTT, ms. */
  rttMs: number;
  /** Segments sent and not yet acknowledged by the peer's TCP. */
  unacked: number;
  /** Milliseconds since the last TCP ACK arrived. */
  lastAckRecvMs: number;
}

export type TcpProbe = (socket: unknown) => TcpProbeResult | undefined;

/** A probe, or undefined where TCP_INFO cannot be read (not Linux, no koffi). */
export function createTcpProbe(): TcpProbe | undefined {
  if (process.platform !== 'linux' || process.env.MPTLS_NO_TCPINFO) return undefined;
  const st = ffiStatus();
  if (!st.ok) return undefined;
  const c = ffi();
  const buf = Buffer.alloc(WANT);
  const len = Buffer.alloc(4);
  return (socket) => {
    const fd = socketFd(socket);
    if (fd === undefined) return undefined;
    len.writeUInt32LE(WANT, 0);
    if (c.getsockopt(fd, SOL_TCP, TCP_INFO, buf, len) < 0) return undefined;
    if (len.readUInt32LE(0) < WANT) return undefined;
    return { notsent: buf.readUInt32LE(OFF_NOTSENT), rttMs: buf.readUInt32LE(OFF_RTT) / 1000, unacked: buf.readUInt32LE(OFF_UNACKED), lastAckRecvMs: buf.readUInt32LE(OFF_LAST_ACK_RECV) };
  };
}
