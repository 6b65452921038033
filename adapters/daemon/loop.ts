// A coalescing, single-flight scheduler for the daemon's reconcile: kicks within the debounce window (and
// at most `maxDelayMs` after the first pending kick) make one run; a kick during a run makes one more run
// after it; a run that asks for a retry is repeated after an exponential backoff (capped), during which
// kicks only mark work as pending. Runs never overlap.
export type RunOutcome = 'ok' | 'retry';

export interface LoopOptions {
  readonly debounceMs: number;
  readonly maxDelayMs: number;
  readonly backoffBaseMs: number;
  readonly backoffCapMs: number;
  readonly now?: () => number;
  /** Called when a run throws (the run is then retried like 'retry'). */
  readonly onError?: (err: unknown) => void;
}

export class CoalescingLoop {
  private timer: NodeJS.Timeout | null = null;
  private pending = false;
  private firstKickAt: number | null = null;
  private running: Promise<void> | null = null;
  private backoffUntil = 0;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];
  /** Consecutive runs that asked for a retry. */
  failures = 0;
  runs = 0;
  runStartedAt: number | null = null;
  private readonly now: () => number;

  constructor(private readonly run: () => Promise<RunOutcome>, private readonly opts: LoopOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Asks for a run: after the debounce, or at once with `immediate` (never before a backoff ends). */
  kick(immediate = false): void {
    if (this.stopped) return;
    const now = this.now();
    this.pending = true;
    if (this.firstKickAt === null) this.firstKickAt = now;
    if (this.running !== null) return; // rescheduled when the run ends
    const at = immediate ? now : Math.min(now + this.opts.debounceMs, this.firstKickAt + this.opts.maxDelayMs);
    this.schedule(Math.max(at, this.backoffUntil), immediate);
  }

  /** The delay before the next retry after `failures` consecutive failures. */
  backoffMs(failures: number): number {
    return Math.min(this.opts.backoffCapMs, this.opts.backoffBaseMs * 2 ** Math.max(0, failures - 1));
  }

  get busy(): boolean {
    return this.running !== null;
  }

  /** Resolves once no run is pending or running (for tests and shutdown). A pending backoff counts as pending. */
  idle(): Promise<void> {
    if (!this.pending && this.running === null) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Cancels what is scheduled and waits for a running run to end. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.pending = false;
    if (this.running !== null) await this.running;
    this.wakeIdle();
  }

  private schedule(at: number, force: boolean): void {
    if (this.timer !== null) {
      // keep an earlier timer unless this is an immediate kick
      if (!force) return;
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => this.fire(), Math.max(0, at - this.now()));
  }

  private wakeIdle(): void {
    if (this.pending && !this.stopped) return;
    if (this.running !== null) return;
    const ws = this.idleWaiters.splice(0);
    for (const w of ws) w();
  }

  private fire(): void {
    this.timer = null;
    if (this.running !== null || this.stopped) return;
    this.pending = false;
    this.firstKickAt = null;
    this.runStartedAt = this.now();
    this.runs++;
    this.running = (async () => {
      let outcome: RunOutcome;
      try {
        outcome = await this.run();
      } catch (err) {
        this.opts.onError?.(err);
        outcome = 'retry';
      }
      const now = this.now();
      if (outcome === 'retry') {
        this.failures++;
        this.backoffUntil = now + this.backoffMs(this.failures);
        this.pending = true;
        if (this.firstKickAt === null) this.firstKickAt = now;
      } else {
        this.failures = 0;
        this.backoffUntil = 0;
      }
      this.running = null;
      this.runStartedAt = null;
      if (this.pending && !this.stopped) {
        const at = Math.min(now + this.opts.debounceMs, (this.firstKickAt ?? now) + this.opts.maxDelayMs);
        this.schedule(Math.max(at, this.backoffUntil), false);
      }
      this.wakeIdle();
    })();
  }
}
