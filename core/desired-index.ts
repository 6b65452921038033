// The desired dataplane as an index of per-node contributions and IP claims, so that one pod event turns
// into a handful of changed routes and peers without recomputing the cluster. Pure: no I/O, no clock.
//
// OWNERSHIP AND MUTATION: a DesiredIndex is a mutable structure owned by exactly one caller (the daemon,
// or `desired` which builds one and hands out a view). `applyPodChange` updates it in place, in time
// proportional to the pod's IPs, and returns the keys of the routes and peers that changed. The objects
// it stores (DesiredRoute, DesiredPeer, Origin) are immutable and replaced, never edited, so a caller may
// keep references to them; the Maps of a view from `desiredOf` are the index's own and follow it.
// Node events and settings changes are not incremental: rebuild with `buildDesiredIndex`. A peer's first
// handshake (host-encryption start-up safety, below) is incremental: `applyHandshakeChange`.
//
// HOST-ENCRYPTION START-UP SAFETY (the bootstrap deadlock of FIELD-NOTES). Host traffic (kubelet to an API
// server on another node, node to node) must never depend on a peer that cannot decrypt us yet: if A
// encrypts to B before B knows A's key, B drops A's packets, and if the API server sits behind that path B
// never learns A's key. So, when host encryption is on and the caller gives the peers' handshakes
// (HostFacts.handshakes: the daemon does, the one-shot CLI does not and behaves as before), a peer that has
// never handshaked with its current key keeps:
//   - its pod destinations routed into the device (pod traffic never falls back to clear text);
//   - its node IPs as `throw` (cause 'no-handshake'): host traffic to it stays in clear, through the main
//     table, until the first handshake proves the peer can decrypt us. The node IPs stay in the peer's
//     allowed IPs, so encrypted host traffic from a peer that is already past its handshake is accepted;
//   - persistentKeepalive 25 (BOOTSTRAP_KEEPALIVE): setting a keepalive makes WireGuard handshake at once
//     and retry, so the gate opens as soon as both sides know each other's key; the configured keepalive
//     applies after the first handshake.
// A restarting agent whose peers have handshaked keeps every route as it is (no gate, no change).
//
// THE BULK BUILD. buildDesiredIndex collects every IPv4 /32 claim (pod IPs, node IPs) as a packed number
// (address * 2^21 + sequence), sorts them once, and walks them in address order: a destination claimed
// once (the common case) is one Map insertion and no lookup, claims on one address are adjacent (conflicts
// are found there, and only those take the general path, in their original order), routes are inserted in
// address order (so the planner finds them sorted) and each peer's allowed IPs come out sorted. Pod IPs
// inside their own node's pod CIDR (pod-CIDR mode: nearly all of them) make no route: their claims are kept
// as a list and put into the claims map only when the index first changes (`pending`), so that `desired`
// for the CLI never builds 550k map entries it does not need.
import * as E from 'fp-ts/lib/Either.js';
import { detectAks, workloadInterfacePrefix } from './aks.js';
import { compareCidr, cidrContains, familyOf, hostCidr, ipv4TextNumber, networkHostCidr, type Cidr, type Family, type IP } from './ip.js';
import type { WgKey } from './key.js';
import {
  OWNERSHIP,
  deviceSysctlKey,
  type ClusterSnapshot,
  type DesiredDevice,
  type DesiredDisabled,
  type DesiredEnabled,
  type DesiredFacts,
  type DesiredPeer,
  type DesiredRoute,
  type FirewallChain,
  type HostFacts,
  type NodeInfo,
  type NodeName,
  type Origin,
  type PodInfo,
  type PodKey,
  type Problem,
  type Rule,
  type Settings,
  type ThrowCause,
} from './model.js';
import { chooseMtu } from './mtu.js';
import { RouteTable } from './route-table.js';

export type DesiredError =
  | { readonly kind: 'node-not-found'; readonly message: string }
  | { readonly kind: 'settings'; readonly message: string };

/** The origin of a claim on a destination: a pod, a node's pod CIDR, or a node's own address. */
export type ClaimOrigin = Extract<Origin, { readonly kind: 'pod' | 'pod-cidr' | 'node-ip' }>;
/** A pod IP inside its own node's pod CIDR: no route of its own, but kept to see conflicts. */
export interface CoveredClaim {
  readonly kind: 'covered';
  readonly origin: ClaimOrigin;
}
export type Claim = ClaimOrigin | CoveredClaim;
/** One claim (the common case, no allocation) or several (an array owned by the index). */
export type ClaimEntry = Claim | Claim[];

export type NodeStatus =
  | { readonly kind: 'local' }
  /** `bootstrap`: host-encryption gate closed, no handshake yet (see the header). */
  | { readonly kind: 'peer'; readonly publicKey: WgKey; readonly endpoint: string; readonly bootstrap: boolean }
  | { readonly kind: 'throw'; readonly cause: ThrowCause };

/** persistentKeepalive of a peer that has not handshaked yet while the host-encryption gate is on. */
export const BOOTSTRAP_KEEPALIVE = 25;

export interface NodeState {
  readonly info: NodeInfo;
  /** Replaced (never edited) by applyHandshakeChange. */
  status: NodeStatus;
  /** IPv4 pod CIDRs as [network, mask] pairs (pod-CIDR mode only). */
  readonly v4Blocks: readonly number[];
  readonly v6Blocks: readonly Cidr[];
  /** The peer's allowed IPs, unsorted: destinations routed into this node's peer, and its node IPs held
   *  back by the handshake gate (peers only; mutated by the index). */
  allowed: Cidr[] | null;
  /** `allowed` is also the allowedIPs array of the built peer: copy before mutating. */
  allowedShared: boolean;
}

/** Covered pod claims not yet in the claims map (see "The bulk build" in the header). */
interface PendingCovered {
  readonly ips: IP[];
  readonly pods: PodInfo[];
}

export interface DesiredIndex {
  readonly kind: 'index';
  readonly node: NodeName;
  readonly settings: Settings;
  readonly facts: Omit<DesiredFacts, 'families'>;
  readonly device: DesiredDevice;
  readonly nodes: ReadonlyMap<NodeName, NodeState>;
  /** Claims not readable off the route (several claims, covered pod IPs); see "Claims and routes". */
  readonly extra: Map<Cidr, ClaimEntry>;
  /** IPv4 /32 routes of the bulk build in sorted arrays, the rest in a Map (core/route-table.ts). */
  readonly routes: RouteTable;
  readonly peers: Map<WgKey, DesiredPeer>;
  /** Destinations claimed by more than one node. */
  readonly conflicts: Set<Cidr>;
  readonly podsWithoutNode: Set<PodKey>;
  /** Problems fixed at build time (node keys and endpoints, MTU), sorted. */
  readonly staticProblems: readonly Problem[];
  /** Families of this node's own addresses. */
  readonly selfFamilies: readonly Family[];
  /** Number of routes per family: [IPv4, IPv6]. */
  readonly routeFamilies: [number, number];
  /** Host encryption is on and the handshakes were given: the handshake gate applies (see the header). */
  readonly handshakeGate: boolean;
  /** Keepalive of a peer in bootstrap (HostFacts.bootstrapKeepalive, default BOOTSTRAP_KEEPALIVE). */
  readonly bootstrapKeepalive: number;
  /** Covered pod claims not yet in `extra` (null once materialized). */
  pending: PendingCovered | null;
}

/** What one event changed: route keys (set or removed), peer keys (rebuilt), and whether problems changed.
 *  Feed `routes` and `peers` to planScoped. */
export interface PodChange {
  readonly index: DesiredIndex;
  readonly routes: readonly Cidr[];
  readonly peers: readonly WgKey[];
  readonly problems: boolean;
}
export type IndexChange = PodChange;

export const DISABLED_LABEL_VALUE = 'disabled';

export function isNodeDisabled(n: NodeInfo): boolean {
  return n.labels[OWNERSHIP.labelWireguard] === DISABLED_LABEL_VALUE;
}

/** Pods that take part: not hostNetwork, with IPs, Running or Pending (a Pending pod with an IP is starting). */
export function podCounts(p: PodInfo): boolean {
  return !p.hostNetwork && p.ips.length > 0 && (p.phase === 'Running' || p.phase === 'Pending');
}

// ---------------------------------------------------------------------------------------------------
// Fast helpers on canonical strings (inputs are already validated and canonical).

function v6SortKey(c: string): string {
  const slash = c.indexOf('/');
  const addr = c.slice(0, slash);
  const dbl = addr.indexOf('::');
  let groups: string[];
  if (dbl < 0) groups = addr.split(':');
  else {
    const l = dbl === 0 ? [] : addr.slice(0, dbl).split(':');
    const r = dbl + 2 >= addr.length ? [] : addr.slice(dbl + 2).split(':');
    groups = [...l, ...new Array<string>(8 - l.length - r.length).fill('0'), ...r];
  }
  let key = '';
  for (const g of groups) key += g.padStart(4, '0');
  return key + c.slice(slash + 1).padStart(3, '0');
}

function prefixLen(c: string, slash: number): number {
  let n = 0;
  for (let i = slash + 1; i < c.length; i++) n = n * 10 + (c.charCodeAt(i) - 48);
  return n;
}

/** Sorts CIDRs in compareCidr order with one parse per element (numeric keys for IPv4). */
export function sortCidrs(cidrs: Iterable<Cidr>): Cidr[] {
  const v4: Cidr[] = [];
  const v6: Cidr[] = [];
  for (const c of cidrs) (c.includes(':') ? v6 : v4).push(c);
  const out: Cidr[] = [];
  if (v4.length > 0) {
    // One typed-array sort of (address * 64 + prefix length) * 2^15 + index: exact in a double.
    const n = v4.length;
    if (n <= 32768) {
      const keys = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const c = v4[i]!;
        const slash = c.indexOf('/');
        keys[i] = (ipv4TextNumber(c, slash) * 64 + prefixLen(c, slash)) * 32768 + i;
      }
      keys.sort();
      for (let i = 0; i < n; i++) out.push(v4[keys[i]! % 32768]!);
    } else {
      const keyed = v4.map((c) => {
        const slash = c.indexOf('/');
        return [ipv4TextNumber(c, slash) * 64 + Number(c.slice(slash + 1)), c] as const;
      });
      keyed.sort((x, y) => x[0] - y[0]);
      for (const [, c] of keyed) out.push(c);
    }
  }
  if (v6.length > 0) {
    const keyed = v6.map((c) => [v6SortKey(c), c] as const);
    keyed.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    for (const [, c] of keyed) out.push(c);
  }
  return out;
}

function endpointOf(ip: IP, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

function firstInternal(n: NodeInfo): IP | null {
  for (const a of n.addresses) if (a.type === 'InternalIP') return a.address;
  return null;
}

/** This node's endpoint address: first InternalIP, else first ExternalIP. */
function ownEndpointIP(n: NodeInfo): IP | null {
  const i = firstInternal(n);
  if (i !== null) return i;
  for (const a of n.addresses) if (a.type === 'ExternalIP') return a.address;
  return null;
}

/** A remote node's endpoint: first InternalIP of our family, else any InternalIP, else an ExternalIP. */
export function pickEndpointIP(remote: NodeInfo, family: Family | null): IP | null {
  let anyInternal: IP | null = null;
  let external: IP | null = null;
  for (const a of remote.addresses) {
    if (a.type === 'InternalIP') {
      if (family !== null && familyOf(a.address) === family) return a.address;
      anyInternal ??= a.address;
    } else if (a.type === 'ExternalIP') external ??= a.address;
  }
  return anyInternal ?? external;
}

// ---------------------------------------------------------------------------------------------------
// Claims and routes. The claims on a destination are kept where they cost least: a single claim that
// makes a route is that route's origin (no second map entry for the common case); anything else
// (several claims, a covered pod IP) sits in `extra`. Invariant: extra.has(k), or the claims of k are
// exactly [routes.get(k).origin], or k has no claim.

function claimOrigin(c: Claim): ClaimOrigin {
  return c.kind === 'covered' ? c.origin : c;
}

function isPodClaimOf(c: Claim, pod: PodKey): boolean {
  const o = claimOrigin(c);
  return o.kind === 'pod' && o.pod === pod;
}

function entryOf(ix: DesiredIndex, k: Cidr, old: DesiredRoute | undefined): ClaimEntry | undefined {
  const x = ix.extra.size === 0 ? undefined : ix.extra.get(k);
  if (x !== undefined) return x;
  return old === undefined ? undefined : (old.origin as ClaimOrigin);
}

/** The claims on k (for problems and tests). */
export function claimsOf(ix: DesiredIndex, k: Cidr): readonly Claim[] {
  materialize(ix);
  const e = entryOf(ix, k, ix.routes.get(k));
  return e === undefined ? [] : Array.isArray(e) ? e : [e];
}

const RANK: Record<ClaimOrigin['kind'], number> = { 'pod-cidr': 0, 'node-ip': 1, pod: 2 };

function betterOrigin(a: ClaimOrigin, b: ClaimOrigin): boolean {
  if (a.kind !== b.kind) return RANK[a.kind] < RANK[b.kind];
  return a.kind === 'pod' && b.kind === 'pod' ? a.pod < b.pod : false;
}

function conflictNodes(e: ClaimEntry): NodeName[] | null {
  if (!Array.isArray(e)) return null;
  const first = claimOrigin(e[0]!).node;
  let nodes: NodeName[] | null = null;
  for (const c of e) {
    const n = claimOrigin(c).node;
    if (n !== first) {
      nodes ??= [first];
      if (!nodes.includes(n)) nodes.push(n);
    }
  }
  return nodes === null ? null : nodes.sort();
}

function routeOf(ix: DesiredIndex, k: Cidr, origin: ClaimOrigin, st: NodeState): DesiredRoute {
  const status = st.status;
  switch (status.kind) {
    case 'peer':
      if (status.bootstrap && origin.kind === 'node-ip') return { route: { kind: 'throw', dest: k }, origin, cause: 'no-handshake' };
      return { route: { kind: 'device', dest: k, device: ix.settings.interfaceName }, origin };
    case 'local':
      return { route: { kind: 'throw', dest: k }, origin, cause: 'local' };
    case 'throw':
      return { route: { kind: 'throw', dest: k }, origin, cause: status.cause };
  }
}

function routeFor(ix: DesiredIndex, k: Cidr, e: ClaimEntry): DesiredRoute | undefined {
  let origin: ClaimOrigin | null = null;
  if (!Array.isArray(e)) origin = e.kind === 'covered' ? null : e;
  else {
    const nodes = conflictNodes(e);
    if (nodes !== null) return { route: { kind: 'throw', dest: k }, origin: { kind: 'conflict', ip: k, nodes }, cause: 'conflict' };
    for (const c of e) if (c.kind !== 'covered' && (origin === null || betterOrigin(c, origin))) origin = c;
  }
  return origin === null ? undefined : routeOf(ix, k, origin, ix.nodes.get(origin.node)!);
}

function sameOrigin(a: Origin, b: Origin): boolean {
  if (a === b) return true;
  if (a.kind !== b.kind) return false;
  if (a.kind === 'pod' && b.kind === 'pod') return a.pod === b.pod && a.node === b.node;
  if (a.kind === 'conflict' && b.kind === 'conflict') return a.ip === b.ip && a.nodes.join(',') === b.nodes.join(',');
  return 'node' in a && 'node' in b && a.node === b.node;
}

/** Same route, cause and origin (by content). */
export function sameRoute(a: DesiredRoute | undefined, b: DesiredRoute | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.route.kind === b.route.kind && a.route.dest === b.route.dest && a.cause === b.cause && sameOrigin(a.origin, b.origin);
}

/** The node whose peer lists k among its allowed IPs: routed into the device, or held back by the gate. */
function allowedOwner(r: DesiredRoute): NodeName | null {
  if (r.route.kind === 'throw' && r.cause !== 'no-handshake') return null;
  return r.origin.kind !== 'conflict' && 'node' in r.origin ? r.origin.node : null;
}

function mutableAllowed(st: NodeState): Cidr[] {
  if (st.allowedShared) { st.allowed = st.allowed!.slice(); st.allowedShared = false; }
  return st.allowed!;
}

function removeAllowed(st: NodeState, k: Cidr): void {
  const a = mutableAllowed(st);
  const i = a.indexOf(k);
  if (i < 0) return;
  a[i] = a[a.length - 1]!;
  a.pop();
}

/** Moves the route of k from `old` to `next`, keeping allowed IPs, conflicts and family counts in step. */
function applyRoute(ix: DesiredIndex, k: Cidr, old: DesiredRoute | undefined, next: DesiredRoute | undefined, st: NodeState | null, dirty: Set<NodeName> | null): void {
  if (sameRoute(old, next)) return;
  const fam = k.includes(':') ? 1 : 0;
  const sameOwner = old !== undefined && next !== undefined && allowedOwner(old) === allowedOwner(next);
  if (old !== undefined) {
    const owner = sameOwner ? null : allowedOwner(old);
    if (owner !== null) { removeAllowed(ix.nodes.get(owner)!, k); dirty?.add(owner); }
    if (old.origin.kind === 'conflict') ix.conflicts.delete(k);
    ix.routeFamilies[fam]--;
  }
  if (next === undefined) ix.routes.delete(k);
  else {
    ix.routes.set(k, next);
    const owner = sameOwner ? null : allowedOwner(next);
    if (owner !== null) {
      mutableAllowed(st !== null && st.info.name === owner ? st : ix.nodes.get(owner)!).push(k);
      dirty?.add(owner);
    }
    if (next.origin.kind === 'conflict') ix.conflicts.add(k);
    ix.routeFamilies[fam]++;
  }
}

/** Stores the claims of k and moves its route to match. */
function store(ix: DesiredIndex, k: Cidr, old: DesiredRoute | undefined, e: ClaimEntry | undefined, dirty: Set<NodeName> | null): void {
  if (e === undefined || (!Array.isArray(e) && e.kind !== 'covered')) { if (ix.extra.size > 0) ix.extra.delete(k); }
  else ix.extra.set(k, e);
  applyRoute(ix, k, old, e === undefined ? undefined : routeFor(ix, k, e), null, dirty);
}

/** Adds claim c (of node st) on k. */
function claimKey(ix: DesiredIndex, k: Cidr, c: Claim, st: NodeState, dirty: Set<NodeName> | null): void {
  const old = ix.routes.get(k);
  const e = entryOf(ix, k, old);
  if (e === undefined) {
    // The common case: the first claim on k.
    if (c.kind === 'covered') ix.extra.set(k, c);
    else applyRoute(ix, k, undefined, routeOf(ix, k, c, st), st, dirty);
    return;
  }
  if (Array.isArray(e)) {
    if (e.includes(c)) return;
    e.push(c);
    store(ix, k, old, e, dirty);
  } else if (e !== c) store(ix, k, old, [e, c], dirty);
}

/** Removes pod's claim on k. */
function unclaimKey(ix: DesiredIndex, k: Cidr, pod: PodKey, dirty: Set<NodeName> | null): void {
  const old = ix.routes.get(k);
  const e = entryOf(ix, k, old);
  if (e === undefined) return;
  if (!Array.isArray(e)) {
    if (isPodClaimOf(e, pod)) store(ix, k, old, undefined, dirty);
    return;
  }
  const i = e.findIndex((c) => isPodClaimOf(c, pod));
  if (i < 0) return;
  e.splice(i, 1);
  store(ix, k, old, e.length === 0 ? undefined : e.length === 1 ? e[0]! : e, dirty);
}

function inBlocks(st: NodeState, ip: IP): boolean {
  if (ip.includes(':')) {
    for (const b of st.v6Blocks) if (cidrContains(b, ip)) return true;
    return false;
  }
  const b = st.v4Blocks;
  if (b.length === 0) return false;
  const n = ipv4TextNumber(ip, ip.length);
  for (let i = 0; i < b.length; i += 2) if (((n & b[i + 1]!) >>> 0) === b[i]) return true;
  return false;
}

function addPod(ix: DesiredIndex, p: PodInfo, dirty: Set<NodeName> | null): void {
  if (!podCounts(p)) return;
  if (p.nodeName === null) { ix.podsWithoutNode.add(p.key); return; }
  const st = ix.nodes.get(p.nodeName);
  if (st === undefined) return; // a node not (yet) in the snapshot: a node event rebuilds the index
  const origin: ClaimOrigin = { kind: 'pod', pod: p.key, node: p.nodeName };
  const podCidrMode = ix.facts.routeSource === 'podCIDR';
  let covered: CoveredClaim | null = null;
  for (const ip of p.ips) {
    const claim: Claim = podCidrMode && inBlocks(st, ip) ? (covered ??= { kind: 'covered', origin }) : origin;
    claimKey(ix, hostCidr(ip), claim, st, dirty);
  }
}

function removePod(ix: DesiredIndex, p: PodInfo, dirty: Set<NodeName> | null): void {
  if (!podCounts(p)) return;
  if (p.nodeName === null) { ix.podsWithoutNode.delete(p.key); return; }
  for (const ip of p.ips) unclaimKey(ix, hostCidr(ip), p.key, dirty);
}

function buildPeer(ix: DesiredIndex, st: NodeState, sorted: readonly Cidr[] | null = null): DesiredPeer | null {
  if (st.status.kind !== 'peer') return null;
  return {
    node: st.info.name,
    publicKey: st.status.publicKey,
    endpoint: st.status.endpoint,
    allowedIPs: sorted ?? sortCidrs(st.allowed!),
    persistentKeepalive: st.status.bootstrap && ix.bootstrapKeepalive > 0 ? ix.bootstrapKeepalive : ix.settings.persistentKeepalive,
  };
}

/** Makes the index ready for events: puts the covered pod claims of the bulk build into the claims map
 *  (pod-CIDR mode: one entry per pod IP, about 0.3 s at 550k pods). The first event does it otherwise; the
 *  daemon calls this right after building, off the event path, to keep the first event fast. Idempotent. */
export function prepareForEvents(ix: DesiredIndex): void {
  materialize(ix);
}

/** Puts the covered pod claims of the bulk build into the claims map (once, before the first change). */
function materialize(ix: DesiredIndex): void {
  const p = ix.pending;
  if (p === null) return;
  ix.pending = null;
  let last: PodInfo | null = null;
  let claim: CoveredClaim | null = null;
  for (let i = 0; i < p.ips.length; i++) {
    const pod = p.pods[i]!;
    if (pod !== last) { last = pod; claim = { kind: 'covered', origin: { kind: 'pod', pod: pod.key, node: pod.nodeName! } }; }
    ix.extra.set(hostCidr(p.ips[i]!), claim!);
  }
}

// ---------------------------------------------------------------------------------------------------
// Building

function settingsError(message: string): E.Either<DesiredError, never> {
  return E.left({ kind: 'settings', message });
}

function disabled(node: NodeName, why: DesiredDisabled['why'], s: Settings): DesiredDisabled {
  return { kind: 'disabled', node, why, interfaceName: s.interfaceName, table: s.routingTable, problems: [] };
}

function blocksOf(cidrs: readonly Cidr[]): { v4: number[]; v6: Cidr[] } {
  const v4: number[] = [];
  const v6: Cidr[] = [];
  for (const c of cidrs) {
    const slash = c.indexOf('/');
    if (c.includes(':')) { v6.push(c); continue; }
    const len = Number(c.slice(slash + 1));
    v4.push(ipv4TextNumber(c, slash), len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);
  }
  return { v4, v6 };
}

/** Builds the index of node `nodeName` (or says why WireGuard is off on it). O(nodes + pods). */
export function buildDesiredIndex(
  snapshot: ClusterSnapshot,
  nodeName: NodeName,
  host: HostFacts,
): E.Either<DesiredError, DesiredIndex | DesiredDisabled> {
  const s = snapshot.settings;
  const self = snapshot.nodes.get(nodeName);
  if (self === undefined) {
    return E.left({ kind: 'node-not-found', message: `node "${nodeName}" is not in the snapshot (it has ${snapshot.nodes.size} nodes)` });
  }
  if (!s.enabled) return E.right(disabled(nodeName, 'setting', s));
  if (isNodeDisabled(self)) return E.right(disabled(nodeName, 'node-label', s));
  if (s.fwmark === 0) return settingsError('settings: fwmark must not be 0 (the rule "not fwmark 0/0" would match nothing)');

  const aks = detectAks(snapshot.nodes.values());
  let anyPodCidr = false;
  for (const n of snapshot.nodes.values()) if (n.podCIDRs.length > 0) { anyPodCidr = true; break; }
  const routeSource = s.routeSource === 'auto' ? (anyPodCidr ? 'podCIDR' : 'workloadIPs') : s.routeSource;
  const hostEncryption = s.hostEncryption === 'auto' ? aks && routeSource === 'workloadIPs' : s.hostEncryption === 'true';
  const prefix = workloadInterfacePrefix(s.workloadInterfacePrefix, { aks });
  if (hostEncryption && prefix === null) {
    return settingsError(
      'settings: hostEncryption is on but workloadInterfacePrefix is "auto" and this is not an AKS cluster: ' +
        'set workloadInterfacePrefix to the prefix of the pod host interfaces (for example "cali" or "veth"), ' +
        'or the raw PREROUTING marking would mark pod traffic',
    );
  }

  // Keys: nodes sharing one (or holding ours) cannot be peered.
  const owners = new Map<WgKey, NodeName[]>();
  for (const n of snapshot.nodes.values()) {
    if (n.publicKey === null || isNodeDisabled(n)) continue;
    const o = owners.get(n.publicKey);
    if (o === undefined) owners.set(n.publicKey, [n.name]);
    else o.push(n.name);
  }
  if (host.publicKey !== null) {
    const o = owners.get(host.publicKey);
    if (o !== undefined && !o.includes(nodeName)) o.push(nodeName);
  }

  const problems: Problem[] = [];
  for (const [key, o] of owners) if (o.length > 1) problems.push({ kind: 'shared-key', nodes: [...o].sort(), key });

  const selfFamilyIP = firstInternal(self);
  const selfFamily = selfFamilyIP === null ? null : familyOf(selfFamilyIP);
  const ownEp = ownEndpointIP(self);
  let ipv6Endpoint = ownEp !== null && familyOf(ownEp) === 6;

  const handshakeGate = hostEncryption && host.handshakes !== undefined;
  const nodes = new Map<NodeName, NodeState>();
  for (const n of snapshot.nodes.values()) {
    let status: NodeStatus;
    if (n.name === nodeName) status = { kind: 'local' };
    else if (isNodeDisabled(n)) status = { kind: 'throw', cause: 'disabled' };
    else if (n.publicKey === null) { status = { kind: 'throw', cause: 'no-key' }; problems.push({ kind: 'no-key', node: n.name }); }
    else if (owners.get(n.publicKey)!.length > 1) status = { kind: 'throw', cause: 'shared-key' };
    else {
      const ep = pickEndpointIP(n, selfFamily);
      if (ep === null) { status = { kind: 'throw', cause: 'no-endpoint' }; problems.push({ kind: 'no-endpoint', node: n.name }); }
      else {
        const bootstrap = handshakeGate && (host.handshakes!.get(n.publicKey) ?? 0) === 0;
        status = { kind: 'peer', publicKey: n.publicKey, endpoint: endpointOf(ep, s.listenPort), bootstrap };
        if (familyOf(ep) === 6) ipv6Endpoint = true;
      }
    }
    const blocks = routeSource === 'podCIDR' ? blocksOf(n.podCIDRs) : { v4: [], v6: [] };
    nodes.set(n.name, { info: n, status, v4Blocks: blocks.v4, v6Blocks: blocks.v6, allowed: status.kind === 'peer' ? [] : null, allowedShared: false });
  }

  const mtu = chooseMtu({ setting: s.mtu, underlayMtu: host.underlayMtu, ipv6Endpoint, aks, hostEncryption });
  if (mtu.problem !== null) problems.push(mtu.problem);

  const selfAddrs = new Set<Cidr>();
  if (hostEncryption) { for (const a of self.addresses) if (a.type === 'InternalIP') selfAddrs.add(hostCidr(a.address)); }
  else if (routeSource === 'podCIDR') for (const c of self.podCIDRs) selfAddrs.add(networkHostCidr(c));
  const device: DesiredDevice = {
    name: s.interfaceName,
    mtu: mtu.mtu,
    listenPort: s.listenPort,
    fwmark: s.fwmark,
    addresses: [...selfAddrs].sort(compareCidr),
    publicKey: host.publicKey,
    mtuReason: mtu.reason,
  };

  const selfFamilies = new Set<Family>();
  for (const a of self.addresses) selfFamilies.add(familyOf(a.address));
  for (const a of selfAddrs) selfFamilies.add(familyOf(a));

  const ix: DesiredIndex = {
    kind: 'index',
    node: nodeName,
    settings: s,
    facts: { aks, routeSource, hostEncryption, workloadInterfacePrefix: prefix },
    device,
    nodes,
    extra: new Map(),
    routes: new RouteTable(),
    peers: new Map(),
    conflicts: new Set(),
    podsWithoutNode: new Set(),
    staticProblems: problems.sort(compareProblems),
    selfFamilies: [...selfFamilies].sort(),
    routeFamilies: [0, 0],
    handshakeGate,
    bootstrapKeepalive: host.bootstrapKeepalive ?? BOOTSTRAP_KEEPALIVE,
    pending: null,
  };

  const dirty = bulkClaims(ix, snapshot);
  for (const name of [...nodes.keys()].sort()) {
    const st = nodes.get(name)!;
    if (st.status.kind !== 'peer') continue;
    // allowed lists only the bulk walk touched are in order already: share them with the peer
    const sorted = dirty.has(name) ? null : st.allowed!;
    if (sorted !== null) st.allowedShared = true;
    const peer = buildPeer(ix, st, sorted)!;
    ix.peers.set(peer.publicKey, peer);
  }
  return E.right(ix);
}

/** Stable LSD radix sort (two passes of 16 bits) of the indices 0..n-1 by the 32-bit keys: equal keys
 *  keep their index order. O(n), no comparisons. */
function radixOrder(keys: Uint32Array, n: number): Int32Array {
  const tmp = new Int32Array(n);
  const out = new Int32Array(n);
  const count = new Int32Array(65537);
  for (let i = 0; i < n; i++) count[(keys[i]! & 0xffff) + 1]!++;
  for (let b = 0; b < 65536; b++) count[b + 1]! += count[b]!;
  for (let i = 0; i < n; i++) tmp[count[keys[i]! & 0xffff]!++] = i;
  count.fill(0);
  for (let i = 0; i < n; i++) count[(keys[i]! >>> 16) + 1]!++;
  for (let b = 0; b < 65536; b++) count[b + 1]! += count[b]!;
  for (let i = 0; i < n; i++) { const j = tmp[i]!; out[count[keys[j]! >>> 16]!++] = j; }
  return out;
}

/** All claims of the snapshot (per-node contributions: pod CIDRs and, with host encryption, node
 *  addresses; then pods), as "The bulk build" in the header says. Returns the nodes whose allowed lists
 *  the general path touched (to be sorted). */
function bulkClaims(ix: DesiredIndex, snapshot: ClusterSnapshot): Set<NodeName> {
  const podCidrMode = ix.facts.routeSource === 'podCIDR';
  const hostEncryption = ix.facts.hostEncryption;
  const nodes = ix.nodes;
  // one IPv4 address per pod as a rule (no pass over the pods to count them: the arrays grow if not)
  let cap = snapshot.pods.size + 16;
  for (const st of nodes.values()) cap += st.info.podCIDRs.length + st.info.addresses.length;

  // 1. Collect: IPv4 /32 claims by address; others (IPv6, pod CIDR blocks) in their order.
  let keys = new Uint32Array(cap);
  // sized once as a rule (no garbage from growing arrays: a cold process's young generation is small)
  const ips = new Array<IP>(cap);
  const refs = new Array<ClaimOrigin | PodInfo>(cap); // the origin, or for a covered claim the pod
  const stList: NodeState[] = [...nodes.values()];
  const stIndex = new Map<NodeState, number>(stList.map((st, i) => [st, i]));
  let sts = new Int32Array(cap); // index into stList
  let covered = new Uint8Array(cap);
  const slow: [Cidr, Claim, NodeState][] = [];
  let n = 0;
  const grow = (): void => {
    cap *= 2;
    const k = new Uint32Array(cap); k.set(keys); keys = k;
    const t = new Int32Array(cap); t.set(sts); sts = t;
    const c = new Uint8Array(cap); c.set(covered); covered = c;
  };
  const fast = (ip: IP, ref: ClaimOrigin | PodInfo, st: number, isCovered: boolean): void => {
    if (n === cap) grow();
    keys[n] = ipv4TextNumber(ip, ip.length);
    ips[n] = ip;
    refs[n] = ref;
    sts[n] = st;
    if (isCovered) covered[n] = 1;
    n++;
  };
  for (const st of nodes.values()) {
    const info = st.info;
    if (podCidrMode) {
      const o: ClaimOrigin = { kind: 'pod-cidr', node: info.name };
      for (const c of info.podCIDRs) {
        if (!c.includes(':') && c.endsWith('/32')) fast(c.slice(0, -3) as IP, o, stIndex.get(st)!, false);
        else slow.push([c, o, st]);
      }
    }
    if (hostEncryption) {
      const o: ClaimOrigin = { kind: 'node-ip', node: info.name };
      for (const a of info.addresses) {
        if (a.address.includes(':')) slow.push([hostCidr(a.address), o, st]);
        else fast(a.address, o, stIndex.get(st)!, false);
      }
    }
  }
  // pods come grouped by node as a rule: the node's state is looked up once per run of pods
  let lastName: NodeName | null = null;
  let st: NodeState | undefined;
  let sti = -1;
  for (const p of snapshot.pods.values()) {
    if (!podCounts(p)) continue;
    if (p.nodeName === null) { ix.podsWithoutNode.add(p.key); continue; }
    if (p.nodeName !== lastName) {
      lastName = p.nodeName;
      st = nodes.get(p.nodeName);
      sti = st === undefined ? -1 : stIndex.get(st)!;
    }
    if (st === undefined) continue; // a node not (yet) in the snapshot: a node event rebuilds the index
    let origin: ClaimOrigin | null = null;
    for (const ip of p.ips) {
      const isCovered = podCidrMode && inBlocks(st, ip);
      if (!ip.includes(':')) fast(ip, isCovered ? p : (origin ??= { kind: 'pod', pod: p.key, node: p.nodeName }), sti, isCovered);
      else {
        origin ??= { kind: 'pod', pod: p.key, node: p.nodeName };
        slow.push([hostCidr(ip), isCovered ? { kind: 'covered', origin } : origin, st]);
      }
    }
  }

  // 2. Sort and walk in address order.
  const order = radixOrder(keys, n);
  const dirty = new Set<NodeName>();
  const pendingIPs: IP[] = [];
  const pendingPods: PodInfo[] = [];
  const routes = ix.routes;
  routes.reserve(n);
  const device = ix.settings.interfaceName;
  let added = 0;
  for (let i = 0; i < n; ) {
    const addr = keys[order[i]!]!;
    let j = i + 1;
    while (j < n && keys[order[j]!] === addr) j++;
    if (j === i + 1) {
      const seq = order[i]!;
      const st = stList[sts[seq]!]!;
      if (covered[seq] === 1) { pendingIPs.push(ips[seq]!); pendingPods.push(refs[seq] as PodInfo); }
      else {
        const k = [ips[seq]!, '/32'].join('') as Cidr; // a flat string: cheaper to hash and to parse than a concatenation
        const origin = refs[seq] as ClaimOrigin;
        const status = st.status;
        let r: DesiredRoute;
        if (status.kind === 'peer' && !(status.bootstrap && origin.kind === 'node-ip')) {
          r = { route: { kind: 'device', dest: k, device }, origin };
          st.allowed!.push(k);
        } else {
          r = routeOf(ix, k, origin, st);
          if (r.cause === 'no-handshake') st.allowed!.push(k);
        }
        routes.append(addr, k, r);
        added++;
      }
    } else {
      // several claims on one address: the general path, in the original order; the route it makes
      // then takes its place in the base, in address order
      let k: Cidr | null = null;
      for (let m = i; m < j; m++) {
        const seq = order[m]!;
        const ref = refs[seq]!;
        const claim: Claim = covered[seq] === 1
          ? { kind: 'covered', origin: { kind: 'pod', pod: (ref as PodInfo).key, node: (ref as PodInfo).nodeName! } }
          : (ref as ClaimOrigin);
        k ??= (ips[seq]! + '/32') as Cidr;
        claimKey(ix, k, claim, stList[sts[seq]!]!, dirty);
      }
      routes.appendFromOther(addr, k!);
    }
    i = j;
  }
  ix.routeFamilies[0] += added;
  if (pendingIPs.length > 0) ix.pending = { ips: pendingIPs, pods: pendingPods };
  // 3. The rest (few: pod CIDR blocks, IPv6), in their original order.
  for (const [k, c, st] of slow) claimKey(ix, k, c, st, dirty);
  return dirty;
}

/** Applies one pod event (add: before null; delete: after null; update: both) to the index, in place.
 *  `before` must be the pod as last applied. Returns the keys of the routes whose value changed (set or
 *  removed) and of the peers rebuilt with other allowed IPs; `problems` says the problems may have changed. */
export function applyPodChange(ix: DesiredIndex, before: PodInfo | null, after: PodInfo | null): PodChange {
  materialize(ix);
  const olds = new Map<Cidr, DesiredRoute | undefined>();
  let conflictTouched = false;
  for (const p of [before, after]) {
    if (p === null || !podCounts(p) || p.nodeName === null) continue;
    for (const ip of p.ips) {
      const k = hostCidr(ip);
      if (!olds.has(k)) olds.set(k, ix.routes.get(k));
      if (ix.conflicts.has(k)) conflictTouched = true;
    }
  }
  const withoutNode = ix.podsWithoutNode.size;
  const dirty = new Set<NodeName>();
  if (before !== null) removePod(ix, before, dirty);
  if (after !== null) addPod(ix, after, dirty);
  const routes: Cidr[] = [];
  for (const [k, old] of olds) {
    if (!sameRoute(old, ix.routes.get(k))) routes.push(k);
    if (ix.conflicts.has(k)) conflictTouched = true;
  }
  const peers: WgKey[] = [];
  for (const name of dirty) {
    const peer = buildPeer(ix, ix.nodes.get(name)!);
    if (peer === null) continue;
    const prev = ix.peers.get(peer.publicKey);
    if (prev !== undefined && sameCidrs(prev.allowedIPs, peer.allowedIPs)) continue;
    ix.peers.set(peer.publicKey, peer);
    peers.push(peer.publicKey);
  }
  const problems = conflictTouched || withoutNode !== ix.podsWithoutNode.size ||
    (before !== null && after !== null && before.nodeName === null && after.nodeName === null && podCounts(before) !== podCounts(after));
  return { index: ix, routes, peers, problems };
}

/** A peer's latest handshake as the kernel shows it now (unix seconds, 0 = never). When the handshake gate
 *  applies (host encryption on, handshakes given at build) and this opens or closes the gate of the node
 *  holding `key` (first handshake seen; or 0 again, as after the peer was re-created), its node-IP routes
 *  and its peer (keepalive) are recomputed, in place: O(the node's addresses + its allowed IPs). Returns
 *  the changed route and peer keys, for planScoped. Otherwise changes nothing. */
export function applyHandshakeChange(ix: DesiredIndex, key: WgKey, latestHandshake: number): IndexChange {
  const none: IndexChange = { index: ix, routes: [], peers: [], problems: false };
  if (!ix.handshakeGate) return none;
  const dp = ix.peers.get(key);
  if (dp === undefined) return none;
  const st = ix.nodes.get(dp.node)!;
  const status = st.status;
  const bootstrap = latestHandshake === 0;
  if (status.kind !== 'peer' || status.bootstrap === bootstrap) return none;
  materialize(ix);
  st.status = { ...status, bootstrap };
  const routes: Cidr[] = [];
  const seen = new Set<Cidr>();
  for (const a of st.info.addresses) {
    const k = hostCidr(a.address);
    if (seen.has(k)) continue;
    seen.add(k);
    const old = ix.routes.get(k);
    const e = entryOf(ix, k, old);
    if (e === undefined) continue;
    const next = routeFor(ix, k, e);
    if (sameRoute(old, next)) continue;
    applyRoute(ix, k, old, next, st, null);
    routes.push(k);
  }
  const peer = buildPeer(ix, st)!;
  const peers: WgKey[] = [];
  if (peer.persistentKeepalive !== dp.persistentKeepalive || !sameCidrs(peer.allowedIPs, dp.allowedIPs)) {
    ix.peers.set(key, peer);
    peers.push(key);
  }
  return { index: ix, routes, peers, problems: false };
}

function sameCidrs(a: readonly Cidr[], b: readonly Cidr[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------------
// The view

function problemKey(p: Problem): string {
  switch (p.kind) {
    case 'no-key':
    case 'no-endpoint':
      return `${p.kind}\0${p.node}`;
    case 'shared-key':
      return `${p.kind}\0${p.key}`;
    case 'ip-conflict':
      return `${p.kind}\0${p.ip}`;
    case 'pod-cidr-conflict':
      return `${p.kind}\0${p.cidr}`;
    case 'pod-without-node':
      return `${p.kind}\0${p.pod}`;
    case 'mtu-unknown':
      return p.kind;
  }
}

export function compareProblems(a: Problem, b: Problem): number {
  const ka = problemKey(a), kb = problemKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

function describeClaim(c: Claim): string {
  const o = claimOrigin(c);
  return o.kind === 'pod' ? `pod ${o.pod} on node ${o.node}` : o.kind === 'node-ip' ? `node ${o.node} (node address)` : `node ${o.node} (pod CIDR)`;
}

function conflictProblem(k: Cidr, claims: readonly Claim[]): Problem {
  if (claims.some((c) => claimOrigin(c).kind === 'pod-cidr')) {
    return { kind: 'pod-cidr-conflict', cidr: k, nodes: [...new Set(claims.map((c) => claimOrigin(c).node))].sort() };
  }
  return { kind: 'ip-conflict', ip: k, claimants: [...new Set(claims.map(describeClaim))].sort() };
}

/** The problems of the index now, sorted. */
export function indexProblems(ix: DesiredIndex): Problem[] {
  const out: Problem[] = [...ix.staticProblems];
  for (const k of ix.conflicts) out.push(conflictProblem(k, claimsOf(ix, k)));
  for (const pod of ix.podsWithoutNode) out.push({ kind: 'pod-without-node', pod });
  return out.sort(compareProblems);
}

/** The desired dataplane the index describes now. Its maps are the index's own (see the header). */
export function desiredOf(ix: DesiredIndex): DesiredEnabled {
  const s = ix.settings;
  const fams = new Set<Family>(ix.selfFamilies);
  if (ix.routeFamilies[0] > 0) fams.add(4);
  if (ix.routeFamilies[1] > 0) fams.add(6);
  const families = [...fams].sort();
  const rules: Rule[] = families.map((family) => ({ family, priority: s.rulePriority, table: s.routingTable, fwmark: s.fwmark, mask: s.fwmark }));
  const accept = `-p udp -m udp --dport ${s.listenPort} -j ACCEPT`;
  const mark = `0x${s.fwmark.toString(16)}`;
  const firewall: FirewallChain[] = [];
  for (const family of families) {
    firewall.push({ family, table: 'filter', name: 'WGPLANE-INPUT', hook: 'INPUT', rules: [accept] });
    firewall.push({ family, table: 'filter', name: 'WGPLANE-OUTPUT', hook: 'OUTPUT', rules: [accept] });
    if (family === 4 && ix.facts.hostEncryption) {
      firewall.push({
        family,
        table: 'raw',
        name: 'WGPLANE-PREROUTING',
        hook: 'PREROUTING',
        rules: ['-i lo -j RETURN', `-i ${s.interfaceName} -j RETURN`, `-i ${ix.facts.workloadInterfacePrefix}+ -j RETURN`, `-j MARK --set-xmark ${mark}/${mark}`],
      });
    }
  }
  const sysctls = new Map<string, string>();
  if (ix.facts.hostEncryption) {
    sysctls.set('net.ipv4.conf.all.src_valid_mark', '1');
    // Loose reverse-path filtering on the device alone (effective value: the larger of `all` and the
    // device's). WireGuard already accepts from a peer only sources inside its allowed IPs, so this drops
    // nothing that matters; what it keeps is host traffic a peer encrypts to us while our route back to
    // its node IP is still `throw` (our handshake gate not open yet, up to one poll): under strict
    // rp_filter the kernel would drop it, as the route back does not point into the device.
    sysctls.set(deviceSysctlKey(s.interfaceName, 'rp_filter'), '2');
  }
  return {
    kind: 'enabled',
    node: ix.node,
    facts: { ...ix.facts, families },
    device: ix.device,
    peers: ix.peers,
    table: s.routingTable,
    routes: ix.routes,
    rules,
    firewall,
    sysctls,
    problems: indexProblems(ix),
  };
}
