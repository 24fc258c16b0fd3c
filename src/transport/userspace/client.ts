/**
 * The userspace client transport: a core `Connection` from the process-wide
 * client endpoint, its driver and first subflow, and the `MultipathStream`
 * TLS runs over (falling back to plain TCP when the server does not speak
 * multipath, if allowed).
 */
import net from 'node:net';
import { Endpoint } from '../../core/endpoint.js';
import { createTcpProbe, type TcpProbe } from '../kernel/probe.js';
import type { ClientOpenOptions, ClientTransport, OpenedConnection } from '../types.js';
import { MultipathDriver, now } from './driver.js';
import { exposeAddresses, UserspaceInfo, userspaceKeyBinding } from './info.js';
import { MultipathStream } from './stream.js';
import { TRANSPORT_MSS } from '../../core/config.js';

let probe: TcpProbe | undefined | null = null;
/** The TCP_INFO probe for userspace subflows (Linux with koffi), made once. */
export function tcpProbe(): TcpProbe | undefined {
  if (probe === null) probe = createTcpProbe();
  return probe;
}

let sharedEndpoint: Endpoint | undefined;
/** The process-wide client endpoint: its token table keeps client tokens unique. */
export function clientEndpoint(): Endpoint {
  sharedEndpoint ??= new Endpoint({ acceptModes: [] });
  return sharedEndpoint;
}

/** Emits 'subflow' on `target` once for each subflow of `info` that is established. */
export function reportSubflows(target: net.Socket, info: UserspaceInfo): () => void {
  const reported = new Set<number>();
  return () => {
    for (const s of info.subflows()) {
      if (s.state === 'established' && !reported.has(s.id)) {
        reported.add(s.id);
        target.emit('subflow', s);
      }
    }
  };
}

export const userspaceClient: ClientTransport = {
  name: 'userspace',
  open({ host, port, mptcp: mp }: ClientOpenOptions): OpenedConnection {
    const localAddresses = mp.localAddresses?.map((address) => ({ address }));
    const conn = clientEndpoint().connect({
      mode: mp.keyMode ?? 'external',
      remote: { address: host, port },
      localAddresses,
      scheduler: mp.scheduler,
      mss: TRANSPORT_MSS,
      limits: { ...mp.limits, ...(mp.maxSubflows ? { maxSubflows: mp.maxSubflows } : {}) },
      addAddrPolicy: mp.addAddrPolicy,
      allowAnnouncedPorts: mp.allowAnnouncedPorts,
    }, now());
    const driver = new MultipathDriver(conn, { defaultPort: port, probe: tcpProbe() });
    const first = net.connect({ host, port, localAddress: mp.localAddresses?.[0] });
    driver.attach(0, first);
    const fallbackAllowed = mp.fallback ?? true;
    const stream = new MultipathStream(driver, fallbackAllowed ? { host, port, localAddress: mp.localAddresses?.[0] } : undefined);
    const info = new UserspaceInfo(driver);
    const keys = userspaceKeyBinding(driver, () => info.mode === 'userspace');
    return {
      transport: 'userspace',
      socket: stream,
      keys,
      wrap: (allowHalfOpen, make) => stream.wrapWithHalfOpen(allowHalfOpen, make),
      attach: (tlsSocket) => {
        exposeAddresses(tlsSocket, () => stream.addressSocket());
        stream.on('fallback', (reason: string) => {
          info.mode = 'fallback';
          info.fallbackReason = reason;
        });
        driver.on('subflow', reportSubflows(tlsSocket, info));
        return info;
      },
    };
  },
};
