/** The MPTCP wire layer: option shapes, the one error type, and the codec. */
export * from './types.js';
export * from './errors.js';
export * from './options.js';
export * from './address.js';
