// The namespace cluster of the kernel tests of `apply` and the daemon: the lab's topology
// (adapters/lab/topology.ts) with random namespace names under /run/wgplane-test, and the wgplane CLI run
// from this checkout inside a node.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultRunner, type RunOptions, type RunResult } from '../adapters/run.js';
import { Topology, type ClusterSpec, type ClusterNode } from '../adapters/lab/topology.js';
import { Lab, TEST_ROOT, nodeExec } from './netns.js';

export { type Flavor, type ClusterPod, type ClusterNode, type ClusterSpec } from '../adapters/lab/topology.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The node arguments that run this checkout's CLI from source (after `node`/process.execPath). */
export const CLI_ARGS: readonly string[] = ['--import', 'tsx', path.join(REPO, 'cmd/main.ts')];

/** Runs this checkout's wgplane CLI here (the current namespace). */
export function wgplaneHere(args: readonly string[], opts?: RunOptions): Promise<RunResult> {
  return defaultRunner(process.execPath, [...CLI_ARGS, ...args], opts);
}

export class TestCluster extends Topology {
  private constructor(spec: ClusterSpec, readonly lab: Lab) {
    super(spec, lab, (ns) => `${TEST_ROOT}/${ns}/state`);
  }

  static async create(spec: ClusterSpec): Promise<TestCluster> {
    const c = new TestCluster(spec, new Lab(spec.prefix ?? 'wgpc'));
    try {
      await c.build();
    } catch (err) {
      await c.destroy();
      throw err;
    }
    return c;
  }

  /** Runs the wgplane CLI inside a node (its namespace, its own /run/wireguard). */
  wgplane(node: ClusterNode, args: readonly string[], input?: string): Promise<RunResult> {
    return nodeExec(node.ns, process.execPath, [...CLI_ARGS, ...args], input !== undefined ? { input } : undefined);
  }

  async destroy(): Promise<void> {
    await this.lab.dispose();
  }
}

/** Ping from a namespace; true when all `count` replies came back. */
export async function ping(ns: string, ip: string, count = 2, timeoutS = 2): Promise<boolean> {
  const r = await nodeExec(ns, 'ping', ['-n', '-q', '-c', String(count), '-i', '0.2', '-W', String(timeoutS), ip]);
  return r.exitCode === 0;
}
