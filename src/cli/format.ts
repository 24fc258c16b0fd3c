/** Small text helpers shared by the commands and the pages `serve` renders. */
import net from 'node:net';

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

export function formatRate(bytes: number, ms: number): string {
  if (ms <= 0) return '-';
  const mbit = (bytes * 8) / (ms / 1000) / 1e6;
  return `${mbit.toFixed(mbit < 10 ? 1 : 0)} Mbit/s`;
}

export const hex32 = (n: number): string => (n >>> 0).toString(16).padStart(8, '0');

/** "HOST:PORT", "[V6]:PORT", or "?" without an address. */
export function hostPort(address: string | undefined, port: number | undefined): string {
  if (!address) return '?';
  const a = net.isIPv6(address) ? `[${address}]` : address;
  return port === undefined ? a : `${a}:${port}`;
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);
}
