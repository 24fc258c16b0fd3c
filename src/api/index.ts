export { connect, clientEndpoint, type ConnectOptions, type MptcpClientOptions, type MptlsSocket } from './client.js';
export { createServer, type ServerOptions, type MptcpServerOptions, type ServerMptcpInfo } from './server.js';
export * as https from './https.js';
export { UserspaceInfo, FallbackInfo, type MptcpMode, type MptcpSocketInfo, type MptcpSubflow } from './info.js';
export { haproxyConfig, HaproxyConfigError, type HaproxyConfigOptions, type HaproxyBackend } from './haproxy.js';
