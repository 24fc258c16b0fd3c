/**
 * API misuse errors carry a `code`, like Node's own (`ERR_INVALID_ARG_TYPE`…):
 * a standard error class (TypeError, RangeError) with `code: 'ERR_MPTLS_…'`.
 */
export type MptlsUsageErrorCode = 'ERR_MPTLS_INVALID_PORT' | 'ERR_MPTLS_INVALID_TRANSPORT' | 'ERR_MPTLS_NOT_TLS_SERVER';

export type CodedError<E extends Error = Error> = E & { readonly code: MptlsUsageErrorCode };

/** `error` with `code` set (an own, enumerable property, as Node sets it). */
export function coded<E extends Error>(error: E, code: MptlsUsageErrorCode): CodedError<E> {
  return Object.assign(error, { code });
}
