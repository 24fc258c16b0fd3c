// A server in its own process, for test/api/parity.test.ts: `node parity-server.mjs node|mptls`
// prints its port, echoes what it reads, and is killed by the test.
import tls from 'node:tls';
import { createServer } from '../../dist/index.js';
import { fixtures } from './fixtures.mjs';

const impl = process.argv[2];
const options = { key: fixtures.key, cert: fixtures.cert };
const server = impl === 'node' ? tls.createServer(options) : createServer(options);
server.on('secureConnection', (s) => {
  s.on('error', () => {});
  s.on('data', (d) => s.write(d));
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`);
});
