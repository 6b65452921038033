// The domain model shared by core, planner and adapters: cluster snapshot, settings, the desired
// dataplane, the observed dataplane, and the operations of a plan. Pure data: readonly, tagged unions.
import type { Cidr, Family, IP } from './ip.js';
import type { WgKey } from './key.js';

declare const NodeNameBrand: unique symbol;
export type NodeName = string & { readonly [NodeNameBrand]: 'NodeName' };
/** `namespace/name` of a pod. */
export type PodKey = string & { readonly __podKey: true };

// ---------------------------------------------------------------------------------------------------
// Cluster snapshot (decoded from Kubernetes objects at the edge)

export interface NodeAddress {
  readonly type: string; // InternalIP, ExternalIP, ... (only IP-valued addresses are kept)
  readonly address: IP;
}

export interface NodeInfo {
  readonly name: NodeName;
  readonly addresses: readonly NodeAddress[];
  readonly labels: Readonly<Record<string, string>>;
  readonly providerID: string | null;
  /** spec.podCIDRs (or spec.podCIDR when podCIDRs is absent), canonical. */
  readonly podCIDRs: readonly Cidr[];
  /** Annotation wgplane.io/public-key, validated; null when absent or empty. */
  readonly publicKey: WgKey | null;
}

export interface PodInfo {
  readonly key: PodKey;
  readonly nodeName: NodeName | null;
  /** status.podIPs (or status.podIP), canonical, deduplicated. */
  readonly ips: readonly IP[];
  readonly phase: string;
  readonly hostNetwork: boolean;
}

export type HostEncryptionSetting = 'auto' | 'true' | 'false';
export type RouteSourceSetting = 'auto' | 'podCIDR' | 'workloadIPs';

/** Decoded settings (ConfigMap kube-system/wgplane). Every field has a default (see core/settings.ts). */
export interface Settings {
  readonly enabled: boolean;
  readonly hostEncryption: HostEncryptionSetting;
  readonly routeSource: RouteSourceSetting;
  readonly mtu: 'auto' | number;
  readonly listenPort: number;
  readonly interfaceName: string;
  readonly routingTable: number;
  readonly rulePriority: number;
  readonly fwmark: number;
  /** Seconds; 0 = off. */
  readonly persistentKeepalive: number;
  readonly workloadInterfacePrefix: 'auto' | string;
  /** Seconds between full resyncs of the daemon. */
  readonly resyncInterval: number;
}

export interface ClusterSnapshot {
  readonly nodes: ReadonlyMap<NodeName, NodeInfo>;
  readonly pods: ReadonlyMap<PodKey, PodInfo>;
  readonly settings: Settings;
  /** Whether the settings came from a ConfigMap (false: all defaults). */
  readonly settingsFound: boolean;
}

/** Facts about this host that the desired state depends on, gathered by adapters. */
export interface HostFacts {
  /** Smallest MTU of the up underlay interfaces; null when unknown (then 1500 is assumed and said). */
  readonly underlayMtu: number | null;
  /** This node's public key from the key store, if it has one. */
  readonly publicKey: WgKey | null;
  /** Latest handshake per peer key in the kernel (unix seconds, 0 = never; a key not in the map counts as
   *  never). Given by the daemon, absent in the one-shot CLI. With host encryption on, a peer that never
   *  handshaked keeps its node IPs out of the device (throw, cause 'no-handshake'): see core/desired-index.ts. */
  readonly handshakes?: ReadonlyMap<WgKey, number>;
  /** Keepalive given to a peer in bootstrap so that it handshakes at once (default 25 s; 0: none, the
   *  first handshake then waits for traffic). The daemon passes 0 with wireguard-go and many peers:
   *  wireguard-go takes about 0.1-0.4 s per peer to apply a keepalive. */
  readonly bootstrapKeepalive?: number;
}

// ---------------------------------------------------------------------------------------------------
// Why something exists: structured, rendered only when shown (550k routes must not build 550k strings).

export type Origin =
  | { readonly kind: 'pod'; readonly pod: PodKey; readonly node: NodeName }
  | { readonly kind: 'pod-cidr'; readonly node: NodeName }
  | { readonly kind: 'node-ip'; readonly node: NodeName }
  | { readonly kind: 'tunnel-address'; readonly node: NodeName }
  | { readonly kind: 'peer'; readonly node: NodeName }
  | { readonly kind: 'setting'; readonly setting: keyof Settings | 'enabled'; readonly detail?: string }
  | { readonly kind: 'unowned'; readonly detail: string }
  | { readonly kind: 'conflict'; readonly ip: Cidr; readonly nodes: readonly NodeName[] };

/** Why a destination is thrown back to the main table instead of entering the device. */
export type ThrowCause =
  | 'local' // a destination on this node
  | 'no-key' // the node has published no key
  | 'shared-key' // the node shares its key with another node
  | 'no-endpoint' // the node has no usable IP address for an endpoint
  | 'disabled' // the node is labelled wgplane.io/wireguard=disabled
  | 'conflict' // the IP is claimed by two nodes
  | 'no-handshake'; // host encryption: the node's peer has not handshaked yet (its node IPs stay in clear)

// ---------------------------------------------------------------------------------------------------
// Dataplane pieces, shared by desired and observed state

export type Route =
  | { readonly kind: 'device'; readonly dest: Cidr; readonly device: string }
  | { readonly kind: 'throw'; readonly dest: Cidr };

/** `not fwmark MARK/MASK lookup TABLE` at PRIORITY, marked with wgplane's rule protocol. */
export interface Rule {
  readonly family: Family;
  readonly priority: number;
  readonly table: number;
  readonly fwmark: number;
  readonly mask: number;
}

export type FirewallTable = 'filter' | 'raw';
export type FirewallHook = 'INPUT' | 'OUTPUT' | 'PREROUTING';

/** One wgplane-owned iptables chain and the jump into it from a built-in chain. Rules are in
 *  `iptables-save` form without the `-A CHAIN ` prefix, e.g. `-p udp -m udp --dport 51820 -j ACCEPT`. */
export interface FirewallChain {
  readonly family: Family;
  readonly table: FirewallTable;
  readonly name: string; // always starts with WGPLANE-
  readonly hook: FirewallHook;
  readonly rules: readonly string[];
}

export interface Peer {
  readonly publicKey: WgKey;
  readonly endpoint: string | null; // "ip:port" or "[ip6]:port"
  readonly allowedIPs: readonly Cidr[]; // sorted with compareCidr, no duplicates
  readonly persistentKeepalive: number; // 0 = off
}

// ---------------------------------------------------------------------------------------------------
// Desired dataplane

export interface DesiredDevice {
  readonly name: string;
  readonly mtu: number;
  readonly listenPort: number;
  readonly fwmark: number;
  readonly addresses: readonly Cidr[]; // sorted
  readonly publicKey: WgKey | null; // the key the device must carry (from the key store); null = "the stored key"
  /** How the MTU was chosen, for people. */
  readonly mtuReason: string;
}

export interface DesiredPeer extends Peer {
  readonly node: NodeName;
}

export interface DesiredRoute {
  readonly route: Route;
  readonly origin: Origin;
  readonly cause?: ThrowCause; // for throw routes
}

export type Problem =
  | { readonly kind: 'no-key'; readonly node: NodeName }
  | { readonly kind: 'shared-key'; readonly nodes: readonly NodeName[]; readonly key: WgKey }
  | { readonly kind: 'no-endpoint'; readonly node: NodeName }
  | { readonly kind: 'ip-conflict'; readonly ip: Cidr; readonly claimants: readonly string[] }
  | { readonly kind: 'pod-cidr-conflict'; readonly cidr: Cidr; readonly nodes: readonly NodeName[] }
  | { readonly kind: 'pod-without-node'; readonly pod: PodKey }
  | { readonly kind: 'mtu-unknown'; readonly assumed: number };

/** Facts the desired state was derived from, for people and for status. */
export interface DesiredFacts {
  readonly aks: boolean;
  readonly routeSource: 'podCIDR' | 'workloadIPs';
  readonly hostEncryption: boolean;
  readonly workloadInterfacePrefix: string | null;
  readonly families: readonly Family[];
}

export interface DesiredEnabled {
  readonly kind: 'enabled';
  readonly node: NodeName;
  readonly facts: DesiredFacts;
  readonly device: DesiredDevice;
  /** Keyed by public key. */
  readonly peers: ReadonlyMap<WgKey, DesiredPeer>;
  /** Routes of wgplane's table, keyed by destination (both families in one map). */
  readonly table: number;
  readonly routes: ReadonlyMap<Cidr, DesiredRoute>;
  readonly rules: readonly Rule[]; // one per family in use
  readonly firewall: readonly FirewallChain[];
  readonly sysctls: ReadonlyMap<string, string>;
  readonly problems: readonly Problem[];
}

/** WireGuard is off on this node (setting or label): wgplane's state must be removed. */
export interface DesiredDisabled {
  readonly kind: 'disabled';
  readonly node: NodeName;
  readonly why: 'setting' | 'node-label';
  /** The configured names of what wgplane owns, so that their removal can be planned. */
  readonly interfaceName: string;
  readonly table: number;
  readonly problems: readonly Problem[];
}

export type DesiredDataplane = DesiredEnabled | DesiredDisabled;

// ---------------------------------------------------------------------------------------------------
// Observed dataplane (read from the kernel by adapters; produced by the kernel model in tests)

export interface ObservedDevice {
  readonly name: string;
  readonly linkKind: 'wireguard' | 'tun' | 'other';
  readonly mtu: number;
  readonly up: boolean;
  readonly addresses: readonly Cidr[];
  readonly listenPort: number | null;
  readonly fwmark: number;
  readonly publicKey: WgKey | null; // never the private key
}

export interface ObservedPeer extends Peer {
  readonly latestHandshake: number; // unix seconds, 0 = never
  readonly rxBytes: number;
  readonly txBytes: number;
}

export interface ObservedDataplane {
  /** wgplane's device (the configured name, if it is wgplane's), or null. */
  readonly device: ObservedDevice | null;
  /** Other links carrying wgplane's ownership mark (an old interfaceName): to be deleted. */
  readonly staleDevices: readonly string[];
  /** Something that is not wgplane's holds the configured name: nothing may be done. */
  readonly conflicts: readonly string[];
  readonly peers: ReadonlyMap<WgKey, ObservedPeer>;
  /** All routes of wgplane's table (both families). */
  readonly routes: ReadonlyMap<Cidr, Route>;
  /** Rules carrying wgplane's rule protocol. */
  readonly rules: readonly Rule[];
  /** wgplane's chains (WGPLANE-*) with their rules; `hooked` tells whether the jump exists. */
  readonly firewall: readonly (FirewallChain & { readonly hooked: boolean })[];
  readonly sysctls: ReadonlyMap<string, string>;
  readonly underlayMtu: number | null;
}

// ---------------------------------------------------------------------------------------------------
// Operations of a plan. Each carries why it exists. Keys in operations are public keys only.

/** An allowed IP that an operation takes from another peer in the kernel (a pod IP moving between
 *  nodes, or a node's key changing): recorded for people; the kernel moves it by itself. */
export interface AllowedIPMove {
  readonly allowedIP: Cidr;
  readonly from: WgKey;
}

export type Operation =
  | { readonly kind: 'sysctl-set'; readonly key: string; readonly value: string; readonly from: string | null; readonly origin: Origin }
  | { readonly kind: 'link-create'; readonly name: string; readonly mtu: number; readonly origin: Origin }
  | { readonly kind: 'link-set-mtu'; readonly name: string; readonly mtu: number; readonly from: number; readonly origin: Origin }
  | { readonly kind: 'link-set-up'; readonly name: string; readonly origin: Origin }
  | { readonly kind: 'link-delete'; readonly name: string; readonly peers: number; readonly origin: Origin }
  | { readonly kind: 'address-add'; readonly device: string; readonly address: Cidr; readonly origin: Origin }
  | { readonly kind: 'address-delete'; readonly device: string; readonly address: Cidr; readonly origin: Origin }
  /** Set the device's private key (from the key store, never in the plan), listen port and fwmark. */
  | { readonly kind: 'device-configure'; readonly device: string; readonly listenPort: number; readonly fwmark: number; readonly publicKey: WgKey | null; readonly origin: Origin }
  | { readonly kind: 'peer-add'; readonly device: string; readonly peer: DesiredPeer; readonly origin: Origin; readonly moves?: readonly AllowedIPMove[] }
  /** Changes a peer in place: endpoint/keepalive, allowed IPs added (an IP added here moves from any
   *  other peer in the kernel) and allowed IPs removed without disturbing the peer's other IPs. */
  | {
      readonly kind: 'peer-update';
      readonly device: string;
      readonly publicKey: WgKey;
      readonly node: NodeName | null;
      readonly endpoint?: string | null;
      readonly persistentKeepalive?: number;
      readonly addAllowedIPs: readonly Cidr[];
      readonly removeAllowedIPs: readonly Cidr[];
      readonly origin: Origin;
      readonly moves?: readonly AllowedIPMove[];
    }
  | { readonly kind: 'peer-remove'; readonly device: string; readonly publicKey: WgKey; readonly node: NodeName | null; readonly origin: Origin }
  | { readonly kind: 'route-add'; readonly table: number; readonly route: Route; readonly origin: Origin; readonly cause?: ThrowCause }
  | { readonly kind: 'route-replace'; readonly table: number; readonly route: Route; readonly from: Route; readonly origin: Origin; readonly cause?: ThrowCause }
  | { readonly kind: 'route-delete'; readonly table: number; readonly route: Route; readonly origin: Origin }
  /** Delete every route of wgplane's table of one family (tear-down). */
  | { readonly kind: 'table-flush'; readonly table: number; readonly family: Family; readonly routes: number; readonly origin: Origin }
  | { readonly kind: 'rule-add'; readonly rule: Rule; readonly origin: Origin }
  | { readonly kind: 'rule-delete'; readonly rule: Rule; readonly origin: Origin }
  /** Make one wgplane chain hold exactly `chain.rules` and be hooked from `chain.hook` (remove = false), or
   *  remove the jump and the chain (remove = true). `hooked`: whether the jump exists now (observed). */
  | { readonly kind: 'firewall-chain'; readonly chain: FirewallChain; readonly remove: boolean; readonly hooked: boolean; readonly origin: Origin };

export type OperationKind = Operation['kind'];

export interface Plan {
  readonly node: NodeName;
  readonly ops: readonly Operation[];
  /** Problems found while deriving the desired state (shown as warnings). */
  readonly problems: readonly Problem[];
  /** Set when nothing may be done (e.g. the device name is held by something else). */
  readonly blocked: readonly string[];
}

/** Constants of ownership. */
export const OWNERSHIP = {
  /** Rule protocol number stamped on wgplane's ip rules (`ip rule ... protocol 98`). */
  ruleProtocol: 98,
  /** ifalias stamped on wgplane's WireGuard device. */
  linkAlias: 'wgplane',
  chainPrefix: 'WGPLANE-',
  annotationPublicKey: 'wgplane.io/public-key',
  labelWireguard: 'wgplane.io/wireguard',
  settingsNamespace: 'kube-system',
  settingsName: 'wgplane',
} as const;

// Sysctl keys. Global ones are written the usual way (`net.ipv4.conf.all.src_valid_mark`); a sysctl of
// one device is keyed by its path under /proc/sys (`net/ipv4/conf/wireguard.wgp/rp_filter`), since
// interface names may hold dots. `sysctl -w` takes both forms; it exists only while the device does.

/** The key of sysctl `leaf` of device `device` (IPv4 `conf`). */
export function deviceSysctlKey(device: string, leaf: string): string {
  return `net/ipv4/conf/${device}/${leaf}`;
}

/** The device a sysctl key belongs to, or null for a global one. */
export function sysctlDevice(key: string): string | null {
  const m = /^net\/ipv[46]\/conf\/([^/]+)\/[^/]+$/.exec(key);
  return m === null ? null : m[1]!;
}

/** The file of a sysctl key under the sysctl root (/proc/sys). */
export function sysctlPath(root: string, key: string): string {
  return `${root}/${key.includes('/') ? key : key.replaceAll('.', '/')}`;
}

/** The observed state of a node where wgplane has never run (for `--observed empty`). */
export const EMPTY_OBSERVED: ObservedDataplane = {
  device: null,
  staleDevices: [],
  conflicts: [],
  peers: new Map(),
  routes: new Map(),
  rules: [],
  firewall: [],
  sysctls: new Map(),
  underlayMtu: null,
};
