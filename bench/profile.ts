// Profiling helper (not a benchmark case): runs desired and plan for one size a few times in one process
// and prints each step's wall time, CPU time and garbage-collection time (by kind), so that
// `node --cpu-prof --import tsx bench/profile.ts ...` or `--trace-gc` shows where the time goes.
// Usage: node --expose-gc --import tsx bench/profile.ts aks|podcidr NODES PODS [empty|programmed] [REPEAT].
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { desired } from '../core/desired.js';
import { EMPTY_OBSERVED, type DesiredDataplane } from '../core/model.js';
import { plan } from '../planner/plan.js';
import { STORED_KEY_PLACEHOLDER } from '../planner/kernel-model.js';
import { generateCluster, programmedObserved, type Flavor } from '../testing/generate.js';

const [flavor = 'aks', nodes = '5000', pods = '110', against = 'empty', repeat = '1'] = process.argv.slice(2);
const { snapshot } = generateCluster({ flavor: flavor as Flavor, nodes: Number(nodes), podsPerNode: Number(pods), seed: 1, objects: false });
const self = snapshot.nodes.values().next().value!;
const host = { underlayMtu: 1500, publicKey: self.publicKey };
const need = (d: ReturnType<typeof desired>): DesiredDataplane => {
  if (d._tag === 'Left') throw new Error(d.left.message);
  return d.right;
};
const d0 = against === "programmed" ? need(desired(snapshot, self.name, host)) : null as never;
const observed = against === "programmed" && d0.kind === "enabled" ? programmedObserved(d0, STORED_KEY_PLACEHOLDER, 1500) : EMPTY_OBSERVED;

const GC_KINDS: Record<number, string> = { 1: 'minor', 2: 'major', 4: 'incremental', 8: 'weakcb' };
let gcs: { start: number; duration: number; kind: string }[] = [];
const obs = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcs.push({ start: e.startTime, duration: e.duration, kind: GC_KINDS[((e as unknown as { detail: { kind: number } }).detail).kind] ?? '?' });
});
obs.observe({ entryTypes: ['gc'] });
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 100));

function gcIn(t0: number, t1: number): string {
  const by = new Map<string, [number, number]>();
  for (const g of gcs) if (g.start >= t0 && g.start < t1) {
    const x = by.get(g.kind) ?? [0, 0];
    by.set(g.kind, [x[0] + 1, x[1] + g.duration]);
  }
  return [...by].map(([k, [n, ms]]) => `${n} ${k} ${ms.toFixed(0)} ms`).join(', ') || 'none';
}

for (let i = 0; i < Number(repeat); i++) {
  (globalThis as { gc?: () => void }).gc?.();
  await tick();
  gcs = [];
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const d = need(desired(snapshot, self.name, host));
  const t1 = performance.now();
  const c1 = process.cpuUsage(c0);
  const p = plan(d, observed);
  const t2 = performance.now();
  const c2 = process.cpuUsage(c0);
  await tick();
  const cpu = (c: NodeJS.CpuUsage) => ((c.user + c.system) / 1000).toFixed(0);
  console.log(`desired ${(t1 - t0).toFixed(0)} ms (cpu ${cpu(c1)}; gc: ${gcIn(t0, t1)}), plan ${(t2 - t1).toFixed(0)} ms (cpu total ${cpu(c2)}; gc: ${gcIn(t1, t2)}), ops ${p.ops.length}, peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
}
obs.disconnect();
