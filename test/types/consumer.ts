/**
 * A program as users write it against the published types ('mptls', i.e.
 * dist/index.d.ts), compiled by test/types/types.test.ts with `tsc --strict
 * --noEmit`. Every line here must compile; every `@ts-expect-error` must be
 * an error (so a type that silently became `any` fails the test).
 */
import { createServer, connect, https, http2, type MptlsSocket, type MibCounters } from 'mptls';
import { fixtures } from '../support/fixtures.mjs';

const server = createServer({ key: fixtures.key, cert: fixtures.cert });
server.on('secureConnection', (s) => {
  const mode: string = s.mptcp.mode;
  const n: number = s.mptcp.subflows().length;
  const c: number = s.mptcp.counters().MPJoinSynRx; // a number, not number | undefined
  void [mode, n, c];
  // @ts-expect-error no such property: the socket is typed, not any
  void s.mptcp.noSuchThing;
});
server.once('secureConnection', (s) => s.mptcp.keysConfirmed);
const srvCounters: MibCounters = server.mptcp.counters();
const metricsText: string = server.mptcp.metrics();
void [srvCounters, metricsText];

const web = https.createServer({ key: fixtures.key, cert: fixtures.cert }, (req, res) => {
  const subflows: number = req.socket.mptcp.subflows().length;
  res.end(String(subflows));
});
web.on('request', (req, res) => {
  res.end(req.socket.mptcp.mode);
});

https.get('https://127.0.0.1:1/', (res) => res.resume());
https.get(new URL('https://127.0.0.1:1/'), (res) => res.resume());
https.get('https://127.0.0.1:1/', { mptcp: { localAddresses: ['127.0.0.1'] } }, (res) => res.resume());
https.get({ host: '127.0.0.1', port: 1, mptcp: {} }, (res) => res.resume());
https.request(new URL('https://127.0.0.1:1/'), (res) => res.resume()).end();

const sock: MptlsSocket = connect({ host: '127.0.0.1', port: 1, timeout: 1000, mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] } });
sock.on('subflow', (sf) => {
  const id: number = sf.id;
  void id;
});
sock.on('subflow-down', (d) => {
  const why: string = d.reason;
  void why;
});
const counts: MibCounters = sock.mptcp.counters();
const joins: number = counts.MPJoinSynTx;
void joins;
sock.setKeepAlive(true, 1000).setNoDelay(true).unref().ref();

const h2 = http2.createSecureServer({ key: fixtures.key, cert: fixtures.cert, mptcp: {} });
h2.on('stream', (stream) => stream.respond({ ':status': 200 }));
h2.on('secureConnection', (s) => s.mptcp.mode);
const session = http2.connect('https://127.0.0.1:1', { ca: fixtures.ca, mptcp: { localAddresses: ['127.0.0.1'] } });
session.request({ ':path': '/' }).end();
