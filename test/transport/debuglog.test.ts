/**
 * NODE_DEBUG=mptls: a child process (the built dist/, `npm run build`
 * first) runs a server and a two-subflow client on loopback through a
 * handshake, a join, a stall (the server stops reading the join), a refused
 * join with an unknown token, a subflow killed, a fallback to a plain TLS
 * server and the close; stderr must have a line for each, with the
 * connection's token as its label, and none of the keys or fingerprints the
 * child prints on stdout. Without NODE_DEBUG nothing is written and nothing
 * is subscribed.
 */
import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DIST = new URL('../../dist/index.js', import.meta.url);

/** The child: an ES module run with `node --input-type=module -e`; MPTLS_ROOT is the repository as a file URL. */
const CHILD = String.raw`
import net from 'node:net';
import tls from 'node:tls';
const root = process.env.MPTLS_ROOT;
const { createServer, connect } = await import(root + 'dist/index.js');
const { encodeFrameHead, preamble, ROLE_CLIENT } = await import(root + 'dist/transport/userspace/frame.js');
const { keysForTesting } = await import(root + 'dist/core/connection/index.js');
const { fixtures } = await import(root + 'test/support/fixtures.mjs');

const until = async (cond, what, ms = 15000) => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 5));
  }
};
const established = (s) => s.mptcp.subflows().filter((x) => x.state === 'established').length;

let srv;
let srvGot = 0;
let srvClosed = false;
const server = createServer({ key: fixtures.key, cert: fixtures.cert }, (s) => {
  srv = s;
  s.on('data', (d) => { srvGot += d.length; });
  s.on('end', () => s.end());
  s.on('close', () => { srvClosed = true; });
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const port = server.address().port;

// Handshake and join.
const c = connect({ host: '127.0.0.1', port, ca: fixtures.ca, mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] } });
await new Promise((res, rej) => { c.once('secureConnect', res); c.once('error', rej); });
await until(() => srv && established(c) === 2 && established(srv) === 2 && c.mptcp.keysConfirmed && srv.mptcp.keysConfirmed, 'the join');
c.write(Buffer.alloc(64 * 1024, 1));
await until(() => srvGot === 64 * 1024, 'the first bytes');
const hex = (u) => Buffer.from(u).toString('hex');
const keys = [c, srv].flatMap((s) => {
  const k = keysForTesting(s.mptcp.driver.conn);
  return [hex(k.localKey), hex(k.remoteKey)];
});

// A stall: the server stops reading the join; the client's data on it is reinjected.
const join = srv.mptcp.driver.socketOf(1);
join.pause();
const bulk = 8 * 1024 * 1024;
c.write(Buffer.alloc(bulk, 2));
await until(() => c.mptcp.counters().SubflowStale > 0, 'the stall');
join.resume();
await until(() => srvGot === 64 * 1024 + bulk, 'the bulk transfer');

// A join with an unknown token: refused by the acceptor.
const rogue = net.connect({ host: '127.0.0.1', port });
rogue.on('error', () => {});
rogue.resume();
await new Promise((r) => rogue.once('connect', r));
const bogus = (srv.mptcp.tokens.local ^ 0x5a5a5a5a) >>> 0;
rogue.write(Buffer.concat([
  Buffer.from(preamble(ROLE_CLIENT)),
  Buffer.from(encodeFrameHead({ options: [{ subtype: 'MP_JOIN', stage: 'syn', backup: false, addressId: 7, receiverToken: bogus, senderRandom: 1234 }] })),
]));
await new Promise((r) => rogue.once('close', r));

// A subflow killed: its socket destroyed under the client.
const down = new Promise((r) => c.once('subflow-down', r));
c.mptcp.driver.socketOf(1).destroy();
const downEvent = await down;

// Fallback: a plain TLS server.
const plain = tls.createServer({ key: fixtures.key, cert: fixtures.cert }, (s) => { s.resume(); s.on('end', () => s.end()); });
await new Promise((r) => plain.listen(0, '127.0.0.1', r));
const f = connect({ host: '127.0.0.1', port: plain.address().port, ca: fixtures.ca });
await new Promise((res, rej) => { f.once('secureConnect', res); f.once('error', rej); });
f.end();
f.resume();
await new Promise((r) => f.once('close', r));

// The close.
c.resume();
c.end();
await new Promise((r) => c.once('close', r));
await until(() => srvClosed && c.mptcp.driver.isClosed && srv.mptcp.driver.isClosed, 'the close');
await new Promise((r) => setTimeout(r, 50));

console.log('RESULT ' + JSON.stringify({
  port,
  client: { token: c.mptcp.tokens.local, counters: c.mptcp.counters(), fingerprints: c.mptcp.keyFingerprints, hooked: typeof c.mptcp.driver.conn.mib.onIncrement === 'function' },
  server: { token: srv.mptcp.tokens.local, counters: srv.mptcp.counters(), fingerprints: srv.mptcp.keyFingerprints, hooked: typeof srv.mptcp.driver.conn.mib.onIncrement === 'function' },
  fallback: { mode: f.mptcp.mode, reason: f.mptcp.fallbackReason },
  downEvent,
  keys,
}));
server.close();
plain.close();
setTimeout(() => process.exit(0), 20).unref();
`;

interface Side {
  token: number;
  counters: Record<string, number>;
  fingerprints: { keyA: string; keyB: string };
  hooked: boolean;
}
interface ChildResult {
  port: number;
  client: Side;
  server: Side;
  fallback: { mode: string; reason: string };
  downEvent: { id: number; reason: string };
  keys: string[];
}

function runChild(env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string; result: ChildResult }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
      cwd: ROOT,
      // MPTLS_NO_TCPINFO: the stall this child provokes is a receiver that stops
      // reading; with the kernel's TCP_INFO the transport (rightly) sees that
      // path deliver and declares no stall. Without it the stall timer is the
      // core's alone, and the trace lines for a stall and its reinjection show.
      env: { ...env, MPTLS_ROOT: pathToFileURL(ROOT).href, MPTLS_NO_TCPINFO: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 50_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
      if (!line) {
        reject(new Error(`child failed (code ${code}):\n${stderr.slice(-4000)}\n${stdout.slice(-2000)}`));
        return;
      }
      resolve({ code, stdout, stderr, result: JSON.parse(line.slice('RESULT '.length)) as ChildResult });
    });
  });
}

const hex8 = (n: number) => (n >>> 0).toString(16).padStart(8, '0');
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function envWithout(name: string): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env[name];
  return env;
}

describe('NODE_DEBUG=mptls', () => {
  it('runs on the build (npm run build first)', () => {
    expect(existsSync(DIST), 'dist/index.js: run npm run build').toBe(true);
  });

  it('logs handshake, join, stall and reinjection, refusal, subflow down, fallback and close; never a key', async () => {
    const { code, stderr, result } = await runChild({ ...envWithout('NODE_DEBUG'), NODE_DEBUG: 'mptls' });
    expect(code).toBe(0);
    const lines = stderr.split('\n').filter((l) => l.length > 0);
    for (const l of lines) expect(l).toMatch(/^MPTLS \d+: /);
    const text = lines.map((l) => l.replace(/^MPTLS \d+: /, ''));
    const has = (re: RegExp) => expect(text.some((l) => re.test(l)), `a line matching ${re}\n${text.join('\n')}`).toBe(true);
    const count = (re: RegExp) => text.filter((l) => re.test(l)).length;
    const cl = hex8(result.client.token);
    const sl = hex8(result.server.token);
    const port = result.port;

    // Handshake.
    has(new RegExp(`^${cl} client: connecting \\(MP_CAPABLE SYN, external keys\\)$`));
    has(new RegExp(`^${sl} server: new connection from 127\\.0\\.0\\.1:\\d+ \\(MP_CAPABLE SYN, external keys\\)$`));
    has(new RegExp(`^${cl} client: established: MP_CAPABLE done, peer token ${sl}$`));
    has(new RegExp(`^${sl} server: established: MP_CAPABLE done, peer token ${cl}$`));
    for (const who of [`${cl} client`, `${sl} server`]) {
      has(new RegExp(`^${who}: subflow 0 up 127\\.0\\.0\\.1:\\d+ -> 127\\.0\\.0\\.1:\\d+ \\(initial\\)$`));
      has(new RegExp(`^${who}: keys installed \\(from the TLS exporter\\), NEW_KEY sent$`));
      has(new RegExp(`^${who}: keys confirmed`));
    }
    // The join.
    has(new RegExp(`^${cl} client: subflow 1 opening 127\\.0\\.0\\.2 -> 127\\.0\\.0\\.1:${port} \\(MP_JOIN SYN\\)$`));
    has(new RegExp(`^${cl} client: subflow 1 up 127\\.0\\.0\\.2:\\d+ -> 127\\.0\\.0\\.1:${port} \\(join\\)$`));
    has(new RegExp(`^${sl} server: subflow 1 up 127\\.0\\.0\\.1:${port} -> 127\\.0\\.0\\.2:\\d+ \\(join\\)$`));
    // The stall, its recovery and the reinjections: one line per stall and recovery, reinjections summed up to the counters.
    const stalls = count(new RegExp(`^${cl} client: subflow 1 stalled: `));
    expect(stalls).toBeGreaterThan(0);
    expect(stalls).toBe(result.client.counters.SubflowStale);
    expect(count(new RegExp(`^${cl} client: subflow \\d+ recovered from its stall$`))).toBe(result.client.counters.SubflowRecover);
    const reinjections = text.map((l) => new RegExp(`^${cl} client: reinjected (\\d+) segments? \\((\\d+) bytes\\) on other subflows$`).exec(l)).filter((m) => m !== null);
    expect(reinjections.reduce((a, m) => a + Number(m[1]), 0)).toBe(result.client.counters.Reinjected);
    expect(reinjections.reduce((a, m) => a + Number(m[2]), 0)).toBe(result.client.counters.ReinjectedBytes);
    expect(result.client.counters.Reinjected).toBeGreaterThan(0);
    // The refusal, with the peer's address and the reason.
    has(/^server: refused a subflow from 127\.0\.0\.1:\d+: unknown token$/);
    // The subflow killed: down on both sides, with the reason the API reported.
    has(new RegExp(`^${cl} client: subflow 1 down: ${esc(result.downEvent.reason)} \\(127\\.0\\.0\\.2:\\d+ -> 127\\.0\\.0\\.1:${port}\\)$`));
    has(new RegExp(`^${sl} server: subflow 1 down: (fin|reset|error) \\(127\\.0\\.0\\.1:${port} -> 127\\.0\\.0\\.2:\\d+\\)$`));
    // Fallback to the plain TLS server.
    expect(result.fallback.mode).toBe('fallback');
    has(/^[0-9a-f]{8} client: no mptls preamble from the server: /);
    has(new RegExp(`^[0-9a-f]{8} client: fallback to plain TLS over TCP: ${esc(result.fallback.reason)}$`));
    // The close.
    has(new RegExp(`^${cl} client: closed: done$`));
    has(new RegExp(`^${sl} server: closed: done$`));
    expect(result.client.hooked && result.server.hooked).toBe(true);

    // No key material: the keys of both sides (hex, either case; base64; decimal) and the fingerprints.
    expect(result.keys).toHaveLength(4);
    const secrets = [
      ...result.keys.flatMap((k) => [k, Buffer.from(k, 'hex').toString('base64'), BigInt(`0x${k}`).toString()]),
      result.client.fingerprints.keyA,
      result.client.fingerprints.keyB,
      result.server.fingerprints.keyA,
      result.server.fingerprints.keyB,
    ];
    for (const s of secrets) {
      expect(s.length).toBeGreaterThanOrEqual(12);
      expect(stderr.toLowerCase()).not.toContain(s.toLowerCase());
    }
  });

  it('without NODE_DEBUG: nothing written, nothing subscribed', async () => {
    const { code, stderr, result } = await runChild(envWithout('NODE_DEBUG'));
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(result.client.hooked).toBe(false);
    expect(result.server.hooked).toBe(false);
    expect(result.client.counters.SubflowStale).toBeGreaterThan(0);
  });
});
