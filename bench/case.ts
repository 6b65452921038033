// One benchmark case, run in its own child process by bench/main.ts so that the peak RSS is this case's
// alone. Usage: node --expose-gc --import tsx bench/case.ts '<CaseSpec JSON>'. Prints one line
// `RESULT <CaseResult JSON>`.
import { readFileSync, statSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { EMPTY_OBSERVED, type ObservedDataplane, type ClusterSnapshot, type DesiredDataplane, type HostFacts, type NodeName } from '../core/model.js';
import { generateCluster, programmedObserved } from '../testing/generate.js';
import { STORED_KEY_PLACEHOLDER } from '../planner/kernel-model.js';
import type { CaseResult, CaseSpec } from './cases.js';
import { loadPipeline, type Pipeline } from './pipeline.js';

const MB = 1024 * 1024;
const peakRssMB = (): number => process.resourceUsage().maxRSS / 1024; // maxRSS is in KiB
const rssMB = (): number => process.memoryUsage().rss / MB;
const gc = (): void => (globalThis as { gc?: () => void }).gc?.();

function firstNode(s: ClusterSnapshot): { name: NodeName; host: HostFacts } {
  const n = s.nodes.values().next().value;
  if (!n) throw new Error('empty cluster');
  return { name: n.name, host: { underlayMtu: 1500, publicKey: n.publicKey } };
}

function need(p: Pipeline, spec: CaseSpec, ...names: (keyof Pipeline['missing'] & string)[]): CaseResult | null {
  const missing = names.filter((n) => p[n as keyof Pipeline] === null).map((n) => p.missing[n] ?? `${n} not available yet`);
  return missing.length > 0 ? { id: spec.id, status: 'unavailable', note: missing.join('; ') } : null;
}

function desiredOrThrow(p: Pipeline, s: ClusterSnapshot, name: NodeName, host: HostFacts): DesiredDataplane {
  const r = p.desired!(s, name, host);
  if (r._tag === 'Left') throw new Error(`desired failed: ${JSON.stringify(r.left).slice(0, 300)}`);
  return r.right;
}

const sizes = (d: DesiredDataplane) => (d.kind === 'enabled' ? { routes: d.routes.size, peers: d.peers.size } : {});

async function run(spec: CaseSpec): Promise<CaseResult> {
  const p = await loadPipeline();
  const round = (x: number) => Math.round(x * 10) / 10;

  if (spec.mode === 'baseline') {
    return { id: spec.id, status: 'ok', peakRssMB: round(peakRssMB()), note: Object.values(p.missing).join('; ') || undefined };
  }

  if (spec.mode === 'empty') {
    const miss = need(p, spec, 'desired', 'plan');
    if (miss) return miss;
    const { snapshot } = generateCluster({ nodes: spec.nodes, podsPerNode: spec.podsPerNode, flavor: spec.flavor, seed: spec.seed, objects: false });
    const { name, host } = firstNode(snapshot);
    gc();
    const startRss = rssMB();
    const t0 = performance.now();
    const d = desiredOrThrow(p, snapshot, name, host);
    const t1 = performance.now();
    const pl = p.plan!(d, EMPTY_OBSERVED);
    const t2 = performance.now();
    return { id: spec.id, status: 'ok', timeMs: round(t2 - t0), peakRssMB: round(peakRssMB()), startRssMB: round(startRss), parts: { desired: round(t1 - t0), plan: round(t2 - t1) }, ops: pl.ops.length, ...sizes(d) };
  }

  if (spec.mode === 'empty-decode') {
    const miss = need(p, spec, 'decode', 'desired', 'plan');
    if (miss) return miss;
    if (!spec.fixture) throw new Error('empty-decode needs a fixture');
    const inputMB = statSync(spec.fixture).size / MB;
    let text: string | null = readFileSync(spec.fixture, 'utf8');
    gc();
    const startRss = rssMB();
    const t0 = performance.now();
    const items = (JSON.parse(text) as { items: unknown[] }).items; // the List, as the CLI's reader yields it
    text = null; // a CLI lets the text go once parsed
    const t1 = performance.now();
    const dec = p.decode!([{ source: spec.fixture, value: { apiVersion: 'v1', kind: 'List', items } }]);
    if (dec._tag === 'Left') throw new Error(`decode failed: ${JSON.stringify(dec.left).slice(0, 300)}`);
    const t2 = performance.now();
    const { name, host } = firstNode(dec.right);
    const d = desiredOrThrow(p, dec.right, name, host);
    const t3 = performance.now();
    const pl = p.plan!(d, EMPTY_OBSERVED);
    const t4 = performance.now();
    return {
      id: spec.id, status: 'ok', timeMs: round(t4 - t0), peakRssMB: round(peakRssMB()), startRssMB: round(startRss), inputMB: round(inputMB),
      parts: { 'JSON.parse': round(t1 - t0), decode: round(t2 - t1), desired: round(t3 - t2), plan: round(t4 - t3) }, ops: pl.ops.length, ...sizes(d),
    };
  }

  // programmed: the node already holds the desired state. Built with programmedObserved (O(size); equal to
  // what the kernel model planner/kernel-model.ts reaches by executing the plan from empty, as
  // testing/generate.test.ts checks; bench/kernel-model.ts checks it at 5,000 x 110 too, where applying the
  // 560k operations with the kernel model takes about 2 s, too long to set up every run).
  const miss = need(p, spec, 'desired', 'plan');
  if (miss) return miss;
  const { snapshot } = generateCluster({ nodes: spec.nodes, podsPerNode: spec.podsPerNode, flavor: spec.flavor, seed: spec.seed, objects: false });
  const { name, host } = firstNode(snapshot);
  let observed: ObservedDataplane;
  {
    const d0 = desiredOrThrow(p, snapshot, name, host);
    if (d0.kind !== 'enabled') throw new Error('the generated node is not enabled');
    observed = programmedObserved(d0, STORED_KEY_PLACEHOLDER, host.underlayMtu);
  }
  gc();
  const startRss = rssMB();
  const t0 = performance.now();
  const d = desiredOrThrow(p, snapshot, name, host);
  const t1 = performance.now();
  const pl = p.plan!(d, observed);
  const t2 = performance.now();
  const base: CaseResult = { id: spec.id, status: 'ok', timeMs: round(t2 - t0), peakRssMB: round(peakRssMB()), startRssMB: round(startRss), parts: { desired: round(t1 - t0), plan: round(t2 - t1) }, ops: pl.ops.length, ...sizes(d) };
  if (pl.ops.length !== 0) {
    const kinds = [...new Set(pl.ops.map((o) => o.kind))].join(', ');
    return { ...base, status: 'error', note: `plan against the programmed node is not empty: ${pl.ops.length} ops (${kinds})` };
  }
  return base;
}

const arg = process.argv[2];
if (!arg) {
  console.error('usage: bench/case.ts <CaseSpec JSON>');
  process.exit(2);
}
const spec = JSON.parse(arg) as CaseSpec;
try {
  const r = await run(spec);
  process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
} catch (e) {
  const r: CaseResult = { id: spec.id, status: 'error', note: e instanceof Error ? e.message : String(e) };
  process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
}
