import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';

/**
 * Runs `fn` against a plain node:tls server on 127.0.0.1 that answers every
 * handshake with `greeting` (or nothing) and ends; the server is closed
 * afterwards, whatever `fn` does. Client errors are swallowed: the tests
 * look at the client's side.
 */
export async function withTlsServer<T>(opts: tls.TlsOptions, fn: (port: number) => Promise<T>, greeting?: string): Promise<T> {
  const server = tls.createServer(opts, (sock) => {
    sock.on('error', () => {});
    if (greeting === undefined) sock.end();
    else sock.end(greeting);
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  try {
    return await fn(port);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
