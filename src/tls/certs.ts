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

/** A CA: its keys and its self-signed certificate. */
export interface CertificateAuthority {
  keys: KeyPair;
  cert: x509.X509Certificate;
}

/** A fresh CA (EC P-256, ECDSA-SHA256), valid from an hour ago for `days`. */
export async function createCa(commonName: string, opts: { organization?: string; days?: number } = {}): Promise<CertificateAuthority> {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${escapeRdnValue(commonName)}, O=${escapeRdnValue(opts.organization ?? 'mptls')}`,
    keys,
    signingAlgorithm: EC_SIGN,
    ...validity(opts.days ?? 3650),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { keys, cert };
}

/** A server or client certificate signed by `ca`, with the given subjectAltNames. */
export async function issueCertificate(
  ca: CertificateAuthority,
  opts: { commonName: string; altNames?: readonly string[]; usage?: 'server' | 'client'; organization?: string; days?: number },
): Promise<{ keys: KeyPair; cert: x509.X509Certificate }> {
  const keys = await newKeys();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([opts.usage === 'client' ? x509.ExtendedKeyUsage.clientAuth : x509.ExtendedKeyUsage.serverAuth], false),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
  ];
  if (opts.altNames && opts.altNames.length > 0) extensions.push(sanExtension(opts.altNames));
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${escapeRdnValue(opts.commonName)}, O=${escapeRdnValue(opts.organization ?? 'mptls')}`,
    issuer: ca.cert.subjectName,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: EC_SIGN,
    ...validity(opts.days ?? 3650),
    extensions,
  });
  return { keys, cert };
}

/** PKCS#8 PEM of a private key. */
export async function privateKeyPem(privateKey: webcrypto.CryptoKey): Promise<string> {
  return keyPem(privateKey);
}

/** PEM of a certificate. */
export function certificatePem(cert: x509.X509Certificate): string {
  return cert.toString('pem') + '\n';
}

/**
 * Generate a fresh CA and a server certificate (EC P-256, ECDSA-SHA256) signed
 * by it. Returns PEM strings: `{ key, cert }` for `tls.createServer`, `ca` for
 * the client's `ca` option.
 */
export async function generateSelfSigned(opts: GenerateSelfSignedOptions = {}): Promise<SelfSignedCredentials> {
  const commonName = opts.commonName ?? 'localhost';
  const days = opts.validityDays ?? 3650;
  if (!(days > 0)) throw new RangeError(`validityDays must be > 0, got ${days}`);
  const altNames = [...(opts.altNames ?? DEFAULT_ALT_NAMES)];
  if (commonName !== '' && isIP(commonName) === 0 && !altNames.includes(commonName)) altNames.unshift(commonName);
  if (altNames.length === 0) throw new RangeError('generateSelfSigned: no subjectAltName entries');
  const ca = await createCa('mptls ephemeral CA', { days });
  const server = await issueCertificate(ca, { commonName: commonName || 'localhost', altNames, usage: 'server', days });
  return { key: await keyPem(server.keys.privateKey), cert: certificatePem(server.cert), ca: certificatePem(ca.cert) };
}
