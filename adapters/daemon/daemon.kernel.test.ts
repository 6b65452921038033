// `wgplane daemon` as a child process in a throwaway namespace, with a dir source (a directory of
// manifests): it programs the node, publishes its key into the directory, answers /readyz and /metrics,
// and on SIGTERM exits 0 leaving the dataplane in place; with --cleanup-on-exit it removes it and clears
// the published key.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateCluster, nodeNames, setNodeKey, toListJson } from '../../testing/generate.js';
import { Lab, addUnderlay, kernelTestSkipReason, nodePrefix, type TestNamespace } from '../../testing/netns.js';
import { CLI_ARGS, REPO } from '../../testing/cluster.js';
import { runChecked } from '../run.js';

const skip = kernelTestSkipReason();

async function until<T>(what: string, f: () => Promise<T | null | undefined | false>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => null);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('wgplane daemon (child process, dir source, real kernel)', { skip: skip ?? false, timeout: 180_000 }, () => {
  const lab = new Lab('wgpdd');
  let ns: TestNamespace;
  let dir: string;
  let stateDir: string;
  const children: ChildProcess[] = [];
  const gen = generateCluster({ nodes: 4, podsPerNode: 3, flavor: 'aks', seed: 21 });
  const local = nodeNames(gen)[0]!;
  const cluster = setNodeKey(gen, local, null);
  const s = cluster.snapshot.settings;
  const sh = async (script: string) => (await runChecked(ns.run, 'sh', ['-c', script])).stdout;

  function startDaemon(extra: string[] = []): { child: ChildProcess; exit: Promise<number | null>; stderr: () => string } {
    const [cmd, ...prefix] = nodePrefix(ns.name);
    const child = spawn(cmd!, [
      ...prefix, process.execPath, ...CLI_ARGS, 'daemon',
      '--source', `dir:${dir}`, '--node', local, '--state-dir', stateDir, '--wireguard', 'userspace',
      '--metrics-addr', '127.0.0.1:9476', '--log-level', 'info', ...extra,
    ], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let err = '';
    child.stderr!.on('data', (d) => { err += String(d); });
    child.stdout!.resume();
    const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    return { child, exit, stderr: () => err };
  }
  const status = async () => JSON.parse(await readFile(path.join(stateDir, 'status.json'), 'utf8')) as { lastApply: string; publicKey: string; peers: unknown[] };
  const curl = async (p: string) => (await ns.run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:9476${p}`])).stdout;

  before(async () => {
    if (skip) return;
    ns = await lab.namespace();
    const ip = cluster.snapshot.nodes.get(local)!.addresses[0]!.address;
    await addUnderlay(ns.run, ip);
    dir = mkdtempSync(path.join(tmpdir(), 'wgpdd-dir-'));
    stateDir = mkdtempSync(path.join(tmpdir(), 'wgpdd-state-'));
    await writeFile(path.join(dir, 'cluster.json'), toListJson(cluster.objects));
  });

  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await lab.dispose();
  });

  it('programs the node, publishes its key, is ready; SIGTERM exits 0 and leaves the dataplane', async () => {
    const d = startDaemon();
    const st = await until('status.json says ok', async () => { const x = await status(); return x.lastApply === 'ok' && x.peers.length === 3 ? x : null; });
    const published = await until('the key is published into the directory', async () => {
      const t = await readFile(path.join(dir, 'wgplane-published', `${local}.yaml`), 'utf8');
      return t.includes(st.publicKey) ? t : null;
    });
    assert.match(published, /publicKey:/);
    assert.equal(await until('/readyz 200', async () => ((await curl('/readyz')) === '200' ? '200' : null)), '200');
    const metrics = (await ns.run('curl', ['-s', 'http://127.0.0.1:9476/metrics'])).stdout;
    assert.match(metrics, /^wgplane_peer_allowed_ips\{/m);
    assert.match(await sh(`wg show ${s.interfaceName} peers | wc -l`), /^3$/m);
    d.child.kill('SIGTERM');
    assert.equal(await d.exit, 0, d.stderr());
    assert.match(await sh(`ip link show ${s.interfaceName}`), /UP/, 'the device stays');
    assert.notEqual(await sh(`ip route show table ${s.routingTable}`), '', 'the routes stay');
    assert.doesNotMatch(d.stderr(), /PRIVATE|private.key/i);
  });

  it('with --cleanup-on-exit, SIGTERM removes the dataplane and clears the published key', async () => {
    const d = startDaemon(['--cleanup-on-exit']);
    await until('/readyz 200', async () => ((await curl('/readyz')) === '200' ? '200' : null));
    d.child.kill('SIGTERM');
    assert.equal(await d.exit, 0, d.stderr());
    assert.equal((await ns.run('ip', ['link', 'show', s.interfaceName])).exitCode, 1, 'the device is gone');
    assert.equal((await ns.run('sh', ['-c', `ip route show table ${s.routingTable} 2>/dev/null`])).stdout, '');
    assert.doesNotMatch(await sh('ip rule show'), /proto 98/);
    const pub = await readFile(path.join(dir, 'wgplane-published', `${local}.yaml`), 'utf8');
    assert.match(pub, /publicKey: null/);
  });
});
