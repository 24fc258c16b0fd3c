/**
 * `mptls info`: what this host supports. Kernel MPTCP (the net.mptcp.*
 * sysctls, an IPPROTO_MPTCP socket probe) through the kernel bridge,
 * "ip mptcp limits/endpoint", koffi, the Node version, the transports.
 */
import { execFile } from 'node:child_process';
import os from 'node:os';
import { ffiStatus, kernelSupport, mptcpSysctls } from '../transport/kernel/index.js';
import { parse } from './args.js';
import { EXIT_OK, type Out, version } from './io.js';

export const HELP = `Usage: mptls info [--json]

Prints what this host supports: Linux kernel MPTCP (net.mptcp.enabled and the
other net.mptcp.* sysctls, an IPPROTO_MPTCP socket probe), "ip mptcp limits"
and "ip mptcp endpoint", whether the optional koffi FFI module loads, the Node
version, and the userspace transport (always available).

  --json       machine-readable output
  -h, --help   this help`;

export interface HostInfo {
  mptls: { version: string };
  node: { version: string; platform: string; arch: string };
  os: { type: string; release: string };
  kernelMptcp: {
    /** /proc/sys/net/mptcp exists: the kernel (this network namespace) has MPTCP. */
    available: boolean;
    /** net.mptcp.enabled = 1 (null when unknown). */
    enabled: boolean | null;
    /** Every readable net.mptcp.* sysctl, by full name. */
    sysctls: Record<string, string>;
    /** socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP) through koffi, when koffi loads. */
    socketProbe: { ok: boolean; error?: string } | null;
  };
  ip: {
    available: boolean;
    limits: { raw: string; values: Record<string, number> } | null;
    endpoints: string[] | null;
    error?: string;
  };
  koffi: { loads: boolean; version?: string; error?: string };
  transports: {
    userspace: { available: true; note: string };
    kernel: { prerequisitesMet: boolean; missing: string[] };
  };
}

function run(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string; error?: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 3000, encoding: 'utf8' }, (error, stdout, stderr) =>
      resolve({ stdout, stderr, ...(error ? { error: error as NodeJS.ErrnoException } : {}) }),
    );
  });
}

/** Gathers what `mptls info` prints. */
export async function hostInfo(): Promise<HostInfo> {
  // Everything kernel-side comes from the kernel bridge (one implementation).
  const short = mptcpSysctls();
  const available = Object.keys(short).length > 0;
  const sysctls: Record<string, string> = {};
  for (const [n, v] of Object.entries(short)) sysctls[`net.mptcp.${n}`] = v.replace(/\s+/g, ' ');
  const enabledRaw = sysctls['net.mptcp.enabled'];
  const enabled = enabledRaw === undefined ? (available ? null : false) : enabledRaw === '1';
  const ffi = ffiStatus();
  const support = kernelSupport();
  const socketProbe = ffi.ok && process.platform === 'linux' && available && enabled !== false ? (support.ok ? { ok: true } : { ok: false, error: support.reason }) : null;

  const ip: HostInfo['ip'] = { available: false, limits: null, endpoints: null };
  const lim = await run('ip', ['mptcp', 'limits', 'show']);
  if (lim.error?.code === 'ENOENT') {
    ip.error = 'ip (iproute2) not found';
  } else {
    ip.available = true;
    if (lim.error) ip.error = (lim.stderr || lim.error.message).trim();
    else {
      const raw = lim.stdout.trim();
      const values: Record<string, number> = {};
      const parts = raw.split(/\s+/);
      for (let i = 0; i + 1 < parts.length; i += 2) if (/^\d+$/.test(parts[i + 1])) values[parts[i]] = Number(parts[i + 1]);
      ip.limits = { raw, values };
      const ep = await run('ip', ['mptcp', 'endpoint', 'show']);
      if (ep.error) ip.error = (ep.stderr || ep.error.message).trim();
      else ip.endpoints = ep.stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '');
    }
  }

  const missing: string[] = [];
  if (process.platform !== 'linux') missing.push('Linux');
  else if (!available) missing.push('kernel MPTCP (no /proc/sys/net/mptcp)');
  else if (enabled === false) missing.push('net.mptcp.enabled = 1');
  if (!ffi.ok) missing.push('koffi (optional dependency)');
  else if (socketProbe && !socketProbe.ok && enabled !== false && available) missing.push(`an IPPROTO_MPTCP socket (${socketProbe.error ?? 'failed'})`);

  return {
    mptls: { version: version() },
    node: { version: process.version, platform: process.platform, arch: process.arch },
    os: { type: os.type(), release: os.release() },
    kernelMptcp: { available, enabled, sysctls, socketProbe },
    ip,
    koffi: ffi.ok ? { loads: true } : { loads: false, error: ffi.reason },
    transports: {
      userspace: { available: true, note: 'multipath over ordinary TCP subflows; needs nothing from the kernel' },
      kernel: { prerequisitesMet: missing.length === 0, missing },
    },
  };
}

/** The aligned two-column text of `mptls info` without --json. */
export function formatHostInfo(info: HostInfo): string {
  const rows: [string, string][] = [];
  const k = info.kernelMptcp;
  rows.push(['mptls', info.mptls.version]);
  rows.push(['node', `${info.node.version} (${info.node.platform} ${info.node.arch})`]);
  rows.push(['kernel', `${info.os.type} ${info.os.release}`]);
  rows.push(['userspace transport', 'available (multipath over ordinary TCP subflows)']);
  rows.push(['kernel MPTCP', !k.available ? 'not available (no /proc/sys/net/mptcp)' : k.enabled ? 'enabled (net.mptcp.enabled = 1)' : k.enabled === false ? 'disabled (net.mptcp.enabled = 0)' : 'present, enabled state unknown']);
  for (const [name, v] of Object.entries(k.sysctls)) rows.push([`  ${name}`, v]);
  rows.push(['IPPROTO_MPTCP socket', k.socketProbe === null ? 'not probed (needs koffi on Linux)' : k.socketProbe.ok ? 'ok' : `fails: ${k.socketProbe.error ?? '?'}`]);
  if (!info.ip.available) rows.push(['ip mptcp', info.ip.error ?? 'ip not found']);
  else {
    rows.push(['ip mptcp limits', info.ip.limits ? info.ip.limits.raw || '(empty)' : `error: ${info.ip.error ?? '?'}`]);
    if (info.ip.endpoints) {
      if (info.ip.endpoints.length === 0) rows.push(['ip mptcp endpoint', '(none)']);
      info.ip.endpoints.forEach((l, i) => rows.push([i === 0 ? 'ip mptcp endpoint' : '', l]));
    } else if (info.ip.limits) rows.push(['ip mptcp endpoint', `error: ${info.ip.error ?? '?'}`]);
  }
  rows.push(['koffi', info.koffi.loads ? `loads${info.koffi.version ? ` (${info.koffi.version})` : ''}` : `does not load (${info.koffi.error ?? '?'})`]);
  const kt = info.transports.kernel;
  rows.push(['kernel transport', kt.prerequisitesMet ? 'host prerequisites present (Linux MPTCP enabled, koffi, socket probe)' : `host prerequisites missing: ${kt.missing.join('; ')}`]);
  const width = Math.max(...rows.map(([a]) => a.length));
  return rows.map(([a, b]) => `${a.padEnd(width)}  ${b}`).join('\n');
}

export async function infoCommand(args: string[], o: Out): Promise<number> {
  const { values } = parse(args, { json: { type: 'boolean' } });
  const info = await hostInfo();
  o.out(values.json ? JSON.stringify(info, null, 2) : formatHostInfo(info));
  return EXIT_OK;
}
