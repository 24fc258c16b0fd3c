export { connect, clientEndpoint, type ConnectOptions, type MptcpClientOptions, type MptlsSocket } from './client.js';
export { createServer, DEFAULT_HANDSHAKE_TIMEOUT_MS, type ServerOptions, type MptcpServerOptions, type ServerMptcpInfo, type MptlsServer, type MptlsServerEvents, metricsContentType, type MetricsOptions, type ServerMptcpApi } from './server.js';
export * as https from './https.js';
export * as http2 from './http2.js';
export type { CodedError, MptlsUsageErrorCode } from './errors.js';
export type { MptcpMode, MptcpPathState, MptcpSocketInfo, MptcpSubflow } from '../transport/index.js';
export type { MptcpSubflowDown } from './session.js';
export { haproxyConfig, HaproxyConfigError, type HaproxyConfigOptions, type HaproxyBackend } from './haproxy.js';
export * as undici from './undici.js';
