// The dir source against a real directory: reading, watching (and the poll fallback), bad files keeping
// their last good content, node publications, and settings patches that keep the operator's file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, readdir, rm, writeFile, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { WgKey } from '../../core/key.js';
import type { ClusterSnapshot, NodeName } from '../../core/model.js';
import { readSnapshot } from '../manifest.js';
import { PUBLICATION_DIR } from '../publication.js';
import { SETTINGS_FILE, createDirSource, type DirSource } from './dir.js';
import type { ClusterEvent, PublishedStatus } from './source.js';

const KEY_A = 'Q0xjMEEEMePIgVm7oJgbt8PXxh/JjqkDjhB5yN4Y6xs=' as WgKey;
const KEY_B = 'mCUdIvvzeVLj0FmYxsAoJ1s0U5nYQhH2wC1oM0mv1l8=' as WgKey;
const KEY_OP = 'aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd28=' as WgKey;

const node = (name: string, ip: string, key?: string) => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name, annotations: key ? { 'wgplane.io/public-key': key } : {} },
  spec: {},
  status: { addresses: [{ type: 'InternalIP', address: ip }] },
});
const pod = (name: string, nodeName: string, ip: string) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default' },
  spec: { nodeName },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
});
const yamlDocs = (...objs: object[]) => objs.map((o) => stringify(o)).join('---\n');

const STATUS: PublishedStatus = { time: '2024-05-17T10:00:00.000Z', device: 'wireguard.wgp', mtu: 1440, peers: 1, peersWithHandshake: 1, allowedIPs: 3, pendingOps: 0, lastApply: 'ok', lastError: null };

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'wgplane-dir-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

/** Collects a source's events; `next` waits (with a deadline) for an event matching a predicate that
 *  arrives after the given mark. */
class Events {
  readonly all: ClusterEvent[] = [];
  private waiters: (() => void)[] = [];
  readonly push = (e: ClusterEvent) => {
    this.all.push(e);
    for (const w of this.waiters.splice(0)) w();
  };
  mark(): number {
    return this.all.length;
  }
  async next<K extends ClusterEvent['kind']>(kind: K, from: number, pred: (e: Extract<ClusterEvent, { kind: K }>) => boolean = () => true, ms = 5000): Promise<Extract<ClusterEvent, { kind: K }>> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = this.all.slice(from).find((e): e is Extract<ClusterEvent, { kind: K }> => e.kind === kind && pred(e as Extract<ClusterEvent, { kind: K }>));
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${kind} event within ${ms} ms; events: ${JSON.stringify(this.all.slice(from).map((e) => (e.kind === 'error' ? e : e.kind)))}`);
      await new Promise<void>((res) => {
        const timer = setTimeout(res, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          res();
        });
      });
    }
  }
  since(from: number): ClusterEvent[] {
    return this.all.slice(from);
  }
}

async function started(t: { after: (fn: () => Promise<void>) => void }, dir: string, pollMs = 200): Promise<{ src: DirSource; ev: Events }> {
  const src = createDirSource(dir, { pollMs, debounceMs: 20 });
  const ev = new Events();
  await src.start(ev.push);
  t.after(() => src.stop());
  return { src, ev };
}

const lastSnapshot = (ev: Events): ClusterSnapshot => {
  const r = ev.all.filter((e) => e.kind === 'replace').at(-1);
  assert.ok(r && r.kind === 'replace', 'no replace event');
  return r.snapshot;
};

/** Waits a few poll periods and says whether the source stayed silent (a negative check with a bound). */
async function quiet(ev: Events, from: number, kinds: ClusterEvent['kind'][], ms = 600): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
  assert.deepEqual(ev.since(from).filter((e) => kinds.includes(e.kind)).map((e) => e.kind), []);
}

test('reads the directory like readSnapshot: replace then synced', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'nodes.yaml'), yamlDocs(node('n1', '10.0.0.1', KEY_A), node('n2', '10.0.0.2')));
  await mkdir(join(dir, 'pods'));
  await writeFile(join(dir, 'pods', 'p.json'), JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [pod('a', 'n1', '10.1.0.1')] }));
  const { ev } = await started(t, dir);
  assert.deepEqual(ev.all.map((e) => e.kind), ['replace', 'synced']);
  const s = lastSnapshot(ev);
  assert.deepEqual([...s.nodes.keys()], ['n1', 'n2']);
  assert.equal(s.nodes.get('n1' as NodeName)!.publicKey, KEY_A);
  assert.deepEqual([...s.pods.keys()], ['default/a']);
  assert.deepEqual(s, await readSnapshot(dir));
});

test('a change emits replace; a half-written file gives an error naming it and keeps its last good content', async (t) => {
  const dir = await tempDir(t);
  const nodes = join(dir, 'nodes.yaml');
  const pods = join(dir, 'pods.yaml');
  await writeFile(nodes, yamlDocs(node('n1', '10.0.0.1'), node('n2', '10.0.0.2')));
  await writeFile(pods, yamlDocs(pod('a', 'n1', '10.1.0.1'), pod('b', 'n2', '10.1.0.2')));
  const { ev } = await started(t, dir);

  let m = ev.mark();
  await writeFile(pods, yamlDocs(pod('a', 'n1', '10.1.0.1'), pod('b', 'n2', '10.1.0.2'), pod('c', 'n2', '10.1.0.3')));
  const r = await ev.next('replace', m);
  assert.deepEqual([...r.snapshot.pods.keys()].sort(), ['default/a', 'default/b', 'default/c']);

  // Half-written: cut in the middle of a mapping (a YAML syntax error).
  m = ev.mark();
  const full = yamlDocs(pod('a', 'n1', '10.1.0.1'), pod('d', 'n2', '10.1.0.4'));
  await writeFile(pods, full.slice(0, full.indexOf('podIPs') + 9) + '\n  - {ip: [');
  const err = await ev.next('error', m);
  assert.equal(err.where, pods);
  assert.match(err.message, /last good content is kept/);
  await quiet(ev, m, ['replace']);

  // A file that parses but does not decode: also an error naming the file, old content kept.
  m = ev.mark();
  await writeFile(pods, yamlDocs(pod('a', 'n1', '10.1.0.999')));
  const err2 = await ev.next('error', m);
  assert.equal(err2.where, pods);
  assert.match(err2.message, /10\.1\.0\.999/);
  await quiet(ev, m, ['replace']);

  m = ev.mark();
  await writeFile(pods, full);
  const r2 = await ev.next('replace', m);
  assert.deepEqual([...r2.snapshot.pods.keys()].sort(), ['default/a', 'default/d']);
  assert.equal(ev.all.filter((e) => e.kind === 'synced').length, 1, 'synced only once');
});

test('a new bad file is left out; a duplicate of another file\'s node is refused; a removed file drops its objects', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'a.yaml'), yamlDocs(node('n1', '10.0.0.1')));
  const { ev } = await started(t, dir);
  let m = ev.mark();
  await writeFile(join(dir, 'b.yaml'), yamlDocs(node('n1', '10.0.0.9'), node('n2', '10.0.0.2')));
  const e = await ev.next('error', m);
  assert.equal(e.where, join(dir, 'b.yaml'));
  assert.match(e.message, /appears twice.*left out/);
  await quiet(ev, m, ['replace']);
  m = ev.mark();
  await writeFile(join(dir, 'b.yaml'), yamlDocs(node('n2', '10.0.0.2')));
  assert.deepEqual([...(await ev.next('replace', m)).snapshot.nodes.keys()], ['n1', 'n2']);
  m = ev.mark();
  await rm(join(dir, 'b.yaml'));
  assert.deepEqual([...(await ev.next('replace', m)).snapshot.nodes.keys()], ['n1']);
});

test('the first sync waits until every file is good; a missing directory is found by the poll', async (t) => {
  const parent = await tempDir(t);
  const dir = join(parent, 'later');
  const { ev } = await started(t, dir, 100);
  assert.equal(ev.all[0]?.kind, 'error');
  assert.equal(ev.all.some((e) => e.kind === 'synced'), false);
  const m = ev.mark();
  await mkdir(dir);
  await writeFile(join(dir, 'good.yaml'), yamlDocs(node('n1', '10.0.0.1')));
  await writeFile(join(dir, 'bad.yaml'), 'kind: Node\n  bad: [indent');
  const err = await ev.next('error', m, (x) => x.where === join(dir, 'bad.yaml'));
  assert.match(err.message, /left out/);
  await quiet(ev, m, ['replace', 'synced']);
  await writeFile(join(dir, 'bad.yaml'), yamlDocs(node('n2', '10.0.0.2')));
  await ev.next('synced', m);
  assert.deepEqual([...lastSnapshot(ev).nodes.keys()].sort(), ['n1', 'n2']);
});

test('publications: each agent writes only its own file; keys merge onto Nodes, override the operator, status changes no snapshot', async (t) => {
  const dir = await tempDir(t);
  const opText = `# the operator's nodes\n${yamlDocs(node('n1', '10.0.0.1', KEY_OP), node('n2', '10.0.0.2'))}`;
  await writeFile(join(dir, 'nodes.yaml'), opText);
  const { src: a, ev } = await started(t, dir);
  const b = createDirSource(dir, { pollMs: 200 }); // a second agent sharing the directory (publishing only)

  let m = ev.mark();
  await a.publishKey('n1' as NodeName, KEY_A);
  let r = await ev.next('replace', m, (x) => x.snapshot.nodes.get('n1' as NodeName)?.publicKey === KEY_A);
  m = ev.mark();
  await b.publishKey('n2' as NodeName, KEY_B);
  r = await ev.next('replace', m, (x) => x.snapshot.nodes.get('n2' as NodeName)?.publicKey === KEY_B);
  assert.equal(r.snapshot.nodes.get('n1' as NodeName)?.publicKey, KEY_A, "the other agent's key stays");
  assert.equal(await readFile(join(dir, 'nodes.yaml'), 'utf8'), opText, "the operator's file is untouched");
  assert.deepEqual((await readdir(join(dir, PUBLICATION_DIR))).sort(), ['n1.yaml', 'n2.yaml'], 'no temporary files left');

  // readSnapshot (plan --snapshot DIR) sees published keys too.
  const s = await readSnapshot(dir);
  assert.equal(s.nodes.get('n1' as NodeName)?.publicKey, KEY_A);
  assert.equal(s.nodes.get('n2' as NodeName)?.publicKey, KEY_B);

  // Status: published next to the key, visible in the annotations, but no replace (no NodeInfo changed).
  m = ev.mark();
  await a.publishStatus('n1' as NodeName, STATUS);
  const text = await readFile(join(dir, PUBLICATION_DIR, 'n1.yaml'), 'utf8');
  assert.match(text, new RegExp(KEY_A.replace(/[+/]/g, '\\$&')), 'publishing status kept the key');
  await quiet(ev, m, ['replace']);
  assert.deepEqual(a.nodeAnnotations().get('n1' as NodeName), { publicKey: KEY_A, status: STATUS, statusError: null });

  // Clearing the key (WireGuard disabled) removes it, also over the operator's annotation.
  m = ev.mark();
  await a.publishKey('n1' as NodeName, null);
  r = await ev.next('replace', m, (x) => x.snapshot.nodes.get('n1' as NodeName)?.publicKey === null);
  assert.match(await readFile(join(dir, PUBLICATION_DIR, 'n1.yaml'), 'utf8'), /time: 2024-05-17/, 'clearing the key kept the status');

  // A publication for a node that does not exist is ignored; a bad one is an error naming its file.
  await b.publishKey('ghost' as NodeName, KEY_B);
  m = ev.mark();
  await writeFile(join(dir, PUBLICATION_DIR, 'n2.yaml'), 'apiVersion: wgplane.io/v1\nkind: NodePublication\nmetadata: {name: n2}\npublicKey: nope\n');
  const e = await ev.next('error', m);
  assert.equal(e.where, join(dir, PUBLICATION_DIR, 'n2.yaml'));
  assert.match(e.message, /publicKey.*not a WireGuard public key/);
  await quiet(ev, m, ['replace']);
  assert.equal(a.nodeAnnotations().get('n2' as NodeName)?.publicKey, KEY_B, 'the last good publication is kept');
  await assert.rejects(a.publishKey('../evil' as NodeName, KEY_A), /not a node name/);
  await b.stop();
});

test('a restarted agent keeps the status (or key) it published before', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'nodes.yaml'), yamlDocs(node('n1', '10.0.0.1')));
  const first = createDirSource(dir);
  await first.publishStatus('n1' as NodeName, STATUS);
  const second = createDirSource(dir);
  await second.publishKey('n1' as NodeName, KEY_A);
  const { src } = await started(t, dir);
  assert.deepEqual(src.nodeAnnotations().get('n1' as NodeName), { publicKey: KEY_A, status: STATUS, statusError: null });
});

test('patchSettings edits the ConfigMap in place, keeping the file\'s other documents and comments', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'cluster.yaml');
  const text = [
    '# my cluster',
    yamlDocs(node('n1', '10.0.0.1')).trimEnd(),
    '---',
    '# settings of wgplane',
    'apiVersion: v1',
    'kind: ConfigMap',
    'metadata:',
    '  name: wgplane',
    '  namespace: kube-system',
    'data:',
    '  mtu: "1400" # the VNET fragments above 1400',
    '  enabled: "false"',
    '',
  ].join('\n');
  await writeFile(file, text);
  const { src, ev } = await started(t, dir);
  assert.equal(lastSnapshot(ev).settings.enabled, false);
  const m = ev.mark();
  await src.patchSettings({ enabled: 'true', listenPort: '51999' });
  const r = await ev.next('replace', m);
  assert.equal(r.snapshot.settings.enabled, true);
  assert.equal(r.snapshot.settings.listenPort, 51999);
  assert.equal(r.snapshot.settings.mtu, 1400);
  const after = await readFile(file, 'utf8');
  assert.match(after, /^# my cluster\n/);
  assert.match(after, /# settings of wgplane/);
  assert.match(after, /mtu: "1400" # the VNET fragments above 1400/);
  assert.match(after, /enabled: "true"/);
  assert.deepEqual([...r.snapshot.nodes.keys()], ['n1']);
  assert.deepEqual((await readdir(dir)).sort(), ['cluster.yaml'], 'no new or temporary files');

  await assert.rejects(src.patchSettings({ mtu: '9' }), /nothing written.*mtu/);
  await assert.rejects(src.patchSettings({ enable: 'true' }), /unknown setting/);
  assert.equal(await readFile(file, 'utf8'), after);
});

test('patchSettings keeps the layout of a kubectl-style file (unindented sequences, long lines, anchors)', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'podcidr.yaml');
  const original = await readFile(new URL('../../examples/podcidr.yaml', import.meta.url), 'utf8');
  await writeFile(file, original);
  await createDirSource(dir).patchSettings({ listenPort: '51999', persistentKeepalive: '25' });
  const after = await readFile(file, 'utf8');
  const removed = original.split('\n').filter((l) => !after.split('\n').includes(l));
  const added = after.split('\n').filter((l) => !original.split('\n').includes(l));
  assert.deepEqual(removed, ['    listenPort: "51820"']);
  assert.deepEqual(added, ['    listenPort: "51999"', '    persistentKeepalive: "25"']);
  const s = (await readSnapshot(dir)).settings;
  assert.deepEqual([s.listenPort, s.persistentKeepalive], [51999, 25]);
});

test('patchSettings inside a List (JSON) and in a new file when no manifest holds the settings', async (t) => {
  const dir = await tempDir(t);
  const json = join(dir, 'all.json');
  await writeFile(json, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [node('n1', '10.0.0.1'), { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'wgplane', namespace: 'kube-system' }, data: { mtu: '1400' } }] }));
  const src = createDirSource(dir);
  await src.patchSettings({ enabled: 'true' });
  const v = JSON.parse(await readFile(json, 'utf8')) as { items: { data?: Record<string, string> }[] };
  assert.deepEqual(v.items[1]!.data, { mtu: '1400', enabled: 'true' });

  const dir2 = await tempDir(t);
  await writeFile(join(dir2, 'nodes.yaml'), yamlDocs(node('n1', '10.0.0.1')));
  const src2 = createDirSource(dir2);
  await src2.patchSettings({ enabled: 'true' });
  let s = await readSnapshot(dir2);
  assert.equal(s.settings.enabled, true);
  assert.equal(s.settingsFound, true);
  await src2.patchSettings({ enabled: 'false', resyncInterval: '5' });
  s = await readSnapshot(dir2);
  assert.deepEqual([s.settings.enabled, s.settings.resyncInterval], [false, 5]);
  assert.deepEqual((await readdir(dir2)).sort(), ['nodes.yaml', SETTINGS_FILE]);
});

test('an atomic replace by rename is seen (the way editors and agents write)', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'nodes.yaml'), yamlDocs(node('n1', '10.0.0.1')));
  const { ev } = await started(t, dir);
  const m = ev.mark();
  await writeFile(join(dir, '.tmp-nodes'), yamlDocs(node('n1', '10.0.0.1'), node('n3', '10.0.0.3')));
  await rename(join(dir, '.tmp-nodes'), join(dir, 'nodes.yaml'));
  const r = await ev.next('replace', m);
  assert.deepEqual([...r.snapshot.nodes.keys()], ['n1', 'n3']);
});
