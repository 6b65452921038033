// A small Kubernetes-like cluster built from network namespaces, for the lab and the kernel tests: a bridge
// as the network (MTU 1500), nodes with an `eth0` into it, pods as namespaces behind veths.
// Flavours: 'aks' (Azure CNI: pod IPs from the node subnet, host ends named azv*, proxy ARP and permanent
// "fabric" neighbour entries standing in for the VNET, strict rp_filter, AKS providerID and labels) and
// 'podcidr' (a /24 per node, host-gw routes between nodes, loose rp_filter).
// 'podcidr' with `dualStack: true` adds IPv6 to it: each node an IPv6 underlay address (fd00:77::<10+i>/64) and
// a /64 pod CIDR (fd00:10:244:<i>::/64) routed host-gw as the /24s are, each pod an IPv6 address from it and
// a default route via the host end's link-local fe80::1; the manifests list both families, IPv4 first, as
// Kubernetes does. Without `dualStack` nothing of this exists (the other flavours are unchanged).
import { mkdir } from 'node:fs/promises';
import { defaultRunner, runChecked, type Runner } from '../run.js';
import { connectToBridge, type Bridge, type NamespaceFactory } from './netns.js';

export type Flavor = 'aks' | 'podcidr';

export interface ClusterPod {
  readonly name: string; // Kubernetes name (namespace default)
  readonly ns: string; // network namespace
  readonly ip: string;
  readonly hostIf: string;
  /** The pod's IPv6 address (dual stack only). */
  readonly ip6?: string;
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
  /** The node's IPv6 underlay address and IPv6 pod CIDR (dual stack only). */
  readonly ip6?: string;
  readonly podCIDR6?: string;
}

export interface ClusterSpec {
  readonly flavor: Flavor;
  readonly nodes: number;
  readonly podsPerNode: number;
  readonly plainNodes?: readonly number[];
  readonly prefix?: string;
  /** IPv4 + IPv6 ('podcidr' only). */
  readonly dualStack?: boolean;
}

/** The most nodes and pods per node the address plan supports. */
export const TOPOLOGY_LIMITS = { nodes: 200, podsPerNode: 200 } as const;

export function nodeNameOf(flavor: Flavor, i: number): string {
  return flavor === 'aks' ? `aks-nodepool1-12345678-vmss${String(i).padStart(6, '0')}` : `node-${i}`;
}

export function nodeIpOf(flavor: Flavor, i: number): string {
  return flavor === 'aks' ? `10.224.0.${4 + i}` : `192.168.77.${10 + i}`;
}

export function podIpOf(flavor: Flavor, node: number, j: number): string {
  return flavor === 'aks' ? `10.224.${1 + node}.${10 + j}` : `10.244.${node}.${10 + j}`;
}

// Dual stack: canonical IPv6 text (as Kubernetes prints it), the hex group numbered like the IPv4 octet.
const hex = (n: number): string => n.toString(16);
const podPrefix6 = (node: number): string => (node === 0 ? 'fd00:10:244::' : `fd00:10:244:${hex(node)}::`);
export const nodeIp6Of = (i: number): string => `fd00:77::${hex(10 + i)}`;
export const podCIDR6Of = (i: number): string => `${podPrefix6(i)}/64`;
export const podIp6Of = (node: number, j: number): string => `${podPrefix6(node)}${hex(10 + j)}`;
/** The link-local address of a pod's host end: the pod's IPv6 default gateway. */
export const POD_GATEWAY6 = 'fe80::1';

export class Topology {
  readonly nodes: ClusterNode[] = [];
  bridge!: Bridge;

  /** `stateDir(node)`: a directory made for each node (its key store). */
  protected constructor(readonly spec: ClusterSpec, readonly factory: NamespaceFactory, private readonly stateDirOf: (ns: string, name: string) => string) {}

  static async build(spec: ClusterSpec, factory: NamespaceFactory, stateDirOf: (ns: string, name: string) => string): Promise<Topology> {
    const t = new Topology(spec, factory, stateDirOf);
    await t.build();
    return t;
  }

  private exec(ns: string, cmd: string, args: readonly string[], input?: string) {
    return this.factory.home.execChecked(ns, cmd, args, input !== undefined ? { input } : undefined);
  }

  protected async build(): Promise<void> {
    const { flavor } = this.spec;
    if (this.spec.nodes < 1 || this.spec.nodes > TOPOLOGY_LIMITS.nodes) throw new Error(`nodes must be 1..${TOPOLOGY_LIMITS.nodes}`);
    if (this.spec.podsPerNode < 0 || this.spec.podsPerNode > TOPOLOGY_LIMITS.podsPerNode) throw new Error(`pods per node must be 0..${TOPOLOGY_LIMITS.podsPerNode}`);
    this.bridge = await this.factory.bridge();
    const aks = flavor === 'aks';
    const dual = this.spec.dualStack === true;
    if (dual && aks) throw new Error("dual stack needs the 'podcidr' flavour");
    // Neighbour discovery is multicast: with snooping and no MLD querier the bridge may drop solicitations.
    if (dual) await this.exec(this.bridge.name, 'ip', ['link', 'set', 'br0', 'type', 'bridge', 'mcast_snooping', '0']);
    for (let i = 0; i < this.spec.nodes; i++) {
      const ns = (await this.factory.node(i)).name;
      const name = nodeNameOf(flavor, i);
      const ip = nodeIpOf(flavor, i);
      const podCIDR = aks ? null : `10.244.${i}.0/24`;
      // IPv6 before eth0 exists: no DAD (addresses usable at once), a router (forwards pod traffic).
      if (dual) await this.exec(ns, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=0', 'net.ipv6.conf.default.disable_ipv6=0', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.forwarding=1', 'net.ipv6.conf.default.forwarding=1']);
      await connectToBridge(this.bridge, ns, { addresses: [aks ? `${ip}/16` : `${ip}/24`], mtu: 1500 });
      if (dual) await this.exec(ns, 'ip', ['-6', 'address', 'add', `${nodeIp6Of(i)}/64`, 'dev', 'eth0', 'nodad']);
      const rp = aks ? '1' : '2';
      await this.exec(ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', `net.ipv4.conf.all.rp_filter=${rp}`, `net.ipv4.conf.default.rp_filter=${rp}`, `net.ipv4.conf.eth0.rp_filter=${rp}`]);
      const stateDir = this.stateDirOf(ns, name);
      await mkdir(stateDir, { recursive: true, mode: 0o700 });
      const node: ClusterNode = { name, ns, ip, index: i, podCIDR, pods: [], stateDir, plain: (this.spec.plainNodes ?? []).includes(i), ...(dual ? { ip6: nodeIp6Of(i), podCIDR6: podCIDR6Of(i) } : {}) };
      for (let j = 0; j < this.spec.podsPerNode; j++) node.pods.push(await this.addPod(node, j));
      this.nodes.push(node);
    }
    if (aks) {
      // The Azure fabric answers ARP for every VNET address; nodes never see each other's ARP (with strict
      // rp_filter and host encryption, a node would refuse ARP from a peer whose IP routes into the device).
      // Permanent neighbour entries stand in for it.
      for (const n of this.nodes) for (const m of this.nodes) if (n !== m) await this.fabricNeighbours(n, m);
    } else {
      for (const n of this.nodes) {
        const batch = this.nodes.filter((m) => m !== n).map((m) => `route add ${m.podCIDR!} via ${m.ip}`).join('\n') + '\n';
        if (this.nodes.length > 1) await this.exec(n.ns, 'ip', ['-batch', '-'], batch);
        if (dual && this.nodes.length > 1) {
          const batch6 = this.nodes.filter((m) => m !== n).map((m) => `route add ${m.podCIDR6!} via ${m.ip6!} dev eth0`).join('\n') + '\n';
          await this.exec(n.ns, 'ip', ['-6', '-batch', '-'], batch6);
        }
      }
    }
  }

  private async macOf(node: ClusterNode): Promise<string> {
    const r = await this.exec(node.ns, 'ip', ['-j', 'link', 'show', 'eth0']);
    return (JSON.parse(r.stdout) as { address: string }[])[0]!.address;
  }

  /** On `on`, resolve `to`'s node IP and pod IPs to `to`'s MAC, as the Azure fabric does. */
  private async fabricNeighbours(on: ClusterNode, to: ClusterNode, only?: readonly string[]): Promise<void> {
    const mac = await this.macOf(to);
    const batch = (only ?? [to.ip, ...to.pods.map((p) => p.ip)]).map((ip) => `neigh replace ${ip} lladdr ${mac} dev eth0 nud permanent`).join('\n') + '\n';
    await this.exec(on.ns, 'ip', ['-batch', '-'], batch);
  }

  /** Adds pod number `j` to `node`: a namespace behind a veth, its IP routed to it on the node. */
  async addPod(node: ClusterNode, j: number): Promise<ClusterPod> {
    const aks = this.spec.flavor === 'aks';
    const podNs = (await this.factory.pod(node.index, j)).name;
    // Dual stack: no DAD in the pod (set before its eth0 exists; the node's defaults were set with its own).
    if (node.ip6 !== undefined) await this.exec(podNs, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=0', 'net.ipv6.conf.default.disable_ipv6=0', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    const ip = podIpOf(this.spec.flavor, node.index, j);
    const hostIf = aks ? `azv${j}a${node.index}` : `veth${j}`;
    await runChecked(defaultRunner, 'ip', ['-n', node.ns, 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', podNs]);
    await runChecked(defaultRunner, 'ip', ['-n', node.ns, 'link', 'set', hostIf, 'up']);
    await this.exec(node.ns, 'sysctl', ['-qw', `net.ipv4.conf.${hostIf}.proxy_arp=1`, ...(aks ? [`net.ipv4.conf.${hostIf}.rp_filter=1`] : [])]);
    await runChecked(defaultRunner, 'ip', ['-n', node.ns, 'route', 'add', `${ip}/32`, 'dev', hostIf]);
    await runChecked(defaultRunner, 'ip', ['-n', podNs, 'address', 'add', `${ip}/32`, 'dev', 'eth0']);
    await runChecked(defaultRunner, 'ip', ['-n', podNs, 'link', 'set', 'eth0', 'up']);
    await runChecked(defaultRunner, 'ip', ['-n', podNs, 'route', 'add', 'default', 'dev', 'eth0']);
    if (aks) for (const other of this.nodes) if (other !== node) await this.fabricNeighbours(other, node, [ip]);
    if (node.ip6 !== undefined) {
      const ip6 = podIp6Of(node.index, j);
      // The host end answers as fe80::1, the pod's gateway; `nodad`: usable at once.
      await runChecked(defaultRunner, 'ip', ['-n', node.ns, '-6', 'address', 'add', `${POD_GATEWAY6}/64`, 'dev', hostIf, 'nodad']);
      await runChecked(defaultRunner, 'ip', ['-n', node.ns, '-6', 'route', 'add', `${ip6}/128`, 'dev', hostIf]);
      await runChecked(defaultRunner, 'ip', ['-n', podNs, '-6', 'address', 'add', `${ip6}/128`, 'dev', 'eth0', 'nodad']);
      await runChecked(defaultRunner, 'ip', ['-n', podNs, '-6', 'route', 'add', 'default', 'via', POD_GATEWAY6, 'dev', 'eth0']);
      return { name: `pod-${node.index}-${j}`, ns: podNs, ip, hostIf, ip6 };
    }
    return { name: `pod-${node.index}-${j}`, ns: podNs, ip, hostIf };
  }

  /** Kubernetes objects (a List) describing the cluster, with the given public keys and settings data. */
  manifests(keys: ReadonlyMap<string, string | null>, settings: Readonly<Record<string, string>>, extraNodeLabels: Readonly<Record<string, Record<string, string>>> = {}): object {
    return clusterManifests(this.spec.flavor, this.nodes, keys, settings, extraNodeLabels);
  }
}

/** The Node and Pod objects of a topology and the settings ConfigMap, as one v1 List. */
export function clusterManifests(
  flavor: Flavor,
  nodes: readonly ClusterNode[],
  keys: ReadonlyMap<string, string | null>,
  settings: Readonly<Record<string, string>>,
  extraNodeLabels: Readonly<Record<string, Record<string, string>>> = {},
): { apiVersion: 'v1'; kind: 'List'; items: object[] } {
  const items: object[] = [...nodes.flatMap((n) => [nodeManifest(flavor, n, keys.get(n.name) ?? null, extraNodeLabels[n.name] ?? {}), ...podManifests(n)])];
  items.push(settingsManifest(settings));
  return { apiVersion: 'v1', kind: 'List', items };
}

export function nodeManifest(flavor: Flavor, n: ClusterNode, key: string | null, extraLabels: Readonly<Record<string, string>> = {}): object {
  const aks = flavor === 'aks';
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: n.name,
      labels: {
        'kubernetes.io/hostname': n.name,
        'kubernetes.io/os': 'linux',
        ...(aks ? { 'kubernetes.azure.com/cluster': 'MC_rg_lab_westeurope', 'kubernetes.azure.com/agentpool': 'nodepool1', 'kubernetes.azure.com/mode': 'system' } : {}),
        ...extraLabels,
      },
      annotations: key ? { 'wgplane.io/public-key': key } : {},
    },
    spec: {
      ...(aks ? { providerID: `azure:///subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/mc_rg_lab_westeurope/providers/Microsoft.Compute/virtualMachineScaleSets/aks-nodepool1-12345678-vmss/virtualMachines/${n.index}` } : {}),
      ...(n.podCIDR ? { podCIDR: n.podCIDR, podCIDRs: n.podCIDR6 !== undefined ? [n.podCIDR, n.podCIDR6] : [n.podCIDR] } : {}),
    },
    status: { addresses: n.ip6 !== undefined
      ? [{ type: 'InternalIP', address: n.ip }, { type: 'InternalIP', address: n.ip6 }, { type: 'Hostname', address: n.name }]
      : [{ type: 'InternalIP', address: n.ip }, { type: 'Hostname', address: n.name }] },
  };
}

export function podManifests(n: ClusterNode): object[] {
  return n.pods.map((p) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: p.name, namespace: 'default' },
    spec: { nodeName: n.name, containers: [{ name: 'app', image: 'busybox' }] },
    status: { phase: 'Running', hostIP: n.ip, podIP: p.ip, podIPs: p.ip6 !== undefined ? [{ ip: p.ip }, { ip: p.ip6 }] : [{ ip: p.ip }] },
  }));
}

export function settingsManifest(settings: Readonly<Record<string, string>>): object {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'wgplane', namespace: 'kube-system' }, data: settings };
}

/** Ping from a namespace (no mount namespace needed); how many of `count` replies came back. */
export async function pingCount(ns: string, ip: string, count = 3, timeoutS = 2): Promise<{ sent: number; received: number }> {
  return pingWith((cmd, args) => defaultRunner('ip', ['netns', 'exec', ns, cmd, ...args]), ip, count, timeoutS);
}

/** `count` pings to `ip` through `run` (0.2 s apart): how many were sent and how many came back. */
export async function pingWith(run: Runner, ip: string, count: number, timeoutS = 2): Promise<{ sent: number; received: number }> {
  const r = await run('ping', ['-n', '-q', '-c', String(count), '-i', '0.2', '-W', String(timeoutS), ip]);
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  return m ? { sent: Number(m[1]), received: Number(m[2]) } : { sent: count, received: 0 };
}
