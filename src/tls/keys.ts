/**
 * Keys from the TLS session (draft-paasch-mptcp-tls-authentication, RFC 5705).
 *
 * Both ends, after the TLS handshake:
 *   material = exportKeyingMaterial(16, EXPORTER_LABEL, tokenA ‖ tokenB)
 *   keyA = material[0..8)   (the initiator's, the TLS client's)
 *   keyB = material[8..16)  (the responder's, the TLS server's)
 * The label is not IANA-registered, so it starts with "EXPERIMENTAL"
 * (RFC 5705 §4). The context binds the keys to this MPTCP connection alone.
 */
import type tls from 'node:tls';
import { createHash } from 'node:crypto';

export const EXPORTER_LABEL = 'EXPERIMENTAL mptls mptcp keys';
export const EXPORTER_LENGTH = 16;

export interface MptcpKeys {
  keyA: Uint8Array;
  keyB: Uint8Array;
}

export function exporterContext(tokenA: number, tokenB: number): Buffer {
  const c = Buffer.alloc(8);
  c.writeUInt32BE(tokenA >>> 0, 0);
  c.writeUInt32BE(tokenB >>> 0, 4);
  return c;
}

/** keyA and keyB for the connection whose tokens are tokenA (client) and tokenB (server). */
export function exportMptcpKeys(socket: tls.TLSSocket, tokenA: number, tokenB: number): MptcpKeys {
  const m = socket.exportKeyingMaterial(EXPORTER_LENGTH, EXPORTER_LABEL, exporterContext(tokenA, tokenB));
  return { keyA: new Uint8Array(m.subarray(0, 8)), keyB: new Uint8Array(m.subarray(8, 16)) };
}

/** A short fingerprint of a key for logs and the demo: never the key itself. */
export function keyFingerprint(key: Uint8Array): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}
