// Child of handshake.mjs: keeps `conc` connections in flight, each waiting for its join, for `seconds`.
import { connect } from '../../dist/index.js';
import { fixtures } from './common.mjs';
const [port, seconds, conc] = process.argv.slice(2).map(Number);
const until = performance.now() + seconds * 1000;
let completed = 0;
async function one() {
  while (performance.now() < until) {
    await new Promise((resolve) => {
      const s = connect({ host: '127.0.0.1', port, ca: fixtures.ca, servername: 'localhost', mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] } });
      s.on('subflow', (i) => { if (i.id === 1) { completed++; s.destroy(); resolve(); } });
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.resume();
    });
  }
}
await Promise.all(Array.from({ length: conc }, one));
process.send({ completed });
setTimeout(() => process.exit(0), 100);
