/** Writing a whole HTTP response in one call, for `serve`'s pages and the static-file server. */
import type http from 'node:http';

/** Sets the headers with setHeader (so the access log can read them back), then writes the head. */
export function writeHead(res: http.ServerResponse, status: number, headers: Record<string, string | number>): void {
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.writeHead(status);
}

/** A one-line text/plain response (the line plus "\n"); no body for HEAD. */
export function sendText(res: http.ServerResponse, status: number, text: string, head = false, extra: Record<string, string> = {}): void {
  const body = Buffer.from(text + '\n');
  writeHead(res, status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length, ...extra });
  res.end(head ? undefined : body);
}

/** A generated body of `type`, never cached; no body for HEAD. */
export function sendBody(res: http.ServerResponse, status: number, type: string, text: string, head: boolean): void {
  const body = Buffer.from(text);
  writeHead(res, status, { 'content-type': type, 'content-length': body.length, 'cache-control': 'no-store' });
  res.end(head ? undefined : body);
}
