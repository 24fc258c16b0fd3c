/**
 * Issue 13: only the key holder can resume a parked connection.
 *
 * A client (127.0.0.1 + 127.0.0.2) sends 16 MiB through an on-path observer
 * (the injecting relay) that records everything. At 30 % the observer
 * resets every subflow and stops relaying new connections: both ends park
 * the connection (its token stays valid). With the full recording the
 * observer then tries to resume it straight at the server: a join with the
 * observed token and a made-up HMAC-A, and a byte-for-byte replay of the
 * recorded join. Both are refused and counted; the connection stays parked.
 * When the path works again the rightful client resumes and every byte
 * arrives.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { randomBytes } from 'node:crypto';
import { listen, close, sendBulk, receiveAll, mptlsServer, mptlsConnect, until } from '../support/servers.js';
import { startInjectingRelay } from '../support/injecting-relay.js';
import { frame, joinSyn, rawSubflow } from '../support/frames.js';
import { JOIN_TOKEN_OFFSET } from '../../src/transport/userspace/frame.js';
import type { MptlsSocket } from '../../src/api/index.js';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

describe('a parked connection and an observer with the whole recording', () => {
  it('the observer cannot resume it (observed-token join, replayed join: refused, counted); the rightful client does, intact', async () => {
    let srvSock: MptlsSocket | undefined;
    let received: Promise<{ bytes: number; sha256: string }> | undefined;
    const server = mptlsServer({}, (s) => {
      srvSock = s;
      s.on('error', () => {});
      received = receiveAll(s);
    });
    const port = await listen(server);
    cleanup.push(() => close(server, 500));
    const relay = await startInjectingRelay(port);
    cleanup.push(() => relay.close());
    const c = await mptlsConnect(relay.port, { mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] } });
    const events: string[] = [];
    c.on('paths-lost', () => events.push('paths-lost'));
    c.on('paths-restored', () => events.push('paths-restored'));
    c.on('error', (e) => events.push(`error ${(e as Error).message}`));
    await until(() => c.mptcp.subflows().filter((s) => s.state === 'established').length === 2, 5000, 'two subflows');
    const sent = sendBulk(c, SIZE);

    // At 30 %: reset every subflow, and no new path for now.
    await until(() => relay.subflows.reduce((n, sf) => n + sf.c2s.payloadBytes, 0) > 0.3 * SIZE, 10_000, '30 % through');
    relay.refuseNew = true;
    for (const sf of relay.subflows) {
      sf.client.resetAndDestroy();
      sf.upstream.resetAndDestroy();
    }
    await until(() => server.mptcp.parked === 1 && c.mptcp.state === 'parked', 5000, 'both ends parked');
    expect(srvSock!.mptcp.state).toBe('parked');
    const s0 = { ...srvSock!.mptcp.counters() };

    // What the observer saw: the token at its fixed offset, and the join's opening.
    const joinStream = relay.subflows[1].c2s;
    const tokenB = joinStream.bytes().readUInt32BE(JOIN_TOKEN_OFFSET);
    expect(tokenB).toBe(c.mptcp.tokens!.remote);
    const [syn, ack] = joinStream.frames;
    const opening = joinStream.bytes().subarray(0, ack.offset + ack.length);
    expect(syn.options[0]).toMatchObject({ subtype: 'MP_JOIN', stage: 'syn' });

    // 1. A join with the observed token and a made-up HMAC-A.
    const guess = await rawSubflow(port);
    guess.send(joinSyn(tokenB, randomBytes(4).readUInt32BE(0)));
    await until(() => guess.options().some((o) => o.subtype === 'MP_JOIN'), 3000, 'the SYN/ACK');
    guess.send(frame([{ subtype: 'MP_JOIN', stage: 'ack', hmac: randomBytes(20) }]));
    await until(() => guess.ended, 3000, 'the refusal');
    expect(guess.options().map((o) => o.subtype)).toEqual(['MP_JOIN', 'MP_TCPRST']);

    // 2. The recorded join, replayed byte for byte.
    const replay = await rawSubflow(port);
    replay.send(opening);
    await until(() => replay.ended, 3000, 'the replay refused');
    expect(replay.options().map((o) => o.subtype)).toContain('MP_TCPRST');

    const s1 = srvSock!.mptcp.counters();
    expect(s1.MPJoinAckHMacFailure! - s0.MPJoinAckHMacFailure!).toBe(2);
    expect(s1.ConnResumed).toBe(0);
    expect(server.mptcp.parked).toBe(1);
    expect(srvSock!.mptcp.state).toBe('parked');

    // The path works again: the rightful client resumes on its own.
    relay.refuseNew = false;
    const sha = await sent;
    await until(() => !!received, 1000, 'server side');
    const r = await received!;
    expect(r.bytes).toBe(SIZE);
    expect(r.sha256).toBe(sha);
    expect(srvSock!.mptcp.counters().ConnResumed).toBe(1);
    expect(c.mptcp.counters().ConnResumed).toBe(1);
    expect(events).toEqual(['paths-lost', 'paths-restored']);
    expect(server.mptcp.parked).toBe(0);
  }, 30_000);
});
