/**
 * The HTTP/1.1 CONNECT exchange with the proxy (RFC 9110 §9.3.6): the
 * request this client sends, and a parser of the proxy's response head
 * (status line and header fields up to the empty line, at most
 * `MAX_RESPONSE_HEAD` bytes in all, interim 1xx responses skipped), as a
 * dispatch loop over lines. The bytes after the head belong to the tunnel.
 */
import { authority, type TunnelTarget } from './target.js';

/** The most the proxy's response head (1xx heads included) may take: 8 KiB. */
export const MAX_RESPONSE_HEAD = 8 * 1024;

/** RFC 6750's token68 alphabet: what a bearer token may hold (and so never a CR, LF or space). */
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Whether `token` can be sent as `Proxy-Authorization: Bearer TOKEN`. */
export function isBearerToken(token: string): boolean {
  return TOKEN68.test(token);
}

/**
 * `CONNECT host:port HTTP/1.1`, `Host: host:port`, and with a token
 * `Proxy-Authorization: Bearer TOKEN`; nothing else. The target and the
 * token are checked by the caller (target.ts, `isBearerToken`).
 */
export function connectRequest(target: TunnelTarget, token?: string): Buffer {
  const a = authority(target);
  let head = `CONNECT ${a} HTTP/1.1\r\nHost: ${a}\r\n`;
  if (token !== undefined) head += `Proxy-Authorization: Bearer ${token}\r\n`;
  return Buffer.from(head + '\r\n', 'latin1');
}

export interface ResponseHead {
  /** "1.1" or "1.0". */
  version: string;
  status: number;
  reason: string;
  /** In order, names as sent. */
  headers: [string, string][];
}

export type ResponseHeadErrorCode = 'too-large' | 'bad-status-line' | 'bad-header';

/** A response head this client cannot take: the tunnel is not made. */
export class ResponseHeadError extends Error {
  constructor(
    readonly code: ResponseHeadErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ResponseHeadError';
  }
}

export type HeadResult =
  | { kind: 'more' }
  | { kind: 'done'; head: ResponseHead; rest: Buffer }
  | { kind: 'error'; error: ResponseHeadError };

const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

type State = 'status-line' | 'header-line' | 'done' | 'failed';

/**
 * Feeds on the proxy's bytes until a final (non-1xx) response head is
 * complete. Lines end with CRLF (a bare LF is taken too, RFC 9112 §2.2);
 * obsolete line folding, a malformed header line or more than
 * `MAX_RESPONSE_HEAD` bytes before the end of the head are errors.
 */
export class ResponseHeadParser {
  private state: State = 'status-line';
  private line: Buffer[] = [];
  private lineBytes = 0;
  private total = 0;
  private head: ResponseHead | undefined;

  constructor(private readonly limit = MAX_RESPONSE_HEAD) {}

  push(chunk: Buffer): HeadResult {
    if (this.state === 'failed' || this.state === 'done') return { kind: 'more' };
    let off = 0;
    while (off < chunk.length) {
      const lf = chunk.indexOf(0x0a, off);
      const end = lf === -1 ? chunk.length : lf + 1;
      const piece = chunk.subarray(off, end);
      this.total += piece.length;
      if (this.total > this.limit) return this.fail('too-large', `the proxy's response head is longer than ${this.limit} bytes`);
      this.line.push(piece);
      this.lineBytes += piece.length;
      off = end;
      if (lf === -1) break;
      const text = Buffer.concat(this.line, this.lineBytes).toString('latin1');
      this.line = [];
      this.lineBytes = 0;
      const r = this.onLine(text.endsWith('\r\n') ? text.slice(0, -2) : text.slice(0, -1));
      if (r) return r.kind === 'done' ? { ...r, rest: Buffer.from(chunk.subarray(off)) } : r;
    }
    return { kind: 'more' };
  }

  /** One complete line (without its line end), dispatched on the state. */
  private onLine(line: string): HeadResult | undefined {
    switch (this.state) {
      case 'status-line': {
        const m = STATUS_LINE.exec(line);
        if (!m) return this.fail('bad-status-line', `not an HTTP/1.x status line: ${JSON.stringify(line.slice(0, 80))}`);
        this.head = { version: `1.${m[1]}`, status: Number(m[2]), reason: m[3] ?? '', headers: [] };
        this.state = 'header-line';
        return undefined;
      }
      case 'header-line': {
        const head = this.head!;
        if (line === '') {
          // An interim response (100 Continue, 103 Early Hints): the final one follows.
          if (head.status >= 100 && head.status < 200 && head.status !== 101) {
            this.state = 'status-line';
            this.head = undefined;
            return undefined;
          }
          this.state = 'done';
          return { kind: 'done', head, rest: Buffer.alloc(0) };
        }
        if (line[0] === ' ' || line[0] === '\t') return this.fail('bad-header', 'obsolete line folding in the response head');
        const colon = line.indexOf(':');
        const name = colon > 0 ? line.slice(0, colon) : '';
        if (!HEADER_NAME.test(name) || /[\r\0]/.test(line)) return this.fail('bad-header', `not a header line: ${JSON.stringify(line.slice(0, 80))}`);
        head.headers.push([name, line.slice(colon + 1).trim()]);
        return undefined;
      }
      default:
        return undefined;
    }
  }

  private fail(code: ResponseHeadErrorCode, message: string): HeadResult {
    this.state = 'failed';
    this.line = [];
    return { kind: 'error', error: new ResponseHeadError(code, message) };
  }
}

/** The first value of header `name` (case-insensitive) in `head`. */
export function headerValue(head: ResponseHead, name: string): string | undefined {
  const n = name.toLowerCase();
  return head.headers.find(([k]) => k.toLowerCase() === n)?.[1];
}
