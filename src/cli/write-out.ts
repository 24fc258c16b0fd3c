/**
 * `mptls get -w FORMAT`: curl's --write-out syntax. `%{name}` is a
 * variable, `%header{name}` a response header, `%{json}` every variable as
 * one JSON object, `%{stdout}` / `%{stderr}` switch where the rest goes,
 * `%%` is "%"; `\n`, `\r` and `\t` are escapes, any other backslash pair is
 * printed as is (as curl does). An unknown variable prints nothing and a
 * warning.
 */

/** A variable's value; null prints as nothing (curl's unset string). */
export type WriteOutValue = string | number | null;

/** What a transfer reports, by curl's variable names plus mptls's own (num_subflows, mptcp_mode, mptcp_fallback_reason). */
export type WriteOutVars = Record<string, WriteOutValue>;

/** Variables printed as seconds with 6 decimals, as curl does. */
const TIMES = new Set(['time_appconnect', 'time_connect', 'time_namelookup', 'time_pretransfer', 'time_redirect', 'time_starttransfer', 'time_total']);

/** The variables `mptls get` knows (the keys of the object `%{json}` prints, in that order). */
export const WRITE_OUT_VARIABLES = [
  'content_type',
  'errormsg',
  'exitcode',
  'filename_effective',
  'http_code',
  'http_version',
  'local_ip',
  'local_port',
  'method',
  'mptcp_fallback_reason',
  'mptcp_mode',
  'num_connects',
  'num_headers',
  'num_redirects',
  'num_subflows',
  'redirect_url',
  'remote_ip',
  'remote_port',
  'response_code',
  'scheme',
  'size_download',
  'size_header',
  'size_request',
  'size_upload',
  'speed_download',
  'speed_upload',
  'time_appconnect',
  'time_connect',
  'time_namelookup',
  'time_pretransfer',
  'time_redirect',
  'time_starttransfer',
  'time_total',
  'url',
  'url_effective',
  'urlnum',
] as const;

const KNOWN: ReadonlySet<string> = new Set(WRITE_OUT_VARIABLES);

export function formatValue(name: string, v: WriteOutValue | undefined): string {
  if (v === null || v === undefined) return '';
  if (TIMES.has(name) && typeof v === 'number') return v.toFixed(6);
  if ((name === 'http_code' || name === 'response_code') && typeof v === 'number') return String(v).padStart(3, '0');
  return String(v);
}

function json(vars: WriteOutVars): string {
  const parts = WRITE_OUT_VARIABLES.map((k) => {
    const v = vars[k] ?? null;
    const text = v === null ? 'null' : typeof v === 'number' ? (TIMES.has(k) ? v.toFixed(6) : String(v)) : JSON.stringify(v);
    return `${JSON.stringify(k)}:${text}`;
  });
  return `{${parts.join(',')}}`;
}

/** One piece of the rendered output and the stream it goes to. */
export interface WriteOutPiece {
  to: 'stdout' | 'stderr';
  text: string;
}

/**
 * Renders `format`. `header(name)` gives a response header's value (for
 * `%header{name}`); `warn` gets one line per unknown variable.
 */
export function renderWriteOut(format: string, vars: WriteOutVars, header: (name: string) => string | undefined, warn: (message: string) => void): WriteOutPiece[] {
  const pieces: WriteOutPiece[] = [];
  let to: WriteOutPiece['to'] = 'stdout';
  let text = '';
  const flush = () => {
    if (text) pieces.push({ to, text });
    text = '';
  };
  let i = 0;
  while (i < format.length) {
    const c = format[i];
    if (c === '%' && format[i + 1] === '%') {
      text += '%';
      i += 2;
      continue;
    }
    if (c === '%' && format[i + 1] === '{') {
      const end = format.indexOf('}', i + 2);
      if (end < 0) {
        // curl prints an unterminated "%{" as is and reads on after it.
        text += '%{';
        i += 2;
        continue;
      }
      const name = format.slice(i + 2, end);
      i = end + 1;
      if (name === 'stdout' || name === 'stderr') {
        flush();
        to = name;
      } else if (name === 'json') {
        text += json(vars);
      } else if (KNOWN.has(name)) {
        text += formatValue(name, vars[name]);
      } else {
        warn(`unknown --write-out variable: '${name}'`);
      }
      continue;
    }
    if (c === '%' && format.startsWith('header{', i + 1)) {
      const end = format.indexOf('}', i + 8);
      if (end < 0) {
        text += '%header{';
        i += 8;
        continue;
      }
      text += header(format.slice(i + 8, end).toLowerCase()) ?? '';
      i = end + 1;
      continue;
    }
    if (c === '\\' && i + 1 < format.length) {
      const n = format[i + 1];
      text += n === 'n' ? '\n' : n === 'r' ? '\r' : n === 't' ? '\t' : c + n;
      i += 2;
      continue;
    }
    text += c;
    i++;
  }
  flush();
  return pieces;
}
