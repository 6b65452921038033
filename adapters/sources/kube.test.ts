// The kube source through @kubernetes/client-node itself, against the stand-in API server over real HTTP.
// Every wait is on an event or a request with a deadline; nothing sleeps to synchronise.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import type { WgKey } from '../../core/key.js';
import type { NodeName, PodKey } from '../../core/model.js';
import { StandinApiServer, type StandinRequest } from '../../testing/standin-apiserver.js';
import { generateCluster, generateKey, nodeNames, setNodeKey } from '../../testing/generate.js';
import { Lab, addUnderlay, kernelTestSkipReason } from '../../testing/netns.js';
import { Engine } from '../daemon/engine.js';
import { createLogger } from '../log.js';
import { readSourceOnce } from '../status.js';
import { createKubeSource, loadKubeConfig } from './kube.js';
import type { ClusterEvent, ClusterSource } from './source.js';

const DEADLINE_MS = 10_000;
const TUNING = { pageSize: 2, backoffInitialMs: 20, backoffMaxMs: 200, watchTimeoutSeconds: 300, idleTimeoutMs: 60_000 };
const KEY_A: WgKey = generateKey(1);
const KEY_B: WgKey = generateKey(2);

function node(name: string, ip: string, key?: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name }, annotations: { 'other.io/keep': 'yes', ...(key ? { 'wgplane.io/public-key': key } : {}) }, ...extra },
    spec: { podCIDR: '10.244.0.0/24' },
    status: { addresses: [{ type: 'InternalIP', address: ip }, { type: 'Hostname', address: name }] },
  };
}

function pod(name: string, nodeName: string, ip: string, extra: { namespace?: string; hostNetwork?: boolean; labels?: Record<string, string> } = {}): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: extra.namespace ?? 'default', labels: extra.labels ?? { app: 'x' } },
    spec: { nodeName, hostNetwork: extra.hostNetwork ?? false, containers: [{ name: 'c', image: 'busybox' }] },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
  };
}

function settingsCm(data: Record<string, string>): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'wgplane', namespace: 'kube-system' }, data };
}

/** Collects events; waits for one matching a predicate (after a mark) with a deadline. */
class Recorder {
  readonly events: ClusterEvent[] = [];
  private waiters: { from: number; pred: (e: ClusterEvent) => boolean; resolve: (e: ClusterEvent) => void }[] = [];
  readonly push = (e: ClusterEvent): void => {
    this.events.push(e);
    for (const w of [...this.waiters]) {
      if (w.pred(e)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(e);
      }
    }
  };
  mark(): number {
    return this.events.length;
  }
  since(mark: number): ClusterEvent[] {
    return this.events.slice(mark);
  }
  waitFor<K extends ClusterEvent['kind']>(what: string, pred: (e: ClusterEvent) => e is Extract<ClusterEvent, { kind: K }>, from?: number): Promise<Extract<ClusterEvent, { kind: K }>>;
  waitFor(what: string, pred: (e: ClusterEvent) => boolean, from?: number): Promise<ClusterEvent>;
  waitFor(what: string, pred: (e: ClusterEvent) => boolean, from = 0): Promise<ClusterEvent> {
    const seen = this.events.slice(from).find(pred);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = { from, pred, resolve: (e: ClusterEvent) => (clearTimeout(timer), resolve(e)) };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`no ${what} within ${DEADLINE_MS} ms; last events: ${this.events.slice(-8).map(show).join(' | ')}`));
      }, DEADLINE_MS);
      this.waiters.push(w);
    });
  }
}

function show(e: ClusterEvent): string {
  switch (e.kind) {
    case 'node-upsert':
      return `node-upsert ${e.node.name}`;
    case 'node-delete':
      return `node-delete ${e.name}`;
    case 'pod-upsert':
      return `pod-upsert ${e.pod.key} ${e.pod.ips.join(',')}`;
    case 'pod-delete':
      return `pod-delete ${e.key}`;
    case 'settings':
      return `settings found=${e.found} enabled=${e.settings.enabled}`;
    case 'replace':
      return `replace ${e.snapshot.nodes.size}n/${e.snapshot.pods.size}p`;
    case 'synced':
      return 'synced';
    case 'error':
      return `error ${e.where}: ${e.message}`;
  }
}

const is =
  <K extends ClusterEvent['kind']>(kind: K, pred: (e: Extract<ClusterEvent, { kind: K }>) => boolean = () => true) =>
  (e: ClusterEvent): e is Extract<ClusterEvent, { kind: K }> =>
    e.kind === kind && pred(e as Extract<ClusterEvent, { kind: K }>);

/** Polls the request log until a request matches (the client's requests are not events we can await). */
async function waitForRequest(server: StandinApiServer, what: string, pred: (r: StandinRequest) => boolean, from = 0): Promise<StandinRequest> {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const r = server.requests.slice(from).find(pred);
    if (r !== undefined) return r;
    if (Date.now() > deadline) throw new Error(`no request ${what} within ${DEADLINE_MS} ms`);
    await new Promise((res) => setTimeout(res, 5));
  }
}

function initialObjects(): unknown[] {
  return [
    node('n1', '10.0.0.1', KEY_A),
    node('n2', '10.0.0.2'),
    pod('a', 'n1', '10.244.0.10'),
    pod('b', 'n2', '10.244.1.10', { namespace: 'web' }),
    pod('c', 'n1', '10.244.0.11'),
    pod('kube-proxy', 'n1', '10.0.0.1', { namespace: 'kube-system', hostNetwork: true }),
    pod('d', 'n2', '10.244.1.11'),
    settingsCm({ enabled: 'true', mtu: '1380' }),
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'other', namespace: 'kube-system' }, data: { enabled: 'nonsense' } },
  ];
}

async function started(objects = initialObjects()): Promise<{ server: StandinApiServer; source: ClusterSource; rec: Recorder }> {
  const server = await StandinApiServer.start({ objects });
  const source = createKubeSource({ kubeconfig: server.kubeconfigPath, node: 'n1' as NodeName, env: {}, tuning: TUNING });
  const rec = new Recorder();
  await source.start(rec.push);
  await rec.waitFor('synced', is('synced'));
  return { server, source, rec };
}

describe('kube source against the stand-in API server', () => {
  let server: StandinApiServer;
  let source: ClusterSource;
  let rec: Recorder;
  const cleanups: (() => Promise<void>)[] = [];

  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  async function fresh(objects?: unknown[]): Promise<void> {
    ({ server, source, rec } = await started(objects));
    const s = server;
    const src = source;
    cleanups.push(async () => {
      await src.stop();
      await s.close();
    });
  }

  it('lists everything (paged) -> replace then synced, with the decoded snapshot', async () => {
    await fresh();
    const kinds = rec.events.map((e) => e.kind);
    assert.deepEqual(kinds, ['replace', 'synced']);
    const snap = (rec.events[0] as Extract<ClusterEvent, { kind: 'replace' }>).snapshot;
    assert.deepEqual([...snap.nodes.keys()].sort(), ['n1', 'n2']);
    assert.equal(snap.nodes.get('n1' as NodeName)!.publicKey, KEY_A);
    assert.equal(snap.nodes.get('n2' as NodeName)!.publicKey, null);
    assert.deepEqual(snap.nodes.get('n1' as NodeName)!.addresses, [{ type: 'InternalIP', address: '10.0.0.1' }]);
    assert.deepEqual([...snap.pods.keys()].sort(), ['default/a', 'default/c', 'default/d', 'kube-system/kube-proxy', 'web/b']);
    assert.equal(snap.pods.get('kube-system/kube-proxy' as PodKey)!.hostNetwork, true);
    assert.deepEqual(snap.pods.get('web/b' as PodKey)!.ips, ['10.244.1.10']);
    assert.equal(snap.settingsFound, true);
    assert.equal(snap.settings.enabled, true);
    assert.equal(snap.settings.mtu, 1380);
    // Pods came in pages of 2 (5 pods: 3 requests), the ConfigMap by field selector.
    const podLists = server.requests.filter((r) => r.method === 'GET' && r.path === '/api/v1/pods' && r.query.watch !== 'true');
    assert.equal(podLists.length, 3);
    assert.ok(podLists[1]!.query.continue);
    const cmList = server.requests.find((r) => r.path === '/api/v1/namespaces/kube-system/configmaps' && r.query.watch !== 'true')!;
    assert.equal(cmList.query.fieldSelector, 'metadata.name=wgplane');
    // Watches ask for bookmarks, from the list's resourceVersion.
    const podWatch = await waitForRequest(server, 'pod watch', (r) => r.path === '/api/v1/pods' && r.query.watch === 'true');
    assert.equal(podWatch.query.allowWatchBookmarks, 'true');
    assert.equal(podWatch.query.resourceVersion, server.resourceVersion);
  });

  it('turns added, modified and deleted pods and nodes into events; unchanged decodes make none', async () => {
    await fresh();
    let m = rec.mark();
    server.put(pod('e', 'n2', '10.244.1.12'));
    let ev = await rec.waitFor('pod-upsert e', is('pod-upsert', (e) => e.pod.key === 'default/e'), m);
    assert.deepEqual(ev.pod.ips, ['10.244.1.12']);
    assert.equal(ev.pod.nodeName, 'n2');

    // A label-only change decodes to the same PodInfo: no event. The next real change is the next event.
    m = rec.mark();
    server.put(pod('e', 'n2', '10.244.1.12', { labels: { app: 'y' } }));
    server.put(pod('e', 'n2', '10.244.1.13'));
    ev = await rec.waitFor('pod-upsert e (new IP)', is('pod-upsert', (e) => e.pod.key === 'default/e'), m);
    assert.deepEqual(ev.pod.ips, ['10.244.1.13']);
    assert.deepEqual(rec.since(m).map(show), ['pod-upsert default/e 10.244.1.13']);

    m = rec.mark();
    server.remove('pods', 'e', 'default');
    await rec.waitFor('pod-delete e', is('pod-delete', (e) => e.key === 'default/e'), m);

    m = rec.mark();
    server.put(node('n3', '10.0.0.3', KEY_B));
    const n = await rec.waitFor('node-upsert n3', is('node-upsert', (e) => e.node.name === 'n3'), m);
    assert.equal(n.node.publicKey, KEY_B);
    // A heartbeat-like change (an annotation wgplane does not read) makes no event; a key change does.
    m = rec.mark();
    server.put(node('n3', '10.0.0.3', KEY_B, { annotations: { 'wgplane.io/public-key': KEY_B, 'node.alpha/heartbeat': '2' } }));
    server.put(node('n3', '10.0.0.3', KEY_A));
    const n2 = await rec.waitFor('node-upsert n3 (key)', is('node-upsert', (e) => e.node.name === 'n3'), m);
    assert.equal(n2.node.publicKey, KEY_A);
    assert.equal(rec.since(m).length, 1);
    m = rec.mark();
    server.remove('nodes', 'n3');
    await rec.waitFor('node-delete n3', is('node-delete', (e) => e.name === 'n3'), m);
  });

  it('turns settings ConfigMap changes into settings events (and ignores other ConfigMaps)', async () => {
    await fresh();
    let m = rec.mark();
    server.put({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'unrelated', namespace: 'kube-system' }, data: { x: 'y' } });
    server.put(settingsCm({ enabled: 'false' }));
    const s = await rec.waitFor('settings', is('settings'), m);
    assert.equal(s.found, true);
    assert.equal(s.settings.enabled, false);
    assert.equal(s.settings.mtu, 'auto');
    assert.equal(rec.since(m).length, 1);
    m = rec.mark();
    server.remove('configmaps', 'wgplane', 'kube-system');
    const gone = await rec.waitFor('settings gone', is('settings'), m);
    assert.equal(gone.found, false);
    assert.equal(gone.settings.enabled, false);
  });

  it('a dropped watch resumes from its resourceVersion and loses nothing', async () => {
    await fresh();
    await waitForRequest(server, 'pod watch', (r) => r.path === '/api/v1/pods' && r.query.watch === 'true');
    const rvBefore = server.resourceVersion;
    const reqMark = server.requests.length;
    const m = rec.mark();
    server.dropWatches();
    // Changes while no watch is open: the resumed watch must replay them from history.
    server.put(pod('f', 'n1', '10.244.0.20'));
    server.remove('pods', 'a', 'default');
    server.put(node('n2', '10.0.0.2', KEY_B));
    await rec.waitFor('pod-upsert f', is('pod-upsert', (e) => e.pod.key === 'default/f'), m);
    await rec.waitFor('pod-delete a', is('pod-delete', (e) => e.key === 'default/a'), m);
    await rec.waitFor('node-upsert n2', is('node-upsert', (e) => e.node.name === 'n2' && e.node.publicKey === KEY_B), m);
    const rewatch = await waitForRequest(server, 'pod re-watch', (r) => r.path === '/api/v1/pods' && r.query.watch === 'true', reqMark);
    assert.equal(rewatch.query.resourceVersion, rvBefore);
    assert.ok(!rec.since(m).some((e) => e.kind === 'replace' || e.kind === 'error'), rec.since(m).map(show).join(' | '));
  });

  it('410 Gone on the watch re-lists (replace) and goes on', async () => {
    await fresh();
    await waitForRequest(server, 'pod watch', (r) => r.path === '/api/v1/pods' && r.query.watch === 'true');
    const m = rec.mark();
    server.dropWatches();
    server.put(pod('g', 'n2', '10.244.1.30'));
    server.remove('pods', 'c', 'default');
    server.compact();
    const err = await rec.waitFor('410 error', is('error', (e) => /410/.test(e.message)), m);
    assert.match(err.where, /watch \/api\/v1\/(pods|nodes)/);
    const rep = await rec.waitFor('replace after re-list', is('replace', (e) => e.snapshot.pods.has('default/g' as PodKey)), m);
    assert.equal(rep.snapshot.pods.has('default/c' as PodKey), false);
    assert.equal(rep.snapshot.nodes.size, 2);
    assert.equal(rep.snapshot.settings.enabled, true);
    // And the watch goes on after the re-list.
    const m2 = rec.mark();
    server.put(pod('h', 'n2', '10.244.1.31'));
    await rec.waitFor('pod-upsert h', is('pod-upsert', (e) => e.pod.key === 'default/h'), m2);
  });

  it('bookmarks move the resourceVersion a resumed watch starts from', async () => {
    await fresh();
    await waitForRequest(server, 'node watch', (r) => r.path === '/api/v1/nodes' && r.query.watch === 'true');
    const nodeWatchRv = server.requests.find((r) => r.path === '/api/v1/nodes' && r.query.watch === 'true')!.query.resourceVersion;
    // Pod changes move the global resourceVersion past the node watch's.
    const m = rec.mark();
    server.put(pod('i', 'n1', '10.244.0.40'));
    await rec.waitFor('pod-upsert i', is('pod-upsert', (e) => e.pod.key === 'default/i'), m);
    const bookmarkRv = server.resourceVersion;
    assert.notEqual(bookmarkRv, nodeWatchRv);
    const reqMark = server.requests.length;
    server.bookmark();
    server.dropWatches();
    const rewatch = await waitForRequest(server, 'node re-watch', (r) => r.path === '/api/v1/nodes' && r.query.watch === 'true', reqMark);
    assert.equal(rewatch.query.resourceVersion, bookmarkRv);
  });

  it('an unreachable server yields error events with backoff, then it recovers without losing changes', async () => {
    await fresh();
    await waitForRequest(server, 'pod watch', (r) => r.path === '/api/v1/pods' && r.query.watch === 'true');
    const m = rec.mark();
    await server.setReachable(false);
    // Several failed attempts (each an error event), spaced by the backoff.
    await rec.waitFor('first error', is('error', (e) => /failed/.test(e.message)), m);
    const third = rec.waitFor('third pod-watch error', (e) => rec.since(m).filter((x) => x.kind === 'error' && x.where === 'watch /api/v1/pods').length >= 3, m);
    await third;
    const delays = rec
      .since(m)
      .filter((e): e is Extract<ClusterEvent, { kind: 'error' }> => e.kind === 'error' && e.where === 'watch /api/v1/pods')
      .map((e) => Number(/retrying in (\d+) ms/.exec(e.message)![1]));
    assert.deepEqual(delays.slice(0, 3), [20, 40, 80]);
    // Changes while it is unreachable arrive after it comes back.
    server.put(pod('j', 'n1', '10.244.0.50'));
    await server.setReachable(true);
    await rec.waitFor('pod-upsert j', is('pod-upsert', (e) => e.pod.key === 'default/j'), m);
  });

  it('publishKey merge-patches only the key annotation; null removes it', async () => {
    await fresh();
    const reqMark = server.requests.length;
    let m = rec.mark();
    await source.publishKey('n2' as NodeName, KEY_B);
    const patches = server.requests.slice(reqMark).filter((r) => r.method === 'PATCH');
    assert.equal(patches.length, 1);
    assert.equal(patches[0]!.path, '/api/v1/nodes/n2');
    assert.equal(patches[0]!.contentType, 'application/merge-patch+json');
    assert.deepEqual(patches[0]!.body, { metadata: { annotations: { 'wgplane.io/public-key': KEY_B } } });
    const stored = server.get('nodes', 'n2')!;
    const md = stored.metadata as { annotations: Record<string, string>; labels: Record<string, string> };
    assert.deepEqual(md.annotations, { 'other.io/keep': 'yes', 'wgplane.io/public-key': KEY_B });
    assert.deepEqual(md.labels, { 'kubernetes.io/hostname': 'n2' });
    assert.deepEqual(stored.spec, { podCIDR: '10.244.0.0/24' });
    await rec.waitFor('node-upsert n2 with key', is('node-upsert', (e) => e.node.name === 'n2' && e.node.publicKey === KEY_B), m);

    m = rec.mark();
    await source.publishKey('n2' as NodeName, null);
    const clear = server.requests.slice(reqMark).filter((r) => r.method === 'PATCH')[1]!;
    assert.deepEqual(clear.body, { metadata: { annotations: { 'wgplane.io/public-key': null } } });
    assert.deepEqual((server.get('nodes', 'n2')!.metadata as { annotations: unknown }).annotations, { 'other.io/keep': 'yes' });
    await rec.waitFor('node-upsert n2 without key', is('node-upsert', (e) => e.node.name === 'n2' && e.node.publicKey === null), m);

    await assert.rejects(source.publishKey('nope' as NodeName, KEY_A), /publishing the public key on Node nope: HTTP 404/);
  });

  it('publishStatus writes the status annotation as JSON and clears it', async () => {
    await fresh();
    const status = { time: '2025-01-01T00:00:00.000Z', device: 'wg0', mtu: 1420, peers: 1, peersWithHandshake: 1, allowedIPs: 3, pendingOps: 0, lastApply: 'ok' as const, lastError: null };
    await source.publishStatus('n1' as NodeName, status);
    const ann = (server.get('nodes', 'n1')!.metadata as { annotations: Record<string, string> }).annotations;
    assert.deepEqual(JSON.parse(ann['wgplane.io/status']!), status);
    assert.equal(ann['wgplane.io/public-key'], KEY_A);
    await source.publishStatus('n1' as NodeName, null);
    const ann2 = (server.get('nodes', 'n1')!.metadata as { annotations: Record<string, string> }).annotations;
    assert.equal(ann2['wgplane.io/status'], undefined);
    assert.equal(ann2['wgplane.io/public-key'], KEY_A);
  });

  it('patchSettings creates the ConfigMap when missing, then merge-patches it', async () => {
    await fresh(initialObjects().filter((o) => (o as { metadata: { name: string } }).metadata.name !== 'wgplane'));
    const snap = (rec.events[0] as Extract<ClusterEvent, { kind: 'replace' }>).snapshot;
    assert.equal(snap.settingsFound, false);
    const reqMark = server.requests.length;
    let m = rec.mark();
    await source.patchSettings({ enabled: 'true' });
    const writes = server.requests.slice(reqMark).filter((r) => r.method !== 'GET');
    assert.deepEqual(
      writes.map((r) => `${r.method} ${r.path} ${r.status}`),
      ['PATCH /api/v1/namespaces/kube-system/configmaps/wgplane 404', 'POST /api/v1/namespaces/kube-system/configmaps 201'],
    );
    assert.deepEqual(server.get('configmaps', 'wgplane', 'kube-system')!.data, { enabled: 'true' });
    let s = await rec.waitFor('settings created', is('settings', (e) => e.found), m);
    assert.equal(s.settings.enabled, true);

    m = rec.mark();
    await source.patchSettings({ mtu: '1300' });
    const patch = server.requests.slice(reqMark).filter((r) => r.method === 'PATCH')[1]!;
    assert.equal(patch.contentType, 'application/merge-patch+json');
    assert.deepEqual(patch.body, { data: { mtu: '1300' } });
    assert.deepEqual(server.get('configmaps', 'wgplane', 'kube-system')!.data, { enabled: 'true', mtu: '1300' });
    s = await rec.waitFor('settings patched', is('settings', (e) => e.settings.mtu === 1300), m);
    assert.equal(s.settings.enabled, true);
  });

  it('bad objects yield error events naming object and field; the source keeps going', async () => {
    const objs = initialObjects();
    objs.push(pod('broken', 'n1', '10.244.0.999'));
    await fresh(objs);
    const first = rec.events.find((e) => e.kind === 'error');
    // Reported during the initial list (before replace), left out of the snapshot.
    assert.ok(first && first.kind === 'error');
    assert.match(first.where, /Pod default\/broken: status\.pod(IP|IPs\[0\]\.ip)/);
    const snap = rec.events.find(is('replace'))!.snapshot;
    assert.equal(snap.pods.has('default/broken' as PodKey), false);
    assert.equal(snap.pods.size, 5);

    // A node whose key annotation is garbled: error, the last good version is kept (no delete, no upsert).
    let m = rec.mark();
    server.put(node('n1', '10.0.0.1', 'not-a-key'));
    const e = await rec.waitFor('node error', is('error', (x) => /Node n1/.test(x.where)), m);
    assert.match(e.where, /wgplane\.io\/public-key/);
    // A bad settings ConfigMap: error, settings unchanged (enabled stays true).
    server.put(settingsCm({ enabled: 'maybe' }));
    const se = await rec.waitFor('settings error', is('error', (x) => /ConfigMap kube-system\/wgplane/.test(x.where)), m);
    assert.match(se.where + se.message, /enabled/);
    server.put(pod('k', 'n1', '10.244.0.60'));
    await rec.waitFor('pod-upsert k', is('pod-upsert', (x) => x.pod.key === 'default/k'), m);
    assert.deepEqual(
      rec.since(m).filter((x) => x.kind !== 'error').map(show),
      ['pod-upsert default/k 10.244.0.60'],
    );
    // Deleting the broken pod is quiet (it was never known); a re-list keeps n1's last good version.
    m = rec.mark();
    server.remove('pods', 'broken', 'default');
    server.dropWatches();
    server.put(pod('l', 'n1', '10.244.0.61'));
    server.compact();
    // Each kind re-lists on its own (one replace each); the pods' replace carries the new pod.
    const rep = await rec.waitFor('replace with l', is('replace', (x) => x.snapshot.pods.has('default/l' as PodKey)), m);
    assert.equal(rep.snapshot.nodes.get('n1' as NodeName)!.publicKey, KEY_A);
    assert.equal(rep.snapshot.settings.enabled, true);
    assert.ok(!rec.since(m).some((x) => x.kind === 'pod-delete'));
  });

  for (const fix of ['fixed', 'deleted'] as const) {
    it(`a bad settings ConfigMap at start holds the first sync (no defaults, no tear-down) until it is ${fix}`, async () => {
      const objects = initialObjects().map((o) => ((o as { metadata: { name: string } }).metadata.name === 'wgplane' ? settingsCm({ enabled: 'yes please' }) : o));
      server = await StandinApiServer.start({ objects });
      source = createKubeSource({ kubeconfig: server.kubeconfigPath, node: 'n1' as NodeName, env: {}, tuning: TUNING });
      rec = new Recorder();
      const s = server, src = source;
      cleanups.push(async () => { await src.stop(); await s.close(); });
      await source.start(rec.push);
      // the field error, then (all three kinds listed) the held sync, and nothing else
      await rec.waitFor('field error', is('error', (x) => /ConfigMap kube-system\/wgplane/.test(x.where) && /enabled/.test(x.where + x.message)));
      await rec.waitFor('held sync', is('error', (x) => /not synced, nothing is changed/.test(x.message)));
      assert.deepEqual(rec.events.filter((x) => x.kind !== 'error').map(show), []);
      // a one-shot reader (wgplane status) stops waiting and says why, well before its timeout
      const t0 = Date.now();
      await assert.rejects(
        readSourceOnce(createKubeSource({ kubeconfig: server.kubeconfigPath, node: 'n1' as NodeName, env: {}, tuning: TUNING }), 30_000),
        /cannot sync: ConfigMap kube-system\/wgplane: the settings do not decode/,
      );
      assert.ok(Date.now() - t0 < 10_000);
      // a pod change while held is not lost: it is in the snapshot of the sync
      server.put(pod('z', 'n2', '10.244.1.99'));
      const m = rec.mark();
      if (fix === 'fixed') server.put(settingsCm({ enabled: 'true', mtu: '1300' }));
      else server.remove('configmaps', 'wgplane', 'kube-system');
      const rep = await rec.waitFor('replace', is('replace'), m);
      await rec.waitFor('synced', is('synced'), m);
      assert.equal(rep.snapshot.settingsFound, fix === 'fixed');
      assert.equal(rep.snapshot.settings.enabled, fix === 'fixed');
      if (fix === 'fixed') assert.equal(rep.snapshot.settings.mtu, 1300);
      await rec.waitFor('pod z', (x) => (x.kind === 'replace' && x.snapshot.pods.has('default/z' as PodKey)) || (x.kind === 'pod-upsert' && x.pod.key === 'default/z'), m);
    });
  }

  it('stop ends every watch and emits nothing more', async () => {
    await fresh();
    await waitForRequest(server, 'three watches', () => server.watchCount() === 3);
    await source.stop();
    const m = rec.mark();
    // The server sees the watches go (connections closed by the client).
    const deadline = Date.now() + DEADLINE_MS;
    while (server.watchCount() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.equal(server.watchCount(), 0);
    server.put(pod('z', 'n1', '10.244.0.99'));
    server.dropWatches();
    assert.deepEqual(rec.since(m), []);
  });
});

describe('stand-in API server', () => {
  it('answers 410 to a list at a compacted resourceVersion and to an expired continue token', async () => {
    const server = await StandinApiServer.start({ objects: initialObjects() });
    try {
      const rv = server.resourceVersion;
      const get = async (q: string) => {
        const r = await fetch(`${server.url}/api/v1/pods${q}`);
        return { status: r.status, body: (await r.json()) as { code?: number; metadata?: { continue?: string }; items?: unknown[] } };
      };
      const page1 = await get('?limit=2');
      assert.equal(page1.status, 200);
      assert.equal(page1.body.items!.length, 2);
      server.put(pod('x', 'n1', '10.244.0.70'));
      assert.equal((await get(`?resourceVersion=${rv}`)).status, 200);
      server.compact();
      const stale = await get(`?resourceVersion=${rv}`);
      assert.equal(stale.status, 410);
      assert.equal(stale.body.code, 410);
      assert.equal((await get(`?limit=2&continue=${page1.body.metadata!.continue}`)).status, 410);
    } finally {
      await server.close();
    }
  });
});

describe('kube source configuration', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'wgplane-kubecfg-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('without any configuration: a clear error, never localhost', () => {
    assert.throws(
      () => createKubeSource({ node: 'n1' as NodeName, env: {}, homeDir: join(dir, 'nohome') }),
      /no Kubernetes configuration: not in a pod \(KUBERNETES_SERVICE_HOST unset\), no --kubeconfig, no \$KUBECONFIG, and .*nohome\/\.kube\/config does not exist/,
    );
  });

  it('a missing --kubeconfig or $KUBECONFIG file, a missing token in a pod, an unknown context: clear errors', () => {
    assert.throws(() => createKubeSource({ node: 'n1' as NodeName, kubeconfig: join(dir, 'absent'), env: {} }), /kubeconfig .*absent \(--kubeconfig\) does not exist/);
    assert.throws(() => createKubeSource({ node: 'n1' as NodeName, env: { KUBECONFIG: join(dir, 'gone') } }), /none of the files in \$KUBECONFIG exists/);
    assert.throws(
      () => createKubeSource({ node: 'n1' as NodeName, env: { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir: dir }),
      /KUBERNETES_SERVICE_HOST is set but there is no service account token/,
    );
    const cfg = join(dir, 'cfg');
    writeFileSync(
      cfg,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server: 'https://192.0.2.1:6443' } }],
        users: [{ name: 'u', user: { token: 't' } }],
        contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }],
        'current-context': 'ctx',
      }),
    );
    assert.throws(() => createKubeSource({ node: 'n1' as NodeName, kubeconfig: cfg, context: 'other', env: {} }), /no context "other"/);
    const ok = loadKubeConfig({ node: 'n1' as NodeName, env: { KUBECONFIG: cfg } });
    assert.equal(ok.kc.getCurrentCluster()!.server, 'https://192.0.2.1:6443');
    assert.match(ok.description, /^kube \(kubeconfig .*cfg, server https:\/\/192\.0\.2\.1:6443\)$/);
  });

  it('in a pod: the service account and KUBERNETES_SERVICE_*', () => {
    writeFileSync(join(dir, 'token'), 'tok');
    writeFileSync(join(dir, 'ca.crt'), '');
    const r = loadKubeConfig({ node: 'n1' as NodeName, env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443', KUBECONFIG: '/nonexistent' }, serviceAccountDir: dir });
    assert.equal(r.kc.getCurrentCluster()!.server, 'https://10.96.0.1:443');
    assert.match(r.description, /^kube \(in-cluster/);
  });
});

// The daemon engine (real kernel in a namespace, wireguard-go) fed by the kube source through the stand-in:
// the agent publishes its key with a merge patch after its device exists, and restores the annotation after
// someone removes or changes it on the API server.
const kernelSkip = kernelTestSkipReason();
describe('daemon engine with the kube source (stand-in API server, real kernel)', { skip: kernelSkip ?? false, timeout: 120_000 }, () => {
  const lab = new Lab('wgpk');
  const gen = generateCluster({ nodes: 3, podsPerNode: 2, flavor: 'aks', seed: 21 });
  const local = nodeNames(gen)[0]!;
  const cluster = setNodeKey(gen, local, null);
  let server: StandinApiServer;
  let engine: Engine;
  let stateDir: string;

  before(async () => {
    if (kernelSkip) return;
    const ns = await lab.namespace();
    const ip = cluster.snapshot.nodes.get(local)!.addresses[0]!.address;
    await addUnderlay(ns.run, ip);
    stateDir = mkdtempSync(join(tmpdir(), 'wgpk-state-'));
    server = await StandinApiServer.start({ objects: cluster.objects });
    const source = createKubeSource({ kubeconfig: server.kubeconfigPath, node: local, env: {}, tuning: TUNING });
    const sink = new Writable({ write(_c, _e, cb) { cb(); } });
    engine = new Engine({
      node: local, source, stateDir, backend: 'userspace', run: ns.run,
      log: createLogger({ level: 'warn', destination: sink }),
      resyncIntervalMs: 600_000, bootstrapPollMs: 300, statusMinIntervalMs: 0, publishRetryMs: 200,
    });
  });

  after(async () => {
    await engine?.stop().catch(() => undefined);
    await server?.close();
    await lab.dispose();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  const annotationOf = () => ((server.get('nodes', local)!.metadata as { annotations?: Record<string, string> }).annotations ?? {})['wgplane.io/public-key'];
  async function until(what: string, f: () => boolean): Promise<void> {
    const end = Date.now() + 30_000;
    while (!f()) {
      if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('publishes its key, and restores the annotation after someone removes or changes it', async () => {
    assert.equal(annotationOf(), undefined);
    await engine.start();
    await until('the key is published on the stand-in', () => annotationOf() === engine.publicKey);
    const keyPatches = () => server.requests.filter((r) => r.method === 'PATCH' && r.path === `/api/v1/nodes/${local}` && JSON.stringify(r.body).includes('public-key'));
    assert.equal(keyPatches().length, 1);
    assert.equal(keyPatches()[0]!.contentType, 'application/merge-patch+json');
    assert.deepEqual(keyPatches()[0]!.body, { metadata: { annotations: { 'wgplane.io/public-key': engine.publicKey } } });

    // Someone removes the annotation (a plain update on the server, seen through the watch).
    const stripped = server.get('nodes', local)!;
    delete (stripped.metadata as { annotations: Record<string, string> }).annotations['wgplane.io/public-key'];
    server.put(stripped);
    await until('the key is restored', () => keyPatches().length === 2 && annotationOf() === engine.publicKey);

    // Someone writes another key.
    const other = server.get('nodes', local)!;
    (other.metadata as { annotations: Record<string, string> }).annotations['wgplane.io/public-key'] = generateKey(777);
    server.put(other);
    await until('the key is restored again', () => keyPatches().length === 3 && annotationOf() === engine.publicKey);
  });
});
