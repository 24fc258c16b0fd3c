// Child of memory.mjs: an mptls server; reports its RSS on request (after GC).
import { createServer } from '../../dist/index.js';
import { fixtures, rssKiB } from './common.mjs';
let open = 0;
const server = createServer({ key: fixtures.key, cert: fixtures.cert, mptcp: { maxConnections: 100000 } }, (s) => {
  open++;
  s.on('error', () => {});
  s.on('close', () => open--);
});
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
process.on('message', (m) => {
  if (m === 'rss') {
    global.gc?.();
    global.gc?.();
    setTimeout(() => process.send({ rssKiB: rssKiB(), open, connections: server.mptcp.connections }), 200);
  } else if (m === 'exit') process.exit(0);
});
