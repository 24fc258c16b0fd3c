/**
 * Issue 11 §5 over real sockets: a malicious server (an mptls server this
 * test controls, holding the connection's real keys) sends authenticated
 * ADD_ADDRs meant to steer the client anywhere, and floods it with
 * duplicates. The client follows only the announcement within its policy,
 * echoes each address id once, and its socket buffer stays small.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { close, listen, mptlsConnect, mptlsServer, until } from '../support/servers.js';
import { keysForTesting, type Connection } from '../../src/core/connection/index.js';
import { addAddrHmac } from '../../src/crypto/index.js';
import { encodeFrameHead } from '../../src/transport/userspace/frame.js';
import { tcpProbe } from '../../src/api/client.js';
import type { MptlsSocket } from '../../src/api/index.js';
import type { MultipathDriver } from '../../src/transport/userspace/driver.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const driverOf = (s: MptlsSocket): MultipathDriver => (s.mptcp as unknown as { driver: MultipathDriver }).driver;
const connOf = (s: MptlsSocket): Connection => driverOf(s).conn;

/** A plain TCP listener that counts connections (and optionally forwards them). */
async function tcpListener(host: string, port: number, forwardTo?: number): Promise<{ port: number; accepted: () => number }> {
  let n = 0;
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    n++;
    sockets.add(s);
    s.on('error', () => {});
    if (forwardTo === undefined) return void s.destroy();
    const up = net.connect({ host: '127.0.0.1', port: forwardTo });
    sockets.add(up);
    up.on('error', () => {});
    s.pipe(up).pipe(s);
    s.on('close', () => up.destroy());
    up.on('close', () => s.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, host, () => resolve());
  });
  cleanup.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  );
  return { port: (srv.address() as net.AddressInfo).port, accepted: () => n };
}

/** An mptls server on 127.0.0.1 and a client connected to it, keys confirmed both ends. */
async function connected(): Promise<{ port: number; c: MptlsSocket; srv: MptlsSocket }> {
  let srv: MptlsSocket | undefined;
  const server = mptlsServer({}, (s) => {
    srv = s;
    s.on('error', () => {});
    s.resume();
  });
  const port = await listen(server);
  cleanup.push(() => close(server, 300));
  const c = await mptlsConnect(port);
  c.on('error', () => {});
  cleanup.push(() => void c.destroy());
  await until(() => srv !== undefined && connOf(srv).areKeysConfirmed && connOf(c).areKeysConfirmed, 5000, 'keys confirmed');
  return { port, c, srv: srv! };
}

describe('ADD_ADDR from a malicious server (real sockets)', () => {
  it('the client joins only the legitimate announcement: not 0.0.0.0, multicast, broadcast, IPv6, off-loopback or another port', async () => {
    const { port, c, srv } = await connected();
    // the one legitimate announcement: 127.0.0.2 on the server's port (forwarded to the server)
    const legit = await tcpListener('127.0.0.2', port, port);
    // the request-forgery target: another port on the same host
    const trap = await tcpListener('127.0.0.1', 0);
    const announced = [
      { address: '0.0.0.0', port },
      { address: '224.0.0.1', port },
      { address: '255.255.255.255', port },
      { address: '::1', port },
      { address: '192.0.2.1', port }, // not loopback, from a server on loopback
      { address: '127.0.0.1', port: trap.port },
      { address: '127.0.0.2', port },
    ];
    const sconn = connOf(srv);
    for (const a of announced) expect(sconn.announce(a)).toBeGreaterThan(0);
    driverOf(srv).pump();
    await until(() => c.mptcp.counters().AddAddr === announced.length, 5000, 'the announcements');
    await until(() => c.mptcp.subflows().some((s) => s.state === 'established' && s.remoteAddress === '127.0.0.2'), 5000, 'the join to 127.0.0.2');
    await until(() => sconn.counters().EchoAdd === announced.length, 5000, 'the echoes');
    await new Promise((r) => setTimeout(r, 300)); // room for any join that should not happen
    const cc = c.mptcp.counters();
    console.log(`client: AddAddr ${cc.AddAddr}, AddAddrPolicyDrop ${cc.AddAddrPolicyDrop}, AddAddrDrop ${cc.AddAddrDrop}, MPJoinSynTx ${cc.MPJoinSynTx}; trap ${trap.accepted()}, legit ${legit.accepted()}`);
    expect(cc.AddAddrPolicyDrop).toBe(6);
    expect(cc.AddAddrDrop).toBe(6);
    expect(cc.MPJoinSynTx).toBe(1);
    expect(trap.accepted()).toBe(0);
    expect(legit.accepted()).toBe(1);
    expect(c.mptcp.subflows().map((s) => s.remoteAddress).sort()).toEqual(['127.0.0.1', '127.0.0.2']);
  });

  it('300 000 duplicate ADD_ADDRs: one echo per address id, the client socket buffer stays small', async () => {
    const N = 300_000;
    const IDS = 250;
    const { c, srv } = await connected();
    const k = keysForTesting(connOf(srv));
    // authenticated, so each is verified; 192.0.2.x is refused by the policy (no joins)
    const frames = Array.from({ length: IDS }, (_, i) => {
      const id = i + 1;
      const address = `192.0.2.${id}`;
      const truncatedHmac = addAddrHmac(k.localKey!, k.remoteKey!, id, address);
      return Buffer.from(encodeFrameHead({ options: [{ subtype: 'ADD_ADDR', echo: false, addressId: id, address, truncatedHmac }] }));
    });
    const batch = Buffer.concat(Array.from({ length: 10_000 }, (_, i) => frames[i % IDS]));
    const sSock = driverOf(srv).socketOf(0)!;
    const cSock = driverOf(c).socketOf(0)!;
    const probe = tcpProbe();
    // The server stops reading, as a flooder would: whatever the client answers piles up on its side.
    sSock.pause();
    let maxUnsent = 0;
    let maxKernel = 0;
    const sample = () => {
      maxUnsent = Math.max(maxUnsent, cSock.writableLength);
      maxKernel = Math.max(maxKernel, probe?.(cSock)?.notsent ?? 0);
    };
    const t0 = performance.now();
    for (let sent = 0; sent < N; sent += 10_000) {
      if (!sSock.write(batch)) await new Promise((r) => sSock.once('drain', r));
      await new Promise((r) => setImmediate(r));
      sample();
    }
    await until(
      () => {
        sample();
        return c.mptcp.counters().AddAddr === N;
      },
      20_000,
      'the client to process the flood',
    );
    const ms = performance.now() - t0;
    const cc = c.mptcp.counters();
    sSock.resume();
    await until(() => connOf(srv).counters().EchoAdd >= IDS, 10_000, 'the echoes');
    await new Promise((r) => setTimeout(r, 200));
    const echoes = connOf(srv).counters().EchoAdd;
    console.log(
      `flood: ${N} ADD_ADDRs in ${ms.toFixed(0)} ms; echoes ${echoes}, EchoAddSuppressed ${cc.EchoAddSuppressed}, AddAddrPolicyDrop ${cc.AddAddrPolicyDrop}; ` +
        `client unsent max ${maxUnsent} B (node) + ${maxKernel} B (kernel notsent${probe ? '' : ': no probe'}); rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`,
    );
    expect(cc.AddAddr).toBe(N);
    expect(cc.AddAddrPolicyDrop).toBe(IDS);
    expect(cc.EchoAddSuppressed).toBe(N - IDS);
    expect(echoes).toBe(IDS);
    expect(cc.MPJoinSynTx).toBe(0);
    expect(maxUnsent).toBeLessThan(64 * 1024);
    // the connection is still usable
    const got = new Promise<Buffer>((r) => srv.once('data', (d: Buffer) => r(d)));
    c.write('still here');
    expect((await got).toString()).toBe('still here');
  }, 30_000);
});
