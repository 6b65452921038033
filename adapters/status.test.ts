// `wgplane status` assembly and rendering from real inputs (a manifest directory with publications, an
// observed dataplane as the observer returns it), and `wgplane enable|disable` through the CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import type { Cidr } from '../core/ip.js';
import type { WgKey } from '../core/key.js';
import { EMPTY_OBSERVED, type NodeName, type ObservedDataplane, type ObservedPeer } from '../core/model.js';
import { wgplaneHere } from '../testing/cluster.js';
import { createDirSource } from './sources/dir.js';
import { clusterStatus, nodeStatus, parseSourceSpec, readCluster, renderClusterStatusText, renderNodeStatusText } from './status.js';
import type { PublishedStatus } from './sources/source.js';

const KEY_A = 'Q0xjMEEEMePIgVm7oJgbt8PXxh/JjqkDjhB5yN4Y6xs=' as WgKey;
const KEY_B = 'mCUdIvvzeVLj0FmYxsAoJ1s0U5nYQhH2wC1oM0mv1l8=' as WgKey;
const node = (name: string, ip: string, podCIDR: string) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name }, spec: { podCIDR }, status: { addresses: [{ type: 'InternalIP', address: ip }] } });
const STATUS: PublishedStatus = { time: '2024-05-17T10:00:00.000Z', device: 'wireguard.wgp', mtu: 1440, peers: 1, peersWithHandshake: 1, allowedIPs: 1, pendingOps: 0, lastApply: 'ok', lastError: null };

async function clusterDir(t: { after: (f: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'wgplane-status-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'wgplane', namespace: 'kube-system' }, data: { enabled: 'true' } };
  await writeFile(path.join(dir, 'cluster.yaml'), [node('n1', '10.0.0.1', '10.244.1.0/24'), node('n2', '10.0.0.2', '10.244.2.0/24'), node('n3', '10.0.0.3', '10.244.3.0/24'), cm].map((o) => stringify(o)).join('---\n'));
  await createDirSource(dir).publishKey('n1' as NodeName, KEY_A);
  const b = createDirSource(dir);
  await b.publishKey('n2' as NodeName, KEY_B);
  await b.publishStatus('n2' as NodeName, STATUS);
  return dir;
}

test('this node: peers named by their published keys, key checks, pending plan, daemon status', async (t) => {
  const dir = await clusterDir(t);
  const view = await readCluster(parseSourceSpec(`dir:${dir}`, undefined), 'n1' as NodeName);
  const peer: ObservedPeer = { publicKey: KEY_B, endpoint: '10.0.0.2:51820', allowedIPs: ['10.244.2.0/24' as Cidr], persistentKeepalive: 0, latestHandshake: 1_000_000 - 75, rxBytes: 2048, txBytes: 100 };
  const observed: ObservedDataplane = {
    ...EMPTY_OBSERVED,
    device: { name: 'wireguard.wgp', linkKind: 'wireguard', mtu: 1440, up: true, addresses: [], listenPort: 51820, fwmark: 0x100000, publicKey: KEY_A },
    peers: new Map([[KEY_B, peer]]),
    underlayMtu: 1500,
  };
  const s = nodeStatus({ node: 'n1' as NodeName, view, storedKey: KEY_A, observed, daemon: null, nowS: 1_000_000 });
  assert.deepEqual(s.key, { stored: KEY_A, published: KEY_A, publishedMatches: true });
  assert.equal(s.device?.keyMatchesStore, true);
  assert.deepEqual(s.peers.map((p) => [p.node, p.handshakeAgeS, p.allowedIPs]), [['n2', 75, 1]]);
  assert.ok(s.pendingOps! > 0, 'the rule, routes and firewall are missing from this observed state');
  assert.deepEqual(s.errors, []);
  const text = renderNodeStatusText(s);
  assert.match(text, /key\s+Q0xjMEEE…; published \(matches\)/);
  assert.match(text, /n2\s+mCUdIvvz…\s+10\.0\.0\.2:51820\s+75s ago\s+2\.0 KiB\s+100 B\s+1/);
  assert.match(text, /last apply\s+unknown \(no status\.json/);

  const other = nodeStatus({ node: 'n1' as NodeName, view, storedKey: KEY_B, observed: new Error('ip: permission denied'), daemon: { time: null, source: null, lastApply: 'failed', lastError: 'boom', lastSuccess: null, lastReconcile: null }, nowS: 0 });
  assert.equal(other.key.publishedMatches, false);
  assert.equal(other.pendingOps, null);
  assert.deepEqual(other.errors, ['cannot read the kernel: ip: permission denied']);
  assert.match(renderNodeStatusText(other), /DIFFERS from the stored key[\s\S]*last apply\s+failed: boom/);
});

test('--all: every node with its published key and status', async (t) => {
  const dir = await clusterDir(t);
  for (const spec of [parseSourceSpec(`dir:${dir}`, undefined), parseSourceSpec(undefined, dir)]) {
    const view = await readCluster(spec, 'n1' as NodeName);
    const rows = clusterStatus(view, Date.parse(STATUS.time) + 30_000);
    assert.deepEqual(rows.map((r) => [r.node, r.keyPublished, r.status?.lastApply ?? null, r.statusAgeS]), [['n1', true, null, null], ['n2', true, 'ok', 30], ['n3', false, null, null]]);
    const text = renderClusterStatusText(rows, view.description);
    assert.match(text, /^3 nodes in .*; 2 with a published key/);
    assert.match(text, /n2\s+mCUdIvvz…\s+wireguard\.wgp\s+1440\s+1\s+1\/1\s+1\s+0\s+ok\s+30s ago/);
    assert.match(text, /n3\s+no\s+-/);
  }
  assert.throws(() => parseSourceSpec('dir:/x', '/y'), /not both/);
  assert.throws(() => parseSourceSpec('file:/x', undefined), /want kube or dir:PATH/);
});

test('wgplane enable|disable through the CLI: settings validated before anything is written', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'wgplane-enable-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(path.join(dir, 'nodes.yaml'), stringify(node('n1', '10.0.0.1', '10.244.1.0/24')));
  const cli = (...args: string[]) => wgplaneHere(args);
  let r = await cli('enable', '--source', `dir:${dir}`, '--set', 'mtu=99', '--set', 'listenPort=51999');
  assert.equal(r.exitCode, 1);
  assert.match(r.stderr, /nothing was written[\s\S]*--set mtu: "99" is out of range/);
  assert.deepEqual(await readdir(dir), ['nodes.yaml']);
  r = await cli('enable', '--source', `dir:${dir}`, '--set', 'enabled=false');
  assert.equal(r.exitCode, 1);
  assert.match(r.stderr, /use `wgplane enable` or `wgplane disable`/);
  r = await cli('enable', '--source', `dir:${dir}`, '--set', 'mtu=1400');
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /WireGuard enabled in dir:/);
  let s = await readCluster(parseSourceSpec(undefined, dir), 'n1' as NodeName);
  assert.deepEqual([s.snapshot.settings.enabled, s.snapshot.settings.mtu], [true, 1400]);
  r = await cli('disable', '--source', `dir:${dir}`);
  assert.equal(r.exitCode, 0, r.stderr);
  s = await readCluster(parseSourceSpec(undefined, dir), 'n1' as NodeName);
  assert.deepEqual([s.snapshot.settings.enabled, s.snapshot.settings.mtu], [false, 1400], 'disable keeps the other settings');
  assert.match(await readFile(path.join(dir, 'wgplane-settings.yaml'), 'utf8'), /enabled: "false"/);
});
