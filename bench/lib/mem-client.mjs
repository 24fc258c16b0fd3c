// Child of memory.mjs: opens N idle connections, each with 2 subflows (127.0.0.1 + 127.0.0.2).
import { connect } from '../../dist/index.js';
import { fixtures, rssKiB } from './common.mjs';
const sockets = [];
process.on('message', async (m) => {
  if (m.cmd === 'open') {
    const { port, n, conc } = m;
    let next = 0;
    async function worker() {
      while (next < n) {
        next++;
        await new Promise((resolve) => {
          const s = connect({ host: '127.0.0.1', port, ca: fixtures.ca, servername: 'localhost', mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] } });
          s.on('error', () => resolve());
          s.on('subflow', (i) => i.id === 1 && resolve());
          sockets.push(s);
        });
      }
    }
    await Promise.all(Array.from({ length: conc }, worker));
    const joined = sockets.filter((s) => s.mptcp.subflows().filter((x) => x.state === 'established').length === 2).length;
    process.send({ opened: sockets.length, joined });
  } else if (m.cmd === 'rss') {
    global.gc?.();
    global.gc?.();
    setTimeout(() => process.send({ rssKiB: rssKiB() }), 200);
  } else if (m.cmd === 'exit') process.exit(0);
});
process.send({ ready: true });
