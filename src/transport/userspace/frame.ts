/**
 * The userspace wire format (docs/PROTOCOL.md §5): each subflow is one TCP
 * connection that starts with an 8-byte preamble and then carries frames.
 *
 *   preamble: A7 4D 50 54 ("\xa7MPT") | version=3 | role (1 client, 2 server) | 0 | 0
 *   frame:    type(1) flags(1) optionsLength(u16) payloadLength(u32)
 *             window(u32) ack(u32) | options | [DATA_FIN MAC (8), flag FIN_MAC] | payload
 *
 * Version 2 added the authenticated DATA_FIN (flag FIN_MAC); version 3 the
 * first flight (G-mode IDSNs that need no token, data right after the
 * MP_CAPABLE SYN and SYN/ACK) and early joins. A peer of another version is
 * refused at its preamble ("unsupported version").
 *
 * The first byte 0xA7 can begin neither a TLS record (0x14..0x18) nor an
 * SSLv2 hello (high bit with a length) a server would accept, nor an HTTP
 * request (ASCII). The first frame of a join subflow is an MP_JOIN SYN, so its
 * token always stands at byte 28 of the stream (and the server id of a
 * balancer-aware token at byte 28 too: its top byte).
 */
import { decodeOptions, encodeOptionInto, optionLength } from '../../wire/options.js';
import { MptcpWireError } from '../../wire/errors.js';
import type { MptcpOption } from '../../wire/types.js';
import type { Segment } from '../../core/types.js';

export const MAGIC = Uint8Array.of(0xa7, 0x4d, 0x50, 0x54);
export const VERSION = 3;
export const PREAMBLE_LENGTH = 8;
export const FRAME_HEADER_LENGTH = 16;
export const ROLE_CLIENT = 1;
export const ROLE_SERVER = 2;
/** Byte offset of the MP_JOIN receiver token in a join subflow's client stream. */
export const JOIN_TOKEN_OFFSET = PREAMBLE_LENGTH + FRAME_HEADER_LENGTH + 4;
/** Byte offset of the first option's subtype byte (high nibble) in a client stream. */
export const FIRST_SUBTYPE_OFFSET = PREAMBLE_LENGTH + FRAME_HEADER_LENGTH + 2;

export const FrameType = { SEGMENT: 0x01 } as const;
export const FrameFlag = { WINDOW: 0x01, ACK: 0x02, FIN_MAC: 0x04 } as const;
/** Bytes of the DATA_FIN MAC a FIN_MAC frame carries after its options. */
export const FIN_MAC_LENGTH = 8;

/** Largest option area a frame may carry (TCP allows 40 bytes; mptls a little more). */
export const MAX_OPTIONS_LENGTH = 512;
/** Largest payload: the DSS data-level length is 16 bits. */
export const MAX_PAYLOAD_LENGTH = 65535;

export class FrameError extends Error {
  override readonly name = 'FrameError';
  readonly code = 'ERR_MPTLS_FRAME';
  constructor(
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`bad mptls frame at stream offset ${offset}: ${reason}`);
  }
}

export function preamble(role: number): Uint8Array {
  return Uint8Array.of(...MAGIC, VERSION, role, 0, 0);
}

// Frame heads are carved from 64 KiB slabs rather than allocated one by one
// (one allocation per ~1 500 frames instead of per frame). A slab is never
// reused: once every head cut from it has been written, it is garbage.
const SLAB_SIZE = 64 * 1024;
let slab = Buffer.allocUnsafe(SLAB_SIZE);
let slabView = new DataView(slab.buffer, slab.byteOffset, slab.byteLength);
let slabUsed = 0;

/**
 * Encodes a segment's frame header and options (and DATA_FIN MAC) into one
 * buffer; the payload is written after it separately (no copy of payload
 * bytes).
 */
export function encodeFrameHead(seg: Segment): Uint8Array {
  let optLen = 0;
  for (const o of seg.options) optLen += optionLength(o);
  if (optLen > MAX_OPTIONS_LENGTH) throw new RangeError(`options too long (${optLen})`);
  const payloadLength = seg.payload?.length ?? 0;
  if (payloadLength > MAX_PAYLOAD_LENGTH) throw new RangeError(`payload too long (${payloadLength})`);
  const mac = seg.dataFinMac;
  if (mac !== undefined && mac.length !== FIN_MAC_LENGTH) throw new RangeError(`DATA_FIN MAC must be ${FIN_MAC_LENGTH} bytes`);
  const len = FRAME_HEADER_LENGTH + optLen + (mac ? FIN_MAC_LENGTH : 0);
  if (slabUsed + len > SLAB_SIZE) {
    slab = Buffer.allocUnsafe(SLAB_SIZE);
    slabView = new DataView(slab.buffer, slab.byteOffset, slab.byteLength);
    slabUsed = 0;
  }
  const at = slabUsed;
  slabUsed += (len + 7) & ~7;
  const dv = slabView;
  slab[at] = FrameType.SEGMENT;
  let flags = 0;
  dv.setUint32(at + 8, seg.window === undefined ? 0 : seg.window >>> 0);
  if (seg.window !== undefined) flags |= FrameFlag.WINDOW;
  dv.setUint32(at + 12, seg.ack === undefined ? 0 : seg.ack >>> 0);
  if (seg.ack !== undefined) flags |= FrameFlag.ACK;
  if (mac) flags |= FrameFlag.FIN_MAC;
  slab[at + 1] = flags;
  dv.setUint16(at + 2, optLen);
  dv.setUint32(at + 4, payloadLength);
  let off = at + FRAME_HEADER_LENGTH;
  for (const o of seg.options) off += encodeOptionInto(o, slab, off);
  if (mac) slab.set(mac, off);
  return slab.subarray(at, at + len);
}

/** Events of the parser: the peer's preamble, then segments. */
export type ParsedItem = { kind: 'preamble'; version: number; role: number } | { kind: 'segment'; segment: Segment };

/**
 * A streaming parser: feed it chunks as they arrive; it returns items as soon
 * as they can be handed on and keeps at most one frame header and option
 * area. Payloads are always views into the socket's chunks: a payload split
 * across reads comes out as a segment with the first piece and continuation
 * segments (no options) with the rest, which the core joins through the DSS
 * mapping.
 *
 * Written as a dispatch loop (like ws's Receiver `startLoop`): `push` switches
 * on the state and calls one small method per state; each method consumes
 * what it can and returns false when it needs more bytes.
 *
 *   preamble ──▶ header ──▶ options (+ FIN_MAC, first payload piece) ──▶ header …
 *                              └──▶ payload (the rest, piece by piece) ──▶ header …
 */
export class FrameParser {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private state: 'preamble' | 'header' | 'options' | 'payload' = 'preamble';
  /** Payload bytes of the current frame still to come. */
  private payloadLeft = 0;
  private consumed = 0;
  private optLen = 0;
  /** FIN_MAC_LENGTH when the frame carries a DATA_FIN MAC, else 0. */
  private macLen = 0;
  private payloadLen = 0;
  private header = new Uint8Array(FRAME_HEADER_LENGTH);
  private failed: FrameError | undefined;

  /** Bytes held waiting for the rest of a frame (bounded by one frame). */
  get pending(): number {
    return this.buffered;
  }
  /** Whether the preamble has been seen yet. */
  get sawPreamble(): boolean {
    return this.state !== 'preamble';
  }

  /** Parses what it can; throws FrameError (or MptcpWireError) on bad input, then keeps throwing. */
  push(chunk: Uint8Array): ParsedItem[] {
    if (this.failed) throw this.failed;
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const out: ParsedItem[] = [];
    try {
      let more = true;
      while (more) {
        switch (this.state) {
          case 'preamble':
            more = this.getPreamble(out);
            break;
          case 'header':
            more = this.getHeader();
            break;
          case 'options':
            more = this.getOptions(out);
            break;
          case 'payload':
            more = this.getPayload(out);
            break;
        }
      }
    } catch (e) {
      this.failed = e instanceof FrameError ? e : new FrameError(this.consumed, String((e as Error)?.message ?? e));
      this.chunks = [];
      this.buffered = 0;
      throw this.failed;
    }
    return out;
  }

  /** The 8-byte preamble. The magic is checked as soon as bytes arrive, so a non-mptls peer is recognised on its first byte. */
  private getPreamble(out: ParsedItem[]): boolean {
    const n = Math.min(this.buffered, MAGIC.length);
    const head = this.peek(n);
    for (let i = 0; i < n; i++) {
      if (head[i] !== MAGIC[i]) throw new FrameError(this.consumed + i, 'not an mptls stream (bad magic)');
    }
    if (this.buffered < PREAMBLE_LENGTH) return false;
    const p = this.take(PREAMBLE_LENGTH);
    if (p[4] !== VERSION) throw new FrameError(this.consumed - 4, `unsupported version ${p[4]}`);
    out.push({ kind: 'preamble', version: p[4], role: p[5] });
    this.state = 'header';
    return true;
  }

  /** The 16-byte frame header: type, flags and both lengths checked before anything else is read. */
  private getHeader(): boolean {
    if (this.buffered < FRAME_HEADER_LENGTH) return false;
    const h = this.take(FRAME_HEADER_LENGTH);
    this.header.set(h);
    const type = h[0];
    if (type !== FrameType.SEGMENT) throw new FrameError(this.consumed - FRAME_HEADER_LENGTH, `unknown frame type ${type}`);
    const dv = new DataView(h.buffer, h.byteOffset, h.byteLength);
    this.optLen = dv.getUint16(2);
    this.payloadLen = dv.getUint32(4);
    if (this.optLen > MAX_OPTIONS_LENGTH) throw new FrameError(this.consumed - 14, `options length ${this.optLen} over ${MAX_OPTIONS_LENGTH}`);
    if (this.payloadLen > MAX_PAYLOAD_LENGTH) throw new FrameError(this.consumed - 12, `payload length ${this.payloadLen} over ${MAX_PAYLOAD_LENGTH}`);
    if ((h[1] & ~(FrameFlag.WINDOW | FrameFlag.ACK | FrameFlag.FIN_MAC)) !== 0) throw new FrameError(this.consumed - 15, `unknown flags 0x${h[1].toString(16)}`);
    this.macLen = h[1] & FrameFlag.FIN_MAC ? FIN_MAC_LENGTH : 0;
    this.state = 'options';
    return true;
  }

  /**
   * The option area and DATA_FIN MAC, whole, with the first piece of the
   * payload (at least one byte of it when there is a payload): one segment.
   * The payload may follow in pieces (no copy).
   */
  private getOptions(out: ParsedItem[]): boolean {
    const head = this.optLen + this.macLen;
    if (this.buffered < head) return false;
    if (this.payloadLen > 0 && this.buffered === head) return false;
    const start = this.consumed;
    const opts = this.take(this.optLen);
    // 8 bytes: copied, so they pin no socket read.
    const mac = this.macLen > 0 ? this.take(this.macLen).slice() : undefined;
    let payload: Uint8Array | undefined;
    if (this.payloadLen > 0) {
      const n = Math.min(this.payloadLen, this.chunks[0].length);
      payload = this.take(n);
      this.payloadLeft = this.payloadLen - n;
    }
    let options: MptcpOption[];
    try {
      options = decodeOptions(opts);
    } catch (e) {
      if (e instanceof MptcpWireError) throw new FrameError(start + e.offset, `bad option: ${e.reason}`);
      throw e;
    }
    const h = this.header;
    const dv = new DataView(h.buffer, h.byteOffset, h.byteLength);
    const segment: Segment = { options };
    if (payload) segment.payload = payload;
    if (mac) segment.dataFinMac = mac;
    if (h[1] & FrameFlag.WINDOW) segment.window = dv.getUint32(8);
    if (h[1] & FrameFlag.ACK) segment.ack = dv.getUint32(12);
    out.push({ kind: 'segment', segment });
    this.state = this.payloadLeft > 0 ? 'payload' : 'header';
    return true;
  }

  /**
   * The rest of a frame's payload, as it arrives: each piece is a view into
   * one chunk, handed on as a continuation segment (the core continues the
   * DSS mapping across segments, as over TCP).
   */
  private getPayload(out: ParsedItem[]): boolean {
    if (this.buffered === 0) return false;
    const n = Math.min(this.payloadLeft, this.chunks[0].length);
    out.push({ kind: 'segment', segment: { options: [], payload: this.take(n) } });
    this.payloadLeft -= n;
    if (this.payloadLeft === 0) this.state = 'header';
    return true;
  }

  /** The first n buffered bytes without consuming (n small). */
  private peek(n: number): Uint8Array {
    if (this.chunks.length > 0 && this.chunks[0].length >= n) return this.chunks[0].subarray(0, n);
    const out = new Uint8Array(n);
    let off = 0;
    for (const c of this.chunks) {
      const k = Math.min(c.length, n - off);
      out.set(c.subarray(0, k), off);
      off += k;
      if (off === n) break;
    }
    return out;
  }

  /** Consumes n bytes: a view when they lie in one chunk, else one copy. */
  private take(n: number): Uint8Array {
    this.consumed += n;
    this.buffered -= n;
    const first = this.chunks[0];
    if (n === 0) return new Uint8Array(0);
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0];
      const k = Math.min(c.length, n - off);
      out.set(c.subarray(0, k), off);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }
}
