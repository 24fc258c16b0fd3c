/**
 * Small helper for tests that need Linux network namespaces: uniquely named
 * namespaces, veth pairs created directly inside them (never in the root
 * namespace), commands run inside with `ip netns exec`, and cleanup that
 * always runs (call `cleanup()` in finally/afterAll; a process 'exit' hook
 * is a second line of defence).
 *
 * Only use 198.18.0.0/15 (RFC 2544 benchmarking) addresses inside the
 * namespaces this creates.
 */
import { type ChildProcess, spawn, type SpawnOptions, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command synchronously; throws with its output when it fails. */
export function run(cmd: string, args: readonly string[], opts: { allowFail?: boolean; timeoutMs?: number } = {}): RunResult {
  const r: SpawnSyncReturns<string> = spawnSync(cmd, args, {
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 10_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const res = { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  if (!opts.allowFail && (r.error || r.status !== 0)) {
    throw new Error(
      `command failed (${r.error ? r.error.message : `exit ${r.status}`}): ${cmd} ${args.join(' ')}\n${res.stderr}${res.stdout}`,
    );
  }
  return res;
}

/**
 * Whether this process can create network namespaces: running as root and
 * `ip netns add/del` working. Returns the reason when not.
 */
export function netnsAvailable(): { ok: true } | { ok: false; reason: string } {
  if (process.platform !== 'linux') return { ok: false, reason: `platform is ${process.platform}, not linux` };
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return { ok: false, reason: `not running as root (uid ${process.getuid()})` };
  }
  const probe = `mptls-probe-${process.pid}-${randomBytes(3).toString('hex')}`;
  const add = run('ip', ['netns', 'add', probe], { allowFail: true });
  if (add.status !== 0) return { ok: false, reason: `ip netns add failed: ${add.stderr.trim() || `exit ${add.status}`}` };
  run('ip', ['netns', 'del', probe], { allowFail: true });
  return { ok: true };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Deletes namespaces named `mptls-<tag>-<pid>-<hex>` (this helper's naming)
 * whose creating process is gone, i.e. leftovers of a killed test run.
 */
export function sweepStaleNamespaces(): string[] {
  const list = run('ip', ['netns', 'list'], { allowFail: true });
  const removed: string[] = [];
  for (const line of list.stdout.split('\n')) {
    const name = line.trim().split(/\s+/)[0];
    const m = /^mptls-[a-z0-9]+-(\d+)-[0-9a-f]+(-[a-z0-9]+)?$/.exec(name ?? '');
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || pidAlive(pid)) continue;
    run('ip', ['netns', 'del', name], { allowFail: true });
    removed.push(name);
  }
  return removed;
}

/** Whether `pid` exists and is not a zombie (Linux /proc). */
export function pidRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Blocks the thread for `ms` milliseconds (cleanup paths must stay synchronous for the 'exit' hook). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Pids of the processes whose network namespace is `ns` (`ip netns pids`); empty when it cannot tell. */
export function namespacePids(ns: string): number[] {
  const r = run('ip', ['netns', 'pids', ns], { allowFail: true });
  if (r.status !== 0) return [];
  return r.stdout
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((n) => Number.isInteger(n) && n > 0 && n !== process.pid);
}

/**
 * SIGKILLs, by pid, every process still inside `ns` (a namespace this
 * process created, so they were started by us or our children, e.g. a
 * grandchild of a shell), then waits up to `waitMs` for them to be gone, so
 * that deleting the namespace really frees it and its links.
 */
export function killNamespaceProcesses(ns: string, waitMs = 2000): void {
  let pids = namespacePids(ns);
  if (pids.length === 0) return;
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline) {
    // A killed orphan stays a zombie until its new parent (pid 1, which may
    // be slow to reap) collects it; a zombie no longer holds the namespace.
    pids = pids.filter(pidRunning);
    if (pids.length === 0) return;
    sleepSync(10);
  }
}

/**
 * A set of namespaces and the processes started in them, torn down together.
 * Names are `mptls-<tag>-<pid>-<random>-<suffix>`.
 */
export class NetnsLab {
  readonly prefix: string;
  private readonly namespaces: string[] = [];
  private readonly children = new Set<ChildProcess>();
  private cleaned = false;
  private readonly exitHook = () => this.cleanup();

  constructor(tag = 'lab') {
    this.prefix = `mptls-${tag}-${process.pid}-${randomBytes(3).toString('hex')}`;
    process.once('exit', this.exitHook);
  }

  /**
   * Creates a namespace with loopback up, IPv6 disabled (no router/neighbour
   * solicitations on the test links) and reverse-path filtering off, all set
   * before any link is created so new interfaces inherit the defaults.
   */
  addNamespace(suffix: string): string {
    const name = `${this.prefix}-${suffix}`;
    run('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    this.exec(name, 'sysctl', [
      '-qw',
      'net.ipv4.conf.all.rp_filter=0',
      'net.ipv4.conf.default.rp_filter=0',
      'net.ipv6.conf.all.disable_ipv6=1',
      'net.ipv6.conf.default.disable_ipv6=1',
    ]);
    run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  }

  /**
   * Creates a veth pair with one end (`ifA`) in `nsA` and the other (`ifB`)
   * in `nsB`, assigns the given addresses (CIDR text) and brings both up.
   */
  addVeth(nsA: string, ifA: string, addrA: string, nsB: string, ifB: string, addrB: string): void {
    run('ip', ['-n', nsA, 'link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB]);
    run('ip', ['-n', nsA, 'addr', 'add', addrA, 'dev', ifA]);
    run('ip', ['-n', nsB, 'addr', 'add', addrB, 'dev', ifB]);
    run('ip', ['-n', nsA, 'link', 'set', ifA, 'up']);
    run('ip', ['-n', nsB, 'link', 'set', ifB, 'up']);
  }

  /** `ip -n ns ARGS...` */
  ip(ns: string, ...args: string[]): RunResult {
    return run('ip', ['-n', ns, ...args]);
  }

  /** Runs a command inside `ns` and waits for it; throws when it fails. */
  exec(ns: string, cmd: string, args: readonly string[] = [], opts: { allowFail?: boolean; timeoutMs?: number } = {}): RunResult {
    return run('ip', ['netns', 'exec', ns, cmd, ...args], opts);
  }

  /**
   * Starts a command inside `ns` in the background (`ip netns exec` execs
   * the command, so the child's pid is the command's); it is killed on
   * cleanup if still running.
   */
  spawn(
    ns: string,
    cmd: string,
    args: readonly string[] = [],
    opts: Omit<SpawnOptions, 'stdio' | 'detached'> = {},
  ): LabProcess {
    return new LabProcess(this.spawnChild(ns, cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  /**
   * Like `spawn` but returns the raw ChildProcess, with the caller's spawn
   * options (default stdio: stdin ignored, stdout/stderr piped; a caller
   * that never reads the pipes should pass `stdio: 'ignore'` or 'inherit').
   * It is tracked and killed on cleanup like the others.
   */
  spawnChild(ns: string, cmd: string, args: readonly string[] = [], opts: SpawnOptions = {}): ChildProcess {
    if (this.cleaned) throw new Error(`NetnsLab ${this.prefix} is already cleaned up`);
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Kills the processes this lab started (by their own pid) and deletes its namespaces. Idempotent. */
  cleanup(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    process.removeListener('exit', this.exitHook);
    for (const child of this.children) {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          child.kill('SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    this.children.clear();
    // Anything else still running inside (e.g. a grandchild) would keep the
    // namespace, and its links, alive after its name is deleted.
    for (const ns of this.namespaces) killNamespaceProcesses(ns);
    // Deleting a namespace removes its veth ends (and thereby their peers).
    for (const ns of this.namespaces.splice(0).reverse()) {
      run('ip', ['netns', 'del', ns], { allowFail: true });
    }
  }
}

/**
 * A background process started in a namespace. Its stdout and stderr are
 * read from the start and kept (interleaved), so nothing it prints is lost
 * and 'close' always fires.
 */
export class LabProcess {
  private buf = '';
  private readonly closed: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    const onData = (d: Buffer) => {
      this.buf += d.toString('utf8');
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    this.closed = new Promise((resolve) => child.once('close', (code) => resolve(code)));
  }

  /** Everything printed so far. */
  output(): string {
    return this.buf;
  }

  /** Resolves with the first match of `re` in the output (past or future); rejects if the process ends first or on timeout. */
  waitFor(re: RegExp, timeoutMs = 5000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const m = re.exec(this.buf);
        if (m) {
          done();
          resolve(m[0]);
        }
        return Boolean(m);
      };
      const onData = () => void check();
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re}; output:\n${this.buf}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.child.stdout?.off('data', onData);
        this.child.stderr?.off('data', onData);
      };
      if (check()) return;
      // Listeners added after the buffering ones, so the buffer is current when they run.
      this.child.stdout?.on('data', onData);
      this.child.stderr?.on('data', onData);
      this.closed.then((code) => {
        if (check()) return;
        done();
        reject(new Error(`process exited (${code}) before printing ${re}; output:\n${this.buf}`));
      });
    });
  }

  /** Resolves with the exit code once the process has exited and its output is drained; rejects on timeout. */
  exit(timeoutMs = 10_000): Promise<number | null> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`process ${this.child.pid} did not exit within ${timeoutMs} ms; output:\n${this.buf}`)),
        timeoutMs,
      );
      this.closed.then((code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });
  }

  /** Sends a signal to this process (by its own pid). */
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }
}
