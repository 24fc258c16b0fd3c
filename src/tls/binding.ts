/**
 * What makes a TLS session fit to carry MPTCP keys (docs/SECURITY.md, "The
 * TLS session the keys come from").
 *
 * The keys are RFC 5705 exporter values, so they are a unique binding to this
 * connection only when the session's master secret is unique to it:
 *  - TLS 1.3 always;
 *  - TLS 1.2 only with the extended master secret (RFC 7627) and an (EC)DHE
 *    key exchange. Without EMS an attacker can make two sessions share one
 *    master secret (the triple handshake, RFC 7627 §1), and therefore share
 *    exporter values (RFC 5705 §3 assumes a unique master secret); static RSA
 *    lets a malicious server replay the client's premaster secret to a third
 *    party the same way.
 * And the keys belong to the first handshake: a renegotiation (TLS 1.2) would
 * change the session under keys already installed, so it is refused on
 * multipath connections (the connection is closed, counted
 * TlsRenegotiationRefused). No event of the peer's can make these checks
 * throw out of an event handler.
 */
import type tls from 'node:tls';

/** A TLS-level refusal of mptls, with a code users can match. */
export class MptlsTlsError extends Error {
  override readonly name = 'MptlsTlsError';
  constructor(
    readonly code: 'ERR_MPTLS_TLS_BINDING' | 'ERR_MPTLS_RENEGOTIATION' | 'ERR_MPTLS_HANDSHAKE_FAILED',
    message: string,
  ) {
    super(message);
  }
}

/** SSL_SESSION flag SSL_SESS_FLAG_EXTMS (OpenSSL ssl_local.h). */
const SESS_FLAG_EXTMS = 1n;

/**
 * The `flags` field ([13] EXPLICIT UINT64, omitted when 0) of OpenSSL's
 * DER-encoded SSL_SESSION (ssl/ssl_asn1.c), as `getSession()` returns it.
 * Returns undefined when the encoding is not what it should be.
 */
export function sessionFlags(der: Uint8Array): bigint | undefined {
  let i = 0;
  const header = (): [number, number] | undefined => {
    if (i + 2 > der.length) return undefined;
    const tag = der[i++];
    let len = der[i++];
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n === 0 || n > 4 || i + n > der.length) return undefined;
      len = 0;
      for (let k = 0; k < n; k++) len = len * 256 + der[i++];
    }
    if (i + len > der.length) return undefined;
    return [tag, len];
  };
  const seq = header();
  if (!seq || seq[0] !== 0x30) return undefined;
  const end = i + seq[1];
  while (i < end) {
    const h = header();
    if (!h) return undefined;
    const [tag, len] = h;
    const start = i;
    if (tag === 0xad) {
      const inner = header();
      if (!inner || inner[0] !== 0x02 || inner[1] > 9) return undefined;
      let v = 0n;
      for (let k = 0; k < inner[1]; k++) v = (v << 8n) | BigInt(der[i + k]);
      return v;
    }
    i = start + len;
  }
  return 0n;
}

export interface BindingCheckOptions {
  /**
   * Accept TLS 1.2 sessions without the extended master secret or with a
   * static-RSA key exchange anyway (default false). Only for peers that
   * cannot do better and a threat model that does not include a malicious
   * peer relaying the session (RFC 7627).
   */
  allowWeakTls12?: boolean;
}

/**
 * Why this established TLS session must not carry MPTCP keys, or undefined
 * when it may.
 */
export function weakBindingReason(socket: tls.TLSSocket, options: BindingCheckOptions = {}): string | undefined {
  if (options.allowWeakTls12) return undefined;
  const protocol = socket.getProtocol();
  if (protocol === 'TLSv1.3') return undefined;
  if (protocol !== 'TLSv1.2') return `${protocol ?? 'an unknown TLS version'} cannot carry MPTCP keys (TLS 1.3 or TLS 1.2 required)`;
  const cipher = socket.getCipher()?.name ?? '';
  if (!/^(ECDHE|DHE)-/.test(cipher)) return `TLS 1.2 cipher ${cipher || '(none)'} has no (EC)DHE key exchange`;
  const session = socket.getSession();
  const flags = session ? sessionFlags(session) : undefined;
  if (flags === undefined) return 'TLS 1.2 session without a readable extended-master-secret flag';
  if ((flags & SESS_FLAG_EXTMS) === 0n) return 'TLS 1.2 session without the extended master secret (RFC 7627)';
  return undefined;
}

interface HandleWithHandshakeStart {
  onhandshakestart?: (...args: unknown[]) => unknown;
}

/**
 * Refuse renegotiation on this socket, either side: the second TLS 1.2
 * handshake start is not passed to node:tls; `onRefused` runs once (it
 * should close the connection; it is called from a microtask-free deferred
 * callback, never inside OpenSSL's own callback). `renegotiate()` answers
 * with an ERR_MPTLS_RENEGOTIATION error instead of starting one.
 */
export function refuseRenegotiation(socket: tls.TLSSocket, onRefused: () => void): void {
  const handle = (socket as unknown as { _handle?: HandleWithHandshakeStart | null })._handle;
  if (handle && typeof handle.onhandshakestart === 'function') {
    const original = handle.onhandshakestart;
    // A handshake that starts after the first one finished is a renegotiation
    // (TLS 1.3 has none; OpenSSL does not report its post-handshake messages).
    let first = false;
    let refused = false;
    socket.once('secure', () => (first = true));
    handle.onhandshakestart = function (this: unknown, ...args: unknown[]) {
      if (first && socket.getProtocol() !== 'TLSv1.3') {
        if (!refused) {
          refused = true;
          // Not from inside OpenSSL's info callback: the SSL object is in use.
          setImmediate(onRefused);
        }
        return undefined;
      }
      return original.apply(this, args);
    };
  }
  (socket as unknown as { renegotiate: tls.TLSSocket['renegotiate'] }).renegotiate = (_options, callback) => {
    const err = new MptlsTlsError('ERR_MPTLS_RENEGOTIATION', 'renegotiation is refused on multipath connections: the MPTCP keys are bound to the first handshake');
    process.nextTick(() => callback(err));
    return false;
  };
}
