// Which WireGuard implementation creates the device: the kernel module, or the userspace wireguard-go.
import { randomBytes } from 'node:crypto';
import { defaultRunner, type Runner } from './run.js';

export type Backend = 'kernel' | 'userspace';
export type BackendMode = 'auto' | Backend;

export class BackendError extends Error {
  override readonly name = 'BackendError';
}

async function kernelWorks(run: Runner): Promise<{ ok: boolean; message: string }> {
  const probe = `wgpprobe${randomBytes(3).toString('hex')}`; // 14 characters, under IFNAMSIZ
  const r = await run('ip', ['link', 'add', probe, 'type', 'wireguard']);
  if (r.exitCode === 0) {
    await run('ip', ['link', 'del', probe]);
    return { ok: true, message: '' };
  }
  return { ok: false, message: r.stderr.trim() };
}

async function userspaceWorks(run: Runner): Promise<boolean> {
  return (await run('sh', ['-c', 'command -v wireguard-go'])).exitCode === 0;
}

/** `auto`: the kernel if `ip link add <tmp> type wireguard` works, else wireguard-go when it is on PATH.
 *  An explicit mode is checked too, so that a wrong choice fails before anything is changed. */
export async function detectBackend(mode: BackendMode, run: Runner = defaultRunner): Promise<Backend> {
  if (mode === 'userspace') {
    if (await userspaceWorks(run)) return 'userspace';
    throw new BackendError('--wireguard userspace: wireguard-go is not on PATH');
  }
  const k = await kernelWorks(run);
  if (k.ok) return 'kernel';
  if (mode === 'kernel') throw new BackendError(`--wireguard kernel: the kernel cannot create a WireGuard device (${k.message})`);
  if (await userspaceWorks(run)) return 'userspace';
  throw new BackendError(`no WireGuard available: the kernel cannot create a WireGuard device (${k.message}) and wireguard-go is not on PATH`);
}

/** What `apply` would use, without changing anything (for `plan`): the existing device's kind if there is
 *  one; else the kernel when its WireGuard module is loaded or loadable (`modprobe -n`), else wireguard-go
 *  when it is on PATH. */
export async function predictBackend(mode: BackendMode, existing: 'wireguard' | 'tun' | 'other' | null, run: Runner = defaultRunner): Promise<string> {
  if (existing === 'wireguard') return 'kernel (existing device)';
  if (existing === 'tun') return 'userspace wireguard-go (existing device)';
  if (mode === 'userspace') return 'userspace wireguard-go';
  const loaded = (await run('sh', ['-c', 'test -d /sys/module/wireguard || modprobe -n -q wireguard'])).exitCode === 0;
  if (loaded) return 'kernel';
  if (mode === 'kernel') return 'kernel (not available here: apply will fail)';
  return (await userspaceWorks(run)) ? 'userspace wireguard-go (no kernel module)' : 'none available (apply will fail)';
}
