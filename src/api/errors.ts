/**
 * API misuse errors carry a `code`, like Node's own (`ERR_INVALID_ARG_TYPE`…):
 * a standard error class (TypeError, RangeError) with `code: 'ERR_MPTLS_…'`.
 */
export type MptlsUsageErrorCode = 'ERR_MPTLS_INVALID_PORT' | 'ERR_MPTLS_INVALID_TRANSPORT' | 'ERR_MPTLS_NOT_TLS_SERVER' | 'ERR_MPTLS_INVALID_OPTION';

export type CodedError<E extends Error = Error> = E & { readonly code: MptlsUsageErrorCode };

/** `error` with `code` set (an own, enumerable property, as Node sets it). */
export function coded<E extends Error>(error: E, code: MptlsUsageErrorCode): CodedError<E> {
  return Object.assign(error, { code });
}

/** `mptcp.resumeTimeoutMs`: a finite number ≥ 0, or absent. */
export function checkResumeTimeout(value: unknown): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw coded(new RangeError(`mptcp.resumeTimeoutMs must be a finite number >= 0, got ${String(value)}`), 'ERR_MPTLS_INVALID_OPTION');
  }
}

/** `mptcp.localAddresses` / `mptcp.announce`: an array of IP address strings, or 'auto', or absent. */
export function checkAddressList(name: string, value: unknown): void {
  if (value === undefined || value === 'auto') return;
  if (!Array.isArray(value) || !value.every((a) => typeof a === 'string')) {
    throw coded(new TypeError(`mptcp.${name} must be an array of addresses or 'auto', got ${JSON.stringify(value)}`), 'ERR_MPTLS_INVALID_OPTION');
  }
}
