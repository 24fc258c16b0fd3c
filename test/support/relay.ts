/**
 * A recording TCP relay: what an on-path observer sees. Every connection to
 * the relay is forwarded to the target; the bytes of both directions are
 * kept, in order, per connection.
 */
import net from 'node:net';

export interface RelayedConnection {
  clientToServer: Buffer[];
  serverToClient: Buffer[];
  client: net.Socket;
  upstream: net.Socket;
}

export interface Relay {
  port: number;
  connections: RelayedConnection[];
  close(): Promise<void>;
}

export async function startRelay(targetPort: number, targetHost = '127.0.0.1', listenHost = '127.0.0.1'): Promise<Relay> {
  const connections: RelayedConnection[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: targetHost, port: targetPort });
    const rc: RelayedConnection = { clientToServer: [], serverToClient: [], client, upstream };
    connections.push(rc);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.on('data', (d) => {
      rc.clientToServer.push(Buffer.from(d));
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      rc.serverToClient.push(Buffer.from(d));
      client.write(d);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, listenHost, r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    connections,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
