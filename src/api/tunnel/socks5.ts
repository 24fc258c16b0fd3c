/**
 * SOCKS5 (RFC 1928), the server side of `-D`: a sans-I/O parser of the
 * client's greeting (VER NMETHODS METHODS) and request (VER CMD RSV ATYP
 * DST.ADDR DST.PORT), as a dispatch loop over a small state machine that
 * takes exactly the bytes each field needs; the replies; and how a proxy's
 * answer maps onto a reply code. The parser never throws on input: every
 * byte sequence ends as a greeting and a request, a `SocksError` (with the
 * reply to send, where RFC 1928 has one), or a wait for more bytes.
 */
import { ipv6Text, isHostName } from './target.js';

export const SOCKS_VERSION = 5;

/** METHOD values (§3). Only NO AUTHENTICATION REQUIRED is offered. */
export const SocksMethod = { noAuth: 0x00, gssapi: 0x01, userPass: 0x02, noAcceptable: 0xff } as const;

/** CMD values (§4). */
export const SocksCommand = { connect: 0x01, bind: 0x02, udpAssociate: 0x03 } as const;

/** ATYP values (§4). */
export const SocksAddressType = { ipv4: 0x01, domain: 0x03, ipv6: 0x04 } as const;

/** REP values (§6). */
export const SocksReply = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowed: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  ttlExpired: 0x06,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;

export type SocksReplyCode = (typeof SocksReply)[keyof typeof SocksReply];

export interface SocksRequest {
  /** CMD: 1 CONNECT, 2 BIND, 3 UDP ASSOCIATE, or anything else the client sent. */
  command: number;
  addressType: 'ipv4' | 'domain' | 'ipv6';
  /** An IP address as text, or the domain name as sent (the proxy resolves it). */
  host: string;
  port: number;
}

export type SocksErrorCode =
  | 'bad-version'
  | 'no-methods'
  | 'bad-request-version'
  | 'reserved-not-zero'
  | 'bad-address-type'
  | 'empty-name'
  | 'bad-name'
  | 'bad-port'
  | 'truncated';

/** A malformed greeting or request. `reply`: the bytes to send before closing, where one exists. */
export class SocksError extends Error {
  constructor(
    readonly code: SocksErrorCode,
    message: string,
    readonly reply: Buffer | undefined,
  ) {
    super(message);
    this.name = 'SocksError';
  }
}

export type SocksEvent =
  | { type: 'greeting'; methods: number[] }
  /** `rest`: bytes after the request (data the client sent early), a copy. */
  | { type: 'request'; request: SocksRequest; rest: Buffer }
  | { type: 'error'; error: SocksError };

/** A reply (§6) with BND.ADDR 0.0.0.0 and BND.PORT 0: mptls binds nothing the client could use. */
export function socksReply(rep: number): Buffer {
  return Buffer.from([SOCKS_VERSION, rep, 0x00, SocksAddressType.ipv4, 0, 0, 0, 0, 0, 0]);
}

/** The method selection message (§3): `05 00` or `05 FF`. */
export function methodSelection(method: number): Buffer {
  return Buffer.from([SOCKS_VERSION, method]);
}

/** SOCKS4's "request rejected or failed" (0x5B), for a SOCKS4 client that reached this SOCKS5 port. */
const SOCKS4_REJECTED = Buffer.from([0x00, 0x5b, 0, 0, 0, 0, 0, 0]);

/** The reply for a proxy's non-2xx CONNECT status. */
export function socksReplyForStatus(status: number): SocksReplyCode {
  switch (status) {
    case 403:
    case 407:
      return SocksReply.notAllowed;
    case 502:
      return SocksReply.hostUnreachable;
    case 504:
      return SocksReply.ttlExpired;
    default:
      return SocksReply.generalFailure;
  }
}

type State = 'version' | 'nmethods' | 'methods' | 'request' | 'name-length' | 'address' | 'port' | 'done' | 'failed';

/** The largest field: 255 methods or a 255-byte name. */
const FIELD_MAX = 255;

export class Socks5Parser {
  private state: State = 'version';
  private readonly field = Buffer.alloc(FIELD_MAX);
  private filled = 0;
  /** How many bytes the current state needs. */
  private want = 1;
  private methodCount = 0;
  private command = 0;
  private addressType = 0;
  private host = '';
  private received = 0;

  /** 'greeting' until its last byte, then 'request', then 'done' (a request) or 'failed' (an error). */
  get phase(): 'greeting' | 'request' | 'done' | 'failed' {
    if (this.state === 'done' || this.state === 'failed') return this.state;
    return this.state === 'version' || this.state === 'nmethods' || this.state === 'methods' ? 'greeting' : 'request';
  }

  /** Bytes taken so far. */
  get bytesReceived(): number {
    return this.received;
  }

  /** Takes the client's next bytes; nothing after a 'request' or an 'error' event. */
  push(chunk: Uint8Array): SocksEvent[] {
    const events: SocksEvent[] = [];
    let off = 0;
    while (off < chunk.length && this.state !== 'done' && this.state !== 'failed') {
      const n = Math.min(this.want - this.filled, chunk.length - off);
      this.field.set(chunk.subarray(off, off + n), this.filled);
      this.filled += n;
      off += n;
      this.received += n;
      if (this.filled < this.want) break;
      const value = this.field.subarray(0, this.want);
      this.filled = 0;
      const ev = this.step(value, chunk, off);
      if (ev) events.push(ev);
    }
    return events;
  }

  /** The client closed its side: an error unless the request was complete. */
  end(): SocksEvent[] {
    if (this.state === 'done' || this.state === 'failed') return [];
    const inRequest = this.phase === 'request';
    return [
      this.fail(
        'truncated',
        this.received === 0 ? 'the client closed without sending anything' : `the client closed in the middle of its ${inRequest ? 'request' : 'greeting'} (after ${this.received} bytes)`,
        inRequest ? socksReply(SocksReply.generalFailure) : undefined,
      ),
    ];
  }

  /** One complete field, dispatched on the state. */
  private step(value: Buffer, chunk: Uint8Array, off: number): SocksEvent | undefined {
    switch (this.state) {
      case 'version':
        if (value[0] !== SOCKS_VERSION) {
          return this.fail('bad-version', `not SOCKS5: the greeting starts with 0x${hex(value[0])}`, value[0] === 4 ? SOCKS4_REJECTED : undefined);
        }
        return this.next('nmethods', 1);
      case 'nmethods':
        if (value[0] === 0) return this.fail('no-methods', 'the greeting offers no authentication method', methodSelection(SocksMethod.noAcceptable));
        this.methodCount = value[0];
        return this.next('methods', value[0]);
      case 'methods': {
        const methods = [...value.subarray(0, this.methodCount)];
        this.next('request', 4);
        return { type: 'greeting', methods };
      }
      case 'request': {
        const reply = socksReply(SocksReply.generalFailure);
        if (value[0] !== SOCKS_VERSION) return this.fail('bad-request-version', `the request's version is 0x${hex(value[0])}, not 5`, reply);
        if (value[2] !== 0) return this.fail('reserved-not-zero', `the request's reserved byte is 0x${hex(value[2])}, not 0`, reply);
        this.command = value[1];
        this.addressType = value[3];
        switch (value[3]) {
          case SocksAddressType.ipv4:
            return this.next('address', 4);
          case SocksAddressType.ipv6:
            return this.next('address', 16);
          case SocksAddressType.domain:
            return this.next('name-length', 1);
          default:
            return this.fail('bad-address-type', `address type 0x${hex(value[3])} is not IPv4, a domain name or IPv6`, socksReply(SocksReply.addressTypeNotSupported));
        }
      }
      case 'name-length':
        if (value[0] === 0) return this.fail('empty-name', 'the domain name is empty', socksReply(SocksReply.generalFailure));
        return this.next('address', value[0]);
      case 'address':
        if (this.addressType === SocksAddressType.ipv4) this.host = [...value].join('.');
        else if (this.addressType === SocksAddressType.ipv6) this.host = ipv6Text(value);
        else {
          // ASCII host names only: the name goes into the CONNECT request line as it is.
          const name = value.toString('latin1');
          if (!isHostName(name)) return this.fail('bad-name', `the domain name ${JSON.stringify(name.slice(0, 64))} is not a host name`, socksReply(SocksReply.hostUnreachable));
          this.host = name;
        }
        return this.next('port', 2);
      case 'port': {
        const port = value.readUInt16BE(0);
        if (port === 0) return this.fail('bad-port', 'the destination port is 0', socksReply(SocksReply.generalFailure));
        this.state = 'done';
        const addressType = this.addressType === SocksAddressType.ipv4 ? 'ipv4' : this.addressType === SocksAddressType.ipv6 ? 'ipv6' : 'domain';
        return { type: 'request', request: { command: this.command, addressType, host: this.host, port }, rest: Buffer.from(chunk.subarray(off)) };
      }
      default:
        return undefined;
    }
  }

  private next(state: State, want: number): undefined {
    this.state = state;
    this.want = want;
    return undefined;
  }

  private fail(code: SocksErrorCode, message: string, reply: Buffer | undefined): SocksEvent {
    this.state = 'failed';
    return { type: 'error', error: new SocksError(code, message, reply) };
  }
}

function hex(b: number | undefined): string {
  return (b ?? 0).toString(16).padStart(2, '0');
}
