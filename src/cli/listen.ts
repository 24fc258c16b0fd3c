/**
 * The listening step every serving command shares (`serve`, `proxy`): listen
 * or say why not, and with `--kernel` insist that the port really is a
 * kernel-MPTCP one (the kernel bridge falls back to plain TCP when the kernel
 * refuses the socket, which is not what --kernel asked for).
 */
import type net from 'node:net';
import { kernelListenState } from '../transport/kernel/index.js';
import { hostPort } from './format.js';
import { describeError, type Out } from './io.js';

/** Listens on host:port; false (after saying why, as `command`) when it cannot. */
export async function listenOrReport(server: net.Server, port: number, host: string, o: Out, command: string): Promise<boolean> {
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    return true;
  } catch (e) {
    o.err(`mptls ${command}: cannot listen on ${hostPort(host, port)}: ${describeError(e)}`);
    return false;
  }
}

/** With --kernel: true when `server` listens with kernel MPTCP; else says why (as `command`) and returns false. */
export function kernelListening(server: net.Server, o: Out, command: string): boolean {
  const k = kernelListenState(server);
  if (k?.mode === 'kernel') return true;
  o.err(`mptls ${command}: --kernel: could not listen with kernel MPTCP: ${k?.fallbackReason ?? 'unknown reason'}`);
  return false;
}
