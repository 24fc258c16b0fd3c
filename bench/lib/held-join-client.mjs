// Child of held-joins.mjs: raw mptls peers that never finish TLS.
//   'open N'  → N new connections (preamble + MP_CAPABLE SYN, no TLS); reports their tokens
//   'join'    → one MP_JOIN SYN for each of them, from 127.0.1.x (16 sources): held by the server
// Nothing else is sent: the server holds each join until its keys, which never come.
import net from 'node:net';
import { encodeFrameHead, preamble } from '../../dist/transport/userspace/frame.js';

const port = Number(process.argv[2]);
const sockets = [];
const tokens = [];

function openOne() {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    sockets.push(s);
    let buf = Buffer.alloc(0);
    s.on('error', reject);
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 32 && tokens.length < sockets.length) {
        tokens.push(buf.readUInt32BE(28));
        s.removeAllListeners('data');
        s.pause();
        resolve();
      }
    });
    s.on('connect', () => s.write(Buffer.concat([preamble(1), encodeFrameHead({ options: [{ subtype: 'MP_CAPABLE', version: 1, flags: 0x03 }] })])));
  });
}

function joinOne(token, i) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: `127.0.1.${1 + (i % 16)}` });
    sockets.push(s);
    s.on('error', reject);
    s.on('connect', () => {
      s.write(Buffer.concat([preamble(1), encodeFrameHead({ options: [{ subtype: 'MP_JOIN', stage: 'syn', backup: false, addressId: 1, receiverToken: token, senderRandom: (i * 2654435761) >>> 0 }] })]));
      resolve();
    });
  });
}

process.on('message', async (m) => {
  if (m.cmd === 'open') {
    for (let i = 0; i < m.n; i += 50) await Promise.all(Array.from({ length: Math.min(50, m.n - i) }, openOne));
    process.send({ opened: tokens.length });
  } else if (m.cmd === 'join') {
    await Promise.all(tokens.map((t, i) => joinOne(t, i)));
    process.send({ joined: tokens.length });
  } else if (m.cmd === 'exit') {
    for (const s of sockets) s.destroy();
    process.exit(0);
  }
});
process.send({ ready: true });
