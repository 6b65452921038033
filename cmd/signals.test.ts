// stopSignals in a real child process: a SIGTERM that arrives while an execa child runs must reach the
// handler (execa's signal-exit re-raised it and killed the process when the handler had removed itself).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** A node process that starts `sleep 2` through execa, then sends itself `signals` (50 ms apart) while the
 *  child still runs, and exits 0 after the child is done. */
const script = (signals: readonly string[]) => `
  import { execa } from 'execa';
  import { stopSignals } from ${JSON.stringify(path.join(HERE, 'signals.ts'))};
  const stop = stopSignals((s) => console.log('second ' + s));
  const child = execa('sleep', ['2'], { reject: false });
  const sigs = ${JSON.stringify(signals)};
  sigs.forEach((s, i) => setTimeout(() => process.kill(process.pid, s), 100 + 50 * i));
  console.log('stopping on ' + (await stop));
  await child;
  console.log('stopped cleanly');
`;

async function runScript(signals: readonly string[]) {
  return execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script(signals)], { reject: false, cwd: path.join(HERE, '..') });
}

describe('stopSignals', () => {
  for (const sig of ['SIGTERM', 'SIGINT']) {
    it(`a ${sig} while an execa child runs stops the process cleanly (exit 0), not by the signal`, async () => {
      const r = await runScript([sig]);
      assert.equal(r.signal, undefined, `killed by ${r.signal}: ${r.stdout}${r.stderr}`);
      assert.equal(r.exitCode, 0, r.stdout + r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), [`stopping on ${sig}`, 'stopped cleanly']);
    });
  }

  it('a second signal exits at once with 128 + its number', async () => {
    const r = await runScript(['SIGTERM', 'SIGINT']);
    assert.equal(r.exitCode, 130, r.stdout + r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['stopping on SIGTERM', 'second SIGINT']);
  });
});
