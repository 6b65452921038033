// The wgplane CLI.
import { Command, Option } from 'commander';
import type { DesiredDataplane, NodeName, ObservedDataplane, Plan, Settings } from '../core/model.js';
import type { WgKey } from '../core/key.js';
import { DEFAULT_SETTINGS } from '../core/settings.js';
import { plan as makePlan } from '../planner/plan.js';
import { renderPlanJson, renderPlanText } from '../planner/render.js';
import { SnapshotError } from '../adapters/manifest.js';
import { observe } from '../adapters/observer.js';
import { observedToJson, ObservedFileError } from '../adapters/observed-json.js';
import { loadOrCreateKey, readKey, rotateKey, KeyStoreError } from '../adapters/keystore.js';
import { withLock, LockError } from '../adapters/lock.js';
import { detectBackend } from '../adapters/backend.js';
import { reconcile, type ReconcileOutcome } from '../adapters/reconcile.js';
import {
  CliError, DEFAULT_STATE_DIR, describeDesired, desiredOrFail, loadSnapshot, nodeNameFrom, observeFor,
  parseObservedMode, workloadPrefix,
} from './common.js';

type Output = 'text' | 'json';
const outputOption = () => new Option('-o, --output <format>', 'text or json').choices(['text', 'json']).default('text');
const backendOption = () =>
  new Option('--wireguard <mode>', 'WireGuard implementation: kernel module, userspace wireguard-go, or auto').choices(['auto', 'kernel', 'userspace']).default('auto');

function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

function show(p: Plan, d: DesiredDataplane | null, output: Output, backend: string | null, maxLines?: number): void {
  if (output === 'json') {
    print(JSON.stringify(renderPlanJson(p), null, 2));
  } else {
    print(renderPlanText(p, { ...(d ? { header: describeDesired(d, backend) } : {}), ...(maxLines ? { maxPerGroup: maxLines } : {}) }));
  }
}

const program = new Command();
program
  .name('wgplane')
  .description('Encrypts Kubernetes traffic between nodes with WireGuard: plan, apply and keep the dataplane of this node.')
  .version('0.1.0')
  .showHelpAfterError()
  .configureHelp({ sortSubcommands: false });

program
  .command('plan')
  .description('Show what would change on this node, and why. Changes nothing. Exit code: 0 no change, 2 changes pending, 1 error.')
  .requiredOption('-s, --snapshot <path>', 'cluster manifests: a file, a directory, or - for stdin (kubectl get nodes,pods,configmaps -A -o yaml)')
  .option('-n, --node <name>', 'this node (default: $NODE_NAME, then the hostname)')
  .option('--observed <source>', 'the current state: live (read this kernel), empty (a node where wgplane never ran), or a JSON file from `wgplane observe`', 'live')
  .addOption(outputOption())
  .option('--state-dir <dir>', 'where the node key is kept (its public key is read if present)', DEFAULT_STATE_DIR)
  .option('--max-lines <n>', 'show at most N lines per group in text output', (v) => Number(v))
  .action(async (o: { snapshot: string; node?: string; observed: string; output: Output; stateDir: string; maxLines?: number }) => {
    const snapshot = await loadSnapshot(o.snapshot);
    const node = nodeNameFrom(o.node);
    const mode = parseObservedMode(o.observed);
    const observed = await observeFor(mode, snapshot.settings, workloadPrefix(snapshot));
    const key = await readKey(o.stateDir).catch(() => null);
    const d = desiredOrFail(snapshot, node, { underlayMtu: observed.underlayMtu, publicKey: key?.publicKey ?? null });
    const p = makePlan(d, observed);
    show(p, d, o.output, null, o.maxLines);
    process.exitCode = p.blocked.length > 0 ? 1 : p.ops.length > 0 ? 2 : 0;
  });

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
    const observeNow = () => observe({ interfaceName: settings.interfaceName, table: settings.routingTable, workloadInterfacePrefix: prefix });
    return reconcile({
      observe: observeNow,
      desired: (observed) => makeDesired(observed, key?.publicKey ?? null),
      backend,
      privateKey: key ? key.privateKey : async () => { throw new CliError('no node key in ' + o.stateDir); },
      attempts: o.attempts,
      onPlan: (p, d, attempt) => {
        if (attempt > 1 && o.output === 'text') print(`\nAttempt ${attempt}: the dataplane still differs; applying again.`);
        show(p, d, o.output, backend, o.maxLines);
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

program
  .command('apply')
  .description('Program this node: observe, plan, execute, and repeat until the kernel matches the desired state.')
  .requiredOption('-s, --snapshot <path>', 'cluster manifests: a file, a directory, or - for stdin')
  .option('-n, --node <name>', 'this node (default: $NODE_NAME, then the hostname)')
  .option('--state-dir <dir>', 'where the node key and the lock are kept', DEFAULT_STATE_DIR)
  .addOption(backendOption())
  .addOption(outputOption())
  .option('--dry-run', 'only show the plan (same as `wgplane plan`)')
  .option('--attempts <n>', 'how many rounds of execution before giving up', (v) => Number(v), 5)
  .option('--max-lines <n>', 'show at most N lines per group in text output', (v) => Number(v))
  .action(async (o: ApplyOpts) => {
    const snapshot = await loadSnapshot(o.snapshot);
    const node = nodeNameFrom(o.node);
    const prefix = workloadPrefix(snapshot);
    if (o.dryRun) {
      const observed = await observeFor('live', snapshot.settings, prefix);
      const key = await readKey(o.stateDir).catch(() => null);
      const d = desiredOrFail(snapshot, node, { underlayMtu: observed.underlayMtu, publicKey: key?.publicKey ?? null });
      const p = makePlan(d, observed);
      show(p, d, o.output, null, o.maxLines);
      process.exitCode = p.blocked.length > 0 ? 1 : p.ops.length > 0 ? 2 : 0;
      return;
    }
    // Fail on bad input before touching anything: derive once with no host facts.
    const probe = desiredOrFail(snapshot, node, { underlayMtu: null, publicKey: null });
    const outcome = await applyDesired(o, snapshot.settings, prefix, (observed, publicKey) => {
      return desiredOrFail(snapshot, node, { underlayMtu: observed.underlayMtu, publicKey });
    }, probe.kind === 'enabled');
    report(outcome, o.output);
  });

program
  .command('cleanup')
  .description("Remove everything wgplane owns on this node (rule, routes, peers, device, chains), and only that. Safe where wgplane never ran.")
  .option('-s, --snapshot <path>', 'read the interface name and table from the settings in these manifests')
  .option('--interface <name>', 'the WireGuard device name', DEFAULT_SETTINGS.interfaceName)
  .option('--table <n>', 'the routing table', (v) => Number(v), DEFAULT_SETTINGS.routingTable)
  .option('--state-dir <dir>', 'where the lock is kept', DEFAULT_STATE_DIR)
  .addOption(backendOption())
  .addOption(outputOption())
  .option('--attempts <n>', 'how many rounds before giving up', (v) => Number(v), 5)
  .action(async (o: { snapshot?: string; interface: string; table: number; stateDir: string; wireguard: 'auto' | 'kernel' | 'userspace'; output: Output; attempts: number }) => {
    const base = o.snapshot ? (await loadSnapshot(o.snapshot)).settings : DEFAULT_SETTINGS;
    const settings: Settings = { ...base, interfaceName: o.snapshot ? base.interfaceName : o.interface, routingTable: o.snapshot ? base.routingTable : o.table };
    const node = nodeNameFrom(undefined);
    const teardown: DesiredDataplane = { kind: 'disabled', node, why: 'setting', interfaceName: settings.interfaceName, table: settings.routingTable, problems: [] };
    const outcome = await applyDesired({ ...o, maxLines: undefined }, settings, null, () => teardown, false);
    report(outcome, o.output);
  });

program
  .command('observe')
  .description("Print what wgplane owns in this kernel (device, peers, table, rules, chains, sysctls) as JSON. Never prints a private key.")
  .option('-s, --snapshot <path>', 'read the interface name and table from the settings in these manifests')
  .option('--interface <name>', 'the WireGuard device name', DEFAULT_SETTINGS.interfaceName)
  .option('--table <n>', 'the routing table', (v) => Number(v), DEFAULT_SETTINGS.routingTable)
  .action(async (o: { snapshot?: string; interface: string; table: number }) => {
    const snapshot = o.snapshot ? await loadSnapshot(o.snapshot) : null;
    const settings = snapshot?.settings ?? { ...DEFAULT_SETTINGS, interfaceName: o.interface, routingTable: o.table };
    const observed = await observe({ interfaceName: settings.interfaceName, table: settings.routingTable, workloadInterfacePrefix: snapshot ? workloadPrefix(snapshot) : null });
    print(JSON.stringify(observedToJson(observed), null, 2));
  });

const key = program.command('key').description("The node's WireGuard key pair (the private key never leaves the state directory)");
key
  .command('public')
  .description('Print this node\'s public key, making the key pair if there is none')
  .option('--state-dir <dir>', 'where the key is kept', DEFAULT_STATE_DIR)
  .action(async (o: { stateDir: string }) => {
    print((await loadOrCreateKey(o.stateDir)).publicKey);
  });
key
  .command('rotate')
  .description('Replace the key pair with a new one (peers must learn the new public key; the daemon publishes it)')
  .option('--state-dir <dir>', 'where the key is kept', DEFAULT_STATE_DIR)
  .action(async (o: { stateDir: string }) => {
    print((await rotateKey(o.stateDir)).publicKey);
  });

export async function main(argv: readonly string[]): Promise<void> {
  try {
    await program.parseAsync(argv as string[]);
  } catch (err) {
    const known = err instanceof CliError || err instanceof SnapshotError || err instanceof ObservedFileError || err instanceof KeyStoreError || err instanceof LockError;
    process.stderr.write(`wgplane: ${known ? (err as Error).message : (err as Error).stack ?? String(err)}\n`);
    process.exitCode = err instanceof CliError ? err.exitCode : 1;
  }
}

void (async () => {
  await main(process.argv);
})();
export type { NodeName };
