/**
 * SPKI pinning: `sha256//BASE64` of the DER SubjectPublicKeyInfo, the format of
 * HPKP (RFC 7469) and `curl --pinnedpubkey`. Equivalent to
 *
 *   openssl x509 -pubkey -noout | openssl pkey -pubin -outform der \
 *     | openssl dgst -sha256 -binary | base64
 *
 * Pinning is an *additional* check on top of normal chain + hostname
 * validation: {@link checkServerPin} runs `tls.checkServerIdentity` first.
 * Note that Node only calls `checkServerIdentity` when chain verification
 * succeeded and the session was not resumed, so a pin does NOT make
 * `rejectUnauthorized: false` safe — keep chain validation on (pass `ca`).
 */
// @peculiar/x509 v2 (via tsyringe) requires a Reflect metadata polyfill to be
// loaded before it is evaluated. ESM evaluates imports in order.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createHash } from 'node:crypto';
import * as tls from 'node:tls';

/** `code` of {@link PinMismatchError}. */
export const ERR_MPTLS_PIN_MISMATCH = 'ERR_MPTLS_PIN_MISMATCH';

const PIN_PREFIX = /^sha256\/\//i;

/** The peer's SPKI hash did not match any configured pin. */
export class PinMismatchError extends Error {
  readonly code = ERR_MPTLS_PIN_MISMATCH;
  /** Host name the connection was made to. */
  readonly host: string;
  /** SPKI SHA-256 (bare base64) of the presented certificate, if it could be computed. */
  readonly actual: string | undefined;
  /** Accepted pins (bare base64). */
  readonly expected: readonly string[];

  constructor(host: string, actual: string | undefined, expected: readonly string[], options?: { cause?: unknown }) {
    const got = actual === undefined ? 'an unparseable certificate' : `sha256//${actual}`;
    super(
      `SPKI pin mismatch for ${host}: server presented ${got}, expected ${
        expected.length === 1 ? '' : 'one of '
      }${expected.map((p) => `sha256//${p}`).join(', ')}`,
      options,
    );
    this.name = 'PinMismatchError';
    this.host = host;
    this.actual = actual;
    this.expected = expected;
  }
}

function toDer(cert: string | Uint8Array | { raw: Buffer }): string | Uint8Array {
  if (typeof cert === 'string' || cert instanceof Uint8Array) return cert;
  if (cert !== null && typeof cert === 'object' && cert.raw instanceof Uint8Array && cert.raw.length > 0) {
    return cert.raw;
  }
  throw new TypeError('spkiSha256: expected a PEM/DER certificate or an object with a non-empty `raw` DER buffer');
}

/**
 * Base64 SHA-256 of the certificate's DER SubjectPublicKeyInfo (no `sha256//`
 * prefix). Accepts PEM text (string or bytes; the first certificate of a chain
 * is used), DER bytes, or a `tls.PeerCertificate` / anything with `.raw` DER.
 */
export function spkiSha256(cert: string | Uint8Array | { raw: Buffer }): string {
  const parsed = new x509.X509Certificate(toDer(cert));
  return createHash('sha256').update(new Uint8Array(parsed.publicKey.rawData)).digest('base64');
}

/**
 * Canonicalise a pin: strips an optional `sha256//` prefix and whitespace,
 * accepts base64 or base64url with or without padding, and returns standard
 * padded base64 of the 32-byte digest. Throws TypeError on anything else.
 */
export function normalizePin(pin: string): string {
  const body = pin.trim().replace(PIN_PREFIX, '').trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(body)) {
    throw new TypeError(`invalid SPKI pin ${JSON.stringify(pin)}: expected sha256//BASE64 or bare base64`);
  }
  const bytes = Buffer.from(body.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (bytes.length !== 32) {
    throw new TypeError(`invalid SPKI pin ${JSON.stringify(pin)}: decodes to ${bytes.length} bytes, expected 32 (SHA-256)`);
  }
  return bytes.toString('base64');
}

/**
 * Build a `checkServerIdentity` for `tls.connect` that performs Node's normal
 * hostname check and then requires the leaf certificate's SPKI SHA-256 to be
 * one of `pins`. `pins` entries may be `sha256//BASE64` or bare base64; a single
 * string may hold several pins separated by `;` (curl syntax). Invalid pins
 * throw TypeError here, not at connect time.
 *
 * Returns the hostname error unchanged if that check fails, a
 * {@link PinMismatchError} (`code === 'ERR_MPTLS_PIN_MISMATCH'`) if the pin
 * check fails, and `undefined` on success.
 */
export function checkServerPin(
  pins: string[] | string,
): (host: string, cert: tls.PeerCertificate) => Error | undefined {
  const list = (typeof pins === 'string' ? pins.split(';') : pins)
    .map((p) => p.trim())
    .filter((p) => p !== '');
  if (list.length === 0) throw new TypeError('checkServerPin: at least one pin is required');
  const expected = Object.freeze([...new Set(list.map(normalizePin))]);
  const accepted = new Set(expected);

  return (host: string, cert: tls.PeerCertificate): Error | undefined => {
    const identityError = tls.checkServerIdentity(host, cert);
    if (identityError) return identityError;
    let actual: string;
    try {
      actual = spkiSha256(cert);
    } catch (cause) {
      return new PinMismatchError(host, undefined, expected, { cause });
    }
    return accepted.has(actual) ? undefined : new PinMismatchError(host, actual, expected);
  };
}
