/**
 * An on-path observer (a recording TCP relay) watches a real multipath TLS
 * connection, then tries to join it: with the token it saw and a key it
 * made up, and by replaying a legitimate join byte for byte. Both are refused
 * and counted; the real connection carries on intact.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { randomBytes } from 'node:crypto';
import { fixtures, listen, close, sendBulk, receiveAll, mptlsServer, mptlsConnect, until } from '../support/servers.js';
import { startRelay, type Relay } from '../support/relay.js';
import { frame, joinSyn, rawSubflow } from '../support/frames.js';
import { JOIN_TOKEN_OFFSET } from '../../src/transport/userspace/frame.js';
import { joinAckHmac } from '../../src/crypto/index.js';
import type { MptlsSocket } from '../../src/api/index.js';

const MiB = 1024 * 1024;
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0)) await f();
});

async function observedConnection() {
  let serverSocket: MptlsSocket | undefined;
  const received: Promise<{ bytes: number; sha256: string }>[] = [];
  const server = mptlsServer({}, (s) => {
    serverSocket = s;
    received.push(receiveAll(s).finally(() => s.end()));
  });
  const port = await listen(server);
  const relay: Relay = await startRelay(port);
  cleanup.push(() => relay.close(), () => close(server));
  // The client dials the relay: its first subflow and its join both cross it.
  const c = await mptlsConnect(relay.port, { mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] } });
  await until(() => c.mptcp.subflows().filter((s) => s.state === 'established').length === 2, 5000, 'join');
  await until(() => serverSocket !== undefined);
  return { server, port, relay, c, serverSocket: serverSocket!, received };
}

describe('joins by an on-path observer', () => {
  it('a join with the observed token and a made-up key is refused (MPJoinAckHMacFailure)', async () => {
    const { port, relay, c, serverSocket, received } = await observedConnection();
    // What the observer saw of the first subflow: the server's SYN/ACK carries tokenB at byte 28.
    const s2c = Buffer.concat(relay.connections[0].serverToClient);
    const tokenB = s2c.readUInt32BE(JOIN_TOKEN_OFFSET);
    expect(tokenB).toBe(c.mptcp.tokens!.remote);
    const transfer = sendBulk(c, 16 * MiB);

    const rogue = await rawSubflow(port);
    const randA = randomBytes(4).readUInt32BE(0);
    rogue.send(joinSyn(tokenB, randA, 7));
    await until(() => rogue.segments.length >= 1, 5000, 'SYN/ACK');
    const synack = rogue.segments[0].options[0];
    expect(synack).toMatchObject({ subtype: 'MP_JOIN', stage: 'synack' });
    if (synack.subtype !== 'MP_JOIN' || synack.stage !== 'synack') throw new Error('no SYN/ACK');
    const guessA = randomBytes(8);
    const guessB = randomBytes(8);
    rogue.send(frame([{ subtype: 'MP_JOIN', stage: 'ack', hmac: joinAckHmac(guessA, guessB, randA, synack.senderRandom) }]));
    await until(() => rogue.ended, 5000, 'the rogue subflow to be closed');
    expect(rogue.segments.at(-1)!.options[0]).toMatchObject({ subtype: 'MP_TCPRST', reason: 1 });
    expect(serverSocket.mptcp.counters().MPJoinAckHMacFailure).toBe(1);

    const digest = await transfer;
    await until(() => received.length === 1);
    const got = await received[0];
    expect(got.bytes).toBe(16 * MiB);
    expect(got.sha256).toBe(digest);
  });

  it('a replay of a recorded join, byte for byte, is refused; the connection carries on', async () => {
    const { port, relay, c, serverSocket, received } = await observedConnection();
    // The join subflow is the relay's second connection; its opening is
    // preamble (8) + MP_JOIN SYN frame (16 + 12) + MP_JOIN ACK frame (16 + 24).
    const recorded = Buffer.concat(relay.connections[1].clientToServer).subarray(0, 8 + 28 + 40);
    const transfer = sendBulk(c, 16 * MiB);
    const before = serverSocket.mptcp.counters().MPJoinAckHMacFailure ?? 0;
    const rogue = await rawSubflow(port);
    rogue.send(recorded);
    await until(() => rogue.ended, 5000, 'the replayed subflow to be closed');
    expect(rogue.segments[0].options[0]).toMatchObject({ subtype: 'MP_JOIN', stage: 'synack' });
    expect(rogue.segments.at(-1)!.options[0]).toMatchObject({ subtype: 'MP_TCPRST' });
    expect(serverSocket.mptcp.counters().MPJoinAckHMacFailure).toBe(before + 1);
    expect(serverSocket.mptcp.subflows().filter((s) => s.state === 'established').length).toBe(2);

    const digest = await transfer;
    await until(() => received.length === 1);
    const got = await received[0];
    expect(got.sha256).toBe(digest);
  });

  it('a join with an unknown token is refused at the endpoint (MPJoinNoTokenFound)', async () => {
    const server = mptlsServer({}, (s) => s.end());
    const port = await listen(server);
    cleanup.push(() => close(server));
    const rogue = await rawSubflow(port);
    rogue.send(joinSyn(0x12345678, 1, 1));
    await until(() => rogue.ended, 5000, 'refusal');
    expect(rogue.segments[0].options[0]).toMatchObject({ subtype: 'MP_TCPRST' });
    expect(server.mptcp.counters().MPJoinNoTokenFound).toBe(1);
    void fixtures;
  });
});
