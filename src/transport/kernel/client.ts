/**
 * The kernel client transport: node:tls over a Linux IPPROTO_MPTCP socket.
 * The kernel's path manager opens extra subflows (`ip mptcp endpoint`), its
 * scheduler picks them; localAddresses[0] binds the first subflow ('auto':
 * unbound, the kernel's endpoints decide), and scheduler / keyMode /
 * maxSubflows / limits / resumeTimeoutMs do not apply. Keys from TLS are
 * fingerprinted only: upstream Linux cannot install them.
 */
import type net from 'node:net';
import { NoMultipathError } from '../userspace/stream.js';
import type { ClientOpenOptions, ClientTransport, KeyBinding, OpenedConnection } from '../types.js';
import { KERNEL_EXPORTER_TOKENS, KernelInfo, watchKernelSubflows } from './info.js';
import { connectKernel } from './socket.js';

export const kernelClient: ClientTransport = {
  name: 'kernel',
  open({ host, port, allowHalfOpen, mptcp: mp }: ClientOpenOptions): OpenedConnection {
    let tlsSocket: net.Socket | undefined;
    let info: KernelInfo | undefined;
    const k = connectKernel({
      host,
      port,
      localAddress: Array.isArray(mp.localAddresses) ? mp.localAddresses[0] : undefined,
      fallback: mp.fallback ?? true,
      allowHalfOpen,
      onMode: (r) => {
        if (r.mode === 'fallback' && mp.fallback === false) tlsSocket?.destroy(new NoMultipathError(r.fallbackReason ?? 'fallback'));
      },
    });
    const keys: KeyBinding = {
      use: 'fingerprint',
      // No G-bit tokens in kernel mode: both ends use KERNEL_EXPORTER_TOKENS (tokenA = tokenB = 0).
      context: () => (info?.mode === 'kernel' ? KERNEL_EXPORTER_TOKENS : undefined),
      install: () => {},
      count: () => {},
    };
    return {
      transport: 'kernel',
      socket: k.socket,
      keys,
      // connectKernel already made the socket with the TLS socket's allowHalfOpen.
      wrap: (_allowHalfOpen, make) => make(),
      attach: (s) => {
        tlsSocket = s;
        info = new KernelInfo(s, k);
        watchKernelSubflows(s, info);
        return info;
      },
    };
  },
};
