/**
 * The I/O side of one SOCKS5 negotiation on a local socket: feeds the
 * parser (socks5.ts), answers the greeting (NO AUTHENTICATION REQUIRED, or
 * 0xFF when the client does not offer it), and bounds the whole negotiation
 * in time. It ends with the client's request (and the bytes that came after
 * it), or with the socket answered where RFC 1928 has an answer and closed.
 */
import type net from 'node:net';
import { methodSelection, Socks5Parser, SocksError, SocksMethod, type SocksRequest } from './socks5.js';

/** Default of the time a SOCKS client has for its greeting and request: 10 s. */
export const DEFAULT_SOCKS_TIMEOUT_MS = 10_000;

/** After a final reply, the client has this long to close before its socket is destroyed. */
const LINGER_MS = 2_000;

/**
 * How a negotiation ended: a request (`rest`: bytes the client sent after
 * it), a refused greeting (no acceptable method: answered 05 FF), a
 * malformed message (`error`, answered where a reply exists), a timeout, or
 * the socket closing under it.
 */
export type SocksOutcome =
  | { kind: 'request'; request: SocksRequest; rest: Buffer }
  | { kind: 'no-acceptable-method'; methods: number[] }
  | { kind: 'bad-request'; error: SocksError }
  | { kind: 'timeout'; received: number }
  | { kind: 'closed' };

/**
 * Writes `bytes` (if any), ends the socket and discards whatever the client
 * still sends. The (half-open) socket closes itself once the client closed
 * its side too and the reply is written; a client that does not is
 * destroyed after a short linger (closing at once with unread input could
 * turn into a RST that loses the reply).
 */
export function replyAndClose(socket: net.Socket, bytes?: Buffer): void {
  if (socket.destroyed) return;
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  if (bytes) socket.end(bytes);
  else socket.end();
  socket.resume();
}

/** Runs the negotiation on `socket`; `done` is called once. */
export function negotiate(socket: net.Socket, timeoutMs: number, done: (outcome: SocksOutcome) => void): void {
  const parser = new Socks5Parser();
  let finished = false;
  const finish = (o: SocksOutcome) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.removeListener('data', onData);
    socket.removeListener('end', onEnd);
    socket.removeListener('close', onClose);
    done(o);
  };
  const timer = setTimeout(() => {
    finish({ kind: 'timeout', received: parser.bytesReceived });
    socket.destroy();
  }, timeoutMs);
  timer.unref();
  const handle = (events: ReturnType<Socks5Parser['push']>) => {
    for (const ev of events) {
      if (finished) return;
      switch (ev.type) {
        case 'greeting':
          if (!ev.methods.includes(SocksMethod.noAuth)) {
            finish({ kind: 'no-acceptable-method', methods: ev.methods });
            replyAndClose(socket, methodSelection(SocksMethod.noAcceptable));
            return;
          }
          socket.write(methodSelection(SocksMethod.noAuth));
          break;
        case 'request':
          socket.pause();
          finish({ kind: 'request', request: ev.request, rest: ev.rest });
          return;
        case 'error':
          finish({ kind: 'bad-request', error: ev.error });
          replyAndClose(socket, ev.error.reply);
          return;
      }
    }
  };
  const onData = (chunk: Buffer) => handle(parser.push(chunk));
  const onEnd = () => handle(parser.end());
  const onClose = () => finish({ kind: 'closed' });
  socket.on('data', onData);
  socket.once('end', onEnd);
  socket.once('close', onClose);
  socket.resume();
}
