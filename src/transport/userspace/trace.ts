/**
 * `NODE_DEBUG=mptls`: one line on stderr per milestone of a userspace
 * multipath connection, through `util.debuglog('mptls')` (Node prefixes
 * each line with `MPTLS <pid>:`). Off, nothing is subscribed and no string
 * is built: `traceDriver` and `traceRefused` return after one check.
 *
 * Each line starts with the connection's label, its local token in hex
 * (`c1a2b3c4`: public on the wire, in every MP_JOIN), and the side
 * (`client`/`server`). What is logged: the handshake (MP_CAPABLE done,
 * keys installed, keys confirmed, fallback to plain TLS), subflows (join
 * opening with its addresses, up, down with its reason), addresses
 * announced and removed, refusals with their reason and the peer's address,
 * stalls, recoveries and reinjections, timeouts, authentication failures,
 * paths lost and restored, and the close with its reason. Counter-driven
 * lines (`TRACED_COUNTERS`) come from the core's `Mib.onIncrement` hook.
 *
 * What never is: keys, HMACs, TLS exporter output, key fingerprints, random
 * nonces, payload bytes. Nothing here can reach them: the driver's events
 * and the MIB carry ids, addresses, reasons and counts only.
 */
import type { EventEmitter } from 'node:events';
import type net from 'node:net';
import { debuglog } from 'node:util';
import type { MibName } from '../../core/mib.js';
import type { ConnectionEvent } from '../../core/types.js';
import type { MultipathDriver } from './driver.js';

const log = debuglog('mptls');

/** True when NODE_DEBUG names mptls (read once, at the first call, as Node does). */
export function traceEnabled(): boolean {
  return log.enabled;
}

/**
 * The MIB counters that get a line of their own as they increment (besides
 * the driver's events), with what the line says. Reinjections
 * (`Reinjected`, `ReinjectedBytes`) are summed per event-loop turn into one
 * line; `SubflowStale` and `SubflowRecover` name the subflow.
 */
export const TRACED_COUNTERS: Partial<Record<MibName, string>> = {
  // joins opened (a line with the join's addresses)
  MPJoinSynTx: 'join opening',
  // stalls and reinjection
  SubflowStale: 'stalled',
  SubflowRecover: 'recovered',
  Reinjected: 'reinjected',
  ReinjectedBytes: 'reinjected',
  // timeouts
  MPJoinTimeout: 'a join timed out (no MP_JOIN handshake in time)',
  MPJoinHeldTimeout: 'an early join timed out waiting for the keys',
  HandshakeTimeout: 'the handshake (MP_CAPABLE + TLS) timed out',
  ConnResumeTimeout: 'no join resumed the parked connection in time',
  // refusals and limits
  MPJoinRejected: 'refused a join',
  MPJoinSourceLimit: 'refused a join: too many pending joins from its source',
  MPJoinEvicted: 'evicted a pending join (the endpoint join pool is full)',
  MPJoinHeldLimit: 'refused an early join: too many held',
  SubflowLimit: 'refused a subflow: subflow or join limit',
  MPCapableRefused: 'the server refused the connection (MP_TCPRST to the MP_CAPABLE SYN)',
  MPCapableIncomplete: 'TLS finished before the MP_CAPABLE exchange: no keys',
  TlsBindingRefused: 'refused the TLS session as a key source (weak TLS 1.2 binding)',
  TlsRenegotiationRefused: 'refused a TLS renegotiation',
  ConnParkRefused: 'could not park: too many parked connections',
  AddAddrPolicyDrop: 'ignored an announced address (address policy)',
  AddAddrDrop: 'ignored an announced address (limit or bad address)',
  AddAddrJoinLimit: 'stopped joining an announced address (too many failed joins)',
  RmAddrDrop: 'ignored a REMOVE_ADDR',
  // authentication failures (the values are never logged)
  MPJoinSynAckHMacFailure: 'MP_JOIN SYN/ACK failed authentication',
  MPJoinAckHMacFailure: 'MP_JOIN ACK failed authentication',
  NewKeyHMacFailure: 'NEW_KEY failed authentication',
  NewKeyUnsupported: 'the peer does not support NEW_KEY',
  AddAddrHMacFailure: 'ADD_ADDR failed authentication',
  DataFinAuthFailure: 'DATA_FIN failed authentication (ignored)',
  MPFastcloseBadKey: 'MP_FASTCLOSE with a wrong key (ignored)',
  // own announcements
  AddAddrTx: 'announced an address (ADD_ADDR sent)',
  RmAddrTx: 'withdrew an address (REMOVE_ADDR sent)',
  // resets and failures
  MPRstRx: 'MP_TCPRST received',
  MPFastcloseRx: 'MP_FASTCLOSE received',
  MPFastcloseTx: 'MP_FASTCLOSE sent',
  MPFailRx: 'MP_FAIL received',
  ProtocolError: 'protocol error from the peer',
};

/** `a:p`, `[v6]:p`, or `?` when unknown. */
function hostPort(address: string | undefined, port: number | undefined): string {
  if (!address) return '?';
  const a = address.includes(':') ? `[${address}]` : address;
  return port === undefined ? a : `${a}:${port}`;
}

/** The label of a connection in trace lines: its local token, 8 hex digits. */
export function traceLabel(token: number): string {
  return (token >>> 0).toString(16).padStart(8, '0');
}

export interface TraceOptions {
  /** Client: the stream TLS runs over; its 'fallback' (to plain TLS over TCP) gets a line. */
  stream?: EventEmitter;
}

/**
 * Logs the milestones of `driver`'s connection (NODE_DEBUG=mptls). Call it
 * before the driver's first pump; a no-op when tracing is off.
 */
export function traceDriver(driver: MultipathDriver, options: TraceOptions = {}): void {
  if (!log.enabled) return;
  const conn = driver.conn;
  const side = conn.role;
  const out = (msg: string) => log('%s %s: %s', traceLabel(conn.localToken), side, msg);
  /** Subflows stalled now; reinjections summed until the end of the turn. */
  const stale = new Set<number>();
  /** Joins whose opening was logged. */
  const opened = new Set<number>();
  let reinjected = 0;
  let reinjectedBytes = 0;
  let flushDue = false;
  /** `local -> remote` of each subflow, remembered for its 'down' line. */
  const paths = new Map<number, string>();
  const pathOf = (id: number, fallback?: { localAddress?: string; localPort?: number; remoteAddress?: string; remotePort?: number }): string => {
    const sock = driver.socketOf(id);
    const la = sock?.localAddress ?? fallback?.localAddress;
    const lp = sock?.localPort ?? fallback?.localPort;
    const ra = sock?.remoteAddress ?? fallback?.remoteAddress;
    const rp = sock?.remotePort ?? fallback?.remotePort;
    if (!la && !ra) return paths.get(id) ?? '?';
    const p = `${hostPort(la, lp)} -> ${hostPort(ra, rp)}`;
    paths.set(id, p);
    return p;
  };

  if (side === 'server') out(`new connection from ${hostPort(driver.firstSocket()?.remoteAddress, driver.firstSocket()?.remotePort)} (MP_CAPABLE SYN, ${conn.mode} keys)`);
  else out(`connecting (MP_CAPABLE SYN, ${conn.mode} keys)`);

  driver.on('established', () => {
    const peer = conn.remoteToken ? `, peer token ${traceLabel(conn.remoteToken)}` : '';
    out(`established: MP_CAPABLE done${peer}`);
  });
  driver.on('keys-installed', () => out('keys installed (from the TLS exporter), NEW_KEY sent'));
  driver.on('keys-confirmed', () => out("keys confirmed (the peer's NEW_KEY verified): joins and ADD_ADDR enabled"));
  const opening = (ev: { subflow: number; localAddress?: string; remoteAddress?: string; remotePort?: number; backup: boolean }) => {
    if (opened.has(ev.subflow)) return;
    opened.add(ev.subflow);
    const p = `${hostPort(ev.localAddress, undefined)} -> ${hostPort(ev.remoteAddress, ev.remotePort)}`;
    paths.set(ev.subflow, p);
    out(`subflow ${ev.subflow} opening ${p} (MP_JOIN SYN${ev.backup ? ', backup' : ''})`);
  };
  driver.on('subflow-open', opening);
  driver.on('subflow', (s: { id: number; initial?: boolean; backup?: boolean; localAddress?: string; localPort?: number; remoteAddress?: string; remotePort?: number }) => {
    const kind = (s.initial ?? s.id === 0) ? 'initial' : 'join';
    out(`subflow ${s.id} up ${pathOf(s.id, s)} (${kind}${s.backup ? ', backup' : ''})`);
  });
  driver.on('subflow-down', (ev: Extract<ConnectionEvent, { type: 'subflow-down' }>) => {
    out(`subflow ${ev.subflow} down: ${ev.reason} (${paths.get(ev.subflow) ?? pathOf(ev.subflow)})`);
    paths.delete(ev.subflow);
    stale.delete(ev.subflow);
    opened.delete(ev.subflow);
  });
  driver.on('address-added', (ev: Extract<ConnectionEvent, { type: 'address-added' }>) =>
    out(`peer announced address ${ev.addressId}: ${hostPort(ev.address, ev.port)} (ADD_ADDR)`),
  );
  driver.on('address-removed', (ev: Extract<ConnectionEvent, { type: 'address-removed' }>) => out(`peer removed address ${ev.addressId} (REMOVE_ADDR)`));
  driver.on('paths-lost', () => out('paths lost: every subflow is down, parked waiting for a join'));
  driver.on('paths-restored', () => out('paths restored: a join resumed the connection'));
  driver.on('connect-failed', (err: Error & { code?: string }) => out(`connect failed: ${err.code ?? err.message}`));
  driver.on('no-preamble', (reason: string) => out(`no mptls preamble from the server: ${reason}`));
  driver.on('frame-error', (id: number, e: unknown) => out(`subflow ${id}: bad frame: ${e instanceof Error ? e.message : String(e)}`));
  driver.on('closed', (reason: string) => {
    flushReinjections();
    out(`closed: ${reason}`);
  });
  options.stream?.once('fallback', (reason: string) => out(`fallback to plain TLS over TCP: ${reason}`));

  // Counters: stalls, reinjections, timeouts, refusals, authentication failures.
  function flushReinjections(): void {
    flushDue = false;
    if (reinjected === 0 && reinjectedBytes === 0) return;
    out(`reinjected ${reinjected} segment${reinjected === 1 ? '' : 's'} (${reinjectedBytes} bytes) on other subflows`);
    reinjected = 0;
    reinjectedBytes = 0;
  }
  const onCounter = (name: MibName, by: number): void => {
    const text = TRACED_COUNTERS[name];
    if (text === undefined) return;
    switch (name) {
      case 'Reinjected':
      case 'ReinjectedBytes':
        if (name === 'Reinjected') reinjected += by;
        else reinjectedBytes += by;
        if (!flushDue) {
          flushDue = true;
          setImmediate(flushReinjections).unref();
        }
        return;
      case 'MPJoinSynTx':
        // The core's 'subflow-open' event stays inside the driver: the new join is the one in join-syn-sent.
        for (const s of conn.subflowInfo()) if (s.state === 'join-syn-sent') opening({ subflow: s.id, ...s });
        return;
      case 'SubflowStale':
        for (const s of conn.subflowInfo()) {
          if (s.stale && !stale.has(s.id)) {
            stale.add(s.id);
            out(`subflow ${s.id} stalled: no progress within its stall timeout (now ${Math.round(conn.stallTimeoutOf(s.id) ?? 0)} ms), its data goes to other subflows`);
          }
        }
        return;
      case 'SubflowRecover':
        for (const s of conn.subflowInfo()) {
          if (!s.stale && stale.has(s.id)) {
            stale.delete(s.id);
            out(`subflow ${s.id} recovered from its stall`);
          }
        }
        return;
      default:
        out(`${text} [${name}${by === 1 ? '' : ` +${by}`}]`);
    }
  };
  const mib = conn.mib;
  const previous = mib.onIncrement;
  mib.onIncrement = (name, by) => {
    previous?.(name, by);
    try {
      onCounter(name, by);
    } catch {
      // tracing never breaks the connection
    }
  };
}

/** Server: a subflow the acceptor refused before it belonged to a connection (NODE_DEBUG=mptls). */
export function traceRefused(reason: string, socket: net.Socket): void {
  if (!log.enabled) return;
  log('server: refused a subflow from %s: %s', hostPort(socket.remoteAddress, socket.remotePort), reason);
}
