// Unit tests of the daemon's cluster store: events, before/after of pod events, structural sharing (one
// pod event copies one bucket), the snapshot view and its cache.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
const isFrozen = (x: unknown) => Object.isFrozen(x);
import type { NodeName, PodKey } from '../../core/model.js';
import { mkNode, mkPod, mkSnapshot, testKey } from '../../core/desired-fixtures.js';
import { DEFAULT_SETTINGS } from '../../core/settings.js';
import { ClusterStore, POD_BUCKETS, applyEvent, bucketOf, podBucket, stateOf } from './store.js';
import { generateCluster } from '../../testing/generate.js';

const n = (s: string) => s as NodeName;
const k = (s: string) => s as PodKey;

describe('daemon store', () => {
  it('reports before/after for pod events and ignores no-op updates', () => {
    const st = new ClusterStore();
    const a = mkPod('default/a', 'n1', ['10.0.0.1']);
    assert.deepEqual(st.apply({ kind: 'pod-upsert', pod: a }), { kind: 'pod', before: null, after: a });
    assert.deepEqual(st.apply({ kind: 'pod-upsert', pod: { ...a } }), { kind: 'none' }, 'an equal pod is no change');
    const a2 = mkPod('default/a', 'n1', ['10.0.0.2']);
    assert.deepEqual(st.apply({ kind: 'pod-upsert', pod: a2 }), { kind: 'pod', before: a, after: a2 });
    assert.deepEqual(st.apply({ kind: 'pod-delete', key: k('default/a') }), { kind: 'pod', before: a2, after: null });
    assert.deepEqual(st.apply({ kind: 'pod-delete', key: k('default/a') }), { kind: 'none' });
    assert.equal(st.state.podCount, 0);
    assert.equal(st.state.pods.size, 0, 'an empty bucket is dropped');
  });

  it('node, settings, replace, synced and error events', () => {
    const st = new ClusterStore();
    const n1 = mkNode('n1', { internal: ['10.0.0.10'], key: testKey(1) });
    assert.equal(st.apply({ kind: 'node-upsert', node: n1 }).kind, 'node');
    assert.equal(st.apply({ kind: 'node-upsert', node: { ...n1, labels: {} } }).kind, 'none');
    const rekeyed = { ...n1, publicKey: testKey(2) };
    assert.deepEqual(st.apply({ kind: 'node-upsert', node: rekeyed }), { kind: 'node', before: n1, after: rekeyed });
    assert.equal(st.apply({ kind: 'settings', settings: DEFAULT_SETTINGS, found: false }).kind, 'none', 'defaults, not found: as initially');
    assert.equal(st.apply({ kind: 'settings', settings: { ...DEFAULT_SETTINGS, enabled: true }, found: true }).kind, 'settings');
    assert.equal(st.snapshot().settings.enabled, true);
    assert.deepEqual(st.apply({ kind: 'node-delete', name: n('n1') }), { kind: 'node', before: rekeyed, after: null });
    assert.equal(st.synced, false);
    assert.equal(st.apply({ kind: 'error', where: 'watch pods', message: 'boom' }).kind, 'none');
    assert.equal(st.apply({ kind: 'synced' }).kind, 'none');
    assert.equal(st.synced, true);
    const snap = mkSnapshot([mkNode('x', { internal: ['10.1.0.1'] })], [mkPod('ns/p', 'x', ['10.1.0.5'])]);
    assert.equal(st.apply({ kind: 'replace', snapshot: snap }).kind, 'replace');
    assert.deepEqual([...st.snapshot().nodes.keys()], ['x']);
    assert.deepEqual([...st.snapshot().pods.keys()], ['ns/p']);
  });

  it('one pod event copies only its bucket; everything else is shared and frozen', () => {
    const c = generateCluster({ nodes: 50, podsPerNode: 40, flavor: 'aks', seed: 3, objects: false });
    const s0 = stateOf(c.snapshot);
    assert.ok(isFrozen(s0) && isFrozen(s0.pods) && isFrozen(s0.nodes));
    const pod = mkPod('default/new', [...c.snapshot.nodes.keys()][0]!, ['10.231.0.7']);
    const { state: s1, change } = applyEvent(s0, { kind: 'pod-upsert', pod });
    assert.equal(change.kind, 'pod');
    const b = podBucket(pod.key);
    let sharedGroups = 0, sharedBuckets = 0, buckets = 0;
    for (const [gi, g] of s1.pods) {
      if (g === s0.pods.get(gi)) sharedGroups++;
      for (const [bi, m] of g) { buckets++; if (m === s0.pods.get(gi)?.get(bi)) sharedBuckets++; }
    }
    assert.equal(sharedGroups, s1.pods.size - 1, 'all groups but one are the same objects');
    assert.equal(sharedBuckets, buckets - 1, 'all buckets but one are the same objects');
    assert.notEqual(bucketOf(s1, b), bucketOf(s0, b));
    assert.equal(s1.nodes, s0.nodes);
    assert.equal(s0.podCount + 1, s1.podCount);
    assert.equal(bucketOf(s0, b)?.has(pod.key) ?? false, false, 'the old state is untouched');
    assert.ok(isFrozen(s1) && isFrozen(bucketOf(s1, b)));
  });

  it('the snapshot view equals the flat maps and is cached until a change', () => {
    const c = generateCluster({ nodes: 20, podsPerNode: 30, flavor: 'podcidr', seed: 5, objects: false });
    const st = new ClusterStore();
    st.apply({ kind: 'replace', snapshot: c.snapshot });
    const v = st.snapshot();
    assert.equal(st.snapshot(), v, 'cached');
    assert.equal(v.pods.size, c.snapshot.pods.size);
    assert.deepEqual(new Map(v.pods), new Map(c.snapshot.pods));
    const some = [...c.snapshot.pods.keys()][7]!;
    assert.equal(v.pods.get(some), c.snapshot.pods.get(some));
    assert.equal(v.pods.has(k('nope/nope')), false);
    st.apply({ kind: 'pod-delete', key: some });
    const v2 = st.snapshot();
    assert.notEqual(v2, v);
    assert.equal(v2.pods.size, c.snapshot.pods.size - 1);
    assert.equal(v2.pods.has(some), false);
    assert.equal(v.pods.has(some), true, 'an old view keeps showing its state');
  });

  it('buckets spread keys', () => {
    const counts = new Array<number>(POD_BUCKETS).fill(0);
    for (let i = 0; i < 100_000; i++) counts[podBucket(`ns-${i % 37}/pod-${i}`)]!++;
    assert.ok(Math.max(...counts) < 3 * (100_000 / POD_BUCKETS), `max bucket ${Math.max(...counts)}`);
  });
});
