/**
 * mptls: TLS-bound Multipath TCP for Node.js.
 *
 * The package root re-exports each layer's public surface.
 */
export * from './wire/index.js';
export * from './crypto/index.js';
export * from './core/index.js';
