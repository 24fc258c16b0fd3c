/**
 * How `mptls get` turns a failure into curl's exit code and one line of
 * text: by the error's code and the phase of the transfer it happened in
 * (connecting = TCP, MP_CAPABLE and the TLS handshake; waiting for the
 * response; receiving the body).
 */
import { describeError, EXIT_CERT, EXIT_CONNECT, EXIT_EMPTY_REPLY, EXIT_ERROR, EXIT_INTERFACE, EXIT_PARTIAL, EXIT_PIN, EXIT_RECV, EXIT_RESOLVE, EXIT_TIMEOUT, EXIT_TLS } from './io.js';

/** A failure whose exit code is already decided (timeouts, redirects, write errors…). */
export class TransferError extends Error {
  constructor(
    readonly exit: number,
    message: string,
    /** Worth a --retry (curl's "transient" errors). */
    readonly transient = false,
  ) {
    super(message);
  }
}

export type Phase = 'resolve' | 'connect' | 'request' | 'body';

export interface Classified {
  exit: number;
  message: string;
  transient: boolean;
}

/** OpenSSL's and node:tls's certificate verification failures. */
const CERT = /^(CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|ERR_TLS_CERT_ALTNAME_INVALID$|HOSTNAME_MISMATCH$|INVALID_CA$|INVALID_PURPOSE$|PATH_LENGTH_EXCEEDED$)/;
const TLS = /^(ERR_SSL_|ERR_TLS_|ERR_MPTLS_TLS_BINDING$|ERR_MPTLS_HANDSHAKE_FAILED$|ERR_MPTLS_RENEGOTIATION$|EPROTO$)/;
const CONNECT = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN']);
const RESOLVE = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'EAI_NODATA']);

export function classify(e: unknown, phase: Phase): Classified {
  if (e instanceof TransferError) return { exit: e.exit, message: e.message, transient: e.transient };
  const err = e as NodeJS.ErrnoException & { syscall?: string };
  const code = typeof err?.code === 'string' ? err.code : '';
  const message = describeError(e);
  if (RESOLVE.has(code)) return { exit: EXIT_RESOLVE, message: `could not resolve the host: ${message}`, transient: true };
  if (code === 'EADDRNOTAVAIL' || err?.syscall === 'bind') return { exit: EXIT_INTERFACE, message: `cannot bind the local address: ${message}`, transient: false };
  if (CONNECT.has(code)) return { exit: EXIT_CONNECT, message: `failed to connect: ${message}`, transient: code === 'ECONNREFUSED' };
  if (code === 'ETIMEDOUT') return { exit: EXIT_TIMEOUT, message, transient: true };
  if (code === 'ERR_MPTLS_PIN_MISMATCH') return { exit: EXIT_PIN, message, transient: false };
  if (CERT.test(code)) return { exit: EXIT_CERT, message: `server certificate verification failed: ${message}`, transient: false };
  if (code === 'ERR_MPTLS_NO_MULTIPATH' || code === 'ERR_MPTLS_NO_KERNEL_MPTCP') return { exit: EXIT_ERROR, message, transient: false };
  const reset = code === 'ECONNRESET' || code === 'EPIPE';
  switch (phase) {
    case 'resolve':
      return { exit: EXIT_RESOLVE, message, transient: false };
    case 'connect':
      if (TLS.test(code) || reset) return { exit: EXIT_TLS, message: `TLS handshake failed: ${message}`, transient: reset };
      return { exit: EXIT_ERROR, message, transient: false };
    case 'request':
      if (reset && err.message === 'socket hang up') return { exit: EXIT_EMPTY_REPLY, message: `empty reply from server: ${message}`, transient: true };
      if (reset || TLS.test(code)) return { exit: EXIT_RECV, message, transient: true };
      return { exit: EXIT_ERROR, message, transient: false };
    case 'body':
      if (reset && err.message === 'aborted') return { exit: EXIT_PARTIAL, message: 'the connection closed before the end of the body', transient: true };
      if (reset || code === 'ERR_STREAM_PREMATURE_CLOSE' || code.startsWith('ERR_MPTLS_')) return { exit: EXIT_RECV, message: `failure receiving the body: ${message}`, transient: true };
      return { exit: EXIT_ERROR, message, transient: false };
  }
}
