/**
 * The few libc calls the kernel bridge needs (socket, close, bind,
 * setsockopt, getsockopt, if_nametoindex), through koffi.
 *
 * koffi is an optional dependency and is loaded lazily, on the first call
 * that needs it: importing mptls never loads a native addon. When it cannot
 * be loaded (not installed, no prebuilt binary for this platform, not Linux,
 * or `MPTLS_DISABLE_KOFFI=1` in the environment), every entry point reports
 * "unavailable: <reason>" ({@link ffiStatus}, {@link FfiUnavailableError})
 * and the callers fall back to plain TCP.
 *
 * Loading is synchronous ({@link ffi}): `connect()` and `server.listen()`
 * return synchronously, as node:tls does, so the bridge cannot await an
 * `import()` on their path. {@link loadFfi} does the same through a dynamic
 * `import('koffi')` for callers that can await; both fill the same cache.
 *
 * Buffers are passed to C as pointers for the duration of one call only.
 * Memory the kernel writes through a pointer stored *inside* a struct
 * (MPTCP_FULL_INFO) comes from {@link nativeAlloc}, whose address is stable.
 */
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';

/** What we use of koffi (declared here so type-checking never needs koffi installed). */
interface KoffiFunction {
  (...args: unknown[]): unknown;
}
interface KoffiLib {
  func(definition: string): KoffiFunction;
}
interface KoffiModule {
  load(path: string): KoffiLib;
  errno(): number;
  alloc(type: string, length: number): unknown;
  free(ptr: unknown): void;
  address(ptr: unknown): bigint;
  view(ptr: unknown, length: number): ArrayBuffer;
  version?: string;
}

export interface Libc {
  readonly koffiVersion: string;
  readonly library: string;
  socket(domain: number, type: number, protocol: number): number;
  close(fd: number): number;
  bind(fd: number, addr: Uint8Array, addrlen: number): number;
  setsockopt(fd: number, level: number, name: number, value: Uint8Array, len: number): number;
  /** optlen: a 4-byte buffer holding the socklen_t, read and written by the kernel. */
  getsockopt(fd: number, level: number, name: number, value: Uint8Array | null, optlen: Uint8Array): number;
  ifNameToIndex(name: string): number;
  /** errno of the last call made through koffi on this thread. */
  errno(): number;
  koffi: KoffiModule;
}

export type FfiStatus = { ok: true; libc: Libc } | { ok: false; reason: string };

/** Thrown when the FFI is needed but cannot be loaded. `message` is "unavailable: <reason>". */
export class FfiUnavailableError extends Error {
  override readonly name = 'FfiUnavailableError';
  readonly code = 'ERR_MPTLS_FFI_UNAVAILABLE';
  constructor(readonly reason: string) {
    super(`unavailable: ${reason}`);
  }
}

const ERRNO_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(osConstants.errno as Record<string, number>).map(([name, n]) => [n, name]),
);

/** errno → its symbolic name ("EOPNOTSUPP"), or "E<n>" when unknown. */
export function errnoName(errno: number): string {
  // EOPNOTSUPP and ENOTSUP share 95 on Linux: report the socket one.
  if (errno === 95) return 'EOPNOTSUPP';
  return ERRNO_NAMES[errno] ?? `E${errno}`;
}

/** A failed system call: `errno` and its name in `code`, like node's own errors. */
export class SyscallError extends Error {
  override readonly name = 'SyscallError';
  readonly code: string;
  constructor(
    readonly syscall: string,
    readonly errno: number,
    detail?: string,
  ) {
    super(`${syscall}${detail ? ` ${detail}` : ''}: ${errnoName(errno)} (errno ${errno})`);
    this.code = errnoName(errno);
  }
}

let cached: FfiStatus | undefined;

function disabledReason(): string | undefined {
  if (process.platform !== 'linux') return `platform is ${process.platform}, not linux`;
  const d = process.env.MPTLS_DISABLE_KOFFI;
  if (d && d !== '0' && d.toLowerCase() !== 'false') return 'disabled by MPTLS_DISABLE_KOFFI';
  return undefined;
}

function bind(k: KoffiModule): Libc {
  let lib: KoffiLib | undefined;
  let library = '';
  const errors: string[] = [];
  // glibc first; musl (Alpine) names its libc after the loader.
  for (const name of ['libc.so.6', `libc.musl-${process.arch === 'x64' ? 'x86_64' : process.arch === 'arm64' ? 'aarch64' : process.arch}.so.1`, 'libc.so']) {
    try {
      lib = k.load(name);
      library = name;
      break;
    } catch (e) {
      errors.push(`${name}: ${(e as Error).message}`);
    }
  }
  if (!lib) throw new Error(`cannot load libc (${errors.join('; ')})`);
  const socket = lib.func('int socket(int domain, int type, int protocol)');
  const close = lib.func('int close(int fd)');
  const bindFn = lib.func('int bind(int fd, const void *addr, uint32_t addrlen)');
  const setsockopt = lib.func('int setsockopt(int fd, int level, int optname, const void *optval, uint32_t optlen)');
  const getsockopt = lib.func('int getsockopt(int fd, int level, int optname, void *optval, void *optlen)');
  const ifNameToIndex = lib.func('unsigned int if_nametoindex(const char *ifname)');
  return {
    koffi: k,
    koffiVersion: k.version ?? 'unknown',
    library,
    socket: (d, t, p) => socket(d, t, p) as number,
    close: (fd) => close(fd) as number,
    bind: (fd, addr, len) => bindFn(fd, addr, len) as number,
    setsockopt: (fd, level, name, value, len) => setsockopt(fd, level, name, value, len) as number,
    getsockopt: (fd, level, name, value, optlen) => getsockopt(fd, level, name, value, optlen) as number,
    ifNameToIndex: (name) => ifNameToIndex(name) as number,
    errno: () => k.errno(),
  };
}

function settle(load: () => KoffiModule): FfiStatus {
  let k: KoffiModule;
  try {
    k = load();
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    return { ok: false, reason: `koffi cannot be loaded (${msg})` };
  }
  try {
    return { ok: true, libc: bind(k) };
  } catch (e) {
    return { ok: false, reason: `koffi loaded but libc is not usable (${(e as Error).message})` };
  }
}

function unwrap(m: unknown): KoffiModule {
  const mod = m as { default?: KoffiModule } & Partial<KoffiModule>;
  const k = (typeof mod.load === 'function' ? mod : mod.default) as KoffiModule | undefined;
  if (!k || typeof k.load !== 'function') throw new Error('koffi module has no load()');
  return k;
}

/** Loads koffi and libc on first use (synchronously) and says whether it worked. */
export function ffiStatus(): FfiStatus {
  if (cached) return cached;
  const off = disabledReason();
  if (off) return (cached = { ok: false, reason: off });
  cached = settle(() => unwrap(createRequire(import.meta.url)('koffi')));
  return cached;
}

/** Like {@link ffiStatus}, through a dynamic `import('koffi')`. */
export async function loadFfi(): Promise<FfiStatus> {
  if (cached) return cached;
  const off = disabledReason();
  if (off) return (cached = { ok: false, reason: off });
  let mod: unknown;
  let failure: Error | undefined;
  try {
    mod = await import('koffi' as string);
  } catch (e) {
    failure = e as Error;
  }
  cached ??= settle(() => {
    if (failure) throw failure;
    return unwrap(mod);
  });
  return cached;
}

/** libc through koffi; throws {@link FfiUnavailableError} when it cannot be had. */
export function ffi(): Libc {
  const s = ffiStatus();
  if (!s.ok) throw new FfiUnavailableError(s.reason);
  return s.libc;
}

/** Forgets the cached load result (tests). */
export function resetFfiForTests(): void {
  cached = undefined;
}

// ---------------------------------------------------------------------------
// Thin wrappers: -1 → SyscallError with errno.

export function sysSocket(domain: number, type: number, protocol: number): number {
  const c = ffi();
  const fd = c.socket(domain, type, protocol);
  if (fd < 0) throw new SyscallError('socket', c.errno(), `(${domain}, ${type}, ${protocol})`);
  return fd;
}

export function sysClose(fd: number): void {
  const c = ffi();
  if (c.close(fd) < 0) throw new SyscallError('close', c.errno());
}

/** Closes and ignores any error (cleanup paths). */
export function closeQuietly(fd: number): void {
  try {
    sysClose(fd);
  } catch {
    /* already closed, or the FFI is gone: nothing more to do */
  }
}

export function sysBind(fd: number, sockaddr: Uint8Array): void {
  const c = ffi();
  if (c.bind(fd, sockaddr, sockaddr.length) < 0) throw new SyscallError('bind', c.errno());
}

export function sysSetsockopt(fd: number, level: number, name: number, value: Uint8Array): void {
  const c = ffi();
  if (c.setsockopt(fd, level, name, value, value.length) < 0) {
    throw new SyscallError('setsockopt', c.errno(), `(level ${level}, option ${name})`);
  }
}

export function setsockoptInt(fd: number, level: number, name: number, value: number): void {
  const b = Buffer.alloc(4);
  b.writeInt32LE(value | 0, 0); // Linux ABIs mptls runs on are little-endian
  sysSetsockopt(fd, level, name, b);
}

/**
 * getsockopt into `buf`, offering the kernel `inLen` bytes (default: all of
 * `buf`). Returns the optlen the kernel wrote back: how many bytes it
 * filled, or (MPTCP_TCPINFO/SUBFLOW_ADDRS) how many it would have.
 */
export function sysGetsockopt(fd: number, level: number, name: number, buf: Uint8Array | null, inLen = buf?.length ?? 0): number {
  const c = ffi();
  const optlen = Buffer.alloc(4);
  optlen.writeUInt32LE(inLen >>> 0, 0);
  if (c.getsockopt(fd, level, name, buf, optlen) < 0) {
    throw new SyscallError('getsockopt', c.errno(), `(level ${level}, option ${name})`);
  }
  return optlen.readUInt32LE(0);
}

export function getsockoptInt(fd: number, level: number, name: number): number {
  const b = Buffer.alloc(4);
  sysGetsockopt(fd, level, name, b);
  return b.readInt32LE(0);
}

export function ifNameToIndex(name: string): number {
  const c = ffi();
  const i = c.ifNameToIndex(name);
  if (i === 0) throw new SyscallError('if_nametoindex', c.errno(), JSON.stringify(name));
  return i;
}

/** Native memory with a stable address (for pointers inside structs); call free() when done. */
export interface NativeBuffer {
  readonly address: bigint;
  readonly bytes: Uint8Array;
  free(): void;
}

export function nativeAlloc(size: number): NativeBuffer {
  const k = ffi().koffi;
  const ptr = k.alloc('uint8_t', Math.max(1, size));
  const bytes = new Uint8Array(k.view(ptr, Math.max(1, size)));
  bytes.fill(0);
  let freed = false;
  return {
    address: k.address(ptr),
    bytes,
    free: () => {
      if (freed) return;
      freed = true;
      k.free(ptr);
    },
  };
}
