/**
 * mptls: TLS-bound Multipath TCP for Node.js.
 *
 * The package root re-exports each layer's public surface.
 */
export * from './wire/index.js';
export * from './crypto/index.js';
export * from './core/index.js';
export * from './tls/keys.js';
export * from './tls/pin.js';
export { generateSelfSigned } from './tls/certs.js';
export * from './api/index.js';
export { MultipathStream, MptcpClosedError, NoMultipathError } from './transport/userspace/stream.js';
export { FrameError, FrameParser, MAGIC, JOIN_TOKEN_OFFSET, FIRST_SUBTYPE_OFFSET } from './transport/userspace/frame.js';
export * as kernel from './transport/kernel/index.js';
