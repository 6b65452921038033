// `wgplane plan`: what would change on this node, and why. Changes nothing.
import type { Command } from 'commander';
import type { ClusterSnapshot, NodeName, ObservedDataplane } from '../core/model.js';
import { plan as makePlan } from '../planner/plan.js';
import { readKey } from '../adapters/keystore.js';
import { predictBackend } from '../adapters/backend.js';
import { DEFAULT_STATE_DIR, desiredOrFail, intFlag, loadSnapshot, nodeNameFrom, observeFor, parseObservedMode, workloadPrefix } from './common.js';
import { backendOption, outputOption, showPlan, type Output } from './output.js';

export function registerPlan(program: Command): void {
  program
  .command('plan')
  .description('Show what would change on this node, and why. Changes nothing. Exit code: 0 no change, 2 changes pending, 1 error.')
  .requiredOption('-s, --snapshot <path>', 'cluster manifests: a file, a directory, or - for stdin (kubectl get nodes,pods,configmaps -A -o yaml)')
  .option('-n, --node <name>', 'this node (default: $NODE_NAME, then the hostname)')
  .option('--observed <source>', 'the current state: live (read this kernel), empty (a node where wgplane never ran), or a JSON file from `wgplane observe`', 'live')
  .addOption(outputOption())
  .option('--state-dir <dir>', 'where the node key is kept (its public key is read if present)', DEFAULT_STATE_DIR)
  .option('--max-lines <n>', 'show at most N lines per group in text output', intFlag(1))
  .addOption(backendOption())
  .action(async (o: { snapshot: string; node?: string; observed: string; output: Output; stateDir: string; maxLines?: number; wireguard: 'auto' | 'kernel' | 'userspace' }) => {
    const snapshot = await loadSnapshot(o.snapshot);
    const node = nodeNameFrom(o.node);
    const mode = parseObservedMode(o.observed);
    const observed = await observeFor(mode, snapshot.settings, workloadPrefix(snapshot));
    const backend = mode === 'live' ? await predictBackend(o.wireguard, observed.device?.linkKind ?? null) : 'decided by apply (kernel module if present, else wireguard-go)';
    await planAndShow(snapshot, node, observed, o, backend);
  });
}

/** Plans once against `observed` (with this node's stored public key, if any), shows the plan and sets the
 *  exit code: 0 no change, 2 changes pending, 1 blocked. `wgplane plan` and `wgplane apply --dry-run`. */
export async function planAndShow(
  snapshot: ClusterSnapshot,
  node: NodeName,
  observed: ObservedDataplane,
  o: { readonly stateDir: string; readonly output: Output; readonly maxLines?: number },
  backend: string | null,
): Promise<void> {
  const key = await readKey(o.stateDir).catch(() => null);
  const d = desiredOrFail(snapshot, node, { underlayMtu: observed.underlayMtu, publicKey: key?.publicKey ?? null });
  const p = makePlan(d, observed);
  showPlan(p, d, o.output, backend, o.maxLines);
  process.exitCode = p.blocked.length > 0 ? 1 : p.ops.length > 0 ? 2 : 0;
}
