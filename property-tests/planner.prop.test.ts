// Properties of the planner against the kernel model: generated desired states (enabled and disabled,
// both families, peers with overlapping allowed IPs across generations, key changes, IP moves) and
// generated kernel states (a previous generation's state with random owned junk, plus foreign objects).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import * as E from 'fp-ts/lib/Either.js';
import type { Cidr, Family } from '../core/ip.js';
import { compareCidr, familyOf } from '../core/ip.js';
import type { WgKey } from '../core/key.js';
import type { DesiredDataplane, DesiredEnabled, DesiredPeer, DesiredRoute, FirewallChain, Operation, Route } from '../core/model.js';
import { deviceSysctlKey, EMPTY_OBSERVED } from '../core/model.js';
import type { ForeignState, ModelState } from '../planner/kernel-model.js';
import { applyOperation, applyPlan, blackHoles } from '../planner/kernel-model.js';
import { plan, planScoped } from '../planner/plan.js';
import { desired } from '../core/desired.js';
import type { Flavor } from '../testing/generate.js';
import { generateCluster, generateKey, movePodIP, nodeNames, removePod, setNodeKey } from '../testing/generate.js';
import { fcParams } from './seed.js';
import { c, DEV, key, node, TABLE } from './planner-fixtures.js';

const IPS: readonly Cidr[] = [
  ...[1, 2, 3, 4, 5, 6, 7, 8].map((i) => c(`10.1.0.${i}/32`)),
  c('10.2.0.0/24'), c('10.2.0.5/32'), c('10.3.0.0/16'),
  ...[1, 2, 3].map((i) => c(`fd00::${i}/128`)), c('fd00:1::/64'),
];
const KEYS = [1, 2, 3, 4, 5, 6, 7].map(key);
const NODES = ['n1', 'n2', 'n3', 'n4'].map(node);
const CHAINS: readonly FirewallChain[] = [
  { family: 4, table: 'filter', name: 'WGPLANE-INPUT', hook: 'INPUT', rules: ['-p udp -m udp --dport 51820 -j ACCEPT'] },
  { family: 4, table: 'raw', name: 'WGPLANE-PREROUTING', hook: 'PREROUTING', rules: ['-i lo -j RETURN', '-j MARK --set-xmark 0x100000/0x100000'] },
  { family: 6, table: 'filter', name: 'WGPLANE-INPUT', hook: 'INPUT', rules: ['-p udp -m udp --dport 51820 -j ACCEPT'] },
];

const FOREIGN: ForeignState = {
  links: [
    { name: 'eth0', mtu: 1500, up: true, addresses: [c('192.168.0.0/24')] },
    { name: 'wg-other', mtu: 1420, up: true, addresses: [c('10.99.0.1/32')] },
  ],
  tables: new Map<number, ReadonlyMap<Cidr, Route>>([
    [254, new Map([[c('0.0.0.0/0'), { kind: 'device', dest: c('0.0.0.0/0'), device: 'eth0' } as Route]])],
    [100, new Map([[c('10.1.0.2/32'), { kind: 'device', dest: c('10.1.0.2/32'), device: 'wg-other' } as Route]])],
  ]),
  rules: [{ family: 4, priority: 99, table: 100, fwmark: 0x100000, mask: 0x100000, protocol: 0 }],
  chains: [{ family: 4, table: 'filter', name: 'KUBE-FIREWALL', hook: 'INPUT', rules: ['-j DROP'], hooked: true }],
};
const START: ModelState = { ...EMPTY_OBSERVED, table: TABLE, foreign: FOREIGN };

// ---------------------------------------------------------------------------------------------------
// Desired states

const enabledArb: fc.Arbitrary<DesiredEnabled> = fc
  .record({
    keys: fc.shuffledSubarray(KEYS, { minLength: 0, maxLength: NODES.length }),
    assign: fc.array(fc.integer({ min: -2, max: NODES.length - 1 }), { minLength: IPS.length, maxLength: IPS.length }),
    endpoints: fc.array(fc.constantFrom('192.168.0.10:51820', '192.168.0.11:51820', null), { minLength: NODES.length, maxLength: NODES.length }),
    keepalive: fc.constantFrom(0, 25),
    priority: fc.constantFrom(99, 100),
    fwmark: fc.constantFrom(0x100000, 0x200000),
    mtu: fc.constantFrom(1420, 1340),
    port: fc.constantFrom(51820, 51821),
    addresses: fc.subarray([c('10.0.0.1/32'), c('fd00:ff::1/128')]),
    devKey: fc.constantFrom(null, key(9)),
    chains: fc.subarray([...CHAINS]),
    chainVariant: fc.boolean(),
    sysctl: fc.constantFrom(null, '1', '0'),
    deviceSysctl: fc.constantFrom(null, '2', '1'),
  })
  .map((g) => {
    const peerIPs: Cidr[][] = g.keys.map(() => []);
    const routes = new Map<Cidr, DesiredRoute>();
    IPS.forEach((ip, i) => {
      const a = g.assign[i]!;
      if (a === -1 || (a >= 0 && a >= g.keys.length)) {
        routes.set(ip, { route: { kind: 'throw', dest: ip }, origin: { kind: 'node-ip', node: NODES[Math.max(a, 0)]! }, cause: a === -1 ? 'local' : 'no-key' });
      } else if (a >= 0) {
        peerIPs[a]!.push(ip);
        routes.set(ip, { route: { kind: 'device', dest: ip, device: DEV }, origin: { kind: 'pod', pod: `default/p${i}` as never, node: NODES[a]! } });
      }
    });
    const peers = new Map<WgKey, DesiredPeer>();
    g.keys.forEach((k, i) => peers.set(k, { node: NODES[i]!, publicKey: k, endpoint: g.endpoints[i]!, allowedIPs: peerIPs[i]!.sort(compareCidr), persistentKeepalive: g.keepalive }));
    const families = [...new Set<Family>([...routes.keys()].map(familyOf))].sort();
    return {
      kind: 'enabled',
      node: node('self'),
      facts: { aks: false, routeSource: 'workloadIPs', hostEncryption: true, workloadInterfacePrefix: null, families },
      device: { name: DEV, mtu: g.mtu, listenPort: g.port, fwmark: g.fwmark, addresses: g.addresses, publicKey: g.devKey, mtuReason: 'test' },
      peers,
      table: TABLE,
      routes,
      rules: families.map((family) => ({ family, priority: g.priority, table: TABLE, fwmark: g.fwmark, mask: g.fwmark })),
      firewall: g.chains.map((ch) => (g.chainVariant ? { ...ch, rules: [...ch.rules, '-j RETURN'] } : ch)),
      sysctls: new Map([
        ...(g.sysctl === null ? [] : [['net.ipv4.conf.all.src_valid_mark', g.sysctl] as const]),
        ...(g.deviceSysctl === null ? [] : [[deviceSysctlKey(DEV, 'rp_filter'), g.deviceSysctl] as const]),
      ]),
      problems: [],
    } satisfies DesiredEnabled;
  });

const desiredArb: fc.Arbitrary<DesiredDataplane> = fc.oneof(
  { weight: 4, arbitrary: enabledArb },
  { weight: 1, arbitrary: fc.constantFrom('setting' as const, 'node-label' as const).map((why) => ({ kind: 'disabled' as const, node: node('self'), why, interfaceName: DEV, table: TABLE, problems: [] })) },
);

// ---------------------------------------------------------------------------------------------------
// Kernel states: a previous generation applied, then random owned junk

const routeArb: fc.Arbitrary<Route> = fc.oneof(
  fc.constantFrom(...IPS).map((dest): Route => ({ kind: 'throw', dest })),
  fc.record({ dest: fc.constantFrom(...IPS), device: fc.constantFrom(DEV, 'wg-old', 'eth0') }).map(({ dest, device }): Route => ({ kind: 'device', dest, device })),
);
const junkOpArb: fc.Arbitrary<Operation> = fc.oneof(
  routeArb.map((route): Operation => ({ kind: 'route-add', table: TABLE, route, origin: { kind: 'unowned', detail: 'junk' } })),
  routeArb.map((route): Operation => ({ kind: 'route-delete', table: TABLE, route, origin: { kind: 'unowned', detail: 'junk' } })),
  fc.record({ k: fc.constantFrom(...KEYS, key(8)), ips: fc.subarray([...IPS], { maxLength: 4 }), ep: fc.constantFrom(null, '192.168.0.12:51820') }).map(
    ({ k, ips, ep }): Operation => ({ kind: 'peer-add', device: DEV, peer: { node: node('junk'), publicKey: k, endpoint: ep, allowedIPs: ips, persistentKeepalive: 0 }, origin: { kind: 'unowned', detail: 'junk' } }),
  ),
  fc.record({ k: fc.constantFrom(...KEYS), ips: fc.subarray([...IPS], { maxLength: 3 }) }).map(
    ({ k, ips }): Operation => ({ kind: 'peer-update', device: DEV, publicKey: k, node: null, addAllowedIPs: ips, removeAllowedIPs: [], origin: { kind: 'unowned', detail: 'junk' } }),
  ),
  fc.constantFrom(...KEYS).map((publicKey): Operation => ({ kind: 'peer-remove', device: DEV, publicKey, node: null, origin: { kind: 'unowned', detail: 'junk' } })),
  fc.record({ family: fc.constantFrom(4 as const, 6 as const), priority: fc.constantFrom(99, 98), table: fc.constantFrom(TABLE, 7) }).map(
    (r): Operation => ({ kind: 'rule-add', rule: { ...r, fwmark: 0x100000, mask: 0x100000 }, origin: { kind: 'unowned', detail: 'junk' } }),
  ),
  fc.record({ ch: fc.constantFrom(...CHAINS, { ...CHAINS[0]!, name: 'WGPLANE-OLD' }), remove: fc.boolean() }).map(
    ({ ch, remove }): Operation => ({ kind: 'firewall-chain', chain: { ...ch, rules: ['-j ACCEPT'] }, remove, hooked: false, origin: { kind: 'unowned', detail: 'junk' } }),
  ),
  fc.constantFrom('0', '1').map((value): Operation => ({ kind: 'sysctl-set', key: 'net.ipv4.conf.all.src_valid_mark', value, from: null, origin: { kind: 'unowned', detail: 'junk' } })),
  fc.constantFrom('0', '1', '2').map((value): Operation => ({ kind: 'sysctl-set', key: deviceSysctlKey(DEV, 'rp_filter'), value, from: null, origin: { kind: 'unowned', detail: 'junk' } })),
  fc.constantFrom(1280, 1500).map((mtu): Operation => ({ kind: 'link-set-mtu', name: DEV, mtu, from: 0, origin: { kind: 'unowned', detail: 'junk' } })),
  fc.constantFrom(c('10.0.0.9/32'), c('10.0.0.1/32')).map((address): Operation => ({ kind: 'address-add', device: DEV, address, origin: { kind: 'unowned', detail: 'junk' } })),
);

function applyIgnoringFailures(s: ModelState, ops: readonly Operation[]): ModelState {
  for (const op of ops) {
    const r = applyOperation(s, op);
    if (E.isRight(r)) s = r.right;
  }
  return s;
}

const observedArb: fc.Arbitrary<ModelState> = fc
  .record({ prev: fc.option(enabledArb, { nil: null }), stale: fc.boolean(), down: fc.boolean(), unhook: fc.boolean(), junk: fc.array(junkOpArb, { maxLength: 12 }) })
  .map(({ prev, stale, down, unhook, junk }) => {
    let s: ModelState = START;
    if (prev !== null) {
      const r = applyPlan(s, plan(prev, s).ops);
      if (E.isLeft(r)) throw new Error(`generation did not apply: ${r.left.message}`);
      s = r.right;
    }
    if (stale) s = { ...s, staleDevices: ['wg-old'] };
    s = applyIgnoringFailures(s, junk);
    if (down && s.device !== null) s = { ...s, device: { ...s.device, up: false } };
    if (unhook) s = { ...s, firewall: s.firewall.map((f) => ({ ...f, hooked: false })) };
    return s;
  });

// ---------------------------------------------------------------------------------------------------
// Checks

const sameRoute = (a: Route | undefined, b: Route | undefined): boolean => JSON.stringify(a) === JSON.stringify(b);

function assertOwnedIsDesired(s: ModelState, d: DesiredDataplane): void {
  assert.deepEqual(s.staleDevices, []);
  if (d.kind === 'disabled') {
    assert.equal(s.device, null);
    assert.equal(s.peers.size, 0);
    assert.equal(s.routes.size, 0);
    assert.deepEqual(s.rules, []);
    assert.deepEqual(s.firewall, []);
    return;
  }
  const dev = s.device;
  assert.ok(dev !== null, 'device exists');
  assert.deepEqual(
    { name: dev.name, mtu: dev.mtu, up: dev.up, addresses: [...dev.addresses].sort(compareCidr), listenPort: dev.listenPort, fwmark: dev.fwmark },
    { name: d.device.name, mtu: d.device.mtu, up: true, addresses: [...d.device.addresses].sort(compareCidr), listenPort: d.device.listenPort, fwmark: d.device.fwmark },
  );
  if (d.device.publicKey !== null) assert.equal(dev.publicKey, d.device.publicKey);
  else assert.notEqual(dev.publicKey, null);
  assert.deepEqual([...s.peers.keys()].sort(), [...d.peers.keys()].sort());
  for (const [k, p] of d.peers) {
    const o = s.peers.get(k)!;
    assert.deepEqual({ endpoint: o.endpoint, allowedIPs: o.allowedIPs, ka: o.persistentKeepalive }, { endpoint: p.endpoint, allowedIPs: p.allowedIPs, ka: p.persistentKeepalive });
  }
  assert.deepEqual([...s.routes.keys()].sort(), [...d.routes.keys()].sort());
  for (const [dest, r] of d.routes) assert.ok(sameRoute(s.routes.get(dest), r.route), `route ${dest}`);
  const ruleKey = (r: object): string => JSON.stringify(r);
  assert.deepEqual(s.rules.map(ruleKey).sort(), d.rules.map(ruleKey).sort());
  const chainKey = (ch: FirewallChain): string => JSON.stringify([ch.family, ch.table, ch.name, ch.hook, ch.rules]);
  assert.deepEqual(s.firewall.map(chainKey).sort(), d.firewall.map(chainKey).sort());
  assert.ok(s.firewall.every((f) => f.hooked));
  for (const [k, v] of d.sysctls) assert.equal(s.sysctls.get(k), v);
}

function reversed(s: ModelState): ModelState {
  return { ...s, peers: new Map([...s.peers].reverse()), routes: new Map([...s.routes].reverse()) };
}
function reversedDesired(d: DesiredDataplane): DesiredDataplane {
  return d.kind === 'disabled' ? d : { ...d, peers: new Map([...d.peers].reverse()), routes: new Map([...d.routes].reverse()) };
}

describe('planner properties (kernel model)', () => {
  it('applying the plan converges: nothing left to plan, the owned state is the desired one, foreign untouched', () => {
    fc.assert(
      fc.property(desiredArb, observedArb, (d, s) => {
        const p = plan(d, s);
        const r = applyPlan(s, p.ops);
        if (E.isLeft(r)) assert.fail(`op ${r.left.index} (${p.ops[r.left.index]!.kind}) failed: ${r.left.message}`);
        assert.deepEqual(plan(d, r.right).ops, []);
        assertOwnedIsDesired(r.right, d);
        assert.deepEqual(r.right.foreign, FOREIGN);
      }),
      fcParams(),
    );
  });

  it('no prefix of the plan steers a destination into the device without a peer, unless it was so before', () => {
    fc.assert(
      fc.property(desiredArb, observedArb, (d, s) => {
        const before = blackHoles(s, DEV);
        let cur = s;
        for (const op of plan(d, s).ops) {
          const r = applyOperation(cur, op);
          if (E.isLeft(r)) return; // a failure stops the plan; the convergence property reports it
          cur = r.right;
          for (const dest of blackHoles(cur, DEV)) assert.ok(before.has(dest), `after ${op.kind}: ${dest} is black-holed`);
        }
      }),
      fcParams(),
    );
  });

  it('is deterministic and independent of map insertion order', () => {
    fc.assert(
      fc.property(desiredArb, observedArb, (d, s) => {
        const p = plan(d, s);
        assert.deepEqual(plan(d, s), p);
        assert.deepEqual(plan(reversedDesired(d), reversed(s)), p);
      }),
      fcParams(),
    );
  });

  it('planScoped over the changed routes and peers equals plan', () => {
    fc.assert(
      fc.property(enabledArb, observedArb, (d, s) => {
        const routes = new Set<Cidr>();
        for (const dest of new Set([...d.routes.keys(), ...s.routes.keys()])) if (!sameRoute(d.routes.get(dest)?.route, s.routes.get(dest))) routes.add(dest);
        const peers = new Set<WgKey>();
        for (const k of new Set([...d.peers.keys(), ...s.peers.keys()])) {
          const a = d.peers.get(k), b = s.peers.get(k);
          if (a === undefined || b === undefined || a.endpoint !== b.endpoint || a.persistentKeepalive !== b.persistentKeepalive || a.allowedIPs.join() !== b.allowedIPs.join()) peers.add(k);
        }
        assert.deepEqual(planScoped(d, s, { routes, peers }), plan(d, s));
      }),
      fcParams(),
    );
  });

  it('the kernel model never throws, whatever the operations', () => {
    fc.assert(
      fc.property(observedArb, fc.array(junkOpArb, { maxLength: 20 }), fc.array(fc.constantFrom<Operation['kind']>('link-create', 'link-delete', 'link-set-up', 'device-configure', 'table-flush'), { maxLength: 5 }), (s, ops, extra) => {
        const more: Operation[] = extra.map((k): Operation => {
          const origin = { kind: 'unowned', detail: 'x' } as const;
          switch (k) {
            case 'link-create': return { kind: k, name: DEV, mtu: 1420, origin };
            case 'link-delete': return { kind: k, name: 'eth9', peers: 0, origin };
            case 'link-set-up': return { kind: k, name: DEV, origin };
            case 'device-configure': return { kind: k, device: DEV, listenPort: 1, fwmark: 1, publicKey: null, origin };
            default: return { kind: 'table-flush', table: TABLE, family: 6, routes: 0, origin };
          }
        });
        const r = applyPlan(s, [...more, ...ops]);
        assert.ok(E.isLeft(r) || E.isRight(r));
        applyIgnoringFailures(s, [...ops, ...more]);
      }),
      fcParams(),
    );
  });
});

// ---------------------------------------------------------------------------------------------------
// Over generated clusters, through desired(): one generation programmed, then keys change, pod IPs move
// between nodes, pods go; the next plan converges without a black-hole prefix and leaves foreign alone.

describe('planner properties over generated clusters (desired())', () => {
  const clusterArb = fc.record({
    nodes: fc.integer({ min: 2, max: 6 }),
    podsPerNode: fc.integer({ min: 0, max: 4 }),
    flavor: fc.constantFrom<Flavor>('aks', 'podcidr'),
    dualStack: fc.boolean(),
    keys: fc.constantFrom<boolean | number>(true, 0.5),
    seed: fc.nat(),
    changes: fc.array(fc.record({ what: fc.constantFrom('key', 'move', 'remove', 'unkey'), a: fc.nat(), b: fc.nat() }), { maxLength: 5 }),
    disableAfter: fc.boolean(),
  });
  it('each generation converges from the last with no black-hole prefix, foreign untouched', () => {
    fc.assert(
      fc.property(clusterArb, (g) => {
        let cl = generateCluster({ nodes: g.nodes, podsPerNode: g.podsPerNode, flavor: g.flavor, dualStack: g.dualStack, keys: g.keys, seed: g.seed });
        const names = nodeNames(cl);
        const self = names[0]!;
        const host = { underlayMtu: 1500, publicKey: null };
        const want = (): DesiredDataplane => {
          const d = desired(cl.snapshot, self, host);
          if (E.isLeft(d)) assert.fail(`desired failed: ${JSON.stringify(d.left)}`);
          return d.right;
        };
        const step = (s: ModelState, d: DesiredDataplane): ModelState => {
          const dev = d.kind === 'enabled' ? d.device.name : d.interfaceName;
          const before = blackHoles(s, dev);
          const p = plan(d, s);
          let cur = s;
          for (const op of p.ops) {
            const r = applyOperation(cur, op);
            if (E.isLeft(r)) assert.fail(`${op.kind} failed: ${r.left}`);
            cur = r.right;
            for (const dest of blackHoles(cur, dev)) assert.ok(before.has(dest), `after ${op.kind}: ${dest} is black-holed`);
          }
          assert.deepEqual(plan(d, cur).ops, []);
          assertOwnedIsDesired(cur, d);
          assert.deepEqual(cur.foreign, FOREIGN);
          return cur;
        };
        let s = step(START, want());
        for (const ch of g.changes) {
          const pods = [...cl.snapshot.pods.values()].filter((p) => !p.hostNetwork && p.nodeName !== null);
          const nodeName = names[ch.a % names.length]!;
          if (ch.what === 'key') cl = setNodeKey(cl, nodeName, generateKey(ch.b + 1_000_000));
          else if (ch.what === 'unkey') cl = setNodeKey(cl, nodeName, null);
          else if (pods.length > 0) {
            const pod = pods[ch.b % pods.length]!;
            cl = ch.what === 'remove' ? removePod(cl, pod.key) : movePodIP(cl, pod.key, nodeName).cluster;
          }
        }
        s = step(s, want());
        if (g.disableAfter) {
          cl = { ...cl, snapshot: { ...cl.snapshot, settings: { ...cl.snapshot.settings, enabled: false } } };
          step(s, want());
        }
      }),
      fcParams(60),
    );
  });
});
