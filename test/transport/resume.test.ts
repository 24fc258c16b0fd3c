/**
 * Connections that outlive their paths (issue 13), on loopback: a client
 * whose every subflow dies at once mid-transfer is parked, re-joins and
 * resumes, and the bytes arrive intact; with `resumeTimeoutMs: 0` it closes
 * at once (ECONNRESET, mptlsCode ERR_MPTLS_NO_SUBFLOWS); a resume that cannot
 * happen ends with ETIMEDOUT (ERR_MPTLS_RESUME_TIMEOUT) within the timeout,
 * or at once (ECONNRESET) when the server's port refuses the joins.
 */
import { describe, it, expect, afterEach } from 'vitest';
import net from 'node:net';
import { listen, close, sendBulk, receiveAll, mptlsServer, mptlsConnect, until, type Server } from '../support/servers.js';
import type { MptlsSocket } from '../../src/api/index.js';
import type { UserspaceInfo } from '../../src/transport/index.js';

const MiB = 1024 * 1024;
const servers: net.Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => close(s)));
});

/** Destroys every subflow socket of the client at once (the paths are gone, the connection is not). */
function killAllSubflows(c: MptlsSocket): number[] {
  const info = c.mptcp as UserspaceInfo;
  const killed: number[] = [];
  for (const s of info.subflows()) {
    const sock = info.driver.socketOf(s.id);
    if (sock && !sock.destroyed) {
      sock.destroy();
      killed.push(s.id);
    }
  }
  return killed;
}

/** What a client socket reported: its path events in order, and its errors. */
function watch(c: MptlsSocket) {
  const events: string[] = [];
  const states: string[] = [];
  const down: { id: number; reason: string }[] = [];
  const errors: (Error & { code?: string })[] = [];
  c.on('paths-lost', () => {
    events.push('paths-lost');
    states.push(c.mptcp.state);
  });
  c.on('paths-restored', () => {
    events.push('paths-restored');
    states.push(c.mptcp.state);
  });
  c.on('subflow-down', (d) => down.push(d));
  c.on('error', (e: Error & { code?: string }) => errors.push(e));
  return { events, states, down, errors };
}

/** A server that hashes what it receives; `onBytes` sees the running count. */
function sinkServer(opts: Parameters<typeof mptlsServer>[0], onBytes?: (n: number) => void) {
  let received = 0;
  const results: Promise<{ bytes: number; sha256: string }>[] = [];
  const serverErrors: Error[] = [];
  const server: Server = mptlsServer(opts, (s) => {
    s.on('error', (e) => serverErrors.push(e));
    s.on('data', (d: Buffer) => {
      received += d.length;
      onBytes?.(received);
    });
    results.push(receiveAll(s).catch((e: Error) => ({ bytes: -1, sha256: e.message })));
  });
  servers.push(server);
  return { server, results, serverErrors, received: () => received };
}

/** A server and a two-subflow client, both with `resumeTimeoutMs`, keys confirmed; `lostAt()`: when 'paths-lost' came. */
async function twoPathClient(resumeTimeoutMs: number) {
  const { server } = sinkServer({ mptcp: { resumeTimeoutMs } });
  const port = await listen(server);
  const c = await mptlsConnect(port, { mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'], resumeTimeoutMs } });
  const seen = watch(c);
  await until(() => c.mptcp.subflows().filter((s) => s.state === 'established').length === 2 && c.mptcp.keysConfirmed, 5000, 'two subflows');
  let lost = 0;
  c.once('paths-lost', () => {
    lost = performance.now();
  });
  return { server, port, c, seen, lostAt: () => lost };
}

describe('resume after every path is lost', () => {
  it('32 MiB over 127.0.0.1 + 127.0.0.2: every client subflow destroyed at once mid-transfer → parked, resumed, intact', async () => {
    let c: MptlsSocket | undefined;
    let killed: number[] = [];
    let stateWhileParked: string | undefined;
    const { server, results } = sinkServer({}, (n) => {
      if (n >= 8 * MiB && killed.length === 0 && c) {
        killed = killAllSubflows(c);
        stateWhileParked = undefined;
      }
    });
    const port = await listen(server);
    c = await mptlsConnect(port, { mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] } });
    const seen = watch(c);
    c.once('paths-lost', () => {
      stateWhileParked = c!.mptcp.state;
    });
    await until(() => c!.mptcp.subflows().filter((s) => s.state === 'established').length === 2, 5000, 'two subflows');
    const sent = await sendBulk(c, 32 * MiB);
    await until(() => results.length === 1, 5000, 'server connection');
    const got = await results[0]!;
    expect(killed.length).toBe(2);
    expect(got.bytes).toBe(32 * MiB);
    expect(got.sha256).toBe(sent);
    expect(seen.events).toEqual(['paths-lost', 'paths-restored']);
    expect(seen.states).toEqual(['parked', 'active']);
    expect(stateWhileParked).toBe('parked');
    expect(seen.errors).toEqual([]);
    // Each destroyed subflow was reported down, and new ones (other ids) carried the rest.
    for (const id of killed) expect(seen.down.some((d) => d.id === id)).toBe(true);
    expect(c.mptcp.state).toBe('active');
    const counters = c.mptcp.counters() as Record<string, number>;
    expect(counters.ConnParked).toBe(1);
    expect(counters.ConnResumed).toBe(1);
    expect(server.mptcp.parked).toBe(0);
    c.destroy();
  });

  it("with resumeTimeoutMs: 0 on both ends the connection closes as before: ERR_MPTLS_NO_SUBFLOWS, no 'paths-lost'", async () => {
    const { server, serverErrors } = sinkServer({ mptcp: { resumeTimeoutMs: 0 } });
    const port = await listen(server);
    const c = await mptlsConnect(port, { mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'], resumeTimeoutMs: 0 } });
    const seen = watch(c);
    await until(() => c.mptcp.subflows().filter((s) => s.state === 'established').length === 2 && c.mptcp.keysConfirmed, 5000, 'two subflows');
    c.write(Buffer.alloc(64 * 1024));
    killAllSubflows(c);
    await until(() => seen.errors.length > 0, 5000, 'the error');
    expect(seen.errors[0]!.code).toBe('ECONNRESET');
    expect((seen.errors[0] as Error & { mptlsCode?: string }).mptlsCode).toBe('ERR_MPTLS_NO_SUBFLOWS');
    expect(seen.events).toEqual([]);
    expect(c.mptcp.state).toBe('active');
    await until(() => server.mptcp.connections === 0, 5000, 'the server side closed');
    expect(serverErrors.every((e) => (e as Error & { mptlsCode?: string }).mptlsCode !== 'ERR_MPTLS_RESUME_TIMEOUT')).toBe(true);
  });

  it('a resume that cannot happen (every re-join answered by a port that never speaks mptls) ends with ETIMEDOUT (ERR_MPTLS_RESUME_TIMEOUT) within resumeTimeoutMs', async () => {
    const resumeTimeoutMs = 1500;
    const { server, port, c, seen, lostAt } = await twoPathClient(resumeTimeoutMs);
    // The server stops listening; something else takes the port, accepts and says nothing.
    server.close();
    const muted = new Set<net.Socket>();
    const mute = net.createServer((s) => {
      muted.add(s);
      s.on('error', () => {});
    });
    await new Promise<void>((r) => mute.listen(port, '127.0.0.1', r));
    try {
      killAllSubflows(c);
      await until(() => seen.errors.length > 0, resumeTimeoutMs + 3000, 'the error');
      const elapsed = performance.now() - lostAt();
      expect(seen.events).toEqual(['paths-lost']);
      expect(seen.states).toEqual(['parked']);
      expect(seen.errors[0]!.code).toBe('ETIMEDOUT');
      expect((seen.errors[0] as Error & { mptlsCode?: string }).mptlsCode).toBe('ERR_MPTLS_RESUME_TIMEOUT');
      expect(lostAt()).toBeGreaterThan(0);
      expect(elapsed).toBeGreaterThanOrEqual(resumeTimeoutMs - 50);
      expect(elapsed).toBeLessThan(resumeTimeoutMs + 1000);
      const counters = c.mptcp.counters() as Record<string, number>;
      expect(counters.ConnResumeTimeout).toBe(1);
    } finally {
      mute.close();
      for (const s of muted) s.destroy();
    }
  });

  it('a resume that cannot happen (the server stopped listening: every re-join refused by TCP) fails at once with ECONNRESET, not after resumeTimeoutMs', async () => {
    const resumeTimeoutMs = 5000;
    const { server, port, c, seen, lostAt } = await twoPathClient(resumeTimeoutMs);
    server.close();
    killAllSubflows(c);
    await until(() => seen.errors.length > 0, resumeTimeoutMs, 'the error');
    expect(performance.now() - lostAt()).toBeLessThan(1000);
    expect(seen.events).toEqual(['paths-lost']);
    expect(seen.errors[0]!.code).toBe('ECONNRESET');
    expect((seen.errors[0] as Error & { mptlsCode?: string }).mptlsCode).toBe('ERR_MPTLS_NO_SUBFLOWS');
  });
});

describe('options', () => {
  it('resumeTimeoutMs and the address lists are checked', async () => {
    const { connect, createServer } = await import('../../src/api/index.js');
    expect(() => connect({ port: 1, mptcp: { resumeTimeoutMs: -1 } })).toThrow(expect.objectContaining({ code: 'ERR_MPTLS_INVALID_OPTION' }));
    expect(() => connect({ port: 1, mptcp: { localAddresses: 'all' as unknown as 'auto' } })).toThrow(expect.objectContaining({ code: 'ERR_MPTLS_INVALID_OPTION' }));
    expect(() => createServer({ mptcp: { resumeTimeoutMs: Number.NaN } })).toThrow(expect.objectContaining({ code: 'ERR_MPTLS_INVALID_OPTION' }));
    expect(() => createServer({ mptcp: { announce: '10.0.0.1' as unknown as 'auto' } })).toThrow(expect.objectContaining({ code: 'ERR_MPTLS_INVALID_OPTION' }));
  });

  it("'auto' on both ends works on this host (single-path on a loopback-only host) and kernel/fallback sockets say 'active'", async () => {
    const { server } = sinkServer({ mptcp: { announce: 'auto' } });
    const port = await listen(server);
    const c = await mptlsConnect(port, { mptcp: { localAddresses: 'auto' } });
    expect(c.mptcp.mode).toBe('userspace');
    expect(c.mptcp.state).toBe('active');
    await until(() => c.mptcp.keysConfirmed, 5000, 'keys confirmed');
    const sent = await sendBulk(c, 1 * MiB);
    expect(sent).toHaveLength(64);
    c.destroy();
  });
});
