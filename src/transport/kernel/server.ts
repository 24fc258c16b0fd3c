/**
 * The kernel server transport: with `mptcp.kernel`, `listen(port…)` listens
 * on an IPPROTO_MPTCP socket. Kernel-MPTCP clients arrive as MPTCP sockets,
 * everyone else (plain TLS, userspace multipath) as plain TCP ones; all go
 * through the userspace transport's acceptor, and node:tls serves the kernel
 * ones as plain sockets: `accepted` tells them apart afterwards.
 */
import type net from 'node:net';
import type { KeyBinding, ServerTransport, TransportConnection } from '../types.js';
import { KERNEL_EXPORTER_TOKENS, KernelInfo, watchKernelSubflows } from './info.js';
import { useKernelListener } from './socket.js';

export const kernelServer: ServerTransport = {
  name: 'kernel',
  listen(server: net.Server): void {
    useKernelListener(server);
  },
  /** A kernel-MPTCP connection (mode 'kernel', same exporter context as the client), or undefined. */
  accepted(socket: net.Socket): TransportConnection | undefined {
    const info = KernelInfo.forAccepted(socket);
    if (!info) return undefined;
    const keys: KeyBinding = {
      use: 'fingerprint',
      context: () => KERNEL_EXPORTER_TOKENS,
      install: () => {},
      count: () => {},
    };
    return {
      transport: 'kernel',
      keys,
      attach: (s) => {
        watchKernelSubflows(s, info);
        return info;
      },
    };
  },
};
