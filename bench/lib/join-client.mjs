// Child of handshake.mjs: keeps `conc` connections in flight, each waiting for its join, for `seconds`.
import tls from 'node:tls';
import { connect } from '../../dist/index.js';
import { fixtures } from './common.mjs';
const [port, seconds, conc] = process.argv.slice(2, 5).map(Number);
// 'tls': the baseline, plain node:tls connections the server ends at once
const plain = process.argv[5] === 'tls';
const until = performance.now() + seconds * 1000;
let completed = 0;
async function one() {
  while (performance.now() < until) {
    await new Promise((resolve) => {
      let joined = false;
      const opts = { host: '127.0.0.1', port, ca: fixtures.ca, servername: 'localhost' };
      const s = plain ? tls.connect(opts) : connect({ ...opts, mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] } });
      if (plain) s.once('secureConnect', () => { joined = true; });
      // The join is up on the client once its MP_JOIN ACK is out; the server ends the
      // connection once it has verified that ACK (its own 'subflow'): both ends are done then.
      s.on('subflow', (i) => { if (i.id === 1) joined = true; });
      s.on('end', () => { if (joined) completed++; s.destroy(); resolve(); });
      // never a hang: a connection that neither ends nor fails within 10 s is dropped
      const timer = setTimeout(() => { s.destroy(); resolve(); }, 10_000);
      s.once('close', () => clearTimeout(timer));
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.resume();
    });
  }
}
await Promise.all(Array.from({ length: conc }, one));
process.send({ completed });
setTimeout(() => process.exit(0), 100);
