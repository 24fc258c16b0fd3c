/**
 * `localAddresses: 'auto'` and `announce: 'auto'` end to end on loopback,
 * with fake interface sources on both ends (127.0.0.2 … 127.0.0.5 play the
 * host's non-internal addresses): addresses that appear are joined or
 * announced, vanished ones end their subflows, one that comes back is joined
 * again. Transport level (no TLS): both ends get the same keys directly.
 */
import { describe, it, expect, afterEach } from 'vitest';
import net from 'node:net';
import type os from 'node:os';
import { randomBytes } from 'node:crypto';
import { makeUserspaceClient } from '../../src/transport/userspace/client.js';
import { userspaceServer } from '../../src/transport/userspace/server.js';
import { InterfaceMonitor, type Interfaces } from '../../src/transport/userspace/addresses.js';
import type { MultipathStream } from '../../src/transport/userspace/stream.js';
import type { OpenedConnection } from '../../src/transport/index.js';
import { until } from '../support/servers.js';

function v4(address: string, internal = false): os.NetworkInterfaceInfo {
  return { address, netmask: '255.255.255.255', family: 'IPv4', mac: '00:00:00:00:00:00', internal, cidr: `${address}/32` };
}

function fake(ifaces: Record<string, os.NetworkInterfaceInfo[]>) {
  // lo holds 127.0.0.1 alone here, so the other 127/8 addresses can come and go.
  return new InterfaceMonitor((): Interfaces => ({ lo: [v4('127.0.0.1', true)], ...ifaces }), 50);
}

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

/** Live subflows as "local→remote". */
function paths(c: OpenedConnection): string[] {
  const driver = (c.socket as MultipathStream).driver;
  return driver.conn
    .subflowInfo()
    .filter((s) => s.state === 'established')
    .map((s) => {
      const sock = driver.socketOf(s.id);
      return `${sock?.localAddress}→${sock?.remoteAddress}`;
    })
    .sort();
}

describe("'auto' addresses, followed", () => {
  it('client joins from addresses as they appear, drops vanished ones, re-joins one that comes back; the server announces its own likewise', async () => {
    const clientIfaces: Record<string, os.NetworkInterfaceInfo[]> = { eth0: [v4('127.0.0.2')], eth1: [v4('127.0.0.3')] };
    const serverIfaces: Record<string, os.NetworkInterfaceInfo[]> = { eth0: [v4('127.0.0.1')], eth1: [v4('127.0.0.5')] };
    // On every address, so that the announced 127.0.0.5 answers too.
    const server = net.createServer();
    const accepted: OpenedConnection[] = [];
    userspaceServer({ announce: 'auto' }, { interfaces: fake(serverIfaces) }).listen(server, {
      plain: (s) => s.destroy(),
      connection: (oc) => {
        accepted.push(oc);
        oc.socket.on('error', () => {});
      },
    });
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    cleanup.push(() => server.close());
    const port = (server.address() as net.AddressInfo).port;

    const client = makeUserspaceClient({ interfaces: fake(clientIfaces) });
    const c = client.open({ host: '127.0.0.1', port, allowHalfOpen: true, mptcp: { localAddresses: 'auto' } });
    c.socket.on('error', () => {});
    cleanup.push(() => c.socket.destroy());
    await until(() => accepted.length === 1 && !!c.keys.context() && !!accepted[0]!.keys.context(), 5000, 'established');
    const s = accepted[0]!;
    cleanup.push(() => s.socket.destroy());
    const keyA = randomBytes(8);
    const keyB = randomBytes(8);
    c.keys.install(keyA, keyB);
    s.keys.install(keyA, keyB);

    // The first subflow from the first address, a join from the second, and
    // one to the server's announced 127.0.0.5 (not 127.0.0.1: the client is on it).
    await until(() => paths(c).length === 3, 5000, 'three subflows');
    expect(paths(c)).toEqual(['127.0.0.2→127.0.0.1', '127.0.0.2→127.0.0.5', '127.0.0.3→127.0.0.1']);

    // 127.0.0.3 vanishes: its subflow goes.
    delete clientIfaces.eth1;
    await until(() => !paths(c).some((p) => p.startsWith('127.0.0.3')), 5000, '127.0.0.3 dropped');
    // A new address appears: joined.
    clientIfaces.eth2 = [v4('127.0.0.4')];
    await until(() => paths(c).includes('127.0.0.4→127.0.0.1'), 5000, '127.0.0.4 joined');
    // 127.0.0.3 comes back: joined again.
    clientIfaces.eth1 = [v4('127.0.0.3')];
    await until(() => paths(c).includes('127.0.0.3→127.0.0.1'), 5000, '127.0.0.3 re-joined');

    // The server's 127.0.0.5 vanishes: REMOVE_ADDR, the client closes its subflows to it.
    delete serverIfaces.eth1;
    await until(() => !paths(c).some((p) => p.endsWith('→127.0.0.5')), 5000, '127.0.0.5 withdrawn');
    expect(paths(c)).toEqual(['127.0.0.2→127.0.0.1', '127.0.0.3→127.0.0.1', '127.0.0.4→127.0.0.1']);

    // Bytes still flow both ways over what is left.
    const got: Buffer[] = [];
    s.socket.on('data', (d: Buffer) => got.push(d));
    const payload = randomBytes(256 * 1024);
    c.socket.write(payload);
    await until(() => Buffer.concat(got).length === payload.length, 5000, 'payload');
    expect(Buffer.concat(got).equals(payload)).toBe(true);
  });

  it('a fixed list: an address that disappears and comes back is joined again', async () => {
    const clientIfaces: Record<string, os.NetworkInterfaceInfo[]> = { eth0: [v4('127.0.0.2')], eth1: [v4('127.0.0.3')], eth2: [v4('127.0.0.4')] };
    const server = net.createServer();
    const accepted: OpenedConnection[] = [];
    userspaceServer({}).listen(server, { plain: (s) => s.destroy(), connection: (oc) => accepted.push(oc) });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanup.push(() => server.close());
    const port = (server.address() as net.AddressInfo).port;
    const c = makeUserspaceClient({ interfaces: fake(clientIfaces) }).open({
      host: '127.0.0.1',
      port,
      allowHalfOpen: true,
      mptcp: { localAddresses: ['127.0.0.2', '127.0.0.3'] },
    });
    c.socket.on('error', () => {});
    cleanup.push(() => c.socket.destroy());
    await until(() => accepted.length === 1 && !!c.keys.context() && !!accepted[0]!.keys.context(), 5000, 'established');
    const s = accepted[0]!;
    s.socket.on('error', () => {});
    cleanup.push(() => s.socket.destroy());
    const keyA = randomBytes(8);
    const keyB = randomBytes(8);
    c.keys.install(keyA, keyB);
    s.keys.install(keyA, keyB);
    await until(() => paths(c).length === 2, 5000, 'two subflows');
    expect(paths(c)).toEqual(['127.0.0.2→127.0.0.1', '127.0.0.3→127.0.0.1']);

    delete clientIfaces.eth1;
    await until(() => paths(c).length === 1, 5000, '127.0.0.3 dropped');
    clientIfaces.eth1 = [v4('127.0.0.3')];
    await until(() => paths(c).length === 2, 5000, '127.0.0.3 re-joined');
    // 127.0.0.4 is on the host but not in the list: never joined.
    await new Promise((r) => setTimeout(r, 200));
    expect(paths(c)).toEqual(['127.0.0.2→127.0.0.1', '127.0.0.3→127.0.0.1']);
  });
});
