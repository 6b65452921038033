// A lock in the state directory so that two `apply` runs (or an apply and a daemon) on one node never
// interleave their changes. O_EXCL lock file holding the owner's pid; a lock whose owner is gone is stale
// and taken over.
import { promises as fs, constants as fsc } from 'node:fs';
import path from 'node:path';

export const LOCK_FILE = 'apply.lock';

export class LockError extends Error {
  override readonly name = 'LockError';
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Creates the lock file holding our pid; false when it exists already. */
async function create(file: string): Promise<boolean> {
  try {
    const fh = await fs.open(file, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
    await fh.writeFile(`${process.pid}\n`);
    await fh.close();
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

async function tryTake(file: string): Promise<boolean> {
  if (await create(file)) return true;
  const owner = Number((await fs.readFile(file, 'utf8').catch(() => '')).trim());
  if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) return false;
  // Stale (owner gone) or unreadable: remove and retry once; a racing taker makes the O_EXCL fail.
  await fs.rm(file, { force: true });
  return create(file);
}

/** Holders inside this process queue here (the lock file names the process, not the caller). */
const inProcess = new Map<string, Promise<unknown>>();

/** Runs `fn` holding the state directory's lock; waits up to `waitMs` for another holder. */
export async function withLock<T>(stateDir: string, fn: () => Promise<T>, waitMs = 60_000): Promise<T> {
  const key = path.resolve(stateDir);
  const before = inProcess.get(key) ?? Promise.resolve();
  const run = before.catch(() => undefined).then(() => withFileLock(stateDir, fn, waitMs));
  const tail = run.catch(() => undefined);
  inProcess.set(key, tail);
  try {
    return await run;
  } finally {
    if (inProcess.get(key) === tail) inProcess.delete(key);
  }
}

async function withFileLock<T>(stateDir: string, fn: () => Promise<T>, waitMs: number): Promise<T> {
  await fs.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const file = path.join(stateDir, LOCK_FILE);
  const deadline = Date.now() + waitMs;
  let delay = 20;
  while (!(await tryTake(file))) {
    if (Date.now() > deadline) {
      const owner = (await fs.readFile(file, 'utf8').catch(() => '?')).trim();
      throw new LockError(`another wgplane (pid ${owner}) holds ${file}; gave up after ${waitMs} ms`);
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 500);
  }
  try {
    return await fn();
  } finally {
    await fs.rm(file, { force: true });
  }
}
