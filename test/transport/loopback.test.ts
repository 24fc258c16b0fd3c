/**
 * The userspace transport, the TLS binding and the API on loopback, where
 * 127.0.0.1 … 127.0.0.4 are distinct real paths (distinct TCP connections).
 */
import { describe, it, expect, afterEach } from 'vitest';
import tls from 'node:tls';
import net from 'node:net';
import { fixtures, listen, close, sendBulk, receiveAll, mptlsServer, mptlsConnect, until, type Server } from '../support/servers.js';
import { exportMptcpKeys, EXPORTER_LABEL, exporterContext } from '../../src/tls/keys.js';
import { connect, type MptlsSocket } from '../../src/api/index.js';

const MiB = 1024 * 1024;
const servers: net.Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => close(s)));
});

function echoServer(onSocket?: (s: MptlsSocket) => void): Server {
  const server = mptlsServer({}, (s) => {
    onSocket?.(s);
  });
  servers.push(server);
  return server;
}

/** Both directions at once: client → server and server → client, `size` bytes each. */
async function bidirectional(localAddresses: string[], size: number) {
  const serverSide: Promise<{ got: { bytes: number; sha256: string }; sent: string; socket: MptlsSocket }>[] = [];
  const server = mptlsServer({ allowHalfOpen: true }, (s) => {
    serverSide.push(
      (async () => {
        const [got, sent] = await Promise.all([receiveAll(s), sendBulk(s, size)]);
        return { got, sent, socket: s };
      })(),
    );
  });
  servers.push(server);
  const port = await listen(server);
  // Both directions end independently: half-open, as with node:tls.
  const c = await mptlsConnect(port, { mptcp: { localAddresses }, allowHalfOpen: true } as Parameters<typeof mptlsConnect>[1]);
  const [clientGot, clientSent] = await Promise.all([receiveAll(c), sendBulk(c, size)]);
  await until(() => serverSide.length === 1, 5000, 'server socket');
  const srv = await serverSide[0];
  return { c, clientGot, clientSent, srv, server };
}

describe('userspace multipath over loopback', () => {
  it('2 subflows: 64 MiB each way, SHA-256 equal, both subflows carry data', async () => {
    const { c, clientGot, clientSent, srv } = await bidirectional(['127.0.0.1', '127.0.0.2'], 64 * MiB);
    expect(srv.got.bytes).toBe(64 * MiB);
    expect(srv.got.sha256).toBe(clientSent);
    expect(clientGot.bytes).toBe(64 * MiB);
    expect(clientGot.sha256).toBe(srv.sent);
    expect(c.mptcp.mode).toBe('userspace');
    const sfs = c.mptcp.subflows();
    expect(sfs.map((s) => s.localAddress).sort()).toEqual(['127.0.0.1', '127.0.0.2']);
    for (const s of sfs) expect(s.bytesSent + s.bytesReceived).toBeGreaterThan(0);
    expect(srv.socket.mptcp.mode).toBe('userspace');
    expect(c.mptcp.counters().MPJoinSynAckRx).toBe(1);
  });

  it('4 subflows: 64 MiB each way, SHA-256 equal', async () => {
    const { c, clientGot, clientSent, srv } = await bidirectional(['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4'], 64 * MiB);
    expect(srv.got.sha256).toBe(clientSent);
    expect(clientGot.sha256).toBe(srv.sent);
    expect(c.mptcp.subflows().length).toBe(4);
    expect(new Set(c.mptcp.subflows().map((s) => s.localAddress)).size).toBe(4);
  });

  it('a subflow killed mid-transfer (socket destroyed): the transfer completes intact', async () => {
    const serverDone: Promise<{ bytes: number; sha256: string }>[] = [];
    const server = echoServer((s) => serverDone.push(receiveAll(s).finally(() => s.end())));
    const port = await listen(server);
    const c = await mptlsConnect(port, { mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] } });
    await until(() => c.mptcp.subflows().filter((s) => s.state === 'established').length === 2, 5000, 'join');
    const sent = sendBulk(c, 48 * MiB);
    // Kill the joined subflow once it carries data.
    const info = c.mptcp as unknown as { driver: { socketOf(id: number): net.Socket | undefined } };
    await until(() => (c.mptcp.subflows().find((s) => s.id === 1)?.bytesSent ?? 0) > 4 * MiB, 10000, 'data on subflow 1');
    // Hold what the scheduler gives subflow 1 from now on in its socket's
    // write queue (our cork outlives the driver's uncork), so the destroy
    // certainly loses data the peer never got: on a loaded machine the
    // kernel could otherwise deliver, and the peer acknowledge, everything
    // subflow 1 carried before the close is seen, and nothing needs
    // reinjecting.
    const s1 = info.driver.socketOf(1)!;
    s1.cork();
    await until(() => s1.writableLength > 0, 10000, 'data held on subflow 1');
    s1.destroy();
    const [digest] = await Promise.all([sent]);
    await until(() => serverDone.length === 1);
    const got = await serverDone[0];
    expect(got.bytes).toBe(48 * MiB);
    expect(got.sha256).toBe(digest);
    expect(c.mptcp.subflows().find((s) => s.id === 1)).toBeUndefined();
    expect(c.mptcp.counters().ReinjectedBytes).toBeGreaterThan(0);
  });

  it('a lost subflow is joined again by the path manager, and carries data', async () => {
    const serverDone: Promise<{ bytes: number; sha256: string }>[] = [];
    const server = echoServer((s) => serverDone.push(receiveAll(s).finally(() => s.end())));
    const port = await listen(server);
    const c = await mptlsConnect(port, { mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] } });
    await until(() => c.mptcp.subflows().filter((s) => s.state === 'established').length === 2, 5000, 'join');
    const info = c.mptcp as unknown as { driver: { socketOf(id: number): net.Socket | undefined } };
    info.driver.socketOf(1)!.destroy();
    // re-joined after 1 s (InKernelLikePathManager.onSubflowClosed)
    await until(() => c.mptcp.subflows().some((s) => s.id === 2 && s.state === 'established'), 5000, 're-join');
    expect(c.mptcp.subflows().find((s) => s.id === 2)!.localAddress).toBe('127.0.0.2');
    const digest = await sendBulk(c, 16 * MiB);
    await until(() => serverDone.length === 1);
    expect((await serverDone[0]).sha256).toBe(digest);
    expect(c.mptcp.subflows().find((s) => s.id === 2)!.bytesSent).toBeGreaterThan(0);
  });

  it('the server announces an address (ADD_ADDR, authenticated) and the client joins it', async () => {
    const server = mptlsServer({ mptcp: { announce: ['127.0.0.3'] } }, (s) => {
      s.resume();
      s.on('end', () => s.end());
    });
    servers.push(server);
    const port = await listen(server, '0.0.0.0');
    const c = await mptlsConnect(port);
    await until(() => c.mptcp.subflows().filter((s) => s.state === 'established').length === 2, 5000, 'join to the announced address');
    expect(c.mptcp.counters().AddAddr).toBe(1);
    expect(c.mptcp.subflows().map((s) => s.remoteAddress).sort()).toEqual(['127.0.0.1', '127.0.0.3']);
    c.end();
  });

  it('TLS 1.2 and 1.3: a real TLSSocket both sides (certificates, ALPN, authorized)', async () => {
    for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
      let serverSocket: MptlsSocket | undefined;
      const server = mptlsServer({ ALPNProtocols: ['h2', 'x-mptls'] }, (s) => {
        serverSocket = s;
        s.end('hello');
      });
      servers.push(server);
      const port = await listen(server);
      const c = await mptlsConnect(port, { maxVersion: version, minVersion: version, ALPNProtocols: ['x-mptls'], servername: 'localhost' });
      expect(c).toBeInstanceOf(tls.TLSSocket);
      expect(c.getProtocol()).toBe(version);
      expect(c.authorized).toBe(true);
      expect(c.alpnProtocol).toBe('x-mptls');
      expect(c.getPeerCertificate().subject).toBeDefined();
      const body = await receiveAll(c);
      expect(body.bytes).toBe(5);
      await until(() => serverSocket !== undefined);
      expect(serverSocket).toBeInstanceOf(tls.TLSSocket);
      expect(serverSocket!.alpnProtocol).toBe('x-mptls');
      expect(serverSocket!.mptcp.mode).toBe('userspace');
    }
  });

  it('exporter keys: equal on both sides, different between connections', async () => {
    const serverSockets: MptlsSocket[] = [];
    const server = echoServer((s) => {
      serverSockets.push(s);
      s.resume();
      s.on('end', () => s.end());
    });
    const port = await listen(server);
    const a = await mptlsConnect(port);
    const b = await mptlsConnect(port);
    await until(() => serverSockets.length === 2 && serverSockets.every((s) => s.mptcp.keyFingerprints));
    const byToken = (tok: number) => serverSockets.find((s) => s.mptcp.tokens!.remote === tok)!;
    for (const c of [a, b]) {
      const s = byToken(c.mptcp.tokens!.local);
      expect(s.mptcp.tokens!.local).toBe(c.mptcp.tokens!.remote);
      expect(c.mptcp.keyFingerprints).toEqual(s.mptcp.keyFingerprints);
      // and the raw exporter agrees, end to end
      const ctx = exporterContext(c.mptcp.tokens!.local, c.mptcp.tokens!.remote);
      expect(c.exportKeyingMaterial(16, EXPORTER_LABEL, ctx)).toEqual(s.exportKeyingMaterial(16, EXPORTER_LABEL, ctx));
      const k = exportMptcpKeys(c, c.mptcp.tokens!.local, c.mptcp.tokens!.remote);
      expect(k.keyA).not.toEqual(k.keyB);
    }
    expect(a.mptcp.keyFingerprints).not.toEqual(b.mptcp.keyFingerprints);
    // No key material reachable by inspection: the core keeps keys in #private fields.
    const { inspect } = await import('node:util');
    const ka = exportMptcpKeys(a, a.mptcp.tokens!.local, a.mptcp.tokens!.remote);
    const deep = inspect(a.mptcp, { depth: Infinity, showHidden: true, maxArrayLength: Infinity, maxStringLength: Infinity });
    for (const key of [ka.keyA, ka.keyB]) {
      expect(deep).not.toContain([...key].join(', '));
      expect(deep).not.toContain(Buffer.from(key).toString('hex'));
    }
    expect(a.mptcp.keysConfirmed && b.mptcp.keysConfirmed).toBe(true);
    a.end();
    b.end();
  });

  it('a client against a plain tls.createServer falls back to plain TLS; fallback: false refuses', async () => {
    const plain = tls.createServer({ key: fixtures.key, cert: fixtures.cert }, (s) => s.end('plain'));
    servers.push(plain);
    const port = await listen(plain);
    const c = await mptlsConnect(port);
    const body = await receiveAll(c);
    expect(body.bytes).toBe(5);
    expect(c.mptcp.mode).toBe('fallback');
    expect(c.mptcp.fallbackReason).toMatch(/preamble/);
    expect(c.authorized).toBe(true);

    const err = await new Promise<Error>((resolve) => {
      const s = connect({ host: '127.0.0.1', port, ca: fixtures.ca, mptcp: { fallback: false } });
      s.once('error', resolve);
      s.once('secureConnect', () => resolve(new Error('connected?')));
    });
    expect((err as Error & { code?: string }).code).toBe('ERR_MPTLS_NO_MULTIPATH');
  });

  it('one port serves multipath and plain TLS clients (node:tls client)', async () => {
    const server = echoServer((s) => s.end(s.mptcp.mode));
    const port = await listen(server);
    const plain = tls.connect({ host: '127.0.0.1', port, ca: fixtures.ca, servername: 'localhost' });
    const p = await receiveAll(plain as tls.TLSSocket);
    expect(p.bytes).toBe('fallback'.length);
    const m = await mptlsConnect(port);
    const q = await receiveAll(m);
    expect(q.bytes).toBe('userspace'.length);
  });

  it('pin: the right SPKI pin connects, a wrong one is refused', async () => {
    const { spkiSha256 } = await import('../../src/tls/pin.js');
    const server = echoServer((s) => s.end('ok'));
    const port = await listen(server);
    const good = await mptlsConnect(port, { pin: spkiSha256(fixtures.cert.toString()), servername: 'localhost' });
    expect((await receiveAll(good)).bytes).toBe(2);
    const err = await mptlsConnect(port, { pin: 'sha256//' + Buffer.alloc(32).toString('base64'), servername: 'localhost' }).then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    expect(err?.code).toBe('ERR_MPTLS_PIN_MISMATCH');
  });
});

describe('socket addresses', () => {
  it('remoteAddress/localAddress on both TLSSockets come from the first subflow', async () => {
    let srvSock: MptlsSocket | undefined;
    const server = mptlsServer({}, (s) => {
      srvSock = s;
      s.end();
    });
    servers.push(server);
    const port = await listen(server);
    const c = await mptlsConnect(port, { mptcp: { localAddresses: ['127.0.0.2'] } });
    await until(() => srvSock !== undefined);
    expect(c.remoteAddress).toBe('127.0.0.1');
    expect(c.remotePort).toBe(port);
    expect(c.localAddress).toBe('127.0.0.2');
    expect(srvSock!.remoteAddress).toBe('127.0.0.2');
    expect(srvSock!.localPort).toBe(port);
    c.end();
  });
});
