// The kernel model at scale (not a case of npm run bench): applies the cold plan of a generated AKS cluster
// to an empty node with applyPlan (one copy, then in place) and checks the result equals programmedObserved
// and plans nothing more. Usage: node --import tsx bench/kernel-model.ts
import { performance } from 'node:perf_hooks';
import * as E from 'fp-ts/lib/Either.js';
import { desired } from '../core/desired.js';
import { EMPTY_OBSERVED } from '../core/model.js';
import { plan } from '../planner/plan.js';
import { applyPlan, STORED_KEY_PLACEHOLDER } from '../planner/kernel-model.js';
import { generateCluster, programmedObserved } from '../testing/generate.js';
import { isDeepStrictEqual } from 'node:util';
for (const [nodes, pods] of [[1000, 30], [5000, 110]] as const) {
  const { snapshot } = generateCluster({ flavor: 'aks', nodes, podsPerNode: pods, seed: 1, objects: false });
  const self = snapshot.nodes.values().next().value!;
  const d = desired(snapshot, self.name, { underlayMtu: 1500, publicKey: self.publicKey });
  if (E.isLeft(d) || d.right.kind !== 'enabled') throw new Error('x');
  const p = plan(d.right, EMPTY_OBSERVED);
  const t0 = performance.now();
  const r = applyPlan(EMPTY_OBSERVED, p.ops);
  const t1 = performance.now();
  if (E.isLeft(r)) throw new Error(r.left.message);
  const prog = programmedObserved(d.right, STORED_KEY_PLACEHOLDER, null);
  const same = isDeepStrictEqual({ ...r.right, routes: new Map([...r.right.routes].sort()), peers: new Map([...r.right.peers].sort()) }, { ...prog, routes: new Map([...prog.routes].sort()), peers: new Map([...prog.peers].sort()) });
  if (!same || plan(d.right, r.right).ops.length !== 0) process.exitCode = 1;
  console.log(`${nodes} x ${pods}: applyPlan of ${p.ops.length} ops ${(t1 - t0).toFixed(0)} ms; equals programmedObserved: ${same}; replan ops ${plan(d.right, r.right).ops.length}`);
}
