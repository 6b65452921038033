// Network-namespace harness for kernel tests: a thin layer over adapters/lab/netns.ts (where the lab's
// product code lives), with the tests' root /run/wgplane-test and random namespace names.
import type { RunOptions, RunResult, Runner } from '../adapters/run.js';
import { TEST_HOME, createBridgeNamed, uniqueName, type Bridge, type TestNamespace } from '../adapters/lab/netns.js';

export {
  TEST_ROOT, TEST_HOME, Lab, NetnsHome, connectToBridge, isRoot, kernelTestSkipReason, uniqueName,
  type Bridge, type TestNamespace,
} from '../adapters/lab/netns.js';

export const nodeDir = (ns: string): string => TEST_HOME.wireguardDir(ns);
export const nodePrefix = (ns: string): string[] => TEST_HOME.prefix(ns);
export const nodeRunner = (ns: string): Runner => TEST_HOME.runner(ns);
export const nodeExec = (ns: string, cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> => TEST_HOME.exec(ns, cmd, args, opts);
export const nodeExecChecked = (ns: string, cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> => TEST_HOME.execChecked(ns, cmd, args, opts);
export const createNamespace = (prefix = 'wgpt'): Promise<TestNamespace> => TEST_HOME.create(uniqueName(prefix));
export const destroyNamespace = (ns: string): Promise<void> => TEST_HOME.destroy(ns);
export const destroyAllWithPrefix = async (prefix: string): Promise<void> => { await TEST_HOME.destroyAllWithPrefix(prefix); };
export const createBridge = (prefix = 'wgpt'): Promise<Bridge> => createBridgeNamed(TEST_HOME, uniqueName(`${prefix}br`));
