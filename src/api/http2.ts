/**
 * `http2`: node:http2 with multipath underneath. `createSecureServer` serves
 * multipath and plain HTTP/2 (and, with `allowHTTP1`, HTTP/1.1) clients on
 * one port, as `https.createServer` does; `connect(authority, { mptcp })`
 * opens an HTTP/2 session over a multipath connection (falling back to plain
 * TLS when the server does not speak multipath, unless `mptcp.fallback` is
 * false). Streams, settings, push and everything else are node:http2's own.
 */
import net from 'node:net';
import nodeHttp2 from 'node:http2';
import { connect as mptlsConnect, type ConnectOptions, type MptcpClientOptions, type MptlsSocket } from './client.js';
import { enableMultipath, type MptlsServer, type ServerOptions } from './server.js';

export type SecureServerOptions = nodeHttp2.SecureServerOptions & Pick<ServerOptions, 'mptcp'>;

export type SecureClientSessionOptions = nodeHttp2.SecureClientSessionOptions & {
  mptcp?: MptcpClientOptions;
  /** SHA-256 of the server's SubjectPublicKeyInfo (base64, or "sha256//base64"), checked on every connection. */
  pin?: string | string[];
};

/** Like `http2.createSecureServer`, plus `options.mptcp`. */
export function createSecureServer(options: SecureServerOptions, onRequest?: (req: nodeHttp2.Http2ServerRequest, res: nodeHttp2.Http2ServerResponse) => void): MptlsServer<nodeHttp2.Http2SecureServer> {
  const tlsOptions = { ...options };
  delete tlsOptions.mptcp;
  const server = onRequest ? nodeHttp2.createSecureServer(tlsOptions, onRequest) : nodeHttp2.createSecureServer(tlsOptions);
  return enableMultipath(server, options as ServerOptions);
}

/**
 * Like `http2.connect`, plus `options.mptcp` and `options.pin`: the session
 * runs over an mptls connection (ALPN 'h2'). Only `https:` authorities:
 * multipath is bound to TLS.
 */
export function connect(authority: string | URL, options?: SecureClientSessionOptions, listener?: (session: nodeHttp2.ClientHttp2Session, socket: MptlsSocket) => void): nodeHttp2.ClientHttp2Session;
export function connect(authority: string | URL, listener?: (session: nodeHttp2.ClientHttp2Session, socket: MptlsSocket) => void): nodeHttp2.ClientHttp2Session;
export function connect(
  authority: string | URL,
  a?: SecureClientSessionOptions | ((session: nodeHttp2.ClientHttp2Session, socket: MptlsSocket) => void),
  b?: (session: nodeHttp2.ClientHttp2Session, socket: MptlsSocket) => void,
): nodeHttp2.ClientHttp2Session {
  const options: SecureClientSessionOptions = typeof a === 'object' && a !== null ? { ...a } : {};
  const listener = typeof a === 'function' ? a : b;
  const url = typeof authority === 'string' ? new URL(authority) : authority;
  if (url.protocol !== 'https:') throw Object.assign(new TypeError(`mptls http2.connect: only https: authorities (multipath is bound to TLS), got ${url.protocol}`), { code: 'ERR_MPTLS_INVALID_OPTION' });
  const { mptcp, pin } = options;
  delete options.mptcp;
  delete options.pin;
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = url.port === '' ? 443 : Number(url.port);
  const createConnection = () =>
    mptlsConnect({
      ...(options as ConnectOptions),
      host,
      port,
      servername: options.servername ?? (net.isIP(host) ? undefined : host),
      ALPNProtocols: ['h2'],
      mptcp: mptcp ?? {},
      pin,
    });
  return nodeHttp2.connect(url, { ...options, createConnection }, listener as ((session: nodeHttp2.ClientHttp2Session, socket: net.Socket) => void) | undefined);
}

export { constants, getDefaultSettings, getPackedSettings, getUnpackedSettings, sensitiveHeaders } from 'node:http2';
