#!/usr/bin/env node
/**
 * mptls demo, one command on loopback (`npm run demo`):
 *
 *   1. a throw-away CA and server certificate (made at the first run, kept in
 *      examples/.demo-certs/);
 *   2. an HTTPS server over TLS-bound multipath TCP on 127.0.0.1, whose /blob
 *      streams a deterministic body (an AES-128-CTR keystream under a fixed
 *      key) and announces its SHA-256 in the `x-sha256` header;
 *   3. a client that downloads it over two subflows, from 127.0.0.1 and
 *      127.0.0.2, with a live progress bar per subflow;
 *   4. the check: SHA-256, length, more than one subflow carried data; then the
 *      subflows and the security facts (tokens, key fingerprints, joins).
 *
 * Options: --size BYTES (default 64 MiB; k/M/G suffixes accepted), --help.
 * Exit status 0 on success, 1 on any failure.
 */
import { https, generateSelfSigned } from 'mptls';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';

const MiB = 1024 * 1024;
const LOCAL_ADDRESSES = ['127.0.0.1', '127.0.0.2'];
const TIMEOUT_MS = 120_000;
const out = process.stdout;
const tty = out.isTTY === true;
// `node examples/demo.mjs | head`: a closed pipe ends the demo quietly.
out.on('error', (e) => process.exit(e.code === 'EPIPE' ? 0 : 1));

// ------------------------------------------------------------ arguments

function parseSize(s) {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]i?b?)?$/i.exec(String(s).trim());
  if (!m) throw new Error(`bad --size ${JSON.stringify(s)} (bytes, or with a k/M/G suffix)`);
  const unit = (m[2] ?? '').toLowerCase()[0];
  const mult = unit === 'k' ? 1024 : unit === 'm' ? MiB : unit === 'g' ? 1024 * MiB : 1;
  const n = Math.round(Number(m[1]) * mult);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`bad --size ${s}`);
  return n;
}

let size;
try {
  const { values } = parseArgs({ options: { size: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    out.write(
      'Usage: node examples/demo.mjs [--size BYTES]\n\n' +
        'Downloads a generated body (default 64 MiB; k/M/G suffixes accepted) over two\n' +
        'multipath subflows on loopback, checks its SHA-256 and that both subflows\n' +
        'carried data (a body under ~64 KiB fits on one subflow and fails that check),\n' +
        'then prints the subflows and the security facts. Exit status 0 on success.\n',
    );
    process.exit(0);
  }
  size = values.size === undefined ? 64 * MiB : parseSize(values.size);
} catch (e) {
  process.stderr.write(`demo: ${e.message}\n`);
  process.exit(2);
}

// ------------------------------------------------------------ helpers

const fmtBytes = (n) => (n < 1024 ? `${n} B` : n < MiB ? `${(n / 1024).toFixed(1)} KiB` : `${(n / MiB).toFixed(1)} MiB`);
const fmtRate = (bytesPerS) => `${((bytesPerS * 8) / 1e6).toFixed(0)} Mbit/s`;
const hex32 = (n) => (n >>> 0).toString(16).padStart(8, '0');
const addr = (a, p) => `${a ?? '?'}${p === undefined ? '' : `:${p}`}`;
const yesNo = (b) => (b ? 'yes' : 'NO');

class DemoFailure extends Error {}

/**
 * The body: the AES-128-CTR keystream of a fixed key, cut to `n` bytes.
 * Deterministic, incompressible, and generated at memory speed.
 */
function* keystream(n, chunk = MiB) {
  const key = crypto.createHash('sha256').update('mptls demo body').digest().subarray(0, 16);
  const cipher = crypto.createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(chunk);
  for (let left = n; left > 0; left -= chunk) yield cipher.update(left >= chunk ? zeros : zeros.subarray(0, left));
}

function sha256Of(n) {
  const h = crypto.createHash('sha256');
  for (const b of keystream(n)) h.update(b);
  return h.digest('hex');
}

// ------------------------------------------------------------ certificates

const certDir = new URL('./.demo-certs/', import.meta.url);
const certFiles = { ca: new URL('ca.pem', certDir), cert: new URL('server.pem', certDir), key: new URL('server.key', certDir) };

function loadCerts() {
  try {
    const ca = fs.readFileSync(certFiles.ca, 'utf8');
    const cert = fs.readFileSync(certFiles.cert, 'utf8');
    const key = fs.readFileSync(certFiles.key, 'utf8');
    const caX = new crypto.X509Certificate(ca);
    const certX = new crypto.X509Certificate(cert);
    const ok =
      certX.checkIssued(caX) &&
      certX.verify(caX.publicKey) &&
      certX.checkPrivateKey(crypto.createPrivateKey(key)) &&
      certX.checkIP('127.0.0.1') !== undefined &&
      new Date(certX.validTo).getTime() > Date.now() + 24 * 3600 * 1000;
    return ok ? { ca, cert, key } : undefined;
  } catch {
    return undefined;
  }
}

async function demoCerts() {
  const cached = loadCerts();
  if (cached) return { ...cached, made: false };
  const { ca, cert, key } = await generateSelfSigned({ commonName: 'localhost' });
  fs.mkdirSync(certDir, { recursive: true, mode: 0o700 });
  // Atomic writes: a run interrupted half-way leaves nothing half-written behind.
  for (const [file, text, mode] of [
    [certFiles.key, key, 0o600],
    [certFiles.cert, cert, 0o644],
    [certFiles.ca, ca, 0o644],
  ]) {
    const tmp = new URL(`${file.pathname.split('/').pop()}.${process.pid}.tmp`, certDir);
    fs.writeFileSync(tmp, text, { mode });
    fs.renameSync(tmp, file);
  }
  return { ca, cert, key, made: true };
}

// ------------------------------------------------------------ progress

function progress(getSubflows, getReceived) {
  const started = performance.now();
  const rates = new Map(); // subflow id → { bytes, t, rate }
  let drawn = 0;
  let nextPlain = 0.25;
  const width = 28;
  const bar = (part) => {
    const full = Math.max(0, Math.min(width, Math.round(part * width)));
    return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
  };
  const rateOf = (id, bytes, t) => {
    const r = rates.get(id);
    if (!r) {
      rates.set(id, { bytes, t, rate: 0 });
      return 0;
    }
    const dt = (t - r.t) / 1000;
    if (dt >= 0.05) {
      const inst = (bytes - r.bytes) / dt;
      r.rate = r.rate === 0 ? inst : 0.6 * r.rate + 0.4 * inst;
      r.bytes = bytes;
      r.t = t;
    }
    return r.rate;
  };
  const draw = (final = false) => {
    const t = performance.now();
    const subflows = getSubflows();
    const received = getReceived();
    if (tty) {
      const lines = subflows.map((s) => {
        const rate = final ? s.bytesReceived / ((t - started) / 1000) : rateOf(s.id, s.bytesReceived, t);
        return `  subflow ${String(s.id).padEnd(2)} ${addr(s.localAddress, s.localPort).padEnd(21)} -> ${addr(s.remoteAddress, s.remotePort).padEnd(21)} ${bar(s.bytesReceived / size)} ${fmtBytes(s.bytesReceived).padStart(10)} ${fmtRate(rate).padStart(12)}`;
      });
      const pct = ((received / size) * 100).toFixed(0).padStart(3);
      lines.push(`  ${'total'.padEnd(57)} ${bar(received / size)} ${fmtBytes(received).padStart(10)} ${fmtRate(received / Math.max(1e-3, (t - started) / 1000)).padStart(12)} ${pct}%`);
      let s = drawn > 0 ? `\x1b[${drawn}A` : '';
      for (const l of lines) s += `\r\x1b[2K${l}\n`;
      out.write(s);
      drawn = lines.length;
    } else if (final || received / size >= nextPlain) {
      while (received / size >= nextPlain) nextPlain += 0.25;
      const per = subflows.map((s) => `subflow ${s.id} ${fmtBytes(s.bytesReceived)}`).join(', ');
      out.write(`  ${((received / size) * 100).toFixed(0).padStart(3)}%  ${fmtBytes(received)} of ${fmtBytes(size)}  (${per || 'no subflows yet'})\n`);
      if (final) nextPlain = Infinity;
    }
  };
  const timer = setInterval(draw, tty ? 100 : 50);
  return {
    stop(ok) {
      clearInterval(timer);
      if (ok) draw(true);
    },
  };
}

// ------------------------------------------------------------ the demo

async function run() {
  const t0 = performance.now();
  const creds = await demoCerts();
  out.write(`mptls demo: ${fmtBytes(size)} over TLS-bound multipath TCP on loopback\n`);
  out.write(`  certificates: ${creds.made ? 'made a new CA and server certificate in' : 'reusing'} examples/.demo-certs/\n`);
  const expected = sha256Of(size);

  let serverSocket;
  const server = https.createServer({ key: creds.key, cert: creds.cert, mptcp: {} }, (req, res) => {
    serverSocket = req.socket;
    if (req.url === '/hello') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('hello over multipath\n');
      return;
    }
    if (req.url !== '/blob') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('try /blob\n');
      return;
    }
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': size,
      'x-sha256': expected,
    });
    Readable.from(keystream(size)).pipe(res);
  });
  const serverErrors = [];
  server.on('tlsClientError', (e) => serverErrors.push(`TLS: ${e.message}`));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const url = `https://127.0.0.1:${port}/blob`;
  out.write(`  server: ${url} (multipath and plain TLS on one port)\n`);
  out.write(`  client: subflows from ${LOCAL_ADDRESSES.join(' and ')}\n\n`);

  // One keep-alive connection for both requests. Joins wait until both ends
  // confirmed the TLS-derived keys, so a small first request gives the join
  // time to complete; then /blob runs over every subflow from its first byte.
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const reqOptions = { agent, ca: creds.ca, mptcp: { localAddresses: LOCAL_ADDRESSES } };
  let client;
  let tSecure;
  const watchdog = new Promise((_, reject) => {
    setTimeout(() => reject(new DemoFailure(`no complete download within ${TIMEOUT_MS / 1000} s`)), TIMEOUT_MS).unref();
  });
  watchdog.catch(() => {}); // only the races below report it
  const withWatchdog = (p) => Promise.race([p, watchdog]);

  // ---- 1. connect, TLS, keys, a small request; wait for the join
  await withWatchdog(
    new Promise((resolve, reject) => {
      const req = https.get(`https://127.0.0.1:${port}/hello`, reqOptions, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new DemoFailure(`/hello: HTTP ${res.statusCode}`))));
        res.on('error', reject);
      });
      req.on('socket', (s) => {
        client = s;
        const tStart = performance.now();
        s.once('secureConnect', () => {
          tSecure = performance.now();
          out.write(`  connected: TLS handshake done in ${(tSecure - tStart).toFixed(0)} ms, mode ${s.mptcp.mode}\n`);
        });
        s.on('subflow', (i) => {
          const when = tSecure === undefined ? '' : `, ${(performance.now() - tSecure).toFixed(0)} ms after the TLS handshake`;
          out.write(`  + subflow ${i.id} up: ${addr(i.localAddress, i.localPort)} -> ${addr(i.remoteAddress, i.remotePort)}${i.id === 0 ? '' : when}\n`);
        });
      });
      req.on('error', reject);
    }),
  );
  const established = () => client.mptcp.subflows().filter((s) => s.state === 'established').length;
  const joinDeadline = performance.now() + 3000;
  while (client.mptcp.mode === 'userspace' && established() < LOCAL_ADDRESSES.length && performance.now() < joinDeadline) {
    await new Promise((r) => setTimeout(r, 5));
  }
  if (established() < LOCAL_ADDRESSES.length) out.write(`  (only ${established()} subflow(s) up after 3 s; downloading anyway)\n`);
  out.write('\n');

  // ---- 2. /blob on the same connection
  let received = 0;
  const base = new Map(client.mptcp.subflows().map((s) => [s.id, s.bytesReceived]));
  const hash = crypto.createHash('sha256');
  const bar = progress(
    () => client.mptcp.subflows().map((s) => ({ ...s, bytesReceived: s.bytesReceived - (base.get(s.id) ?? 0) })),
    () => received,
  );
  const started = performance.now();
  let elapsed = 0;
  let snapshot;
  let headerHash;
  let tlsFacts;
  let reused = false;
  try {
    await withWatchdog(
      new Promise((resolve, reject) => {
        const req = https.get(url, reqOptions, (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            reject(new DemoFailure(`HTTP ${res.statusCode} ${res.statusMessage}`));
            return;
          }
          reused = req.socket === client;
          headerHash = res.headers['x-sha256'];
          tlsFacts = { protocol: client.getProtocol(), cipher: client.getCipher()?.name, authorized: client.authorized };
          res.on('data', (d) => {
            received += d.length;
            hash.update(d);
          });
          res.on('end', () => {
            elapsed = performance.now() - started;
            snapshot = { subflows: client.mptcp.subflows(), complete: res.complete };
            resolve();
          });
          res.on('error', reject);
        });
        req.on('error', reject);
      }),
    );
    bar.stop(true);
  } catch (e) {
    bar.stop(false);
    if (tty) out.write('\n');
    throw e;
  }

  // ---- checks
  const failures = [];
  const digest = hash.digest('hex');
  if (received !== size || !snapshot.complete) failures.push(`received ${received} of ${size} bytes`);
  if (headerHash !== expected) failures.push(`the x-sha256 header (${headerHash}) is not the expected ${expected}`);
  if (digest !== expected) failures.push(`SHA-256 mismatch: got ${digest}, expected ${expected}`);
  const m = client.mptcp;
  // Bytes of /blob per subflow (the counters also hold the small first request).
  const used = snapshot.subflows.filter((s) => s.bytesReceived - (base.get(s.id) ?? 0) > 0);
  if (!reused) failures.push('/blob did not reuse the first connection');
  if (m.mode !== 'userspace') failures.push(`the connection is not multipath (mode ${m.mode}${m.fallbackReason ? `: ${m.fallbackReason}` : ''})`);
  else if (used.length < 2) failures.push(`only ${used.length} subflow carried data (${snapshot.subflows.length} open)`);
  const sm = serverSocket?.mptcp;
  const tokensAgree = !!(m.tokens && sm?.tokens && m.tokens.local === sm.tokens.remote && m.tokens.remote === sm.tokens.local);
  const keysAgree = !!(m.keyFingerprints && sm?.keyFingerprints && m.keyFingerprints.keyA === sm.keyFingerprints.keyA && m.keyFingerprints.keyB === sm.keyFingerprints.keyB);
  if (m.mode === 'userspace') {
    if (!m.keysConfirmed) failures.push('the TLS-derived keys were never confirmed (NEW_KEY)');
    if (!tokensAgree) failures.push('client and server disagree on the tokens');
    if (!keysAgree) failures.push('client and server derived different keys');
  }

  // ---- report
  const secs = elapsed / 1000;
  out.write(`\n  downloaded ${fmtBytes(received)} in ${secs.toFixed(2)} s: ${fmtRate(received / secs)} (${(received / MiB / secs).toFixed(1)} MiB/s)\n`);
  out.write(`  SHA-256 ${digest} ${digest === expected ? 'matches' : 'DOES NOT MATCH'} the server's x-sha256\n\n`);

  const totalIn = snapshot.subflows.reduce((a, s) => a + s.bytesReceived, 0) || 1;
  out.write('  subflows (client side, whole connection)\n');
  const rows = [['id', 'local -> remote', 'sent', 'received', 'share', 'RTT', 'state']];
  for (const s of snapshot.subflows) {
    rows.push([
      String(s.id),
      `${addr(s.localAddress, s.localPort)} -> ${addr(s.remoteAddress, s.remotePort)}`,
      fmtBytes(s.bytesSent),
      fmtBytes(s.bytesReceived),
      `${((s.bytesReceived / totalIn) * 100).toFixed(0)}%`,
      s.rttMs === undefined ? '-' : `${s.rttMs.toFixed(1)} ms`,
      s.state + (s.backup ? ' (backup)' : ''),
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const right = new Set([2, 3, 4, 5]);
  rows.forEach((r, ri) => {
    out.write(`    ${r.map((c, i) => (right.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd()}\n`);
    if (ri === 0) out.write(`    ${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
  });

  const cc = m.counters();
  const sc = server.mptcp.counters();
  const refused = sc.MPJoinRejected + sc.MPJoinAckHMacFailure + sc.MPJoinBeforeKeys + sc.MPJoinNoTokenFound;
  const facts = [
    ['mode', `${m.mode}${m.mode === 'userspace' ? ' (G-bit MP_CAPABLE: tokens on the wire, keys from the TLS exporter)' : ''}`],
    ['TLS', `${tlsFacts?.protocol ?? '?'} ${tlsFacts?.cipher ?? '?'}; server certificate verified: ${yesNo(tlsFacts?.authorized)}`],
    ['tokens', m.tokens ? `client (A) ${hex32(m.tokens.local)}, server (B) ${hex32(m.tokens.remote)}; the server sees the same: ${yesNo(tokensAgree)}` : 'none'],
    ['key fingerprints', m.keyFingerprints ? `A ${m.keyFingerprints.keyA}, B ${m.keyFingerprints.keyB} (SHA-256 prefixes, never the keys); same on both ends: ${yesNo(keysAgree)}` : 'none'],
    ['keys confirmed', `${yesNo(m.keysConfirmed)} (NEW_KEY sent ${cc.NewKeyTx}, received ${cc.NewKeyRx}, bad HMAC ${cc.NewKeyHMacFailure + sc.NewKeyHMacFailure})`],
    ['joins', `client sent ${cc.MPJoinSynTx}; server accepted ${sc.MPJoinAckRx} (MPJoinAckRx), refused ${refused}`],
    ['  refusals', `MPJoinRejected ${sc.MPJoinRejected}, MPJoinAckHMacFailure ${sc.MPJoinAckHMacFailure}, MPJoinBeforeKeys ${sc.MPJoinBeforeKeys}, MPJoinNoTokenFound ${sc.MPJoinNoTokenFound}; client MPJoinSynAckHMacFailure ${cc.MPJoinSynAckHMacFailure}`],
    ['reinjected', `${fmtBytes(cc.ReinjectedBytes + sc.ReinjectedBytes)}; stale subflows ${cc.SubflowStale + sc.SubflowStale}`],
  ];
  const fw = Math.max(...facts.map(([k]) => k.length));
  out.write('\n  security\n');
  for (const [k, v] of facts) out.write(`    ${k.padEnd(fw)}  ${v}\n`);
  if (serverErrors.length) out.write(`\n  server errors: ${serverErrors.join('; ')}\n`);

  client.end();
  agent.destroy();
  server.closeAllConnections();
  server.close();

  if (failures.length) throw new DemoFailure(failures.join('\n  '));
  out.write(`\n  OK in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}

let code = 0;
try {
  await run();
} catch (e) {
  code = 1;
  const msg = e instanceof DemoFailure ? e.message : `${e?.message ?? e}${e?.code ? ` (${e.code})` : ''}`;
  process.stderr.write(`\ndemo FAILED:\n  ${msg}\n`);
}
// Leave now: the lingering subflows of a closed connection need not finish their goodbyes.
out.write('', () => process.exit(code));
