// Three `wgplane daemon` agents (child processes, each in its node namespace with its own /run/wireguard)
// sharing one dir source, in an AKS-like and a pod-CIDR cluster of namespaces with real WireGuard
// (wireguard-go) and real packets. Started with no keys published, they exchange keys through the
// directory and converge to the encrypted mesh (tcpdump on the bridge); then the cluster changes under
// them and each change converges: a pod added and removed, a node added and deleted, a node's key rotated,
// WireGuard disabled and re-enabled with `wgplane disable|enable`, an agent restarted under a continuous
// ping that must lose no packet, and a route deleted behind an agent's back (repaired by the resync, set
// to 5 s in the settings).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rename, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { readKey } from '../adapters/keystore.js';
import { defaultRunner, runChecked } from '../adapters/run.js';
import { Capture, type Packet } from '../testing/capture.js';
import { CLI_ARGS, REPO, TestCluster, wgplaneHere, ping, type ClusterNode } from '../testing/cluster.js';
import { connectToBridge, kernelTestSkipReason, nodeExec, nodeExecChecked, nodePrefix } from '../testing/netns.js';

const skip = kernelTestSkipReason();
const IFACE = 'wireguard.wgp';
const TABLE = 51820;
const PORT = 51820;

/** Polls `f` until it returns a truthy value; the error names what was awaited and the last reason. */
async function until<T>(what: string, f: () => Promise<T | null | undefined | false>, ms = 60_000, extra: () => string = () => ''): Promise<T> {
  const end = Date.now() + ms;
  let last = '';
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms / 1000} s waiting for: ${what}${last ? ` (last: ${last})` : ''}${extra()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface Agent {
  readonly node: ClusterNode;
  proc: ResultPromise | null;
  log: string[];
}

class Mesh {
  readonly agents = new Map<string, Agent>();
  settings: Record<string, string> = { enabled: 'true', resyncInterval: '5' };
  constructor(readonly c: TestCluster, readonly dir: string) {}

  get flavor() {
    return this.c.spec.flavor;
  }

  /** The operator's manifests: nodes and pods, no keys (the agents publish theirs), and the settings. */
  async writeManifests(): Promise<void> {
    const file = path.join(this.dir, 'cluster.json');
    // Keep whatever `wgplane enable|disable` wrote into the ConfigMap.
    try {
      const cur = JSON.parse(await readFile(file, 'utf8')) as { items: { kind: string; data?: Record<string, string> }[] };
      const cm = cur.items.find((i) => i.kind === 'ConfigMap');
      if (cm?.data) this.settings = { ...cm.data };
    } catch {
      // first write
    }
    const tmp = path.join(this.dir, '.cluster.json.tmp');
    await writeFile(tmp, JSON.stringify(this.c.manifests(new Map(), this.settings), null, 1));
    await rename(tmp, file);
  }

  start(node: ClusterNode): Agent {
    const a = this.agents.get(node.name) ?? { node, proc: null, log: [] };
    const [cmd, ...prefix] = nodePrefix(node.ns);
    const proc = execa(cmd!, [...prefix, process.execPath, ...CLI_ARGS, 'daemon', '--source', `dir:${this.dir}`, '--node', node.name, '--state-dir', node.stateDir, '--wireguard', 'userspace', '--metrics-addr', 'off', '--log-level', 'info'], {
      cwd: REPO, reject: false, buffer: false, stdin: 'ignore', all: true,
    });
    proc.all?.on('data', (d: Buffer) => {
      a.log.push(...d.toString().split('\n').filter((l) => l !== ''));
      if (a.log.length > 2000) a.log.splice(0, a.log.length - 2000);
    });
    a.proc = proc;
    this.agents.set(node.name, a);
    return a;
  }

  async stop(node: ClusterNode, signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<number | string | undefined> {
    const a = this.agents.get(node.name);
    if (!a?.proc) return undefined;
    a.proc.kill(signal);
    const r = await a.proc;
    a.proc = null;
    return r.exitCode ?? r.signal; // the signal that killed it, if one did
  }

  async stopAll(): Promise<void> {
    for (const a of this.agents.values()) if (a.proc) { a.proc.kill('SIGKILL'); await a.proc; a.proc = null; }
  }

  logs(): string {
    return [...this.agents.values()].map((a) => `\n--- ${a.node.name}\n${a.log.slice(-25).join('\n')}`).join('');
  }

  wgNodes(): ClusterNode[] {
    return this.c.nodes.filter((n) => !n.plain);
  }

  async publicKey(n: ClusterNode): Promise<string> {
    const k = await readKey(n.stateDir);
    if (!k) throw new Error(`no key in ${n.stateDir}`);
    return k.publicKey;
  }

  expectedAllowed(b: ClusterNode): string[] {
    return (this.flavor === 'aks' ? [...b.pods.map((p) => `${p.ip}/32`), `${b.ip}/32`] : [b.podCIDR!]).sort();
  }

  /** `wg show dump` of a node: public key -> sorted allowed IPs, or null without a device. */
  async peers(n: ClusterNode): Promise<Map<string, string[]> | null> {
    const r = await nodeExec(n.ns, 'wg', ['show', IFACE, 'dump']);
    if (r.exitCode !== 0) return null;
    const out = new Map<string, string[]>();
    for (const line of r.stdout.trim().split('\n').slice(1)) {
      const f = line.split('\t');
      out.set(f[0]!, f[3] === '(none)' ? [] : f[3]!.split(',').sort());
    }
    return out;
  }

  async deviceRoutes(n: ClusterNode): Promise<string[]> {
    const r = await nodeExec(n.ns, 'ip', ['-j', 'route', 'show', 'table', String(TABLE)]);
    if (r.exitCode !== 0 || r.stdout.trim() === '') return [];
    return (JSON.parse(r.stdout) as { dst: string; dev?: string; type?: string }[])
      .filter((x) => x.dev === IFACE)
      .map((x) => (x.dst.includes('/') ? x.dst : `${x.dst}/32`))
      .sort();
  }

  /** Why node `a`'s kernel differs from the full mesh among `nodes`, or null when it matches. */
  async meshProblem(a: ClusterNode, nodes: readonly ClusterNode[]): Promise<string | null> {
    const peers = await this.peers(a);
    if (!peers) return `${a.name}: no device`;
    const want = new Map<string, string[]>();
    for (const b of nodes) if (b !== a) want.set(await this.publicKey(b), this.expectedAllowed(b));
    const got = JSON.stringify([...peers].sort());
    const exp = JSON.stringify([...want].sort());
    if (got !== exp) return `${a.name}: peers ${got} != ${exp}`;
    const routes = await this.deviceRoutes(a);
    const wantRoutes = [...want.values()].flat().sort();
    if (JSON.stringify(routes) !== JSON.stringify(wantRoutes)) return `${a.name}: routes ${routes.join(',')} != ${wantRoutes.join(',')}`;
    const rules = await nodeExec(a.ns, 'ip', ['rule', 'show']);
    if (!/not from all fwmark 0x100000\/0x100000 lookup 51820 proto 98/.test(rules.stdout)) return `${a.name}: no rule`;
    return null;
  }

  async converged(what: string, nodes: readonly ClusterNode[] = this.wgNodes(), ms = 90_000): Promise<void> {
    let last = '';
    await until(what, async () => {
      for (const a of nodes) {
        const p = await this.meshProblem(a, nodes);
        if (p) { last = p; return false; }
      }
      return true;
    }, ms, () => `\n${last}${this.logs()}`);
  }

  /** Nothing of wgplane is left on `n` (device, routes of its table, rules). */
  async clean(n: ClusterNode): Promise<boolean> {
    if ((await nodeExec(n.ns, 'ip', ['link', 'show', IFACE])).exitCode === 0) return false;
    if ((await this.deviceRoutes(n)).length > 0) return false;
    return !/proto 98/.test((await nodeExec(n.ns, 'ip', ['rule', 'show'])).stdout);
  }

  async cli(args: readonly string[]): Promise<string> {
    const r = await wgplaneHere(args);
    assert.equal(r.exitCode, 0, `wgplane ${args.join(' ')}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  }
}

const involves = (p: Packet, ...ips: string[]) => ips.includes(p.src) || ips.includes(p.dst);
const isWireGuard = (p: Packet, a: ClusterNode, b: ClusterNode) =>
  p.proto === 'udp' && p.sport === PORT && p.dport === PORT && [a.ip, b.ip].includes(p.src) && [a.ip, b.ip].includes(p.dst);

/** Pings pod to pod across every pair of `nodes` while capturing on the bridge: every ping answers, no
 *  pod IP is seen on the wire, and each pair's WireGuard UDP is. */
async function provesEncrypted(m: Mesh, nodes: readonly ClusterNode[]): Promise<void> {
  const cap = await Capture.start(m.c.bridge.name, 'br0');
  const failed: string[] = [];
  let packets: Packet[] = [];
  try {
    for (const a of nodes) for (const b of nodes) {
      if (a === b) continue;
      const src = a.pods[0]!, dst = b.pods[b.pods.length - 1]!;
      if (!(await ping(src.ns, dst.ip, 2))) failed.push(`${src.ip} -> ${dst.ip}`);
    }
  } finally {
    packets = await cap.stop();
  }
  assert.deepEqual(failed, [], 'pings failed');
  const podIPs = nodes.flatMap((n) => n.pods.map((p) => p.ip));
  assert.deepEqual(packets.filter((p) => involves(p, ...podIPs)).map((p) => p.line), [], 'pod traffic seen in clear on the wire');
  for (const a of nodes) for (const b of nodes) {
    if (a.index < b.index) assert.ok(packets.some((p) => isWireGuard(p, a, b)), `no WireGuard packets between ${a.name} and ${b.name}`);
  }
}

/** Adds a node (namespace, eth0 on the bridge, sysctls, pods) to a running TestCluster, with the
 *  neighbour entries (AKS: the fabric's ARP) or pod-CIDR routes the others need to reach it. */
async function addNode(c: TestCluster, index: number, pods: number): Promise<ClusterNode> {
  const aks = c.spec.flavor === 'aks';
  const ns = (await c.lab.namespace()).name;
  const ip = aks ? `10.224.0.${4 + index}` : `192.168.77.${10 + index}`;
  await connectToBridge(c.bridge, ns, { addresses: [aks ? `${ip}/16` : `${ip}/24`], mtu: 1500 });
  for (const [k, v] of [['net.ipv4.ip_forward', '1'], ['net.ipv4.conf.all.rp_filter', aks ? '1' : '2'], ['net.ipv4.conf.default.rp_filter', aks ? '1' : '2'], ['net.ipv4.conf.eth0.rp_filter', aks ? '1' : '2']]) {
    await nodeExecChecked(ns, 'sysctl', ['-qw', `${k}=${v}`]);
  }
  const stateDir = `/run/wgplane-test/${ns}/state`;
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const node: ClusterNode = { name: aks ? `aks-nodepool1-12345678-vmss00000${index}` : `node-${index}`, ns, ip, index, podCIDR: aks ? null : `10.244.${index}.0/24`, pods: [], stateDir, plain: false };
  const others = [...c.nodes];
  c.nodes.push(node);
  for (let j = 0; j < pods; j++) node.pods.push(await c.addPod(node, j));
  await nodeNeighbours(node, others, aks);
  return node;
}

/** AKS: permanent neighbours both ways (node IPs and pod IPs) between `node` and `others`; pod CIDR: routes
 *  to each other's pod CIDR via the node IP. */
async function nodeNeighbours(node: ClusterNode, others: readonly ClusterNode[], aks: boolean): Promise<void> {
  const mac = async (n: ClusterNode) => (JSON.parse((await nodeExecChecked(n.ns, 'ip', ['-j', 'link', 'show', 'eth0'])).stdout) as { address: string }[])[0]!.address;
  const neigh = async (on: ClusterNode, to: ClusterNode) => {
    const m = await mac(to);
    const batch = [to.ip, ...to.pods.map((p) => p.ip)].map((ip) => `neigh replace ${ip} lladdr ${m} dev eth0 nud permanent`).join('\n') + '\n';
    await nodeExecChecked(on.ns, 'ip', ['-batch', '-'], { input: batch });
  };
  for (const o of others) {
    if (aks) {
      await neigh(node, o);
      await neigh(o, node);
    } else {
      await nodeExecChecked(node.ns, 'ip', ['route', 'replace', o.podCIDR!, 'via', o.ip]);
      await nodeExecChecked(o.ns, 'ip', ['route', 'replace', node.podCIDR!, 'via', node.ip]);
    }
  }
}

interface DaemonStatus { time: string; startedAt: string; lastApply: string; counters: { driftRepairs: number } }
async function daemonStatus(n: ClusterNode): Promise<DaemonStatus> {
  return JSON.parse(await readFile(path.join(n.stateDir, 'status.json'), 'utf8')) as DaemonStatus;
}

for (const flavor of ['aks', 'podcidr'] as const) {
  test(`three daemons sharing a dir source keep an encrypted mesh through every change (${flavor})`, { skip: skip ?? false, timeout: 900_000 }, async (t) => {
    const c = await TestCluster.create({ flavor, nodes: 3, podsPerNode: 2, prefix: flavor === 'aks' ? 'wgdka' : 'wgdkp' });
    const dir = await mkdtemp(path.join(tmpdir(), 'wgplane-mesh-'));
    const m = new Mesh(c, dir);
    t.after(async () => {
      await m.stopAll();
      await c.destroy();
      await rm(dir, { recursive: true, force: true });
    });
    const [n0, n1, n2] = c.nodes as [ClusterNode, ClusterNode, ClusterNode];
    await m.writeManifests();
    assert.ok(await ping(n0.pods[0]!.ns, n1.pods[0]!.ip), 'the underlay works before wgplane');

    await t.test('started with no keys published, the agents exchange keys and converge to the encrypted mesh', async () => {
      for (const n of c.nodes) m.start(n);
      await m.converged('the initial mesh');
      await provesEncrypted(m, m.wgNodes());
      // `plan --snapshot DIR` sees the published keys: the kernel matches.
      for (const n of c.nodes) {
        const r = await c.wgplane(n, ['plan', '--snapshot', dir, '--node', n.name, '--state-dir', n.stateDir]);
        assert.equal(r.exitCode, 0, `${n.name}: ${r.stdout}${r.stderr}`);
      }
    });

    await t.test('wgplane status shows this node and, with --all, every node', async () => {
      await until('status.json reports ok', async () => (await daemonStatus(n0)).lastApply === 'ok');
      const r = await c.wgplane(n0, ['status', '--source', `dir:${dir}`, '--node', n0.name, '--state-dir', n0.stateDir, '--output', 'json']);
      assert.equal(r.exitCode, 0, r.stdout + r.stderr);
      const s = JSON.parse(r.stdout) as { key: { publishedMatches: boolean }; device: { mtu: number; up: boolean }; pendingOps: number; peers: { node: string; allowedIPs: number }[]; daemon: { lastApply: string } };
      assert.equal(s.key.publishedMatches, true);
      assert.equal(s.device.up, true);
      assert.equal(s.device.mtu, flavor === 'aks' ? 1340 : 1440);
      assert.equal(s.pendingOps, 0);
      assert.equal(s.daemon.lastApply, 'ok');
      assert.deepEqual(s.peers.map((p) => [p.node, p.allowedIPs]), [n1, n2].map((b) => [b.name, m.expectedAllowed(b).length]));
      const text = await c.wgplane(n0, ['status', '--source', `dir:${dir}`, '--node', n0.name, '--state-dir', n0.stateDir]);
      assert.match(text.stdout, new RegExp(`${n1.name}\\s+\\S+\\s+${n1.ip}:${PORT}`));
      const all = await until('every agent has published its status', async () => {
        const x = await c.wgplane(n0, ['status', '--all', '--source', `dir:${dir}`, '--output', 'json']);
        const v = JSON.parse(x.stdout) as { nodes: { node: string; keyPublished: boolean; status: { peers: number; lastApply: string } | null }[] };
        return v.nodes.every((n) => n.keyPublished && n.status?.lastApply === 'ok' && n.status.peers === 2) ? v : null;
      });
      assert.deepEqual(all.nodes.map((n) => n.node), c.nodes.map((n) => n.name).sort());
    });

    await t.test('a pod added and removed', async () => {
      const pod = await c.addPod(n1, 2);
      n1.pods.push(pod);
      await m.writeManifests();
      await m.converged('the mesh with the new pod');
      assert.ok(await ping(n0.pods[0]!.ns, pod.ip, 2), 'the new pod is reachable');
      await provesEncrypted(m, [n0, n1]);
      n1.pods.pop();
      await m.writeManifests();
      await m.converged('the mesh without the pod');
      if (flavor === 'aks') {
        for (const a of [n0, n2]) assert.ok(!(await m.deviceRoutes(a)).includes(`${pod.ip}/32`), `${a.name} still routes the removed pod`);
      }
    });

    await t.test('a node added and deleted', async () => {
      const n3 = await addNode(c, 3, 2);
      await m.writeManifests();
      m.start(n3);
      await m.converged('the mesh of four');
      await provesEncrypted(m, [n0, n3]);
      const key3 = await m.publicKey(n3);
      assert.equal(await m.stop(n3), 0);
      c.nodes.pop();
      await m.writeManifests();
      await m.converged('the mesh of three again');
      for (const a of [n0, n1, n2]) assert.ok(!(await m.peers(a))!.has(key3), `${a.name} keeps the deleted node's peer`);
    });

    await t.test("a node's key changed (key rotate + restart)", async () => {
      const old = await m.publicKey(n1);
      assert.equal(await m.stop(n1), 0);
      const r = await c.wgplane(n1, ['key', 'rotate', '--state-dir', n1.stateDir]);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.notEqual(await m.publicKey(n1), old);
      m.start(n1);
      await m.converged('the mesh with the new key');
      for (const a of [n0, n2]) assert.ok(!(await m.peers(a))!.has(old), `${a.name} keeps the old key`);
      await provesEncrypted(m, m.wgNodes());
    });

    await t.test('WireGuard disabled and re-enabled (wgplane disable|enable --source dir:)', async () => {
      await m.cli(['disable', '--source', `dir:${dir}`]);
      await until('every node is clean', async () => {
        for (const n of c.nodes) if (!(await m.clean(n))) return false;
        return true;
      }, 90_000, () => m.logs());
      await until('every published key is cleared', async () => {
        for (const n of c.nodes) {
          const pub = await readFile(path.join(dir, 'wgplane-published', `${n.name}.yaml`), 'utf8');
          if (!/publicKey: null/.test(pub)) return false;
        }
        return true;
      });
      const cap = await Capture.start(c.bridge.name, 'br0');
      const ok = await ping(n0.pods[0]!.ns, n1.pods[0]!.ip, 2);
      const packets = await cap.stop();
      assert.ok(ok, 'traffic flows in clear when disabled');
      assert.ok(packets.some((p) => p.proto === 'icmp' && involves(p, n0.pods[0]!.ip)), 'expected clear ICMP');
      await m.cli(['enable', '--source', `dir:${dir}`, '--set', 'resyncInterval=5']);
      await m.converged('the mesh re-enabled');
      await provesEncrypted(m, m.wgNodes());
    });

    await t.test('an agent restarted under a continuous ping loses no packet', async () => {
      const a = n0.pods[0]!, b = n1.pods[1]!;
      const before = (await daemonStatus(n1)).startedAt;
      const pinger = execa('ip', ['netns', 'exec', a.ns, 'ping', '-n', '-i', '0.1', '-c', '250', '-W', '2', b.ip], { reject: false });
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(await m.stop(n1), 0, 'SIGTERM exits 0');
      m.start(n1);
      await until('the restarted agent reports a new status', async () => {
        const s = await daemonStatus(n1);
        // The stopping agent writes a last status too: only one from the new process counts.
        return s.startedAt !== before && s.lastApply === 'ok';
      }, 60_000, () => m.logs());
      const restartedAt = Date.now();
      const r = await pinger;
      assert.ok(Date.now() - restartedAt > 1000, 'the ping outlasted the restart');
      const mm = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
      assert.ok(mm, r.stdout + r.stderr);
      assert.equal(mm[2], mm[1], `packets lost during the restart: ${mm[0]}`);
      await m.converged('the mesh after the restart');
    });

    await t.test("a route deleted behind the agent's back is repaired by the resync", async () => {
      const victim = m.expectedAllowed(n1)[0]!;
      const repairs = (await daemonStatus(n0)).counters.driftRepairs;
      await runChecked(defaultRunner, 'ip', ['-n', n0.ns, 'route', 'del', victim, 'table', String(TABLE)]);
      assert.ok(!(await m.deviceRoutes(n0)).includes(victim));
      await until('the route is back', async () => (await m.deviceRoutes(n0)).includes(victim), 30_000, () => m.logs());
      await until('the repair is counted', async () => (await daemonStatus(n0)).counters.driftRepairs > repairs, 10_000);
      await m.converged('the mesh after the repair');
      await provesEncrypted(m, [n0, n1]);
    });

    await t.test('no private key appears in any agent output', async () => {
      const out = [...m.agents.values()].flatMap((a) => a.log).join('\n');
      assert.ok(out.length > 0);
      for (const n of c.nodes) {
        const priv = (await readFile(path.join(n.stateDir, 'private.key'), 'utf8')).trim();
        assert.ok(!out.includes(priv), `the private key of ${n.name} was printed`);
      }
    });
  });
}
