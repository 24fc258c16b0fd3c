/**
 * `mptls serve --metrics PORT`: the server's Prometheus metrics
 * (`server.mptcp.metrics()`, src/api/metrics.ts) over plain HTTP, on its own port, loopback
 * unless --metrics-host says otherwise. `GET /metrics` (and HEAD) only:
 * every other path is 404, every other method 405. Nothing else is served
 * there, and nothing of it is on the TLS port.
 */
import http from 'node:http';
import type net from 'node:net';
import { metricsContentType } from '../api/server.js';
import { sendText, writeHead } from './reply.js';

/** The content type of the Prometheus text format 0.0.4. */
export const METRICS_CONTENT_TYPE: string = metricsContentType;

export interface MetricsServer {
  address: string;
  port: number;
  close(): Promise<void>;
}

/** Listens on host:port (0: any free port); rejects when it cannot. */
export async function startMetricsServer(host: string, port: number, render: () => string | Promise<string>): Promise<MetricsServer> {
  const server = http.createServer(async (req, res) => {
    const p = (req.url ?? '/').split('?', 1)[0];
    const head = req.method === 'HEAD';
    if (p !== '/metrics') {
      sendText(res, 404, 'Not Found (the metrics are at /metrics)', head);
      return;
    }
    if (req.method !== 'GET' && !head) {
      sendText(res, 405, 'Method Not Allowed', false, { allow: 'GET, HEAD' });
      return;
    }
    let text: string;
    try {
      text = await render();
    } catch (e) {
      sendText(res, 500, `cannot render the metrics: ${(e as Error).message}`, head);
      return;
    }
    const body = Buffer.from(text);
    writeHead(res, 200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': body.length, 'cache-control': 'no-store' });
    res.end(head ? undefined : body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const a = server.address() as net.AddressInfo;
  return {
    address: a.address,
    port: a.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
