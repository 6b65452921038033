// The coalescing loop: a burst of kicks makes one run, a kick during a run makes exactly one more, runs
// never overlap, and a retrying run backs off exponentially up to the cap.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CoalescingLoop, type RunOutcome } from './loop.js';

describe('coalescing loop', () => {
  it('coalesces a burst and never overlaps runs', async () => {
    let runs = 0, active = 0, maxActive = 0;
    let release: (() => void) | null = null;
    const loop = new CoalescingLoop(async () => {
      runs++; active++; maxActive = Math.max(maxActive, active);
      if (runs === 1) await new Promise<void>((r) => { release = r; });
      active--;
      return 'ok';
    }, { debounceMs: 2, maxDelayMs: 50, backoffBaseMs: 10, backoffCapMs: 40 });
    for (let i = 0; i < 1000; i++) loop.kick();
    while (release === null) await new Promise((r) => setTimeout(r, 1));
    for (let i = 0; i < 1000; i++) loop.kick(); // during the run
    (release as () => void)();
    await loop.idle();
    assert.equal(runs, 2);
    assert.equal(maxActive, 1);
    await loop.stop();
  });

  it('backs off exponentially with a cap, and resets after success', async () => {
    const outcomes: RunOutcome[] = ['retry', 'retry', 'retry', 'retry', 'ok'];
    const times: number[] = [];
    const loop = new CoalescingLoop(async () => { times.push(Date.now()); return outcomes.shift() ?? 'ok'; },
      { debounceMs: 0, maxDelayMs: 0, backoffBaseMs: 20, backoffCapMs: 50 });
    assert.deepEqual([1, 2, 3, 4, 10].map((n) => loop.backoffMs(n)), [20, 40, 50, 50, 50]);
    loop.kick(true);
    await loop.idle();
    assert.equal(times.length, 5);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    assert.ok(gaps[0]! >= 19 && gaps[1]! >= 39 && gaps[2]! >= 49 && gaps[3]! >= 49, `gaps ${gaps.join(',')}`);
    assert.equal(loop.failures, 0);
    await loop.stop();
  });
});
