/**
 * The one path every connection takes once its TLS socket exists, whichever
 * transport carries it: `.mptcp` from the transport, renegotiation refused
 * where keys are installed, and at the end of the first handshake the keys
 * bound to the session (src/tls: session check, exporter, fingerprints).
 */
import type tls from 'node:tls';
import { MptlsTlsError, refuseRenegotiation, weakBindingReason } from '../tls/binding.js';
import { exportMptcpKeys, keyFingerprints } from '../tls/keys.js';
import type { MptcpSocketInfo, MptcpSubflow, TransportConnection, TransportInfo } from '../transport/index.js';

/** What 'subflow-down' reports: the subflow's id and why it went (the core's `SubflowDownReason`). */
export interface MptcpSubflowDown {
  id: number;
  reason: string;
}

/**
 * A TLS socket of mptls. Userspace multipath connections also emit
 * 'subflow' (a subflow came up), 'subflow-down', 'paths-lost' (every
 * subflow gone: parked, `mptcp.state === 'parked'`) and 'paths-restored'
 * (a join resumed it).
 */
export type MptlsSocket = tls.TLSSocket & {
  mptcp: MptcpSocketInfo;
  on(event: 'subflow', listener: (info: MptcpSubflow) => void): MptlsSocket;
  on(event: 'subflow-down', listener: (info: MptcpSubflowDown) => void): MptlsSocket;
  on(event: 'paths-lost' | 'paths-restored', listener: () => void): MptlsSocket;
  once(event: 'subflow', listener: (info: MptcpSubflow) => void): MptlsSocket;
  once(event: 'subflow-down', listener: (info: MptcpSubflowDown) => void): MptlsSocket;
  once(event: 'paths-lost' | 'paths-restored', listener: () => void): MptlsSocket;
};

/**
 * Gives `socket` its transport connection: `.mptcp`, subflow reporting, and
 * (for a connection whose keys are installed) refused renegotiation: the keys
 * belong to the first handshake. `onRenegotiation` closes the socket (the
 * refusal is counted already).
 */
export function adopt(socket: tls.TLSSocket, connection: TransportConnection, onRenegotiation: () => void): TransportInfo {
  const info = connection.attach(socket);
  (socket as MptlsSocket).mptcp = info;
  if (connection.keys.use === 'install') {
    refuseRenegotiation(socket, () => {
      connection.keys.count('TlsRenegotiationRefused');
      onRenegotiation();
    });
  }
  return info;
}

/**
 * Binds the connection's keys to the TLS session; call it once, at the end
 * of the first handshake. Keys that are installed need a session fit to carry
 * them (`weakBindingReason`): a refusal is counted (`TlsBindingRefused`) and
 * returned for the caller to report before it closes the socket. Keys that
 * are only fingerprinted never fail. Throws only when exporting or
 * installing fails: the caller ends that connection, never lets it escape an
 * event handler.
 */
export function bindKeys(socket: tls.TLSSocket, connection: TransportConnection, info: TransportInfo, options: { allowWeakTls12?: boolean }): MptlsTlsError | undefined {
  const context = connection.keys.context();
  if (!context) {
    if (connection.keys.incomplete?.()) {
      connection.keys.count('MPCapableIncomplete');
      throw new MptlsTlsError('ERR_MPTLS_HANDSHAKE_FAILED', 'the TLS handshake finished before the MP_CAPABLE exchange (no SYN/ACK or third ACK): no context for the keys');
    }
    return undefined;
  }
  const { tokenA, tokenB } = context;
  if (connection.keys.use === 'fingerprint') {
    try {
      info.setKeyFingerprints(keyFingerprints(socket, tokenA, tokenB, exportMptcpKeys(socket, tokenA, tokenB)));
    } catch {
      // the socket went away under us: no fingerprints, and never a throw out of this handler
    }
    return undefined;
  }
  const weak = weakBindingReason(socket, options);
  if (weak) {
    connection.keys.count('TlsBindingRefused');
    return new MptlsTlsError('ERR_MPTLS_TLS_BINDING', `refused: ${weak}`);
  }
  const keys = exportMptcpKeys(socket, tokenA, tokenB);
  info.setKeyFingerprints(keyFingerprints(socket, tokenA, tokenB, keys));
  connection.keys.install(keys.keyA, keys.keyB);
  return undefined;
}
