/**
 * Bearer tokens for the proxy (`Proxy-Authorization: Bearer TOKEN`, RFC
 * 6750's syntax on the proxy header): a fixed list, compared in constant
 * time (each candidate and each token hashed with SHA-256, every token
 * compared, no early exit), or the application's own function.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { coded } from '../errors.js';
import type { MptlsSocket } from '../session.js';

/** A token check of the application's: true lets the request through. */
export type TokenCheck = (token: string, socket: MptlsSocket) => boolean | Promise<boolean>;

/** RFC 6750 §2.1 b64token (token68). */
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Is `token` a syntactically valid bearer token (what a token file may hold)? */
export function isBearerToken(token: string): boolean {
  return TOKEN68.test(token);
}

/** The token of `Proxy-Authorization: Bearer TOKEN` (scheme case-insensitive), or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer +(\S+)$/i.exec(header);
  if (!m || !isBearerToken(m[1])) return undefined;
  return m[1];
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * The check for `tokens`: a list (non-empty, every entry a token68) compared
 * in constant time, or the function itself. Throws a `TypeError` (`code`
 * `ERR_MPTLS_INVALID_OPTION`) for an empty list or a malformed token.
 */
export function tokenCheck(tokens: readonly string[] | TokenCheck): TokenCheck {
  if (typeof tokens === 'function') return tokens;
  if (!Array.isArray(tokens) || tokens.length === 0) {
    throw coded(new TypeError('tokens must be a non-empty list of bearer tokens, or a function'), 'ERR_MPTLS_INVALID_OPTION');
  }
  for (const t of tokens) {
    if (typeof t !== 'string' || !isBearerToken(t)) throw coded(new TypeError('tokens: every token must be a bearer token (letters, digits, - . _ ~ + / and trailing =)'), 'ERR_MPTLS_INVALID_OPTION');
  }
  const digests = tokens.map(digest);
  return (token) => {
    const d = digest(token);
    let ok = 0;
    for (const t of digests) ok |= timingSafeEqual(d, t) ? 1 : 0;
    return ok === 1;
  };
}
