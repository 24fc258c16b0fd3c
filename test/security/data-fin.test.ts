/**
 * Security round 2 (issue 11 §3): the end of the data stream is
 * authenticated. An attacker on ONE path (the injecting relay carries both
 * subflows, it injects on the join's only) injects DATA_FINs with a
 * consistent DSN: without a MAC 64 KiB before the end (truncation: node's
 * TLS does not need close_notify, so this used to be a clean 'end'), one
 * beyond the end (it used to make the real DATA_FIN be ignored: a hang), and
 * one with a made-up MAC. Each is counted (DataFinAuthFailure) and ignored;
 * the transfer completes intact and ends cleanly on the real, authenticated
 * DATA_FIN. A connection whose subflows all close without it is an error,
 * never a clean end.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { listen, close, mptlsServer, mptlsConnect, until } from '../support/servers.js';
import { startInjectingRelay, type ObservedFrame } from '../support/injecting-relay.js';
import type { DssOption } from '../../src/wire/types.js';
import { encodeFrameHead } from '../../src/transport/userspace/frame.js';
import { idsnExternal } from '../../src/crypto/index.js';
import type { MptlsSocket } from '../../src/api/index.js';
import { Sim, type PathSpec } from '../support/sim.js';

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** A DATA_FIN alone (RFC 8684 §3.3.3) at data-level offset `offset` of the server's stream. */
function dataFinFrame(idsn: bigint, offset: number, mac?: Uint8Array): Buffer {
  const dsn = (idsn + 1n + BigInt(offset)) & ((1n << 64n) - 1n);
  return Buffer.from(
    encodeFrameHead({
      options: [{ subtype: 'DSS', dataFin: true, dsn, dsnIs64: true, ssn: 0, dataLevelLength: 1 }],
      ...(mac ? { dataFinMac: mac } : {}),
    }),
  );
}

async function setup(localAddresses: string[], resumeTimeoutMs?: number) {
  const payload = randomBytes(SIZE);
  const sha = createHash('sha256').update(payload).digest('hex');
  const server = mptlsServer({ mptcp: { resumeTimeoutMs } }, (s) => {
    s.on('error', () => {});
    s.once('data', () => s.end(payload)); // the client's "go": its subflows are up
  });
  const port = await listen(server);
  cleanup.push(() => close(server, 500));
  const relay = await startInjectingRelay(port);
  cleanup.push(() => relay.close());
  const c = await mptlsConnect(relay.port, { mptcp: { localAddresses, resumeTimeoutMs } });
  await until(() => c.mptcp.subflows().filter((s) => s.state === 'established').length === localAddresses.length, 5000, 'subflows');
  const idsnServer = idsnExternal('responder'); // public: a constant of the protocol
  return { c, relay, sha, idsnServer };
}

/** The data-level offset just after the mapping a frame carries, or undefined. */
function mappingEnd(f: ObservedFrame, idsn: bigint): number | undefined {
  const dss = f.options.find((o): o is DssOption => o.subtype === 'DSS' && o.dsn !== undefined && !!o.dataLevelLength);
  if (!dss) return undefined;
  return Number((dss.dsn! - idsn - 1n) & ((1n << 64n) - 1n)) + dss.dataLevelLength!;
}

/** Receives until 'end' or an error; never hangs (15 s). */
function receive(c: MptlsSocket): Promise<{ bytes: number; sha256: string; ended: boolean; error?: Error & { code?: string } }> {
  const h = createHash('sha256');
  let bytes = 0;
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve({ bytes, sha256: '', ended: false, error: new Error('no end within 15 s (hang)') }), 15_000);
    c.on('data', (d: Buffer) => {
      h.update(d);
      bytes += d.length;
    });
    c.once('end', () => {
      clearTimeout(t);
      resolve({ bytes, sha256: h.digest('hex'), ended: true });
    });
    c.once('error', (error) => {
      clearTimeout(t);
      resolve({ bytes, sha256: '', ended: false, error });
    });
  });
}

describe('authenticated DATA_FIN', () => {
  it('DATA_FINs injected into the stream (none, beyond the end, a made-up MAC) are counted and ignored; the stream ends only on the real one', async () => {
    // One subflow: the injected DATA_FIN lands exactly where the receiver
    // stands (right after a real mapping), so without authentication it
    // ends the stream there, cleanly, with the rest missing.
    const { c, relay, sha, idsnServer } = await setup(['127.0.0.1']);
    const path = relay.subflows[0].s2c;
    let injected = false;
    path.onFrame = (f) => {
      const end = mappingEnd(f, idsnServer);
      if (injected || end === undefined || path.payloadBytes < 0.3 * SIZE) return;
      injected = true;
      void path.inject(dataFinFrame(idsnServer, end)); // truncation, right after this mapping
      void path.inject(dataFinFrame(idsnServer, end + 10 * MiB)); // a future DATA_FIN
      void path.inject(dataFinFrame(idsnServer, end, randomBytes(8))); // a guessed MAC
    };
    const got = receive(c);
    c.write('go');
    const r = await got;
    expect(injected).toBe(true);
    expect(r.error).toBeUndefined();
    expect(r.ended).toBe(true);
    expect(r.bytes).toBe(SIZE);
    expect(r.sha256).toBe(sha);
    // TLS's close_notify may reach the application before the DATA_FIN is processed.
    await until(() => c.mptcp.counters().DataFinRx === 1, 3000, 'the real DATA_FIN');
    expect(c.mptcp.counters().DataFinAuthFailure).toBe(3);
    c.end();
  });

  it('with two subflows, DATA_FINs injected on the join path only are ignored too', async () => {
    const { c, relay, sha, idsnServer } = await setup(['127.0.0.1', '127.0.0.2']);
    const join = relay.subflows[1].s2c;
    let injected = 0;
    join.onFrame = (f) => {
      const end = mappingEnd(f, idsnServer);
      if (injected >= 3 || end === undefined || join.payloadBytes < 0.1 * SIZE) return;
      injected++;
      void join.inject(dataFinFrame(idsnServer, end));
    };
    const got = receive(c);
    c.write('go');
    const r = await got;
    expect(injected).toBe(3);
    expect(r.ended).toBe(true);
    expect(r.sha256).toBe(sha);
    expect(c.mptcp.counters().DataFinAuthFailure).toBe(3);
    c.end();
  });

  for (const resumeTimeoutMs of [0, undefined]) {
    it(`every subflow closed by an attacker before the authenticated DATA_FIN: ${resumeTimeoutMs === 0 ? 'without resume, an error, never a clean end' : 'with resume (the default), the client resumes and the stream completes intact'}`, async () => {
      const { c, relay, sha } = await setup(['127.0.0.1', '127.0.0.2'], resumeTimeoutMs);
      const first = relay.subflows[0].s2c;
      let cut = false;
      first.onFrame = () => {
        if (cut || first.payloadBytes < 0.3 * SIZE) return;
        cut = true;
        // An attacker on both paths sends TCP FINs (what a middlebox can do).
        for (const sf of relay.subflows) sf.client.end();
      };
      const got = receive(c);
      c.write('go');
      const r = await got;
      expect(cut).toBe(true);
      if (resumeTimeoutMs === 0) {
        expect(r.ended).toBe(false);
        expect(r.error).toBeInstanceOf(Error);
        expect(r.bytes).toBeLessThan(SIZE);
      } else {
        expect(r.error).toBeUndefined();
        expect(r.ended).toBe(true);
        expect(r.sha256).toBe(sha);
        expect(c.mptcp.counters().ConnResumed).toBe(1);
      }
    });
  }

});

describe('authenticated DATA_FIN in the core (simulator, virtual time)', () => {
  const ONE: PathSpec[] = [{ rateMbps: 50, delayMs: 10 }];

  it('a DATA_FIN that arrives before the receiver has its keys is held, then accepted when they are installed', () => {
    // The server's keys come at once, the client's 300 ms later: the server's
    // data and its authenticated DATA_FIN arrive first.
    const sim = new Sim({ seed: 7, paths: ONE, keyDelayMs: { client: 300, server: 0 } });
    sim.start({ client: { bytes: 0, startAt: 400 }, server: { bytes: 50_000, startAt: 50 } });
    sim.run(60_000);
    expect(sim.report('client').received).toBe(50_000);
    expect(sim.report('client').dataFin).toBe(true);
    expect(sim.client.counters().DataFinAuthFailure).toBe(0);
    expect(sim.client.closeReason).toBe('done');
    expect(sim.server!.closeReason).toBe('done');
  });

  it('an on-path attacker who strips the MAC cannot end the stream: counted, and the sender gives up after userTimeoutMs', () => {
    const sim = new Sim({
      seed: 8,
      paths: ONE,
      server: { timers: { userTimeoutMs: 5_000 } },
      observer: (from, _key, segment) => {
        if (from === 'server' && segment.dataFinMac) return { ...segment, dataFinMac: undefined };
      },
    });
    sim.start({ client: { bytes: 0 }, server: { bytes: 50_000 } });
    sim.run(60_000);
    expect(sim.report('client').received).toBe(50_000);
    expect(sim.report('client').dataFin).toBe(false);
    expect(sim.client.counters().DataFinAuthFailure).toBeGreaterThanOrEqual(1);
    expect(sim.server!.closeReason).toBe('timeout');
  });
});
