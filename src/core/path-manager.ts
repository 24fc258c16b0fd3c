/**
 * Path managers (Linux: net/mptcp/pm*.c). The connection asks its path
 * manager what to do at the few moments that matter; the path manager only
 * decides, the connection carries it out (and enforces the limits).
 */
import type { AddressInfo } from './types.js';

export interface PmSubflowView {
  readonly id: number;
  readonly localAddressId: number;
  readonly remoteAddressId: number;
  readonly open: boolean;
}

export interface PmLocalAddress {
  readonly id: number;
  readonly address: string;
  readonly backup: boolean;
}

export interface PmRemoteAddress extends AddressInfo {
  readonly id: number;
}

export interface PmContext {
  readonly subflows: readonly PmSubflowView[];
  readonly localAddresses: readonly PmLocalAddress[];
  readonly remoteAddresses: readonly PmRemoteAddress[];
  readonly maxSubflows: number;
}

export interface JoinRequest {
  localAddressId: number;
  remoteAddressId: number;
  backup: boolean;
}

export interface PathManager {
  /**
   * Client: joins may start now (G mode: the MP_CAPABLE exchange is done,
   * tokenB is known; rfc8684 mode: the keys are confirmed).
   */
  onJoinsAllowed(ctx: PmContext): JoinRequest[];
  /**
   * Client: a verified ADD_ADDR arrived that the connection's address policy
   * admits (src/core/address-policy.ts) and `addAddrAccepted` leaves room for.
   */
  onAddressAdded(ctx: PmContext, address: PmRemoteAddress): JoinRequest[];
  /** Server: addresses to announce once keys are confirmed. */
  announce(ctx: PmContext, configured: readonly AddressInfo[]): AddressInfo[];
  /**
   * Client: a subflow went down (`attempt` = how many re-joins of this
   * address pair already failed in a row). Return a join to retry after a
   * delay, or nothing.
   */
  onSubflowClosed?(ctx: PmContext, closed: { localAddressId: number; remoteAddressId: number; reason: string }, attempt: number): { afterMs: number; request: JoinRequest } | undefined;
}

/**
 * Like Linux's in-kernel path manager: every extra local address opens one
 * subflow to the server's initial address, every announced server address
 * gets one subflow from the initial local address; never two subflows on
 * the same address pair; the subflow limit holds.
 */
export class InKernelLikePathManager implements PathManager {
  onJoinsAllowed(ctx: PmContext): JoinRequest[] {
    const out: JoinRequest[] = [];
    for (const la of ctx.localAddresses) {
      if (la.id === 0) continue;
      this.pushIfFree(ctx, out, { localAddressId: la.id, remoteAddressId: 0, backup: la.backup });
    }
    for (const ra of ctx.remoteAddresses) {
      if (ra.id === 0) continue;
      this.pushIfFree(ctx, out, { localAddressId: 0, remoteAddressId: ra.id, backup: false });
    }
    return out;
  }

  onAddressAdded(ctx: PmContext, address: PmRemoteAddress): JoinRequest[] {
    const out: JoinRequest[] = [];
    this.pushIfFree(ctx, out, { localAddressId: 0, remoteAddressId: address.id, backup: false });
    return out;
  }

  announce(_ctx: PmContext, configured: readonly AddressInfo[]): AddressInfo[] {
    return [...configured];
  }

  /**
   * A subflow that died by reset (a TCP reset, or MP_TCPRST with the T bit),
   * error or a timed-out join is joined again
   * (break-before-make: a path that comes back is used again), after 1, 2, 4,
   * 8, 16 s; a closed or removed one is not. Linux's in-kernel PM leaves a
   * dead subflow dead; mptls does not, because a userspace subflow also dies
   * when a middlebox drops an idle TCP connection. The connection caps this
   * for announced addresses: after `addAddrJoinFailures` (3) joins to one
   * that failed before completing, in total, it is not tried again
   * (`AddAddrJoinLimit`), so a server cannot aim the retries at a host that
   * is not its own.
   */
  onSubflowClosed(
    ctx: PmContext,
    closed: { localAddressId: number; remoteAddressId: number; reason: string },
    attempt: number,
  ): { afterMs: number; request: JoinRequest } | undefined {
    if (!['reset', 'error', 'join-timeout'].includes(closed.reason) || attempt >= 5) return undefined;
    const la = ctx.localAddresses.find((a) => a.id === closed.localAddressId);
    if (!ctx.remoteAddresses.some((a) => a.id === closed.remoteAddressId)) return undefined;
    return {
      afterMs: 1000 * 2 ** attempt,
      request: { localAddressId: closed.localAddressId, remoteAddressId: closed.remoteAddressId, backup: la?.backup ?? false },
    };
  }

  private pushIfFree(ctx: PmContext, out: JoinRequest[], req: JoinRequest): void {
    const open = ctx.subflows.filter((s) => s.open).length + out.length;
    if (open >= ctx.maxSubflows) return;
    const taken = (l: number, r: number) =>
      ctx.subflows.some((s) => s.open && s.localAddressId === l && s.remoteAddressId === r) ||
      out.some((o) => o.localAddressId === l && o.remoteAddressId === r);
    if (!taken(req.localAddressId, req.remoteAddressId)) out.push(req);
  }
}
