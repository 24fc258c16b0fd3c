/**
 * mptls: TLS-bound Multipath TCP for Node.js.
 *
 * The package root, by name: the API (createServer, connect, https,
 * haproxyConfig), its error classes, and the lower layers users build on
 * (the option codec, the MPTCP crypto, the sans-I/O core, TLS exporter keys
 * and pins). The Linux kernel bridge's low-level pieces (FFI, socket
 * options, IPPROTO_MPTCP sockets) are the subpath `mptls/kernel`.
 */

// The API.
export {
  connect,
  createServer,
  https,
  http2,
  cluster,
  undici,
  createProxyServer,
  PROXY_DEFAULTS,
  type ProxyOptions,
  type ProxyServer,
  type ProxyStats,
  type ProxyRefusal,
  type ProxyLookup,
  type ProxyTunnel,
  type ProxyTunnelSummary,
  createTunnel,
  Tunnel,
  TunnelError,
  DEFAULT_TUNNEL_CONNECT_TIMEOUT_MS,
  type TunnelOptions,
  type TunnelForward,
  type TunnelSocks,
  type TunnelTarget,
  type TunnelStats,
  type TunnelEvent,
  type TunnelCloseEvent,
  type TunnelFailureEvent,
  type TunnelListenerAddress,
  type TunnelConnectionInfo,
  type TunnelErrorKind,
  clientEndpoint,
  haproxyConfig,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  type ConnectOptions,
  type MptcpClientOptions,
  type MptlsSocket,
  type ServerOptions,
  type MptcpServerOptions,
  type ServerMptcpInfo,
  type MptlsServer,
  type MptlsServerEvents,
  metricsContentType,
  type MetricsOptions,
  type ServerMptcpApi,
  type MptcpMode,
  type MptcpPathState,
  type MptcpSubflowDown,
  type MptcpSocketInfo,
  type MptcpSubflow,
  type HaproxyConfigOptions,
  type HaproxyBackend,
  type CodedError,
  type MptlsUsageErrorCode,
} from './api/index.js';
export { generateSelfSigned, type GenerateSelfSignedOptions, type SelfSignedCredentials } from './tls/certs.js';

// What `socket.mptcp` is, per transport (types: read `mode` to tell them apart).
export type { UserspaceInfo, FallbackInfo, KernelInfo } from './transport/index.js';

// Errors, each with a `code` (ERR_MPTLS_…).
export { HaproxyConfigError } from './api/index.js';
export { MptlsTlsError } from './tls/binding.js';
export { PinMismatchError, ERR_MPTLS_PIN_MISMATCH } from './tls/pin.js';
export { MptcpClosedError, NoMultipathError, KernelMptcpUnavailableError } from './transport/index.js';
export { MptcpWireError } from './wire/index.js';
export { FrameError } from './transport/userspace/frame.js';

// TLS: exporter keys (RFC 5705) and SPKI pins.
export { EXPORTER_LABEL, EXPORTER_LENGTH, FINGERPRINT_LABEL, exporterContext, exportMptcpKeys, keyFingerprints, type MptcpKeys } from './tls/keys.js';
export { spkiSha256, normalizePin, checkServerPin } from './tls/pin.js';

// The userspace wire format (docs/PROTOCOL.md §5): the frame parser and the offsets a load balancer reads.
export { FrameParser, MAGIC, JOIN_TOKEN_OFFSET, FIRST_SUBTYPE_OFFSET } from './transport/userspace/frame.js';

// The MPTCP option codec (RFC 8684 §3).
export {
  MPTCP_OPTION_KIND,
  MAX_OPTION_LENGTH,
  Subtype,
  CapableFlag,
  DssFlag,
  TcpRstReason,
  TcpRstFlag,
  decodeOption,
  readOption,
  decodeOptions,
  encodeOption,
  encodeOptionInto,
  encodeOptions,
  optionLength,
  parseTcpOptions,
  mptcpOptionsFromTcpOptions,
} from './wire/index.js';
export type * from './wire/types.js';
export type { TcpOption } from './wire/options.js';

// The MPTCP crypto (RFC 8684 §3.1–3.4, NEW_KEY, the G-bit IDSNs).
export {
  MPTCP_KEY_LENGTH,
  JOIN_SYNACK_HMAC_LENGTH,
  JOIN_ACK_HMAC_LENGTH,
  ADD_ADDR_HMAC_LENGTH,
  NEW_KEY_HMAC_LENGTH,
  DATA_FIN_HMAC_LENGTH,
  tokenFromKey,
  idsnFromKey,
  mptcpHmac,
  joinSynAckHmac,
  joinAckHmac,
  addAddrHmacMessage,
  addAddrHmac,
  newKeyHmac,
  dataFinHmac,
  idsnExternal,
  timingSafeEqual,
  addressToBytes,
  bytesToAddress,
  ipVersion,
  randomBytes,
  randomUint32,
  randomKey,
} from './crypto/index.js';

// The sans-I/O core (contract in docs/ARCHITECTURE.md).
export {
  Endpoint,
  Connection,
  DEFAULT_LIMITS,
  DEFAULT_TIMERS,
  Mib,
  MIB_NAMES,
  type MibName,
  type MibCounters,
  createScheduler,
  MinRttScheduler,
  RoundRobinScheduler,
  RedundantScheduler,
  usableTier,
  InKernelLikePathManager,
  RandomTokenAllocator,
  ServerIdTokenAllocator,
  KeyedPermutation,
  serverIdOfToken,
  workerIdOfToken,
  WorkerTokenAllocator,
} from './core/index.js';
export type * from './core/index.js';
