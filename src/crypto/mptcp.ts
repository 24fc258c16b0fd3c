/**
 * The MPTCP key schedule and HMACs (RFC 8684, HMAC-SHA256 only, i.e. the
 * H bit), plus the NEW_KEY HMAC of draft-baerts-tcpm-mptcpext-00 and the
 * mptls G-bit IDSN.
 *
 * Conventions: keys are byte strings in network order (8 bytes for RFC 8684
 * keys); 32-bit values (tokens, random nonces) are JS numbers taken as
 * unsigned and serialized big-endian; 64-bit values are bigint.
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { addressToBytes } from './address.js';

/** Length of an RFC 8684 key. */
export const MPTCP_KEY_LENGTH = 8;
/** Truncated HMAC in the MP_JOIN SYN/ACK (leftmost 64 bits). */
export const JOIN_SYNACK_HMAC_LENGTH = 8;
/** HMAC in the MP_JOIN third ACK (leftmost 160 bits). */
export const JOIN_ACK_HMAC_LENGTH = 20;
/** Truncated HMAC in ADD_ADDR (rightmost 64 bits). */
export const ADD_ADDR_HMAC_LENGTH = 8;
/** HMAC in NEW_KEY (low-order 64 bits). */
export const NEW_KEY_HMAC_LENGTH = 8;
/** The authenticated DATA_FIN's MAC (mptls, docs/PROTOCOL.md §3.1). */
export const DATA_FIN_HMAC_LENGTH = 8;
const DATA_FIN_LABEL = new TextEncoder().encode('mptls DATA_FIN');

const IDSN_LABEL = new TextEncoder().encode('mptls-idsn');

function checkKey(key: Uint8Array, what: string): void {
  if (!(key instanceof Uint8Array)) throw new TypeError(`${what} must be a Uint8Array`);
  if (key.length !== MPTCP_KEY_LENGTH) {
    throw new RangeError(`${what} must be ${MPTCP_KEY_LENGTH} bytes, got ${key.length}`);
  }
}

function checkU32(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new RangeError(`${what} must be an unsigned 32-bit integer, got ${n}`);
  }
}

function writeU32(out: Uint8Array, off: number, n: number): void {
  out[off] = (n >>> 24) & 0xff;
  out[off + 1] = (n >>> 16) & 0xff;
  out[off + 2] = (n >>> 8) & 0xff;
  out[off + 3] = n & 0xff;
}

function u32Pair(a: number, b: number): Uint8Array {
  const out = new Uint8Array(8);
  writeU32(out, 0, a);
  writeU32(out, 4, b);
  return out;
}

function readU32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}

function readU64(b: Uint8Array, off: number): bigint {
  return (BigInt(readU32(b, off)) << 32n) | BigInt(readU32(b, off + 4));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/**
 * The token: the most significant 32 bits of SHA-256(key), unsigned
 * (RFC 8684 §3.1).
 */
export function tokenFromKey(key: Uint8Array): number {
  checkKey(key, 'key');
  return readU32(sha256(key), 0);
}

/**
 * The initial data sequence number: the least significant 64 bits of
 * SHA-256(key) (RFC 8684 §3.1). The first data byte has DSN = IDSN + 1.
 */
export function idsnFromKey(key: Uint8Array): bigint {
  checkKey(key, 'key');
  return readU64(sha256(key), 24);
}

/**
 * HMAC-SHA256 keyed by key1‖key2 (RFC 8684 §3.2: "Key=(Key-A + Key-B)"),
 * the full 32 bytes. Key lengths are not checked here, so the same function
 * serves an external key passed as key1 with an empty key2.
 */
export function mptcpHmac(key1: Uint8Array, key2: Uint8Array, msg: Uint8Array): Uint8Array {
  return hmac(sha256, concat(key1, key2), msg);
}

/**
 * MP_JOIN SYN/ACK truncated HMAC (RFC 8684 §3.2): the leftmost 64 bits of
 * HMAC(Key=(Key-B‖Key-A), Msg=(R-B‖R-A)), computed and sent by B, the host
 * that received the MP_JOIN SYN. A is the host that sent the SYN.
 */
export function joinSynAckHmac(keyB: Uint8Array, keyA: Uint8Array, randB: number, randA: number): Uint8Array {
  checkU32(randB, 'randB');
  checkU32(randA, 'randA');
  return mptcpHmac(keyB, keyA, u32Pair(randB, randA)).slice(0, JOIN_SYNACK_HMAC_LENGTH);
}

/**
 * MP_JOIN third-ACK HMAC (RFC 8684 §3.2): the leftmost 160 bits of
 * HMAC(Key=(Key-A‖Key-B), Msg=(R-A‖R-B)), computed and sent by A, the host
 * that sent the MP_JOIN SYN.
 */
export function joinAckHmac(keyA: Uint8Array, keyB: Uint8Array, randA: number, randB: number): Uint8Array {
  checkU32(randA, 'randA');
  checkU32(randB, 'randB');
  return mptcpHmac(keyA, keyB, u32Pair(randA, randB)).slice(0, JOIN_ACK_HMAC_LENGTH);
}

/**
 * The message the ADD_ADDR HMAC covers (RFC 8684 §3.4.1): Address ID
 * (1 byte) ‖ address (4 or 16 bytes, network order) ‖ port (2 bytes,
 * big-endian; two zero bytes when the option carries no port).
 */
export function addAddrHmacMessage(addressId: number, address: string | Uint8Array, port?: number): Uint8Array {
  if (!Number.isInteger(addressId) || addressId < 0 || addressId > 255) {
    throw new RangeError(`addressId must be 0..255, got ${addressId}`);
  }
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 0xffff)) {
    throw new RangeError(`port must be 0..65535, got ${port}`);
  }
  const addr = typeof address === 'string' ? addressToBytes(address) : address;
  if (addr.length !== 4 && addr.length !== 16) {
    throw new RangeError(`address must be 4 or 16 bytes, got ${addr.length}`);
  }
  const msg = new Uint8Array(1 + addr.length + 2);
  msg[0] = addressId;
  msg.set(addr, 1);
  const p = port ?? 0;
  msg[1 + addr.length] = p >> 8;
  msg[2 + addr.length] = p & 0xff;
  return msg;
}

/**
 * ADD_ADDR truncated HMAC (RFC 8684 §3.4.1): the rightmost 64 bits of
 * HMAC(Key=(sender's key‖receiver's key), Msg=addressId‖address‖port),
 * the port being two zero bytes when absent. "Sender" is the host that
 * sends the ADD_ADDR (the Linux kernel computes it with
 * (local_key, remote_key) and verifies with (remote_key, local_key); the
 * kernel-capture test checks this on the wire).
 */
export function addAddrHmac(
  senderKey: Uint8Array,
  receiverKey: Uint8Array,
  addressId: number,
  address: string | Uint8Array,
  port?: number,
): Uint8Array {
  const full = mptcpHmac(senderKey, receiverKey, addAddrHmacMessage(addressId, address, port));
  return full.slice(full.length - ADD_ADDR_HMAC_LENGTH);
}

/**
 * NEW_KEY HMAC, exactly as draft-baerts-tcpm-mptcpext-00 §4.2 ("Changing the
 * external key") defines it: "the low order 64 bits of a HMAC of the external
 * key computed using the negotiated hash algorithm. The key for this HMAC, in
 * the case of a message transmitted by Host A, is Token-A followed by
 * Token-B [...]. The 'message' for the HMAC algorithm in each case is the
 * external key."
 *
 * So: rightmost 8 bytes of HMAC-SHA256(Key = senderToken‖receiverToken
 * (u32 big-endian each), Msg = externalKey). The draft's sentence for Host B
 * says "Key-B followed by Key-A", which can only mean the tokens (a G-bit
 * connection has no RFC 8684 keys; its §4.3 MP_FASTCLOSE text says
 * "Token-B followed by Token-A"), so both directions use
 * (own token, peer token). The order makes the HMAC side-specific: an
 * option reflected back to its sender does not verify. The K bit (key id)
 * is not covered by the HMAC in the draft; it selects which stored key the
 * receiver checks the HMAC against.
 */
export function newKeyHmac(senderToken: number, receiverToken: number, externalKey: Uint8Array): Uint8Array {
  checkU32(senderToken, 'senderToken');
  checkU32(receiverToken, 'receiverToken');
  const full = hmac(sha256, u32Pair(senderToken, receiverToken), externalKey);
  return full.slice(full.length - NEW_KEY_HMAC_LENGTH);
}

/** The sender of a data stream: the connection's initiator (client) or responder (server). */
export type IdsnSender = 'initiator' | 'responder';

/**
 * IDSN for the G-bit mode (mptls definition, wire version 3; there are no
 * keys at handshake time, and the client's first data rides with its
 * MP_CAPABLE SYN, before it knows the server's token): the least significant
 * 64 bits of SHA-256("mptls-idsn" (ASCII, 10 bytes) ‖ role (1 byte)), role
 * 0x01 for the initiator's data and 0x02 for the responder's (the preamble's
 * role byte). Two constants: a G-mode IDSN protects nothing (the tokens it
 * used to be derived from are on the wire too); TCP and TLS protect the bytes.
 */
export function idsnExternal(sender: IdsnSender): bigint {
  if (sender !== 'initiator' && sender !== 'responder') throw new RangeError(`sender must be 'initiator' or 'responder', got ${String(sender)}`);
  return (IDSN_EXTERNAL[sender] ??= readU64(sha256(concat(IDSN_LABEL, Uint8Array.of(sender === 'initiator' ? 1 : 2))), 24));
}
const IDSN_EXTERNAL: Partial<Record<IdsnSender, bigint>> = {};

/**
 * The end of a data stream, authenticated (mptls; no MPTCP stack does this):
 * the leftmost 64 bits of HMAC-SHA256(Key = senderKey ‖ receiverKey,
 * Msg = "mptls DATA_FIN" (ASCII, 14 bytes) ‖ DSN (u64 big-endian)), where DSN
 * is the 64-bit data sequence number the DATA_FIN occupies. The 22-byte
 * message cannot collide with an MP_JOIN (8 bytes) or ADD_ADDR (7/9/19/21
 * bytes) message under the same keys, so no other HMAC is a DATA_FIN MAC.
 */
export function dataFinHmac(senderKey: Uint8Array, receiverKey: Uint8Array, dsn: bigint): Uint8Array {
  if (dsn < 0n || dsn > 0xffffffffffffffffn) throw new RangeError('dsn must be a u64');
  const msg = new Uint8Array(DATA_FIN_LABEL.length + 8);
  msg.set(DATA_FIN_LABEL, 0);
  new DataView(msg.buffer).setBigUint64(DATA_FIN_LABEL.length, dsn);
  return mptcpHmac(senderKey, receiverKey, msg).slice(0, DATA_FIN_HMAC_LENGTH);
}
