// Deterministic cluster generator for tests and benchmarks: a ClusterSnapshot and the Kubernetes objects
// (as `kubectl get nodes,pods,configmaps -A -o json` prints them) that decode to it. Seeded PRNG only:
// the same options give the same cluster, byte for byte. Not part of the pure core (it may throw on
// impossible options), but it does no I/O.
import { stringify as yamlStringify } from 'yaml';
import type { IP } from '../core/ip.js';
import type { WgKey } from '../core/key.js';
import {
  OWNERSHIP,
  type ClusterSnapshot,
  type DesiredEnabled,
  type ObservedDataplane,
  type ObservedPeer,
  type Route,
  type NodeAddress,
  type NodeInfo,
  type NodeName,
  type PodInfo,
  type PodKey,
  type Settings,
} from '../core/model.js';
import type { Cidr } from '../core/ip.js';
import { DEFAULT_SETTINGS } from '../core/settings.js';

export type Flavor = 'aks' | 'podcidr';

export interface GenerateOptions {
  readonly nodes: number;
  readonly podsPerNode: number;
  /** 'aks': Azure CNI, node and pod IPs from one VNET subnet, no podCIDR. 'podcidr': a /24 (and /64) per node. */
  readonly flavor: Flavor;
  /** IPv6 node and pod addresses (and pod CIDRs) beside IPv4. */
  readonly dualStack?: boolean;
  readonly seed?: number;
  /** true (default): every node has a key; false: none; a number in [0,1]: that fraction of nodes,
   *  spread evenly (exactly floor(nodes * fraction) nodes). */
  readonly keys?: boolean | number;
  /** Overrides on top of the defaults and `enabled: true`; they also go into the settings ConfigMap. */
  readonly settings?: Partial<Settings>;
  /** Extra hostNetwork pods per node (pod IP = node IP), as kube-proxy or azure-cns are. Default 0. */
  readonly hostNetworkPodsPerNode?: number;
  /** Build the Kubernetes objects too (default true). false: `objects` is empty (benchmarks that only
   *  need the snapshot save the memory). */
  readonly objects?: boolean;
}

export interface GeneratedCluster {
  readonly snapshot: ClusterSnapshot;
  /** Kubernetes objects as `kubectl -o json` prints them (items of a List): Nodes, Pods, the ConfigMap. */
  readonly objects: readonly unknown[];
}

// ---------------------------------------------------------------------------------------------------
// PRNG (mulberry32): small, fast, deterministic. Never Math.random.

export type Rng = () => number; // uniform in [0, 1)

export function makeRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function rngU32(rng: Rng): number {
  return Math.floor(rng() * 4294967296) >>> 0;
}

/** A WireGuard public key in valid format (base64 of 32 PRNG bytes), deterministic for `seed`. */
export function generateKey(seed: number): WgKey {
  const rng = makeRng(seed ^ 0x5eed_4e1);
  const bytes = Buffer.alloc(32);
  for (let i = 0; i < 32; i += 4) bytes.writeUInt32LE(rngU32(rng), i);
  return bytes.toString('base64') as WgKey;
}

function hex8(rng: Rng): string {
  return rngU32(rng).toString(16).padStart(8, '0');
}

/** A version-4-shaped UUID from the PRNG. */
function uuid(rng: Rng): string {
  const a = hex8(rng), b = hex8(rng), c = hex8(rng), d = hex8(rng);
  return `${a}-${b.slice(0, 4)}-4${b.slice(5)}-${'89ab'[rngU32(rng) & 3]}${c.slice(1, 4)}-${c.slice(4)}${d}`;
}

// ---------------------------------------------------------------------------------------------------
// Addressing

function v4(n: number): IP {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}` as IP;
}

/** RFC 5952 text of 8 16-bit groups (core/ip.ts). */
export { formatV6Groups } from '../core/ip.js';
import { formatV6Groups } from '../core/ip.js';

/** AKS: the VNET subnet that holds node and pod IPs (Azure CNI without overlay). */
export const AKS_SUBNET = '10.224.0.0/12' as Cidr;
const AKS_BASE = (10 << 24) | (224 << 16); // 10.224.0.0
const AKS_SIZE = 1 << 20; // /12
const AKS_V6 = [0xfd12, 0x3456, 0x789a, 0x1] as const; // fd12:3456:789a:1::/64 for dual stack
/** podcidr flavour: node i gets 10.(128 + (i >> 8)).(i & 255).0/24 out of 10.128.0.0/9, and
 *  fd10:244:(i >> 16):(i & 0xffff)::/64; node IPs from 172.16.0.0/12 and fd00:172:16::/64. */
export const PODCIDR_CLUSTER_CIDR = '10.128.0.0/9' as Cidr;
const POD_V4_BASE = (10 << 24) | (128 << 16);
const NODE_V4_BASE = (172 << 24) | (16 << 16);

function aksV6(offset: number): IP {
  return formatV6Groups([...AKS_V6, 0, 0, offset >>> 16, offset & 0xffff]) as IP;
}

// ---------------------------------------------------------------------------------------------------
// Settings as ConfigMap data (all strings)

function settingString(key: keyof Settings, v: Settings[keyof Settings]): string {
  if (key === 'fwmark' && typeof v === 'number') return `0x${v.toString(16)}`;
  return String(v);
}

export function settingsConfigMap(settings: Settings, uid = '00000000-0000-4000-8000-000000000000'): unknown {
  const data: Record<string, string> = { enabled: String(settings.enabled) };
  for (const k of Object.keys(settings) as (keyof Settings)[]) {
    if (k === 'enabled') continue;
    if (settings[k] !== DEFAULT_SETTINGS[k]) data[k] = settingString(k, settings[k]);
  }
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: OWNERSHIP.settingsName, namespace: OWNERSHIP.settingsNamespace, uid, resourceVersion: '1000' },
    data,
  };
}

// ---------------------------------------------------------------------------------------------------

const CREATED = '2025-01-15T08:00:00Z';
const AKS_SUB = '8c2b7e0d-1f3a-4c5b-9d6e-7f8091a2b3c4';
const AKS_RG = 'mc_rg-wgplane_wgplane-aks_westeurope';
const NAMESPACES = ['default', 'shop', 'payments', 'search', 'ingress', 'monitoring', 'batch', 'auth'] as const;

function vmssInstance(i: number): string {
  return i.toString(36).padStart(6, '0');
}

interface NodePlan {
  readonly name: NodeName;
  readonly labels: Record<string, string>;
  readonly providerID: string | null;
  readonly addresses: readonly NodeAddress[];
  readonly podCIDRs: readonly Cidr[];
  readonly publicKey: WgKey | null;
  readonly uid: string;
}

/** Which nodes get keys: `keys` true/false/fraction, evenly spread, exact count floor(n * f). */
function hasKey(keys: boolean | number, i: number): boolean {
  if (keys === true) return true;
  if (keys === false) return false;
  const f = Math.min(1, Math.max(0, keys));
  return Math.floor((i + 1) * f) > Math.floor(i * f);
}

export function generateCluster(opts: GenerateOptions): GeneratedCluster {
  const { nodes, podsPerNode, flavor } = opts;
  const dual = opts.dualStack ?? false;
  const seed = opts.seed ?? 1;
  const keys = opts.keys ?? true;
  const hostPods = opts.hostNetworkPodsPerNode ?? 0;
  const emit = opts.objects ?? true;
  if (!Number.isInteger(nodes) || nodes < 0 || !Number.isInteger(podsPerNode) || podsPerNode < 0) {
    throw new Error(`generateCluster: nodes and podsPerNode must be non-negative integers (got ${nodes}, ${podsPerNode})`);
  }
  // AKS: node i owns a block of `stride` addresses in the VNET subnet: its node IP, then its pods' IPs in
  // shuffled slots (Azure CNI preallocates a node's pod IPs with its NIC), with some spare slots.
  const stride = 1 + podsPerNode + Math.ceil(podsPerNode / 10) + 2;
  if (flavor === 'aks' && 4 + nodes * stride > AKS_SIZE - 1) {
    throw new Error(`generateCluster: ${nodes} x ${podsPerNode} does not fit in ${AKS_SUBNET}`);
  }
  if (flavor === 'podcidr' && (podsPerNode > 254 || nodes > 32768)) {
    throw new Error(`generateCluster: podcidr flavour holds at most 32768 nodes x 254 pods`);
  }
  const settings: Settings = { ...DEFAULT_SETTINGS, enabled: true, ...opts.settings };
  const ipRng = makeRng(seed);
  const uidRng = makeRng(seed ^ 0x0bad_cafe);

  const nodeMap = new Map<NodeName, NodeInfo>();
  const podMap = new Map<PodKey, PodInfo>();
  const nodeObjects: unknown[] = [];
  const podObjects: unknown[] = [];
  const slots = new Int32Array(Math.max(stride - 1, 254));

  for (let i = 0; i < nodes; i++) {
    // ---- the node
    let np: NodePlan;
    const key = hasKey(keys, i) ? generateKey(seed * 1_000_003 + i) : null;
    if (flavor === 'aks') {
      const pool = Math.floor(i / 1000); // AKS: at most 1000 nodes per pool
      const poolName = `nodepool${pool + 1}`;
      const vmss = `aks-${poolName}-31415926-vmss`;
      const name = `${vmss}${vmssInstance(i % 1000)}` as NodeName;
      const base = 4 + i * stride;
      const addresses: NodeAddress[] = [{ type: 'InternalIP', address: v4(AKS_BASE + base) }];
      if (dual) addresses.push({ type: 'InternalIP', address: aksV6(base) });
      np = {
        name,
        uid: uuid(uidRng),
        providerID: `azure:///subscriptions/${AKS_SUB}/resourceGroups/${AKS_RG}/providers/Microsoft.Compute/virtualMachineScaleSets/${vmss}/virtualMachines/${i % 1000}`,
        labels: {
          agentpool: poolName,
          'beta.kubernetes.io/arch': 'amd64',
          'beta.kubernetes.io/instance-type': 'Standard_D8ds_v5',
          'beta.kubernetes.io/os': 'linux',
          'kubernetes.azure.com/agentpool': poolName,
          'kubernetes.azure.com/cluster': AKS_RG,
          'kubernetes.azure.com/mode': pool === 0 ? 'system' : 'user',
          'kubernetes.azure.com/node-image-version': 'AKSUbuntu-2204gen2containerd-202501.12.0',
          'kubernetes.azure.com/os-sku': 'Ubuntu',
          'kubernetes.azure.com/role': 'agent',
          'kubernetes.io/arch': 'amd64',
          'kubernetes.io/hostname': name,
          'kubernetes.io/os': 'linux',
          'node.kubernetes.io/instance-type': 'Standard_D8ds_v5',
          'topology.kubernetes.io/region': 'westeurope',
          'topology.kubernetes.io/zone': `westeurope-${(i % 3) + 1}`,
        },
        addresses,
        podCIDRs: [],
        publicKey: key,
      };
    } else {
      const name = `worker-${String(i).padStart(5, '0')}` as NodeName;
      const addresses: NodeAddress[] = [{ type: 'InternalIP', address: v4(NODE_V4_BASE + 10 + i) }];
      if (dual) addresses.push({ type: 'InternalIP', address: formatV6Groups([0xfd00, 0x172, 0x16, 0, 0, 0, (10 + i) >>> 16, (10 + i) & 0xffff]) as IP });
      const podCIDRs: Cidr[] = [`${v4(POD_V4_BASE + i * 256)}/24` as Cidr];
      if (dual) podCIDRs.push(`${formatV6Groups([0xfd10, 0x244, i >>> 16, i & 0xffff, 0, 0, 0, 0])}/64` as Cidr);
      np = {
        name,
        uid: uuid(uidRng),
        providerID: null,
        labels: {
          'beta.kubernetes.io/arch': 'amd64',
          'beta.kubernetes.io/os': 'linux',
          'kubernetes.io/arch': 'amd64',
          'kubernetes.io/hostname': name,
          'kubernetes.io/os': 'linux',
        },
        addresses,
        podCIDRs,
        publicKey: key,
      };
    }
    nodeMap.set(np.name, {
      name: np.name,
      addresses: np.addresses,
      labels: np.labels,
      providerID: np.providerID,
      podCIDRs: np.podCIDRs,
      publicKey: np.publicKey,
    });
    if (emit) nodeObjects.push(nodeObject(np));

    // ---- its pods: distinct slots, shuffled (partial Fisher-Yates)
    const nSlots = flavor === 'aks' ? stride - 1 : 254;
    for (let s = 0; s < nSlots; s++) slots[s] = s;
    for (let p = 0; p < podsPerNode; p++) {
      const r = p + Math.floor(ipRng() * (nSlots - p));
      const slot = slots[r]!;
      slots[r] = slots[p]!;
      slots[p] = slot;
      const ips: IP[] = [];
      if (flavor === 'aks') {
        const off = 4 + i * stride + 1 + slot;
        ips.push(v4(AKS_BASE + off));
        if (dual) ips.push(aksV6(off));
      } else {
        ips.push(v4(POD_V4_BASE + i * 256 + 1 + slot));
        if (dual) ips.push(formatV6Groups([0xfd10, 0x244, i >>> 16, i & 0xffff, 0, 0, 0, 1 + slot]) as IP);
      }
      const ns = NAMESPACES[(i + p) % NAMESPACES.length]!;
      const podName = `app-${i.toString(36)}-${p.toString(36)}`;
      addPodTo(podMap, podObjects, emit, np, ns, podName, ips, false, uidRng);
    }
    for (let h = 0; h < hostPods; h++) {
      const ips = np.addresses.map((a) => a.address);
      const podName = `${flavor === 'aks' ? 'azure-cns' : 'kube-proxy'}-${h}-${i.toString(36)}`;
      addPodTo(podMap, podObjects, emit, np, 'kube-system', podName, ips, true, uidRng);
    }
  }

  const snapshot: ClusterSnapshot = { nodes: nodeMap, pods: podMap, settings, settingsFound: true };
  const objects = emit ? [...nodeObjects, ...podObjects, settingsConfigMap(settings, uuid(uidRng))] : [];
  return { snapshot, objects };
}

function addPodTo(
  podMap: Map<PodKey, PodInfo>,
  podObjects: unknown[],
  emit: boolean,
  node: { readonly name: NodeName; readonly addresses: readonly NodeAddress[] },
  namespace: string,
  name: string,
  ips: readonly IP[],
  hostNetwork: boolean,
  rng: Rng,
): PodKey {
  const key = `${namespace}/${name}` as PodKey;
  podMap.set(key, { key, nodeName: node.name, ips, phase: 'Running', hostNetwork });
  if (emit) podObjects.push(podObject(namespace, name, node, ips, 'Running', hostNetwork, uuid(rng)));
  return key;
}

function nodeObject(np: NodePlan): unknown {
  const spec: Record<string, unknown> = {};
  if (np.podCIDRs.length > 0) {
    spec.podCIDR = np.podCIDRs[0];
    spec.podCIDRs = [...np.podCIDRs];
  }
  if (np.providerID !== null) spec.providerID = np.providerID;
  const annotations: Record<string, string> = {
    'node.alpha.kubernetes.io/ttl': '0',
    'volumes.kubernetes.io/controller-managed-attach-detach': 'true',
  };
  if (np.publicKey !== null) annotations[OWNERSHIP.annotationPublicKey] = np.publicKey;
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { annotations, creationTimestamp: CREATED, labels: { ...np.labels }, name: np.name, resourceVersion: '4242', uid: np.uid },
    spec,
    status: {
      addresses: [...np.addresses.map((a) => ({ address: a.address, type: a.type })), { address: np.name, type: 'Hostname' }],
      capacity: { cpu: '8', memory: '32863748Ki', pods: '250' },
      nodeInfo: { architecture: 'amd64', containerRuntimeVersion: 'containerd://1.7.25-1', kernelVersion: '5.15.0-1079-azure', kubeletVersion: 'v1.31.5', operatingSystem: 'linux' },
    },
  };
}

function podObject(
  namespace: string,
  name: string,
  node: { readonly name: NodeName; readonly addresses: readonly NodeAddress[] },
  ips: readonly IP[],
  phase: string,
  hostNetwork: boolean,
  uid: string,
): unknown {
  const hostIP = node.addresses[0]?.address;
  const spec: Record<string, unknown> = {
    containers: [{ image: 'registry.example.com/app:1.4.2', name: 'app', ports: [{ containerPort: 8080, protocol: 'TCP' }] }],
    nodeName: node.name,
    restartPolicy: 'Always',
  };
  if (hostNetwork) spec.hostNetwork = true;
  const status: Record<string, unknown> = { phase };
  if (hostIP !== undefined) {
    status.hostIP = hostIP;
    status.hostIPs = node.addresses.map((a) => ({ ip: a.address }));
  }
  if (ips.length > 0) {
    status.podIP = ips[0];
    status.podIPs = ips.map((ip) => ({ ip }));
  }
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { creationTimestamp: CREATED, labels: { app: name.slice(0, name.lastIndexOf('-')) }, name, namespace, uid },
    spec,
    status,
  };
}

// ---------------------------------------------------------------------------------------------------
// Serialisation, as kubectl prints a list

/** `kubectl get ... -o json` text: a v1 List, 4-space indent (kubectl's); `indent: 0` for compact text. */
export function toListJson(objects: readonly unknown[], indent = 4): string {
  return JSON.stringify({ apiVersion: 'v1', items: objects, kind: 'List', metadata: { resourceVersion: '' } }, null, indent) + '\n';
}

/** `kubectl get ... -o yaml` text: a v1 List. */
export function toListYaml(objects: readonly unknown[]): string {
  return yamlStringify({ apiVersion: 'v1', items: objects, kind: 'List', metadata: { resourceVersion: '' } });
}

// ---------------------------------------------------------------------------------------------------
// Mutations for tests: each returns a new cluster (snapshot and objects kept in step); the input is untouched.

function isObj(o: unknown, kind: string, name: string, namespace?: string): boolean {
  const x = o as { kind?: string; metadata?: { name?: string; namespace?: string } };
  return x?.kind === kind && x.metadata?.name === name && (namespace === undefined || x.metadata?.namespace === namespace);
}

function splitKey(k: PodKey): [string, string] {
  const i = k.indexOf('/');
  return [k.slice(0, i), k.slice(i + 1)];
}

function requireNode(c: GeneratedCluster, node: NodeName): NodeInfo {
  const n = c.snapshot.nodes.get(node);
  if (!n) throw new Error(`no node ${node} in the generated cluster`);
  return n;
}

/** Adds a Running pod with `ips` on `node`. */
export function addPod(c: GeneratedCluster, node: NodeName, ips: readonly IP[], name?: string, namespace = 'default'): { cluster: GeneratedCluster; pod: PodKey } {
  const n = requireNode(c, node);
  const podName = name ?? `added-${c.snapshot.pods.size}`;
  const key = `${namespace}/${podName}` as PodKey;
  if (c.snapshot.pods.has(key)) throw new Error(`pod ${key} exists already`);
  const pods = new Map(c.snapshot.pods);
  pods.set(key, { key, nodeName: node, ips, phase: 'Running', hostNetwork: false });
  const objects = c.objects.length === 0 ? c.objects : [...c.objects, podObject(namespace, podName, n, ips, 'Running', false, `added-${key}`)];
  return { cluster: { snapshot: { ...c.snapshot, pods }, objects }, pod: key };
}

export function removePod(c: GeneratedCluster, pod: PodKey): GeneratedCluster {
  if (!c.snapshot.pods.has(pod)) throw new Error(`no pod ${pod} in the generated cluster`);
  const pods = new Map(c.snapshot.pods);
  pods.delete(pod);
  const [ns, name] = splitKey(pod);
  const objects = c.objects.filter((o) => !isObj(o, 'Pod', name, ns));
  return { snapshot: { ...c.snapshot, pods }, objects };
}

/** A pod IP moving between nodes: `pod` is deleted and a new pod on `toNode` takes its IPs. */
export function movePodIP(c: GeneratedCluster, pod: PodKey, toNode: NodeName, newName?: string): { cluster: GeneratedCluster; pod: PodKey } {
  const info = c.snapshot.pods.get(pod);
  if (!info) throw new Error(`no pod ${pod} in the generated cluster`);
  const [ns, name] = splitKey(pod);
  return addPod(removePod(c, pod), toNode, info.ips, newName ?? `${name}-moved`, ns);
}

/** Sets (or with null removes) a node's published public key. */
export function setNodeKey(c: GeneratedCluster, node: NodeName, key: WgKey | null): GeneratedCluster {
  const n = requireNode(c, node);
  const nodes = new Map(c.snapshot.nodes);
  nodes.set(node, { ...n, publicKey: key });
  const objects = c.objects.map((o) => {
    if (!isObj(o, 'Node', node)) return o;
    const x = o as { metadata: { annotations?: Record<string, string> } };
    const annotations = { ...(x.metadata.annotations ?? {}) };
    if (key === null) delete annotations[OWNERSHIP.annotationPublicKey];
    else annotations[OWNERSHIP.annotationPublicKey] = key;
    return { ...x, metadata: { ...x.metadata, annotations } };
  });
  return { snapshot: { ...c.snapshot, nodes }, objects };
}

/** The node names in generation order. */
export function nodeNames(c: GeneratedCluster): NodeName[] {
  return [...c.snapshot.nodes.keys()];
}

// ---------------------------------------------------------------------------------------------------
// A fully programmed node

/** The observed state of a node that holds exactly `d` (what the kernel model planner/kernel-model.ts
 *  reaches by executing the plan from EMPTY_OBSERVED; testing/generate.test.ts checks the two agree), built
 *  in O(size) and without executing 560k operations (applyPlan is O(total) now, but slower than this
 *  direct construction; bench/kernel-model.ts checks the two agree at 5,000 x 110). `storedKey`: the key a
 *  device configured with `publicKey: null` carries. */
export function programmedObserved(d: DesiredEnabled, storedKey: WgKey, underlayMtu: number | null = null): ObservedDataplane {
  const peers = new Map<WgKey, ObservedPeer>();
  for (const [k, p] of d.peers) {
    peers.set(k, { publicKey: p.publicKey, endpoint: p.endpoint, allowedIPs: p.allowedIPs, persistentKeepalive: p.persistentKeepalive, latestHandshake: 0, rxBytes: 0, txBytes: 0 });
  }
  const routes = new Map<Cidr, Route>();
  for (const [dest, r] of d.routes) routes.set(dest, r.route);
  return {
    device: {
      name: d.device.name,
      linkKind: 'wireguard',
      mtu: d.device.mtu,
      up: true,
      addresses: d.device.addresses,
      listenPort: d.device.listenPort,
      fwmark: d.device.fwmark,
      publicKey: d.device.publicKey ?? storedKey,
    },
    staleDevices: [],
    conflicts: [],
    peers,
    routes,
    rules: d.rules,
    firewall: d.firewall.map((c) => ({ ...c, hooked: true })),
    sysctls: d.sysctls,
    underlayMtu,
  };
}
