/**
 * `haproxyConfig()`: a complete haproxy.cfg (mode tcp) for mptls servers
 * behind one HAProxy frontend, without per-connection state in the balancer
 * (docs/PROTOCOL.md §2.1).
 *
 * Every server runs with `createServer({ mptcp: { serverId } })`, so each
 * token it issues carries its id in the top byte. The frontend looks at the
 * first bytes of each TCP connection (docs/PROTOCOL.md §5.3):
 *
 * - first byte 0x16 (plain TLS), or anything that is not mptls: round-robin;
 * - the mptls magic and subtype nibble 0 at offset 26 (MP_CAPABLE, a new
 *   multipath connection): round-robin;
 * - the mptls magic and subtype nibble 1 (MP_JOIN): to the backend whose id
 *   is the receiver token's top byte, `req.payload(28,1)`. A join for an id
 *   no backend has goes round-robin too and is refused there (MP_TCPRST,
 *   counted as MPJoinNoTokenFound), as any unknown token is.
 *
 * `tokenRouting: false` gives the naive configuration (everything
 * round-robin), where most joins reach a server that never issued their token.
 */
import net from 'node:net';
import { FIRST_SUBTYPE_OFFSET, FRAME_HEADER_LENGTH, JOIN_TOKEN_OFFSET, MAGIC, PREAMBLE_LENGTH, VERSION } from '../transport/userspace/frame.js';

/** A host and a port; `host` is an IPv4 address, an IPv6 address (no brackets) or a DNS name. */
export interface HostPort {
  host: string;
  port: number;
}

/** One mptls server: its `mptcp.serverId` and where the balancer reaches it. */
export interface HaproxyBackend extends HostPort {
  id: number;
}

export interface HaproxyConfigOptions {
  /** The frontend's address: "HOST:PORT", "[IPv6]:PORT" or { host, port }. */
  listen: string | HostPort;
  /** The mptls servers: "ID=HOST:PORT" or { id, host, port }; ids 0..255, unique. */
  backends: readonly (string | HaproxyBackend)[];
  /** Route MP_JOINs by the token's server id (default true). false: everything round-robin (the naive config). */
  tokenRouting?: boolean;
  /** How long the frontend waits for the first bytes of a connection (default 5000 ms). */
  inspectDelayMs?: number;
  /** Idle timeout of a forwarded subflow, both directions (default 3 600 000 ms: subflows may idle). */
  idleTimeoutMs?: number;
  /** Connect timeout to a backend (default 5000 ms). */
  connectTimeoutMs?: number;
  /** global maxconn (default: none, HAProxy derives it from the file descriptor limit). */
  maxconn?: number;
  /** Log one line per forwarded connection to stdout (`option tcplog`; default true). */
  log?: boolean;
}

/** A bad argument to haproxyConfig (the CLI turns it into a usage error). */
export class HaproxyConfigError extends Error {
  override readonly name = 'HaproxyConfigError';
  readonly code = 'ERR_MPTLS_HAPROXY_CONFIG';
}

/** Bytes a new multipath connection sends before it waits for the server: preamble, frame header, MP_CAPABLE SYN (4). */
const CAPABLE_FIRST_BYTES = PREAMBLE_LENGTH + FRAME_HEADER_LENGTH + 4;
/** Bytes up to the end of the MP_JOIN receiver token. */
const JOIN_TOKEN_END = JOIN_TOKEN_OFFSET + 4;

const hex2 = (n: number): string => n.toString(16).toUpperCase().padStart(2, '0');
const MAGIC_HEX = Array.from(MAGIC, hex2).join('');

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

function checkHost(host: string, what: string): string {
  if (typeof host !== 'string' || host === '') throw new HaproxyConfigError(`${what}: a host is required`);
  if (net.isIP(host)) return host;
  if (/^\d+(\.\d+)*$/.test(host)) throw new HaproxyConfigError(`${what}: not an IPv4 address: ${JSON.stringify(host)}`);
  if (!HOSTNAME.test(host)) throw new HaproxyConfigError(`${what}: not an IP address or host name: ${JSON.stringify(host)}`);
  return host;
}

function checkPort(port: unknown, what: string): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new HaproxyConfigError(`${what}: port must be an integer 1..65535, got ${JSON.stringify(port)}`);
  }
  return port;
}

/** Parses "HOST:PORT" or "[IPv6]:PORT". */
export function parseHostPort(s: string, what = 'address'): HostPort {
  if (typeof s !== 'string') throw new HaproxyConfigError(`${what}: expected HOST:PORT`);
  let host: string;
  let portText: string;
  const v6 = /^\[([^\]]+)\]:([^:]*)$/.exec(s);
  if (v6) {
    host = v6[1];
    portText = v6[2];
    if (!net.isIPv6(host)) throw new HaproxyConfigError(`${what}: not an IPv6 address: ${JSON.stringify(host)}`);
  } else {
    const i = s.lastIndexOf(':');
    if (i < 0) throw new HaproxyConfigError(`${what}: expected HOST:PORT, got ${JSON.stringify(s)}`);
    host = s.slice(0, i);
    portText = s.slice(i + 1);
    if (host.includes(':')) throw new HaproxyConfigError(`${what}: write an IPv6 address in brackets, [ADDR]:PORT, got ${JSON.stringify(s)}`);
  }
  if (!/^\d{1,5}$/.test(portText)) throw new HaproxyConfigError(`${what}: port must be an integer 1..65535, got ${JSON.stringify(portText)}`);
  return { host: checkHost(host, what), port: checkPort(Number(portText), what) };
}

function checkId(id: unknown, what: string): number {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 255) {
    throw new HaproxyConfigError(`${what}: server id must be an integer 0..255 (the top byte of its tokens), got ${JSON.stringify(id)}`);
  }
  return id;
}

/** Parses "ID=HOST:PORT" (ID decimal, 0..255). */
export function parseBackend(s: string): HaproxyBackend {
  if (typeof s !== 'string') throw new HaproxyConfigError('backend: expected ID=HOST:PORT');
  const eq = s.indexOf('=');
  if (eq < 0) throw new HaproxyConfigError(`backend ${JSON.stringify(s)}: expected ID=HOST:PORT (ID = the server's mptcp.serverId, 0..255)`);
  const idText = s.slice(0, eq).trim();
  const what = `backend ${JSON.stringify(s)}`;
  if (!/^\d{1,3}$/.test(idText)) throw new HaproxyConfigError(`${what}: server id must be an integer 0..255 (the top byte of its tokens), got ${JSON.stringify(idText)}`);
  const id = checkId(Number(idText), what);
  return { id, ...parseHostPort(s.slice(eq + 1).trim(), what) };
}

function normaliseBackend(b: string | HaproxyBackend): HaproxyBackend {
  if (typeof b === 'string') return parseBackend(b);
  if (typeof b !== 'object' || b === null) throw new HaproxyConfigError('backend: expected ID=HOST:PORT or { id, host, port }');
  const what = `backend ${JSON.stringify(b)}`;
  return { id: checkId(b.id, what), host: checkHost(b.host, what), port: checkPort(b.port, what) };
}

function checkMs(v: number | undefined, dflt: number, what: string): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v <= 0) throw new HaproxyConfigError(`${what} must be a positive integer (ms), got ${JSON.stringify(v)}`);
  return v;
}

/** A duration in HAProxy's units (ms, s, m, h), exact. */
function duration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** HAProxy address syntax: IPv6 in brackets. */
function addr(h: HostPort): string {
  return `${net.isIPv6(h.host) ? `[${h.host}]` : h.host}:${h.port}`;
}

/** Checks and normalises the options (throws HaproxyConfigError). */
export function checkHaproxyOptions(opts: HaproxyConfigOptions): {
  listen: HostPort;
  backends: HaproxyBackend[];
  tokenRouting: boolean;
  inspectDelayMs: number;
  idleTimeoutMs: number;
  connectTimeoutMs: number;
  maxconn: number | undefined;
  log: boolean;
} {
  if (typeof opts !== 'object' || opts === null) throw new HaproxyConfigError('options are required');
  if (opts.listen === undefined) throw new HaproxyConfigError('listen: the frontend address (HOST:PORT) is required');
  const listen =
    typeof opts.listen === 'string'
      ? parseHostPort(opts.listen, 'listen')
      : { host: checkHost(opts.listen.host, 'listen'), port: checkPort(opts.listen.port, 'listen') };
  if (!Array.isArray(opts.backends) || opts.backends.length === 0) throw new HaproxyConfigError('at least one backend (ID=HOST:PORT) is required');
  const backends = opts.backends.map(normaliseBackend);
  const ids = new Map<number, HaproxyBackend>();
  const addrs = new Map<string, HaproxyBackend>();
  for (const b of backends) {
    const dupId = ids.get(b.id);
    if (dupId) throw new HaproxyConfigError(`server id ${b.id} is given twice (${addr(dupId)} and ${addr(b)}): each server needs its own id`);
    ids.set(b.id, b);
    const key = addr(b).toLowerCase();
    const dupAddr = addrs.get(key);
    if (dupAddr) throw new HaproxyConfigError(`backend ${addr(b)} is given twice (ids ${dupAddr.id} and ${b.id}): a server has one id`);
    addrs.set(key, b);
  }
  const maxconn = opts.maxconn;
  if (maxconn !== undefined && (!Number.isInteger(maxconn) || maxconn <= 0)) throw new HaproxyConfigError(`maxconn must be a positive integer, got ${JSON.stringify(opts.maxconn)}`);
  return {
    listen,
    backends,
    tokenRouting: opts.tokenRouting ?? true,
    inspectDelayMs: checkMs(opts.inspectDelayMs, 5000, 'inspectDelayMs'),
    idleTimeoutMs: checkMs(opts.idleTimeoutMs, 3_600_000, 'idleTimeoutMs'),
    connectTimeoutMs: checkMs(opts.connectTimeoutMs, 5000, 'connectTimeoutMs'),
    maxconn,
    log: opts.log ?? true,
  };
}

/** The name of the backend that holds only the server with this id. */
export const haproxyBackendName = (id: number): string => `mptls_id${id}`;
/** The round-robin backend (all servers). */
export const HAPROXY_RR_BACKEND = 'mptls_rr';

/**
 * A complete haproxy.cfg for `backends` behind `listen`. Pure: same input,
 * same text. Throws HaproxyConfigError on a bad argument.
 */
export function haproxyConfig(options: HaproxyConfigOptions): string {
  const o = checkHaproxyOptions(options);
  const L: string[] = [];
  const ids = o.backends.map((b) => b.id).join(', ');
  L.push(
    `# haproxy.cfg for mptls servers (mode tcp), generated by "mptls haproxy-config".`,
    o.tokenRouting
      ? `# MP_JOIN subflows go to the server whose id is the top byte of their token`
      : `# NAIVE: every TCP connection round-robin, MP_JOIN subflows included. A join then`,
    o.tokenRouting
      ? `# (docs/PROTOCOL.md §2.1); everything else round-robin. No per-connection state.`
      : `# mostly reaches a server that did not issue its token and is refused (MPJoinNoTokenFound).`,
    `# Each server must run with createServer({ mptcp: { serverId } }), ids: ${ids}.`,
    '',
    'global',
  );
  if (o.maxconn !== undefined) L.push(`    maxconn ${o.maxconn}`);
  if (o.log) L.push('    log stdout format raw local0');
  L.push(
    '',
    'defaults',
    '    mode tcp',
  );
  if (o.log) L.push('    log global', '    option tcplog');
  L.push(
    `    timeout connect ${duration(o.connectTimeoutMs)}`,
    `    timeout client ${duration(o.idleTimeoutMs)}`,
    `    timeout server ${duration(o.idleTimeoutMs)}`,
    '    retries 2',
    '    option redispatch',
    '',
    'frontend mptls',
    `    bind ${addr(o.listen)}`,
  );
  if (o.tokenRouting) {
    const sub = FIRST_SUBTYPE_OFFSET;
    const tok = JOIN_TOKEN_OFFSET;
    L.push(
      `    # Wait for the first bytes: a plain TLS record starts with 0x16; an mptls subflow`,
      `    # with the preamble ${MAGIC_HEX}${hex2(VERSION)}000000 (8 bytes) and a 16-byte frame header, then`,
      `    # its first option: subtype nibble at offset ${sub} (0 = MP_CAPABLE, a new connection:`,
      `    # ${CAPABLE_FIRST_BYTES} bytes in all; 1 = MP_JOIN), the join's receiver token at ${tok}..${tok + 3},`,
      `    # whose top byte (offset ${tok}) is the id of the server that issued it.`,
      `    tcp-request inspect-delay ${duration(o.inspectDelayMs)}`,
      `    acl tls           req.payload(0,1) -m bin 16`,
      `    acl mptls         req.payload(0,1) -m bin ${hex2(MAGIC[0])}`,
      `    acl mptls_v${VERSION}      req.payload(0,${MAGIC.length + 1}) -m bin ${MAGIC_HEX}${hex2(VERSION)}`,
      `    acl mp_capable    req.payload(${sub},1),hex -m beg 0`,
      `    acl mp_join       req.payload(${sub},1),hex -m beg 1`,
      `    acl join_token    req.len ge ${JOIN_TOKEN_END}`,
      `    tcp-request content accept if tls`,
      `    tcp-request content accept if !mptls`,
      `    tcp-request content accept if mptls_v${VERSION} mp_capable`,
      `    tcp-request content accept if mptls_v${VERSION} mp_join join_token`,
      `    # MP_JOIN: by the token's server id (no stick table: the token says where to go).`,
    );
    for (const b of o.backends) {
      L.push(`    use_backend ${haproxyBackendName(b.id)} if mptls_v${VERSION} mp_join { req.payload(${tok},1) -m bin ${hex2(b.id)} }`);
    }
    L.push(`    # New multipath connections, plain TLS clients, joins with an unknown id: round-robin.`);
  } else {
    L.push(`    # No inspection: every subflow of a connection may land on another server.`);
  }
  L.push(`    default_backend ${HAPROXY_RR_BACKEND}`, '', `backend ${HAPROXY_RR_BACKEND}`, '    balance roundrobin');
  for (const b of o.backends) L.push(`    server id${b.id} ${addr(b)}`);
  if (o.tokenRouting) {
    for (const b of o.backends) {
      L.push('', `backend ${haproxyBackendName(b.id)}`, `    server id${b.id} ${addr(b)}`);
    }
  }
  return L.join('\n') + '\n';
}
