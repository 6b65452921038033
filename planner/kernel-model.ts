// A pure model of the kernel executing plan operations, with the kernel's semantics, so that properties
// can run plans without a kernel. The state is the observed dataplane (wgplane's own part), optionally
// with the number of wgplane's table and a `foreign` part: the things wgplane does not own (other links,
// other tables' routes, rules of other protocols, other chains). Operations reach foreign objects only
// the way the kernel would (by name or table number), so a property can check they stay untouched.
import * as E from 'fp-ts/lib/Either.js';
import type { Cidr, Family } from '../core/ip.js';
import { cidrCovers, compareCidr, familyOf } from '../core/ip.js';
import type { WgKey } from '../core/key.js';
import type { FirewallChain, ObservedDataplane, ObservedDevice, ObservedPeer, Operation, Route, Rule } from '../core/model.js';
import { sysctlDevice } from '../core/model.js';

/** The key a device-configure with `publicKey: null` ("the stored key") leaves on the device. */
export const STORED_KEY_PLACEHOLDER = 'c3RvcmVkLWtleS1wbGFjZWhvbGRlci0wMDAwMDAwMDA=' as WgKey;

export interface ForeignLink {
  readonly name: string;
  readonly mtu: number;
  readonly up: boolean;
  readonly addresses: readonly Cidr[];
}

export interface ForeignState {
  readonly links: readonly ForeignLink[];
  /** Routes of tables other than wgplane's, by table number. */
  readonly tables: ReadonlyMap<number, ReadonlyMap<Cidr, Route>>;
  /** Rules of other protocols (wgplane's operations act on protocol 98 only). */
  readonly rules: readonly (Rule & { readonly protocol: number })[];
  /** Chains not named WGPLANE-*. */
  readonly chains: readonly (FirewallChain & { readonly hooked: boolean })[];
}

/** The observed dataplane plus, optionally, wgplane's table number and the foreign part. */
export interface ModelState extends ObservedDataplane {
  readonly table?: number;
  readonly foreign?: ForeignState;
}

const EMPTY_FOREIGN: ForeignState = { links: [], tables: new Map(), rules: [], chains: [] };

function sameRule(a: Rule, b: Rule): boolean {
  return a.family === b.family && a.priority === b.priority && a.table === b.table && a.fwmark === b.fwmark && a.mask === b.mask;
}

function sameRoute(a: Route, b: Route): boolean {
  return a.kind === b.kind && a.dest === b.dest && (a.kind === 'throw' || a.device === (b as { device: string }).device);
}

function insertSorted(list: readonly Cidr[], ip: Cidr): Cidr[] {
  return [...list, ip].sort(compareCidr);
}

function dropDeviceRoutes(routes: ReadonlyMap<Cidr, Route>, device: string): Map<Cidr, Route> {
  const out = new Map<Cidr, Route>();
  for (const [d, r] of routes) if (!(r.kind === 'device' && r.device === device)) out.set(d, r);
  return out;
}

function dropDeviceRoutesForeign(f: ForeignState, device: string): ForeignState {
  const tables = new Map<number, ReadonlyMap<Cidr, Route>>();
  for (const [t, rs] of f.tables) tables.set(t, dropDeviceRoutes(rs, device));
  return { ...f, tables };
}

/** Does a link of this name exist (wgplane's, stale, conflicting or foreign)? */
function linkExists(s: ModelState, name: string): boolean {
  return s.device?.name === name || s.staleDevices.includes(name) || s.conflicts.includes(name) || (s.foreign?.links.some((l) => l.name === name) ?? false);
}

/** A device's sysctls exist only while it does. */
function noSuchSysctl(s: ModelState, key: string): string | null {
  const dev = sysctlDevice(key);
  return dev !== null && !linkExists(s, dev) ? `sysctl: cannot stat /proc/sys/${key}: No such file or directory` : null;
}

function dropDeviceSysctls(sysctls: ReadonlyMap<string, string>, device: string): Map<string, string> {
  const m = new Map(sysctls);
  for (const k of sysctls.keys()) if (sysctlDevice(k) === device) m.delete(k);
  return m;
}

function withForeignLink<S extends ModelState>(s: S, name: string, f: (l: ForeignLink) => ForeignLink | null): E.Either<string, S> {
  const foreign = s.foreign ?? EMPTY_FOREIGN;
  const l = foreign.links.find((x) => x.name === name);
  if (l === undefined) return E.left(`Cannot find device "${name}"`);
  const next = f(l);
  const links = next === null ? foreign.links.filter((x) => x !== l) : foreign.links.map((x) => (x === l ? next : x));
  return E.right({ ...s, foreign: { ...foreign, links } });
}

/** Movement of allowed IPs between peers: giving an IP to one peer takes it from any other. */
function givePeer(peers: ReadonlyMap<WgKey, ObservedPeer>, key: WgKey, ips: readonly Cidr[]): Map<WgKey, ObservedPeer> {
  const taken = new Set(ips);
  const out = new Map<WgKey, ObservedPeer>();
  for (const [k, p] of peers) {
    if (k !== key && p.allowedIPs.some((ip) => taken.has(ip))) out.set(k, { ...p, allowedIPs: p.allowedIPs.filter((ip) => !taken.has(ip)) });
    else out.set(k, p);
  }
  return out;
}

/** Routes of wgplane's table, or of a foreign table when the op names another one. */
function routeTable<S extends ModelState>(s: S, table: number): { routes: ReadonlyMap<Cidr, Route>; put: (m: Map<Cidr, Route>) => S } {
  if (s.table === undefined || s.table === table) return { routes: s.routes, put: (m) => ({ ...s, routes: m }) };
  const foreign = s.foreign ?? EMPTY_FOREIGN;
  return {
    routes: foreign.tables.get(table) ?? new Map(),
    put: (m) => {
      const tables = new Map(foreign.tables);
      tables.set(table, m);
      return { ...s, foreign: { ...foreign, tables } };
    },
  };
}

function chainKey(c: { family: Family; table: string; name: string }): string {
  return `${c.family}/${c.table}/${c.name}`;
}

/** Executes one operation as the kernel would. Never throws: failures are Left with the kernel's complaint. */
export function applyOperation<S extends ModelState>(s: S, op: Operation): E.Either<string, S> {
  const ours = (name: string): ObservedDevice | null => (s.device !== null && s.device.name === name ? s.device : null);
  let dev: ObservedDevice | null = s.device;
  switch (op.kind) {
    case 'sysctl-set': {
      const missing = noSuchSysctl(s, op.key);
      if (missing !== null) return E.left(missing);
      const sysctls = new Map(s.sysctls);
      sysctls.set(op.key, op.value);
      return E.right({ ...s, sysctls });
    }
    case 'link-create': {
      if (linkExists(s, op.name)) return E.left(`RTNETLINK answers: File exists (${op.name})`);
      if (dev !== null) return E.left(`model: a second wgplane device (${op.name} beside ${dev.name})`);
      const device: ObservedDevice = { name: op.name, linkKind: 'wireguard', mtu: op.mtu, up: false, addresses: [], listenPort: null, fwmark: 0, publicKey: null };
      return E.right({ ...s, device, peers: new Map() });
    }
    case 'link-delete': {
      if ((dev = ours(op.name)) !== null) {
        const foreign = s.foreign === undefined ? undefined : dropDeviceRoutesForeign(s.foreign, op.name);
        return E.right({ ...s, device: null, peers: new Map(), routes: dropDeviceRoutes(s.routes, op.name), sysctls: dropDeviceSysctls(s.sysctls, op.name), ...(foreign ? { foreign } : {}) });
      }
      if (s.staleDevices.includes(op.name)) {
        const foreign = s.foreign === undefined ? undefined : dropDeviceRoutesForeign(s.foreign, op.name);
        return E.right({ ...s, staleDevices: s.staleDevices.filter((n) => n !== op.name), routes: dropDeviceRoutes(s.routes, op.name), sysctls: dropDeviceSysctls(s.sysctls, op.name), ...(foreign ? { foreign } : {}) });
      }
      if (s.conflicts.includes(op.name)) return E.right({ ...s, conflicts: s.conflicts.filter((n) => n !== op.name) });
      return E.map((t: S) => ({ ...t, routes: dropDeviceRoutes(t.routes, op.name) }))(withForeignLink(s, op.name, () => null));
    }
    case 'link-set-mtu':
      if ((dev = ours(op.name)) !== null) return E.right({ ...s, device: { ...dev, mtu: op.mtu } });
      return withForeignLink(s, op.name, (l) => ({ ...l, mtu: op.mtu }));
    case 'link-set-up':
      if ((dev = ours(op.name)) !== null) return E.right({ ...s, device: { ...dev, up: true } });
      return withForeignLink(s, op.name, (l) => ({ ...l, up: true }));
    case 'address-add':
      if ((dev = ours(op.device)) !== null) {
        if (dev.addresses.includes(op.address)) return E.left(`RTNETLINK answers: File exists (${op.address})`);
        return E.right({ ...s, device: { ...dev, addresses: insertSorted(dev.addresses, op.address) } });
      }
      return withForeignLink(s, op.device, (l) => ({ ...l, addresses: insertSorted(l.addresses, op.address) }));
    case 'address-delete':
      if ((dev = ours(op.device)) !== null) {
        if (!dev.addresses.includes(op.address)) return E.left(`RTNETLINK answers: Cannot assign requested address (${op.address})`);
        return E.right({ ...s, device: { ...dev, addresses: dev.addresses.filter((a) => a !== op.address) } });
      }
      return withForeignLink(s, op.device, (l) => ({ ...l, addresses: l.addresses.filter((a) => a !== op.address) }));
    case 'device-configure':
      if ((dev = ours(op.device)) === null) return E.left(`Unable to modify interface: No such device (${op.device})`);
      return E.right({ ...s, device: { ...dev, listenPort: op.listenPort, fwmark: op.fwmark, publicKey: op.publicKey ?? STORED_KEY_PLACEHOLDER } });
    case 'peer-add': {
      if ((dev = ours(op.device)) === null) return E.left(`Unable to modify interface: No such device (${op.device})`);
      const p = op.peer;
      if (s.peers.has(p.publicKey)) return E.left(`model: peer ${p.publicKey} exists already`);
      const peers = givePeer(s.peers, p.publicKey, p.allowedIPs);
      peers.set(p.publicKey, {
        publicKey: p.publicKey, endpoint: p.endpoint, allowedIPs: [...new Set(p.allowedIPs)].sort(compareCidr),
        persistentKeepalive: p.persistentKeepalive, latestHandshake: 0, rxBytes: 0, txBytes: 0,
      });
      return E.right({ ...s, peers });
    }
    case 'peer-update': {
      if ((dev = ours(op.device)) === null) return E.left(`Unable to modify interface: No such device (${op.device})`);
      const p = s.peers.get(op.publicKey);
      if (p === undefined) return E.left(`model: no peer ${op.publicKey}`);
      for (const ip of op.removeAllowedIPs) if (!p.allowedIPs.includes(ip)) return E.left(`model: ${ip} is not an allowed IP of peer ${op.publicKey}`);
      const peers = givePeer(s.peers, op.publicKey, op.addAllowedIPs);
      const removed = new Set(op.removeAllowedIPs);
      const ips = new Set(p.allowedIPs.filter((ip) => !removed.has(ip)));
      for (const ip of op.addAllowedIPs) ips.add(ip);
      peers.set(op.publicKey, {
        ...p,
        allowedIPs: [...ips].sort(compareCidr),
        ...(op.endpoint !== undefined ? { endpoint: op.endpoint } : {}),
        ...(op.persistentKeepalive !== undefined ? { persistentKeepalive: op.persistentKeepalive } : {}),
      });
      return E.right({ ...s, peers });
    }
    case 'peer-remove': {
      if ((dev = ours(op.device)) === null) return E.left(`Unable to modify interface: No such device (${op.device})`);
      if (!s.peers.has(op.publicKey)) return E.left(`model: no peer ${op.publicKey}`);
      const peers = new Map(s.peers);
      peers.delete(op.publicKey);
      return E.right({ ...s, peers });
    }
    case 'route-add':
    case 'route-replace':
    case 'route-delete': {
      const t = routeTable(s, op.table);
      const existing = t.routes.get(op.route.dest);
      if (op.kind === 'route-add' && existing !== undefined) return E.left(`RTNETLINK answers: File exists (${op.route.dest})`);
      if (op.kind === 'route-replace' && (existing === undefined || !sameRoute(existing, op.from))) return E.left(`model: route ${op.route.dest} is not ${JSON.stringify(op.from)}`);
      if (op.kind === 'route-delete') {
        if (existing === undefined || !sameRoute(existing, op.route)) return E.left(`RTNETLINK answers: No such process (${op.route.dest})`);
        const m = new Map(t.routes);
        m.delete(op.route.dest);
        return E.right(t.put(m));
      }
      if (op.route.kind === 'device' && !linkExists(s, op.route.device)) return E.left(`Cannot find device "${op.route.device}"`);
      const m = new Map(t.routes);
      m.set(op.route.dest, op.route);
      return E.right(t.put(m));
    }
    case 'table-flush': {
      const t = routeTable(s, op.table);
      const m = new Map<Cidr, Route>();
      for (const [d, r] of t.routes) if (familyOf(d) !== op.family) m.set(d, r);
      return E.right(t.put(m));
    }
    case 'rule-add':
      if (s.rules.some((r) => sameRule(r, op.rule))) return E.left('RTNETLINK answers: File exists (rule)');
      return E.right({ ...s, rules: [...s.rules, op.rule] });
    case 'rule-delete': {
      const i = s.rules.findIndex((r) => sameRule(r, op.rule));
      if (i < 0) return E.left('RTNETLINK answers: No such file or directory (rule)');
      return E.right({ ...s, rules: s.rules.filter((_, j) => j !== i) });
    }
    case 'firewall-chain': {
      const c = op.chain;
      const ours = c.name.startsWith('WGPLANE-');
      const list = ours ? s.firewall : (s.foreign ?? EMPTY_FOREIGN).chains;
      const exists = list.some((x) => chainKey(x) === chainKey(c));
      if (op.remove && !exists) return E.left(`iptables: No chain/target/match by that name (${c.name})`);
      const rest = list.filter((x) => chainKey(x) !== chainKey(c));
      const next = op.remove ? rest : [...rest, { family: c.family, table: c.table, name: c.name, hook: c.hook, rules: [...c.rules], hooked: true }];
      if (ours) return E.right({ ...s, firewall: next });
      return E.right({ ...s, foreign: { ...(s.foreign ?? EMPTY_FOREIGN), chains: next } });
    }
  }
}

export interface ApplyFailure<S> {
  readonly index: number;
  readonly message: string;
  readonly state: S;
}

/** Runs operations in order and stops at the first failure (like `ip -batch` without -force). O(state +
 *  operations): one copy of the state, then the operations in place (applyOperationsInPlace). */
export function applyPlan<S extends ModelState>(state: S, ops: readonly Operation[]): E.Either<ApplyFailure<S>, S> {
  if (ops.length === 0) return E.right(state);
  const m = toMutable(state);
  const r = applyOperationsInPlace(m, ops);
  const s = snapshotOf(state, m);
  return r.error === null ? E.right(s) : E.left({ index: r.applied, message: r.error, state: s });
}

/** Destinations steered into `device` without a peer to carry them: the rule for their family is
 *  present (pointing at `table` when given), the device is up, the route is `dev device`, and no allowed
 *  IP of any peer covers the destination. */
export function blackHoles(s: ObservedDataplane, device: string, table?: number): Set<Cidr> {
  const out = new Set<Cidr>();
  if (s.device === null || s.device.name !== device || !s.device.up) return out;
  const ruled = (f: Family): boolean => s.rules.some((r) => r.family === f && (table === undefined || r.table === table));
  const allowed: Cidr[] = [];
  for (const p of s.peers.values()) for (const ip of p.allowedIPs) allowed.push(ip);
  const exact = new Set(allowed);
  for (const [dest, r] of s.routes) {
    if (r.kind !== 'device' || r.device !== device || !ruled(familyOf(dest))) continue;
    if (exact.has(dest) || allowed.some((a) => cidrCovers(a, dest))) continue;
    out.add(dest);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// The kernel model in place, for the daemon (and for applyPlan): the same semantics as applyOperation,
// in time proportional to the operations (plus the sizes of the peers they touch), with no copy of the
// big maps. The daemon keeps one MutableObserved as its model of the kernel between observations.

/** A mutable model state; it is an ObservedDataplane (and a ModelState) as it stands. `owners` indexes
 *  which peer holds each allowed IP (several peers only where the initial state had it so). */
export interface MutableObserved extends ModelState {
  device: ObservedDevice | null;
  staleDevices: string[];
  conflicts: string[];
  peers: Map<WgKey, ObservedPeer>;
  routes: Map<Cidr, Route>;
  rules: Rule[];
  firewall: (FirewallChain & { readonly hooked: boolean })[];
  sysctls: Map<string, string>;
  underlayMtu: number | null;
  foreign?: ForeignState;
  readonly owners: AllowedOwners;
}

/** allowed IP -> the peer holding it; `shared`: IPs held by several peers (only from an initial state). */
export interface AllowedOwners {
  readonly one: Map<Cidr, WgKey>;
  readonly shared: Map<Cidr, Set<WgKey>>;
}

function addOwner(o: AllowedOwners, ip: Cidr, key: WgKey): void {
  const sh = o.shared.get(ip);
  if (sh !== undefined) { sh.add(key); return; }
  const cur = o.one.get(ip);
  if (cur === undefined || cur === key) { o.one.set(ip, key); return; }
  o.one.delete(ip);
  o.shared.set(ip, new Set([cur, key]));
}

function dropOwner(o: AllowedOwners, ip: Cidr, key: WgKey): void {
  const sh = o.shared.get(ip);
  if (sh === undefined) { if (o.one.get(ip) === key) o.one.delete(ip); return; }
  sh.delete(key);
  if (sh.size === 1) { o.shared.delete(ip); o.one.set(ip, sh.values().next().value!); }
}

/** A mutable copy of a state (O(size), once). */
export function toMutable(s: ModelState): MutableObserved {
  const owners: AllowedOwners = { one: new Map(), shared: new Map() };
  for (const [k, p] of s.peers) for (const ip of p.allowedIPs) addOwner(owners, ip, k);
  const m: MutableObserved = {
    ...s,
    device: s.device,
    staleDevices: [...s.staleDevices],
    conflicts: [...s.conflicts],
    peers: new Map(s.peers),
    routes: new Map(s.routes),
    rules: [...s.rules],
    firewall: [...s.firewall],
    sysctls: new Map(s.sysctls),
    underlayMtu: s.underlayMtu,
    owners,
  };
  return m;
}

/** The state of a MutableObserved as a plain ModelState of the original's shape (without `owners`). */
function snapshotOf<S extends ModelState>(original: S, m: MutableObserved): S {
  const { owners: _owners, ...rest } = m;
  void _owners;
  const out = { ...original, ...rest } as S & { foreign?: ForeignState };
  if (m.foreign === undefined) delete out.foreign;
  return out;
}

/** Takes `ips` from every peer other than `key` (giving an allowed IP to one peer takes it from others). */
function takeFrom(m: MutableObserved, key: WgKey, ips: readonly Cidr[]): void {
  let losers: Map<WgKey, Set<Cidr>> | null = null;
  const o = m.owners;
  for (const ip of ips) {
    const sh = o.shared.get(ip);
    const holders = sh !== undefined ? [...sh] : o.one.has(ip) ? [o.one.get(ip)!] : [];
    for (const h of holders) {
      if (h === key) continue;
      losers ??= new Map();
      let set = losers.get(h);
      if (set === undefined) losers.set(h, (set = new Set()));
      set.add(ip);
      dropOwner(o, ip, h);
    }
  }
  if (losers === null) return;
  for (const [h, taken] of losers) {
    const p = m.peers.get(h)!;
    m.peers.set(h, { ...p, allowedIPs: p.allowedIPs.filter((ip) => !taken.has(ip)) });
  }
}

function dropDeviceRoutesInPlace(routes: Map<Cidr, Route>, device: string): void {
  for (const [d, r] of routes) if (r.kind === 'device' && r.device === device) routes.delete(d);
}

/** Applies one operation in place; the state is untouched when it fails. Returns the kernel's complaint or null. */
export function applyOperationInPlace(m: MutableObserved, op: Operation): string | null {
  const ours = (name: string): ObservedDevice | null => (m.device !== null && m.device.name === name ? m.device : null);
  // Foreign links: the functional model (the foreign part is small), put back in place.
  const foreignLink = (name: string, f: (l: ForeignLink) => ForeignLink | null): string | null => {
    const r = withForeignLink(m as ModelState, name, f);
    if (E.isLeft(r)) return r.left;
    m.foreign = r.right.foreign;
    return null;
  };
  let dev: ObservedDevice | null;
  switch (op.kind) {
    case 'sysctl-set': {
      const missing = noSuchSysctl(m as ModelState, op.key);
      if (missing !== null) return missing;
      m.sysctls.set(op.key, op.value);
      return null;
    }
    case 'link-create':
      if (linkExists(m, op.name)) return `RTNETLINK answers: File exists (${op.name})`;
      if (m.device !== null) return `model: a second wgplane device (${op.name} beside ${m.device.name})`;
      m.device = { name: op.name, linkKind: 'wireguard', mtu: op.mtu, up: false, addresses: [], listenPort: null, fwmark: 0, publicKey: null };
      m.peers.clear();
      m.owners.one.clear();
      m.owners.shared.clear();
      return null;
    case 'link-delete': {
      if (ours(op.name) !== null || m.staleDevices.includes(op.name)) {
        if (ours(op.name) !== null) {
          m.device = null;
          m.peers.clear();
          m.owners.one.clear();
          m.owners.shared.clear();
        } else m.staleDevices = m.staleDevices.filter((n) => n !== op.name);
        dropDeviceRoutesInPlace(m.routes, op.name);
        for (const k of [...m.sysctls.keys()]) if (sysctlDevice(k) === op.name) m.sysctls.delete(k);
        if (m.foreign !== undefined) m.foreign = dropDeviceRoutesForeign(m.foreign, op.name);
        return null;
      }
      if (m.conflicts.includes(op.name)) { m.conflicts = m.conflicts.filter((n) => n !== op.name); return null; }
      const err = foreignLink(op.name, () => null);
      if (err === null) dropDeviceRoutesInPlace(m.routes, op.name);
      return err;
    }
    case 'link-set-mtu':
      if ((dev = ours(op.name)) !== null) { m.device = { ...dev, mtu: op.mtu }; return null; }
      return foreignLink(op.name, (l) => ({ ...l, mtu: op.mtu }));
    case 'link-set-up':
      if ((dev = ours(op.name)) !== null) { m.device = { ...dev, up: true }; return null; }
      return foreignLink(op.name, (l) => ({ ...l, up: true }));
    case 'address-add':
      if ((dev = ours(op.device)) !== null) {
        if (dev.addresses.includes(op.address)) return `RTNETLINK answers: File exists (${op.address})`;
        m.device = { ...dev, addresses: insertSorted(dev.addresses, op.address) };
        return null;
      }
      return foreignLink(op.device, (l) => ({ ...l, addresses: insertSorted(l.addresses, op.address) }));
    case 'address-delete':
      if ((dev = ours(op.device)) !== null) {
        if (!dev.addresses.includes(op.address)) return `RTNETLINK answers: Cannot assign requested address (${op.address})`;
        m.device = { ...dev, addresses: dev.addresses.filter((a) => a !== op.address) };
        return null;
      }
      return foreignLink(op.device, (l) => ({ ...l, addresses: l.addresses.filter((a) => a !== op.address) }));
    case 'device-configure':
      if ((dev = ours(op.device)) === null) return `Unable to modify interface: No such device (${op.device})`;
      m.device = { ...dev, listenPort: op.listenPort, fwmark: op.fwmark, publicKey: op.publicKey ?? STORED_KEY_PLACEHOLDER };
      return null;
    case 'peer-add': {
      if (ours(op.device) === null) return `Unable to modify interface: No such device (${op.device})`;
      const p = op.peer;
      if (m.peers.has(p.publicKey)) return `model: peer ${p.publicKey} exists already`;
      takeFrom(m, p.publicKey, p.allowedIPs);
      const allowedIPs = [...new Set(p.allowedIPs)].sort(compareCidr);
      for (const ip of allowedIPs) addOwner(m.owners, ip, p.publicKey);
      m.peers.set(p.publicKey, {
        publicKey: p.publicKey, endpoint: p.endpoint, allowedIPs,
        persistentKeepalive: p.persistentKeepalive, latestHandshake: 0, rxBytes: 0, txBytes: 0,
      });
      return null;
    }
    case 'peer-update': {
      if (ours(op.device) === null) return `Unable to modify interface: No such device (${op.device})`;
      const p = m.peers.get(op.publicKey);
      if (p === undefined) return `model: no peer ${op.publicKey}`;
      if (op.removeAllowedIPs.length > 0) {
        const have = new Set(p.allowedIPs);
        for (const ip of op.removeAllowedIPs) if (!have.has(ip)) return `model: ${ip} is not an allowed IP of peer ${op.publicKey}`;
      }
      takeFrom(m, op.publicKey, op.addAllowedIPs);
      const removed = new Set(op.removeAllowedIPs);
      const ips = new Set(p.allowedIPs.filter((ip) => !removed.has(ip)));
      for (const ip of removed) dropOwner(m.owners, ip, op.publicKey);
      for (const ip of op.addAllowedIPs) ips.add(ip);
      for (const ip of ips) addOwner(m.owners, ip, op.publicKey);
      m.peers.set(op.publicKey, {
        ...p,
        allowedIPs: [...ips].sort(compareCidr),
        ...(op.endpoint !== undefined ? { endpoint: op.endpoint } : {}),
        ...(op.persistentKeepalive !== undefined ? { persistentKeepalive: op.persistentKeepalive } : {}),
      });
      return null;
    }
    case 'peer-remove': {
      if (ours(op.device) === null) return `Unable to modify interface: No such device (${op.device})`;
      const p = m.peers.get(op.publicKey);
      if (p === undefined) return `model: no peer ${op.publicKey}`;
      for (const ip of p.allowedIPs) dropOwner(m.owners, ip, op.publicKey);
      m.peers.delete(op.publicKey);
      return null;
    }
    case 'route-add':
    case 'route-replace':
    case 'route-delete': {
      const mine = m.table === undefined || m.table === op.table;
      const routes: ReadonlyMap<Cidr, Route> = mine ? m.routes : (m.foreign ?? EMPTY_FOREIGN).tables.get(op.table) ?? new Map();
      const existing = routes.get(op.route.dest);
      if (op.kind === 'route-add' && existing !== undefined) return `RTNETLINK answers: File exists (${op.route.dest})`;
      if (op.kind === 'route-replace' && (existing === undefined || !sameRoute(existing, op.from))) return `model: route ${op.route.dest} is not ${JSON.stringify(op.from)}`;
      if (op.kind === 'route-delete') {
        if (existing === undefined || !sameRoute(existing, op.route)) return `RTNETLINK answers: No such process (${op.route.dest})`;
      } else if (op.route.kind === 'device' && !linkExists(m, op.route.device)) return `Cannot find device "${op.route.device}"`;
      if (mine) {
        if (op.kind === 'route-delete') m.routes.delete(op.route.dest);
        else m.routes.set(op.route.dest, op.route);
        return null;
      }
      // a foreign table (small): the functional model
      const r = applyOperation(m as ModelState, op);
      if (E.isLeft(r)) return r.left;
      m.foreign = r.right.foreign;
      return null;
    }
    case 'table-flush': {
      if (m.table === undefined || m.table === op.table) {
        for (const d of m.routes.keys()) if (familyOf(d) === op.family) m.routes.delete(d);
        return null;
      }
      const r = applyOperation(m as ModelState, op);
      if (E.isLeft(r)) return r.left;
      m.foreign = r.right.foreign;
      return null;
    }
    case 'rule-add':
      if (m.rules.some((r) => sameRule(r, op.rule))) return 'RTNETLINK answers: File exists (rule)';
      m.rules.push(op.rule);
      return null;
    case 'rule-delete': {
      const i = m.rules.findIndex((r) => sameRule(r, op.rule));
      if (i < 0) return 'RTNETLINK answers: No such file or directory (rule)';
      m.rules.splice(i, 1);
      return null;
    }
    case 'firewall-chain': {
      if (!op.chain.name.startsWith('WGPLANE-')) {
        const r = applyOperation(m as ModelState, op);
        if (E.isLeft(r)) return r.left;
        m.foreign = r.right.foreign;
        return null;
      }
      const c = op.chain;
      const exists = m.firewall.some((x) => chainKey(x) === chainKey(c));
      if (op.remove && !exists) return `iptables: No chain/target/match by that name (${c.name})`;
      const rest = m.firewall.filter((x) => chainKey(x) !== chainKey(c));
      m.firewall = op.remove ? rest : [...rest, { family: c.family, table: c.table, name: c.name, hook: c.hook, rules: [...c.rules], hooked: true }];
      return null;
    }
  }
}

/** Applies operations in order, in place, and stops at the first failure (like `ip -batch` without
 *  -force). `applied`: how many succeeded; `error`: the failing operation's complaint, or null. */
export function applyOperationsInPlace(m: MutableObserved, ops: readonly Operation[]): { applied: number; error: string | null } {
  for (let i = 0; i < ops.length; i++) {
    const error = applyOperationInPlace(m, ops[i]!);
    if (error !== null) return { applied: i, error };
  }
  return { applied: ops.length, error: null };
}
