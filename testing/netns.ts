// Network-namespace harness for kernel tests and the lab. Namespaces get a prefix and a random suffix, so
// tests running in parallel never collide. Commands of a simulated node run inside its namespace AND a
// private mount namespace where /run/wgplane-test/<ns>/wireguard is bind-mounted on /run/wireguard
// (wireguard-go's control sockets live there and would otherwise be shared by every namespace).
import { randomBytes } from 'node:crypto';
import { mkdir, rm, readdir } from 'node:fs/promises';
import { defaultRunner, prefixedRunner, runChecked, type RunOptions, type RunResult, type Runner } from '../adapters/run.js';

export const TEST_ROOT = '/run/wgplane-test';

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** A reason to skip kernel tests, or null when they can run. */
export function kernelTestSkipReason(): string | null {
  return isRoot() ? null : 'kernel tests need root (network namespaces, wireguard-go); skipped';
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export function nodeDir(ns: string): string {
  return `${TEST_ROOT}/${ns}/wireguard`;
}

/** The command prefix that runs a command inside `ns` with its own /run/wireguard. */
export function nodePrefix(ns: string): string[] {
  return [
    'ip', 'netns', 'exec', ns,
    'unshare', '--mount', '--propagation', 'private',
    'sh', '-c', `mount --bind '${nodeDir(ns)}' /run/wireguard && exec "$@"`, 'sh',
  ];
}

/** A Runner whose every command runs inside the node namespace `ns`. */
export function nodeRunner(ns: string): Runner {
  return prefixedRunner(nodePrefix(ns));
}

export function nodeExec(ns: string, cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> {
  return nodeRunner(ns)(cmd, args, opts);
}

/** Like nodeExec, but throws unless the command exits 0. */
export function nodeExecChecked(ns: string, cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> {
  return runChecked(nodeRunner(ns), cmd, args, opts);
}

export interface TestNamespace {
  readonly name: string;
  readonly run: Runner;
}

/** Creates a namespace named `<prefix>-<random>` with lo up and its own wireguard socket directory. */
export async function createNamespace(prefix = 'wgpt'): Promise<TestNamespace> {
  const name = uniqueName(prefix);
  await mkdir('/run/wireguard', { recursive: true });
  await mkdir(nodeDir(name), { recursive: true });
  await runChecked(defaultRunner, 'ip', ['netns', 'add', name]);
  await runChecked(defaultRunner, 'ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return { name, run: nodeRunner(name) };
}

async function pidsOf(ns: string): Promise<number[]> {
  const r = await defaultRunner('ip', ['netns', 'pids', ns]);
  if (r.exitCode !== 0) return [];
  return r.stdout.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number);
}

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

/** Kills the processes of `ns` (wireguard-go daemons and anything else started there), deletes the
 *  namespace and its directory. Safe to call twice, or for a namespace that no longer exists. */
export async function destroyNamespace(ns: string): Promise<void> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const pids = await pidsOf(ns);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try { process.kill(pid, attempt < 5 ? 'SIGTERM' : 'SIGKILL'); } catch { /* already gone */ }
    }
    await sleep(50);
  }
  await defaultRunner('ip', ['netns', 'del', ns]);
  await rm(`${TEST_ROOT}/${ns}`, { recursive: true, force: true });
}

/** Removes every namespace whose name starts with `prefix-` (left behind by a crashed run). */
export async function destroyAllWithPrefix(prefix: string): Promise<void> {
  const r = await defaultRunner('ip', ['netns', 'list']);
  const names = r.stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(`${prefix}-`));
  let dirs: string[] = [];
  try { dirs = (await readdir(TEST_ROOT)).filter((d) => d.startsWith(`${prefix}-`)); } catch { /* none */ }
  for (const n of new Set([...names, ...dirs])) await destroyNamespace(n);
}

/** A namespace holding one bridge (`br0`) that node namespaces are joined to by veths. */
export interface Bridge extends TestNamespace {
  readonly bridge: 'br0';
  ports: number;
}

export async function createBridge(prefix = 'wgpt'): Promise<Bridge> {
  const ns = await createNamespace(`${prefix}br`);
  await runChecked(defaultRunner, 'ip', ['-n', ns.name, 'link', 'add', 'br0', 'type', 'bridge']);
  await runChecked(defaultRunner, 'ip', ['-n', ns.name, 'link', 'set', 'br0', 'up']);
  return { ...ns, bridge: 'br0', ports: 0 };
}

/** Joins `node` to the bridge with a veth: `ifname` (default eth0) in the node, with `addresses`, up. */
export async function connectToBridge(
  bridge: Bridge,
  node: string,
  opts: { readonly ifname?: string; readonly addresses?: readonly string[]; readonly mtu?: number } = {},
): Promise<{ readonly ifname: string; readonly bridgePort: string }> {
  const ifname = opts.ifname ?? 'eth0';
  const port = `p${bridge.ports++}`;
  const mtu = String(opts.mtu ?? 1500);
  await runChecked(defaultRunner, 'ip', ['-n', node, 'link', 'add', ifname, 'mtu', mtu, 'type', 'veth', 'peer', 'name', port, 'mtu', mtu, 'netns', bridge.name]);
  await runChecked(defaultRunner, 'ip', ['-n', bridge.name, 'link', 'set', port, 'master', 'br0', 'up']);
  for (const a of opts.addresses ?? []) await runChecked(defaultRunner, 'ip', ['-n', node, 'address', 'add', a, 'dev', ifname]);
  await runChecked(defaultRunner, 'ip', ['-n', node, 'link', 'set', ifname, 'up']);
  return { ifname, bridgePort: port };
}

/** Tracks namespaces made by a test, to destroy them all at the end (also after a failure). */
export class Lab {
  private readonly names: string[] = [];
  constructor(readonly prefix = 'wgpt') {}
  async namespace(): Promise<TestNamespace> {
    const ns = await createNamespace(this.prefix);
    this.names.push(ns.name);
    return ns;
  }
  async bridge(): Promise<Bridge> {
    const b = await createBridge(this.prefix);
    this.names.push(b.name);
    return b;
  }
  async dispose(): Promise<void> {
    const names = this.names.splice(0);
    for (const n of names.reverse()) await destroyNamespace(n);
  }
}
