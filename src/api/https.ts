/**
 * `https`: node:https with multipath underneath. `createServer` serves
 * multipath and plain HTTPS clients on one port; `request`/`get`/`Agent`
 * open multipath connections (`options.mptcp`), falling back to plain TLS.
 * Handlers (Express, Fastify, plain node:http) run unchanged.
 */
import nodeHttps from 'node:https';
import type http from 'node:http';
import type tls from 'node:tls';
import { connect, type ConnectOptions, type MptcpClientOptions, type MptlsSocket } from './client.js';
import { enableMultipath, type MptlsServer, type ServerOptions } from './server.js';

export interface AgentOptions extends nodeHttps.AgentOptions {
  mptcp?: MptcpClientOptions;
  pin?: string | string[];
}

export type RequestOptions = nodeHttps.RequestOptions & { mptcp?: MptcpClientOptions; pin?: string | string[] };

export class Agent extends nodeHttps.Agent {
  readonly mptcp: MptcpClientOptions | undefined;
  readonly pin: string | string[] | undefined;
  constructor(options: AgentOptions = {}) {
    super(options);
    this.mptcp = options.mptcp;
    this.pin = options.pin;
  }
  override createConnection(options: RequestOptions & tls.ConnectionOptions): MptlsSocket {
    const mptcp = { ...this.mptcp, ...options.mptcp };
    return connect({ ...options, mptcp, pin: options.pin ?? this.pin } as unknown as ConnectOptions);
  }
  override getName(options?: RequestOptions): string {
    const base = super.getName(options as nodeHttps.RequestOptions);
    const mp = options?.mptcp ? JSON.stringify(options.mptcp) : '';
    return `${base}:mptls:${mp}:${String(options?.pin ?? '')}`;
  }
}

export const globalAgent = new Agent({ keepAlive: true });

/** A request whose socket is an mptls socket (`req.socket.mptcp`). */
export type IncomingMessage = http.IncomingMessage & { socket: MptlsSocket };
export type RequestListener = (req: IncomingMessage, res: http.ServerResponse) => void;

/** The listener overloads an mptls HTTPS server adds (before node's, so untyped handlers find them). */
export interface HttpsServerEvents<Self> {
  on(event: 'request', listener: RequestListener): Self;
  once(event: 'request', listener: RequestListener): Self;
  prependListener(event: 'request', listener: RequestListener): Self;
  addListener(event: 'request', listener: RequestListener): Self;
}

/** What `https.createServer` returns. */
export type Server = HttpsServerEvents<Server> & MptlsServer<nodeHttps.Server>;

/** Like `https.createServer`, plus `options.mptcp`; `req.socket` is an `MptlsSocket`. */
export function createServer(options: ServerOptions, handler?: RequestListener): Server {
  const tlsOptions = { ...options };
  delete tlsOptions.mptcp;
  const server = nodeHttps.createServer(tlsOptions, handler as http.RequestListener | undefined);
  return enableMultipath(server, options) as Server;
}

type Cb = (res: http.IncomingMessage) => void;

function withAgent(options: RequestOptions): RequestOptions {
  if (options.agent !== undefined) return options;
  return { ...options, agent: globalAgent };
}

/** Like `https.request`, plus `options.mptcp` and `options.pin`. */
export function request(url: string | URL, cb?: Cb): http.ClientRequest;
export function request(url: string | URL, options?: RequestOptions, cb?: Cb): http.ClientRequest;
export function request(options: RequestOptions, cb?: Cb): http.ClientRequest;
export function request(a: string | URL | RequestOptions, b?: RequestOptions | Cb, c?: Cb): http.ClientRequest {
  if (typeof a === 'string' || a instanceof URL) {
    const opts = typeof b === 'object' ? b : {};
    const cb = typeof b === 'function' ? b : c;
    return nodeHttps.request(a, withAgent(opts) as nodeHttps.RequestOptions, cb);
  }
  return nodeHttps.request(withAgent(a) as nodeHttps.RequestOptions, b as Cb | undefined);
}

/** Like `https.get`. */
export function get(url: string | URL, cb?: Cb): http.ClientRequest;
export function get(url: string | URL, options?: RequestOptions, cb?: Cb): http.ClientRequest;
export function get(options: RequestOptions, cb?: Cb): http.ClientRequest;
export function get(a: string | URL | RequestOptions, b?: RequestOptions | Cb, c?: Cb): http.ClientRequest {
  const req = (request as (a: string | URL | RequestOptions, b?: RequestOptions | Cb, c?: Cb) => http.ClientRequest)(a, b, c);
  req.end();
  return req;
}
