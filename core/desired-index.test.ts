import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as E from 'fp-ts/lib/Either.js';
import { fcParams } from '../property-tests/seed.js';
import { desired } from './desired.js';
import { applyPodChange, buildDesiredIndex, desiredOf, sortCidrs, type DesiredIndex } from './desired-index.js';
import { comparable, HOST, mkNode, mkPod, mkSnapshot, testKey } from './desired-fixtures.js';
import { compareCidr, hostCidr, ipv4FromNumber, parseIP, type Cidr, type IP } from './ip.js';
import type { DesiredPeer, DesiredRoute, NodeInfo, NodeName, PodInfo, PodKey } from './model.js';

const A = 'a' as NodeName;

type Mode = 'aks' | 'podcidr' | 'dual';
const NODE_NAMES = ['a', 'b', 'c', 'd'];

function nodesFor(mode: Mode, keys: readonly (number | null)[], disabled: readonly boolean[]): NodeInfo[] {
  return NODE_NAMES.map((name, i) => {
    const labels: Record<string, string> = disabled[i] && i > 0 ? { 'wgplane.io/wireguard': 'disabled' } : {};
    const key = i === 0 ? testKey(0) : keys[i] === null ? null : testKey(keys[i]!);
    if (mode === 'aks') return mkNode(name, { internal: [`10.224.0.${i + 1}`], providerID: `azure:///vm/${name}`, labels, key });
    const v6 = mode === 'dual' ? { podCIDRs: [`10.244.${i}.0/24`, `fd10:0:0:${i}::/64`], internal: [`10.0.0.${i + 1}`, `fd00::${i + 1}`] } : { podCIDRs: [`10.244.${i}.0/24`], internal: [`10.0.0.${i + 1}`] };
    return mkNode(name, { ...v6, labels, key });
  });
}

const IP_POOL: Record<Mode, string[]> = {
  aks: ['10.224.0.2', '10.224.0.9', '10.224.0.10', '10.224.0.11', '10.224.1.1', 'fd00::9'],
  podcidr: ['10.244.1.5', '10.244.2.5', '10.244.0.7', '10.9.0.1', '10.9.0.2', '10.0.0.3'],
  dual: ['10.244.1.5', 'fd10:0:0:1::5', 'fd10:0:0:2::5', '10.9.0.1', 'fd99::1', '10.0.0.2'],
};

const podArb = (mode: Mode, idx: number) =>
  fc.record({
    node: fc.constantFrom<string | null>('a', 'b', 'c', 'd', null, 'ghost'),
    ips: fc.uniqueArray(fc.constantFrom(...IP_POOL[mode]), { maxLength: 2 }),
    phase: fc.constantFrom('Running', 'Running', 'Pending', 'Succeeded', 'Unknown'),
    hostNetwork: fc.boolean(),
  }).map((p) => mkPod(`ns/p${idx}`, p.node, p.ips, p.phase, p.hostNetwork));

const scenario = fc
  .constantFrom<Mode>('aks', 'podcidr', 'dual')
  .chain((mode) =>
    fc.record({
      mode: fc.constant(mode),
      keys: fc.array(fc.constantFrom<number | null>(1, 2, 3, 2, null), { minLength: 4, maxLength: 4 }),
      disabled: fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
      events: fc.array(fc.integer({ min: 0, max: 7 }).chain((i) => fc.tuple(fc.constant(i), fc.option(podArb(mode, i), { freq: 4 }))), { maxLength: 25 }),
    }),
  );

function routesCopy(ix: DesiredIndex): Map<Cidr, DesiredRoute> {
  return new Map(ix.routes);
}

describe('desired index: incremental equals full recomputation', () => {
  it('for random pod event sequences', () => {
    fc.assert(
      fc.property(scenario, ({ mode, keys, disabled, events }) => {
        const nodes = nodesFor(mode, keys, disabled);
        const pods = new Map<PodKey, PodInfo>();
        const built = buildDesiredIndex(mkSnapshot(nodes, []), A, HOST);
        if (E.isLeft(built) || built.right.kind !== 'index') throw new Error('expected an index');
        const ix = built.right;
        for (const [i, after] of events) {
          const key = `ns/p${i}` as PodKey;
          const before = pods.get(key) ?? null;
          const prevRoutes = routesCopy(ix);
          const prevPeers = new Map<string, DesiredPeer>(ix.peers);
          const prevProblems = desiredOf(ix).problems;
          const change = applyPodChange(ix, before, after);
          if (after === null) pods.delete(key);
          else pods.set(key, after);

          const full = desired(mkSnapshot(nodes, [...pods.values()]), A, HOST);
          const view = desiredOf(ix);
          assert.deepStrictEqual(comparable(E.right(view)), comparable(full));

          const changed = new Set<Cidr>();
          for (const k of new Set([...prevRoutes.keys(), ...ix.routes.keys()])) {
            try { assert.deepStrictEqual(ix.routes.get(k), prevRoutes.get(k)); } catch { changed.add(k); }
          }
          assert.deepStrictEqual(new Set(change.routes), changed, 'changed route keys');
          const changedPeers = new Set<string>();
          for (const [k, p] of ix.peers) if (prevPeers.get(k)?.allowedIPs.join() !== p.allowedIPs.join()) changedPeers.add(k);
          assert.deepStrictEqual(new Set(change.peers), changedPeers, 'changed peer keys');
          if (!change.problems) assert.deepStrictEqual(view.problems, prevProblems, 'problems changed but not said');
        }
      }),
      fcParams(150),
    );
  });
});

describe('desired index: example events', () => {
  const nodes = nodesFor('aks', [1, 2, 3, 3], [false, false, false, false]).slice(0, 3);
  const base = buildDesiredIndex(mkSnapshot(nodes, []), A, HOST);
  if (E.isLeft(base) || base.right.kind !== 'index') throw new Error('expected an index');
  const ix = base.right;
  const p1 = mkPod('ns/p1', 'b', ['10.224.0.50']);
  it('a new pod on a peer adds one route and changes one peer', () => {
    const ch = applyPodChange(ix, null, p1);
    assert.deepEqual(ch.routes, ['10.224.0.50/32']);
    assert.deepEqual(ch.peers, [testKey(2)]);
    assert.equal(ch.problems, false);
    assert.equal(ix.routes.get('10.224.0.50/32' as Cidr)!.route.kind, 'device');
  });
  it('a pod moving to another node is one route change and two peers', () => {
    const moved = mkPod('ns/p1', 'c', ['10.224.0.50']);
    const ch = applyPodChange(ix, p1, moved);
    assert.deepEqual(ch.routes, ['10.224.0.50/32']);
    assert.deepEqual(new Set(ch.peers), new Set([testKey(2), testKey(3)]));
    assert.deepEqual(ix.peers.get(testKey(3))!.allowedIPs, ['10.224.0.3/32', '10.224.0.50/32']);
    assert.deepEqual(ix.peers.get(testKey(2))!.allowedIPs, ['10.224.0.2/32']);
  });
  it('a second claimant makes a conflict and takes the IP from the peer', () => {
    const ch = applyPodChange(ix, null, mkPod('ns/p2', 'b', ['10.224.0.50']));
    assert.deepEqual(ch.routes, ['10.224.0.50/32']);
    assert.equal(ch.problems, true);
    assert.equal(ix.routes.get('10.224.0.50/32' as Cidr)!.cause, 'conflict');
    assert.deepEqual(ix.peers.get(testKey(3))!.allowedIPs, ['10.224.0.3/32']);
  });
  it('an unchanged pod update changes nothing', () => {
    const p = mkPod('ns/p2', 'b', ['10.224.0.50']);
    const ch = applyPodChange(ix, p, { ...p });
    assert.deepEqual([ch.routes, ch.peers], [[], []]);
  });
});

describe('sortCidrs', () => {
  const v4 = fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 32 })).map(([n, len]) => {
    const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
    return `${ipv4FromNumber((n & mask) >>> 0)}/${len}` as Cidr;
  });
  const v6 = fc.ipV6().map((s) => hostCidr((parseIP(s) as E.Right<IP>).right));
  it('orders as compareCidr does', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.oneof(v4, v6, fc.constantFrom('fd10:0:0:2::/64' as Cidr, '::/0' as Cidr, 'fd10::/16' as Cidr)), { maxLength: 60 }), (xs) => {
        assert.deepStrictEqual(sortCidrs(xs), [...xs].sort(compareCidr));
      }),
      fcParams(200),
    );
  });
});
