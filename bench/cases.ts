// The benchmark cases of `npm run bench` and their targets.
import type { Flavor } from '../testing/generate.js';

export type Mode =
  | 'baseline' // node + tsx + the pipeline modules loaded, nothing else: the floor of every RSS figure
  | 'empty' // desired -> plan against a node where wgplane never ran (decode excluded)
  | 'empty-decode' // JSON text -> parse -> decode -> desired -> plan against an empty node
  | 'programmed'; // desired -> plan against the node already holding the desired state (plan must be empty)

export interface CaseSpec {
  readonly id: string;
  readonly mode: Mode;
  readonly flavor: Flavor;
  readonly nodes: number;
  readonly podsPerNode: number;
  readonly seed: number;
  /** Time target in ms, memory target (peak RSS) in MB; absent: no target, figures for information. */
  readonly maxMs?: number;
  readonly maxRssMB?: number;
  /** Path of the JSON List text (empty-decode), written by the prepare step. */
  readonly fixture?: string;
}

export interface CaseResult {
  readonly id: string;
  readonly status: 'ok' | 'unavailable' | 'error';
  /** Wall time of the timed part, ms. */
  readonly timeMs?: number;
  /** Peak RSS of the child process (process.resourceUsage().maxRSS), MB. */
  readonly peakRssMB?: number;
  /** RSS when the timed part began (input in memory), MB. */
  readonly startRssMB?: number;
  /** Parts of the timed part, ms. */
  readonly parts?: Readonly<Record<string, number>>;
  readonly ops?: number;
  readonly routes?: number;
  readonly peers?: number;
  readonly inputMB?: number;
  readonly note?: string;
}

const SIZES: readonly { flavor: Flavor; nodes: number; pods: number; targets: boolean }[] = [
  { flavor: 'aks', nodes: 1000, pods: 30, targets: false },
  { flavor: 'aks', nodes: 5000, pods: 30, targets: false },
  { flavor: 'aks', nodes: 5000, pods: 110, targets: true },
  { flavor: 'podcidr', nodes: 5000, pods: 110, targets: true },
];

export const TARGET_MS = 1000;
export const TARGET_RSS_MB = 1024;

export function allCases(): CaseSpec[] {
  const out: CaseSpec[] = [{ id: 'baseline (node + tsx + modules)', mode: 'baseline', flavor: 'aks', nodes: 0, podsPerNode: 0, seed: 1 }];
  for (const s of SIZES) {
    const size = `${s.flavor} ${s.nodes.toLocaleString('en')} x ${s.pods}`;
    const base = { flavor: s.flavor, nodes: s.nodes, podsPerNode: s.pods, seed: 1 };
    out.push({ id: `${size}: cold plan vs empty (decode excluded)`, mode: 'empty', ...base, ...(s.targets ? { maxMs: TARGET_MS, maxRssMB: TARGET_RSS_MB } : {}) });
    out.push({ id: `${size}: cold plan vs empty (decode included)`, mode: 'empty-decode', ...base });
    out.push({ id: `${size}: plan vs fully programmed (no change)`, mode: 'programmed', ...base, ...(s.targets ? { maxMs: TARGET_MS } : {}) });
  }
  return out;
}
