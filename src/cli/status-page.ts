/**
 * `mptls serve --status`: "/" in HTML and "/status.json" as JSON, showing
 * the requesting connection's facts and the server-wide counters and
 * open-connection count to ANY client (a test server's page, not a public
 * one's). Without --status, `serve` answers "/" with `MINIMAL_PAGE`.
 */
import type http from 'node:http';
import type { MptlsSocket } from '../api/index.js';
import { connectionFacts, type ConnectionFacts } from './facts.js';
import { escapeHtml, hostPort } from './format.js';
import { sendBody } from './reply.js';

/** "/" of `mptls serve` without --dir or --status: the same bytes for every client. */
export const MINIMAL_PAGE = `<!doctype html>
<meta charset="utf-8"><title>mptls</title>
<h1>mptls</h1>
<p>HTTPS over TLS-bound multipath TCP, and plain TLS, on this port.</p>
`;

/** What the page reads from the server (`server.mptcp`). */
export interface ServerCounters {
  counters(): Record<string, number>;
  readonly connections: number;
}

function nonZero(c: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(c).filter(([, v]) => v !== 0));
}

export function statusHtml(facts: ConnectionFacts, counters: Record<string, number>, live: number): string {
  const row = (k: string, v: string) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`;
  const sub = facts.subflows
    .map(
      (s) =>
        `<tr><td>${s.id}</td><td>${escapeHtml(hostPort(s.remoteAddress, s.remotePort))}</td><td>${escapeHtml(hostPort(s.localAddress, s.localPort))}</td>` +
        `<td>${escapeHtml(s.state)}${s.backup ? ' (backup)' : ''}</td><td>${s.bytesReceived}</td><td>${s.bytesSent}</td><td>${s.rttMs === undefined ? '-' : s.rttMs.toFixed(1)}</td></tr>`,
    )
    .join('');
  const ctr = Object.entries(counters)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => row(k, String(v)))
    .join('');
  return `<!doctype html>
<meta charset="utf-8"><title>mptls status</title>
<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}</style>
<h1>mptls</h1>
<h2>Your connection</h2>
<table>
${row('mode', facts.mode + (facts.fallbackReason ? ` (${facts.fallbackReason})` : ''))}
${row('TLS', `${facts.tls.protocol ?? '?'} ${facts.tls.cipher ?? ''}`)}
${facts.tokens ? row('tokens (server / client)', `${facts.tokens.local} / ${facts.tokens.remote}`) : ''}
${facts.keyFingerprints ? row('key fingerprints (A / B)', `${facts.keyFingerprints.keyA} / ${facts.keyFingerprints.keyB}`) : ''}
${row('keys confirmed', facts.keysConfirmed ? 'yes' : 'no')}
</table>
<h2>Its subflows</h2>
${facts.subflows.length ? `<table><tr><th>id</th><th>client</th><th>server</th><th>state</th><th>bytes in</th><th>bytes out</th><th>RTT ms</th></tr>${sub}</table>` : '<p>none (not multipath)</p>'}
<p>Joins are opened once both ends confirmed the keys, so the first request of a connection often sees one subflow: reload.</p>
<h2>Server</h2>
<table>${row('multipath connections open', String(live))}${ctr}</table>
<p><a href="/status.json">status.json</a></p>
`;
}

/**
 * Answers `p` ("/" or "/status.json") for the connection `socket` arrived
 * on; false for any other path (the caller sends its 404).
 */
export function sendStatus(res: http.ServerResponse, p: string, socket: MptlsSocket, server: ServerCounters, head: boolean): boolean {
  if (p !== '/' && p !== '/status.json') return false;
  const facts = connectionFacts(socket);
  const counters = nonZero(server.counters());
  if (p === '/') sendBody(res, 200, 'text/html; charset=utf-8', statusHtml(facts, counters, server.connections), head);
  else sendBody(res, 200, 'application/json', JSON.stringify({ connection: facts, server: { connections: server.connections, counters } }, null, 2) + '\n', head);
  return true;
}
