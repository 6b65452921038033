// The daemon engine against the REAL kernel in a throwaway namespace (wireguard-go), fed by MemorySource
// (an in-memory stand-in for the API): nothing happens before `synced`; the first sync programs the node
// and publishes the key; pod events apply through scoped plans; a burst of 1,000 pod events makes a
// handful of executions; drift is repaired by resync and counted; source errors touch nothing; a removed
// key annotation is restored; /readyz and /metrics; stop() leaves the dataplane, a restart changes nothing,
// and stop({cleanup}) removes it and clears the key.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import * as E from 'fp-ts/lib/Either.js';
import type { IP } from '../../core/ip.js';
import type { NodeName, PodInfo, PodKey } from '../../core/model.js';
import { desired } from '../../core/desired.js';
import { plan } from '../../planner/plan.js';
import { generateCluster, generateKey, nodeNames, setNodeKey } from '../../testing/generate.js';
import { Lab, addUnderlay, kernelTestSkipReason, type TestNamespace } from '../../testing/netns.js';
import { MemorySource } from '../../testing/memory-source.js';
import { runChecked, type Runner } from '../run.js';
import { observe } from '../observer.js';
import { createLogger } from '../log.js';
import { startHttpServer, type RunningServer } from '../http.js';
import { Engine, type EngineOptions } from './engine.js';
import { STATUS_FILE } from './status-file.js';

const skip = kernelTestSkipReason();

/** Polls `f` until true or the deadline passes (for effects that arrive through a watch). */
async function until(what: string, f: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('daemon engine (real kernel, wireguard-go)', { skip: skip ?? false, timeout: 300_000 }, () => {
  const lab = new Lab('wgpd');
  let ns: TestNamespace;
  let stateDir: string;
  let server: RunningServer;
  let engine: Engine;
  let source: MemorySource;
  const logLines: string[] = [];
  const logSink = new Writable({ write(chunk, _enc, cb) { logLines.push(String(chunk)); cb(); } });
  const gen = generateCluster({ nodes: 6, podsPerNode: 4, flavor: 'aks', seed: 11, objects: false });
  const local = nodeNames(gen)[0]!;
  const remotes = nodeNames(gen).slice(1);
  const cluster = setNodeKey(gen, local, null); // started with no key published
  const settings = cluster.snapshot.settings;
  const T = String(settings.routingTable);
  let run: Runner;

  const sh = async (script: string) => (await runChecked(ns.run, 'sh', ['-c', script])).stdout;
  const observeNow = () => observe({ interfaceName: settings.interfaceName, table: settings.routingTable, workloadInterfacePrefix: 'azv', run: ns.run });
  const pod = (name: string, node: NodeName, ip: string): PodInfo => ({ key: `default/${name}` as PodKey, nodeName: node, ips: [ip as IP], phase: 'Running', hostNetwork: false });
  /** The full plan from the engine's view of the cluster against the live kernel (empty = converged). */
  async function pendingOps(e: Engine): Promise<number> {
    const o = await observeNow();
    // as the daemon sees it: with the peers' handshakes (the host-encryption handshake gate)
    const host = { underlayMtu: o.underlayMtu, publicKey: e.publicKey, handshakes: new Map([...o.peers.values()].map((p) => [p.publicKey, p.latestHandshake])) };
    const d = desired(e.store.snapshot(), local, host);
    if (E.isLeft(d)) throw new Error(d.left.message);
    return plan(d.right, o).ops.length;
  }
  const get = async (p: string) => {
    const r = await fetch(server.url + p);
    return { code: r.status, body: await r.text() };
  };
  function makeEngine(src: MemorySource, extra: Partial<EngineOptions> = {}): Engine {
    return new Engine({
      node: local, source: src, stateDir, backend: 'userspace', run,
      log: createLogger({ level: 'debug', destination: logSink }),
      resyncIntervalMs: 600_000, bootstrapPollMs: 300, statusMinIntervalMs: 0, publishRetryMs: 2000,
      ...extra,
    });
  }

  before(async () => {
    if (skip) return;
    ns = await lab.namespace();
    const ip = cluster.snapshot.nodes.get(local)!.addresses[0]!.address;
    await addUnderlay(ns.run, ip);
    // A route in wgplane's table that no node asks for: it must survive until the source has synced.
    await sh(`ip route add throw 10.99.99.99/32 table ${T}`);
    stateDir = mkdtempSync(path.join(tmpdir(), 'wgpd-state-'));
    run = ns.run;
    source = new MemorySource();
    engine = makeEngine(source);
    server = await startHttpServer({ host: '127.0.0.1', port: 0 }, {
      metrics: async () => ({ contentType: engine.metrics.contentType, body: await engine.metrics.text() }),
      health: () => engine.health(),
      ready: () => engine.ready(),
      status: () => engine.status(),
    });
  });

  after(async () => {
    await engine?.stop().catch(() => undefined);
    await server?.close();
    await lab.dispose();
  });

  it('does nothing before the source has synced', async () => {
    await engine.start();
    source.replace(cluster.snapshot);
    for (let i = 0; i < 20; i++) await tick();
    await engine.idle();
    assert.equal(engine.stats.cycles, 0);
    assert.equal(engine.stats.observations, 0);
    assert.match(await sh(`ip route show table ${T}`), /throw 10\.99\.99\.99/);
    assert.equal((await get('/readyz')).code, 503);
    assert.equal((await get('/healthz')).code, 200);
    // a source that cannot sync says why (a settings ConfigMap that does not decode holds the kube source)
    source.emit({ kind: 'error', where: 'ConfigMap kube-system/wgplane', message: 'not synced, nothing is changed' });
    const r = await get('/readyz');
    assert.equal(r.code, 503);
    assert.match(r.body, /waiting for the source to sync; last source error: ConfigMap kube-system\/wgplane: not synced/);
  });

  it('the first sync programs the node, publishes the key after the device exists, and becomes ready', async () => {
    source.synced();
    await until('the key is published', () => source.node(local)?.publicKey === engine.publicKey);
    await engine.idle();
    assert.equal(source.keyCalls.length, 1);
    assert.deepEqual(source.keyCalls[0], { node: local, key: engine.publicKey });
    const o = await observeNow();
    assert.equal(o.device?.publicKey, engine.publicKey, 'the device carried the key before it was published');
    assert.equal(o.peers.size, remotes.length);
    assert.doesNotMatch(await sh(`ip route show table ${T}`), /10\.99\.99\.99/, 'removed once synced');
    assert.equal(await pendingOps(engine), 0, 'the kernel equals the desired state');
    assert.equal((await get('/readyz')).code, 200);
    assert.ok(engine.stats.executions >= 1);
    const st = JSON.parse(await readFile(path.join(stateDir, STATUS_FILE), 'utf8'));
    assert.equal(st.lastApply, 'ok');
    assert.equal(st.publicKey, engine.publicKey);
    assert.equal(st.peers.length, remotes.length);
    assert.ok(source.statusCalls.length >= 1);
    assert.equal(source.statusCalls.at(-1)!.status!.peers, remotes.length);
  });

  it('applies a pod added and removed through scoped plans', async () => {
    const p = pod('scoped', remotes[1]!, '10.239.255.1');
    const full0 = engine.stats.fullPlans;
    source.emit({ kind: 'pod-upsert', pod: p });
    await engine.idle();
    assert.equal(engine.lastPlan?.kind, 'scoped');
    assert.deepEqual(engine.lastPlan!.plan.ops.map((o) => o.kind).sort(), ['peer-update', 'route-add']);
    assert.match(await sh(`ip route show table ${T} 10.239.255.1/32`), /dev /);
    source.emit({ kind: 'pod-delete', key: p.key });
    await engine.idle();
    assert.equal(engine.lastPlan?.kind, 'scoped');
    assert.equal(await sh(`ip route show table ${T} 10.239.255.1/32`), '');
    assert.equal(engine.stats.fullPlans, full0, 'no full plan for pod events');
    assert.equal(await pendingOps(engine), 0);
  });

  it('coalesces a burst of 1,000 pod events into a handful of executions', async () => {
    const ex0 = engine.stats.executions;
    const pods: PodInfo[] = [];
    for (let i = 0; i < 1000; i++) pods.push(pod(`burst-${i}`, remotes[i % remotes.length]!, `10.238.${i >> 8}.${i & 255}`));
    for (let chunk = 0; chunk < 10; chunk++) {
      for (const p of pods.slice(chunk * 100, chunk * 100 + 100)) source.emit({ kind: 'pod-upsert', pod: p });
      await tick();
    }
    await engine.idle();
    const adds = engine.stats.executions - ex0;
    assert.ok(adds >= 1 && adds <= 5, `${adds} executions for 1,000 pod adds`);
    assert.equal(await pendingOps(engine), 0);
    assert.equal((await sh(`ip route show table ${T}`)).split('\n').filter((l) => l.startsWith('10.238.')).length, 1000);
    const ex1 = engine.stats.executions;
    for (const p of pods) source.emit({ kind: 'pod-delete', key: p.key });
    await engine.idle();
    const dels = engine.stats.executions - ex1;
    assert.ok(dels >= 1 && dels <= 5, `${dels} executions for 1,000 pod deletes`);
    assert.equal(await pendingOps(engine), 0);
  });

  it('repairs a route deleted behind its back on resync, and counts it as drift', async () => {
    const victim = [...(await observeNow()).routes.values()].find((r) => r.kind === 'device')!;
    await sh(`ip route del ${victim.dest} table ${T}`);
    const drift0 = engine.stats.driftRepairs;
    engine.requestResync();
    await engine.idle();
    assert.equal(engine.stats.driftRepairs - drift0, 1);
    assert.match(await sh(`ip route show table ${T} ${victim.dest}`), /dev /);
    assert.match((await get('/metrics')).body, /^wgplane_drift_repairs_total [1-9]/m);
    // a resync with no drift repairs nothing
    engine.requestResync();
    await engine.idle();
    assert.equal(engine.stats.driftRepairs - drift0, 1);
  });

  it('source errors leave the kernel as it is', async () => {
    const before = await sh(`ip route show table ${T}; ip rule show; wg show ${settings.interfaceName} allowed-ips | sort; wg show ${settings.interfaceName} endpoints | sort`);
    const c0 = engine.stats.cycles;
    const e0 = engine.stats.sourceErrors; // the one before the sync (first test)
    for (let i = 0; i < 5; i++) source.emit({ kind: 'error', where: 'watch pods', message: 'connect ECONNREFUSED 10.0.0.1:443' });
    for (let i = 0; i < 10; i++) await tick();
    await engine.idle();
    assert.equal(engine.stats.cycles, c0);
    assert.equal(engine.stats.sourceErrors, e0 + 5);
    assert.equal(await sh(`ip route show table ${T}; ip rule show; wg show ${settings.interfaceName} allowed-ips | sort; wg show ${settings.interfaceName} endpoints | sort`), before);
    assert.match((await get('/metrics')).body, new RegExp(`^wgplane_errors_total\\{kind="source"\\} ${e0 + 5}$`, 'm'));
    // once synced, source errors no longer show in /readyz
    assert.equal((await get('/readyz')).code, 200);
  });

  it('restores the key annotation when someone removes or changes it', async () => {
    const n0 = source.keyCalls.length;
    source.emit({ kind: 'node-upsert', node: { ...source.node(local)!, publicKey: null } });
    await until('the key is restored', () => source.node(local)?.publicKey === engine.publicKey);
    assert.equal(source.keyCalls.length, n0 + 1);
    source.emit({ kind: 'node-upsert', node: { ...source.node(local)!, publicKey: generateKey(4242) } });
    await until('the key is restored again', () => source.node(local)?.publicKey === engine.publicKey);
    assert.equal(source.keyCalls.length, n0 + 2);
    await engine.idle();
  });

  it('re-reads peers while they never handshaked; /metrics names every metric; logs hold no private key', async () => {
    await until('a bootstrap peer poll', () => engine.stats.peerPolls > 0);
    await engine.idle();
    const m = (await get('/metrics')).body;
    for (const name of [
      'wgplane_peer_handshake_age_seconds', 'wgplane_peer_received_bytes', 'wgplane_peer_sent_bytes', 'wgplane_peer_allowed_ips',
      'wgplane_reconcile_duration_seconds', 'wgplane_operations_applied_total', 'wgplane_drift_repairs_total', 'wgplane_errors_total',
      'wgplane_last_success_timestamp_seconds', 'wgplane_events_received_total',
    ]) assert.match(m, new RegExp(`^# TYPE ${name} `, 'm'), name);
    const remote = cluster.snapshot.nodes.get(remotes[0]!)!;
    assert.match(m, new RegExp(`^wgplane_peer_allowed_ips\\{node="${remote.name}",key="${remote.publicKey!.slice(0, 8).replace(/[+/]/g, '\\$&')}…"\\} 5$`, 'm'));
    assert.match(m, /^wgplane_operations_applied_total\{kind="route-add"\} \d+/m);
    assert.match(m, /^wgplane_reconcile_duration_seconds_count\{kind="scoped"\} \d+/m);
    assert.match(m, /^wgplane_events_received_total\{kind="pod-upsert"\} 100[1-9]/m);
    const status = JSON.parse((await get('/status')).body);
    assert.equal(status.synced, true);
    const priv = await engineKeyText();
    const logs = logLines.join('');
    assert.match(logs, /"msg":"applied plan"/);
    assert.ok(!logs.includes(priv), 'the private key is not in the logs');
    assert.ok(!JSON.stringify(status).includes(priv));
    assert.ok(!(await readFile(path.join(stateDir, STATUS_FILE), 'utf8')).includes(priv));
  });

  it('stop() leaves the dataplane; a restarted engine changes nothing; stop({cleanup}) removes it and clears the key', async () => {
    await engine.stop();
    assert.equal(source.stopped, true);
    assert.match(await sh(`ip link show ${settings.interfaceName}`), /UP/);
    assert.equal(await pendingOps(engine), 0, 'still programmed after stop');

    const snap = engine.store.snapshot();
    const source2 = new MemorySource();
    engine = makeEngine(source2);
    await engine.start();
    source2.replace(snap);
    source2.synced();
    await engine.idle();
    assert.equal(engine.stats.executions, 0, 'a restart with an intact dataplane executes nothing');
    assert.equal(source2.keyCalls.length, 0, 'the key was published already');
    assert.equal((await get('/readyz')).code, 200);

    await engine.stop({ cleanup: true });
    assert.deepEqual(source2.keyCalls, [{ node: local, key: null }]);
    assert.equal((await runChecked(ns.run, 'sh', ['-c', `ip link show ${settings.interfaceName} 2>&1 || true`])).stdout.includes('does not exist'), true);
    assert.equal(await sh(`ip route show table ${T} 2>/dev/null || true`), '');
    assert.doesNotMatch(await sh('ip rule show'), /proto 98/);
  });

  async function engineKeyText(): Promise<string> {
    return (await readFile(path.join(stateDir, 'private.key'), 'utf8')).trim();
  }
});
