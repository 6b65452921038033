// The wgplane CLI: one module per command, registered here.
import { Command } from 'commander';
import { SnapshotError } from '../adapters/manifest.js';
import { ObservedFileError } from '../adapters/observed-json.js';
import { KeyStoreError } from '../adapters/keystore.js';
import { LockError } from '../adapters/lock.js';
import { ObserveError } from '../adapters/observer.js';
import { BackendError } from '../adapters/backend.js';
import { StatusError } from '../adapters/status.js';
import { DirSourceError } from '../adapters/sources/dir.js';
import { LabError } from '../adapters/lab/state.js';
import { VerifyError } from '../adapters/verify.js';
import { GraphError } from '../adapters/graph.js';
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

/** Errors whose message says everything (no stack trace): bad input, a refused operation, the state of
 *  the node or the cluster. Anything else is a defect or a surprise: printed with its stack. */
const EXPECTED_ERRORS = [
  CliError, SnapshotError, ObservedFileError, KeyStoreError, LockError, ObserveError, BackendError,
  StatusError, DirSourceError, LabError, VerifyError, GraphError,
] as const;

function isExpected(err: unknown): boolean {
  return EXPECTED_ERRORS.some((c) => err instanceof c);
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
