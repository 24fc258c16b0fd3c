/**
 * Runs Wireshark's dissector (tshark) over a capture and returns, per frame,
 * the MPTCP options it dissected as flat field maps
 * (`tcp.options.mptcp.*`, `tcp.option_len`, …; the flag sub-trees are merged
 * in). Values are tshark's display strings; a field that occurs several times
 * in one option (e.g. REMOVE_ADDR's address ids) is an array.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const TSHARK = process.env.TSHARK ?? '/usr/bin/tshark';

export type FieldValue = string | string[];
export type FieldMap = Record<string, FieldValue>;

export interface TsharkFrame {
  /** frame.number (1-based). */
  frame: number;
  /** One flat map per MPTCP option, in option order. */
  mptcp: FieldMap[];
  /** Flat map of the whole TCP layer (option trees excluded). */
  tcp: FieldMap;
  /** Whether the dissector flagged the frame as malformed. */
  malformed: boolean;
}

let availability: { ok: boolean; reason: string } | undefined;

/** Whether tshark can be run here; `reason` says why not. */
export function tsharkAvailable(): { ok: boolean; reason: string } {
  if (availability) return availability;
  if (!existsSync(TSHARK)) {
    availability = { ok: false, reason: `tshark not found at ${TSHARK}` };
    return availability;
  }
  const r = spawnSync(TSHARK, ['--version'], { encoding: 'utf8', timeout: 20_000 });
  availability =
    r.status === 0
      ? { ok: true, reason: (r.stdout.split('\n')[0] ?? '').trim() }
      : { ok: false, reason: `tshark --version failed: ${r.error?.message ?? r.stderr}` };
  return availability;
}

/** Preferences that keep the dissector from analysing sequence numbers across packets. */
export const TSHARK_PREFS = [
  'tcp.analyze_sequence_numbers:FALSE',
  'tcp.relative_sequence_numbers:FALSE',
  'tcp.desegment_tcp_streams:FALSE',
  'tcp.check_checksum:FALSE',
  'mptcp.analyze_mptcp:FALSE',
  'mptcp.relative_sequence_numbers:FALSE',
];

function flatten(node: unknown, out: FieldMap): void {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) return;
  for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
    if (k === '_ws.expert') continue;
    if (k.endsWith('_tree')) {
      if (Array.isArray(v)) v.forEach((x) => flatten(x, out));
      else flatten(v, out);
      continue;
    }
    if (typeof v === 'string') add(out, k, v);
    else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) for (const x of v) add(out, k, x as string);
    else flatten(v, out);
  }
}

function add(out: FieldMap, k: string, v: string): void {
  const cur = out[k];
  if (cur === undefined) out[k] = v;
  else if (Array.isArray(cur)) cur.push(v);
  else out[k] = [cur, v];
}

/** Runs `tshark -T json` over `file` and extracts the MPTCP options of every frame. */
export function dissect(file: string, extraPrefs: string[] = []): TsharkFrame[] {
  const args = ['-r', file, '-n', '-T', 'json', '--no-duplicate-keys'];
  for (const p of [...TSHARK_PREFS, ...extraPrefs]) args.push('-o', p);
  const json = execFileSync(TSHARK, args, {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  });
  const packets = JSON.parse(json) as { _source: { layers: Record<string, unknown> } }[];
  return packets.map((p) => {
    const layers = p._source.layers;
    const frame = Number((layers.frame as Record<string, string>)['frame.number']);
    const tcpLayer = (layers.tcp ?? {}) as Record<string, unknown>;
    const optsTree = (tcpLayer['tcp.options_tree'] ?? {}) as Record<string, unknown>;
    const raw = optsTree['mptcp'];
    const list = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
    const mptcp = list.map((o) => {
      const m: FieldMap = {};
      flatten(o, m);
      return m;
    });
    const tcp: FieldMap = {};
    for (const [k, v] of Object.entries(tcpLayer)) if (typeof v === 'string') tcp[k] = v;
    const flagsTree = tcpLayer['tcp.flags_tree'];
    if (flagsTree) flatten(flagsTree, tcp);
    return { frame, mptcp, tcp, malformed: '_ws.malformed' in layers };
  });
}

/**
 * Runs `tshark -T fields` and returns one record per frame, field name to
 * value ('' when absent; several occurrences joined with ',').
 */
export function fields(file: string, names: string[], extraPrefs: string[] = []): Record<string, string>[] {
  const args = ['-r', file, '-n', '-T', 'fields', '-E', 'separator=\t', '-E', 'occurrence=a', '-E', 'aggregator=,'];
  for (const p of [...TSHARK_PREFS, ...extraPrefs]) args.push('-o', p);
  for (const n of names) args.push('-e', n);
  const out = execFileSync(TSHARK, args, {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  });
  return out
    .split('\n')
    .filter((l) => l.length > 0)
    .map((line) => {
      const cols = line.split('\t');
      const rec: Record<string, string> = {};
      names.forEach((n, i) => (rec[n] = cols[i] ?? ''));
      return rec;
    });
}
