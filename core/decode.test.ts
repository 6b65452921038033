import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as E from 'fp-ts/lib/Either.js';
import {
  type SourceDocument,
  MAX_DECODE_ERRORS,
  decodeNode,
  decodeObjects,
  decodePod,
  decodePodSlow,
  decodeSettingsConfigMap,
  formatDecodeError,
  podFast,
} from './decode.js';
import { DEFAULT_SETTINGS } from './settings.js';
import type { ClusterSnapshot, NodeName, PodKey } from './model.js';

const KEY_A = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
const KEY_B = 'TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=';

type Obj = Record<string, unknown>;
const node = (name: string, extra: Obj = {}): Obj => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name, labels: { 'kubernetes.io/hostname': name }, annotations: { 'wgplane.io/public-key': KEY_A } },
  spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'], providerID: 'kind://docker/kind/' + name },
  status: { addresses: [{ type: 'InternalIP', address: '172.18.0.2' }, { type: 'Hostname', address: name }] },
  ...extra,
});
const pod = (ns: string, name: string, extra: Obj = {}): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: ns, uid: 'u' },
  spec: { nodeName: 'n1', containers: [] },
  status: { phase: 'Running', podIP: '10.244.1.5', podIPs: [{ ip: '10.244.1.5' }] },
  ...extra,
});
const settingsCM = (data: unknown): Obj => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'kube-system', name: 'wgplane' }, data });
const list = (items: unknown[], source = 'cluster.yaml'): SourceDocument[] => [{ source, value: { apiVersion: 'v1', kind: 'List', items, metadata: { resourceVersion: '' } } }];

function ok(docs: SourceDocument[]): ClusterSnapshot {
  const r = decodeObjects(docs);
  if (E.isLeft(r)) assert.fail(r.left.map(formatDecodeError).join('\n'));
  return r.right;
}
function errs(docs: SourceDocument[]): string[] {
  const r = decodeObjects(docs);
  if (E.isRight(r)) assert.fail('expected errors');
  return r.left.map(formatDecodeError);
}
/** A copy of `o` with the value at `path` (dot-separated; numbers index arrays) set; undefined deletes. */
function withAt(o: Obj, path: string, v: unknown): Obj {
  const copy = structuredClone(o);
  const keys = path.split('.');
  let cur: any = copy;
  for (const k of keys.slice(0, -1)) cur = cur[k] ??= {};
  const last = keys[keys.length - 1]!;
  if (v === undefined) delete cur[last];
  else cur[last] = v;
  return copy;
}

describe('decodeObjects: good input', () => {
  it('decodes a List of a node, a pod and the settings', () => {
    const s = ok(list([node('n1'), pod('default', 'web'), settingsCM({ enabled: 'true', mtu: '1400' })]));
    assert.deepEqual(s.nodes.get('n1' as NodeName), {
      name: 'n1',
      addresses: [{ type: 'InternalIP', address: '172.18.0.2' }],
      labels: { 'kubernetes.io/hostname': 'n1' },
      providerID: 'kind://docker/kind/n1',
      podCIDRs: ['10.244.1.0/24'],
      publicKey: KEY_A,
    });
    assert.deepEqual(s.pods.get('default/web' as PodKey), { key: 'default/web', nodeName: 'n1', ips: ['10.244.1.5'], phase: 'Running', hostNetwork: false });
    assert.deepEqual(s.settings, { ...DEFAULT_SETTINGS, enabled: true, mtu: 1400 });
    assert.equal(s.settingsFound, true);
  });
  it('without the ConfigMap: defaults, settingsFound false', () => {
    const s = ok(list([node('n1')]));
    assert.deepEqual(s.settings, DEFAULT_SETTINGS);
    assert.equal(s.settingsFound, false);
  });
  it('single objects across documents and sources', () => {
    const s = ok([
      { source: 'a.yaml', value: node('n1') },
      { source: 'a.yaml', value: node('n2') },
      { source: 'b.json', value: pod('kube-system', 'x') },
    ]);
    assert.deepEqual([...s.nodes.keys()], ['n1', 'n2']);
    assert.deepEqual([...s.pods.keys()], ['kube-system/x']);
  });
  it('ignores other kinds, other API versions and other ConfigMaps', () => {
    const s = ok(list([
      { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd' } },
      { apiVersion: 'v1', kind: 'Service', spec: 42 },
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'default', name: 'wgplane' }, data: { bogus: 1 } },
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'kube-system', name: 'coredns' }, data: { Corefile: '.:53' } },
      { apiVersion: 'v2', kind: 'Node', metadata: 1 },
    ]));
    assert.equal(s.nodes.size + s.pods.size, 0);
    assert.equal(s.settingsFound, false);
  });
  it('typed lists (NodeList, PodList) whose items omit apiVersion/kind', () => {
    const bare = (o: Obj) => { const { apiVersion: _a, kind: _k, ...rest } = o; return rest; };
    const s = ok([
      { source: 'raw.json', value: { apiVersion: 'v1', kind: 'NodeList', items: [bare(node('n1'))] } },
      { source: 'raw.json', value: { apiVersion: 'v1', kind: 'PodList', items: [bare(pod('a', 'b'))] } },
    ]);
    assert.equal(s.nodes.size, 1);
    assert.equal(s.pods.size, 1);
  });
  it('an empty List, and a List without items', () => {
    assert.equal(ok(list([])).nodes.size, 0);
    assert.equal(ok([{ source: 's', value: { apiVersion: 'v1', kind: 'List' } }]).nodes.size, 0);
  });
});

describe('decodeNode: fields', () => {
  const cases: { name: string; patch: [string, unknown][]; want: Obj }[] = [
    { name: 'podCIDRs wins over podCIDR, canonical and deduplicated', patch: [['spec.podCIDRs', ['10.244.1.0/24', 'FD00:10:244:1::/64', 'fd00:10:244:1::/64']]], want: { podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'] } },
    { name: 'podCIDR alone', patch: [['spec.podCIDRs', undefined]], want: { podCIDRs: ['10.244.1.0/24'] } },
    { name: 'empty podCIDRs falls back to podCIDR', patch: [['spec.podCIDRs', []]], want: { podCIDRs: ['10.244.1.0/24'] } },
    { name: 'no pod CIDR (Azure CNI)', patch: [['spec', { providerID: 'azure:///x' }]], want: { podCIDRs: [], providerID: 'azure:///x' } },
    { name: 'no spec at all', patch: [['spec', undefined]], want: { podCIDRs: [], providerID: null } },
    { name: 'null spec fields are absent', patch: [['spec', { podCIDR: null, podCIDRs: null, providerID: null }]], want: { podCIDRs: [], providerID: null } },
    { name: 'empty providerID is null', patch: [['spec.providerID', '']], want: { providerID: null } },
    { name: 'absent annotation: null key', patch: [['metadata.annotations', { other: 'x' }]], want: { publicKey: null } },
    { name: 'no annotations: null key', patch: [['metadata.annotations', undefined]], want: { publicKey: null } },
    { name: 'empty annotation: null key', patch: [['metadata.annotations', { 'wgplane.io/public-key': '' }]], want: { publicKey: null } },
    { name: 'no labels: {}', patch: [['metadata.labels', undefined]], want: { labels: {} } },
    {
      name: 'addresses: IP-valued only, canonical IPv6, deduplicated',
      patch: [['status.addresses', [
        { type: 'InternalIP', address: '10.224.0.4' },
        { type: 'InternalIP', address: 'FD00::0004' },
        { type: 'InternalIP', address: '10.224.0.4' },
        { type: 'Hostname', address: 'aks-1' },
        { type: 'InternalDNS', address: 'aks-1.internal' },
        { type: 'ExternalIP', address: '20.1.2.3' },
      ]]],
      want: { addresses: [{ type: 'InternalIP', address: '10.224.0.4' }, { type: 'InternalIP', address: 'fd00::4' }, { type: 'ExternalIP', address: '20.1.2.3' }] },
    },
    { name: 'no status: no addresses', patch: [['status', undefined]], want: { addresses: [] } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      let v = node('n1');
      for (const [p, x] of c.patch) v = withAt(v, p, x);
      const r = decodeNode(v, 'Node n1');
      if (E.isLeft(r)) assert.fail(r.left.map(formatDecodeError).join('\n'));
      for (const [k, want] of Object.entries(c.want)) assert.deepEqual((r.right as unknown as Obj)[k], want, k);
    });
  }
});

describe('decodePod: fields', () => {
  const cases: { name: string; patch: [string, unknown][]; want: Obj }[] = [
    { name: 'podIPs then podIP, deduplicated', patch: [], want: { ips: ['10.244.1.5'] } },
    { name: 'dual stack, canonical IPv6', patch: [['status.podIPs', [{ ip: '10.244.1.5' }, { ip: 'FD00:10:244:1:0:0:0:5' }]]], want: { ips: ['10.244.1.5', 'fd00:10:244:1::5'] } },
    { name: 'podIP alone', patch: [['status.podIPs', undefined]], want: { ips: ['10.244.1.5'] } },
    { name: 'podIP differing from podIPs: both kept', patch: [['status.podIP', '10.244.1.6']], want: { ips: ['10.244.1.5', '10.244.1.6'] } },
    { name: 'three IPs with repeats', patch: [['status.podIPs', [{ ip: '10.0.0.1' }, { ip: '10.0.0.2' }, { ip: '10.0.0.1' }, { ip: '10.0.0.3' }]], ['status.podIP', '10.0.0.2']], want: { ips: ['10.0.0.1', '10.0.0.2', '10.0.0.3'] } },
    { name: 'empty podIP is absent', patch: [['status', { phase: 'Pending', podIP: '' }]], want: { ips: [], phase: 'Pending' } },
    { name: 'no status: Pending, no IPs', patch: [['status', undefined]], want: { ips: [], phase: 'Pending' } },
    { name: 'hostNetwork', patch: [['spec.hostNetwork', true]], want: { hostNetwork: true } },
    { name: 'unscheduled: nodeName null', patch: [['spec.nodeName', undefined]], want: { nodeName: null } },
    { name: 'empty nodeName is null', patch: [['spec.nodeName', '']], want: { nodeName: null } },
    { name: 'namespace defaults to default', patch: [['metadata.namespace', undefined]], want: { key: 'default/web' } },
    { name: 'phase kept', patch: [['status.phase', 'Succeeded']], want: { phase: 'Succeeded' } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      let v = pod('ns', 'web');
      for (const [p, x] of c.patch) v = withAt(v, p, x);
      for (const r of [decodePod(v, 'Pod ns/web'), decodePodSlow(v, 'Pod ns/web')]) {
        if (E.isLeft(r)) assert.fail(r.left.map(formatDecodeError).join('\n'));
        for (const [k, want] of Object.entries(c.want)) assert.deepEqual((r.right as unknown as Obj)[k], want, k);
      }
      // The fast path takes all these well-formed pods.
      assert.notEqual(podFast(v), undefined);
    });
  }
});

describe('decodeObjects: every error names source, document, path and value', () => {
  const W = 'cluster.yaml: document 1';
  const cases: { name: string; items: unknown[]; want: string[] }[] = [
    { name: 'bad pod IP', items: [node('n1'), pod('a', 'b'), withAt(pod('a', 'c'), 'status.podIPs', [{ ip: '10.224.0.999' }])], want: [`${W}: items[2].status.podIPs[0].ip: "10.224.0.999" is not an IP address`] },
    { name: 'bad podIP', items: [withAt(pod('a', 'b'), 'status.podIP', 'fe80::zz')], want: [`${W}: items[0].status.podIP: "fe80::zz" is not an IP address`] },
    { name: 'pod IP not a string', items: [withAt(pod('a', 'b'), 'status.podIPs', [{ ip: 7 }])], want: [`${W}: items[0].status.podIPs[0].ip: expected an IP address, got 7`] },
    { name: 'podIPs not a list', items: [withAt(pod('a', 'b'), 'status.podIPs', { ip: '10.0.0.1' })], want: [`${W}: items[0].status.podIPs: expected a list, got an object`] },
    { name: 'podIPs entry not an object', items: [withAt(pod('a', 'b'), 'status.podIPs', ['10.0.0.1'])], want: [`${W}: items[0].status.podIPs[0]: expected an object, got "10.0.0.1"`] },
    { name: 'pod without name', items: [withAt(pod('a', 'b'), 'metadata.name', undefined)], want: [`${W}: items[0].metadata.name: is missing (want a non-empty string)`] },
    { name: 'pod with empty namespace', items: [withAt(pod('a', 'b'), 'metadata.namespace', '')], want: [`${W}: items[0].metadata.namespace: expected a non-empty string, got ""`] },
    { name: 'pod without metadata', items: [withAt(pod('a', 'b'), 'metadata', undefined)], want: [`${W}: items[0].metadata: is missing (want an object)`] },
    { name: 'hostNetwork not boolean', items: [withAt(pod('a', 'b'), 'spec.hostNetwork', 'true')], want: [`${W}: items[0].spec.hostNetwork: expected true or false, got "true"`] },
    { name: 'nodeName not a string', items: [withAt(pod('a', 'b'), 'spec.nodeName', ['n1'])], want: [`${W}: items[0].spec.nodeName: expected a string, got a list`] },
    { name: 'phase not a string', items: [withAt(pod('a', 'b'), 'status.phase', 1)], want: [`${W}: items[0].status.phase: expected a string, got 1`] },
    { name: 'status not an object', items: [withAt(pod('a', 'b'), 'status', 'Running')], want: [`${W}: items[0].status: expected an object, got "Running"`] },
    { name: 'bad public key', items: [withAt(node('n1'), 'metadata.annotations', { 'wgplane.io/public-key': 'abc' })], want: [`${W}: items[0].metadata.annotations["wgplane.io/public-key"]: "abc" is not a WireGuard public key (want 32 bytes in base64, 44 characters)`] },
    { name: 'public key not a string', items: [withAt(node('n1'), 'metadata.annotations', { 'wgplane.io/public-key': 5 })], want: [`${W}: items[0].metadata.annotations["wgplane.io/public-key"]: 5 is not a WireGuard key`] },
    { name: 'annotations not a map', items: [withAt(node('n1'), 'metadata.annotations', [])], want: [`${W}: items[0].metadata.annotations: expected a map of strings, got a list`] },
    { name: 'label value not a string', items: [withAt(node('n1'), 'metadata.labels', { 'kubernetes.azure.com/mode': true })], want: [`${W}: items[0].metadata.labels["kubernetes.azure.com/mode"]: expected a string, got true`] },
    { name: 'pod CIDR with host bits', items: [withAt(node('n1'), 'spec.podCIDRs', ['10.244.1.0/24', '10.244.1.1/24'])], want: [`${W}: items[0].spec.podCIDRs[1]: "10.244.1.1/24" has host bits set (network is 10.244.1.0/24)`] },
    { name: 'pod CIDR not a CIDR', items: [withAt(node('n1'), 'spec.podCIDR', '10.244.1.0')], want: [`${W}: items[0].spec.podCIDR: "10.244.1.0" is not a CIDR (no prefix length)`] },
    { name: 'InternalIP not an IP', items: [withAt(node('n1'), 'status.addresses', [{ type: 'InternalIP', address: '10.224.0.256' }])], want: [`${W}: items[0].status.addresses[0].address: "10.224.0.256" is not an IP address (type InternalIP)`] },
    { name: 'address without type', items: [withAt(node('n1'), 'status.addresses', [{ address: '10.0.0.1' }])], want: [`${W}: items[0].status.addresses[0].type: is missing (want a non-empty string)`] },
    { name: 'node name empty', items: [withAt(node('n1'), 'metadata.name', '')], want: [`${W}: items[0].metadata.name: expected a non-empty string, got ""`] },
    { name: 'providerID not a string', items: [withAt(node('n1'), 'spec.providerID', 3)], want: [`${W}: items[0].spec.providerID: expected a string, got 3`] },
    { name: 'item not an object', items: [42], want: [`${W}: items[0]: expected a Kubernetes object (with apiVersion and kind), got 42`] },
    { name: 'item without apiVersion', items: [{ kind: 'Pod' }], want: [`${W}: items[0].apiVersion: is missing: not a Kubernetes object (want apiVersion and kind)`] },
    { name: 'item without kind', items: [{ apiVersion: 'v1' }], want: [`${W}: items[0].kind: is missing: not a Kubernetes object (want apiVersion and kind)`] },
    { name: 'kind not a string', items: [{ apiVersion: 'v1', kind: 7 }], want: [`${W}: items[0].kind: expected a non-empty string, got 7`] },
    { name: 'List inside a List', items: [{ apiVersion: 'v1', kind: 'List', items: [] }], want: [`${W}: items[0].kind: a List inside a List is not supported`] },
    { name: 'same node twice', items: [node('n1'), node('n1')], want: [`${W}: items[1].metadata.name: node "n1" appears twice (first at ${W}: items[0])`] },
    { name: 'same pod twice', items: [pod('a', 'b'), pod('x', 'y'), pod('a', 'b')], want: [`${W}: items[2].metadata: pod "a/b" appears twice (first at ${W}: items[0])`] },
    { name: 'settings twice', items: [settingsCM({}), settingsCM({})], want: [`${W}: items[1]: the settings ConfigMap kube-system/wgplane appears twice (first at ${W}: items[0])`] },
    { name: 'bad setting', items: [settingsCM({ enabled: 'yes', mtu: 1400 })], want: [`${W}: items[0].data.enabled: "yes" is not one of true, false`, `${W}: items[0].data.mtu: expected a string, got 1400 (ConfigMap values are strings: quote it, "1400")`] },
    { name: 'settings data not a map', items: [settingsCM('enabled')], want: [`${W}: items[0].data: expected a map of settings (strings), got "enabled"`] },
    {
      name: 'several errors in one object and across objects are all reported',
      items: [withAt(withAt(pod('a', 'b'), 'status.podIPs', [{ ip: '1.2.3.4' }, { ip: 'x' }, { ip: 'y' }]), 'spec.nodeName', 1), withAt(node('n1'), 'spec.podCIDR', 'z')],
      want: [
        `${W}: items[0].spec.nodeName: expected a string, got 1`,
        `${W}: items[0].status.podIPs[1].ip: "x" is not an IP address`,
        `${W}: items[0].status.podIPs[2].ip: "y" is not an IP address`,
        `${W}: items[1].spec.podCIDR: "z" is not a CIDR (no prefix length)`,
      ],
    },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(errs(list(c.items)), c.want));
  }

  it('single-object documents: the path follows the document', () => {
    assert.deepEqual(errs([{ source: 'a.yaml', value: node('n1') }, { source: 'a.yaml', value: withAt(pod('a', 'b'), 'status.podIP', 'bad') }]), [
      'a.yaml: document 2: status.podIP: "bad" is not an IP address',
    ]);
  });
  it('documents are counted per source', () => {
    assert.deepEqual(errs([{ source: 'a.yaml', value: node('n1') }, { source: 'b.yaml', value: node('n2') }, { source: 'b.yaml', value: null }]), [
      'b.yaml: document 2: expected a Kubernetes object (with apiVersion and kind), got null',
    ]);
  });
  it('a duplicate across sources names the first place', () => {
    assert.deepEqual(errs([...list([node('n1')], 'a.yaml'), { source: 'b.yaml', value: node('n1') }]), [
      'b.yaml: document 1: metadata.name: node "n1" appears twice (first at a.yaml: document 1: items[0])',
    ]);
  });
  it('a duplicate whose first copy failed to decode is not a duplicate', () => {
    assert.deepEqual(errs(list([withAt(pod('a', 'b'), 'status.podIP', 'x'), pod('a', 'b')])), [`${W}: items[0].status.podIP: "x" is not an IP address`]);
  });
  for (const value of [null, 1, 'text', [], [node('n1')], true]) {
    it(`a document holding ${JSON.stringify(value)} is an error`, () => {
      const e = errs([{ source: 's.json', value }]);
      assert.equal(e.length, 1);
      assert.match(e[0]!, /^s\.json: document 1: expected a Kubernetes object \(with apiVersion and kind\), got /);
    });
  }
  it('List items not a list', () => {
    assert.deepEqual(errs([{ source: 's', value: { apiVersion: 'v1', kind: 'List', items: { a: 1 } } }]), ['s: document 1: items: expected a list, got an object']);
  });
  it(`stops after ${MAX_DECODE_ERRORS} errors and says so`, () => {
    const items = Array.from({ length: 200 }, (_, i) => withAt(pod('a', `p${i}`), 'status.podIP', `bad${i}`));
    const e = errs(list(items));
    assert.equal(e.length, MAX_DECODE_ERRORS + 1);
    assert.equal(e[MAX_DECODE_ERRORS - 1], `${W}: items[49].status.podIP: "bad49" is not an IP address`);
    assert.match(e[MAX_DECODE_ERRORS]!, /stopped after 50 errors/);
  });
});

describe('per-object decoders', () => {
  it('decodeNode names the object given as where', () => {
    const r = decodeNode(withAt(node('n1'), 'status.addresses', [{ type: 'InternalIP', address: 'x' }]), 'Node n1');
    assert.deepEqual(E.mapLeft((es: readonly { where: string; message: string }[]) => es.map(formatDecodeError))(r), E.left(['Node n1: status.addresses[0].address: "x" is not an IP address (type InternalIP)']));
  });
  it('decodePod with a bad value', () => {
    const r = decodePod(42, 'Pod a/b');
    assert.deepEqual(r, E.left([{ where: 'Pod a/b', message: 'expected a Pod object, got 42' }]));
  });
  it('decodeSettingsConfigMap', () => {
    assert.deepEqual(decodeSettingsConfigMap(settingsCM({ listenPort: '51821' }), 'cm'), E.right({ ...DEFAULT_SETTINGS, listenPort: 51821 }));
    assert.deepEqual(decodeSettingsConfigMap(settingsCM(undefined), 'cm'), E.right(DEFAULT_SETTINGS));
    assert.deepEqual(decodeSettingsConfigMap(settingsCM({ x: '1' }), 'cm'), E.left([{ where: 'cm: data.x', message: 'unknown setting "x" (known: enabled, hostEncryption, routeSource, mtu, listenPort, interfaceName, routingTable, rulePriority, fwmark, persistentKeepalive, workloadInterfacePrefix, resyncInterval)' }]));
    assert.deepEqual(decodeSettingsConfigMap(null, 'cm'), E.left([{ where: 'cm', message: 'expected a ConfigMap object, got null' }]));
  });
  it('the pod fast path refuses what it cannot decode and the codec explains', () => {
    const bad = withAt(pod('a', 'b'), 'status.podIPs', [{ ip: '010.0.0.1' }]);
    assert.equal(podFast(bad), undefined);
    assert.deepEqual(decodePod(bad, 'p'), E.left([{ where: 'p: status.podIPs[0].ip', message: '"010.0.0.1" is not an IP address' }]));
  });
});
