// Issue 13's three outages on the namespace testbed (test/support/topology.ts),
// shared by test/mobility/mobility.test.ts (mptls userspace, asserted) and
// bench/outage.mjs (mptls userspace and Linux kernel MPTCP, measured).
//
// One run = a fresh 2 × 50 Mbit/s topology (the caller makes it, with
// `topologyOptions()`), a server peer in the server namespace and a client
// peer in the client namespace (fixtures/peer.mjs), the client sending
// `bytes` to the server, and the scenario's actions at fixed times after the
// client's secureConnect (t = 0):
//
//   reset         1.5 s  `ss -K -n dst 198.18.0.0/15` in the client namespace: every TCP
//                        subflow reset (what a NAT rebinding does); the sockets it
//                        killed are counted.
//   links-down    1.5 s  `ip link set … down` on both ends of both paths; 4.5 s both up
//                        again (Topology.killPath / revivePath): a 3 s outage.
//   address-move  before the transfer the client's path-2 address (198.18.2.1), its
//                        source rule and its kernel MPTCP endpoint are removed, so the
//                        client host has ONE usable address, 198.18.1.1 (va2 stays up,
//                        with no address: path 2 exists but is unusable);
//                 1.5 s  `ip addr del 198.18.1.1/24 dev va1` (the old address is gone;
//                        path 1's subflow is blackholed: the server's packets to it are
//                        no longer accepted);
//                 2.5 s  a NEW address 198.18.2.101/24 on va2, after its source rule
//                        (`from 198.18.2.101 table 102`) and table 102's route: only
//                        now is path 2 usable. Kernel MPTCP also gets
//                        `ip mptcp endpoint add 198.18.2.101 dev va2 subflow`, which is
//                        what a network manager does on a new address (the kernel's
//                        path manager uses configured endpoints only). The mptls client
//                        runs with `localAddresses: 'auto'`.
//
// The receiver (server) measures: bytes, SHA-256, the longest gap between two
// reads (the longest receive stall), a 50 ms timeline of bytes received (and
// per subflow for mptls), the mptls path events.
import { fileURLToPath } from 'node:url';

export const PEER = fileURLToPath(new URL('./fixtures/peer.mjs', import.meta.url));
export const MiB = 1024 * 1024;

/** Issue 13's bounds on the longest receive stall (ms). */
export const SCENARIOS = {
  reset: { title: 'all subflows reset (ss -K) at 1.5 s', boundMs: 3000, marks: [{ at: 1500, label: 'ss -K' }] },
  'links-down': { title: 'both links down 1.5 s → 4.5 s', boundMs: 3000 + 1500, outageMs: 3000, marks: [{ at: 1500, label: 'links down' }, { at: 4500, label: 'links up' }] },
  'address-move': { title: 'path-1 address deleted at 1.5 s, new path-2 address at 2.5 s', boundMs: 4000, marks: [{ at: 1500, label: 'addr del' }, { at: 2500, label: 'new addr' }] },
};

export const NEW_ADDRESS = '198.18.2.101';

/** Topology options for a scenario (both kinds: kernel MPTCP endpoints do not affect the userspace transport). */
export function topologyOptions(name = 'mob') {
  return { name, paths: [{ rateMbit: 50 }, { rateMbit: 50 }], clientMptcpEndpoints: true, mptcpLimits: { subflows: 8, addAddrAccepted: 8 } };
}

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

function lineOf(proc, tag) {
  const line = proc.output().split('\n').find((l) => l.startsWith(`${tag} `));
  return line ? JSON.parse(line.slice(tag.length + 1)) : undefined;
}

async function waitLine(proc, tag, timeoutMs) {
  await proc.waitFor(new RegExp(`^${tag} .*\\n`, 'm'), timeoutMs);
  return lineOf(proc, tag);
}

function established(topo) {
  const r = topo.exec('client', 'ss', ['-tnH', 'state', 'established', 'dst', '198.18.0.0/15'], { allowFail: true });
  return r.stdout.split('\n').filter((l) => l.includes('198.18.')).length;
}

/** What is left 1.5 s after the reset: TCP subflows to 198.18/15 and MPTCP sockets (kernel), per namespace. */
function sockets(topo) {
  const count = (side, args) => topo.exec(side, 'ss', args, { allowFail: true }).stdout.split('\n').filter((l) => l.includes('198.18.')).length;
  return {
    tcp: { client: count('client', ['-tnH', 'state', 'established', 'dst', '198.18.0.0/15']), server: count('server', ['-tnH', 'state', 'established', 'src', '198.18.0.0/15']) },
    mptcp: { client: count('client', ['-MnH']), server: count('server', ['-MnH']) },
  };
}

/** The actions of a scenario: [{ at (ms after t = 0), what, run() → detail }]. */
function plan(topo, scenario, kind, kernelEndpoint = true) {
  if (scenario === 'reset') {
    return [
      {
        at: 1500,
        what: 'ss -K -n dst 198.18.0.0/15 (client namespace)',
        run() {
          const before = established(topo);
          const r = topo.exec('client', 'ss', ['-K', '-n', 'dst', '198.18.0.0/15'], { allowFail: true });
          const killed = r.stdout.split('\n').filter((l) => /198\.18\.\d+\.\d+(%\S+)?:\d+\s+198\.18\./.test(l)).length;
          return { establishedBefore: before, killed, status: r.status, output: r.stdout.trim().split('\n').slice(0, 12).join('\n') };
        },
      },
      { at: 3000, what: 'look: TCP subflows and MPTCP sockets left in both namespaces', run: () => sockets(topo) },
    ];
  }
  if (scenario === 'links-down') {
    return [
      { at: 1500, what: 'ip link set va1/vb1/va2/vb2 down', run: () => (topo.killPath(1), topo.killPath(2), {}) },
      { at: 4500, what: 'ip link set va1/vb1/va2/vb2 up', run: () => (topo.revivePath(1), topo.revivePath(2), {}) },
    ];
  }
  if (scenario === 'address-move') {
    const dev2 = topo.clientInterface(2);
    return [
      { at: 1500, what: `ip addr del ${topo.clientAddress(1)}/24 dev ${topo.clientInterface(1)}`, run: () => (topo.ip('client', 'addr', 'del', `${topo.clientAddress(1)}/24`, 'dev', topo.clientInterface(1)), {}) },
      {
        at: 2500,
        what: `ip rule add from ${NEW_ADDRESS} table 102; ip route replace 198.18.0.0/15 dev ${dev2} table 102; ip addr add ${NEW_ADDRESS}/24 dev ${dev2}${kind === 'kernel' && kernelEndpoint ? `; ip mptcp endpoint add ${NEW_ADDRESS} dev ${dev2} subflow` : ''}`,
        run() {
          topo.ip('client', 'rule', 'add', 'from', NEW_ADDRESS, 'table', '102');
          topo.ip('client', 'route', 'replace', '198.18.0.0/15', 'dev', dev2, 'table', '102');
          topo.ip('client', 'addr', 'add', `${NEW_ADDRESS}/24`, 'dev', dev2);
          if (kind === 'kernel' && kernelEndpoint) topo.ip('client', 'mptcp', 'endpoint', 'add', NEW_ADDRESS, 'dev', dev2, 'subflow');
          return {};
        },
      },
    ];
  }
  throw new RangeError(`unknown scenario ${scenario}`);
}

/** address-move: before the transfer, the client host has only its path-1 address. */
function prepare(topo, scenario) {
  if (scenario !== 'address-move') return;
  const a2 = topo.clientAddress(2);
  topo.ip('client', 'mptcp', 'endpoint', 'flush');
  topo.ip('client', 'rule', 'del', 'from', a2, 'table', '102');
  topo.ip('client', 'addr', 'del', `${a2}/24`, 'dev', topo.clientInterface(2));
}

/**
 * Runs one scenario once on `topo` (fresh, from `topologyOptions()`), kind
 * 'userspace' | 'kernel'. `kernelEndpoint: false` leaves out the kernel's
 * `ip mptcp endpoint add` for the new address (address-move). Never throws for a transfer that fails: the
 * result says `completed: false` and why; throws only when the harness
 * itself cannot run (a peer does not start).
 */
export async function runScenario(topo, { scenario, kind, bytes = 40 * MiB, resumeTimeoutMs = 30_000, deadlineMs = 25_000, env, kernelEndpoint = true } = {}) {
  const spec = SCENARIOS[scenario];
  if (!spec) throw new RangeError(`unknown scenario ${scenario}`);
  prepare(topo, scenario);
  const spawnOpts = env ? { env: { ...process.env, ...env } } : {};
  const server = topo.start('server', process.execPath, [PEER, 'server', kind, JSON.stringify({ deadlineMs, resumeTimeoutMs })], spawnOpts);
  const { port } = await waitLine(server, 'LISTENING', 15_000);
  const local = scenario === 'address-move' ? (kind === 'kernel' ? [topo.clientAddress(1)] : 'auto') : [topo.clientAddress(1), topo.clientAddress(2)];
  const client = topo.start('client', process.execPath, [PEER, 'client', kind, JSON.stringify({ host: topo.serverAddress(1), port, bytes, local, resumeTimeoutMs, deadlineMs: deadlineMs + 5000 })], spawnOpts);
  const started = await waitLine(client, 'STARTED', 15_000);
  const t0 = started.t;
  const actions = [];
  let stop = false;
  const acting = (async () => {
    for (const a of plan(topo, scenario, kind, kernelEndpoint)) {
      await sleep(t0 + a.at - now());
      if (stop || topo.destroyed) return;
      const t = now() - t0;
      let detail;
      try {
        detail = a.run();
      } catch (e) {
        detail = { error: String(e.message ?? e) };
      }
      actions.push({ at: a.at, t, what: a.what, ...detail });
    }
  })();
  let serverResult;
  let clientResult;
  try {
    serverResult = await waitLine(server, 'RESULT', deadlineMs + 20_000).catch((e) => ({ error: `server peer: ${e.message.split('\n')[0]}`, code: 'HARNESS' }));
    // The client learns of the end one round trip later (or of its error).
    clientResult = await waitLine(client, 'RESULT', serverResult.clean ? 10_000 : 6_000).catch(async () => {
      // Ask it what it has (state, subflows, events), then give up on it.
      client.kill('SIGTERM');
      return waitLine(client, 'RESULT', 2_000).catch((e) => ({ error: `client peer: ${e.message.split('\n')[0]}`, code: 'HARNESS' }));
    });
    // A run that fails early still performs the scenario (so a later action's effect is seen), unless it is long over.
    await Promise.race([acting, sleep(6_000)]);
  } finally {
    stop = true;
    server.kill('SIGKILL');
    client.kill('SIGKILL');
  }
  return summarize({ scenario, kind, bytes, t0, started, actions, serverResult, clientResult, spec, serverOutput: server.output(), clientOutput: client.output() });
}

function summarize({ scenario, kind, bytes, t0, started, actions, serverResult: s, clientResult: c, spec }) {
  const rel = (t) => (t === undefined ? undefined : t - t0);
  const sent = c?.sent;
  const intact = Boolean(s.clean && sent && s.received === sent.bytes && s.sha256 === sent.sha256);
  const completed = intact && Boolean(c?.clean);
  const receiverError = s.error ? `${s.error}${s.code ? ` (${s.code})` : ''}` : undefined;
  const senderError = c?.error ? `${c.error}${c.code ? ` (${c.code})` : ''}` : undefined;
  const error = receiverError ? `receiver: ${receiverError}${senderError ? `; sender: ${senderError}` : ''}` : senderError ? `sender: ${senderError}` : !intact ? 'bytes or SHA-256 differ' : undefined;
  const maxGap = s.maxGapMs ?? 0;
  // A transfer that did not finish stalled at least from its last byte to its end.
  const maxStallMs = completed ? maxGap : Math.max(maxGap, s.openGapMs ?? 0);
  return {
    scenario,
    kind,
    title: spec.title,
    boundMs: spec.boundMs,
    completed,
    intact,
    error,
    receiverError,
    senderError,
    senderEndMs: c?.endAt !== undefined ? rel(c.endAt) : undefined,
    sentAtMs: rel(sent?.t),
    bytes,
    sentBytes: sent?.bytes,
    receivedBytes: s.received ?? 0,
    sha256: { sent: sent?.sha256, received: s.sha256 },
    maxStallMs,
    stallFromMs: completed || maxGap >= (s.openGapMs ?? 0) ? rel(s.gapAt) : rel(s.lastAt),
    firstByteMs: rel(s.firstAt),
    endMs: rel(s.endAt),
    mode: { client: c?.mode ?? started.mode, server: s.mode },
    state: { client: c?.state, server: s.state },
    startSubflows: started.subflows,
    endSubflows: { client: c?.subflows ?? [] },
    actions,
    events: {
      server: (s.events ?? []).map((e) => ({ ...e, t: rel(e.t) })),
      client: (c?.events ?? []).map((e) => ({ ...e, t: rel(e.t) })),
    },
    timeline: (s.timeline ?? []).map((p) => ({ t: rel(p.t), rx: p.rx, subflows: p.subflows })),
  };
}

/** Receive throughput (Mbit/s) in `binMs` bins from a timeline [{ t, rx }], as [[t_end_of_bin, mbit]]. */
export function throughputSeries(timeline, binMs = 200) {
  if (!timeline.length) return [];
  const pts = [];
  const end = timeline[timeline.length - 1].t;
  let k = 0;
  let prevRx = 0;
  for (let t = binMs; t <= end + binMs; t += binMs) {
    while (k + 1 < timeline.length && timeline[k + 1].t <= t) k++;
    const rx = timeline[k].t <= t ? timeline[k].rx : prevRx;
    pts.push([t, Math.max(0, ((rx - prevRx) * 8) / (binMs / 1000) / 1e6)]);
    prevRx = rx;
  }
  return pts;
}
