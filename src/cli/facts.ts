/**
 * The multipath facts of one connection, as `serve --status` shows them and
 * `get -v` prints them: mode, tokens (hex), key fingerprints, TLS, subflows.
 * Never key material.
 */
import type { MptcpSocketInfo, MptlsSocket } from '../api/index.js';
import { hex32 } from './format.js';

export interface ConnectionFacts {
  mode: string;
  fallbackReason?: string;
  tokens?: { local: string; remote: string };
  keyFingerprints?: { keyA: string; keyB: string };
  keysConfirmed: boolean;
  tls: { protocol: string | null; cipher: string | undefined };
  subflows: ReturnType<MptcpSocketInfo['subflows']>;
}

export function connectionFacts(socket: MptlsSocket): ConnectionFacts {
  const m = socket.mptcp as MptcpSocketInfo | undefined;
  const tokens = m?.tokens;
  return {
    mode: m?.mode ?? 'unknown',
    fallbackReason: m?.fallbackReason,
    // After a fallback the core still holds the local token it drew: not a fact about this connection.
    tokens: tokens && m?.mode !== 'fallback' ? { local: hex32(tokens.local), remote: hex32(tokens.remote) } : undefined,
    keyFingerprints: m?.keyFingerprints,
    keysConfirmed: m?.keysConfirmed ?? false,
    tls: { protocol: socket.getProtocol?.() ?? null, cipher: socket.getCipher?.()?.name },
    subflows: m?.subflows() ?? [],
  };
}
