export { Endpoint, type NewSubflowResult } from './endpoint.js';
export { Connection, type SubflowInfo, type ConnectionState } from './connection/index.js';
export { DEFAULT_LIMITS, DEFAULT_TIMERS, DEFAULT_MSS, TRANSPORT_MSS, ENDPOINT_DEFAULTS, SERVER_DEFAULTS, BOUNDS } from './config.js';
export { Mib, MIB_NAMES, type MibName, type MibCounters } from './mib.js';
export {
  createScheduler,
  MinRttScheduler,
  RoundRobinScheduler,
  RedundantScheduler,
  usableTier,
  type Scheduler,
  type SchedulerName,
  type SchedSubflow,
} from './scheduler.js';
export { InKernelLikePathManager, type PathManager, type JoinRequest, type PmContext } from './path-manager.js';
export {
  RandomTokenAllocator,
  ServerIdTokenAllocator,
  KeyedPermutation,
  serverIdOfToken,
  workerIdOfToken,
  WorkerTokenAllocator,
  type TokenAllocator,
  type RandomSource,
} from './token.js';
export type * from './types.js';
