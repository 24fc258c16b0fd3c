/**
 * The one error type every wire decoder throws. `offset` is the byte offset
 * (from the start of the buffer handed to the decoder) where decoding failed.
 */
export class MptcpWireError extends Error {
  override readonly name = 'MptcpWireError';
  readonly code = 'ERR_MPTCP_WIRE';
  constructor(
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`malformed MPTCP option at offset ${offset}: ${reason}`);
  }
}
