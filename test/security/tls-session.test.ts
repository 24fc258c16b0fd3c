/**
 * Security round 2, the TLS session under the keys (issue 11 §1, §4, §7, §8):
 *  - a TLS 1.2 renegotiation (client- or server-initiated) never crashes
 *    the process: the keys stay bound to the first handshake, the
 *    renegotiation is refused and counted;
 *  - a multipath connection that stalls after MP_CAPABLE is closed after
 *    `mptcp.handshakeTimeoutMs`, not node's 120 s;
 *  - a full token table turns a multipath client into a plain-TLS one
 *    (fallback), or a clear refusal when fallback is off;
 *  - TLS 1.2 without the extended master secret, or with static RSA, cannot
 *    carry external keys (either end refuses);
 *  - key fingerprints are not a hash of the key.
 */
import { describe, it, expect, afterEach, beforeAll } from 'vitest';
import net from 'node:net';
import tls from 'node:tls';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { fixtures, listen, close, mptlsServer, mptlsConnect, until } from '../support/servers.js';
import { connect, type MptlsSocket } from '../../src/api/index.js';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS } from '../../src/api/server.js';
import { encodeFrameHead, FrameParser, preamble, ROLE_CLIENT } from '../../src/transport/userspace/frame.js';
import { CapableFlag } from '../../src/wire/types.js';
import { exportMptcpKeys, keyFingerprints } from '../../src/tls/keys.js';
import { keysForTesting } from '../../src/core/connection/index.js';
import { sessionFlags } from '../../src/tls/binding.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** OpenSSL 3's SSL_OP_NO_EXTENDED_MASTER_SECRET (node does not export the constant). */
const SSL_OP_NO_EXTENDED_MASTER_SECRET = 1;

/** An original, un-refused renegotiate (what an attacker's own TLS stack does). */
const nodeRenegotiate = tls.TLSSocket.prototype.renegotiate;

function serverSide(server: ReturnType<typeof mptlsServer>): Promise<MptlsSocket> {
  return new Promise((r) => server.once('secureConnection', (s: MptlsSocket) => r(s)));
}

function closed(s: net.Socket, ms = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (s.destroyed) return resolve();
    const t = setTimeout(() => reject(new Error(`socket not closed within ${ms} ms`)), ms);
    s.once('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Echo a round trip over the socket pair. */
async function roundTrip(client: tls.TLSSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    client.once('data', (d: Buffer) => resolve(d.toString()));
    client.once('error', reject);
    client.write(text);
  });
}

/** A TLS 1.2 multipath connection on one subflow, and the server's socket (echoing when `echo`). */
async function tls12Pair(echo: boolean): Promise<{ c: MptlsSocket; serverSock: MptlsSocket }> {
  let serverSock: MptlsSocket | undefined;
  const server = mptlsServer({}, (s) => {
    serverSock = s;
    s.on('error', () => {});
    if (echo) s.on('data', (d) => s.write(d));
  });
  const port = await listen(server);
  cleanup.push(() => close(server, 500));
  const c = await mptlsConnect(port, { maxVersion: 'TLSv1.2', mptcp: { localAddresses: ['127.0.0.1'] } });
  await until(() => !!serverSock, 2000, 'secureConnection');
  return { c, serverSock: serverSock! };
}

describe('renegotiation (TLS 1.2) on multipath connections', () => {
  it('a client-initiated renegotiation is refused and counted; the server process carries on', async () => {
    const server = mptlsServer({}, (s) => {
      s.on('error', () => {});
      s.on('data', (d) => s.write(d));
    });
    const port = await listen(server);
    cleanup.push(() => close(server, 500));
    const srvSocket = serverSide(server);
    const c = await mptlsConnect(port, { maxVersion: 'TLSv1.2', mptcp: { localAddresses: ['127.0.0.1'] } });
    c.on('error', () => {});
    const s = await srvSocket;
    expect(c.getProtocol()).toBe('TLSv1.2');
    expect(await roundTrip(c, 'before')).toBe('before');
    // The attacker's TLS stack renegotiates (node's own renegotiate, not mptls's refusal).
    const secureAgain: string[] = [];
    s.on('secure', () => secureAgain.push('secure'));
    nodeRenegotiate.call(c, {}, () => {});
    await closed(s);
    await closed(c);
    expect(s.mptcp.counters().TlsRenegotiationRefused).toBe(1);
    expect(server.mptcp.counters().TlsRenegotiationRefused).toBe(1);
    expect(secureAgain).toEqual([]);
    // Still serving: a new client gets its echo.
    const c2 = await mptlsConnect(port, { mptcp: { localAddresses: ['127.0.0.1'] } });
    expect(await roundTrip(c2, 'after')).toBe('after');
    c2.destroy();
  });

  it('renegotiate() on a multipath socket answers ERR_MPTLS_RENEGOTIATION and the connection goes on', async () => {
    const { c, serverSock } = await tls12Pair(true);
    // A server that wants a client certificate after the fact.
    const err = await new Promise<Error & { code?: string }>((r) => serverSock.renegotiate({ requestCert: true, rejectUnauthorized: false }, (e) => r(e as Error)));
    expect(err.code).toBe('ERR_MPTLS_RENEGOTIATION');
    expect(await roundTrip(c, 'still here')).toBe('still here');
    // The client side refuses a server's renegotiation the same way.
    const cerr = await new Promise<Error & { code?: string }>((r) => c.renegotiate({}, (e) => r(e as Error)));
    expect(cerr.code).toBe('ERR_MPTLS_RENEGOTIATION');
    c.destroy();
  });

  it('a server-initiated renegotiation (HelloRequest) is refused by the client, counted, and nothing throws', async () => {
    const { c, serverSock } = await tls12Pair(false);
    const errors: (Error & { code?: string })[] = [];
    c.on('error', (e) => errors.push(e));
    // A malicious server's own stack sends HelloRequest (this server's refusal
    // of its own renegotiation is taken out, as a hostile server would).
    (serverSock as unknown as { _handle: { onhandshakestart: () => void } })._handle.onhandshakestart = () => {};
    nodeRenegotiate.call(serverSock, {}, () => {});
    serverSock.write('x'); // something for the client to read the HelloRequest with
    await closed(c);
    expect(c.mptcp.counters().TlsRenegotiationRefused).toBe(1);
    expect(errors.map((e) => e.code)).toContain('ERR_MPTLS_RENEGOTIATION');
  });
});

describe('handshake timeout and a full token table', () => {
  it('a connection that completes MP_CAPABLE and then says nothing is closed after handshakeTimeoutMs, counted', async () => {
    expect(DEFAULT_HANDSHAKE_TIMEOUT_MS).toBe(10_000);
    const server = mptlsServer({ mptcp: { handshakeTimeoutMs: 800 } });
    const tlsErrors: string[] = [];
    server.on('tlsClientError', (e: Error & { code?: string }) => tlsErrors.push(e.code ?? e.message));
    const port = await listen(server);
    cleanup.push(() => close(server, 500));
    const sockets: net.Socket[] = [];
    const N = 20;
    const t0 = Date.now();
    const done = Array.from({ length: N }, async () => {
      const sock = net.connect({ port, host: '127.0.0.1' });
      sockets.push(sock);
      sock.on('error', () => {});
      const parser = new FrameParser();
      sock.write(Buffer.concat([Buffer.from(preamble(ROLE_CLIENT)), Buffer.from(encodeFrameHead({ options: [{ subtype: 'MP_CAPABLE', version: 1, flags: CapableFlag.G_EXTERNAL_KEYS | CapableFlag.H_HMAC_SHA256 }] }))]));
      const tokenB = await new Promise<number>((resolve, reject) => {
        sock.on('data', (d: Buffer) => {
          for (const it of parser.push(d)) {
            if (it.kind !== 'segment') continue;
            const o = it.segment.options.find((x) => x.subtype === 'MP_CAPABLE');
            if (o && o.subtype === 'MP_CAPABLE' && o.senderToken !== undefined) resolve(o.senderToken);
          }
        });
        sock.once('close', () => reject(new Error('closed before SYN/ACK')));
      });
      // The third ACK, then silence (no ClientHello).
      sock.write(encodeFrameHead({ options: [{ subtype: 'MP_CAPABLE', version: 1, flags: CapableFlag.G_EXTERNAL_KEYS | CapableFlag.H_HMAC_SHA256, senderToken: 0x01020304 + sockets.indexOf(sock), receiverToken: tokenB }] }));
      await closed(sock);
      return Date.now() - t0;
    });
    await until(() => server.mptcp.connections === N || server.mptcp.endpoint.connectionCount === N, 3000, 'all stalled connections established');
    const times = await Promise.race([Promise.all(done), new Promise<never>((_, rej) => setTimeout(() => rej(new Error('stalled connections still open after 5 s')), 5000))]);
    expect(Math.min(...times)).toBeGreaterThanOrEqual(700);
    expect(Math.max(...times)).toBeLessThan(3000);
    expect(server.mptcp.counters().HandshakeTimeout).toBe(N);
    expect(tlsErrors.filter((c) => c === 'ERR_TLS_HANDSHAKE_TIMEOUT')).toHaveLength(N);
    await until(() => server.mptcp.endpoint.connectionCount === 0, 2000, 'tokens freed');
  });

  it('a full token table: a multipath client with fallback gets plain TLS; without fallback a clear refusal', async () => {
    const server = mptlsServer({ mptcp: { maxConnections: 2 } }, (s) => {
      s.on('error', () => {});
      s.on('data', (d) => s.write(d));
    });
    const port = await listen(server);
    cleanup.push(() => close(server, 500));
    const held = [await mptlsConnect(port), await mptlsConnect(port)];
    expect(held.map((h) => h.mptcp.mode)).toEqual(['userspace', 'userspace']);
    const third = await mptlsConnect(port);
    expect(third.mptcp.mode).toBe('fallback');
    expect(third.mptcp.fallbackReason).toMatch(/refused multipath/);
    expect(await roundTrip(third, 'plain')).toBe('plain');
    expect(server.mptcp.counters().ConnectionLimit).toBeGreaterThanOrEqual(1);
    const strict = connect({ host: '127.0.0.1', port, ca: fixtures.ca, mptcp: { fallback: false } });
    const err = await new Promise<Error & { code?: string }>((r) => strict.once('error', r));
    expect(err.code).toBe('ERR_MPTLS_REFUSED');
    expect((strict as MptlsSocket).mptcp.counters().MPCapableRefused).toBe(1);
    for (const h of [...held, third]) h.destroy();
  });
});

describe('the TLS session must bind the keys uniquely (RFC 7627, RFC 5705 §3)', () => {
  let rsa: { key: Buffer; cert: Buffer } | undefined;
  let dir: string | undefined;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'mptls-rsa-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'k.pem'), '-out', path.join(dir, 'c.pem'), '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    rsa = { key: readFileSync(path.join(dir, 'k.pem')), cert: readFileSync(path.join(dir, 'c.pem')) };
    return () => rmSync(dir!, { recursive: true, force: true });
  });

  async function attempt(serverOpts: object, clientOpts: object): Promise<{ client?: Error & { code?: string }; server: (Error & { code?: string })[]; mode?: string; srvCounters: Record<string, number> }> {
    const server = mptlsServer(serverOpts, (s) => {
      s.on('error', () => {});
      s.end('ok');
    });
    const serverErrors: (Error & { code?: string })[] = [];
    server.on('tlsClientError', (e: Error) => serverErrors.push(e));
    const port = await listen(server);
    cleanup.push(() => close(server, 500));
    const c = connect({ host: '127.0.0.1', port, ca: fixtures.ca, ...clientOpts });
    const out = await new Promise<{ client?: Error & { code?: string }; mode?: string }>((resolve) => {
      c.once('error', (e) => resolve({ client: e }));
      c.on('data', () => {});
      c.once('end', () => resolve({ mode: (c as MptlsSocket).mptcp.mode }));
      setTimeout(() => resolve({ client: new Error('no outcome in 5 s') }), 5000).unref();
    });
    c.destroy();
    await until(() => serverErrors.length > 0 || !!out.mode, out.client ? 300 : 2000, 'server outcome').catch(() => {});
    return { ...out, server: serverErrors, srvCounters: server.mptcp.counters() };
  }

  it('TLS 1.2 without the extended master secret is refused by the server (client gets an error too)', async () => {
    const r = await attempt({}, { maxVersion: 'TLSv1.2', secureOptions: SSL_OP_NO_EXTENDED_MASTER_SECRET, mptcp: { fallback: false } });
    expect(r.srvCounters.TlsBindingRefused).toBe(1);
    expect(r.server.map((e) => e.code)).toContain('ERR_MPTLS_TLS_BINDING');
    // The server closes at once (its refusal goes first); the client only sees the connection end.
    expect(r.client).toBeInstanceOf(Error);
    expect(r.server.find((e) => e.code === 'ERR_MPTLS_TLS_BINDING')?.message).toMatch(/extended master secret/);
  });

  it('a server without EMS is refused by the client', async () => {
    const r = await attempt({ secureOptions: SSL_OP_NO_EXTENDED_MASTER_SECRET, mptcp: { allowWeakTls12: true } }, { maxVersion: 'TLSv1.2', mptcp: { fallback: false } });
    expect(r.client?.code).toBe('ERR_MPTLS_TLS_BINDING');
    expect(r.client?.message).toMatch(/extended master secret/);
  });

  it('static RSA key exchange is refused; TLS 1.2 with ECDHE and EMS, and TLS 1.3, are accepted', async () => {
    const rsaOpts = { key: rsa!.key, cert: rsa!.cert };
    const r = await attempt({ ...rsaOpts }, { ca: rsa!.cert, maxVersion: 'TLSv1.2', ciphers: 'AES128-GCM-SHA256', mptcp: { fallback: false } });
    expect(r.client).toBeInstanceOf(Error);
    expect(r.server.find((e) => e.code === 'ERR_MPTLS_TLS_BINDING')?.message).toMatch(/no \(EC\)DHE/);
    expect(r.srvCounters.TlsBindingRefused).toBe(1);
    // …and a client refuses a server that allows it.
    const r2 = await attempt({ ...rsaOpts, mptcp: { allowWeakTls12: true } }, { ca: rsa!.cert, maxVersion: 'TLSv1.2', ciphers: 'AES128-GCM-SHA256', mptcp: { fallback: false } });
    expect(r2.client?.code).toBe('ERR_MPTLS_TLS_BINDING');
    expect(r2.client?.message).toMatch(/AES128-GCM-SHA256 has no \(EC\)DHE/);
    const ok12 = await attempt({}, { maxVersion: 'TLSv1.2', mptcp: { fallback: false } });
    expect(ok12.client).toBeUndefined();
    expect(ok12.mode).toBe('userspace');
    const ok13 = await attempt({}, { mptcp: { fallback: false } });
    expect(ok13.mode).toBe('userspace');
  });

  it('the explicit opt-out (allowWeakTls12 on both ends) accepts TLS 1.2 without EMS', async () => {
    const r = await attempt({ mptcp: { allowWeakTls12: true } }, { maxVersion: 'TLSv1.2', secureOptions: SSL_OP_NO_EXTENDED_MASTER_SECRET, mptcp: { fallback: false, allowWeakTls12: true } });
    expect(r.client).toBeUndefined();
    expect(r.mode).toBe('userspace');
  });

  it('sessionFlags reads OpenSSL session encodings and rejects garbage', () => {
    expect(sessionFlags(Uint8Array.of(0x30, 0x00))).toBe(0n);
    expect(sessionFlags(Uint8Array.of(0x30, 0x05, 0xad, 0x03, 0x02, 0x01, 0x01))).toBe(1n);
    expect(sessionFlags(Uint8Array.of(0x31, 0x00))).toBeUndefined();
    expect(sessionFlags(Uint8Array.of(0x30, 0x09, 0xad))).toBeUndefined();
    expect(sessionFlags(new Uint8Array(0))).toBeUndefined();
  });
});

describe('key fingerprints', () => {
  it('equal on both ends, not a hash of the key, and derived from the TLS session', async () => {
    let srv: MptlsSocket | undefined;
    const server = mptlsServer({}, (s) => {
      s.on('error', () => {});
      srv = s;
    });
    const port = await listen(server);
    cleanup.push(() => close(server, 500));
    const c = await mptlsConnect(port);
    await until(() => !!srv && !!srv.mptcp.keyFingerprints, 2000, 'server fingerprints');
    const t = c.mptcp.tokens!;
    const keys = exportMptcpKeys(c, t.local, t.remote);
    const conn = (c.mptcp as unknown as { driver: { conn: Parameters<typeof keysForTesting>[0] } }).driver.conn;
    expect(keysForTesting(conn).localKey).toEqual(keys.keyA);
    const fp = c.mptcp.keyFingerprints!;
    expect(srv!.mptcp.keyFingerprints).toEqual(fp);
    expect(fp).toEqual(keyFingerprints(c, t.local, t.remote, keys));
    const sha = (k: Uint8Array) => createHash('sha256').update(k).digest('hex');
    for (const [name, key] of [['keyA', keys.keyA], ['keyB', keys.keyB]] as const) {
      expect(fp[name]).toMatch(/^[0-9a-f]{16}$/);
      expect(sha(key).startsWith(fp[name])).toBe(false);
    }
    c.destroy();
  });
});
