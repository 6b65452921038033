// Observe, plan, execute, observe again: until the plan is empty or the attempts run out. Used by
// `wgplane apply`, `wgplane cleanup` and the daemon. Bad input never gets here (it fails at decoding);
// a failed observation throws before anything is changed.
import type { DesiredDataplane, ObservedDataplane, Operation, Plan } from '../core/model.js';
import { plan as makePlan } from '../planner/plan.js';
import { execute, type ExecResult } from './executor.js';
import type { Runner } from './run.js';

export interface ReconcileEnv {
  /** Reads the kernel (throws on failure). */
  readonly observe: () => Promise<ObservedDataplane>;
  /** Derives the desired state from what was observed (host facts such as the underlay MTU). */
  readonly desired: (observed: ObservedDataplane) => DesiredDataplane;
  readonly backend: 'kernel' | 'userspace';
  readonly privateKey: () => Promise<string>;
  readonly run?: Runner;
  readonly attempts?: number;
  readonly backoffMs?: number;
  /** Called with every plan about to be executed (for printing), and each result. */
  readonly onPlan?: (plan: Plan, desired: DesiredDataplane, attempt: number) => void;
  readonly onResult?: (result: ExecResult, plan: Plan, attempt: number) => void;
  /** Test hook: execute only the first N operations of each plan (a fault injected after op N). */
  readonly stopAfter?: number;
  readonly sleep?: (ms: number) => Promise<void>;
}

export type ReconcileOutcome =
  | { readonly kind: 'converged'; readonly attempts: number; readonly applied: readonly Operation[]; readonly last: Plan }
  | { readonly kind: 'blocked'; readonly plan: Plan }
  | { readonly kind: 'gave-up'; readonly attempts: number; readonly applied: readonly Operation[]; readonly lastError: string; readonly last: Plan };

export async function reconcile(env: ReconcileEnv): Promise<ReconcileOutcome> {
  const attempts = env.attempts ?? 5;
  const sleep = env.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const applied: Operation[] = [];
  let lastError = '';
  let last: Plan | null = null;
  for (let attempt = 1; attempt <= attempts + 1; attempt++) {
    const observed = await env.observe();
    const d = env.desired(observed);
    const p = makePlan(d, observed);
    last = p;
    if (p.blocked.length > 0) return { kind: 'blocked', plan: p };
    if (p.ops.length === 0) return { kind: 'converged', attempts: attempt, applied, last: p };
    if (attempt > attempts) break;
    env.onPlan?.(p, d, attempt);
    const ops = env.stopAfter !== undefined ? p.ops.slice(0, env.stopAfter) : p.ops;
    const result = await execute(ops, { backend: env.backend, privateKey: env.privateKey, observed, ...(env.run ? { run: env.run } : {}) });
    env.onResult?.(result, p, attempt);
    applied.push(...ops.slice(0, result.applied));
    if (result.kind === 'failed') {
      lastError = `operation ${result.applied + 1} (${result.failed.kind}) failed: ${result.message}`;
      await sleep((env.backoffMs ?? 200) * 2 ** (attempt - 1));
    } else if (env.stopAfter !== undefined) {
      lastError = `stopped after ${env.stopAfter} operations (injected fault)`;
    }
  }
  return { kind: 'gave-up', attempts, applied, lastError: lastError || 'the plan did not become empty', last: last! };
}
