// Fault injection on the real kernel: for a plan of 100+ operations, stop the executor after operation k
// (every k), check the kernel is no worse for traffic (no destination that was reachable is steered into
// the device without a peer), then apply again and check that it converges. Both for a fresh node and
// for a change (pods moved between nodes, a key changed, a node gone, nodes added).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from 'fp-ts/lib/Either.js';
import type { WgKey } from '../core/key.js';
import type { DesiredDataplane, NodeName, ObservedDataplane, Operation, Settings } from '../core/model.js';
import { desired } from '../core/desired.js';
import { plan } from '../planner/plan.js';
import { blackHoles } from '../planner/kernel-model.js';
import { generateCluster, generateKey, movePodIP, nodeNames, removePod, setNodeKey, type GeneratedCluster } from '../testing/generate.js';
import { Lab, addUnderlay, kernelTestSkipReason } from '../testing/netns.js';
import { observe } from './observer.js';
import { reconcile } from './reconcile.js';
import { loadOrCreateKey } from './keystore.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const skip = kernelTestSkipReason();

function desiredFor(c: GeneratedCluster, node: NodeName, o: ObservedDataplane, publicKey: WgKey): DesiredDataplane {
  const d = desired(c.snapshot, node, { underlayMtu: o.underlayMtu, publicKey });
  if (E.isLeft(d)) throw new Error(d.left.message);
  return d.right;
}

test('a plan stopped after any operation leaves no black hole and the next apply converges', { skip: skip ?? false, timeout: 900_000 }, async (t) => {
  const lab = new Lab('wgpf');
  t.after(() => lab.dispose());
  const ns = await lab.namespace();
  const s1 = generateCluster({ nodes: 30, podsPerNode: 3, flavor: 'aks', seed: 7, objects: false });
  const local = nodeNames(s1)[0]!;
  const localIP = s1.snapshot.nodes.get(local)!.addresses[0]!.address;
  await addUnderlay(ns.run, localIP);
  const key = await loadOrCreateKey(mkdtempSync(path.join(tmpdir(), 'wgpf-key-')));
  const settings: Settings = s1.snapshot.settings;

  // S2: two pods move from node 1 to node 2, node 3 gets a new key, node 4's pods go, node 5 loses its key.
  const names = nodeNames(s1);
  let s2 = s1;
  const podsOf = (c: GeneratedCluster, n: NodeName) => [...c.snapshot.pods.values()].filter((p) => p.nodeName === n);
  for (const p of podsOf(s2, names[1]!).slice(0, 2)) s2 = movePodIP(s2, p.key, names[2]!).cluster;
  s2 = setNodeKey(s2, names[3]!, generateKey(999));
  for (const p of podsOf(s2, names[4]!)) s2 = removePod(s2, p.key);
  s2 = setNodeKey(s2, names[5]!, null);

  const observeNow = () => observe({ interfaceName: settings.interfaceName, table: settings.routingTable, workloadInterfacePrefix: 'azv', run: ns.run });
  const teardown: DesiredDataplane = { kind: 'disabled', node: local, why: 'setting', interfaceName: settings.interfaceName, table: settings.routingTable, problems: [] };
  const converge = async (target: (o: ObservedDataplane) => DesiredDataplane, stopAfter?: number) =>
    reconcile({ observe: observeNow, desired: target, backend: 'userspace', privateKey: key.privateKey, run: ns.run, attempts: stopAfter === undefined ? 3 : 1, backoffMs: 10, ...(stopAfter !== undefined ? { stopAfter } : {}) });
  const toS1 = (o: ObservedDataplane) => desiredFor(s1, local, o, key.publicKey);
  const toS2 = (o: ObservedDataplane) => desiredFor(s2, local, o, key.publicKey);

  const scenarios = [
    { name: 'fresh node', start: (_: ObservedDataplane) => teardown, target: toS1 },
    { name: 'change', start: toS1, target: toS2 },
    { name: 'tear-down', start: toS1, target: (_: ObservedDataplane) => teardown },
  ];
  for (const sc of scenarios) {
    await t.test(sc.name, async () => {
      const reset = await converge(sc.start);
      assert.equal(reset.kind, 'converged', JSON.stringify(reset.kind === 'gave-up' ? reset.lastError : ''));
      const o0 = await observeNow();
      const ops: readonly Operation[] = plan(sc.target(o0), o0).ops;
      if (sc.name === 'fresh node') assert.ok(ops.length >= 100, `want a plan of at least 100 operations, got ${ops.length}`);
      const before = blackHoles(o0, settings.interfaceName, settings.routingTable);
      for (let k = 1; k < ops.length; k++) {
        const again = await converge(sc.start);
        assert.equal(again.kind, 'converged');
        const partial = await converge(sc.target, k);
        assert.notEqual(partial.kind, 'blocked');
        const ok = await observeNow();
        const holes = [...blackHoles(ok, settings.interfaceName, settings.routingTable)].filter((d) => !before.has(d));
        assert.deepEqual(holes, [], `after operation ${k} (${ops[k - 1]!.kind}) of ${ops.length}: black holes`);
        const done = await converge(sc.target);
        assert.equal(done.kind, 'converged', `after stopping at ${k}: ${done.kind === 'gave-up' ? done.lastError : ''}`);
        const final = await observeNow();
        assert.equal(plan(sc.target(final), final).ops.length, 0);
      }
    });
  }
});
