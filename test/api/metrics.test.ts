/**
 * `server.mptcp.metrics()`: a real server and a two-subflow client on
 * loopback, the exposition text read back by an independent parser
 * (Debian's python3-prometheus-client, `text_string_to_metric_families`),
 * and the renderer on crafted input: escaping, values, duplicates, the
 * cardinality cap. Nothing secret in the text: the keys (test-only
 * accessor) and the key fingerprints of both sides are searched for.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import type net from 'node:net';
import { listen, close, mptlsServer, mptlsConnect, until } from '../support/servers.js';
import type { MptlsSocket } from '../../src/api/index.js';
import {
  metricsContentType,
  mibMetricName,
  renderPrometheus,
  serverMetrics,
  escapeLabelValue,
  type MetricFamily,
  type MetricsSource,
  type ServerMptcpApi,
} from '../../src/api/metrics.js';
import { MIB_NAMES, type MibCounters } from '../../src/core/mib.js';
import { keysForTesting, type Connection } from '../../src/core/connection/index.js';
import type { UserspaceInfo } from '../../src/transport/userspace/info.js';

const PYTHON = '/usr/bin/python3';

interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number | string;
}
interface ParsedFamily {
  name: string;
  type: string;
  documentation: string;
  samples: ParsedSample[];
}

/** Parses exposition text with prometheus_client's parser; non-finite values come back as 'inf', '-inf', 'nan'. */
const PARSE = `
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({'name': f.name, 'type': f.type, 'documentation': f.documentation,
                'samples': [{'name': s.name, 'labels': s.labels, 'value': s.value if math.isfinite(s.value) else repr(s.value)} for s in f.samples]})
print(json.dumps(out))
`;

const parser = ((): { ok: boolean; reason: string } => {
  if (!existsSync(PYTHON)) return { ok: false, reason: `${PYTHON} not found` };
  const r = spawnSync(PYTHON, ['-c', 'import prometheus_client.parser'], { encoding: 'utf8', timeout: 20_000 });
  return r.status === 0 ? { ok: true, reason: 'prometheus_client' } : { ok: false, reason: 'python3-prometheus-client not installed (apt-get install python3-prometheus-client)' };
})();

function parse(text: string): ParsedFamily[] {
  if (!parser.ok) throw new Error(parser.reason);
  const r = spawnSync(PYTHON, ['-c', PARSE], { input: text, encoding: 'utf8', timeout: 30_000, maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`prometheus_client failed to parse: ${r.error?.message ?? r.stderr}`);
  return JSON.parse(r.stdout) as ParsedFamily[];
}

/** prometheus_client names a counter family without `_total`. */
const familyName = (metric: string) => metric.replace(/_total$/, '');

function byName(families: ParsedFamily[]): Map<string, ParsedFamily> {
  const m = new Map<string, ParsedFamily>();
  for (const f of families) {
    expect(m.has(f.name), `family ${f.name} once`).toBe(false);
    m.set(f.name, f);
  }
  return m;
}

/** The lines of the text, checked against the 0.0.4 grammar as this renderer writes it. */
function checkLines(text: string): void {
  expect(text.endsWith('\n')).toBe(true);
  expect(text.endsWith('\n\n')).toBe(false);
  const families = new Set<string>();
  let current = '';
  const bad = (line: string, why: string) => expect.fail(`${why}: ${JSON.stringify(line)}`);
  for (const line of text.slice(0, -1).split('\n')) {
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge)$/.exec(line);
    if (help) {
      if (families.has(help[1])) bad(line, 'a second HELP');
      families.add(help[1]);
      current = help[1];
    } else if (type) {
      if (type[1] !== current) bad(line, 'TYPE not after its HELP');
    } else {
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (\S+)$/.exec(line);
      if (!m) bad(line, 'not a sample line');
      else if (m[1] !== current) bad(line, 'sample outside its family');
    }
  }
}

const servers: net.Server[] = [];
const clients: MptlsSocket[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await Promise.all(servers.splice(0).map((s) => close(s)));
});

const established = (s: MptlsSocket) => s.mptcp.subflows().filter((x) => x.state === 'established').length;
const hex8 = (n: number) => (n >>> 0).toString(16).padStart(8, '0');

describe.skipIf(!parser.ok && !process.env.CI)(`server.mptcp.metrics() read by prometheus_client (${parser.reason})`, () => {
  it('a two-subflow connection after a transfer: families, types, values, nothing secret', async () => {
    let serverSocket: MptlsSocket | undefined;
    let received = 0;
    const server = mptlsServer({}, (s) => {
      serverSocket = s;
      s.on('data', (d: Buffer) => {
        received += d.length;
        s.write(d.subarray(0, 16));
      });
    });
    servers.push(server);
    const port = await listen(server);
    const c = await mptlsConnect(port, { mptcp: { localAddresses: ['127.0.0.1', '127.0.0.2'] } });
    clients.push(c);
    await until(() => serverSocket !== undefined && established(c) === 2 && established(serverSocket) === 2, 5000, 'both subflows on both sides');
    const size = 2 * 1024 * 1024;
    c.write(Buffer.alloc(size, 0x61));
    await until(() => received === size, 10_000, 'the transfer');
    await until(() => c.mptcp.keysConfirmed && serverSocket!.mptcp.keysConfirmed, 5000, 'keys confirmed');

    const mptcp = server.mptcp as ServerMptcpApi;
    expect(typeof mptcp.metrics).toBe('function');
    const text = mptcp.metrics();
    const counters = mptcp.counters();
    const stats = { ...mptcp.acceptor.stats };
    checkLines(text);
    const fams = byName(parse(text));

    // Every MIB counter, as a counter, equal to server.mptcp.counters().
    for (const n of MIB_NAMES) {
      const f = fams.get(familyName(mibMetricName(n)));
      expect(f, n).toBeDefined();
      expect(f!.type).toBe('counter');
      expect(f!.documentation).toContain(`MIB ${n}`);
      expect(f!.samples).toEqual([{ name: mibMetricName(n), labels: {}, value: counters[n] }]);
    }
    expect(counters.MPCapableSYNRX).toBe(1);
    expect(counters.MPJoinAckRx).toBe(1);
    expect(fams.get('mptls_mp_capable_syn_rx')!.documentation).toContain('Linux: MPTcpExtMPCapableSYNRX');
    expect(fams.get('mptls_keys_installed')!.documentation).toContain('mptls only');
    // The acceptor's own counters.
    for (const [k, v] of Object.entries(stats)) {
      const name = `mptls_acceptor_${k.replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase()}`;
      expect(fams.get(name)?.type, name).toBe('counter');
      expect(fams.get(name)!.samples[0].value).toBe(v);
    }
    expect(fams.get('mptls_acceptor_multipath')!.samples[0].value).toBe(1);
    expect(fams.get('mptls_acceptor_joins')!.samples[0].value).toBe(1);

    const gauge = (name: string) => {
      const f = fams.get(name);
      expect(f?.type, name).toBe('gauge');
      return f!.samples;
    };
    expect(gauge('mptls_connections')).toEqual([{ name: 'mptls_connections', labels: {}, value: 1 }]);
    expect(gauge('mptls_connections_parked')[0].value).toBe(0);
    expect(gauge('mptls_joins_pending')[0].value).toBe(0);
    expect(gauge('mptls_acceptor_pending_subflows')[0].value).toBe(0);
    expect(gauge('mptls_connections_exported')[0].value).toBe(1);
    expect(gauge('mptls_connections_omitted')[0].value).toBe(0);

    // Per connection, by the server's local token (the client's remote token).
    const token = hex8(serverSocket!.mptcp.tokens!.local);
    expect(hex8(c.mptcp.tokens!.remote)).toBe(token);
    expect(gauge('mptls_connection_subflows')).toEqual([{ name: 'mptls_connection_subflows', labels: { token }, value: 2 }]);
    expect(gauge('mptls_connection_info')).toEqual([
      { name: 'mptls_connection_info', labels: { token, mode: 'external', state: 'established', path_state: 'active', keys_confirmed: 'true' }, value: 1 },
    ]);
    // Data level: the TLS records that carried the bytes (a few per 16 KiB of payload).
    const dataReceived = gauge('mptls_connection_bytes_received');
    expect(dataReceived.map((s) => s.labels)).toEqual([{ token }]);
    expect(dataReceived[0].value).toBeGreaterThanOrEqual(size);
    expect(dataReceived[0].value).toBeLessThan(size * 1.01);

    // Per subflow: ids 0 and 1, established, addresses, bytes that add up.
    const info = gauge('mptls_subflow_info');
    expect(info.map((s) => s.labels.subflow).sort()).toEqual(['0', '1']);
    for (const s of info) {
      expect(s.labels).toMatchObject({ token, state: 'established', local_address: '127.0.0.1' });
      expect(['127.0.0.1', '127.0.0.2']).toContain(s.labels.remote_address);
    }
    const received0 = gauge('mptls_subflow_bytes_received');
    expect(received0).toHaveLength(2);
    const sum = received0.reduce((a, s) => a + Number(s.value), 0);
    expect(sum).toBeGreaterThanOrEqual(size);
    for (const name of ['mptls_subflow_bytes_sent', 'mptls_subflow_backup', 'mptls_subflow_stalled', 'mptls_subflow_queued_bytes']) {
      expect(gauge(name).map((s) => s.labels).sort((a, b) => a.subflow.localeCompare(b.subflow))).toEqual([
        { token, subflow: '0' },
        { token, subflow: '1' },
      ]);
    }
    for (const s of gauge('mptls_subflow_rtt_seconds')) expect(Number(s.value)).toBeGreaterThan(0);
    expect(gauge('mptls_subflow_rtt_seconds').length).toBeGreaterThan(0);

    // No duplicate series anywhere.
    for (const f of fams.values()) {
      const keys = f.samples.map((s) => `${s.name}${JSON.stringify(Object.entries(s.labels).sort())}`);
      expect(new Set(keys).size, f.name).toBe(keys.length);
    }

    // Nothing secret: the keys of both sides and their fingerprints, in hex (either case) and base64.
    const secrets: string[] = [];
    for (const s of [c, serverSocket!]) {
      const fp = s.mptcp.keyFingerprints!;
      expect(fp).toBeDefined();
      secrets.push(fp.keyA, fp.keyB);
      const k = keysForTesting((s.mptcp as UserspaceInfo).driver.conn);
      for (const key of [k.localKey!, k.remoteKey!]) {
        expect(key).toHaveLength(8);
        const b = Buffer.from(key);
        secrets.push(b.toString('hex'), b.toString('base64'), b.readBigUInt64BE().toString());
      }
    }
    for (const secret of secrets) {
      expect(text.toLowerCase()).not.toContain(secret.toLowerCase());
    }
  });

  it('the cardinality cap: per-connection series for at most maxConnections, the rest counted', async () => {
    const server = mptlsServer({}, (s) => s.resume());
    servers.push(server);
    const port = await listen(server);
    for (let i = 0; i < 2; i++) clients.push(await mptlsConnect(port));
    const mptcp = server.mptcp as ServerMptcpApi;
    await until(() => mptcp.connections === 2, 5000, 'two connections');
    const none = byName(parse(mptcp.metrics({ maxConnections: 0 })));
    expect(none.get('mptls_connections')!.samples[0].value).toBe(2);
    expect(none.get('mptls_connections_exported')!.samples[0].value).toBe(0);
    expect(none.get('mptls_connections_omitted')!.samples[0].value).toBe(2);
    expect(none.get('mptls_connection_info')!.samples).toEqual([]);
    expect(none.get('mptls_subflow_info')!.samples).toEqual([]);
    const one = byName(parse(mptcp.metrics({ maxConnections: 1 })));
    expect(one.get('mptls_connections_exported')!.samples[0].value).toBe(1);
    expect(one.get('mptls_connections_omitted')!.samples[0].value).toBe(1);
    expect(one.get('mptls_connection_info')!.samples).toHaveLength(1);
    // The default cap (1000) with a stand-in endpoint of 1500 connections.
    const fake = fakeSource(1500);
    const text = serverMetrics(fake);
    const fams = byName(parse(text));
    expect(fams.get('mptls_connections_exported')!.samples[0].value).toBe(1000);
    expect(fams.get('mptls_connections_omitted')!.samples[0].value).toBe(500);
    expect(fams.get('mptls_connection_info')!.samples).toHaveLength(1000);
    expect(fams.get('mptls_subflow_info')!.samples).toHaveLength(1000);
    checkLines(text);
  });

  it('escapes label values and help text; non-finite values; empty families', () => {
    const nasty = ['a"b', 'back\\slash', 'new\nline', '\\"\n', 'trailing\\', 'ünïcødé ✓', ''];
    const families: MetricFamily[] = [
      { name: 'test_escapes', help: 'Help with a \\ backslash,\na line feed and "quotes".', type: 'gauge', samples: nasty.map((v, i) => ({ labels: { v, i: String(i) }, value: i })) },
      { name: 'test_values', help: 'Values.', type: 'gauge', samples: [{ labels: { k: 'nan' }, value: NaN }, { labels: { k: 'inf' }, value: Infinity }, { labels: { k: 'ninf' }, value: -Infinity }, { labels: { k: 'small' }, value: 1.5e-7 }, { labels: { k: 'big' }, value: 2 ** 53 }] },
      { name: 'test_things_total', help: 'A counter.', type: 'counter', samples: [{ value: 3 }] },
      { name: 'test_empty', help: 'No samples.', type: 'gauge', samples: [] },
    ];
    const text = renderPrometheus(families);
    expect(text).toContain('# HELP test_escapes Help with a \\\\ backslash,\\na line feed and "quotes".\n');
    expect(text).toContain('test_escapes{v="a\\"b",i="0"} 0\n');
    expect(text).toContain('test_escapes{v="back\\\\slash",i="1"} 1\n');
    expect(text).toContain('test_escapes{v="new\\nline",i="2"} 2\n');
    expect(text).toContain('test_escapes{v="\\\\\\"\\n",i="3"} 3\n');
    expect(text).toContain('test_values{k="nan"} NaN\ntest_values{k="inf"} +Inf\ntest_values{k="ninf"} -Inf\n');
    expect(escapeLabelValue('x\\"\ny')).toBe('x\\\\\\"\\ny');
    checkLines(text);
    const fams = byName(parse(text));
    expect(fams.get('test_escapes')!.documentation).toBe('Help with a \\ backslash,\na line feed and "quotes".');
    expect(fams.get('test_escapes')!.samples.map((s) => s.labels.v)).toEqual(nasty);
    expect(fams.get('test_values')!.samples.map((s) => s.value)).toEqual(['nan', 'inf', '-inf', 1.5e-7, 2 ** 53]);
    expect(fams.get('test_things')).toMatchObject({ type: 'counter', samples: [{ name: 'test_things_total', value: 3 }] });
    expect(fams.get('test_empty')).toMatchObject({ type: 'gauge', samples: [] });
    expect(renderPrometheus([])).toBe('');
  });
});

describe('the renderer refuses what would be invalid', () => {
  const g = (name: string, samples: MetricFamily['samples'] = [{ value: 1 }]): MetricFamily => ({ name, help: 'h', type: 'gauge', samples });
  it('bad names, a family twice, a duplicate series, a bad counter', () => {
    expect(() => renderPrometheus([g('1abc')])).toThrow(TypeError);
    expect(() => renderPrometheus([g('a-b')])).toThrow(TypeError);
    expect(() => renderPrometheus([g('ok', [{ labels: { 'bad-label': 'x' }, value: 1 }])])).toThrow(TypeError);
    expect(() => renderPrometheus([g('ok', [{ labels: { __reserved: 'x' }, value: 1 }])])).toThrow(TypeError);
    expect(() => renderPrometheus([g('twice'), g('twice')])).toThrow(/twice/);
    expect(() => renderPrometheus([{ name: 'x_total', help: 'h', type: 'counter', samples: [{ value: 1 }] }, g('x')])).toThrow(/twice/);
    expect(() => renderPrometheus([g('x'), { name: 'x_total', help: 'h', type: 'counter', samples: [{ value: 1 }] }])).toThrow(/twice/);
    expect(() => renderPrometheus([g('dup', [{ labels: { a: '1', b: '2' }, value: 1 }, { labels: { b: '2', a: '1' }, value: 2 }])])).toThrow(/duplicate series/);
    expect(() => renderPrometheus([g('dup', [{ value: 1 }, { value: 2 }])])).toThrow(/duplicate series/);
    expect(() => renderPrometheus([{ name: 'no_suffix', help: 'h', type: 'counter', samples: [{ value: 1 }] }])).toThrow(/_total/);
    expect(() => renderPrometheus([{ name: 'neg_total', help: 'h', type: 'counter', samples: [{ value: -1 }] }])).toThrow(TypeError);
  });

  it('MIB names map to distinct, valid snake-case counter names', () => {
    const names = MIB_NAMES.map(mibMetricName);
    expect(new Set(names).size).toBe(MIB_NAMES.length);
    for (const n of names) expect(n).toMatch(/^mptls_[a-z0-9]+(_[a-z0-9]+)*_total$/);
    expect(mibMetricName('MPCapableSYNACKRX')).toBe('mptls_mp_capable_syn_ack_rx_total');
    expect(mibMetricName('MPCapableSYNRX')).toBe('mptls_mp_capable_syn_rx_total');
    expect(mibMetricName('MPJoinSynAckHMacFailure')).toBe('mptls_mp_join_syn_ack_hmac_failure_total');
    expect(mibMetricName('DSSNotMatching')).toBe('mptls_dss_not_matching_total');
    expect(mibMetricName('OFOQueueTail')).toBe('mptls_ofo_queue_tail_total');
    expect(mibMetricName('TlsBindingRefused')).toBe('mptls_tls_binding_refused_total');
    expect(metricsContentType).toBe('text/plain; version=0.0.4; charset=utf-8');
  });
});

/** A stand-in for `server.mptcp` with `n` one-subflow connections (tokens 1…n). */
function fakeSource(n: number): MetricsSource {
  const conns = Array.from({ length: n }, (_, i) => ({
    localToken: i + 1,
    mode: 'external',
    state: 'established',
    pathState: 'active',
    areKeysConfirmed: true,
    bufferedAmount: 0,
    receiveBuffered: 0,
    bytesAcked: 10,
    bytesReceivedInOrder: 20,
    subflowInfo: () => [{ id: 0, state: 'established', initial: true, localAddressId: 0, remoteAddressId: 0, localAddress: '127.0.0.1', localPort: 443, remoteAddress: '127.0.0.1', remotePort: 40000 + (i % 20000), backup: false, stale: false, bytesSent: 10, bytesReceived: 20, rttMs: 0.5, queued: 0 }],
  })) as unknown as Connection[];
  const counters = Object.fromEntries(MIB_NAMES.map((m) => [m, 0])) as MibCounters;
  return {
    connections: n,
    parked: 0,
    counters: () => counters,
    endpoint: { pendingJoinCount: 0, connections: () => conns.values() },
    acceptor: { stats: { multipath: n }, pendingSubflows: 0 },
  };
}
