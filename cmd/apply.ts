// `wgplane apply` and `wgplane cleanup`: program this node, or remove what wgplane owns.
import type { Command } from 'commander';
import type { DesiredDataplane, ObservedDataplane, Settings } from '../core/model.js';
import type { WgKey } from '../core/key.js';
import { loadOrCreateKey, readKey } from '../adapters/keystore.js';
import { withLock } from '../adapters/lock.js';
import { detectBackend } from '../adapters/backend.js';
import { reconcile, type ReconcileOutcome } from '../adapters/reconcile.js';
import { CliError, DEFAULT_STATE_DIR, desiredOrFail, intFlag, loadSnapshot, nodeNameFrom, observeFor, ownedNameOptions, ownedSettings, workloadPrefix, type OwnedNameOptions } from './common.js';
import { backendOption, outputOption, print, showPlan, type Output } from './output.js';
import { planAndShow } from './plan.js';

interface ApplyOpts { snapshot: string; node?: string; stateDir: string; wireguard: 'auto' | 'kernel' | 'userspace'; output: Output; dryRun?: boolean; attempts: number; maxLines?: number }

async function applyDesired(
  o: Pick<ApplyOpts, 'stateDir' | 'wireguard' | 'output' | 'attempts' | 'maxLines'>,
  settings: Settings,
  prefix: string | null,
  makeDesired: (observed: ObservedDataplane, publicKey: WgKey | null) => DesiredDataplane,
  needKey: boolean,
): Promise<ReconcileOutcome> {
  return withLock(o.stateDir, async () => {
    const key = needKey ? await loadOrCreateKey(o.stateDir) : await readKey(o.stateDir);
    const backend = await detectBackend(o.wireguard, undefined);
    const observeNow = () => observeFor('live', settings, prefix);
    return reconcile({
      observe: observeNow,
      desired: (observed) => makeDesired(observed, key?.publicKey ?? null),
      backend,
      privateKey: key ? key.privateKey : async () => { throw new CliError('no node key in ' + o.stateDir); },
      attempts: o.attempts,
      onPlan: (p, d, attempt) => {
        if (attempt > 1 && o.output === 'text') print(`\nAttempt ${attempt}: the dataplane still differs; applying again.`);
        showPlan(p, d, o.output, backend, o.maxLines);
      },
      onResult: (r) => {
        if (r.kind === 'failed') process.stderr.write(`wgplane: operation ${r.applied + 1} (${r.failed.kind}) failed: ${r.message}\n`);
      },
    });
  });
}

function report(outcome: ReconcileOutcome, output: Output): void {
  if (outcome.kind === 'converged') {
    if (outcome.applied.length === 0) {
      if (output === 'text') print('No changes. The dataplane matches the desired state.');
      else print(JSON.stringify({ result: 'unchanged', applied: 0 }));
    } else if (output === 'text') {
      print(`\nApplied ${outcome.applied.length} operations (${outcome.attempts - 1} round${outcome.attempts > 2 ? 's' : ''}); the dataplane matches the desired state.`);
    } else {
      print(JSON.stringify({ result: 'converged', applied: outcome.applied.length, rounds: outcome.attempts - 1 }));
    }
    process.exitCode = 0;
  } else if (outcome.kind === 'blocked') {
    throw new CliError(`nothing was changed: ${outcome.plan.blocked.join('; ')}`);
  } else {
    throw new CliError(`gave up after ${outcome.attempts} attempts: ${outcome.lastError}`);
  }
}

export function registerApply(program: Command): void {
  program
  .command('apply')
  .description('Program this node: observe, plan, execute, and repeat until the kernel matches the desired state.')
  .requiredOption('-s, --snapshot <path>', 'cluster manifests: a file, a directory, or - for stdin')
  .option('-n, --node <name>', 'this node (default: $NODE_NAME, then the hostname)')
  .option('--state-dir <dir>', 'where the node key and the lock are kept', DEFAULT_STATE_DIR)
  .addOption(backendOption())
  .addOption(outputOption())
  .option('--dry-run', 'only show the plan (same as `wgplane plan`)')
  .option('--attempts <n>', 'how many rounds of execution before giving up', intFlag(1, 1000), 5)
  .option('--max-lines <n>', 'show at most N lines per group in text output', intFlag(1))
  .action(async (o: ApplyOpts) => {
    const snapshot = await loadSnapshot(o.snapshot);
    const node = nodeNameFrom(o.node);
    const prefix = workloadPrefix(snapshot);
    if (o.dryRun) return planAndShow(snapshot, node, await observeFor('live', snapshot.settings, prefix), o, null);
    // Fail on bad input before touching anything: derive once with no host facts.
    const probe = desiredOrFail(snapshot, node, { underlayMtu: null, publicKey: null });
    const outcome = await applyDesired(o, snapshot.settings, prefix, (observed, publicKey) => {
      return desiredOrFail(snapshot, node, { underlayMtu: observed.underlayMtu, publicKey });
    }, probe.kind === 'enabled');
    report(outcome, o.output);
  });

ownedNameOptions(program
  .command('cleanup')
  .description("Remove everything wgplane owns on this node (rule, routes, peers, device, chains), and only that. Safe where wgplane never ran."))
  .option('--state-dir <dir>', 'where the lock is kept', DEFAULT_STATE_DIR)
  .addOption(backendOption())
  .addOption(outputOption())
  .option('--attempts <n>', 'how many rounds before giving up', intFlag(1, 1000), 5)
  .action(async (o: OwnedNameOptions & { stateDir: string; wireguard: 'auto' | 'kernel' | 'userspace'; output: Output; attempts: number }) => {
    const { settings } = await ownedSettings(o);
    const node = nodeNameFrom(undefined);
    const teardown: DesiredDataplane = { kind: 'disabled', node, why: 'setting', interfaceName: settings.interfaceName, table: settings.routingTable, problems: [] };
    const outcome = await applyDesired({ ...o, maxLines: undefined }, settings, null, () => teardown, false);
    report(outcome, o.output);
  });
}
