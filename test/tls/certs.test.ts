/**
 * generateSelfSigned (src/tls/certs.ts) through real TLS 1.3 handshakes, plus
 * sanity checks of the committed fixtures made by scripts/make-certs.mjs.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import * as tls from 'node:tls';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_ALT_NAMES, generateSelfSigned, type SelfSignedCredentials } from '../../src/tls/certs.js';
import { checkServerPin, spkiSha256 } from '../../src/tls/pin.js';
import { fixtureText as fixture } from '../support/fixtures.mjs';
import { withTlsServer } from '../support/tls-server.js';


const withServer = <T>(opts: tls.TlsOptions, fn: (port: number) => Promise<T>): Promise<T> => withTlsServer(opts, fn, 'hello');

type Outcome =
  | { ok: true; protocol: string | null; authorized: boolean; peer: tls.PeerCertificate; data: string }
  | { ok: false; error: Error & { code?: string } };

/** Connects, waits for the handshake and the server's "hello", then closes. */
function connect(port: number, opts: tls.ConnectionOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ...opts });
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (data += d));
    socket.once('secureConnect', () => {
      const protocol = socket.getProtocol();
      const authorized = socket.authorized;
      const peer = socket.getPeerCertificate();
      socket.once('end', () => {
        socket.destroy();
        resolve({ ok: true, protocol, authorized, peer, data });
      });
    });
    socket.once('error', (error: Error & { code?: string }) => {
      socket.destroy();
      resolve({ ok: false, error });
    });
  });
}

const TLS13 = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;

describe('generateSelfSigned', () => {
  let creds: SelfSignedCredentials;
  beforeAll(async () => {
    creds = await generateSelfSigned();
  });

  it('returns PEM key, cert and CA; EC P-256 server key matching the cert', () => {
    expect(creds.key).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(creds.cert).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    expect(creds.ca).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    const key = createPrivateKey(creds.key);
    expect(key.asymmetricKeyType).toBe('ec');
    expect(key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    const cert = new X509Certificate(creds.cert);
    expect(cert.checkPrivateKey(key)).toBe(true);
    const ca = new X509Certificate(creds.ca);
    expect(ca.ca).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.checkIssued(ca)).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(ca.verify(ca.publicKey)).toBe(true);
    expect(cert.subject).toContain('CN=localhost');
  });

  it('covers 127.0.0.1, 127.0.0.2 (and the other default names) in its SANs', () => {
    const cert = new X509Certificate(creds.cert);
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(cert.checkIP('127.0.0.2')).toBe('127.0.0.2');
    expect(cert.checkHost('localhost')).toBe('localhost');
    for (const name of DEFAULT_ALT_NAMES) {
      if (name.includes('.') && /^\d/.test(name)) expect(cert.checkIP(name), name).toBe(name);
    }
    expect(cert.checkIP('::1')).toBe('::1');
    expect(cert.checkIP('10.0.0.1')).toBeUndefined();
  });

  it('completes a real TLS 1.3 handshake when the client trusts the returned ca', async () => {
    await withServer({ key: creds.key, cert: creds.cert, ...TLS13 }, async (port) => {
      const r = await connect(port, { ca: creds.ca, ...TLS13 });
      expect(r).toMatchObject({ ok: true, protocol: 'TLSv1.3', authorized: true, data: 'hello' });
      if (!r.ok) return;
      // The default hostname check for both loopback addresses passes on the presented cert.
      expect(tls.checkServerIdentity('127.0.0.1', r.peer)).toBeUndefined();
      expect(tls.checkServerIdentity('127.0.0.2', r.peer)).toBeUndefined();
      expect(tls.checkServerIdentity('127.0.0.9', r.peer)).toBeInstanceOf(Error);
      // And it can be pinned.
      const pinned = await connect(port, {
        ca: creds.ca,
        ...TLS13,
        checkServerIdentity: checkServerPin(`sha256//${spkiSha256(creds.cert)}`),
      });
      expect(pinned).toMatchObject({ ok: true, protocol: 'TLSv1.3' });
    });
  });

  it('is rejected by a client trusting a different generated CA', async () => {
    const other = await generateSelfSigned();
    expect(spkiSha256(other.cert)).not.toBe(spkiSha256(creds.cert));
    await withServer({ key: creds.key, cert: creds.cert, ...TLS13 }, async (port) => {
      const r = await connect(port, { ca: other.ca, ...TLS13 });
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.error.code).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/);
    });
  });

  it('honours commonName and altNames', async () => {
    const c = await generateSelfSigned({ commonName: 'mptls.test', altNames: ['10.1.2.3', 'fd00::1', 'peer.mptls.test'] });
    const cert = new X509Certificate(c.cert);
    expect(cert.subject).toContain('CN=mptls.test');
    expect(cert.checkHost('mptls.test')).toBe('mptls.test');
    expect(cert.checkHost('peer.mptls.test')).toBe('peer.mptls.test');
    expect(cert.checkIP('10.1.2.3')).toBe('10.1.2.3');
    expect(cert.checkIP('fd00::1')).toBe('fd00::1');
    expect(cert.checkIP('127.0.0.1')).toBeUndefined();
    expect(cert.checkHost('localhost')).toBeUndefined();
    await expect(generateSelfSigned({ validityDays: 0 })).rejects.toThrow(RangeError);
  });
});

describe('certs-fixtures (scripts/make-certs.mjs)', () => {
  const ca = new X509Certificate(fixture('ca.pem'));
  const server = new X509Certificate(fixture('server.pem'));
  const client = new X509Certificate(fixture('client.pem'));
  const otherCa = new X509Certificate(fixture('other-ca.pem'));
  const otherServer = new X509Certificate(fixture('other-server.pem'));

  it('chains: server/client under ca, other-server under other-ca only', () => {
    expect(ca.ca).toBe(true);
    expect(otherCa.ca).toBe(true);
    expect(server.verify(ca.publicKey)).toBe(true);
    expect(client.verify(ca.publicKey)).toBe(true);
    expect(otherServer.verify(otherCa.publicKey)).toBe(true);
    expect(otherServer.verify(ca.publicKey)).toBe(false);
    expect(server.verify(otherCa.publicKey)).toBe(false);
  });

  it('keys match certs and are EC P-256', () => {
    for (const [pem, key] of [
      ['server.pem', 'server.key'],
      ['client.pem', 'client.key'],
      ['other-server.pem', 'other-server.key'],
      ['ca.pem', 'ca.key'],
    ] as const) {
      const k = createPrivateKey(fixture(key));
      expect(k.asymmetricKeyDetails?.namedCurve, key).toBe('prime256v1');
      expect(new X509Certificate(fixture(pem)).checkPrivateKey(k), pem).toBe(true);
    }
    expect(server.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
  });

  it('server SANs cover localhost, loopbacks, ::1 and the 198.18.x.2 test hosts; ~10 year validity', () => {
    for (const cert of [server, otherServer]) {
      expect(cert.checkHost('localhost')).toBe('localhost');
      for (const ip of ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4', '::1', '198.18.0.2', '198.18.1.2', '198.18.2.2', '198.18.3.2']) {
        expect(cert.checkIP(ip), ip).toBe(ip);
      }
    }
    const years = (Date.parse(server.validTo) - Date.parse(server.validFrom)) / (365.25 * 24 * 3600 * 1000);
    expect(years).toBeGreaterThan(9.9);
    expect(years).toBeLessThan(10.1);
    expect(Date.parse(server.validTo)).toBeGreaterThan(Date.now());
  });

  it('mutual TLS with client.pem works; other-server.pem is rejected by ca.pem', async () => {
    const serverOpts: tls.TlsOptions = {
      key: fixture('server.key'),
      cert: fixture('server.pem'),
      ca: fixture('ca.pem'),
      requestCert: true,
      rejectUnauthorized: true,
      ...TLS13,
    };
    await withServer(serverOpts, async (port) => {
      const r = await connect(port, {
        ca: fixture('ca.pem'),
        key: fixture('client.key'),
        cert: fixture('client.pem'),
        ...TLS13,
      });
      expect(r).toMatchObject({ ok: true, protocol: 'TLSv1.3', authorized: true, data: 'hello' });
      // Without a client certificate the server refuses (TLS 1.3: surfaces after the handshake).
      const anon = await connect(port, { ca: fixture('ca.pem'), ...TLS13 });
      expect(anon.ok && anon.data === 'hello').toBe(false);
    });
    await withServer({ key: fixture('other-server.key'), cert: fixture('other-server.pem'), ...TLS13 }, async (port) => {
      const bad = await connect(port, { ca: fixture('ca.pem'), ...TLS13 });
      expect(bad.ok).toBe(false);
      const good = await connect(port, { ca: fixture('other-ca.pem'), ...TLS13 });
      expect(good).toMatchObject({ ok: true, authorized: true });
    });
  });
});
