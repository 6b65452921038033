// Running commands: a tiny execa wrapper with an injectable "where" (the current network namespace, or a
// command prefix such as `ip netns exec NS ...`). The observer and the executor take a Runner, so tests and
// the lab can run every command inside a throwaway namespace. Never throws for a non-zero exit: callers
// look at exitCode and report the tool's own message.
import { execa } from 'execa';

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
}

export interface RunOptions {
  /** Text written to the command's stdin (e.g. an `ip -batch -` script or a key). */
  readonly input?: string;
}

export type Runner = (cmd: string, args: readonly string[], opts?: RunOptions) => Promise<RunResult>;

/** Runs commands in the current network namespace. A missing program is reported as exit code 127. */
export const defaultRunner: Runner = async (cmd, args, opts) => {
  const r = await execa(cmd, [...args], {
    reject: false,
    stripFinalNewline: false,
    maxBuffer: 1024 * 1024 * 1024,
    ...(opts?.input !== undefined ? { input: opts.input } : { stdin: 'ignore' }),
  });
  const stdout = typeof r.stdout === 'string' ? r.stdout : '';
  let stderr = typeof r.stderr === 'string' ? r.stderr : '';
  let exitCode = typeof r.exitCode === 'number' ? r.exitCode : -1;
  if (r.failed && r.exitCode === undefined) {
    // Spawn failure (ENOENT, ...) or a signal: no exit code of the tool itself.
    const code = (r as { code?: string }).code;
    exitCode = code === 'ENOENT' ? 127 : 128 + (r.signal ? 1 : 0);
    stderr = stderr || r.shortMessage || String(r.message);
  }
  return { stdout, stderr, exitCode };
};

/** Runs every command as `prefix... cmd args...` (e.g. `['ip', 'netns', 'exec', 'ns1']`). */
export function prefixedRunner(prefix: readonly string[], base: Runner = defaultRunner): Runner {
  if (prefix.length === 0) return base;
  const [head, ...rest] = prefix as [string, ...string[]];
  return (cmd, args, opts) => base(head, [...rest, cmd, ...args], opts);
}

/** Runs a command and throws a clear error (command and the tool's message) unless it exits 0. */
export async function runChecked(run: Runner, cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.exitCode !== 0) throw new Error(`${[cmd, ...args].join(' ')} failed (exit ${r.exitCode}): ${r.stderr.trim() || r.stdout.trim()}`);
  return r;
}
