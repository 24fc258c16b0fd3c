/**
 * The proxy's request parser: one HTTP/1.x CONNECT request head (RFC 9110
 * §9.3.6, RFC 9112 §2–§5), fed the bytes as they arrive (`push`), a
 * dispatch loop over lines. Strict, and never throws: every input ends in a
 * `ConnectRequest` (with the bytes that followed the head, which belong to
 * the tunnel) or a `RequestError` carrying the status to answer with.
 *
 * - request line: `METHOD SP authority SP HTTP/1.1` (or `HTTP/1.0`), one
 *   space each; leading empty lines ignored (RFC 9112 §2.2); CRLF only (a
 *   bare LF or CR is 400);
 * - the method must be CONNECT (case-sensitive): else 405 (the reply names
 *   `Allow: CONNECT`); an unsupported HTTP version: 505;
 * - the authority: `host:port`, `[v6]:port` or `a.b.c.d:port`, port 1–65535
 *   (no user info, no zone id, no numeric names like `127.1`: 400);
 * - header lines `name: value` (a token name, no space before the colon,
 *   no line folding, no control characters): else 400; at most 64 of them
 *   and at most 8 KiB for the whole head, request line and empty lines
 *   included: else 431;
 * - HTTP/1.1 needs exactly one Host (RFC 9112 §3.2), more than one is 400
 *   in any version; a CONNECT has no content (RFC 9110 §9.3.6): a
 *   Transfer-Encoding, or a Content-Length other than 0, is 400; at most one
 *   Proxy-Authorization.
 */
import net from 'node:net';
import { canonicalAddress, normaliseName } from './allow.js';

/** The whole request head (request line, headers, the empty line) at most. */
export const MAX_HEAD_BYTES = 8192;
/** Header lines at most. */
export const MAX_HEADERS = 64;

/** Where a CONNECT asks to go. */
export interface ConnectTarget {
  /** The authority as the client wrote it (`Example.org:443`, `[::1]:22`). */
  authority: string;
  /** A name lower-cased without a trailing dot, or an address in canonical form (IPv4-mapped IPv6 as IPv4), no brackets. */
  host: string;
  port: number;
  kind: 'name' | 'ipv4' | 'ipv6';
}

export interface RequestHeader {
  /** As sent. */
  name: string;
  /** Without the surrounding whitespace. */
  value: string;
}

export interface ConnectRequest {
  method: 'CONNECT';
  target: ConnectTarget;
  version: '1.0' | '1.1';
  headers: RequestHeader[];
  /** The bytes of the head (request line to the empty line). */
  headBytes: number;
}

/** The statuses a bad request gets. */
export type RequestErrorStatus = 400 | 405 | 431 | 505;

export type RequestErrorCode = 'ERR_MPTLS_PROXY_BAD_REQUEST' | 'ERR_MPTLS_PROXY_METHOD' | 'ERR_MPTLS_PROXY_HEAD_TOO_LARGE' | 'ERR_MPTLS_PROXY_VERSION';

const CODES: Record<RequestErrorStatus, RequestErrorCode> = {
  400: 'ERR_MPTLS_PROXY_BAD_REQUEST',
  405: 'ERR_MPTLS_PROXY_METHOD',
  431: 'ERR_MPTLS_PROXY_HEAD_TOO_LARGE',
  505: 'ERR_MPTLS_PROXY_VERSION',
};

/** A request the proxy refuses before it looks at where it goes: the status to answer with, and why. */
export class RequestError extends Error {
  override readonly name = 'RequestError';
  readonly code: RequestErrorCode;
  constructor(
    readonly status: RequestErrorStatus,
    message: string,
  ) {
    super(message);
    this.code = CODES[status];
  }
}

/** One step of the parser: more bytes needed, a request (and what followed it), or an error. */
export type ParseStep =
  | { kind: 'more' }
  | { kind: 'request'; request: ConnectRequest; rest: Buffer }
  | { kind: 'error'; error: RequestError };

const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// VCHAR, obs-text, SP, HTAB: no other control characters in a field value.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const LF = 0x0a;
const CR = 0x0d;

/**
 * Parses `host:port` (authority-form, RFC 9112 §3.2.3): a `ConnectTarget`,
 * or a 400 `RequestError`.
 */
export function parseAuthority(authority: string): ConnectTarget | RequestError {
  const bad = (why: string) => new RequestError(400, `bad CONNECT target ${JSON.stringify(authority.slice(0, 300))}: ${why}`);
  let host: string;
  let port: string;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close < 0 || authority[close + 1] !== ':') return bad('expected [IPv6]:PORT');
    host = authority.slice(1, close);
    port = authority.slice(close + 2);
    if (!net.isIPv6(host) || host.includes('%')) return bad('not an IPv6 address in the brackets');
  } else {
    const colon = authority.lastIndexOf(':');
    if (colon <= 0) return bad('expected HOST:PORT');
    host = authority.slice(0, colon);
    port = authority.slice(colon + 1);
    if (host.includes(':')) return bad('an IPv6 address needs brackets');
  }
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) return bad('the port must be 1-65535');
  const address = canonicalAddress(host);
  if (address) return { authority, host: address.address, port: Number(port), kind: address.family === 4 ? 'ipv4' : 'ipv6' };
  if (/^[\d.]+$/.test(host)) return bad('not an IPv4 address');
  const name = normaliseName(host);
  if (name === undefined) return bad('not a host name');
  return { authority, host: name, port: Number(port), kind: 'name' };
}

/** The values of one header (case-insensitive name), in order. */
export function headerValues(request: Pick<ConnectRequest, 'headers'>, name: string): string[] {
  const lower = name.toLowerCase();
  return request.headers.filter((h) => h.name.toLowerCase() === lower).map((h) => h.value);
}

type State = 'request-line' | 'headers' | 'done';

/**
 * Incremental CONNECT head parser: `push` each chunk until it answers
 * 'request' or 'error'; after that it answers the same again. Holds at most
 * `MAX_HEAD_BYTES` plus one chunk.
 */
export class ConnectRequestParser {
  private buf: Buffer = Buffer.alloc(0);
  /** Where the current line starts in `buf`. */
  private lineStart = 0;
  /** Where to look for the next LF (bytes before it have none). */
  private scan = 0;
  private state: State = 'request-line';
  private target: ConnectTarget | undefined;
  private version: '1.0' | '1.1' = '1.1';
  private headers: RequestHeader[] = [];
  private result: ParseStep | undefined;

  push(chunk: Uint8Array): ParseStep {
    if (this.result) return this.result;
    this.buf = this.buf.length === 0 ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) : Buffer.concat([this.buf, chunk]);
    for (;;) {
      const lf = this.buf.indexOf(LF, this.scan);
      if (lf < 0) {
        this.scan = this.buf.length;
        if (this.buf.length > MAX_HEAD_BYTES) return this.fail(431, `request head larger than ${MAX_HEAD_BYTES} bytes`);
        return { kind: 'more' };
      }
      if (lf + 1 > MAX_HEAD_BYTES) return this.fail(431, `request head larger than ${MAX_HEAD_BYTES} bytes`);
      if (lf === this.lineStart || this.buf[lf - 1] !== CR) return this.fail(400, 'a line ends with LF alone (CRLF expected)');
      const line = this.buf.toString('latin1', this.lineStart, lf - 1);
      const next = lf + 1;
      this.lineStart = next;
      this.scan = next;
      if (line.includes('\r')) return this.fail(400, 'a CR inside a line');
      const step = this.state === 'request-line' ? this.requestLine(line) : this.headerLine(line);
      if (step) return step;
      if (this.state === 'done') {
        return this.settle({
          kind: 'request',
          request: { method: 'CONNECT', target: this.target!, version: this.version, headers: this.headers, headBytes: next },
          rest: Buffer.from(this.buf.subarray(next)),
        });
      }
    }
  }

  private settle(step: ParseStep): ParseStep {
    this.result = step;
    this.buf = Buffer.alloc(0);
    return step;
  }

  private fail(status: RequestErrorStatus, message: string): ParseStep {
    return this.settle({ kind: 'error', error: new RequestError(status, message) });
  }

  private requestLine(line: string): ParseStep | undefined {
    if (line === '') return undefined; // RFC 9112 §2.2: empty lines before the request line
    const parts = line.split(' ');
    if (parts.length !== 3) return this.fail(400, 'malformed request line (METHOD SP TARGET SP HTTP/1.1 expected)');
    const [method, target, version] = parts;
    if (!TCHAR.test(method)) return this.fail(400, 'malformed method');
    const v = /^HTTP\/(\d)\.(\d)$/.exec(version);
    if (!v) return this.fail(400, 'malformed HTTP version');
    if (version !== 'HTTP/1.1' && version !== 'HTTP/1.0') return this.fail(505, `${version} is not supported (HTTP/1.1 or HTTP/1.0)`);
    if (method !== 'CONNECT') return this.fail(405, `${method.slice(0, 32)} is not supported: this is a CONNECT proxy`);
    if (target.length === 0) return this.fail(400, 'empty CONNECT target');
    const t = parseAuthority(target);
    if (t instanceof RequestError) return this.settle({ kind: 'error', error: t });
    this.target = t;
    this.version = version === 'HTTP/1.0' ? '1.0' : '1.1';
    this.state = 'headers';
    return undefined;
  }

  private headerLine(line: string): ParseStep | undefined {
    if (line === '') return this.endOfHead();
    if (line[0] === ' ' || line[0] === '\t') return this.fail(400, 'obsolete line folding in the headers');
    if (this.headers.length >= MAX_HEADERS) return this.fail(431, `more than ${MAX_HEADERS} header fields`);
    const colon = line.indexOf(':');
    if (colon <= 0) return this.fail(400, 'malformed header line (NAME: VALUE expected)');
    const name = line.slice(0, colon);
    if (!TCHAR.test(name)) return this.fail(400, 'malformed header name');
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (!FIELD_VALUE.test(value)) return this.fail(400, `a control character in header ${name.slice(0, 64)}`);
    this.headers.push({ name, value });
    return undefined;
  }

  private endOfHead(): ParseStep | undefined {
    const req = { headers: this.headers };
    const hosts = headerValues(req, 'host');
    if (hosts.length > 1) return this.fail(400, 'more than one Host header');
    if (hosts.length === 0 && this.version === '1.1') return this.fail(400, 'no Host header (required in HTTP/1.1)');
    if (headerValues(req, 'transfer-encoding').length > 0) return this.fail(400, 'a CONNECT request has no content: Transfer-Encoding refused');
    const lengths = headerValues(req, 'content-length');
    if (lengths.some((l) => l !== '0')) return this.fail(400, 'a CONNECT request has no content: Content-Length must be 0');
    if (headerValues(req, 'proxy-authorization').length > 1) return this.fail(400, 'more than one Proxy-Authorization header');
    this.state = 'done';
    return undefined;
  }
}

/** The whole head at once (for tests and tools): 'more' when it is incomplete. */
export function parseConnectRequest(bytes: Uint8Array): ParseStep {
  return new ConnectRequestParser().push(bytes);
}
