/**
 * `server.mptcp.metrics()`: the server's multipath state in the Prometheus
 * text exposition format, version 0.0.4 (serve it with
 * `Content-Type: ${metricsContentType}`).
 *
 * Hand-written, not prom-client. The format is small (HELP and TYPE lines,
 * three escapes, one line per sample) and everything exported here is
 * read from live state at scrape time, so prom-client's registry of
 * mutable metric objects would only be a copy to keep in sync. prom-client
 * also brings a process-global default registry (two mptls servers, or an
 * application that uses prom-client itself, would clash on metric names
 * unless every caller handled registries) and process metrics that are the
 * application's business, not a library's. An application that uses
 * prom-client can still serve these: append `metrics()` to its registry's
 * `metrics()` output (the names are all `mptls_`-prefixed).
 *
 * Families:
 * - `mptls_<counter>_total` (counter): every MIB counter of the server's
 *   endpoint (connections count into it), named after the MIB name in
 *   snake case (`MPJoinSynRx` → `mptls_mp_join_syn_rx_total`); HELP says
 *   what it counts and, where Linux has the same counter, its
 *   `MPTcpExt<Name>` in /proc/net/netstat (nstat).
 * - `mptls_acceptor_<stat>_total` (counter): what the listener saw of new
 *   TCP connections (plain, multipath, joins, refused, timeouts, …).
 * - gauges: `mptls_connections` (open multipath connections),
 *   `mptls_connections_parked`, `mptls_joins_pending`,
 *   `mptls_acceptor_pending_subflows`.
 * - per connection, labelled `token` (the server's local token, 8 hex
 *   digits: public on the wire, in every MP_JOIN): `mptls_connection_info`
 *   (1, with mode, state, path_state, keys_confirmed),
 *   `mptls_connection_subflows` (established subflows),
 *   `mptls_connection_bytes_acked`, `mptls_connection_bytes_received`,
 *   `mptls_connection_send_buffered_bytes`,
 *   `mptls_connection_receive_buffered_bytes`.
 * - per subflow, labelled `token` and `subflow` (its id):
 *   `mptls_subflow_info` (1, with state, local and remote address and
 *   port), `mptls_subflow_bytes_sent`, `mptls_subflow_bytes_received`,
 *   `mptls_subflow_rtt_seconds` (once sampled), `mptls_subflow_backup`,
 *   `mptls_subflow_stalled`, `mptls_subflow_queued_bytes`.
 * - `mptls_connections_exported` and `mptls_connections_omitted`: the
 *   per-connection families cover at most `maxConnections` (default 1000)
 *   connections, oldest first; the rest are only counted.
 *
 * Never exported: keys, HMACs, exporter output, key fingerprints, nonces.
 * Everything here comes from counters, the token table's public fields and
 * `Connection.subflowInfo()`.
 */
import { MIB_NAMES, type MibCounters, type MibName } from '../core/mib.js';
import type { Connection } from '../core/connection/index.js';
import type { ServerMptcpInfo } from '../transport/index.js';

/** The Content-Type of `metrics()`'s output. */
export const metricsContentType = 'text/plain; version=0.0.4; charset=utf-8';

/** Default of `MetricsOptions.maxConnections`. */
export const DEFAULT_METRICS_MAX_CONNECTIONS = 1000;

export interface MetricsOptions {
  /**
   * Connections that get per-connection and per-subflow series, at most
   * (oldest first); the others are counted in `mptls_connections_omitted`.
   * Default 1000; 0 exports none.
   */
  maxConnections?: number;
}

/** `server.mptcp` of an mptls server: `ServerMptcpInfo` plus `metrics()`. */
export interface ServerMptcpApi extends ServerMptcpInfo {
  /** The server's metrics in the Prometheus text format 0.0.4 (`metricsContentType`). */
  metrics(options?: MetricsOptions): string;
}

// ---------------------------------------------------------------------------
// The renderer: families in, exposition text out.

export type MetricType = 'counter' | 'gauge';

export interface Sample {
  /** Label names and values, in output order. */
  labels?: Readonly<Record<string, string>>;
  value: number;
}

export interface MetricFamily {
  /** The metric name; for a counter it ends in `_total`. */
  name: string;
  help: string;
  type: MetricType;
  samples: readonly Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** HELP text: backslash and line feed escaped. */
export function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A label value: backslash, double quote and line feed escaped. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** A sample value as the format spells it (Go's ParseFloat reads it back). */
function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/**
 * Renders families in the text format 0.0.4: per family one HELP and one
 * TYPE line, then its samples; a final line feed. Throws a TypeError on
 * what would make the output invalid: a bad metric or label name, a name
 * used by two families (a counter `x_total` and a gauge `x` count as the
 * same family, as OpenMetrics parsers read them), two samples of one family
 * with the same labels, a counter without `_total` or with a negative value.
 */
export function renderPrometheus(families: Iterable<MetricFamily>): string {
  const names = new Set<string>();
  const lines: string[] = [];
  for (const f of families) {
    if (!METRIC_NAME.test(f.name)) throw new TypeError(`invalid metric name ${JSON.stringify(f.name)}`);
    if (f.type === 'counter' && !f.name.endsWith('_total')) throw new TypeError(`counter ${f.name} must end in _total`);
    const base = f.type === 'counter' ? f.name.slice(0, -'_total'.length) : f.name;
    if (names.has(f.name) || names.has(base)) throw new TypeError(`metric ${f.name} rendered twice`);
    names.add(f.name).add(base);
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    const series = new Set<string>();
    for (const s of f.samples) {
      const pairs: string[] = [];
      const seen = new Set<string>();
      for (const [k, v] of Object.entries(s.labels ?? {})) {
        if (!LABEL_NAME.test(k) || k.startsWith('__')) throw new TypeError(`invalid label name ${JSON.stringify(k)} in ${f.name}`);
        if (seen.has(k)) throw new TypeError(`label ${k} twice in ${f.name}`);
        seen.add(k);
        pairs.push(`${k}="${escapeLabelValue(String(v))}"`);
      }
      const labels = pairs.length > 0 ? `{${pairs.join(',')}}` : '';
      const key = [...pairs].sort().join(',');
      if (series.has(key)) throw new TypeError(`duplicate series ${f.name}${labels}`);
      series.add(key);
      if (f.type === 'counter' && !(s.value >= 0)) throw new TypeError(`counter ${f.name} with value ${s.value}`);
      lines.push(`${f.name}${labels} ${formatValue(s.value)}`);
    }
  }
  return lines.length > 0 ? `${lines.join('\n')}\n` : '';
}

// ---------------------------------------------------------------------------
// MIB counters: names and help.

/** MIB names Linux has too (`MPTcpExt<Name>` in /proc/net/netstat), counting the same event. */
const LINUX_MIB = new Set<MibName>([
  'MPCapableSYNRX', 'MPCapableSYNTX', 'MPCapableSYNACKRX', 'MPCapableACKRX',
  'MPJoinSynTx', 'MPJoinSynRx', 'MPJoinSynAckRx', 'MPJoinSynAckHMacFailure', 'MPJoinAckRx', 'MPJoinAckHMacFailure', 'MPJoinNoTokenFound', 'MPJoinRejected',
  'DSSNotMatching', 'DuplicateData', 'OFOQueue', 'OFOQueueTail', 'RcvPruned',
  'AddAddr', 'AddAddrTx', 'AddAddrDrop', 'EchoAdd', 'RmAddr', 'RmAddrDrop', 'RmAddrTx', 'RmSubflow', 'MPPrioTx', 'MPPrioRx',
  'MPFailRx', 'MPFastcloseTx', 'MPFastcloseRx', 'MPRstTx', 'MPRstRx', 'SubflowStale', 'SubflowRecover',
]);

/** What each MIB counter counts (a Record: a new MIB name fails to compile until it is described). */
const MIB_HELP: Record<MibName, string> = {
  MPCapableSYNRX: 'MP_CAPABLE SYNs received (new multipath connections offered).',
  MPCapableSYNTX: 'MP_CAPABLE SYNs sent.',
  MPCapableSYNACKRX: 'MP_CAPABLE SYN/ACKs received.',
  MPCapableACKRX: 'MP_CAPABLE third ACKs received (the server side of the handshake done).',
  MPCapableExternalKeys: 'MP_CAPABLE handshakes completed in external-key (G bit, TLS-bound) mode.',
  MPCapableModeRefused: 'MP_CAPABLE SYNs refused: key mode not accepted by this server.',
  MPCapableIncomplete: 'Connections whose TLS handshake finished before the MP_CAPABLE exchange (no keys context): closed.',
  TokenCollisions: 'Random keys drawn again because their token was taken (rfc8684 mode).',
  TokenExhausted: 'Connections refused because no free token was found.',
  MPJoinSynTx: 'MP_JOIN SYNs sent.',
  MPJoinSynRx: 'MP_JOIN SYNs received.',
  MPJoinSynAckRx: 'MP_JOIN SYN/ACKs received.',
  MPJoinSynAckHMacFailure: 'MP_JOIN SYN/ACKs whose HMAC did not verify.',
  MPJoinAckRx: 'MP_JOIN third ACKs received.',
  MPJoinAckHMacFailure: 'MP_JOIN third ACKs whose HMAC did not verify.',
  MPJoinNoTokenFound: 'MP_JOIN SYNs naming an unknown token.',
  MPJoinBeforeKeys: 'MP_JOIN SYNs refused because the connection had no keys yet.',
  MPJoinRejected: 'MP_JOIN SYNs refused.',
  MPJoinTimeout: 'Joins that did not complete in time (join ACK or join timeout).',
  MPJoinEvicted: 'Pending joins evicted to make room in a full join pool.',
  MPJoinSourceLimit: 'MP_JOIN SYNs refused: too many pending joins from their source.',
  MPJoinHeld: 'Early MP_JOIN SYNs held until the connection\'s keys are installed.',
  MPJoinHeldReleased: 'Held early joins answered once the keys were installed.',
  MPJoinHeldTimeout: 'Held early joins reset because the keys did not come in time.',
  MPJoinHeldLimit: 'Early MP_JOIN SYNs refused: too many held on the connection.',
  MPJoinSynAckHeld: 'MP_JOIN SYN/ACKs held by the client until its keys were installed.',
  KeysInstalled: 'Key pairs installed from the TLS exporter.',
  NewKeyTx: 'NEW_KEY options sent (proof of key possession).',
  NewKeyRx: 'NEW_KEY options received and verified.',
  NewKeyHMacFailure: 'NEW_KEY options whose HMAC did not verify.',
  NewKeyUnsupported: 'NEW_KEY options with an unsupported key id.',
  TlsRenegotiationRefused: 'TLS renegotiations refused on multipath connections.',
  TlsBindingRefused: 'TLS sessions refused as a key source (weak TLS 1.2 binding).',
  HandshakeTimeout: 'Multipath connections closed because the MP_CAPABLE and TLS handshake did not finish in time.',
  MPCapableRefused: 'MP_CAPABLE SYNs answered with MP_TCPRST by the server.',
  DSSNotMatching: 'DSS mappings that contradicted an earlier one.',
  DSSNoMapping: 'Payload or DATA_FIN received without a DSS mapping.',
  DataAckInvalid: 'Data-level or subflow-level ACKs for data never sent.',
  DuplicateData: 'Segments carrying data already received.',
  OFOQueue: 'Segments queued out of order.',
  OFOQueueTail: 'Out-of-order segments queued at the tail.',
  RcvWndExceeded: 'Segments beyond the advertised receive window.',
  RcvPruned: 'Subflows reset because their out-of-order data exceeded the receive budget.',
  Reinjected: 'Segments reinjected on another subflow.',
  ReinjectedBytes: 'Bytes reinjected on another subflow.',
  SubflowStale: 'Subflows marked stale (no progress within their stall timeout).',
  SubflowRecover: 'Stale subflows that made progress again.',
  AddAddr: 'ADD_ADDR options received (echo flag clear).',
  AddAddrTx: 'ADD_ADDR options sent.',
  AddAddrDrop: 'ADD_ADDR options ignored (unauthenticated, over the limit, or not for this side).',
  AddAddrHMacFailure: 'ADD_ADDR options whose HMAC did not verify.',
  AddAddrPolicyDrop: 'Announced addresses not joined because of the address policy.',
  AddAddrJoinLimit: 'Announced addresses given up after too many failed joins.',
  EchoAddSuppressed: 'ADD_ADDR echoes not sent again for an address already echoed.',
  EchoAdd: 'ADD_ADDR echoes received.',
  RmAddr: 'REMOVE_ADDR options received.',
  RmAddrDrop: 'REMOVE_ADDR address ids ignored (unknown).',
  RmAddrTx: 'REMOVE_ADDR options sent.',
  RmSubflow: 'Subflows closed because their address was removed.',
  MPPrioTx: 'MP_PRIO options sent.',
  MPPrioRx: 'MP_PRIO options received.',
  MPFailRx: 'MP_FAIL options received.',
  MPFastcloseTx: 'MP_FASTCLOSE options sent.',
  MPFastcloseRx: 'MP_FASTCLOSE options received and verified.',
  MPFastcloseBadKey: 'MP_FASTCLOSE options with a wrong key (ignored).',
  MPRstTx: 'MP_TCPRST options sent.',
  MPRstRx: 'MP_TCPRST options received.',
  DataFinTx: 'DATA_FINs sent.',
  DataFinRx: 'DATA_FINs received and accepted.',
  DataFinAuthFailure: 'DATA_FINs without a valid MAC (ignored).',
  ProtocolError: 'Protocol errors by the peer (malformed or out-of-place options or frames).',
  SubflowLimit: 'Subflows or joins refused or not opened: subflow or pending-join limit.',
  ConnParked: 'Connections parked after losing every subflow.',
  ConnParkRefused: 'Connections closed instead of parked: too many parked.',
  ConnResumed: 'Parked connections resumed by a join.',
  ConnResumeTimeout: 'Parked connections closed because no join came in time.',
  ConnectionLimit: 'Connections refused: connection limit reached.',
};

/** `MPJoinSynAckHMacFailure` → `mp_join_syn_ack_hmac_failure`: Linux's acronyms split the way their words are. */
export function mibMetricName(name: MibName): string {
  const words = name
    .replace(/SYNACK/g, 'SynAck')
    .replace(/SYN/g, 'Syn')
    .replace(/ACK/g, 'Ack')
    .replace(/RX$/, 'Rx')
    .replace(/TX$/, 'Tx')
    .replace(/HMac/g, 'Hmac')
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .toLowerCase();
  return `mptls_${words}_total`;
}

function mibHelp(name: MibName): string {
  const linux = LINUX_MIB.has(name) ? `Linux: MPTcpExt${name}` : 'mptls only';
  return `${MIB_HELP[name]} (MIB ${name}; ${linux})`;
}

// ---------------------------------------------------------------------------
// The acceptor's own counters.

const ACCEPTOR_HELP: Record<string, string> = {
  plain: 'TCP connections handed to node:tls as plain (non-multipath) clients.',
  multipath: 'TCP connections that opened a new multipath connection.',
  joins: 'TCP connections that joined an existing multipath connection.',
  refused: 'New subflows refused (MP_TCPRST) before they belonged to a connection.',
  preambleTimeouts: 'New TCP connections closed for not sending their preamble and first frame in time.',
  badFirstFrame: 'New TCP connections closed for an unparsable preamble or first frame.',
  overload: 'New TCP connections dropped: the pending-subflow pool was full and nobody could be evicted.',
  evicted: 'Pending subflows dropped (oldest first) to make room for a new TCP connection.',
};

function snake(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/[^a-zA-Z0-9_]/g, '_').toLowerCase();
}

// ---------------------------------------------------------------------------
// The server's families.

/** What `serverMetrics` reads: `server.mptcp` (structural, so tests can hand in a stand-in). */
export interface MetricsSource {
  readonly connections: number;
  readonly parked: number;
  counters(): MibCounters;
  readonly endpoint: { readonly pendingJoinCount: number; connections(): Iterable<Connection> };
  readonly acceptor: { readonly stats: Readonly<Record<string, number>>; readonly pendingSubflows: number };
}

const tokenLabel = (token: number): string => (token >>> 0).toString(16).padStart(8, '0');

/** The families of `server.mptcp.metrics()`. */
export function serverFamilies(src: MetricsSource, options: MetricsOptions = {}): MetricFamily[] {
  const asked = options.maxConnections ?? DEFAULT_METRICS_MAX_CONNECTIONS;
  const cap = Number.isNaN(asked) ? DEFAULT_METRICS_MAX_CONNECTIONS : Math.max(0, Math.floor(asked));
  const counters = src.counters();
  const families: MetricFamily[] = MIB_NAMES.map((n) => ({ name: mibMetricName(n), help: mibHelp(n), type: 'counter', samples: [{ value: counters[n] ?? 0 }] }));

  for (const [k, v] of Object.entries(src.acceptor.stats)) {
    families.push({
      name: `mptls_acceptor_${snake(k)}_total`,
      help: ACCEPTOR_HELP[k] ?? `Acceptor events: ${k}.`,
      type: 'counter',
      samples: [{ value: v }],
    });
  }
  const gauge = (name: string, help: string, value: number): MetricFamily => ({ name, help, type: 'gauge', samples: [{ value }] });
  families.push(
    gauge('mptls_connections', 'Multipath connections open now (parked ones included).', src.connections),
    gauge('mptls_connections_parked', 'Multipath connections parked now: every subflow lost, waiting for the client to join again.', src.parked),
    gauge('mptls_joins_pending', 'Joins waiting for their MP_JOIN ACK (or held for the keys), across connections.', src.endpoint.pendingJoinCount),
    gauge('mptls_acceptor_pending_subflows', 'New TCP connections still sending their preamble and first frame.', src.acceptor.pendingSubflows),
  );

  const connInfo: Sample[] = [];
  const connSubflows: Sample[] = [];
  const connSendBuf: Sample[] = [];
  const connRecvBuf: Sample[] = [];
  const connAcked: Sample[] = [];
  const connReceived: Sample[] = [];
  const sfInfo: Sample[] = [];
  const sfSent: Sample[] = [];
  const sfReceived: Sample[] = [];
  const sfRtt: Sample[] = [];
  const sfBackup: Sample[] = [];
  const sfStale: Sample[] = [];
  const sfQueued: Sample[] = [];
  let exported = 0;
  let omitted = 0;
  for (const c of src.endpoint.connections()) {
    if (exported >= cap) {
      omitted++;
      continue;
    }
    exported++;
    const token = tokenLabel(c.localToken);
    connInfo.push({ labels: { token, mode: c.mode, state: c.state, path_state: c.pathState, keys_confirmed: String(c.areKeysConfirmed) }, value: 1 });
    const subflows = c.subflowInfo();
    connSubflows.push({ labels: { token }, value: subflows.filter((s) => s.state === 'established').length });
    connSendBuf.push({ labels: { token }, value: c.bufferedAmount });
    connRecvBuf.push({ labels: { token }, value: c.receiveBuffered });
    connAcked.push({ labels: { token }, value: c.bytesAcked });
    connReceived.push({ labels: { token }, value: c.bytesReceivedInOrder });
    for (const s of subflows) {
      const labels = { token, subflow: String(s.id) };
      sfInfo.push({
        labels: {
          ...labels,
          state: s.state,
          local_address: s.localAddress ?? '',
          local_port: s.localPort === undefined ? '' : String(s.localPort),
          remote_address: s.remoteAddress ?? '',
          remote_port: s.remotePort === undefined ? '' : String(s.remotePort),
        },
        value: 1,
      });
      sfSent.push({ labels, value: s.bytesSent });
      sfReceived.push({ labels, value: s.bytesReceived });
      if (s.rttMs !== undefined && Number.isFinite(s.rttMs)) sfRtt.push({ labels, value: s.rttMs / 1000 });
      sfBackup.push({ labels, value: s.backup ? 1 : 0 });
      sfStale.push({ labels, value: s.stale ? 1 : 0 });
      sfQueued.push({ labels, value: s.queued });
    }
  }
  const labelled = (name: string, help: string, samples: Sample[]): MetricFamily => ({ name, help, type: 'gauge', samples });
  families.push(
    gauge('mptls_connections_exported', 'Connections with per-connection and per-subflow series in this scrape.', exported),
    gauge('mptls_connections_omitted', 'Connections left out of the per-connection series (over maxConnections).', omitted),
    labelled('mptls_connection_info', 'A multipath connection (value 1), by its local token, with its key mode, state, path state and key confirmation.', connInfo),
    labelled('mptls_connection_subflows', 'Established subflows of a connection.', connSubflows),
    labelled('mptls_connection_bytes_acked', 'Data-level bytes sent on a connection and data-ACKed by the peer.', connAcked),
    labelled('mptls_connection_bytes_received', 'Data-level bytes received in order on a connection.', connReceived),
    labelled('mptls_connection_send_buffered_bytes', 'Bytes written on a connection and not yet data-ACKed.', connSendBuf),
    labelled('mptls_connection_receive_buffered_bytes', 'Bytes held by a connection\'s receive side (unread in order, and out of order).', connRecvBuf),
    labelled('mptls_subflow_info', 'A subflow (value 1) with its state and addresses.', sfInfo),
    labelled('mptls_subflow_bytes_sent', 'Payload bytes sent on a subflow.', sfSent),
    labelled('mptls_subflow_bytes_received', 'Payload bytes received on a subflow.', sfReceived),
    labelled('mptls_subflow_rtt_seconds', 'Smoothed RTT of a subflow, once sampled.', sfRtt),
    labelled('mptls_subflow_backup', 'Whether a subflow is a backup path (1) or not (0).', sfBackup),
    labelled('mptls_subflow_stalled', 'Whether a subflow is stale now (1: no progress within its stall timeout) or not (0).', sfStale),
    labelled('mptls_subflow_queued_bytes', 'Bytes written to a subflow\'s socket and not sent yet (Node\'s buffer, plus the kernel\'s with the TCP_INFO probe).', sfQueued),
  );
  return families;
}

/** `server.mptcp.metrics()`: the families rendered. */
export function serverMetrics(src: MetricsSource, options?: MetricsOptions): string {
  return renderPrometheus(serverFamilies(src, options));
}

/** Gives `server.mptcp` its `metrics()`. @internal used by enableMultipath */
export function withMetrics(info: ServerMptcpInfo): ServerMptcpApi {
  return Object.assign(info, { metrics: (options?: MetricsOptions) => serverMetrics(info, options) });
}
