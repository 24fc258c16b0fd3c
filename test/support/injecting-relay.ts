/**
 * An on-path observer that can also inject: a TCP relay like
 * test/support/relay.ts that records every byte of both directions of every
 * subflow crossing it, and in addition tracks the userspace wire format
 * (docs/PROTOCOL.md §5: an 8-byte preamble, then frames of a 16-byte header,
 * options and payload) so that it knows the exact frame boundaries of each
 * direction. At a boundary it can
 *
 *   - insert a whole extra frame (`inject`), which the receiver parses like
 *     any other frame of the subflow;
 *   - hold the rest of the stream (`hold` / `release`), e.g. to delay the
 *     client's TLS bytes.
 *
 * The boundary tracker reads only the two length fields of each header; it
 * is deliberately independent of the transport's FrameParser (which hands
 * payloads on in pieces). Options of each frame are decoded for the tests'
 * convenience (`frames[i].options`).
 */
import net from 'node:net';
import { FIN_MAC_LENGTH, FRAME_HEADER_LENGTH, FrameFlag, PREAMBLE_LENGTH } from '../../src/transport/userspace/frame.js';
import { decodeOptions } from '../../src/wire/options.js';
import type { MptcpOption } from '../../src/wire/types.js';

export interface ObservedFrame {
  /** Offset of the frame's header in the sender's byte stream. */
  offset: number;
  /** Header + options + payload. */
  length: number;
  flags: number;
  optLength: number;
  /** DATA_FIN MAC bytes after the options (flag FIN_MAC): 8 or 0. */
  macLength: number;
  payloadLength: number;
  /** Decoded options (empty when they did not decode). */
  options: MptcpOption[];
  /** Offset of the payload's first byte in this direction's payload stream (relative SSN − 1). */
  payloadOffset: number;
}

/** One direction of one relayed subflow. */
export class Direction {
  /** Every byte the legitimate sender sent, in order (injected frames are not in here). */
  readonly recorded: Buffer[] = [];
  /** Every complete frame the legitimate sender sent, in order. */
  readonly frames: ObservedFrame[] = [];
  /** Frames the observer injected, as written. */
  readonly injected: Uint8Array[] = [];
  /** Bytes received from the sender so far. */
  received = 0;
  /** Payload bytes forwarded so far (the next relative SSN is 1 + this). */
  payloadBytes = 0;
  /** Called at each frame boundary, after the frame; may call `hold()`. */
  onFrame: ((f: ObservedFrame, d: Direction) => void) | undefined;
  /** Called after each chunk from the sender was recorded (before it is forwarded). */
  onBytes: ((d: Direction) => void) | undefined;

  // boundary tracker (over forwarded bytes)
  private state: 'preamble' | 'header' | 'body' = 'preamble';
  private need = PREAMBLE_LENGTH;
  private forwarded = 0;
  private readonly header = Buffer.alloc(FRAME_HEADER_LENGTH);
  private headerFill = 0;
  private frameStart = 0;
  private optLength = 0;
  private macLength = 0;
  private macFill = 0;
  private payloadLength = 0;
  private opts: Buffer | undefined;
  private optFill = 0;
  private framePayloadStart = 0;

  private holding = false;
  private held: Buffer[] = [];
  private endPending = false;
  private queue: { frame: Uint8Array; done: () => void }[] = [];
  private forwarding = false;

  constructor(
    readonly name: string,
    private readonly out: net.Socket,
  ) {}

  /** All recorded bytes so far, as one buffer. */
  bytes(): Buffer {
    return Buffer.concat(this.recorded);
  }

  /** The forwarded stream stands between two frames (or right after the preamble). */
  get atBoundary(): boolean {
    return this.state === 'header' && this.headerFill === 0;
  }

  /** Stop forwarding at the current boundary: later bytes are kept until `release`. */
  hold(): void {
    this.holding = true;
  }

  /** Forward what was held, and carry on. */
  release(): void {
    if (!this.holding) return;
    this.holding = false;
    const pending = this.held.splice(0);
    for (const c of pending) {
      if (this.holding) this.held.push(c);
      else this.forward(c);
    }
    if (!this.holding && this.endPending) {
      this.endPending = false;
      this.out.end();
    }
  }

  /**
   * Inserts a whole frame (header, options, payload) into the stream at the
   * next frame boundary (at once if the stream stands at one). Resolves when
   * it is written to the receiver's socket.
   */
  inject(frame: Uint8Array): Promise<void> {
    const copy = Buffer.from(frame);
    return new Promise((resolve) => {
      this.queue.push({ frame: copy, done: resolve });
      // From inside onFrame the frame just completed is not written yet: forward() flushes after it.
      if (this.atBoundary && !this.forwarding) this.flushQueue();
    });
  }

  /** @internal Bytes from the sender. */
  push(chunk: Buffer): void {
    const c = Buffer.from(chunk);
    this.recorded.push(c);
    this.received += c.length;
    this.onBytes?.(this);
    if (this.holding) this.held.push(c);
    else this.forward(c);
  }

  /** @internal The sender ended. */
  end(): void {
    if (this.holding) this.endPending = true;
    else this.out.end();
  }

  private flushQueue(): void {
    for (const q of this.queue.splice(0)) {
      this.injected.push(q.frame);
      this.out.write(q.frame, () => q.done());
    }
  }

  /** Walks `chunk` through the boundary tracker, forwarding it; stops at a boundary to inject or hold. */
  private forward(chunk: Buffer): void {
    this.forwarding = true;
    try {
      this.forwardChunk(chunk);
    } finally {
      this.forwarding = false;
    }
  }

  private forwardChunk(chunk: Buffer): void {
    const base = this.forwarded;
    let pos = 0;
    let start = 0;
    while (pos < chunk.length) {
      let boundary = false;
      if (this.state === 'preamble') {
        const k = Math.min(this.need, chunk.length - pos);
        pos += k;
        this.need -= k;
        if (this.need === 0) {
          this.state = 'header';
          this.headerFill = 0;
          boundary = true;
        }
      } else if (this.state === 'header') {
        const k = Math.min(FRAME_HEADER_LENGTH - this.headerFill, chunk.length - pos);
        if (this.headerFill === 0) this.frameStart = base + pos;
        chunk.copy(this.header, this.headerFill, pos, pos + k);
        this.headerFill += k;
        pos += k;
        if (this.headerFill === FRAME_HEADER_LENGTH) {
          this.optLength = this.header.readUInt16BE(2);
          this.macLength = this.header[1] & FrameFlag.FIN_MAC ? FIN_MAC_LENGTH : 0;
          this.macFill = 0;
          this.payloadLength = this.header.readUInt32BE(4);
          this.opts = this.optLength > 0 ? Buffer.alloc(this.optLength) : undefined;
          this.optFill = 0;
          this.framePayloadStart = this.payloadBytes;
          this.need = this.optLength + this.macLength + this.payloadLength;
          this.state = 'body';
          if (this.need === 0) boundary = this.completeFrame();
        }
      } else {
        const k = Math.min(this.need, chunk.length - pos);
        // Option bytes first, then the DATA_FIN MAC, then payload.
        let rest = k;
        if (this.opts && this.optFill < this.optLength) {
          const o = Math.min(rest, this.optLength - this.optFill);
          chunk.copy(this.opts, this.optFill, pos, pos + o);
          this.optFill += o;
          rest -= o;
        }
        const m = Math.min(rest, this.macLength - this.macFill);
        this.macFill += m;
        this.payloadBytes += rest - m;
        pos += k;
        this.need -= k;
        if (this.need === 0) boundary = this.completeFrame();
      }
      if (boundary && (this.queue.length > 0 || this.holding)) {
        this.write(chunk.subarray(start, pos));
        this.forwarded = base + pos;
        start = pos;
        this.flushQueue();
        if (this.holding) {
          if (pos < chunk.length) this.held.unshift(chunk.subarray(pos));
          return;
        }
      }
    }
    this.write(chunk.subarray(start));
    this.forwarded = base + chunk.length;
  }

  private write(b: Buffer): void {
    if (b.length > 0) this.out.write(b);
  }

  private completeFrame(): true {
    let options: MptcpOption[] = [];
    if (this.opts) {
      try {
        options = decodeOptions(this.opts);
      } catch {
        options = [];
      }
    }
    const f: ObservedFrame = {
      offset: this.frameStart,
      length: FRAME_HEADER_LENGTH + this.optLength + this.macLength + this.payloadLength,
      flags: this.header[1],
      optLength: this.optLength,
      macLength: this.macLength,
      payloadLength: this.payloadLength,
      options,
      payloadOffset: this.framePayloadStart,
    };
    this.frames.push(f);
    this.state = 'header';
    this.headerFill = 0;
    this.opts = undefined;
    this.onFrame?.(f, this);
    return true;
  }
}

export interface ObservedSubflow {
  /** 0 for the first connection through the relay, 1 for the next, … */
  index: number;
  c2s: Direction;
  s2c: Direction;
  client: net.Socket;
  upstream: net.Socket;
}

export interface InjectingRelay {
  port: number;
  subflows: ObservedSubflow[];
  /** Every byte seen, all subflows, both directions. */
  allBytes(): Buffer;
  /** While true, new connections are reset at once (the path is gone for new subflows). */
  refuseNew: boolean;
  close(): Promise<void>;
}

/**
 * Relays 127.0.0.1:<port> to the target. `onSubflow` runs synchronously when
 * a subflow is accepted, before any of its bytes: set hooks there.
 */
export async function startInjectingRelay(
  targetPort: number,
  opts: { targetHost?: string; listenHost?: string; onSubflow?: (sf: ObservedSubflow) => void } = {},
): Promise<InjectingRelay> {
  const subflows: ObservedSubflow[] = [];
  const sockets = new Set<net.Socket>();
  const relay = { refuseNew: false };
  const server = net.createServer((client) => {
    if (relay.refuseNew) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect({ host: opts.targetHost ?? '127.0.0.1', port: targetPort });
    const sf: ObservedSubflow = {
      index: subflows.length,
      c2s: new Direction(`subflow ${subflows.length} client→server`, upstream),
      s2c: new Direction(`subflow ${subflows.length} server→client`, client),
      client,
      upstream,
    };
    subflows.push(sf);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.setNoDelay(true);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    opts.onSubflow?.(sf);
    client.on('data', (d: Buffer) => sf.c2s.push(d));
    upstream.on('data', (d: Buffer) => sf.s2c.push(d));
    client.on('end', () => sf.c2s.end());
    upstream.on('end', () => sf.s2c.end());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, opts.listenHost ?? '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return Object.assign(relay, {
    port,
    subflows,
    allBytes: () => Buffer.concat(subflows.flatMap((s) => [...s.c2s.recorded, ...s.s2c.recorded])),
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  });
}
