/**
 * mptls crypto: the RFC 8684 key schedule and HMACs, NEW_KEY
 * (draft-baerts-tcpm-mptcpext-00), the G-bit IDSN, constant-time compare and
 * randomness. Platform-neutral: @noble/hashes and Web Crypto only.
 */
export {
  MPTCP_KEY_LENGTH,
  JOIN_SYNACK_HMAC_LENGTH,
  JOIN_ACK_HMAC_LENGTH,
  ADD_ADDR_HMAC_LENGTH,
  NEW_KEY_HMAC_LENGTH,
  DATA_FIN_HMAC_LENGTH,
  tokenFromKey,
  idsnFromKey,
  mptcpHmac,
  joinSynAckHmac,
  joinAckHmac,
  addAddrHmacMessage,
  addAddrHmac,
  newKeyHmac,
  dataFinHmac,
  idsnExternal,
} from './mptcp.js';
export { timingSafeEqual } from './equal.js';
export { addressToBytes, bytesToAddress, ipVersion } from './address.js';
export { randomBytes, randomUint32, randomKey } from './random.js';
