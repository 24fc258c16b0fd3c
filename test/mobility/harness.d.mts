/** Types of test/mobility/harness.mjs. */
import type { Topology } from '../support/topology.js';

export type ScenarioName = 'reset' | 'links-down' | 'address-move';
export type Kind = 'userspace' | 'kernel';

export interface ScenarioSpec {
  title: string;
  /** Issue 13's bound on the longest receive stall. */
  boundMs: number;
  outageMs?: number;
  marks: { at: number; label: string }[];
}

export interface Sample {
  /** ms since the client's secureConnect */
  t: number;
  /** bytes received so far */
  rx: number;
  subflows: { id: number; local?: string; remote?: string; state: string; rx: number; tx: number }[];
}

export interface PathEvent {
  t: number;
  name: 'subflow' | 'subflow-down' | 'paths-lost' | 'paths-restored';
  info?: Record<string, unknown>;
  state?: string;
}

export interface Action {
  at: number;
  t: number;
  what: string;
  error?: string;
  establishedBefore?: number;
  killed?: number;
  status?: number;
  output?: string;
  tcp?: { client: number; server: number };
  mptcp?: { client: number; server: number };
}

export interface ScenarioResult {
  scenario: ScenarioName;
  kind: Kind;
  title: string;
  boundMs: number;
  /** Every byte arrived, SHA-256 equal, both ends saw a clean end. */
  completed: boolean;
  intact: boolean;
  error?: string;
  receiverError?: string;
  senderError?: string;
  senderEndMs?: number;
  sentAtMs?: number;
  bytes: number;
  sentBytes?: number;
  receivedBytes: number;
  sha256: { sent?: string; received?: string };
  /** Longest gap between two reads at the receiver (for a failed run: at least last byte → end). */
  maxStallMs: number;
  stallFromMs?: number;
  firstByteMs?: number;
  endMs?: number;
  mode: { client?: string; server?: string };
  state: { client?: string; server?: string };
  startSubflows: Sample['subflows'];
  /** The client's subflows when it ended (its view: closed ones may be listed). */
  endSubflows: { client: Sample['subflows'] };
  actions: Action[];
  events: { server: PathEvent[]; client: PathEvent[] };
  timeline: Sample[];
}

export const PEER: string;
export const MiB: number;
export const NEW_ADDRESS: string;
export const SCENARIOS: Record<ScenarioName, ScenarioSpec>;
export function topologyOptions(name?: string): import('../support/topology.js').TopologyOptions;
export function runScenario(
  topo: Topology,
  options: { scenario: ScenarioName; kind: Kind; bytes?: number; resumeTimeoutMs?: number; deadlineMs?: number; env?: Record<string, string>; kernelEndpoint?: boolean },
): Promise<ScenarioResult>;
export function throughputSeries(timeline: { t: number; rx: number }[], binMs?: number): [number, number][];
