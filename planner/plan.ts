// The planner: plan(desired, observed) -> Plan, an ordered list of operations that takes the observed
// dataplane to the desired one in a safe order. Pure and deterministic: no I/O, no clock, no randomness,
// and the output does not depend on the insertion order of the input maps.
//
// Order when enabled (see FIELD-NOTES "Order of changes"):
//   0. rule-delete of owned rules that differ from the desired ones; link-delete of stale devices
//   1. sysctl-set
//   2. the device: link-create, link-set-mtu, link-set-up (new device), addresses, device-configure,
//      then the device's own sysctls (they exist only once the device does)
//   3. RETREAT: route changes that send nothing into the device (device -> throw, deletions, new throws)
//   4. peer-add, peer-update (allowed IPs added, endpoint, keepalive); an added allowed IP leaves any
//      other peer in the kernel by itself, so moved pod IPs and changed keys stay covered throughout
//   5. peer-remove, peer-update (allowed IPs that go away and were not taken by another peer)
//      (link-set-up of an existing device that was down comes here: its routes are covered by now)
//   6. ADVANCE: routes added or changed to point into the device
//   7. rule-add
//   8. firewall chains (changed or unhooked chains set; owned chains no longer desired removed)
// When disabled: rule-delete first, then table-flush per family, link-delete, firewall chains removed.
import type { Cidr, Family } from '../core/ip.js';
import { sysctlDevice } from '../core/model.js';
import { compareCidr, familyOf, ipv4TextNumber } from '../core/ip.js';
import type { WgKey } from '../core/key.js';
import type {
  AllowedIPMove,
  DesiredDataplane,
  DesiredDisabled,
  DesiredEnabled,
  DesiredRoute,
  FirewallChain,
  ObservedDataplane,
  ObservedDevice,
  ObservedPeer,
  Operation,
  Origin,
  Plan,
  Route,
  Rule,
} from '../core/model.js';

/** What planScoped diffs besides the device, rules, firewall and sysctls. */
export interface PlanScope {
  readonly routes: Iterable<Cidr>;
  readonly peers: Iterable<WgKey>;
}

const NOT_DESIRED: Origin = { kind: 'unowned', detail: 'not in the desired state' };
const STALE_DEVICE: Origin = { kind: 'unowned', detail: 'stale wgplane device (an old interfaceName)' };
const RULE_DIFFERS: Origin = { kind: 'unowned', detail: 'wgplane rule that differs from the desired one' };

export function plan(desired: DesiredDataplane, observed: ObservedDataplane): Plan {
  if (observed.conflicts.length > 0) return blocked(desired, observed);
  if (desired.kind === 'disabled') return tearDown(desired, observed);
  const ctx = new Ctx(desired, observed, false);
  let matched = 0;
  if (ctx.gone.size === 0 && observed.routes.size > 0) {
    // Lockstep while the two tables list the same destinations in the same order (the kernel lists a
    // table in address order, and the desired index inserts its routes in address order): no lookups.
    // From the first difference on, each destination is looked up.
    const it = observed.routes.entries();
    let cur = it.next();
    let inStep = true;
    desired.routes.forEach((want, dest) => {
      let have: Route | undefined;
      if (inStep && !cur.done && cur.value[0] === dest) { have = cur.value[1]; cur = it.next(); }
      else { inStep = false; have = observed.routes.get(dest); }
      if (ctx.routeWith(dest, want, have)) matched++;
    });
  } else if (observed.routes.size === 0) desired.routes.forEach((want, dest) => { ctx.routeWith(dest, want, undefined); });
  else desired.routes.forEach((want, dest) => { if (ctx.routeTo(dest, want)) matched++; });
  // observed routes that are not desired (skipped when every observed route matched a desired one)
  if (matched < observed.routes.size) for (const dest of observed.routes.keys()) if (!desired.routes.has(dest)) ctx.routeTo(dest, undefined);
  for (const key of desired.peers.keys()) ctx.peer(key);
  for (const key of ctx.obsPeers.keys()) if (!desired.peers.has(key)) ctx.peer(key);
  return ctx.finish();
}

/** plan() restricted to the given routes and peers (plus device, rules, firewall, sysctls, stale
 *  devices): O(scope). Equal to plan() when the scope holds every route and peer that differs. */
export function planScoped(desired: DesiredDataplane, observed: ObservedDataplane, scope: PlanScope): Plan {
  if (observed.conflicts.length > 0) return blocked(desired, observed);
  if (desired.kind === 'disabled') return tearDown(desired, observed);
  const ctx = new Ctx(desired, observed, true);
  const routes = new Set(scope.routes);
  const peers = new Set(scope.peers);
  ctx.scopedPeers = peers;
  for (const dest of routes) ctx.route(dest);
  for (const key of peers) ctx.peer(key);
  return ctx.finish();
}

function blocked(desired: DesiredDataplane, observed: ObservedDataplane): Plan {
  return { node: desired.node, ops: [], problems: desired.problems, blocked: observed.conflicts };
}

// ---------------------------------------------------------------------------------------------------

function sameRoute(a: Route, b: Route): boolean {
  return a.kind === b.kind && (a.kind === 'throw' || a.device === (b as { device: string }).device);
}

function sameRule(a: Rule, b: Rule): boolean {
  return a.family === b.family && a.priority === b.priority && a.table === b.table && a.fwmark === b.fwmark && a.mask === b.mask;
}

function sameRules(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function chainId(c: FirewallChain): string {
  return `${c.family}/${c.table}/${c.name}`;
}

function stripHooked(c: FirewallChain & { readonly hooked?: boolean }): FirewallChain {
  return { family: c.family, table: c.table, name: c.name, hook: c.hook, rules: c.rules };
}

/** A cheap total-order key: IPv4 CIDRs map to address * 64 + length; IPv6 to Infinity (then compareCidr). */
function cidrKey(c: string): number {
  const slash = c.indexOf('/');
  const n = ipv4TextNumber(c, slash);
  if (n < 0) return Infinity;
  let len = 0;
  for (let i = slash + 1; i < c.length; i++) len = len * 10 + (c.charCodeAt(i) - 48);
  return n * 64 + len;
}

function sortBy<T>(items: T[], keyOf: (t: T) => string, numeric: boolean): T[] {
  const n = items.length;
  if (n < 2) return items;
  if (!numeric) return items.sort((a, b) => { const x = keyOf(a), y = keyOf(b); return x < y ? -1 : x > y ? 1 : 0; });
  const keys = new Float64Array(n);
  let sorted = true;
  for (let i = 0; i < n; i++) {
    const k = (keys[i] = cidrKey(keyOf(items[i]!)));
    if (i > 0 && !(keys[i - 1]! < k)) sorted = false; // equal keys (IPv6) need compareCidr
  }
  // the desired index inserts its routes in address order, so the ops often come sorted already
  if (sorted) return items;
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  idx.sort((i, j) => {
    const a = keys[i]!, b = keys[j]!;
    if (a !== b) return a < b ? -1 : 1;
    return a === Infinity ? compareCidr(keyOf(items[i]!) as Cidr, keyOf(items[j]!) as Cidr) : 0;
  });
  const out = new Array<T>(n);
  for (let i = 0; i < n; i++) out[i] = items[idx[i]!]!;
  return out;
}

function routeDest(op: Operation): string {
  return op.kind === 'route-add' || op.kind === 'route-replace' || op.kind === 'route-delete' ? op.route.dest : '';
}

function peerKeyOf(op: Operation): string {
  if (op.kind === 'peer-add') return op.peer.publicKey;
  if (op.kind === 'peer-update' || op.kind === 'peer-remove') return op.publicKey;
  return '';
}

class Ctx {
  readonly devName: string;
  readonly table: number;
  /** The observed device if it survives phase 0 (a wgplane device of another name is deleted). */
  readonly obsDevice: ObservedDevice | null;
  readonly obsPeers: ReadonlyMap<WgKey, ObservedPeer>;
  /** Devices deleted in phase 0: their device routes and peers are gone with them. */
  readonly gone = new Set<string>();
  readonly phase0: Operation[] = [];
  readonly retreat: Operation[] = [];
  readonly peerAdds: Operation[] = [];
  readonly peerRemoves: Operation[] = [];
  readonly advance: Operation[] = [];
  scopedPeers: ReadonlySet<WgKey> | null = null;
  private desiredOwner: Map<Cidr, WgKey> | null = null;
  private observedOwner: Map<Cidr, WgKey> | null = null;

  constructor(readonly desired: DesiredEnabled, readonly observed: ObservedDataplane, readonly scoped: boolean) {
    this.devName = desired.device.name;
    this.table = desired.table;
    let dev = observed.device;
    // phase 0: rules that differ go first (deleting a rule only steers less into the device)
    const kept: Rule[] = [];
    for (const r of observed.rules) {
      if (desired.rules.some((d) => sameRule(d, r)) && !kept.some((k) => sameRule(k, r))) kept.push(r);
      else this.phase0.push({ kind: 'rule-delete', rule: r, origin: RULE_DIFFERS });
    }
    if (dev !== null && dev.name !== this.devName) {
      this.phase0.push({ kind: 'link-delete', name: dev.name, peers: observed.peers.size, origin: STALE_DEVICE });
      this.gone.add(dev.name);
      dev = null;
    }
    for (const name of [...observed.staleDevices].sort()) {
      if (name === this.devName || this.gone.has(name)) continue;
      this.phase0.push({ kind: 'link-delete', name, peers: 0, origin: STALE_DEVICE });
      this.gone.add(name);
    }
    this.obsDevice = dev;
    this.obsPeers = dev === null ? new Map() : observed.peers;
  }

  private observedRoute(dest: Cidr): Route | undefined {
    const r = this.observed.routes.get(dest);
    if (r !== undefined && r.kind === 'device' && this.gone.has(r.device)) return undefined;
    return r;
  }

  route(dest: Cidr): void {
    this.routeTo(dest, this.desired.routes.get(dest));
  }

  /** Diffs one destination; returns whether the observed table has it. */
  routeTo(dest: Cidr, want: DesiredRoute | undefined): boolean {
    return this.routeWith(dest, want, this.gone.size === 0 ? this.observed.routes.get(dest) : this.observedRoute(dest));
  }

  /** routeTo with the observed route of dest given. */
  routeWith(dest: Cidr, want: DesiredRoute | undefined, have: Route | undefined): boolean {
    const table = this.table;
    if (want === undefined) {
      if (have !== undefined) this.retreat.push({ kind: 'route-delete', table, route: have, origin: NOT_DESIRED });
      return have !== undefined;
    }
    const into = want.route.kind === 'device' ? this.advance : this.retreat;
    if (have === undefined) {
      into.push(want.cause === undefined
        ? { kind: 'route-add', table, route: want.route, origin: want.origin }
        : { kind: 'route-add', table, route: want.route, origin: want.origin, cause: want.cause });
    } else if (!sameRoute(want.route, have)) {
      into.push(want.cause === undefined
        ? { kind: 'route-replace', table, route: want.route, from: have, origin: want.origin }
        : { kind: 'route-replace', table, route: want.route, from: have, origin: want.origin, cause: want.cause });
    }
    return have !== undefined;
  }

  /** Which desired peer holds an allowed IP (over the scope when scoped). Built on first need. */
  private desiredHolder(ip: Cidr): WgKey | undefined {
    if (this.desiredOwner === null) {
      const m = new Map<Cidr, WgKey>();
      const keys = this.scopedPeers ?? this.desired.peers.keys();
      for (const k of keys) {
        const p = this.desired.peers.get(k);
        if (p !== undefined) for (const ip of p.allowedIPs) m.set(ip, k);
      }
      this.desiredOwner = m;
    }
    return this.desiredOwner.get(ip);
  }

  private observedHolder(ip: Cidr): WgKey | undefined {
    if (this.observedOwner === null) {
      const m = new Map<Cidr, WgKey>();
      const keys = this.scopedPeers ?? this.obsPeers.keys();
      for (const k of keys) {
        const p = this.obsPeers.get(k);
        if (p !== undefined) for (const ip of p.allowedIPs) m.set(ip, k);
      }
      this.observedOwner = m;
    }
    return this.observedOwner.get(ip);
  }

  private movesFor(key: WgKey, ips: readonly Cidr[]): AllowedIPMove[] {
    const moves: AllowedIPMove[] = [];
    if (this.obsPeers.size === 0) return moves;
    for (const ip of ips) {
      const from = this.observedHolder(ip);
      if (from !== undefined && from !== key) moves.push({ allowedIP: ip, from });
    }
    return moves;
  }

  peer(key: WgKey): void {
    const want = this.desired.peers.get(key);
    const have = this.obsPeers.get(key);
    const device = this.devName;
    if (want === undefined) {
      if (have !== undefined) this.peerRemoves.push({ kind: 'peer-remove', device, publicKey: key, node: null, origin: NOT_DESIRED });
      return;
    }
    const origin: Origin = { kind: 'peer', node: want.node };
    if (have === undefined) {
      const moves = this.movesFor(key, want.allowedIPs);
      this.peerAdds.push(moves.length > 0 ? { kind: 'peer-add', device, peer: want, origin, moves } : { kind: 'peer-add', device, peer: want, origin });
      return;
    }
    let add: Cidr[] = [];
    let remove: Cidr[] = [];
    const a = want.allowedIPs, b = have.allowedIPs;
    let same = a.length === b.length;
    if (same) for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) { same = false; break; }
    if (!same) {
      const haveSet = new Set(b);
      const wantSet = new Set(a);
      add = a.filter((ip) => !haveSet.has(ip));
      // an IP another desired peer takes leaves this one by itself in phase 4: not removed here
      remove = b.filter((ip) => !wantSet.has(ip) && this.desiredHolder(ip) === undefined).sort(compareCidr);
    }
    const endpointChanged = want.endpoint !== have.endpoint;
    const keepaliveChanged = want.persistentKeepalive !== have.persistentKeepalive;
    if (add.length > 0 || endpointChanged || keepaliveChanged) {
      const moves = this.movesFor(key, add);
      this.peerAdds.push({
        kind: 'peer-update', device, publicKey: key, node: want.node,
        ...(endpointChanged ? { endpoint: want.endpoint } : {}),
        ...(keepaliveChanged ? { persistentKeepalive: want.persistentKeepalive } : {}),
        addAllowedIPs: add, removeAllowedIPs: [], origin,
        ...(moves.length > 0 ? { moves } : {}),
      });
    }
    if (remove.length > 0) {
      this.peerRemoves.push({ kind: 'peer-update', device, publicKey: key, node: want.node, addAllowedIPs: [], removeAllowedIPs: remove, origin });
    }
  }

  finish(): Plan {
    const d = this.desired;
    const dev = d.device;
    const obs = this.observed;
    const ops: Operation[] = [...this.phase0];
    // 1. sysctls (those of the device itself once it exists, at the end of 2.)
    const o = this.obsDevice;
    const sysctlKeys = [...d.sysctls.keys()].sort();
    const sysctl = (key: string, into: Operation[]): void => {
      const value = d.sysctls.get(key)!;
      const from = sysctlDevice(key) !== null && o === null ? null : obs.sysctls.get(key) ?? null;
      if (from !== value) {
        into.push({ kind: 'sysctl-set', key, value, from, origin: sysctlOrigin(key) });
      }
    };
    for (const key of sysctlKeys) if (sysctlDevice(key) === null) sysctl(key, ops);
    // 2. the device
    let deferredUp: Operation | null = null;
    if (o === null) {
      ops.push({ kind: 'link-create', name: dev.name, mtu: dev.mtu, origin: { kind: 'setting', setting: 'mtu', detail: dev.mtuReason } });
      ops.push({ kind: 'link-set-up', name: dev.name, origin: { kind: 'setting', setting: 'interfaceName', detail: 'new device' } });
      for (const address of dev.addresses) ops.push({ kind: 'address-add', device: dev.name, address, origin: { kind: 'setting', setting: 'interfaceName', detail: 'device address' } });
      ops.push({ kind: 'device-configure', device: dev.name, listenPort: dev.listenPort, fwmark: dev.fwmark, publicKey: dev.publicKey, origin: { kind: 'setting', setting: 'listenPort', detail: 'new device' } });
    } else {
      if (o.mtu !== dev.mtu) ops.push({ kind: 'link-set-mtu', name: dev.name, mtu: dev.mtu, from: o.mtu, origin: { kind: 'setting', setting: 'mtu', detail: dev.mtuReason } });
      // an existing device that is down may hold routes whose peers come later: bring it up after them
      if (!o.up) deferredUp = { kind: 'link-set-up', name: dev.name, origin: { kind: 'setting', setting: 'interfaceName', detail: 'the device is down' } };
      const have = new Set(o.addresses);
      const want = new Set(dev.addresses);
      for (const address of [...o.addresses].sort(compareCidr)) if (!want.has(address)) ops.push({ kind: 'address-delete', device: dev.name, address, origin: NOT_DESIRED });
      for (const address of dev.addresses) if (!have.has(address)) ops.push({ kind: 'address-add', device: dev.name, address, origin: { kind: 'setting', setting: 'interfaceName', detail: 'device address' } });
      const keyDiffers = dev.publicKey !== null ? o.publicKey !== dev.publicKey : o.publicKey === null;
      if (o.listenPort !== dev.listenPort || o.fwmark !== dev.fwmark || keyDiffers) {
        const what = o.listenPort !== dev.listenPort ? 'listenPort' : o.fwmark !== dev.fwmark ? 'fwmark' : null;
        ops.push({
          kind: 'device-configure', device: dev.name, listenPort: dev.listenPort, fwmark: dev.fwmark, publicKey: dev.publicKey,
          origin: what === null ? { kind: 'setting', setting: 'enabled', detail: 'the device key differs from the stored key' } : { kind: 'setting', setting: what },
        });
      }
    }
    for (const key of sysctlKeys) if (sysctlDevice(key) !== null) sysctl(key, ops);
    // 3..6
    pushAll(ops, sortBy(this.retreat, routeDest, true));
    pushAll(ops, sortBy(this.peerAdds, peerKeyOf, false));
    pushAll(ops, sortBy(this.peerRemoves, peerKeyOf, false));
    if (deferredUp !== null) ops.push(deferredUp);
    const advance = sortBy(this.advance, routeDest, true);
    // 7. rules
    const tail: Operation[] = [];
    const kept = obs.rules;
    for (const r of d.rules) {
      if (!kept.some((k) => sameRule(k, r))) tail.push({ kind: 'rule-add', rule: r, origin: { kind: 'setting', setting: 'rulePriority', detail: `what WireGuard has not yet sent (no mark 0x${r.fwmark.toString(16)}) looks up table ${r.table}` } });
    }
    // 8. firewall
    pushAll(tail, firewallOps(d.firewall, obs.firewall, d));
    return { node: d.node, ops: ops.concat(advance, tail), problems: d.problems, blocked: [] };
  }
}

function pushAll(into: Operation[], from: readonly Operation[]): void {
  for (let i = 0; i < from.length; i++) into.push(from[i]!);
}

/** Why a sysctl is wanted (the reason a plan shows). */
function sysctlOrigin(key: string): Origin {
  if (key.endsWith('src_valid_mark')) return { kind: 'setting', setting: 'hostEncryption', detail: 'host encryption: the reverse-path check honours the mark set in raw WGPLANE-PREROUTING' };
  if (key.endsWith('/rp_filter')) return { kind: 'setting', setting: 'hostEncryption', detail: 'host encryption: loose reverse-path check on the device (WireGuard checks sources against allowed IPs itself)' };
  return { kind: 'setting', setting: 'enabled', detail: key };
}

/** Why a chain is wanted (the reason a plan shows). */
function chainOrigin(c: FirewallChain, d: DesiredEnabled): Origin {
  const port = d.device.listenPort;
  switch (c.name) {
    case 'WGPLANE-INPUT': return { kind: 'setting', setting: 'listenPort', detail: `lets WireGuard in (UDP port ${port}) ahead of the host's INPUT rules` };
    case 'WGPLANE-OUTPUT': return { kind: 'setting', setting: 'listenPort', detail: `lets WireGuard out (UDP to port ${port}) ahead of the host's OUTPUT rules` };
    case 'WGPLANE-PREROUTING': {
      const r = d.rules[0];
      const what = r === undefined ? '' : ` (0x${r.fwmark.toString(16)}) so their reverse-path check skips table ${r.table}`;
      return { kind: 'setting', setting: 'hostEncryption', detail: `host encryption: marks packets from the underlay${what}` };
    }
    default: return { kind: 'setting', setting: 'enabled', detail: c.name };
  }
}

function firewallOps(desired: readonly FirewallChain[], observed: ObservedDataplane['firewall'], d: DesiredEnabled): Operation[] {
  const ops: Operation[] = [];
  const obsById = new Map(observed.map((c) => [chainId(c), c] as const));
  const desiredIds = new Set(desired.map(chainId));
  // chains that go away (or move to another hook) are removed before the desired ones are set
  for (const c of [...observed].sort((a, b) => (chainId(a) < chainId(b) ? -1 : 1))) {
    const want = desired.find((w) => chainId(w) === chainId(c));
    if (!desiredIds.has(chainId(c)) || (want !== undefined && want.hook !== c.hook)) {
      ops.push({ kind: 'firewall-chain', chain: stripHooked(c), remove: true, hooked: c.hooked, origin: NOT_DESIRED });
    }
  }
  for (const c of [...desired].sort((a, b) => (chainId(a) < chainId(b) ? -1 : 1))) {
    const have = obsById.get(chainId(c));
    const present = have !== undefined && have.hook === c.hook;
    if (present && have.hooked && sameRules(have.rules, c.rules)) continue;
    ops.push({ kind: 'firewall-chain', chain: stripHooked(c), remove: false, hooked: present ? have.hooked : false, origin: chainOrigin(c, d) });
  }
  return ops;
}

function tearDown(desired: DesiredDisabled, observed: ObservedDataplane): Plan {
  const origin: Origin = { kind: 'setting', setting: 'enabled', detail: desired.why === 'node-label' ? 'node labelled wgplane.io/wireguard=disabled' : 'enabled is false' };
  const ops: Operation[] = [];
  for (const rule of observed.rules) ops.push({ kind: 'rule-delete', rule, origin });
  const perFamily: [number, number] = [0, 0];
  for (const dest of observed.routes.keys()) perFamily[familyOf(dest) === 4 ? 0 : 1]++;
  for (const family of [4, 6] as Family[]) {
    const routes = perFamily[family === 4 ? 0 : 1];
    if (routes > 0) ops.push({ kind: 'table-flush', table: desired.table, family, routes, origin });
  }
  if (observed.device !== null) ops.push({ kind: 'link-delete', name: observed.device.name, peers: observed.peers.size, origin });
  for (const name of [...observed.staleDevices].sort()) {
    if (name !== observed.device?.name) ops.push({ kind: 'link-delete', name, peers: 0, origin });
  }
  for (const c of [...observed.firewall].sort((a, b) => (chainId(a) < chainId(b) ? -1 : 1))) {
    ops.push({ kind: 'firewall-chain', chain: stripHooked(c), remove: true, hooked: c.hooked, origin });
  }
  return { node: desired.node, ops, problems: desired.problems, blocked: [] };
}
