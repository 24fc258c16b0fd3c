/**
 * Wire version 3 over real sockets (issue 14): the client's first write is
 * preamble + MP_CAPABLE SYN + its ClientHello; the server's first write is
 * preamble + SYN/ACK + its ServerHello; the MP_CAPABLE ACK rides with the
 * client's Finished; the join opens while TLS runs and the server holds it
 * until its keys are installed; a plain TLS server still gets a fallback.
 */
import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import tls from 'node:tls';
import { connect } from '../../src/index.js';
import { FrameParser, VERSION } from '../../src/transport/userspace/frame.js';
import { decodeOptions } from '../../src/wire/options.js';
import { startInjectingRelay } from '../support/injecting-relay.js';
import { close, fixtures, listen, mptlsConnect, mptlsServer, until } from '../support/servers.js';
import type { MptlsSocket } from '../../src/index.js';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** Parses one direction's bytes: the frames (options and payload) in order. */
function framesOf(bytes: Buffer) {
  const p = new FrameParser();
  const out: { options: ReturnType<typeof decodeOptions>; payload?: Uint8Array }[] = [];
  for (const it of p.push(bytes)) if (it.kind === 'segment') out.push({ options: it.segment.options, payload: it.segment.payload });
  return out;
}

describe('first flight over TCP (wire version 3)', () => {
  it("the client's first write carries preamble, SYN and ClientHello; the server's first write SYN/ACK and ServerHello; the third ACK rides with the Finished", async () => {
    const server = mptlsServer({}, (s) => {
      s.on('error', () => {});
      s.end('hi');
    });
    const port = await listen(server);
    // the first chunk each direction (one write, one segment on loopback)
    const first: { c2s?: Buffer; s2c?: Buffer } = {};
    const relay = await startInjectingRelay(port, {
      onSubflow: (sf) => {
        if (sf.index !== 0) return;
        sf.c2s.onBytes = (d) => (first.c2s ??= Buffer.from(d.bytes()));
        sf.s2c.onBytes = (d) => (first.s2c ??= Buffer.from(d.bytes()));
      },
    });
    cleanup.push(() => close(server, 500), () => relay.close());
    const c = await mptlsConnect(relay.port);
    cleanup.push(() => void c.destroy());
    await until(() => first.s2c !== undefined, 5000, 'the server bytes');
    expect(VERSION).toBe(3);
    const c2s = first.c2s!;
    expect([...c2s.subarray(0, 6)]).toEqual([0xa7, 0x4d, 0x50, 0x54, 3, 1]);
    expect(c2s[26] >> 4).toBe(0); // MP_CAPABLE: balancers' offset unchanged
    const cf = framesOf(c2s);
    expect(cf[0].options).toEqual([{ subtype: 'MP_CAPABLE', version: 1, flags: 0x03 }]);
    expect(cf[1].options[0]).toMatchObject({ subtype: 'DSS', ssn: 1 });
    expect(cf[1].payload![0]).toBe(0x16); // a TLS handshake record: the ClientHello, in the same write
    const sf = framesOf(first.s2c!);
    expect(sf[0].options[0]).toMatchObject({ subtype: 'MP_CAPABLE', senderToken: c.mptcp.tokens!.remote });
    expect(sf.some((f) => f.payload?.[0] === 0x16)).toBe(true); // the ServerHello right behind the SYN/ACK
    // the MP_CAPABLE ACK came later, with the client's next data (its Finished)
    const isAck = (f: { options: { subtype: string; receiverToken?: number }[] }) => f.options.some((o) => o.subtype === 'MP_CAPABLE' && o.receiverToken !== undefined);
    await until(() => relay.subflows[0].c2s.frames.some(isAck), 5000, 'the third ACK');
    const all = relay.subflows[0].c2s.frames;
    const ackAt = all.findIndex(isAck);
    expect(ackAt).toBeGreaterThan(1);
    expect(all.slice(ackAt + 1).some((f) => f.payloadLength > 0)).toBe(true);
  });

  it('the join opens while TLS runs: the server holds it until its keys are installed, then it completes (MPJoinHeld, MPJoinHeldReleased)', async () => {
    let srvSocket: MptlsSocket | undefined;
    const server = mptlsServer({}, (s) => {
      srvSocket = s;
      s.on('error', () => {});
      s.resume();
    });
    const port = await listen(server);
    // Hold the client's TLS Finished (and the third ACK before it) for 200 ms: the server's keys wait for it, the join does not.
    let heldAt = 0;
    let joinSynAt = 0;
    const relay = await startInjectingRelay(port, {
      onSubflow: (sf) => {
        if (sf.index === 1) {
          sf.c2s.onFrame = () => (joinSynAt ||= performance.now());
          return;
        }
        sf.c2s.onFrame = (f, d) => {
          if (f.options.some((o) => o.subtype === 'MP_CAPABLE' && o.receiverToken !== undefined)) {
            heldAt = performance.now();
            d.hold();
            setTimeout(() => d.release(), 200);
          }
        };
      },
    });
    cleanup.push(() => close(server, 500), () => relay.close());
    const c = await mptlsConnect(relay.port, { mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] } });
    cleanup.push(() => void c.destroy());
    await until(() => c.mptcp.subflows().filter((s) => s.state === 'established').length === 2, 5000, 'the join');
    const upAt = performance.now();
    expect(joinSynAt).toBeGreaterThan(0);
    expect(joinSynAt - heldAt).toBeLessThan(150); // sent while TLS was still held up
    expect(upAt - heldAt).toBeGreaterThanOrEqual(195); // completed only after the server's keys
    await until(() => srvSocket !== undefined, 5000, 'the server socket');
    const sc = srvSocket!.mptcp.counters();
    expect(sc.MPJoinHeld).toBe(1);
    expect(sc.MPJoinHeldReleased).toBe(1);
    expect(sc.MPJoinBeforeKeys).toBe(0);
    expect(c.mptcp.counters().MPJoinSynTx).toBe(1); // at the first attempt
  });

  it('against a plain TLS server the first flight (SYN + ClientHello) is answered with an alert or a close, and the client replays the ClientHello on a fresh connection', async () => {
    const plain = tls.createServer({ key: fixtures.key, cert: fixtures.cert }, (s) => s.end('plain'));
    const port = await listen(plain);
    cleanup.push(() => close(plain, 500));
    let conns = 0;
    plain.on('connection', () => conns++);
    const c = connect({ host: '127.0.0.1', port, ca: fixtures.ca, servername: 'localhost' });
    cleanup.push(() => void c.destroy());
    const got = await new Promise<string>((resolve, reject) => {
      let s = '';
      c.on('data', (d) => (s += d));
      c.on('end', () => resolve(s));
      c.on('error', reject);
    });
    expect(got).toBe('plain');
    expect(c.mptcp.mode).toBe('fallback');
    expect(conns).toBe(2);
  });

  it('a raw client that sends its first flight without waiting gets the SYN/ACK and the server TLS reply in one round trip', async () => {
    // The same first flight a second implementation would send (PROTOCOL.md §5.3), written by hand.
    const server = mptlsServer({}, (s) => s.on('error', () => {}));
    const port = await listen(server);
    cleanup.push(() => close(server, 500));
    const sock = net.connect({ host: '127.0.0.1', port });
    cleanup.push(() => void sock.destroy());
    const chunks: Buffer[] = [];
    sock.on('data', (d) => chunks.push(d));
    await new Promise((r) => sock.once('connect', r));
    const hello = await clientHelloBytes();
    const { encodeFrameHead, preamble } = await import('../../src/transport/userspace/frame.js');
    const { idsnExternal } = await import('../../src/crypto/index.js');
    const syn = encodeFrameHead({ options: [{ subtype: 'MP_CAPABLE', version: 1, flags: 0x03 }] });
    const data = encodeFrameHead({
      options: [{ subtype: 'DSS', dataAck: idsnExternal('responder') + 1n, dataAckIs64: true, dsn: idsnExternal('initiator') + 1n, dsnIs64: true, ssn: 1, dataLevelLength: hello.length, dataFin: false }],
      window: 1 << 20,
      ack: 1,
      payload: hello,
    });
    sock.write(Buffer.concat([preamble(1), syn, data, hello]));
    await until(() => Buffer.concat(chunks).length > 100, 5000, 'the reply');
    const reply = Buffer.concat(chunks);
    expect(reply[4]).toBe(3);
    const p = new FrameParser();
    const segs = p.push(reply).filter((i) => i.kind === 'segment');
    expect(segs[0].kind === 'segment' && segs[0].segment.options[0]).toMatchObject({ subtype: 'MP_CAPABLE' });
    const firstData = segs.find((i) => i.kind === 'segment' && (i.segment.payload?.length ?? 0) > 0);
    expect(firstData && firstData.kind === 'segment' && firstData.segment.payload![0]).toBe(0x16); // ServerHello
  });
});

describe('a client that never sends its MP_CAPABLE ACK', () => {
  it('the server closes the connection when its TLS handshake finishes without tokenA: no keys, counted, the server carries on', async () => {
    const { encodeFrameHead, preamble } = await import('../../src/transport/userspace/frame.js');
    const { idsnExternal } = await import('../../src/crypto/index.js');
    const { Duplex } = await import('node:stream');
    let secured = 0;
    const clientErrors: string[] = [];
    const server = mptlsServer({}, () => secured++);
    server.on('tlsClientError', (e: Error & { code?: string }) => clientErrors.push(e.code ?? e.message));
    const port = await listen(server);
    cleanup.push(() => close(server, 500));
    // TLS over hand-made frames: preamble + SYN, then DSS frames; the SYN/ACK is read and never answered.
    const sock = net.connect({ host: '127.0.0.1', port });
    cleanup.push(() => void sock.destroy());
    sock.on('error', () => {});
    let dsn = idsnExternal('initiator') + 1n;
    let ssn = 1;
    const parser = new FrameParser();
    const pipe = new Duplex({
      read() {},
      write(chunk: Buffer, _e, cb) {
        const head = encodeFrameHead({
          options: [{ subtype: 'DSS', dataAck: idsnExternal('responder') + 1n, dataAckIs64: true, dsn, dsnIs64: true, ssn, dataLevelLength: chunk.length, dataFin: false }],
          window: 1 << 20,
          ack: 1,
          payload: chunk,
        });
        dsn += BigInt(chunk.length);
        ssn += chunk.length;
        sock.write(Buffer.concat([head, chunk]));
        cb();
      },
    });
    sock.on('data', (d: Buffer) => {
      try {
        for (const it of parser.push(d)) if (it.kind === 'segment' && it.segment.payload?.length) pipe.push(Buffer.from(it.segment.payload));
      } catch {
        sock.destroy();
      }
    });
    sock.on('close', () => pipe.push(null));
    sock.write(Buffer.concat([preamble(1), encodeFrameHead({ options: [{ subtype: 'MP_CAPABLE', version: 1, flags: 0x03 }] })]));
    const t = tls.connect({ socket: pipe as unknown as net.Socket, servername: 'localhost', ca: fixtures.ca });
    t.on('error', () => {});
    await until(() => server.mptcp.counters().MPCapableIncomplete === 1, 5000, 'the refusal');
    await until(() => sock.destroyed || sock.readableEnded, 5000, 'the close');
    expect(secured).toBe(0); // the application never saw it
    expect(server.mptcp.counters().KeysInstalled).toBe(0);
    expect(clientErrors).toEqual(['ERR_MPTLS_HANDSHAKE_FAILED']);
    // and the server still serves others
    const c = await mptlsConnect(port);
    cleanup.push(() => void c.destroy());
    expect(c.mptcp.mode).toBe('userspace');
  });
});

/** A real TLS 1.3 ClientHello, captured from node:tls writing into a dummy socket. */
async function clientHelloBytes(): Promise<Buffer> {
  const { Duplex } = await import('node:stream');
  return new Promise((resolve) => {
    const d = new Duplex({
      read() {},
      write(chunk, _e, cb) {
        resolve(Buffer.from(chunk));
        cb();
      },
    });
    const t = tls.connect({ socket: d as unknown as net.Socket, servername: 'localhost', ca: fixtures.ca });
    t.on('error', () => {});
    setTimeout(() => t.destroy(), 100);
  });
}
