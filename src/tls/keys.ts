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
import { createHmac } from 'node:crypto';

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

/** Exporter label of the fingerprint key (not the MPTCP keys' label: a different secret). */
export const FINGERPRINT_LABEL = 'EXPERIMENTAL mptls key fingerprints';

/**
 * Short fingerprints of keyA and keyB for logs, the demo and `mptls get -v`,
 * equal on both ends: HMAC-SHA256 under a second exporter value of the same
 * TLS session (FINGERPRINT_LABEL, same context), first 64 bits, hex. Without
 * the TLS session they are unrelated to the keys: a fingerprint is no oracle
 * to test guesses of a key against (a plain hash of a 64-bit key would be).
 */
export function keyFingerprints(socket: tls.TLSSocket, tokenA: number, tokenB: number, keys: MptcpKeys): { keyA: string; keyB: string } {
  const k = socket.exportKeyingMaterial(32, FINGERPRINT_LABEL, exporterContext(tokenA, tokenB));
  const fp = (key: Uint8Array) => createHmac('sha256', k).update(key).digest('hex').slice(0, 16);
  return { keyA: fp(keys.keyA), keyB: fp(keys.keyB) };
}
