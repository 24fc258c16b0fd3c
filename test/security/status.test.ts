/**
 * `mptls serve` (no --dir) used to answer "/" and "/status.json" with the
 * server-wide MIB counters and the number of open multipath connections, to
 * any client. The status page is now opt-in (--status): a stock `mptls serve`
 * shows a minimal page, the same bytes for every client, and 404 elsewhere.
 */
import type http from 'node:http';
import path from 'node:path';
import { sink } from '../support/sink.js';
import { FIXTURES_DIR as FIXTURES, fixture } from '../support/fixtures.mjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_OK, main } from '../../src/cli/main.js';
import * as https from '../../src/api/https.js';
import type { MptlsSocket } from '../../src/api/client.js';
import { MIB_NAMES } from '../../src/core/mib.js';

const CA = fixture('ca.pem');

/** One request over multipath (two subflows when `join`); resolves with the status, body and the connection's facts. */
function get(port: number, target: string, join = false): Promise<{ status: number; body: string; tokens?: { local: number; remote: number }; fingerprints?: { keyA: string; keyB: string } }> {
  return new Promise((resolve, reject) => {
    const agent = new https.Agent({ keepAlive: false });
    const req = https.request(
      { host: '127.0.0.1', port, path: target, ca: CA, agent, mptcp: { fallback: false, ...(join ? { localAddresses: ['127.0.0.1', '127.0.0.2'] } : {}) } },
      (res: http.IncomingMessage) => {
        const m = (res.socket as MptlsSocket).mptcp;
        const facts = { tokens: m?.tokens, fingerprints: m?.keyFingerprints };
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => {
          agent.destroy();
          resolve({ status: res.statusCode ?? 0, body, ...facts });
        });
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', (e) => {
      agent.destroy();
      reject(e);
    });
    req.end();
  });
}

async function startServe(extra: string[]): Promise<{ port: number; stop: () => Promise<number>; stdout: () => string }> {
  const stop = new AbortController();
  const stdout = sink();
  const stderr = sink();
  const served = main(['serve', '--cert', path.join(FIXTURES, 'server.pem'), '--key', path.join(FIXTURES, 'server.key'), '--port', '0', '-q', ...extra], {
    stdout,
    stderr,
    signal: stop.signal,
  });
  const deadline = Date.now() + 10_000;
  let m: RegExpMatchArray | null = null;
  while (!(m = stdout.text().match(/listening on https:\/\/127\.0\.0\.1:(\d+)\//)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  if (!m) {
    stop.abort();
    throw new Error(`serve did not start: ${stdout.text()} ${stderr.text()}`);
  }
  return {
    port: Number(m[1]),
    stdout: () => stdout.text(),
    stop: async () => {
      stop.abort();
      return served;
    },
  };
}

describe('a stock `mptls serve` (no --status) tells clients nothing about the server or other connections', () => {
  let srv: Awaited<ReturnType<typeof startServe>>;
  beforeAll(async () => {
    srv = await startServe([]);
  });
  afterAll(async () => {
    if (srv) expect(await srv.stop()).toBe(EXIT_OK);
  });

  it('"/" has no counters, no connection count, no tokens or fingerprints; "/status.json" is 404', async () => {
    // other clients first, so the server's counters are not zero (MPCapableSYNRX, MPJoinSynRx, …)
    const other = await get(srv.port, '/nope', true);
    expect(other.status).toBe(404);
    const a = await get(srv.port, '/');
    const b = await get(srv.port, '/?x=1');
    expect(a.status).toBe(200);
    expect(a.tokens).toBeDefined(); // a multipath connection: it has facts the page could have shown
    expect(MIB_NAMES.filter((name) => a.body.includes(name))).toEqual([]);
    expect(a.body).toBe(b.body); // the same bytes for every client
    expect(a.body).not.toMatch(/connections open|subflow|token|fingerprint|status\.json/i);
    for (const r of [a, other]) {
      for (const t of [r.tokens!.local, r.tokens!.remote]) expect(a.body).not.toContain((t >>> 0).toString(16).padStart(8, '0'));
      expect(a.body).not.toContain(r.fingerprints!.keyA);
      expect(a.body).not.toContain(r.fingerprints!.keyB);
    }
    for (const target of ['/status.json', '/status.json?x', '/status', '/index.html']) {
      const r = await get(srv.port, target);
      expect(r.status, target).toBe(404);
      for (const name of MIB_NAMES) expect(r.body, `${target} ${name}`).not.toContain(name);
    }
    expect(srv.stdout()).toContain('no status page');
  }, 30_000);
});
