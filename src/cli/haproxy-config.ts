/**
 * `mptls haproxy-config`: prints (or writes) the haproxy.cfg that
 * `haproxyConfig` (src/api/haproxy.ts) builds; its `HaproxyConfigError`s are
 * usage errors here.
 */
import fs from 'node:fs';
import { haproxyConfig, HaproxyConfigError } from '../api/index.js';
import { parse, positiveInt, UsageError } from './args.js';
import { EXIT_OK, type Out } from './io.js';

export const HELP = `Usage: mptls haproxy-config --listen HOST:PORT --backend ID=HOST:PORT... [--no-token-routing]

Prints a complete haproxy.cfg (mode tcp) for mptls servers behind one HAProxy
frontend. Each server must run with createServer({ mptcp: { serverId: ID } }),
so the top byte of every token it issues is its ID. The frontend reads the
first bytes of each TCP connection: MP_JOIN subflows go to the backend whose ID
is their token's top byte (req.payload(28,1)); new multipath connections and
plain TLS clients are balanced round-robin. No stick tables: the balancer keeps
no per-connection state.

  --listen HOST:PORT      the frontend's address ([IPv6]:PORT for IPv6)
  --backend ID=HOST:PORT  an mptls server and its serverId (0..255, unique);
                          repeatable
  --no-token-routing      the naive config: every subflow round-robin (joins
                          then mostly reach the wrong server and are refused)
  --inspect-delay MS      how long to wait for the first bytes (default 5000)
  --maxconn N             HAProxy's global maxconn (default: from the FD limit)
  --no-log                no tcplog lines on HAProxy's stdout
  -o, --output FILE       write the config to FILE instead of stdout
  -h, --help              this help

Check it with "haproxy -c -f FILE"; run it with "haproxy -f FILE".`;

export async function haproxyConfigCommand(args: string[], o: Out): Promise<number> {
  const { values } = parse(args, {
    listen: { type: 'string' },
    backend: { type: 'string', multiple: true },
    'no-token-routing': { type: 'boolean' },
    'inspect-delay': { type: 'string' },
    maxconn: { type: 'string' },
    'no-log': { type: 'boolean' },
    output: { type: 'string', short: 'o' },
  });
  if (values.listen === undefined) throw new UsageError('--listen HOST:PORT is required');
  const backends = values.backend ?? [];
  if (backends.length === 0) throw new UsageError('at least one --backend ID=HOST:PORT is required');
  let text: string;
  try {
    text = haproxyConfig({
      listen: values.listen,
      backends,
      tokenRouting: !values['no-token-routing'],
      inspectDelayMs: positiveInt(values['inspect-delay'], '--inspect-delay'),
      maxconn: positiveInt(values.maxconn, '--maxconn'),
      log: !values['no-log'],
    });
  } catch (e) {
    if (e instanceof HaproxyConfigError) throw new UsageError(e.message);
    throw e;
  }
  if (values.output !== undefined && values.output !== '-') await fs.promises.writeFile(values.output, text);
  else o.stdout.write(text);
  return EXIT_OK;
}
