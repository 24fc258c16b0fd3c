/**
 * What every long-running command shares (`serve`, `proxy`, `tunnel`):
 * listen or say why not; with `--kernel` insist that the port really is a
 * kernel-MPTCP one (the kernel bridge falls back to plain TCP when the kernel
 * refuses the socket, which is not what --kernel asked for); run until
 * stopped.
 */
import { once } from 'node:events';
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

/**
 * Resolves when `signal` aborts, or without one on the process's first
 * SIGINT or SIGTERM; a worker (`asWorker`) also when its primary goes away
 * (the IPC channel closes), and ignores SIGINT (a terminal's ^C reaches the
 * whole process group: the primary stops the workers itself).
 */
export async function untilStopped(signal: AbortSignal | undefined, asWorker = false): Promise<void> {
  let ownSignal: AbortController | undefined;
  if (!signal) {
    ownSignal = new AbortController();
    signal = ownSignal.signal;
  }
  const stop = () => ownSignal?.abort();
  const ignore = () => {};
  if (ownSignal) {
    process.once('SIGINT', asWorker ? ignore : stop);
    process.once('SIGTERM', stop);
    if (asWorker) process.once('disconnect', stop);
  }
  try {
    if (!signal.aborted) await once(signal, 'abort');
  } finally {
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGINT', ignore);
    process.removeListener('SIGTERM', stop);
    process.removeListener('disconnect', stop);
  }
}
