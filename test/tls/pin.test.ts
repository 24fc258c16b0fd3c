/**
 * SPKI pinning: spkiSha256 against the openssl command line, and checkServerPin
 * through a real tls.createServer + tls.connect on 127.0.0.1 with the committed
 * fixtures (certs-fixtures/, made by scripts/make-certs.mjs).
 */
import { spawnSync } from 'node:child_process';
import { X509Certificate, createHash, createPublicKey } from 'node:crypto';
import * as tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import {
  ERR_MPTLS_PIN_MISMATCH,
  PinMismatchError,
  checkServerPin,
  normalizePin,
  spkiSha256,
} from '../../src/tls/pin.js';
import { fixtureText as fixture } from '../support/fixtures.mjs';
import { withTlsServer } from '../support/tls-server.js';


const serverPem = fixture('server.pem');
const serverKey = fixture('server.key');
const caPem = fixture('ca.pem');
const otherServerPem = fixture('other-server.pem');

const hasOpenssl = (() => {
  const r = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  return !r.error && r.status === 0;
})();

function run(args: string[], input: string | Buffer): Buffer {
  const r = spawnSync('openssl', args, { input });
  if (r.error || r.status !== 0) {
    throw new Error(`openssl ${args.join(' ')} failed: ${r.error?.message ?? r.stderr.toString()}`);
  }
  return r.stdout;
}

/** openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64 */
function opensslPin(certPem: string): string {
  const pubPem = run(['x509', '-pubkey', '-noout'], certPem);
  const der = run(['pkey', '-pubin', '-outform', 'der'], pubPem);
  const digest = run(['dgst', '-sha256', '-binary'], der);
  expect(digest.length).toBe(32);
  return digest.toString('base64');
}

/** Independent of @peculiar/x509: node's own SPKI export. */
function nodePin(certPem: string): string {
  const spki = createPublicKey(certPem).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

const derOf = (pem: string): Buffer => new X509Certificate(pem).raw;

describe('spkiSha256', () => {
  it('matches openssl for certs-fixtures/server.pem', (ctx) => {
    if (!hasOpenssl) {
      if (process.env.CI) throw new Error('openssl not on PATH (required when CI is set)');
      ctx.skip('openssl not on PATH');
    }
    expect(spkiSha256(serverPem)).toBe(opensslPin(serverPem));
    expect(spkiSha256(otherServerPem)).toBe(opensslPin(otherServerPem));
  });

  it('matches node:crypto SPKI export and differs between unrelated certs', () => {
    expect(spkiSha256(serverPem)).toBe(nodePin(serverPem));
    expect(spkiSha256(otherServerPem)).toBe(nodePin(otherServerPem));
    expect(spkiSha256(serverPem)).not.toBe(spkiSha256(otherServerPem));
    expect(Buffer.from(spkiSha256(serverPem), 'base64')).toHaveLength(32);
  });

  it('accepts PEM string, PEM bytes, DER bytes, pooled Buffer slices and {raw}', () => {
    const want = nodePin(serverPem);
    const der = derOf(serverPem);
    expect(spkiSha256(Buffer.from(serverPem, 'utf8'))).toBe(want);
    expect(spkiSha256(der)).toBe(want);
    expect(spkiSha256(new Uint8Array(der))).toBe(want);
    // A view into a larger buffer at a non-zero offset.
    const big = Buffer.alloc(der.length + 17, 0xaa);
    der.copy(big, 7);
    expect(spkiSha256(big.subarray(7, 7 + der.length))).toBe(want);
    expect(spkiSha256({ raw: der })).toBe(want);
    // Leaf first in a chain: the first certificate is used.
    expect(spkiSha256(serverPem + caPem)).toBe(want);
  });

  it('rejects garbage', () => {
    expect(() => spkiSha256('not a certificate')).toThrow();
    expect(() => spkiSha256({ raw: Buffer.alloc(0) })).toThrow(TypeError);
  });
});

describe('normalizePin', () => {
  const pin = nodePin(serverPem);
  it('accepts sha256// prefixed, bare, unpadded and base64url pins', () => {
    expect(normalizePin(pin)).toBe(pin);
    expect(normalizePin(`sha256//${pin}`)).toBe(pin);
    expect(normalizePin(`  SHA256//${pin}  `)).toBe(pin);
    expect(normalizePin(pin.replace(/=+$/, ''))).toBe(pin);
    expect(normalizePin(pin.replace(/\+/g, '-').replace(/\//g, '_'))).toBe(pin);
  });
  it('rejects malformed pins', () => {
    expect(() => normalizePin('')).toThrow(TypeError);
    expect(() => normalizePin('sha256//')).toThrow(TypeError);
    expect(() => normalizePin('sha256//!!!')).toThrow(TypeError);
    expect(() => normalizePin(Buffer.alloc(20).toString('base64'))).toThrow(/32/);
  });
  it('checkServerPin validates pins eagerly', () => {
    expect(() => checkServerPin([])).toThrow(TypeError);
    expect(() => checkServerPin('')).toThrow(TypeError);
    expect(() => checkServerPin(['bogus'])).toThrow(TypeError);
  });
});

// ---------------------------------------------------------------------------
// Real handshakes.

const withServer = <T>(fn: (port: number) => Promise<T>): Promise<T> => withTlsServer({ key: serverKey, cert: serverPem }, fn);

type Outcome = { ok: true; protocol: string | null } | { ok: false; error: Error & { code?: string } };

function connect(port: number, opts: tls.ConnectionOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: caPem, ...opts });
    socket.once('secureConnect', () => {
      const protocol = socket.getProtocol();
      socket.destroy();
      resolve({ ok: true, protocol });
    });
    socket.once('error', (error: Error & { code?: string }) => {
      socket.destroy();
      resolve({ ok: false, error });
    });
  });
}

describe('checkServerPin over a real TLS connection', () => {
  const rightPin = nodePin(serverPem);
  const wrongPin = nodePin(otherServerPem);

  it('accepts the right pin (prefixed, bare, or among several)', async () => {
    await withServer(async (port) => {
      for (const pins of [[`sha256//${rightPin}`], rightPin, `sha256//${wrongPin};sha256//${rightPin}`, [wrongPin, rightPin]]) {
        const r = await connect(port, { checkServerIdentity: checkServerPin(pins) });
        expect(r, JSON.stringify(pins)).toMatchObject({ ok: true });
      }
    });
  });

  it('rejects a wrong pin with ERR_MPTLS_PIN_MISMATCH', async () => {
    await withServer(async (port) => {
      const r = await connect(port, { checkServerIdentity: checkServerPin([`sha256//${wrongPin}`]) });
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.error).toBeInstanceOf(PinMismatchError);
      expect(r.error.code).toBe(ERR_MPTLS_PIN_MISMATCH);
      expect(r.error.code).toBe('ERR_MPTLS_PIN_MISMATCH');
      const e = r.error as PinMismatchError;
      expect(e.host).toBe('127.0.0.1');
      expect(e.actual).toBe(rightPin);
      expect(e.expected).toEqual([wrongPin]);
      expect(e.message).toContain(`sha256//${rightPin}`);
    });
  });

  it('still runs the hostname check first (right pin, wrong name)', async () => {
    await withServer(async (port) => {
      const r = await connect(port, {
        servername: 'not-in-the-cert.example',
        checkServerIdentity: checkServerPin(rightPin),
      });
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.error).not.toBeInstanceOf(PinMismatchError);
      expect(r.error.code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    });
  });

  it('unit: returns undefined / PinMismatchError for a PeerCertificate-like object', () => {
    const der = derOf(serverPem);
    // Minimal PeerCertificate shape accepted by tls.checkServerIdentity for an IP host.
    const peer = { raw: der, subject: { CN: 'localhost' }, subjectaltname: 'IP Address:127.0.0.1' } as unknown as tls.PeerCertificate;
    expect(checkServerPin(rightPin)('127.0.0.1', peer)).toBeUndefined();
    const err = checkServerPin(wrongPin)('127.0.0.1', peer);
    expect(err).toBeInstanceOf(PinMismatchError);
    const broken = { ...peer, raw: Buffer.from([0x30, 0x00]) } as unknown as tls.PeerCertificate;
    const err2 = checkServerPin(rightPin)('127.0.0.1', broken) as PinMismatchError;
    expect(err2).toBeInstanceOf(PinMismatchError);
    expect(err2.actual).toBeUndefined();
  });
});
