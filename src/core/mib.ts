/**
 * MPTCP MIB counters, named after Linux's `net/mptcp/mib.c` where Linux has
 * the same counter, and in the same style where mptls counts something Linux
 * does not (key confirmation, G-bit tokens, stalls of userspace subflows).
 */
export const MIB_NAMES = [
  // MP_CAPABLE
  'MPCapableSYNRX',
  'MPCapableSYNTX',
  'MPCapableSYNACKRX',
  'MPCapableACKRX',
  'MPCapableExternalKeys',
  'MPCapableModeRefused',
  'MPCapableIncomplete',
  'TokenCollisions',
  'TokenExhausted',
  // MP_JOIN
  'MPJoinSynTx',
  'MPJoinSynRx',
  'MPJoinSynAckRx',
  'MPJoinSynAckHMacFailure',
  'MPJoinAckRx',
  'MPJoinAckHMacFailure',
  'MPJoinNoTokenFound',
  'MPJoinBeforeKeys',
  'MPJoinRejected',
  'MPJoinTimeout',
  'MPJoinEvicted',
  'MPJoinSourceLimit',
  // early joins (G mode: opened while TLS runs, PROTOCOL.md §6.1)
  'MPJoinHeld',
  'MPJoinHeldReleased',
  'MPJoinHeldTimeout',
  'MPJoinHeldLimit',
  'MPJoinSynAckHeld',
  // key installation (draft-baerts NEW_KEY)
  'KeysInstalled',
  'NewKeyTx',
  'NewKeyRx',
  'NewKeyHMacFailure',
  'NewKeyUnsupported',
  // the TLS session the keys come from
  'TlsRenegotiationRefused',
  'TlsBindingRefused',
  'HandshakeTimeout',
  'MPCapableRefused',
  // data
  'DSSNotMatching',
  'DSSNoMapping',
  'DataAckInvalid',
  'DuplicateData',
  'OFOQueue',
  'OFOQueueTail',
  'RcvWndExceeded',
  'RcvPruned',
  'Reinjected',
  'ReinjectedBytes',
  'SubflowStale',
  'SubflowRecover',
  // path management
  'AddAddr',
  'AddAddrTx',
  'AddAddrDrop',
  'AddAddrHMacFailure',
  'AddAddrPolicyDrop',
  'AddAddrJoinLimit',
  'EchoAddSuppressed',
  'EchoAdd',
  'RmAddr',
  'RmAddrDrop',
  'RmAddrTx',
  'RmSubflow',
  'MPPrioTx',
  'MPPrioRx',
  // failure and close
  'MPFailRx',
  'MPFastcloseTx',
  'MPFastcloseRx',
  'MPFastcloseBadKey',
  'MPRstTx',
  'MPRstRx',
  'DataFinTx',
  'DataFinRx',
  'DataFinAuthFailure',
  'ProtocolError',
  'SubflowLimit',
  // outliving paths (parked connections)
  'ConnParked',
  'ConnParkRefused',
  'ConnResumed',
  'ConnResumeTimeout',
  'ConnectionLimit',
] as const;

export type MibName = (typeof MIB_NAMES)[number];
export type MibCounters = Record<MibName, number>;

const ZERO = Object.freeze(Object.fromEntries(MIB_NAMES.map((n) => [n, 0])) as MibCounters);

/** A set of counters; increments also go to `parent` (a connection counts into its endpoint). */
export class Mib {
  readonly values: MibCounters;
  /**
   * Observer, set from outside the core (the transport's NODE_DEBUG=mptls
   * trace): called after each increment of this Mib, with the counter's
   * name and the amount. Unset (the default) it costs one property check.
   * It runs inside the core's own handlers: it must not throw nor change
   * the connection (reading it is fine). It sees counter names only, never
   * key material.
   */
  onIncrement: ((name: MibName, by: number) => void) | undefined;
  constructor(private readonly parent?: Mib) {
    this.values = { ...ZERO };
  }
  inc(name: MibName, by = 1): void {
    this.values[name] += by;
    if (this.onIncrement) this.onIncrement(name, by);
    if (this.parent) this.parent.inc(name, by);
  }
  /** A copy, safe to hand out. Never contains key material: counters only. */
  snapshot(): MibCounters {
    return { ...this.values };
  }
}
