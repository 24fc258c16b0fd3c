/**
 * MPTCP option shapes (RFC 8684 §3, the G-bit form of
 * draft-paasch-mptcp-application-authentication, and NEW_KEY of
 * draft-baerts-tcpm-mptcpext). Every option is TCP option kind 30.
 *
 * Integers that fit 32 bits are `number`; 64-bit sequence numbers are
 * `bigint`; keys, HMACs and truncated HMACs are `Uint8Array` in network
 * byte order.
 */

/** TCP option kind of every MPTCP option (RFC 8684 §3). */
export const MPTCP_OPTION_KIND = 30;

/** Option subtypes, as carried in the high nibble of the third byte. */
export const Subtype = {
  MP_CAPABLE: 0x0,
  MP_JOIN: 0x1,
  DSS: 0x2,
  ADD_ADDR: 0x3,
  REMOVE_ADDR: 0x4,
  MP_PRIO: 0x5,
  MP_FAIL: 0x6,
  MP_FASTCLOSE: 0x7,
  MP_TCPRST: 0x8,
  NEW_KEY: 0x9,
} as const;

/** MP_CAPABLE flag bits (the "A..H" byte; A is the most significant bit). */
export const CapableFlag = {
  /** A: checksum required. */
  A_CHECKSUM: 0x80,
  /** B: extensibility, must be 0 in v1. */
  B_EXTENSIBILITY: 0x40,
  /** C: do not establish new subflows to the source address. */
  C_NO_SOURCE_JOIN: 0x20,
  /** G: keys come from the application; the option carries explicit tokens (the seed's G bit). */
  G_EXTERNAL_KEYS: 0x02,
  /** H: HMAC-SHA256. */
  H_HMAC_SHA256: 0x01,
} as const;

/** MP_TCPRST reason codes (RFC 8684 §3.6). */
export const TcpRstReason = {
  UNSPECIFIED: 0x00,
  MPTCP_SPECIFIC: 0x01,
  LACK_OF_RESOURCES: 0x02,
  ADMIN_PROHIBITED: 0x03,
  TOO_MUCH_OUTSTANDING: 0x04,
  UNACCEPTABLE_PERFORMANCE: 0x05,
  MIDDLEBOX_INTERFERENCE: 0x06,
} as const;

/** MP_TCPRST flag bits (U V W T, T being the least significant). */
export const TcpRstFlag = { TRANSIENT: 0x1 } as const;

export interface MpCapableOption {
  subtype: 'MP_CAPABLE';
  /** 0..15; mptls speaks version 1. */
  version: number;
  /** The raw A..H flag byte. */
  flags: number;
  /** RFC 8684 form: 8 bytes each. */
  senderKey?: Uint8Array;
  receiverKey?: Uint8Array;
  /** G-bit form (flags & 0x02): explicit 32-bit tokens instead of keys. */
  senderToken?: number;
  receiverToken?: number;
  /** 16-bit data-level length (MP_CAPABLE carrying the first data). */
  dataLevelLength?: number;
  /** 16-bit DSS checksum, when negotiated. */
  checksum?: number;
}

export interface MpJoinSynOption {
  subtype: 'MP_JOIN';
  stage: 'syn';
  backup: boolean;
  addressId: number;
  receiverToken: number;
  senderRandom: number;
}

export interface MpJoinSynAckOption {
  subtype: 'MP_JOIN';
  stage: 'synack';
  backup: boolean;
  addressId: number;
  /** Leftmost 64 bits of HMAC-B. */
  truncatedHmac: Uint8Array;
  senderRandom: number;
}

export interface MpJoinAckOption {
  subtype: 'MP_JOIN';
  stage: 'ack';
  /** Leftmost 160 bits of HMAC-A. */
  hmac: Uint8Array;
}

export type MpJoinOption = MpJoinSynOption | MpJoinSynAckOption | MpJoinAckOption;

export interface DssOption {
  subtype: 'DSS';
  dataFin: boolean;
  /** Present when the A flag is set. */
  dataAck?: bigint;
  /** a flag: data ACK is 8 octets (default false: 4 octets). */
  dataAckIs64?: boolean;
  /** Present (with ssn and dataLevelLength) when the M flag is set. */
  dsn?: bigint;
  /** m flag: DSN is 8 octets (default false: 4 octets). */
  dsnIs64?: boolean;
  /** Relative subflow sequence number (32 bits). */
  ssn?: number;
  /** 16-bit data-level length. */
  dataLevelLength?: number;
  /** 16-bit checksum, present only when checksums are in use. */
  checksum?: number;
}

export interface AddAddrOption {
  subtype: 'ADD_ADDR';
  /** E flag: this is the echo of a received ADD_ADDR (no HMAC). */
  echo: boolean;
  addressId: number;
  /** Canonical text: dotted quad for IPv4, RFC 5952 for IPv6. */
  address: string;
  port?: number;
  /** Rightmost 64 bits of the ADD_ADDR HMAC (present when echo is false). */
  truncatedHmac?: Uint8Array;
}

export interface RemoveAddrOption {
  subtype: 'REMOVE_ADDR';
  addressIds: number[];
}

export interface MpPrioOption {
  subtype: 'MP_PRIO';
  backup: boolean;
  /** RFC 6824 form only (length 4); RFC 8684 sends length 3 without it. */
  addressId?: number;
}

export interface MpFailOption {
  subtype: 'MP_FAIL';
  dsn: bigint;
}

export interface MpFastcloseOption {
  subtype: 'MP_FASTCLOSE';
  /** The receiver's key, 8 bytes. */
  receiverKey: Uint8Array;
}

export interface MpTcpRstOption {
  subtype: 'MP_TCPRST';
  /** U V W T bits (T = 0x1, transient). */
  flags: number;
  reason: number;
}

export interface NewKeyOption {
  subtype: 'NEW_KEY';
  /** K bit: which key generation this confirms. */
  keyId: 0 | 1;
  /** 64-bit HMAC proving possession of the key. */
  hmac: Uint8Array;
}

export type MptcpOption =
  | MpCapableOption
  | MpJoinOption
  | DssOption
  | AddAddrOption
  | RemoveAddrOption
  | MpPrioOption
  | MpFailOption
  | MpFastcloseOption
  | MpTcpRstOption
  | NewKeyOption;

export type MptcpSubtypeName = MptcpOption['subtype'];
