/**
 * On-the-fly test/demo PKI: a throw-away CA plus a server certificate signed by
 * it, as PEM strings. Same construction as `scripts/make-certs.mjs` (which
 * produces the committed `certs-fixtures/`); duplicated here because src/ must
 * not depend on scripts/.
 *
 * Not for production: the CA private key is discarded, so the only thing the
 * returned `ca` can ever vouch for is the returned `cert`.
 */
// @peculiar/x509 v2 (via tsyringe) requires a Reflect metadata polyfill to be
// loaded before it is evaluated. ESM evaluates imports in order.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';
import { isIP } from 'node:net';

const subtle = webcrypto.subtle;

x509.cryptoProvider.set(webcrypto);

const EC_KEYGEN = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const EC_SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** Default subjectAltNames: localhost, the loopbacks used by tests, and the netns test hosts. */
export const DEFAULT_ALT_NAMES: readonly string[] = Object.freeze([
  'localhost',
  '127.0.0.1',
  '127.0.0.2',
  '127.0.0.3',
  '127.0.0.4',
  '::1',
  '198.18.0.2',
  '198.18.1.2',
  '198.18.2.2',
  '198.18.3.2',
]);

export interface GenerateSelfSignedOptions {
  /** Subject CN of the server certificate. Default `"localhost"`. */
  commonName?: string;
  /**
   * subjectAltName entries; IPv4/IPv6 literals become `IP:` entries, anything
   * else `DNS:`. Default {@link DEFAULT_ALT_NAMES}. The commonName is added as
   * a DNS entry if it is a hostname not already listed (clients ignore the CN).
   */
  altNames?: string[];
  /** Validity in days from now (minus one hour of clock-skew slack). Default 3650. */
  validityDays?: number;
}

export interface SelfSignedCredentials {
  /** Server private key, PKCS#8 PEM. */
  key: string;
  /** Server certificate, PEM (signed by `ca`). */
  cert: string;
  /** CA certificate, PEM — what clients pass as `ca` to trust `cert`. */
  ca: string;
}

type KeyPair = { publicKey: webcrypto.CryptoKey; privateKey: webcrypto.CryptoKey };

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const notBefore = new Date(Date.now() - 60 * 60 * 1000);
  const notAfter = new Date(notBefore.getTime() + days * 24 * 60 * 60 * 1000);
  return { notBefore, notAfter };
}

async function newKeys(): Promise<KeyPair> {
  return (await subtle.generateKey(EC_KEYGEN, true, ['sign', 'verify'])) as KeyPair;
}

async function keyPem(privateKey: webcrypto.CryptoKey): Promise<string> {
  const pkcs8 = await subtle.exportKey('pkcs8', privateKey);
  return x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') + '\n';
}

function sanExtension(names: readonly string[]): x509.SubjectAlternativeNameExtension {
  return new x509.SubjectAlternativeNameExtension(
    names.map((value) => ({ type: isIP(value) ? ('ip' as const) : ('dns' as const), value })),
    false,
  );
}

function escapeRdnValue(v: string): string {
  // RFC 4514 escaping for the characters that matter in a CN.
  return v.replace(/[\\,+"<>;=]/g, (c) => `\\${c}`).replace(/^[ #]|[ ]$/g, (c) => `\\${c}`);
}

/**
 * Generate a fresh CA and a server certificate (EC P-256, ECDSA-SHA256) signed
 * by it. Returns PEM strings: `{ key, cert }` for `tls.createServer`, `ca` for
 * the client's `ca` option.
 */
export async function generateSelfSigned(
  opts: GenerateSelfSignedOptions = {},
): Promise<SelfSignedCredentials> {
  const commonName = opts.commonName ?? 'localhost';
  const days = opts.validityDays ?? 3650;
  if (!(days > 0)) throw new RangeError(`validityDays must be > 0, got ${days}`);
  const altNames = [...(opts.altNames ?? DEFAULT_ALT_NAMES)];
  if (commonName !== '' && isIP(commonName) === 0 && !altNames.includes(commonName)) {
    altNames.unshift(commonName);
  }
  if (altNames.length === 0) throw new RangeError('generateSelfSigned: no subjectAltName entries');

  const { notBefore, notAfter } = validity(days);

  const caKeys = await newKeys();
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=mptls ephemeral CA, O=mptls',
    keys: caKeys,
    signingAlgorithm: EC_SIGN,
    notBefore,
    notAfter,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const serverKeys = await newKeys();
  const serverCert = await x509.X509CertificateGenerator.create({
    subject: `CN=${escapeRdnValue(commonName || 'localhost')}, O=mptls`,
    issuer: caCert.subjectName,
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: EC_SIGN,
    notBefore,
    notAfter,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      await x509.SubjectKeyIdentifierExtension.create(serverKeys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
      sanExtension(altNames),
    ],
  });

  return {
    key: await keyPem(serverKeys.privateKey),
    cert: serverCert.toString('pem') + '\n',
    ca: caCert.toString('pem') + '\n',
  };
}
