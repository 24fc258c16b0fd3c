export { connect, clientEndpoint, type ConnectOptions, type MptcpClientOptions, type MptlsSocket } from './client.js';
export { createServer, DEFAULT_HANDSHAKE_TIMEOUT_MS, type ServerOptions, type MptcpServerOptions, type ServerMptcpInfo } from './server.js';
export * as https from './https.js';
export type { CodedError, MptlsUsageErrorCode } from './errors.js';
export type { MptcpMode, MptcpPathState, MptcpSocketInfo, MptcpSubflow } from '../transport/index.js';
export type { MptcpSubflowDown } from './session.js';
export { haproxyConfig, HaproxyConfigError, type HaproxyConfigOptions, type HaproxyBackend } from './haproxy.js';
