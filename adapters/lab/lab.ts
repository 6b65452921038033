// `wgplane lab up|down|status`: a small cluster of network namespaces on this machine, joined by a bridge,
// with a real wgplane agent (`wgplane daemon --source dir:...`) in every node that runs WireGuard. Everything
// it makes is named after the lab (see state.ts), so that `down` removes it whether or not lab.json is
// there or complete: after a crash, or an `up` that failed half-way.
import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import type { RunResult } from '../run.js';
import { NetnsHome, createBridgeNamed, listNamespaces, pidsOf, type NamespaceFactory, type TestNamespace } from './netns.js';
import { Topology, nodeManifest, podManifests, settingsManifest, type ClusterNode, type Flavor } from './topology.js';
import {
  LabError, bridgeNs, checkLabName, isLabNamespace, labPaths, nodeNs, podNs, readLabState, writeLabState,
  LAB_STATE_ROOT, LAB_RUN_ROOT, type Agent, type LabNode, type LabState,
} from './state.js';

export interface LabUpOptions {
  readonly name: string;
  readonly nodes: number;
  readonly pods: number;
  readonly flavor: Flavor;
  /** How many nodes run no wgplane (the last ones). */
  readonly plainNodes: number;
  readonly wireguard: 'auto' | 'kernel' | 'userspace';
  /** The command that runs wgplane itself (e.g. [node, --import, tsx, cmd/main.ts]). */
  readonly wgplane: readonly string[];
  readonly agent: Agent;
  /** Extra settings for the ConfigMap (enabled=true is always set). */
  readonly settings?: Readonly<Record<string, string>>;
  /** Seconds to wait for the agents to converge (every WireGuard node peered with every other). */
  readonly waitSeconds: number;
  readonly stateRoot?: string;
  readonly runRoot?: string;
  readonly log?: (line: string) => void;
}

class LabFactory implements NamespaceFactory {
  readonly made: string[] = [];
  constructor(readonly home: NetnsHome, private readonly name: string) {}
  private async make(ns: string): Promise<TestNamespace> {
    this.made.push(ns);
    return this.home.create(ns);
  }
  async bridge() {
    this.made.push(bridgeNs(this.name));
    return createBridgeNamed(this.home, bridgeNs(this.name));
  }
  node(i: number) { return this.make(nodeNs(this.name, i)); }
  pod(i: number, j: number) { return this.make(podNs(this.name, i, j)); }
}

function labNodeOf(n: ClusterNode, log: string | null, pid: number | null): LabNode {
  return { name: n.name, ns: n.ns, ip: n.ip, index: n.index, podCIDR: n.podCIDR, plain: n.plain, stateDir: n.stateDir, log, pid, pods: n.pods };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Writes the cluster's manifests into the dir source: nodes and pods in cluster.yaml, the settings
 *  ConfigMap in settings.yaml (edit it to change a setting; the agents watch the directory). */
async function writeManifests(dir: string, flavor: Flavor, nodes: readonly ClusterNode[], keys: ReadonlyMap<string, string>, settings: Readonly<Record<string, string>>): Promise<void> {
  await mkdir(dir, { recursive: true });
  const docs = nodes.flatMap((n) => [nodeManifest(flavor, n, keys.get(n.name) ?? null), ...podManifests(n)]);
  await writeFile(path.join(dir, 'cluster.yaml'), docs.map((d) => stringify(d)).join('---\n'));
  await writeFile(path.join(dir, 'settings.yaml'), stringify(settingsManifest(settings)));
}

/** Runs wgplane in a node (its namespace and its own /run/wireguard) and waits for it. */
function wgplaneIn(home: NetnsHome, o: LabUpOptions, ns: string, args: readonly string[]): Promise<RunResult> {
  const [cmd, ...rest] = o.wgplane as [string, ...string[]];
  return home.exec(ns, cmd, [...rest, ...args]);
}

/** Starts `wgplane daemon` in a node, detached, logging to `log`. Returns its pid. */
function startDaemon(home: NetnsHome, o: LabUpOptions, node: ClusterNode, clusterDir: string, log: string): number {
  const [cmd, ...rest] = [...home.prefix(node.ns), ...o.wgplane] as [string, ...string[]];
  const args = [...rest, 'daemon', '--source', `dir:${clusterDir}`, '--node', node.name, '--state-dir', node.stateDir, '--wireguard', o.wireguard];
  const fd = openSync(log, 'a', 0o600);
  try {
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, NODE_NAME: node.name } });
    if (child.pid === undefined) throw new LabError(`could not start the agent of ${node.name}`);
    child.unref();
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** The peers of the WireGuard device in `ns` (public keys), or null when there is no device. */
export async function devicePeers(home: NetnsHome, ns: string, iface: string): Promise<string[] | null> {
  const r = await home.exec(ns, 'wg', ['show', iface, 'peers']);
  if (r.exitCode !== 0) return null;
  return r.stdout.split('\n').map((s) => s.trim()).filter(Boolean);
}

/** Whether `pid` exists and is not a zombie. */
export function isRunning(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits until every WireGuard node has its device with a peer for every other WireGuard node. */
async function waitConverged(home: NetnsHome, nodes: readonly LabNode[], iface: string, seconds: number): Promise<string | null> {
  const agents = nodes.filter((n) => !n.plain);
  const deadline = Date.now() + seconds * 1000;
  let missing = '';
  for (;;) {
    const lacking: string[] = [];
    for (const n of agents) {
      if (n.pid !== null && !isRunning(n.pid)) return `the agent of ${n.name} exited (see ${n.log})`;
      const peers = await devicePeers(home, n.ns, iface);
      if (peers === null) lacking.push(`${n.name}: no device yet`);
      else if (peers.length < agents.length - 1) lacking.push(`${n.name}: ${peers.length}/${agents.length - 1} peers`);
    }
    if (lacking.length === 0) return null;
    missing = lacking.join('; ');
    if (Date.now() > deadline) return `not converged after ${seconds} s: ${missing}`;
    await sleep(250);
  }
}

export async function labUp(o: LabUpOptions): Promise<LabState> {
  const name = checkLabName(o.name);
  const log = o.log ?? (() => {});
  if (o.plainNodes < 0 || o.plainNodes > o.nodes) throw new LabError(`--plain-nodes must be between 0 and --nodes (${o.nodes})`);
  const paths = labPaths(name, o.stateRoot ?? LAB_STATE_ROOT, o.runRoot ?? LAB_RUN_ROOT);
  const leftovers = (await listNamespaces()).filter((ns) => isLabNamespace(name, ns));
  if (existsSync(paths.stateFile) || leftovers.length > 0) {
    throw new LabError(`a lab named ${JSON.stringify(name)} exists already (${existsSync(paths.stateFile) ? paths.stateFile : leftovers.join(', ')}); remove it with \`wgplane lab down --name ${name}\``);
  }
  for (const d of [paths.dir, paths.clusterDir, paths.logsDir, paths.nodesDir, paths.runRoot]) await mkdir(d, { recursive: true, mode: 0o700 });
  const home = new NetnsHome(paths.runRoot);
  const factory = new LabFactory(home, name);
  const plainFrom = o.nodes - o.plainNodes;
  const settings: Record<string, string> = { ...(o.settings ?? {}), enabled: 'true' };
  const iface = settings.interfaceName ?? 'wireguard.wgp';
  let state: LabState = {
    version: 1, name, phase: 'building', createdAt: new Date().toISOString(), flavor: o.flavor, agent: o.agent, wireguard: o.wireguard,
    paths, bridge: bridgeNs(name), namespaces: [], nodes: [],
  };
  await writeLabState(state);
  try {
    log(`building ${o.nodes} nodes x ${o.pods} pods (${o.flavor}) on bridge namespace ${bridgeNs(name)} ...`);
    const spec = { flavor: o.flavor, nodes: o.nodes, podsPerNode: o.pods, plainNodes: Array.from({ length: o.plainNodes }, (_, k) => plainFrom + k) };
    const topo = await Topology.build(spec, factory, (_ns, nodeName) => path.join(paths.nodesDir, nodeName));
    state = { ...state, namespaces: [...factory.made], nodes: topo.nodes.map((n) => labNodeOf(n, null, null)) };
    await writeLabState(state);

    const keys = new Map<string, string>();
    if (o.agent === 'apply') {
      for (const n of topo.nodes.filter((x) => !x.plain)) {
        const r = await wgplaneIn(home, o, n.ns, ['key', 'public', '--state-dir', n.stateDir]);
        if (r.exitCode !== 0) throw new LabError(`wgplane key public on ${n.name} failed: ${r.stderr.trim()}`);
        keys.set(n.name, r.stdout.trim());
      }
    }
    await writeManifests(paths.clusterDir, o.flavor, topo.nodes, keys, settings);

    const nodes: LabNode[] = [];
    for (const n of topo.nodes) {
      if (n.plain) { nodes.push(labNodeOf(n, null, null)); continue; }
      const logFile = path.join(paths.logsDir, `${n.name}.log`);
      if (o.agent === 'daemon') {
        const pid = startDaemon(home, o, n, paths.clusterDir, logFile);
        nodes.push(labNodeOf(n, logFile, pid));
        log(`started wgplane daemon on ${n.name} (pid ${pid}, log ${logFile})`);
      } else {
        const r = await wgplaneIn(home, o, n.ns, ['apply', '--snapshot', paths.clusterDir, '--node', n.name, '--state-dir', n.stateDir, '--wireguard', o.wireguard]);
        await writeFile(logFile, r.stdout + r.stderr, { mode: 0o600 });
        if (r.exitCode !== 0) throw new LabError(`wgplane apply on ${n.name} failed (see ${logFile}): ${r.stderr.trim()}`);
        nodes.push(labNodeOf(n, logFile, null));
        log(`applied wgplane on ${n.name} (log ${logFile})`);
      }
      state = { ...state, nodes: [...nodes, ...state.nodes.slice(nodes.length)] };
      await writeLabState(state);
    }
    state = { ...state, nodes };
    await writeLabState(state);
    const problem = await waitConverged(home, nodes, iface, o.waitSeconds);
    if (problem) throw new LabError(problem);
    state = { ...state, phase: 'up' };
    await writeLabState(state);
    return state;
  } catch (err) {
    state = { ...state, namespaces: [...new Set([...state.namespaces, ...factory.made])], phase: 'failed', error: (err as Error).message };
    await writeLabState(state).catch(() => {});
    throw err;
  }
}

export interface LabDownResult {
  readonly namespaces: readonly string[];
  readonly killed: readonly number[];
  readonly removed: readonly string[];
}

/** Whether `pid` is this lab's agent (its command line names the lab's dir source), so that a pid reused
 *  by another process is never killed. */
function isLabAgent(pid: number, clusterDir: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').some((a) => a.includes(clusterDir));
  } catch {
    return false;
  }
}

/** Removes everything of lab `name`: agents (by recorded pid and by namespace), wireguard-go and any
 *  other process in its namespaces, the namespaces, and its files. Works without lab.json. */
export async function labDown(nameIn: string, opts: { readonly stateRoot?: string; readonly runRoot?: string; readonly log?: (line: string) => void } = {}): Promise<LabDownResult> {
  const name = checkLabName(nameIn);
  const log = opts.log ?? (() => {});
  const paths = labPaths(name, opts.stateRoot ?? LAB_STATE_ROOT, opts.runRoot ?? LAB_RUN_ROOT);
  let state: LabState | null = null;
  try { state = await readLabState(name, opts.stateRoot ?? LAB_STATE_ROOT); } catch (e) { log(`ignoring an unreadable state file: ${(e as Error).message}`); }
  const home = new NetnsHome(paths.runRoot);
  const killed: number[] = [];
  // 1. The agents first (SIGTERM: they leave the dataplane; it goes with the namespaces anyway).
  for (const n of state?.nodes ?? []) {
    if (n.pid !== null && isAlive(n.pid) && isLabAgent(n.pid, paths.clusterDir)) {
      try { process.kill(n.pid, 'SIGTERM'); killed.push(n.pid); } catch { /* gone */ }
    }
  }
  // 2. Every namespace of the lab, by name and by state: kills what runs inside, deletes it.
  const byName = (await listNamespaces()).filter((ns) => isLabNamespace(name, ns));
  const all = [...new Set([...(state?.namespaces ?? []), ...byName])];
  // Pods and nodes before the bridge (their veths go with them).
  all.sort((a, b) => (a.endsWith('-br') ? 1 : 0) - (b.endsWith('-br') ? 1 : 0) || b.length - a.length);
  for (const ns of all) {
    for (const pid of await pidsOf(ns)) killed.push(pid);
    await home.destroy(ns);
  }
  // Wait for the processes to be gone (an exited process that its parent, init for the detached agents,
  // has not reaped yet is a zombie: it holds nothing any more).
  const deadline = Date.now() + 10_000;
  while (killed.some((pid) => isRunning(pid)) && Date.now() < deadline) await sleep(50);
  // 3. Files: the state directory (manifests, keys, logs, lab.json) and the run directory.
  const removed: string[] = [];
  for (const d of [paths.runRoot, paths.dir]) {
    if (existsSync(d)) removed.push(d);
    await rm(d, { recursive: true, force: true });
  }
  log(`lab ${name}: removed ${all.length} namespaces, stopped ${killed.length} processes, removed ${removed.join(', ') || 'no files'}`);
  return { namespaces: all, killed: [...new Set(killed)], removed };
}

export interface LabNodeStatus {
  readonly name: string;
  readonly ns: string;
  readonly ip: string;
  readonly plain: boolean;
  readonly namespace: boolean;
  readonly agent: 'running' | 'stopped' | 'none';
  readonly pid: number | null;
  readonly device: boolean;
  readonly peers: number;
  readonly pods: number;
  readonly log: string | null;
}

export interface LabStatus {
  readonly name: string;
  readonly phase: LabState['phase'];
  readonly flavor: Flavor;
  readonly agent: Agent;
  readonly bridge: string;
  readonly clusterDir: string;
  readonly nodes: readonly LabNodeStatus[];
  readonly error?: string;
}

export async function labStatus(state: LabState, iface = 'wireguard.wgp'): Promise<LabStatus> {
  const home = new NetnsHome(state.paths.runRoot);
  const present = new Set(await listNamespaces());
  const nodes: LabNodeStatus[] = [];
  for (const n of state.nodes) {
    const namespace = present.has(n.ns);
    const peers = namespace && !n.plain ? await devicePeers(home, n.ns, iface) : null;
    nodes.push({
      name: n.name, ns: n.ns, ip: n.ip, plain: n.plain, namespace,
      agent: n.plain || n.pid === null ? 'none' : isRunning(n.pid) ? 'running' : 'stopped',
      pid: n.pid, device: peers !== null, peers: peers?.length ?? 0, pods: n.pods.length, log: n.log,
    });
  }
  return {
    name: state.name, phase: state.phase, flavor: state.flavor, agent: state.agent, bridge: state.bridge, clusterDir: state.paths.clusterDir, nodes,
    ...(state.error ? { error: state.error } : {}),
  };
}
