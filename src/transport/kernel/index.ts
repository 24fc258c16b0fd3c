/**
 * `mptls/kernel`: the Linux kernel MPTCP bridge's low-level pieces, for
 * tools and tests: IPPROTO_MPTCP sockets through a lazily loaded FFI (koffi,
 * optional, raw `ffi()` included), the MPTCP/TCP socket options and their
 * decoders, and `socket.mptcp` for kernel-mode connections. Applications
 * use `connect({ mptcp: { transport: 'kernel' } })` and
 * `createServer({ mptcp: { kernel: true } })` from `mptls` instead; the
 * transport behind those is kernel/client.ts and kernel/server.ts.
 */
export {
  ffi,
  ffiStatus,
  loadFfi,
  errnoName,
  FfiUnavailableError,
  SyscallError,
  type FfiStatus,
  type Libc,
} from './ffi.js';
export * from './sockopt.js';
export {
  kernelSupport,
  mptcpSysctls,
  openMptcpFd,
  connectedMode,
  connectKernel,
  listenKernel,
  useKernelListener,
  kernelListenState,
  readMptcpNetstat,
  KernelMptcpUnavailableError,
  PEER_NO_MPTCP,
  type KernelSupport,
  type KernelConnectOptions,
  type KernelConnection,
  type KernelListenOptions,
  type KernelListenResult,
} from './socket.js';
export { KernelInfo, watchKernelSubflows, KERNEL_EXPORTER_TOKENS, type KernelSubflow, type KernelMode, type KernelModeSource } from './info.js';
export { createTcpProbe, type TcpProbe, type TcpProbeResult } from './probe.js';
