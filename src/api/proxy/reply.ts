/**
 * What the proxy answers: `HTTP/1.1 200 Connection Established` and nothing
 * else before the tunnel's bytes, or a refusal: a status line, a few
 * headers, a one-line text body naming the reason, and the end of the
 * connection (`Connection: close`).
 */

/** The statuses the proxy answers with. */
export type ProxyStatus = 200 | 400 | 403 | 405 | 407 | 408 | 431 | 502 | 503 | 504 | 505;

export const STATUS_TEXT: Record<ProxyStatus, string> = {
  200: 'Connection Established',
  400: 'Bad Request',
  403: 'Forbidden',
  405: 'Method Not Allowed',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

/** The answer that opens a tunnel: the status line and the empty line, nothing more. */
export const ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection Established\r\n\r\n', 'latin1');

/** A reason fit for a body and a log line: printable ASCII on one line, at most 300 characters. */
export function cleanReason(reason: string): string {
  const s = reason.replace(/[^\x20-\x7e]+/g, ' ').trim();
  return s.length > 300 ? `${s.slice(0, 297)}...` : s;
}

/** A refusal: status line, Content-Type, Content-Length, Connection: close, `headers`, and `reason` as the body. */
export function refusal(status: Exclude<ProxyStatus, 200>, reason: string, headers: Readonly<Record<string, string>> = {}): Buffer {
  const body = Buffer.from(`${cleanReason(reason)}\n`, 'latin1');
  let head = `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  head += `Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}
