// A small Kubernetes-like cluster built from network namespaces, for the kernel tests of `apply` (and the
// lab): a bridge as the network (MTU 1500), nodes with an `eth0` into it, pods as namespaces behind veths.
// Flavours: 'aks' (Azure CNI: pod IPs from the node subnet, host ends named azv*, proxy ARP standing in for
// the VNET, strict rp_filter, AKS providerID and labels) and 'podcidr' (a /24 per node, host-gw routes).
import path from 'node:path';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { defaultRunner, runChecked, type RunResult } from '../adapters/run.js';
import { Lab, connectToBridge, nodeExec, nodeExecChecked, type Bridge } from './netns.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export type Flavor = 'aks' | 'podcidr';

export interface ClusterPod {
  readonly name: string; // Kubernetes name (namespace default)
  readonly ns: string; // network namespace
  readonly ip: string;
  readonly hostIf: string;
}

export interface ClusterNode {
  readonly name: string; // Kubernetes node name
  readonly ns: string; // network namespace
  readonly ip: string;
  readonly index: number;
  readonly podCIDR: string | null;
  readonly pods: ClusterPod[];
  readonly stateDir: string;
  /** A node that runs no wgplane (in clear). */
  readonly plain: boolean;
}

export interface ClusterSpec {
  readonly flavor: Flavor;
  readonly nodes: number;
  readonly podsPerNode: number;
  readonly plainNodes?: readonly number[];
  readonly prefix?: string;
}

export class TestCluster {
  readonly nodes: ClusterNode[] = [];
  bridge!: Bridge;
  private constructor(readonly spec: ClusterSpec, readonly lab: Lab) {}

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

  private async build(): Promise<void> {
    const { flavor } = this.spec;
    this.bridge = await this.lab.bridge();
    for (let i = 0; i < this.spec.nodes; i++) {
      const ns = (await this.lab.namespace()).name;
      const aks = flavor === 'aks';
      const name = aks ? `aks-nodepool1-12345678-vmss00000${i}` : `node-${i}`;
      const ip = aks ? `10.224.0.${4 + i}` : `192.168.77.${10 + i}`;
      const podCIDR = aks ? null : `10.244.${i}.0/24`;
      await connectToBridge(this.bridge, ns, { addresses: [aks ? `${ip}/16` : `${ip}/24`], mtu: 1500 });
      const sys = (k: string, v: string) => nodeExecChecked(ns, 'sysctl', ['-qw', `${k}=${v}`]);
      await sys('net.ipv4.ip_forward', '1');
      await sys('net.ipv4.conf.all.rp_filter', aks ? '1' : '2');
      await sys('net.ipv4.conf.default.rp_filter', aks ? '1' : '2');
      await sys('net.ipv4.conf.eth0.rp_filter', aks ? '1' : '2');
      const stateDir = `/run/wgplane-test/${ns}/state`;
      await mkdir(stateDir, { recursive: true, mode: 0o700 });
      const node: ClusterNode = { name, ns, ip, index: i, podCIDR, pods: [], stateDir, plain: (this.spec.plainNodes ?? []).includes(i) };
      for (let j = 0; j < this.spec.podsPerNode; j++) node.pods.push(await this.addPod(node, j));
      this.nodes.push(node);
    }
    if (flavor === 'aks') {
      // The Azure fabric answers ARP for every VNET address; nodes never see each other's ARP (with strict
      // rp_filter and host encryption, a node would refuse ARP from a peer whose IP routes into the device).
      // Permanent neighbour entries stand in for it.
      for (const n of this.nodes) for (const m of this.nodes) if (n !== m) await this.fabricNeighbours(n, m);
    }
    if (flavor === 'podcidr') {
      for (const n of this.nodes) for (const m of this.nodes) {
        if (n !== m) await nodeExecChecked(n.ns, 'ip', ['route', 'add', m.podCIDR!, 'via', m.ip]);
      }
    }
  }

  private async macOf(node: ClusterNode): Promise<string> {
    const r = await nodeExecChecked(node.ns, 'ip', ['-j', 'link', 'show', 'eth0']);
    return (JSON.parse(r.stdout) as { address: string }[])[0]!.address;
  }

  /** On `on`, resolve `to`'s node IP and pod IPs to `to`'s MAC, as the Azure fabric does. */
  private async fabricNeighbours(on: ClusterNode, to: ClusterNode, only?: readonly string[]): Promise<void> {
    const mac = await this.macOf(to);
    const batch = (only ?? [to.ip, ...to.pods.map((p) => p.ip)]).map((ip) => `neigh replace ${ip} lladdr ${mac} dev eth0 nud permanent`).join('\n') + '\n';
    await nodeExecChecked(on.ns, 'ip', ['-batch', '-'], { input: batch });
  }

  /** Adds pod number `j` to `node`: a namespace behind a veth, its IP routed to it on the node. */
  async addPod(node: ClusterNode, j: number): Promise<ClusterPod> {
    const aks = this.spec.flavor === 'aks';
    const podNs = (await this.lab.namespace()).name;
    const ip = aks ? `10.224.${1 + node.index}.${10 + j}` : `10.244.${node.index}.${10 + j}`;
    const hostIf = aks ? `azv${j}a${node.index}` : `veth${j}`;
    await runChecked(defaultRunner, 'ip', ['-n', node.ns, 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', podNs]);
    await runChecked(defaultRunner, 'ip', ['-n', node.ns, 'link', 'set', hostIf, 'up']);
    await nodeExecChecked(node.ns, 'sysctl', ['-qw', `net.ipv4.conf.${hostIf}.proxy_arp=1`]);
    if (aks) await nodeExecChecked(node.ns, 'sysctl', ['-qw', `net.ipv4.conf.${hostIf}.rp_filter=1`]);
    await runChecked(defaultRunner, 'ip', ['-n', node.ns, 'route', 'add', `${ip}/32`, 'dev', hostIf]);
    await runChecked(defaultRunner, 'ip', ['-n', podNs, 'address', 'add', `${ip}/32`, 'dev', 'eth0']);
    await runChecked(defaultRunner, 'ip', ['-n', podNs, 'link', 'set', 'eth0', 'up']);
    await runChecked(defaultRunner, 'ip', ['-n', podNs, 'route', 'add', 'default', 'dev', 'eth0']);
    if (aks) for (const other of this.nodes) if (other !== node) await this.fabricNeighbours(other, node, [ip]);
    return { name: `pod-${node.index}-${j}`, ns: podNs, ip, hostIf };
  }

  /** Runs the wgplane CLI inside a node (its namespace, its own /run/wireguard). */
  wgplane(node: ClusterNode, args: readonly string[], input?: string): Promise<RunResult> {
    return nodeExec(node.ns, 'node', ['--import', 'tsx', path.join(REPO, 'cmd/main.ts'), ...args], input !== undefined ? { input } : undefined);
  }

  /** Kubernetes objects (a List) describing the cluster, with the given public keys and settings data. */
  manifests(keys: ReadonlyMap<string, string | null>, settings: Readonly<Record<string, string>>, extraNodeLabels: Readonly<Record<string, Record<string, string>>> = {}): object {
    const aks = this.spec.flavor === 'aks';
    const items: object[] = [];
    for (const n of this.nodes) {
      const key = keys.get(n.name) ?? null;
      items.push({
        apiVersion: 'v1',
        kind: 'Node',
        metadata: {
          name: n.name,
          labels: {
            'kubernetes.io/hostname': n.name,
            'kubernetes.io/os': 'linux',
            ...(aks ? { 'kubernetes.azure.com/cluster': 'MC_rg_lab_westeurope', 'kubernetes.azure.com/agentpool': 'nodepool1', 'kubernetes.azure.com/mode': 'system' } : {}),
            ...(extraNodeLabels[n.name] ?? {}),
          },
          annotations: key ? { 'wgplane.io/public-key': key } : {},
        },
        spec: {
          ...(aks ? { providerID: `azure:///subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/mc_rg_lab_westeurope/providers/Microsoft.Compute/virtualMachineScaleSets/aks-nodepool1-12345678-vmss/virtualMachines/${n.index}` } : {}),
          ...(n.podCIDR ? { podCIDR: n.podCIDR, podCIDRs: [n.podCIDR] } : {}),
        },
        status: { addresses: [{ type: 'InternalIP', address: n.ip }, { type: 'Hostname', address: n.name }] },
      });
      for (const p of n.pods) {
        items.push({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: p.name, namespace: 'default' },
          spec: { nodeName: n.name, containers: [{ name: 'app', image: 'busybox' }] },
          status: { phase: 'Running', hostIP: n.ip, podIP: p.ip, podIPs: [{ ip: p.ip }] },
        });
      }
    }
    items.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'wgplane', namespace: 'kube-system' }, data: settings });
    return { apiVersion: 'v1', kind: 'List', items };
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
