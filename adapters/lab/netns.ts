// Network namespaces for the lab (and the kernel tests, through testing/netns.ts): creation, destruction,
// a bridge as the network, and running commands inside a simulated node. Commands of a node run inside its
// network namespace AND a private mount namespace where <root>/<ns>/wireguard is bind-mounted on
// /run/wireguard (wireguard-go keeps its control sockets there; they would otherwise be shared by every
// namespace). The bind mount lives only as long as the processes of that mount namespace: nothing is
// mounted in the host's own mount namespace.
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { defaultRunner, prefixedRunner, runChecked, type RunOptions, type RunResult, type Runner } from '../run.js';

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

export interface TestNamespace {
  readonly name: string;
  readonly run: Runner;
}

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

/** Pids of the processes whose network namespace is `ns` (empty when the namespace does not exist). */
export async function pidsOf(ns: string): Promise<number[]> {
  const r = await defaultRunner('ip', ['netns', 'pids', ns]);
  if (r.exitCode !== 0) return [];
  return r.stdout.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number);
}

/** Names of the network namespaces that exist now. */
export async function listNamespaces(): Promise<string[]> {
  const r = await defaultRunner('ip', ['netns', 'list']);
  return r.stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n !== '');
}

/** Where the per-namespace directories live (the wireguard socket directory of each node). */
export class NetnsHome {
  constructor(readonly root: string) {}

  dir(ns: string): string {
    return `${this.root}/${ns}`;
  }

  wireguardDir(ns: string): string {
    return `${this.dir(ns)}/wireguard`;
  }

  /** The command prefix that runs a command inside `ns` with its own /run/wireguard. */
  prefix(ns: string): string[] {
    return [
      'ip', 'netns', 'exec', ns,
      'unshare', '--mount', '--propagation', 'private',
      'sh', '-c', `mount --bind '${this.wireguardDir(ns)}' /run/wireguard && exec "$@"`, 'sh',
    ];
  }

  runner(ns: string): Runner {
    return prefixedRunner(this.prefix(ns));
  }

  exec(ns: string, cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return this.runner(ns)(cmd, args, opts);
  }

  execChecked(ns: string, cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return runChecked(this.runner(ns), cmd, args, opts);
  }

  /** Creates the namespace `name` with lo up and its own wireguard socket directory. */
  async create(name: string): Promise<TestNamespace> {
    await mkdir('/run/wireguard', { recursive: true });
    await mkdir(this.wireguardDir(name), { recursive: true });
    await runChecked(defaultRunner, 'ip', ['netns', 'add', name]);
    await runChecked(defaultRunner, 'ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return { name, run: this.runner(name) };
  }

  /** Kills the processes of `ns` (wireguard-go daemons, agents and anything else started there), deletes
   *  the namespace and its directory. Safe to call twice, or for a namespace that no longer exists. */
  async destroy(ns: string): Promise<void> {
    for (let attempt = 0; attempt < 40; attempt++) {
      const pids = await pidsOf(ns);
      if (pids.length === 0) break;
      for (const pid of pids) {
        try { process.kill(pid, attempt < 10 ? 'SIGTERM' : 'SIGKILL'); } catch { /* already gone */ }
      }
      await sleep(50);
    }
    await defaultRunner('ip', ['netns', 'del', ns]);
    await rm(this.dir(ns), { recursive: true, force: true });
  }
}

/** The home of the kernel tests' namespaces. */
export const TEST_HOME = new NetnsHome(TEST_ROOT);

/** A namespace holding one bridge (`br0`) that node namespaces are joined to by veths. */
export interface Bridge extends TestNamespace {
  readonly bridge: 'br0';
  ports: number;
}

/** Creates namespace `name` holding an up bridge `br0` (MTU 1500). */
export async function createBridgeNamed(home: NetnsHome, name: string): Promise<Bridge> {
  const ns = await home.create(name);
  await runChecked(defaultRunner, 'ip', ['-n', ns.name, 'link', 'add', 'br0', 'mtu', '1500', 'type', 'bridge']);
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

/** Hands out namespaces for a topology (random names for tests, fixed names for the lab). */
export interface NamespaceFactory {
  readonly home: NetnsHome;
  bridge(): Promise<Bridge>;
  node(index: number): Promise<TestNamespace>;
  pod(nodeIndex: number, podIndex: number): Promise<TestNamespace>;
}

/** Tracks namespaces with random names `<prefix>-<hex>`, to destroy them all at the end (also after a
 *  failure). */
export class Lab implements NamespaceFactory {
  private readonly names: string[] = [];
  constructor(readonly prefix = 'wgpt', readonly home: NetnsHome = TEST_HOME) {}
  async namespace(): Promise<TestNamespace> {
    const ns = await this.home.create(uniqueName(this.prefix));
    this.names.push(ns.name);
    return ns;
  }
  async bridge(): Promise<Bridge> {
    const b = await createBridgeNamed(this.home, uniqueName(`${this.prefix}br`));
    this.names.push(b.name);
    return b;
  }
  node(): Promise<TestNamespace> {
    return this.namespace();
  }
  pod(): Promise<TestNamespace> {
    return this.namespace();
  }
  async dispose(): Promise<void> {
    const names = this.names.splice(0);
    for (const n of names.reverse()) await this.home.destroy(n);
  }
}
