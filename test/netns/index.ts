/** The N-path netns testbed used by tests and benchmarks (see topology.ts). */
export {
  type Availability,
  type LinkStats,
  type PathSpec,
  type PathState,
  type QdiscInfo,
  type Side,
  Topology,
  type TopologyOptions,
  withTopology,
} from './topology.js';
export { LabProcess, type RunResult } from '../helpers/netns.js';
