/**
 * The cluster primary's dispatcher (src/transport/userspace/dispatch.ts) on
 * real loopback sockets, with workers that are plain objects: where each
 * kind of first bytes goes, and what happens when the chosen worker can no
 * longer take a connection (its channel closed while its exit is still to
 * come): a new connection goes to the next worker, a join is refused as for
 * a worker that is gone, nothing crashes and nothing is left open.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Dispatcher, type DispatchWorker } from '../../src/transport/index.js';
import { encodeFrameHead, preamble, ROLE_CLIENT } from '../../src/transport/userspace/frame.js';
import { until } from '../support/servers.js';

const servers: net.Server[] = [];
const clients: net.Socket[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A worker that records what it was sent, or refuses (`reachable: false`) as a worker with a closed channel does. */
class FakeWorker implements DispatchWorker {
  readonly got: { socket: net.Socket; head: Buffer }[] = [];
  offered = 0;
  constructor(
    readonly id: number,
    public reachable = true,
  ) {}
  send(socket: net.Socket, head: Buffer): boolean {
    this.offered++;
    if (!this.reachable) return false;
    this.got.push({ socket, head });
    return true;
  }
}

async function primary(workers: FakeWorker[]): Promise<{ d: Dispatcher; port: number }> {
  const d = new Dispatcher({ workers: () => workers, worker: (id) => workers.find((w) => w.id === id) });
  const server = net.createServer({ pauseOnConnect: true }, (s) => d.handle(s));
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { d, port: (server.address() as net.AddressInfo).port };
}

/** Opens a TCP connection, writes `bytes`, and collects what comes back until the peer closes. */
function connect(port: number, bytes: Uint8Array): { socket: net.Socket; reply: Promise<Buffer> } {
  const socket = net.connect(port, '127.0.0.1');
  clients.push(socket);
  socket.write(bytes);
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  const reply = new Promise<Buffer>((r) => socket.on('close', () => r(Buffer.concat(chunks))));
  socket.on('error', () => {});
  return { socket, reply };
}

const join = (token: number) =>
  Buffer.concat([preamble(ROLE_CLIENT), encodeFrameHead({ options: [{ subtype: 'MP_JOIN', stage: 'syn', backup: false, addressId: 1, receiverToken: token, senderRandom: 0x01020304 }] })]);
const capable = () => Buffer.concat([preamble(ROLE_CLIENT), encodeFrameHead({ options: [{ subtype: 'MP_CAPABLE', version: 1, flags: 0x81 }] }), Buffer.from('client hello')]);
/** A token the worker with id `w` issues (bits 23..16). */
const tokenOf = (w: number) => ((0x5a << 24) | (w << 16) | 0x1234) >>> 0;

describe('the cluster dispatcher', () => {
  it('joins by the worker id in their token, new connections and plain TLS in turn, the head travels with the socket', async () => {
    const w = [new FakeWorker(0), new FakeWorker(1)];
    const { d, port } = await primary(w);
    connect(port, join(tokenOf(1)));
    connect(port, capable());
    connect(port, capable());
    connect(port, Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]));
    await until(() => w[0].got.length + w[1].got.length === 4, 5000, 'four handovers');
    expect(d.stats).toMatchObject({ joins: 1, connections: 2, plain: 1, unreachable: 0, dropped: 0 });
    expect(w[1].got.some((g) => g.head.equals(join(tokenOf(1))))).toBe(true);
    expect(w[0].got.length).toBe(2);
    expect(w[1].got.length).toBe(2);
    for (const g of [...w[0].got, ...w[1].got]) g.socket.destroy();
  });

  it('a worker that cannot take a new connection passes it on: the next one gets it, head intact', async () => {
    const w = [new FakeWorker(0, false), new FakeWorker(1)];
    const { d, port } = await primary(w);
    for (let i = 0; i < 4; i++) connect(port, capable());
    await until(() => w[1].got.length === 4, 5000, 'all four at worker 1');
    expect(w[0].got.length).toBe(0);
    expect(w[0].offered).toBeGreaterThan(0);
    expect(d.stats.unreachable).toBe(w[0].offered);
    expect(d.stats.dropped).toBe(0);
    for (const g of w[1].got) {
      expect(g.head.equals(capable())).toBe(true);
      g.socket.destroy();
    }
  });

  it('a join for a worker that cannot take it is refused (preamble + MP_TCPRST, MPJoinNoTokenFound), as for one that is gone', async () => {
    const w = [new FakeWorker(0, false), new FakeWorker(1)];
    const { d, port } = await primary(w);
    const dying = connect(port, join(tokenOf(0)));
    const gone = connect(port, join(tokenOf(7)));
    const [a, b] = await Promise.all([dying.reply, gone.reply]);
    expect(a.equals(b)).toBe(true);
    expect(a.subarray(0, 4)).toEqual(Buffer.from([0xa7, 0x4d, 0x50, 0x54]));
    expect(a.length).toBeGreaterThan(8);
    expect(d.mib.values.MPJoinNoTokenFound).toBe(2);
    expect(d.stats).toMatchObject({ joins: 2, noWorker: 2, unreachable: 1, dropped: 0 });
    expect(w[1].got.length).toBe(0);
  });

  it('no worker can take it: the connection is closed and counted as dropped, nothing stays pending', async () => {
    const w = [new FakeWorker(0, false), new FakeWorker(1, false)];
    const { d, port } = await primary(w);
    const c = connect(port, capable());
    expect((await c.reply).length).toBe(0);
    expect(d.stats).toMatchObject({ connections: 1, unreachable: 2, dropped: 1 });
    expect(d.pending).toBe(0);
  });

  it('a worker whose send throws: that connection is dropped and closed, the dispatcher goes on', async () => {
    const broken: DispatchWorker = {
      id: 0,
      send: () => {
        throw new Error('EBADF');
      },
    };
    const ok = new FakeWorker(1);
    const d = new Dispatcher({ workers: () => [broken, ok], worker: (id) => (id === 0 ? broken : ok) });
    const server = net.createServer({ pauseOnConnect: true }, (s) => d.handle(s));
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const first = connect(port, capable());
    expect((await first.reply).length).toBe(0);
    connect(port, capable());
    await until(() => ok.got.length === 1, 5000, 'the next connection handed over');
    expect(d.stats).toMatchObject({ connections: 2, dropped: 1 });
    ok.got[0].socket.destroy();
  });
});

describe('the handover leaves the rest in the kernel', () => {
  it('bytes that arrive after the first ones stay unread in the socket the worker gets (the primary would lose them)', async () => {
    const w = [new FakeWorker(0)];
    const { port } = await primary(w);
    const c = connect(port, capable());
    await until(() => w[0].got.length === 1, 5000, 'the handover');
    const { socket, head } = w[0].got[0];
    const rest = Buffer.alloc(4000, 0x42);
    c.socket.write(rest);
    // Let them arrive at the primary's socket: nothing may read them there.
    await new Promise((r) => setTimeout(r, 150));
    expect(socket.readableLength).toBe(0);
    expect((socket as unknown as { _handle: { reading: boolean } })._handle.reading).toBe(false);
    // A worker's socket is a fresh one on the same file descriptor; here the
    // same socket reads again (its stream still thinks a read is under way:
    // the drain asked for one, and the handle was stopped before it came).
    const got: Buffer[] = [];
    socket.on('data', (d: Buffer) => got.push(d));
    (socket as unknown as { _readableState: { reading: boolean } })._readableState.reading = false;
    socket.resume();
    await until(() => Buffer.concat(got).length === rest.length, 5000, 'the rest');
    expect(Buffer.concat([head, ...got]).equals(Buffer.concat([capable(), rest]))).toBe(true);
    socket.destroy();
  });
});
