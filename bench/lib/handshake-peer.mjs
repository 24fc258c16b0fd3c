// Child of handshake.mjs, so that client, server and path do not share a CPU
// (on a real network they do not; in one process every side's work would
// delay the others'):
//   'servers'                  → an mptls server and a plain node:tls server; sends { mptls, plain } ports
//   'relay PORT ONE_WAY_MS ...'→ a delay relay per target port; sends { relays: [port, …] }
import tls from 'node:tls';
import { createServer } from '../../dist/index.js';
import { fixtures, delayRelay } from './common.mjs';

const [mode, ...args] = process.argv.slice(2);
if (mode === 'servers') {
  const server = createServer({ key: fixtures.key, cert: fixtures.cert }, (s) => { s.on('error', () => {}); s.resume(); });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const plain = tls.createServer({ key: fixtures.key, cert: fixtures.cert }, (s) => { s.on('error', () => {}); s.resume(); });
  await new Promise((r) => plain.listen(0, '127.0.0.1', r));
  process.send({ mptls: server.address().port, plain: plain.address().port });
} else if (mode === 'relay') {
  const oneWayMs = Number(args[0]);
  const relays = [];
  for (const p of args.slice(1)) relays.push((await delayRelay(Number(p), oneWayMs)).port);
  process.send({ relays });
}
process.on('disconnect', () => process.exit(0));
