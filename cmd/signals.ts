// Stop signals for the long-running daemon.
//
// The handlers stay installed for the whole life of the process. execa's child clean-up (signal-exit)
// listens for SIGTERM/SIGINT while a child process runs and, when it finds no other listener, re-raises the
// signal to die by it. A handler that removed itself on the first signal therefore let the agent be killed
// outright whenever SIGTERM arrived while an `ip` or `wg` command was running: no clean stop, no
// --cleanup-on-exit, exit by signal instead of 0 (found by cmd/daemon.kernel.test.ts on CI).
import { constants } from 'node:os';

export const STOP_SIGNALS = ['SIGTERM', 'SIGINT'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

/** Resolves on the first SIGTERM or SIGINT. A second one calls `onSecond` and then exits at once with
 *  128 + the signal's number (the usual "press Ctrl-C again to quit"). The handlers are never removed. */
export function stopSignals(onSecond: (sig: StopSignal) => void = () => undefined): Promise<StopSignal> {
  return new Promise((resolve) => {
    let first: StopSignal | null = null;
    const on = (sig: StopSignal) => {
      if (first === null) {
        first = sig;
        resolve(sig);
        return;
      }
      onSecond(sig);
      process.exit(128 + constants.signals[sig]);
    };
    for (const s of STOP_SIGNALS) process.on(s, on);
  });
}
