// Network-namespace harness for kernel tests: a thin layer over adapters/lab/netns.ts (where the lab's
// product code lives), with the tests' root /run/wgplane-test and random namespace names.
import { runChecked, type RunOptions, type RunResult, type Runner } from '../adapters/run.js';
import { TEST_HOME } from '../adapters/lab/netns.js';

export { TEST_ROOT, Lab, connectToBridge, kernelTestSkipReason, type TestNamespace } from '../adapters/lab/netns.js';

export const nodePrefix = (ns: string): string[] => TEST_HOME.prefix(ns);
export const nodeExec = (ns: string, cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> => TEST_HOME.exec(ns, cmd, args, opts);
export const nodeExecChecked = (ns: string, cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> => TEST_HOME.execChecked(ns, cmd, args, opts);
export const destroyNamespace = (ns: string): Promise<void> => TEST_HOME.destroy(ns);

/** A node's underlay for kernel tests: `eth0` (a veth whose other end stays in the namespace, up) with
 *  `ip`/12, up. */
export async function addUnderlay(run: Runner, ip: string): Promise<void> {
  await runChecked(run, 'ip', ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0peer']);
  await runChecked(run, 'ip', ['link', 'set', 'eth0peer', 'up']);
  await runChecked(run, 'ip', ['address', 'add', `${ip}/12`, 'dev', 'eth0']);
  await runChecked(run, 'ip', ['link', 'set', 'eth0', 'up']);
}
