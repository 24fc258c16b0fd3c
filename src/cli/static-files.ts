/**
 * The directory server behind `mptls serve --dir DIR`: GET and HEAD of the
 * files under one root, a listing for a directory without index.html, and
 * nothing outside the root (no `..`, encoded slashes, NUL bytes, or symlinks
 * that lead out).
 *
 * `resolveUnder` is the pure-ish part (it only reads the file system) and
 * decides every status; `serveFile` writes its answer to a response.
 *
 * Files answer one byte range (`Range: bytes=0-99`, `-500`, `100-`) with
 * 206 and Content-Range, an unsatisfiable one with 416 and the
 * unsatisfied-range Content-Range ("bytes", a star, "/SIZE"). A request for
 * several ranges gets the whole file (200, no multipart/byteranges), as RFC
 * 9110 allows; so does a Range of another unit, a malformed one, or one
 * whose If-Range is not the file's Last-Modified. Every file response says
 * `Accept-Ranges: bytes`.
 */
import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { escapeHtml } from './format.js';
import { sendBody, sendText, writeHead } from './reply.js';

export const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.csv': 'text/csv; charset=utf-8',
  '.xml': 'application/xml',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.wasm': 'application/wasm',
  '.pdf': 'application/pdf',
  '.zip': 'application/zip',
  '.gz': 'application/gzip',
  '.tar': 'application/x-tar',
  '.mp4': 'video/mp4',
};

/** The content type for a file name, by its extension (any case); unknown → application/octet-stream. */
export function contentType(file: string): string {
  return CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

export type Resolved =
  | { kind: 'file'; file: string; stat: fs.Stats }
  | { kind: 'dir'; dir: string; urlPath: string }
  | { kind: 'redirect'; location: string }
  | { kind: 'error'; status: number; message: string };

/**
 * Maps a request target to a file under `root` (a realpath). Refuses `..`
 * segments, encoded slashes and NUL bytes, and anything (symlinks included)
 * that resolves outside the root.
 */
export async function resolveUnder(root: string, target: string): Promise<Resolved> {
  const rawPath = target.split(/[?#]/, 1)[0] ?? '';
  if (!rawPath.startsWith('/')) return { kind: 'error', status: 400, message: 'Bad Request' };
  const segments: string[] = [];
  for (const raw of rawPath.split('/')) {
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      return { kind: 'error', status: 400, message: 'Bad Request' };
    }
    if (seg.includes('\0')) return { kind: 'error', status: 400, message: 'Bad Request' };
    if (seg === '..' || seg.includes('/') || seg.includes('\\')) return { kind: 'error', status: 403, message: 'Forbidden' };
    if (seg === '' || seg === '.') continue;
    segments.push(seg);
  }
  const candidate = path.join(root, ...segments);
  if (candidate !== root && !candidate.startsWith(root + path.sep)) return { kind: 'error', status: 403, message: 'Forbidden' };
  let real: string;
  try {
    real = await fs.promises.realpath(candidate);
  } catch {
    return { kind: 'error', status: 404, message: 'Not Found' };
  }
  if (real !== root && !real.startsWith(root + path.sep)) return { kind: 'error', status: 403, message: 'Forbidden' };
  let stat: fs.Stats;
  try {
    stat = await fs.promises.stat(real);
  } catch {
    return { kind: 'error', status: 404, message: 'Not Found' };
  }
  const urlPath = '/' + segments.map(encodeURIComponent).join('/');
  if (stat.isDirectory()) {
    if (!rawPath.endsWith('/')) return { kind: 'redirect', location: urlPath === '/' ? '/' : urlPath + '/' };
    const index = path.join(real, 'index.html');
    try {
      const st = await fs.promises.stat(index);
      if (st.isFile()) return { kind: 'file', file: index, stat: st };
    } catch {
      /* no index: a listing */
    }
    return { kind: 'dir', dir: real, urlPath: urlPath === '/' ? '/' : urlPath + '/' };
  }
  if (!stat.isFile()) return { kind: 'error', status: 403, message: 'Forbidden' };
  return { kind: 'file', file: real, stat };
}

/** What a Range header asks of a file of `size` bytes. */
export type RangeAnswer =
  /** No Range, or one to ignore (another unit, malformed, several ranges): the whole file. */
  | { kind: 'full' }
  | { kind: 'partial'; start: number; end: number }
  | { kind: 'unsatisfiable' };

/**
 * RFC 9110 §14: `bytes=FIRST-LAST`, `bytes=FIRST-` or `bytes=-SUFFIX`. One
 * range is answered (LAST clamped to the end of the file; a FIRST at or
 * beyond the end, or an empty file, is unsatisfiable); several are not
 * (the whole file), neither is anything malformed.
 */
export function parseRange(header: string | undefined, size: number): RangeAnswer {
  if (header === undefined) return { kind: 'full' };
  const m = /^\s*bytes\s*=\s*(.*)$/i.exec(header);
  if (!m) return { kind: 'full' };
  const specs = m[1].split(',').map((x) => x.trim()).filter((x) => x !== '');
  if (specs.length !== 1) return { kind: 'full' };
  const r = /^(\d*)-(\d*)$/.exec(specs[0]);
  if (!r || (r[1] === '' && r[2] === '')) return { kind: 'full' };
  if (r[1] === '') {
    const suffix = Number(r[2]);
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(r[1]);
  const last = r[2] === '' ? undefined : Number(r[2]);
  if (last !== undefined && last < start) return { kind: 'full' };
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'partial', start, end: Math.min(last ?? size - 1, size - 1) };
}

/** If-Range: the Range applies only while the validator is the file's Last-Modified (no ETags here). */
function ifRangeHolds(ifRange: string | undefined, mtime: Date): boolean {
  if (ifRange === undefined) return true;
  const t = Date.parse(ifRange);
  return !Number.isNaN(t) && Math.floor(t / 1000) === Math.floor(mtime.getTime() / 1000);
}

/** The HTML listing of a directory (names sorted, subdirectories with a trailing "/"). */
export async function directoryListing(dir: string, urlPath: string): Promise<string> {
  const entries = await fs.promises.readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  const items = entries.map((e) => {
    const name = e.name + (e.isDirectory() ? '/' : '');
    return `<li><a href="${escapeHtml(encodeURIComponent(e.name) + (e.isDirectory() ? '/' : ''))}">${escapeHtml(name)}</a></li>`;
  });
  const title = `Index of ${escapeHtml(decodeURIComponent(urlPath))}`;
  const up = urlPath === '/' ? '' : '<li><a href="../">../</a></li>';
  return `<!doctype html><meta charset="utf-8"><title>${title}</title><h1>${title}</h1><ul>${up}${items.join('')}</ul>\n`;
}

/** Answers a GET or HEAD for a file under `root` (a realpath); resolves once the response is written or closed. */
export async function serveFile(req: http.IncomingMessage, res: http.ServerResponse, root: string): Promise<void> {
  const head = req.method === 'HEAD';
  const r = await resolveUnder(root, req.url ?? '/');
  switch (r.kind) {
    case 'error':
      sendText(res, r.status, r.message, head);
      return;
    case 'redirect':
      sendText(res, 301, `Moved to ${r.location}`, head, { location: r.location });
      return;
    case 'dir':
      sendBody(res, 200, 'text/html; charset=utf-8', await directoryListing(r.dir, r.urlPath), head);
      return;
    case 'file': {
      const size = r.stat.size;
      const rangeHeader = req.headers.range;
      const ifRange = req.headers['if-range'];
      const range = rangeHeader !== undefined && ifRangeHolds(Array.isArray(ifRange) ? ifRange[0] : ifRange, r.stat.mtime) ? parseRange(rangeHeader, size) : ({ kind: 'full' } as const);
      const common = {
        'accept-ranges': 'bytes',
        'last-modified': r.stat.mtime.toUTCString(),
        'x-content-type-options': 'nosniff',
      };
      if (range.kind === 'unsatisfiable') {
        sendText(res, 416, 'Range Not Satisfiable', head, { ...common, 'content-range': `bytes */${size}` });
        return;
      }
      const status = range.kind === 'partial' ? 206 : 200;
      const headers: Record<string, string | number> = {
        'content-type': contentType(r.file),
        'content-length': range.kind === 'partial' ? range.end - range.start + 1 : size,
        ...(range.kind === 'partial' ? { 'content-range': `bytes ${range.start}-${range.end}/${size}` } : {}),
        ...common,
      };
      if (head) {
        writeHead(res, status, headers);
        res.end();
        return;
      }
      const stream = range.kind === 'partial' ? fs.createReadStream(r.file, { start: range.start, end: range.end }) : fs.createReadStream(r.file);
      await new Promise<void>((resolve) => {
        stream.once('open', () => {
          writeHead(res, status, headers);
          stream.pipe(res);
        });
        stream.once('error', (e) => {
          if (!res.headersSent) sendText(res, (e as NodeJS.ErrnoException).code === 'EACCES' ? 403 : 404, 'Cannot read the file');
          else res.destroy(e);
          resolve();
        });
        stream.once('end', resolve);
        res.once('close', () => {
          stream.destroy();
          resolve();
        });
      });
      return;
    }
  }
}
