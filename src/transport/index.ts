/**
 * The transport layer as src/api uses it: both transports behind one
 * interface (`types.ts`), and the connection info of each side by side
 * (`UserspaceInfo` / `FallbackInfo` in userspace/info.ts, `KernelInfo` in
 * kernel/info.ts). The kernel bridge's low-level pieces (FFI, socket options)
 * are `mptls/kernel` (kernel/index.ts), not this.
 */
export type * from './types.js';
export type { MptcpMode, MptcpPathState, MptcpSocketInfo, MptcpSubflow } from './socket-info.js';
export { userspaceClient, clientEndpoint, tcpProbe } from './userspace/client.js';
export { userspaceServer, type ServerMptcpInfo } from './userspace/server.js';
export { UserspaceInfo, FallbackInfo } from './userspace/info.js';
export { MultipathStream, MptcpClosedError, NoMultipathError } from './userspace/stream.js';
export { kernelClient } from './kernel/client.js';
export { kernelServer } from './kernel/server.js';
export { KernelInfo, type KernelMode, type KernelSubflow } from './kernel/info.js';
export { KernelMptcpUnavailableError, useKernelListener } from './kernel/socket.js';
export { Dispatcher, classify, type DispatchWorker, type DispatcherOptions } from './userspace/dispatch.js';
