// A client in its own process, for test/api/parity-options.test.ts:
// `node parity-client.mjs node|mptls PORT CA_PATH` makes one https.get with
// a keep-alive agent, prints the status, and exits when the event loop is
// empty: an idle pooled connection must not hold it (the agent unref()s it).
import fs from 'node:fs';
import nodeHttps from 'node:https';
import { https } from '../../dist/index.js';

const [impl, port, caPath] = process.argv.slice(2);
const ca = fs.readFileSync(caPath);
const t0 = performance.now();
const lib = impl === 'node' ? nodeHttps : https;
const agent = impl === 'node' ? new nodeHttps.Agent({ keepAlive: true }) : new https.Agent({ keepAlive: true, mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] } });
lib.get(`https://127.0.0.1:${port}/`, { ca, agent }, (res) => {
  res.resume();
  res.on('end', () => {
    process.stdout.write(`${res.statusCode} ${Math.round(performance.now() - t0)}\n`);
  });
});
process.on('exit', () => process.stdout.write(`exit ${Math.round(performance.now() - t0)}\n`));
