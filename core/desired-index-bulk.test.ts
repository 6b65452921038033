// The bulk build of the desired index (sorted IPv4 claims, covered pod claims kept pending) followed by
// pod and handshake events equals full recomputation: the events after a bulk build see every claim the
// build made, whether or not prepareForEvents ran first. Pools of IPs are small so that conflicts (pod vs
// pod, pod vs node IP, covered vs outside-block claims, duplicated node addresses) are frequent.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as E from 'fp-ts/lib/Either.js';
import { fcParams } from '../property-tests/seed.js';
import { desired } from './desired.js';
import { applyPodChange, buildDesiredIndex, claimsOf, desiredOf, prepareForEvents, type DesiredIndex } from './desired-index.js';
import { comparable, mkNode, mkPod, mkSnapshot, testKey } from './desired-fixtures.js';
import type { Cidr } from './ip.js';
import type { HostFacts, NodeInfo, NodeName, PodInfo, PodKey, Settings } from './model.js';

const A = 'a' as NodeName;
type Mode = 'aks' | 'podcidr' | 'dual';

function nodes(mode: Mode, keys: readonly (number | null)[]): NodeInfo[] {
  return ['a', 'b', 'c', 'd'].map((name, i) => {
    const key = i === 0 ? testKey(0) : keys[i] === null ? null : testKey(keys[i]!);
    if (mode === 'aks') return mkNode(name, { internal: [`10.224.0.${i + 1}`], external: i === 2 ? ['10.224.0.3'] : [], providerID: `azure:///vm/${name}`, key });
    if (mode === 'dual') return mkNode(name, { internal: [`10.0.0.${i + 1}`, `fd00::${i + 1}`], podCIDRs: [`10.244.${i}.0/24`, `fd10:0:0:${i}::/64`], key });
    return mkNode(name, { internal: [`10.0.0.${i + 1}`], podCIDRs: i === 3 ? ['10.244.2.0/24'] : [`10.244.${i}.0/24`], key });
  });
}

const POOL: Record<Mode, string[]> = {
  aks: ['10.224.0.2', '10.224.0.3', '10.224.0.9', '10.224.0.10', '10.224.0.11', '10.224.1.1'],
  podcidr: ['10.244.0.5', '10.244.1.5', '10.244.1.6', '10.244.2.5', '10.9.0.1', '10.0.0.2'],
  dual: ['10.244.1.5', '10.244.0.5', 'fd10:0:0:1::5', 'fd10:0:0:2::5', '10.9.0.1', 'fd99::1'],
};

const podArb = (mode: Mode, i: number): fc.Arbitrary<PodInfo> =>
  fc.record({
    node: fc.constantFrom<string | null>('a', 'b', 'c', 'd', null),
    ips: fc.uniqueArray(fc.constantFrom(...POOL[mode]), { maxLength: 2 }),
    phase: fc.constantFrom('Running', 'Running', 'Pending', 'Succeeded'),
  }).map((p) => mkPod(`ns/p${i}`, p.node, p.ips, p.phase));

const scenario = fc.constantFrom<Mode>('aks', 'podcidr', 'dual').chain((mode) =>
  fc.record({
    mode: fc.constant(mode),
    hostEncryption: fc.constantFrom<Settings['hostEncryption']>('auto', 'true', 'false'),
    keys: fc.array(fc.constantFrom<number | null>(1, 2, 3, 2, null), { minLength: 4, maxLength: 4 }),
    initial: fc.array(fc.integer({ min: 0, max: 7 }).chain((i) => podArb(mode, i)), { maxLength: 10 }),
    events: fc.array(fc.integer({ min: 0, max: 7 }).chain((i) => fc.tuple(fc.constant(i), fc.option(podArb(mode, i), { freq: 3 }))), { maxLength: 12 }),
    prepare: fc.boolean(),
  }),
);

describe('desired index: bulk build then events equals full recomputation', () => {
  it('for random clusters and event sequences', () => {
    fc.assert(
      fc.property(scenario, ({ mode, hostEncryption, keys, initial, events, prepare }) => {
        const ns = nodes(mode, keys);
        const settings: Partial<Settings> = { hostEncryption, workloadInterfacePrefix: 'veth' };
        const host: HostFacts = { underlayMtu: 1500, publicKey: testKey(0) };
        const pods = new Map<PodKey, PodInfo>();
        for (const p of initial) pods.set(p.key, p);
        const built = buildDesiredIndex(mkSnapshot(ns, [...pods.values()], settings), A, host);
        if (E.isLeft(built) || built.right.kind !== 'index') return; // settings errors are covered elsewhere
        const ix: DesiredIndex = built.right;
        if (prepare) prepareForEvents(ix);
        for (const [i, after] of events) {
          const key = `ns/p${i}` as PodKey;
          const before = pods.get(key) ?? null;
          const prev = new Map(ix.routes);
          const change = applyPodChange(ix, before, after);
          if (after === null) pods.delete(key);
          else pods.set(key, after);
          assert.deepStrictEqual(comparable(E.right(desiredOf(ix))), comparable(desired(mkSnapshot(ns, [...pods.values()], settings), A, host)));
          const changed = new Set<Cidr>();
          for (const k of new Set([...prev.keys(), ...ix.routes.keys()])) {
            if (JSON.stringify(prev.get(k)) !== JSON.stringify(ix.routes.get(k))) changed.add(k);
          }
          assert.deepStrictEqual(new Set(change.routes), changed);
        }
        // every pod IP that counts has its claim in the index
        for (const p of pods.values()) {
          if (p.nodeName === null || p.phase === 'Succeeded') continue;
          for (const ip of p.ips) {
            const k = (ip.includes(':') ? `${ip}/128` : `${ip}/32`) as Cidr;
            assert.ok(claimsOf(ix, k).some((c) => (c.kind === 'covered' ? c.origin : c).kind === 'pod'), `claim of ${p.key} on ${k}`);
          }
        }
      }),
      fcParams(300),
    );
  });
});
