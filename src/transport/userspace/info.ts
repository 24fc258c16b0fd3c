/**
 * `socket.mptcp` of the userspace transport (and of a plain TCP connection):
 * what a TLSSocket of mptls says about its multipath side.
 * Counters and fingerprints only: never key material.
 */
import type net from 'node:net';
import type { MibCounters } from '../../core/mib.js';
import { MIB_NAMES } from '../../core/mib.js';
import type { MptcpMode, MptcpPathState, MptcpSubflow } from '../socket-info.js';
import type { KeyBinding, OpenedConnection, TransportInfo } from '../types.js';
import type { MultipathStream } from './stream.js';
import { now, type MultipathDriver } from './driver.js';

export function zeroCounters(): MibCounters {
  return Object.fromEntries(MIB_NAMES.map((n) => [n, 0])) as MibCounters;
}

/** `socket.mptcp` of a userspace multipath connection. */
export class UserspaceInfo implements TransportInfo {
  mode: MptcpMode = 'userspace';
  fallbackReason: string | undefined;
  keyFingerprints: { keyA: string; keyB: string } | undefined;
  constructor(readonly driver: MultipathDriver) {}

  setKeyFingerprints(fingerprints: { keyA: string; keyB: string }): void {
    this.keyFingerprints = fingerprints;
  }
  get tokens(): { local: number; remote: number } | undefined {
    const c = this.driver.conn;
    if (this.mode === 'fallback' || !c.remoteToken) return undefined;
    return { local: c.localToken, remote: c.remoteToken };
  }
  get keysConfirmed(): boolean {
    return this.driver.conn.areKeysConfirmed;
  }
  /** 'parked' while the connection has lost every subflow and waits for a join to resume it. */
  get state(): MptcpPathState {
    if (this.mode === 'fallback') return 'active';
    return this.driver.conn.pathState;
  }
  subflows(): MptcpSubflow[] {
    if (this.mode === 'fallback') return [];
    return this.driver.conn.subflowInfo().map((s) => {
      const sock = this.driver.socketOf(s.id);
      return {
        id: s.id,
        localAddress: sock?.localAddress ?? s.localAddress,
        localPort: sock?.localPort ?? s.localPort,
        remoteAddress: sock?.remoteAddress ?? s.remoteAddress,
        remotePort: sock?.remotePort ?? s.remotePort,
        backup: s.backup,
        state: s.state,
        bytesSent: s.bytesSent,
        bytesReceived: s.bytesReceived,
        rttMs: s.rttMs,
      };
    });
  }
  counters(): MibCounters {
    return this.driver.conn.counters();
  }
}

/** `socket.mptcp` of a connection that runs over plain TCP. */
export class FallbackInfo implements TransportInfo {
  readonly mode = 'fallback' as const;
  readonly keysConfirmed = false;
  readonly state = 'active' as const;
  constructor(readonly fallbackReason: string) {}
  /** Nothing to record: a plain TCP connection binds no keys. */
  setKeyFingerprints(): void {}
  subflows(): MptcpSubflow[] {
    return [];
  }
  counters(): MibCounters {
    return zeroCounters();
  }
}

/**
 * node:tls reads a socket's addresses from its handle, which a TLSSocket over
 * a JS stream does not have: give it those of the connection that stands for
 * it (the first live subflow, or the plain TCP connection after fallback).
 */
export function exposeAddresses(target: object, source: () => net.Socket | undefined): void {
  // Like net.Socket, keep answering after the connection closed.
  const names = ['remoteAddress', 'remotePort', 'remoteFamily', 'localAddress', 'localPort', 'localFamily'] as const;
  const last: Record<string, unknown> = {};
  const refresh = () => {
    const s = source() as unknown as Record<string, unknown> | undefined;
    if (s && s.remoteAddress !== undefined) for (const n of names) last[n] = s[n];
  };
  for (const name of names) {
    Object.defineProperty(target, name, {
      configurable: true,
      enumerable: false,
      get: () => {
        refresh();
        return last[name];
      },
    });
  }
}

/**
 * The keys of a userspace connection, either side: installed into the core
 * once the TLS handshake is done (tokenA is the client's token, tokenB the
 * server's), only for an established external-key connection and while
 * `usable()` (the client: not fallen back to plain TLS).
 */
export function userspaceKeyBinding(driver: MultipathDriver, usable: () => boolean = () => true): KeyBinding {
  const conn = driver.conn;
  return {
    use: 'install',
    context: () => {
      if (!usable() || conn.state !== 'established' || conn.mode !== 'external' || !conn.tokensExchanged) return undefined;
      return conn.role === 'client' ? { tokenA: conn.localToken, tokenB: conn.remoteToken } : { tokenA: conn.remoteToken, tokenB: conn.localToken };
    },
    incomplete: () => usable() && conn.state === 'established' && conn.mode === 'external' && !conn.tokensExchanged,
    install: (keyA, keyB) => {
      conn.installKeys(keyA, keyB, now());
      driver.pump();
    },
    count: (counter) => conn.mib.inc(counter),
  };
}

/**
 * A userspace connection as the transport interface hands it to the API,
 * either side: the multipath stream to run TLS over, its keys, and on
 * attach the TLS socket's addresses plus `onAttach` (events, fallback).
 */
/**
 * node:tls over a JS stream has no TCP handle under it: its `setNoDelay`,
 * `setKeepAlive`, `ref` and `unref` would do nothing. Point them at the
 * multipath stream, which applies them to every subflow (present and future).
 */
function socketMethodsToSubflows(tlsSocket: net.Socket, stream: MultipathStream): void {
  const s = tlsSocket as net.Socket & Record<'setNoDelay' | 'setKeepAlive' | 'ref' | 'unref', unknown>;
  s.setNoDelay = (enable?: boolean) => {
    stream.setNoDelay(enable === undefined ? true : Boolean(enable));
    return tlsSocket;
  };
  s.setKeepAlive = (enable?: boolean, initialDelayMs?: number) => {
    stream.setKeepAlive(Boolean(enable), initialDelayMs ?? 0);
    return tlsSocket;
  };
  s.ref = () => {
    stream.ref();
    return tlsSocket;
  };
  s.unref = () => {
    stream.unref();
    return tlsSocket;
  };
}

export function userspaceConnection(stream: MultipathStream, info: UserspaceInfo, keys: KeyBinding, onAttach: (tlsSocket: net.Socket) => void): OpenedConnection {
  return {
    transport: 'userspace',
    socket: stream,
    keys,
    wrap: (allowHalfOpen, make) => stream.wrapWithHalfOpen(allowHalfOpen, make),
    attach: (tlsSocket) => {
      exposeAddresses(tlsSocket, () => stream.addressSocket());
      // The TLS socket closed (destroyed before it was connected, an aborted
      // signal…): the connection goes with it, and nothing it says later
      // (a connect error) reaches a socket that has emitted 'close'.
      tlsSocket.once('close', () => {
        if (!stream.destroyed) stream.destroy();
      });
      socketMethodsToSubflows(tlsSocket, stream);
      stream.upper = tlsSocket;
      // Every error of a TLS socket passes its own '_tlsError' (node:tls): listening there adds no 'error' listener.
      tlsSocket.on('_tlsError', () => stream.upperFailed());
      onAttach(tlsSocket);
      return info;
    },
  };
}
