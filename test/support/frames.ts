/**
 * The userspace wire by hand, for tests that play a peer or an attacker:
 * whole frames, an MP_JOIN SYN subflow opening, and a raw TCP subflow that
 * parses what the server sends back. (The fuzzer's `frame` in fuzz-lib.mjs
 * is a separate, hand-written encoder on purpose: it can lie about lengths
 * and does not trust the encoder it tests.)
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { FrameParser, encodeFrameHead, preamble, ROLE_CLIENT } from '../../src/transport/userspace/frame.js';
import type { Segment } from '../../src/core/types.js';
import type { MptcpOption } from '../../src/wire/types.js';

/** A whole frame: header, options, payload. */
export function frame(options: MptcpOption[], payload?: Uint8Array): Buffer {
  const seg: Segment = payload ? { options, payload } : { options };
  return Buffer.concat([Buffer.from(encodeFrameHead(seg)), ...(payload ? [Buffer.from(payload)] : [])]);
}

/** The opening of a join subflow: the client preamble and an MP_JOIN SYN frame. */
export function joinSyn(token: number, randA: number, addressId = 7): Buffer {
  return Buffer.concat([
    Buffer.from(preamble(ROLE_CLIENT)),
    frame([{ subtype: 'MP_JOIN', stage: 'syn', backup: false, addressId, receiverToken: token, senderRandom: randA }]),
  ]);
}

export interface RawSubflow {
  readonly sock: net.Socket;
  /** The server's segments that carry options (continuations are left out). */
  readonly segments: Segment[];
  readonly ended: boolean;
  /** performance.now() at the close. */
  readonly endedAt: number;
  send(bytes: Uint8Array): void;
  /** Every option received, in order. */
  options(): MptcpOption[];
}

/** A raw TCP subflow straight to the server, speaking the wire by hand; a stream it cannot parse is destroyed. */
export async function rawSubflow(port: number, host = '127.0.0.1'): Promise<RawSubflow> {
  const sock = net.connect({ host, port });
  sock.on('error', () => {});
  await new Promise<void>((r) => sock.once('connect', () => r()));
  const parser = new FrameParser();
  const segments: Segment[] = [];
  let ended = false;
  let endedAt = 0;
  sock.on('data', (d: Buffer) => {
    try {
      for (const it of parser.push(d)) if (it.kind === 'segment' && it.segment.options.length > 0) segments.push(it.segment);
    } catch {
      sock.destroy();
    }
  });
  sock.on('close', () => {
    ended = true;
    endedAt = performance.now();
  });
  return {
    sock,
    segments,
    get ended() {
      return ended;
    },
    get endedAt() {
      return endedAt;
    },
    send(bytes: Uint8Array) {
      sock.write(bytes);
    },
    options(): MptcpOption[] {
      return segments.flatMap((s) => s.options);
    },
  };
}
