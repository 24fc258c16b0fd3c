/**
 * node:tls parity, socket semantics (issue 15 §1, §6): the same case run
 * against node:tls and against mptls (two subflows), and the events the
 * application sees compared. A multipath close that is orderly (DATA_FIN, or
 * the MP_FASTCLOSE a peer's destroy() sends) is 'end' + 'close', as TCP's FIN
 * is; a failure is an 'error' with the code TCP would give; nothing after
 * 'close'.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { connect, type MptlsSocket } from '../../src/api/index.js';
import type { UserspaceInfo } from '../../src/transport/index.js';
import { IMPLS, pair, record, settle, type Impl, type Recording } from '../support/parity.js';
import { fixtures, listen } from '../support/servers.js';

type Outcome = { events: string[]; late: string[] };

async function outcome(rec: Recording): Promise<Outcome> {
  await settle(rec);
  return { events: rec.events, late: rec.late };
}

/** Runs `body` for node:tls and mptls, returns both outcomes. */
async function both(body: (impl: Impl) => Promise<Outcome>): Promise<Record<Impl, Outcome>> {
  const out = {} as Record<Impl, Outcome>;
  for (const impl of IMPLS) out[impl] = await body(impl);
  return out;
}

describe('close semantics, compared with node:tls', () => {
  it("the peer's destroy() is 'end' + 'close(false)' at the other side, never an error", async () => {
    const r = await both(async (impl) => {
      const p = await pair(impl);
      const rec = record(p.accepted);
      p.accepted.resume();
      p.client.write('hello');
      await new Promise((res) => setTimeout(res, 50));
      p.client.destroy();
      const o = await outcome(rec);
      await p.close();
      return o;
    });
    expect(r.node.events).toEqual(['end', 'close:false']);
    expect(r.mptls).toEqual(r.node);
  });

  it("a server's destroy() is 'end' + 'close(false)' at the client", async () => {
    const r = await both(async (impl) => {
      const p = await pair(impl);
      const rec = record(p.client);
      p.client.resume();
      p.accepted.destroy();
      const o = await outcome(rec);
      await p.close();
      return o;
    });
    expect(r.mptls).toEqual(r.node);
  });

  it("end() on either side: 'end' + 'close(false)' at the other", async () => {
    const r = await both(async (impl) => {
      const p = await pair(impl);
      const rc = record(p.client);
      const rs = record(p.accepted);
      p.client.resume();
      p.accepted.resume();
      p.accepted.end('bye');
      const o = { client: await outcome(rc), server: await outcome(rs) };
      await p.close();
      return { events: [...o.client.events, '|', ...o.server.events], late: [...o.client.late, ...o.server.late] };
    });
    expect(r.mptls).toEqual(r.node);
  });

  it('the server process killed: node:tls says end, mptls fails at once with ECONNRESET (an unauthenticated end is never clean)', async () => {
    const script = fileURLToPath(new URL('../support/parity-server.mjs', import.meta.url));
    const killedFor = {} as Record<Impl, number>;
    const r = await both(async (impl) => {
      const child = spawn(process.execPath, [script, impl], { stdio: ['ignore', 'pipe', 'inherit'] });
      const [line] = (await once(child.stdout!, 'data')) as [Buffer];
      const port = Number(line.toString().trim());
      const co = { host: '127.0.0.1', port, ca: fixtures.ca };
      const client: tls.TLSSocket = impl === 'node' ? tls.connect(co) : connect({ ...co, mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] } });
      const rec = record(client);
      await once(client, 'secureConnect');
      client.resume();
      client.write('x');
      await new Promise((res) => setTimeout(res, 300));
      const t0 = performance.now();
      child.kill('SIGKILL');
      await rec.closed;
      killedFor[impl] = performance.now() - t0;
      const o = await outcome(rec);
      client.destroy();
      return o;
    });
    expect(r.node.events).toEqual(['secureConnect', 'end', 'close:false']);
    // The one deliberate difference: TCP's FIN is no proof of an orderly
    // end (anyone on a path can forge one), and mptls never reports an
    // unauthenticated end as clean (docs/SECURITY.md, truncation). The killed
    // server's FINs park the connection, the rejoin meets a closed port, and
    // the client fails at once with TCP's code for a connection that is gone.
    expect(r.mptls.events).toEqual(['secureConnect', 'error:ECONNRESET', 'close:true']);
    expect(r.mptls.late).toEqual([]);
    expect(killedFor.mptls).toBeLessThan(2000);
  });

  it("fallback (mptls client, plain node:tls server): the server's destroy() is 'end' + 'close' like node's client, no EPIPE", async () => {
    const r = await both(async (impl) => {
      const server = tls.createServer({ key: fixtures.key, cert: fixtures.cert }, (s) => {
        s.on('error', () => {});
        s.write('hi');
        setTimeout(() => s.destroy(), 50);
      });
      const port = await listen(server);
      const co = { host: '127.0.0.1', port, ca: fixtures.ca };
      const client: tls.TLSSocket = impl === 'node' ? tls.connect(co) : connect({ ...co, mptcp: {} });
      const rec = record(client);
      client.resume();
      const o = await outcome(rec);
      if (impl === 'mptls') expect((client as MptlsSocket).mptcp.mode).toBe('fallback');
      await new Promise<void>((res) => server.close(() => res()));
      return o;
    });
    expect(r.mptls).toEqual(r.node);
  });

  it("the server socket emits nothing after an 'error' or 'close' (no 'drain', no second error)", async () => {
    for (const impl of IMPLS) {
      const p = await pair(impl);
      const rec = record(p.accepted);
      // The server writes into a client that goes away mid-stream.
      const big = Buffer.alloc(1 << 20);
      const pump = () => {
        while (p.accepted.writable && p.accepted.write(big));
      };
      p.accepted.on('drain', pump);
      pump();
      await new Promise((res) => setTimeout(res, 50));
      p.client.destroy();
      const o = await outcome(rec);
      expect(o.late, impl).toEqual([]);
      expect(o.events.filter((e) => e.startsWith('close')).length, impl).toBe(1);
      await p.close();
    }
  });

  it("a reset mid-write: the writing server sees one 'error' (ECONNRESET), then 'close', and no 'drain' after the error", async () => {
    const r = await both(async (impl) => {
      const p = await pair(impl, { serverOptions: { mptcp: { resumeTimeoutMs: 0 } } as tls.TlsOptions });
      const rec = record(p.accepted);
      const after: string[] = [];
      let failed = false;
      p.accepted.on('error', () => (failed = true));
      const big = Buffer.alloc(1 << 20);
      const pump = () => {
        if (failed) after.push('drain');
        while (p.accepted.writable && p.accepted.write(big));
      };
      p.accepted.on('drain', pump);
      pump();
      await new Promise((res) => setTimeout(res, 50));
      // The client's TCP connections are reset: node's own socket, or every subflow of the multipath one.
      if (impl === 'node') p.raw!.resetAndDestroy();
      else for (const f of (p.client as MptlsSocket).mptcp.subflows()) ((p.client as MptlsSocket).mptcp as UserspaceInfo).driver.socketOf(f.id)?.resetAndDestroy();
      const o = await outcome(rec);
      await p.close();
      return { events: [...o.events, ...after], late: o.late };
    });
    expect(r.node.events).toEqual(['error:ECONNRESET', 'close:true']);
    expect(r.mptls).toEqual(r.node);
  });

  it("a client that rejects the server's certificate: the server's tlsClientError has node's code", async () => {
    const codes: Record<string, string | undefined> = {};
    for (const impl of IMPLS) {
      const p = await pair(impl);
      await p.close();
      const { createServer } = await import('../../src/api/index.js');
      const server = impl === 'node' ? tls.createServer({ key: fixtures.key, cert: fixtures.cert }) : createServer({ key: fixtures.key, cert: fixtures.cert });
      const err = new Promise<Error & { code?: string }>((res) => server.once('tlsClientError', (e: Error) => res(e)));
      const port = await listen(server);
      const client = impl === 'node' ? tls.connect({ host: '127.0.0.1', port }) : connect({ host: '127.0.0.1', port, mptcp: {} });
      client.on('error', () => {});
      codes[impl] = (await err).code;
      await new Promise<void>((res) => server.close(() => res()));
    }
    expect(codes.mptls).toBe(codes.node);
  });
});

describe('signal, compared with node:tls', () => {
  it("an already-aborted signal: one 'error' (AbortError), one 'close'", async () => {
    const r = await both(async (impl) => {
      const signal = AbortSignal.abort();
      const co = { host: '127.0.0.1', port: 9, ca: fixtures.ca, signal } as tls.ConnectionOptions;
      const client: tls.TLSSocket = impl === 'node' ? tls.connect(co) : connect({ ...co, mptcp: {} });
      const rec = record(client);
      return outcome(rec);
    });
    expect(r.node.events).toEqual(['error:ABORT_ERR', 'close:false']);
    expect(r.mptls.events).toEqual(r.node.events);
    // node itself goes on to try the connection and emits a second 'close'; mptls opens no subflow and says nothing more.
    expect(r.mptls.late).toEqual([]);
  });

  it("a signal aborted after connecting: one 'error', one 'close'", async () => {
    const r = await both(async (impl) => {
      const ac = new AbortController();
      const p = await pair(impl, { client: { signal: ac.signal } as Partial<tls.ConnectionOptions> });
      const rec = record(p.client);
      ac.abort();
      const o = await outcome(rec);
      await p.close();
      return o;
    });
    expect(r.mptls).toEqual(r.node);
  });
});
