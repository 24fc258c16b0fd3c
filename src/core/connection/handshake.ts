/**
 * The MP_CAPABLE handshake, the keys (installKeys, NEW_KEY) and MP_FASTCLOSE's key check. Owns `KeyState`: the keys in #private fields (no util.inspect, no enumeration reaches them) and what the handshake learned (IDSNs, whether the keys are installed and confirmed).
 */
import type { MpCapableOption, NewKeyOption } from '../../wire/types.js';
import { CapableFlag, TcpRstReason } from '../../wire/types.js';
import { idsnExternal, idsnFromKey, newKeyHmac, timingSafeEqual, tokenFromKey } from '../../crypto/index.js';
import type { Subflow } from '../subflow.js';
import type { PathInfo } from '../types.js';
import * as join from './join.js';
import * as pm from './pm.js';
import * as recv from './recv.js';
import { Timer } from './timers.js';
import type { Connection } from './index.js';
import { INITIAL_PEER_WINDOW } from './constants.js';
import { BOUNDS } from '../config.js';

/** State owned by handshake.ts. */
export class KeyState {
  // #private: invisible to util.inspect and to any code outside this class.
  #local: Uint8Array | undefined;
  #remote: Uint8Array | undefined;
  get local(): Uint8Array | undefined {
    return this.#local;
  }
  set local(k: Uint8Array | undefined) {
    this.#local = k;
  }
  get remote(): Uint8Array | undefined {
    return this.#remote;
  }
  set remote(k: Uint8Array | undefined) {
    this.#remote = k;
  }
  /**
   * The MP_CAPABLE exchange: 'syn-sent' (client, until the SYN/ACK),
   * 'syn-received' (server, until the third ACK), then 'done' (both tokens
   * known). In G mode data flows from the start (first flight); the tokens
   * are needed only for the keys (the exporter's context) and for joins.
   */
  capable: 'syn-sent' | 'syn-received' | 'done' = 'syn-sent';
  installed = false;
  confirmed = false;
  peerNewKey: NewKeyOption | undefined;
  /** The subflow our NEW_KEY went out on, and how often it was sent again. */
  newKeySentOn: number | undefined;
  newKeyResends = 0;
  newKeyPending = false;
  idsnLocal = 0n;
  idsnRemote = 0n;
}

// ─── handshake ───────────────────────────────────────────────────────────

/** @internal Client: create the initial subflow and its MP_CAPABLE SYN. */
export function startClient(c: Connection, local: { token?: number; key?: Uint8Array }, now: number): number {
  if (c.mode === 'external') c.localToken = local.token!;
  else {
    c.keys.local = local.key!;
    c.localToken = local.token!;
  }
  const la = c.paths.localAddresses[0];
  const ra = c.paths.remoteAddresses[0];
  const sf = c.addSubflow(c.mode === 'external' ? 'established' : 'syn-sent', {
    initial: true,
    localAddressId: 0,
    remoteAddressId: 0,
    backup: la?.backup ?? false,
    path: { localAddress: la?.address, remoteAddress: ra?.address, remotePort: ra?.port },
    now,
  });
  c.keys.capable = 'syn-sent';
  c.queue(sf, [{ subtype: 'MP_CAPABLE', version: 1, flags: capableFlags(c) }]);
  c.host.mib.inc('MPCapableSYNTX');
  // G mode: the first data (the ClientHello) follows the SYN in the same write.
  if (c.mode === 'external') openDataPath(c);
  return sf.id;
}

/** @internal Server: the MP_CAPABLE SYN arrived on a new subflow. */
export function startServer(c: Connection, local: { token: number; key?: Uint8Array }, path: PathInfo, now: number): number {
  c.localToken = local.token;
  if (c.mode === 'rfc8684') c.keys.local = local.key!;
  const sf = c.addSubflow(c.mode === 'external' ? 'established' : 'syn-received', {
    initial: true,
    localAddressId: 0,
    remoteAddressId: 0,
    backup: false,
    path,
    now,
  });
  const synack: MpCapableOption =
    c.mode === 'external'
      ? { subtype: 'MP_CAPABLE', version: 1, flags: capableFlags(c), senderToken: c.localToken }
      : { subtype: 'MP_CAPABLE', version: 1, flags: capableFlags(c), senderKey: c.keys.local };
  c.keys.capable = 'syn-received';
  c.queue(sf, [synack]);
  // G mode: the client's first data may follow its SYN; ours follows the SYN/ACK.
  if (c.mode === 'external') openDataPath(c);
  return sf.id;
}

/**
 * Data may flow from here on: the IDSNs are known (G mode: two constants,
 * at once; rfc8684: from the keys, at the end of the MP_CAPABLE exchange).
 */
function openDataPath(c: Connection): void {
  if (c.mode === 'external') {
    const [mine, theirs] = c.role === 'client' ? (['initiator', 'responder'] as const) : (['responder', 'initiator'] as const);
    c.keys.idsnLocal = idsnExternal(mine);
    c.keys.idsnRemote = idsnExternal(theirs);
  } else {
    c.keys.idsnLocal = idsnFromKey(c.keys.local!);
    c.keys.idsnRemote = idsnFromKey(c.keys.remote!);
  }
  c.state = 'established';
  c.recv.advertisedRightEdge = c.limits.recvBufferLimit;
  c.send.peerRightEdge = INITIAL_PEER_WINDOW; // until the peer advertises its own
}

export function capableFlags(c: Connection): number {
  return CapableFlag.H_HMAC_SHA256 | (c.mode === 'external' ? CapableFlag.G_EXTERNAL_KEYS : 0);
}

/**
 * Installs the application's keys (external mode): keyA is the initiator's
 * (client's), keyB the responder's, 8 bytes each, equal on both sides.
 * Sends NEW_KEY (K=0) to prove possession; joins and ADD_ADDR start once
 * the peer's NEW_KEY verifies.
 */
export function installKeys(c: Connection, keyA: Uint8Array, keyB: Uint8Array, now: number): void {
  if (c.mode !== 'external') throw new TypeError('installKeys is for external-key (G-bit) connections');
  if (c.state === 'closed') throw new TypeError('installKeys on a closed connection');
  if (c.keys.installed) throw new TypeError('keys already installed');
  if (c.keys.capable !== 'done') {
    // The peer let TLS finish before the MP_CAPABLE exchange (no SYN/ACK, or
    // no third ACK): the keys' context (both tokens) is unknown.
    c.mib.inc('MPCapableIncomplete');
    c.abortInternal('handshake-failed', now);
    return;
  }
  if (keyA.length !== 8 || keyB.length !== 8) throw new RangeError('keyA and keyB must be 8 bytes each');
  c.keys.local = c.role === 'client' ? keyA.slice() : keyB.slice();
  c.keys.remote = c.role === 'client' ? keyB.slice() : keyA.slice();
  c.keys.installed = true;
  c.mib.inc('KeysInstalled');
  c.events.push({ type: 'keys-installed' });
  sendNewKey(c);
  if (c.keys.peerNewKey) {
    const nk = c.keys.peerNewKey;
    c.keys.peerNewKey = undefined;
    verifyNewKey(c, nk, now);
  }
  if (c.recv.heldFins.length > 0 && c.state === 'established') recv.checkHeldFins(c);
  if (c.role === 'server' && c.state === 'established') join.releaseHeldJoins(c, now);
}

/**
 * Our NEW_KEY (K=0) on an established subflow. Sent once; again (at most
 * BOUNDS.maxNewKeyResends times) when the subflow that carried it goes down
 * while others remain: TCP may have lost it with that subflow, and a
 * duplicate costs the peer nothing (it ignores NEW_KEY once confirmed).
 */
export function sendNewKey(c: Connection): void {
  const sf = c.anyEstablished();
  if (!sf) return;
  c.keys.newKeyPending = false;
  const hmac = newKeyHmac(c.localToken, c.remoteToken, externalKey(c));
  c.queue(sf, [recv.dssAck(c), { subtype: 'NEW_KEY', keyId: 0, hmac }], true);
  c.keys.newKeySentOn = sf.id;
  c.mib.inc('NewKeyTx');
}

/** The subflow that carried our NEW_KEY went down: send it again elsewhere (see sendNewKey). */
export function onNewKeyCarrierDown(c: Connection, subflow: number): void {
  if (c.keys.newKeySentOn !== subflow || c.keys.newKeyResends >= BOUNDS.maxNewKeyResends) return;
  c.keys.newKeySentOn = undefined;
  c.keys.newKeyResends++;
  if (c.anyEstablished()) sendNewKey(c);
  else c.keys.newKeyPending = true; // the next subflow up carries it (a resume)
}

/** keyA‖keyB, the external key NEW_KEY's HMAC covers. */
export function externalKey(c: Connection): Uint8Array {
  const out = new Uint8Array(16);
  const [a, b] = c.role === 'client' ? [c.keys.local!, c.keys.remote!] : [c.keys.remote!, c.keys.local!];
  out.set(a, 0);
  out.set(b, 8);
  return out;
}

export function verifyNewKey(c: Connection, opt: NewKeyOption, now: number): void {
  c.mib.inc('NewKeyRx');
  if (c.keys.confirmed) return;
  const expected = newKeyHmac(c.remoteToken, c.localToken, externalKey(c));
  if (!timingSafeEqual(expected, opt.hmac)) {
    c.mib.inc('NewKeyHMacFailure');
    c.abortInternal('key-mismatch', now);
    return;
  }
  confirmKeys(c, now);
}

export function confirmKeys(c: Connection, now: number): void {
  c.keys.confirmed = true;
  c.events.push({ type: 'keys-confirmed' });
  if (c.role === 'client') {
    // G mode opened its joins at the SYN/ACK; their SYN/ACKs wait for this.
    if (c.mode === 'external') join.continueHeldJoins(c, now);
    else join.startJoins(c, c.pm.onJoinsAllowed(pm.pmContext(c)), now);
  } else {
    for (const a of c.pm.announce(pm.pmContext(c), c.paths.announceConfig)) pm.announce(c, a);
  }
}

/** Returns false when the subflow or connection went away. */
export function handleCapable(c: Connection, sf: Subflow, o: MpCapableOption, now: number): boolean {
  const external = (o.flags & CapableFlag.G_EXTERNAL_KEYS) !== 0;
  if (!sf.initial || o.dataLevelLength !== undefined) {
    // Not on a join; and never the "ACK with data" form (length 14/16 or
    // 22/24): data travels in DSS frames (PROTOCOL.md §1.1).
    c.mib.inc('ProtocolError');
    c.resetSubflow(sf, TcpRstReason.MPTCP_SPECIFIC, 'error', now);
    return false;
  }
  if (c.keys.capable === 'syn-sent' && c.role === 'client') {
    // SYN/ACK
    c.mib.inc('MPCapableSYNACKRX');
    if (external !== (c.mode === 'external') || o.version !== 1) {
      c.mib.inc('MPCapableModeRefused');
      c.abortInternal('mode-mismatch', now);
      return false;
    }
    if (c.mode === 'external') {
      if (o.senderToken === undefined || o.receiverToken !== undefined) return failHandshake(c, now);
      c.remoteToken = o.senderToken;
      c.queue(sf, [
        { subtype: 'MP_CAPABLE', version: 1, flags: capableFlags(c), senderToken: c.localToken, receiverToken: c.remoteToken },
      ]);
    } else {
      if (!o.senderKey || o.receiverKey) return failHandshake(c, now);
      c.keys.remote = o.senderKey.slice();
      c.remoteToken = tokenFromKey(c.keys.remote);
      c.queue(sf, [
        { subtype: 'MP_CAPABLE', version: 1, flags: capableFlags(c), senderKey: c.keys.local, receiverKey: c.keys.remote },
      ]);
    }
    establish(c, sf, now);
    return true;
  }
  if (c.keys.capable === 'syn-received' && c.role === 'server') {
    // third ACK
    c.mib.inc('MPCapableACKRX');
    if (external !== (c.mode === 'external')) return failHandshake(c, now);
    if (c.mode === 'external') {
      if (o.senderToken === undefined || o.receiverToken !== c.localToken) return failHandshake(c, now);
      c.remoteToken = o.senderToken;
    } else {
      if (!o.senderKey || !o.receiverKey || !timingSafeEqual(o.receiverKey, c.keys.local!)) return failHandshake(c, now);
      c.keys.remote = o.senderKey.slice();
      c.remoteToken = tokenFromKey(c.keys.remote);
    }
    establish(c, sf, now);
    return true;
  }
  // MP_CAPABLE at any other moment: a retransmission or an attack; ignore.
  c.mib.inc('ProtocolError');
  return true;
}

export function failHandshake(c: Connection, now: number): false {
  c.abortInternal('handshake-failed', now);
  return false;
}

/** The MP_CAPABLE exchange is complete on `sf` (the initial subflow): both tokens (or keys) are known. */
export function establish(c: Connection, sf: Subflow, now: number): void {
  c.keys.capable = 'done';
  if (c.mode === 'external') {
    c.mib.inc('MPCapableExternalKeys');
  } else {
    c.keys.installed = true;
    openDataPath(c);
  }
  sf.state = 'established';
  sf.sampleRtt(now - sf.handshakeStarted);
  c.timerTable.clear(Timer.Establish);
  c.events.push({ type: 'established' });
  c.events.push({ type: 'subflow-up', subflow: sf.id });
  if (c.role === 'server') sf.ackPending = true; // tell the client our window
  // rfc8684: the keys are known now. The server may use them at once; the
  // client waits for the server's first DSS, which proves the server got the
  // third ACK, so its first MP_JOIN cannot overtake it.
  if (c.mode === 'rfc8684' && c.role === 'server') confirmKeys(c, now);
  // G mode: the client opens its joins now (tokenB is known), while TLS is
  // still running; the server holds them until its keys are installed and
  // the client completes them once the keys are confirmed (PROTOCOL.md §6.1).
  if (c.mode === 'external' && c.role === 'client') join.startJoins(c, c.pm.onJoinsAllowed(pm.pmContext(c)), now);
}

/** Returns true when the connection closed. */
export function handleFastclose(c: Connection, receiverKey: Uint8Array, now: number): boolean {
  if (!c.keys.local || !(c.mode === 'rfc8684' || c.keys.installed) || !timingSafeEqual(receiverKey, c.keys.local)) {
    c.mib.inc('MPFastcloseBadKey');
    return false;
  }
  c.mib.inc('MPFastcloseRx');
  c.closeWith('fastclose');
  return true;
}

/**
 * NEW_KEY from the peer: verified now, or when our keys are installed (the
 * last one is held). K = 1 would announce a second key (a rekey,
 * draft-baerts §4.2), which mptls does not do: ignored and counted.
 */
export function handleNewKey(c: Connection, o: NewKeyOption, now: number): void {
  if (c.mode !== 'external') {
    c.mib.inc('ProtocolError');
  } else if (o.keyId !== 0) {
    c.mib.inc('NewKeyUnsupported');
  } else if (!c.keys.installed) {
    c.keys.peerNewKey = o; // verified when our keys arrive
  } else {
    verifyNewKey(c, o, now);
  }
}
