/**
 * The `mptls` command line: `serve` (HTTPS over multipath, static files, or
 * with --status a status page), `get` (a small curl), `info` (what this host
 * supports), `haproxy-config` (an haproxy.cfg routing joins by the token's
 * server id). One file per command; this one dispatches.
 *
 * `main(argv, io?)` returns the exit code instead of exiting, so tests run it
 * in-process; `bin/mptls.js` is the shim that calls it. Exit codes: 0 success,
 * 1 error, 2 usage; `get` uses curl's for its failures (6 resolve, 7 connect,
 * 22 HTTP status >= 400 as curl --fail, 28 timeout, 35 TLS, 45 --local, 60
 * certificate, … in io.ts).
 */
import { UsageError } from './args.js';
import * as get from './get.js';
import * as haproxy from './haproxy-config.js';
import * as info from './info.js';
import * as proxy from './proxy.js';
import { describeError, EXIT_ERROR, EXIT_OK, EXIT_USAGE, makeOut, type CliIo, type Out, version } from './io.js';
import * as serve from './serve.js';
import * as tunnel from './tunnel.js';

export {
  EXIT_CERT,
  EXIT_CONNECT,
  EXIT_EMPTY_REPLY,
  EXIT_ERROR,
  EXIT_HTTP,
  EXIT_INTERFACE,
  EXIT_OK,
  EXIT_PARTIAL,
  EXIT_PIN,
  EXIT_RECV,
  EXIT_REDIRECTS,
  EXIT_RESOLVE,
  EXIT_TIMEOUT,
  EXIT_TLS,
  EXIT_USAGE,
  EXIT_WRITE,
  type CliIo,
  type CliWritable,
} from './io.js';

interface Command {
  /** The text of "mptls <command> --help". */
  help: string;
  run(args: string[], o: Out, io: CliIo): Promise<number>;
}

const COMMANDS: ReadonlyMap<string, Command> = new Map<string, Command>([
  ['serve', { help: serve.HELP, run: (args, o, io) => serve.serveCommand(args, o, io.signal) }],
  ['get', { help: get.HELP, run: (args, o) => get.getCommand(args, o) }],
  ['info', { help: info.HELP, run: (args, o) => info.infoCommand(args, o) }],
  ['haproxy-config', { help: haproxy.HELP, run: (args, o) => haproxy.haproxyConfigCommand(args, o) }],
  ['proxy', { help: proxy.HELP, run: (args, o, io) => proxy.proxyCommand(args, o, io.signal) }],
  ['tunnel', { help: tunnel.HELP, run: (args, o, io) => tunnel.tunnelCommand(args, o, io.signal) }],
]);

const USAGE = `Usage: mptls <command> [options]

Commands:
  serve   HTTPS over TLS-bound multipath TCP: a directory, or (--status) a status page;
          --kernel for kernel-MPTCP clients too, --metrics PORT for Prometheus
  get     fetch an https:// URL over multipath (a small curl: -H -X -d -I -L -O -w -m --retry …)
  info    what this host supports (kernel MPTCP, sysctls, koffi, transports)
  haproxy-config
          an haproxy.cfg (mode tcp) that routes joins by their token's server id
  proxy   an HTTP CONNECT proxy over multipath for any TCP application (--allow required)
  tunnel  any TCP application over multipath to an mptls proxy (-L as ssh, -D SOCKS5)
  help    help on a command

Options:
  -h, --help     this help (or "mptls <command> --help")
  -V, --version  print the version

Exit codes: 0 ok, 1 error, 2 usage; get uses curl's (6 resolve, 7 connect,
22 HTTP status >= 400, 28 timeout, 35 TLS, 45 --local, 60 certificate, …:
see "mptls get --help").`;

/** Runs the CLI; resolves to the exit code. */
export async function main(argv: string[], io: CliIo = {}): Promise<number> {
  const o = makeOut(io);
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case undefined:
        o.err(USAGE);
        return EXIT_USAGE;
      case '-h':
      case '--help':
        o.out(USAGE);
        return EXIT_OK;
      case '-V':
      case '--version':
        o.out(version());
        return EXIT_OK;
      case 'help': {
        const topic = rest[0];
        if (topic === undefined) o.out(USAGE);
        else if (COMMANDS.has(topic)) o.out(COMMANDS.get(topic)!.help);
        else throw new UsageError(`no such command: ${topic}`);
        return EXIT_OK;
      }
    }
    const command = COMMANDS.get(cmd);
    if (!command) {
      o.err(`mptls: unknown command "${cmd}"\n`);
      o.err(USAGE);
      return EXIT_USAGE;
    }
    if (rest.includes('-h') || rest.includes('--help')) {
      o.out(command.help);
      return EXIT_OK;
    }
    return await command.run(rest, o, io);
  } catch (e) {
    if (e instanceof UsageError) {
      o.err(`mptls ${cmd ?? ''}: ${e.message}`.replace(/ +:/, ':'));
      o.err(COMMANDS.get(cmd ?? '')?.help ?? USAGE);
      return EXIT_USAGE;
    }
    o.err(`mptls ${cmd}: ${describeError(e)}`);
    return EXIT_ERROR;
  }
}
