// The wgplane CLI: one module per command, registered here.
import { Command } from 'commander';
import { SnapshotError } from '../adapters/manifest.js';
import { ObservedFileError } from '../adapters/observed-json.js';
import { KeyStoreError } from '../adapters/keystore.js';
import { LockError } from '../adapters/lock.js';
import { CliError } from './common.js';
import { registerPlan } from './plan.js';
import { registerApply } from './apply.js';
import { registerObserve } from './observe.js';
import { registerKey } from './key.js';
import { registerDaemon } from './daemon.js';
import { registerLab } from './lab.js';
import { registerVerify } from './verify.js';
import { registerGraph } from './graph.js';
import { registerStatus } from './status.js';
import { registerEnable } from './enable.js';

const program = new Command();
program
  .name('wgplane')
  .description('Encrypts Kubernetes traffic between nodes with WireGuard: plan, apply and keep the dataplane of this node.')
  .version('0.1.0')
  .showHelpAfterError()
  .configureHelp({ sortSubcommands: false });

registerPlan(program);
registerApply(program);
registerObserve(program);
registerKey(program);
registerDaemon(program);
registerLab(program);
registerVerify(program);
registerGraph(program);
registerStatus(program);
registerEnable(program);

/** Errors whose message says everything (no stack trace): bad input, a refused operation. */
function isExpected(err: unknown): boolean {
  return err instanceof CliError || err instanceof SnapshotError || err instanceof ObservedFileError || err instanceof KeyStoreError || err instanceof LockError || (err instanceof Error && /Error$/.test(err.name) && err.name !== 'Error' && err.name !== 'TypeError' && err.name !== 'RangeError' && err.name !== 'ReferenceError');
}

export async function main(argv: readonly string[]): Promise<void> {
  try {
    await program.parseAsync(argv as string[]);
  } catch (err) {
    process.stderr.write(`wgplane: ${isExpected(err) ? (err as Error).message : (err as Error).stack ?? String(err)}\n`);
    process.exitCode = err instanceof CliError ? err.exitCode : 1;
  }
}

void main(process.argv);
