import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as E from 'fp-ts/lib/Either.js';
import { parse as yamlParse } from 'yaml';
import { AKS_SUBNET, PODCIDR_CLUSTER_CIDR, addPod, formatV6Groups, generateCluster, generateKey, movePodIP, nodeNames, programmedObserved, removePod, setNodeKey, toListJson, toListYaml, type GenerateOptions } from './generate.js';
import { decodeObjects } from '../core/decode.js';
import { desired } from '../core/desired.js';
import { plan } from '../planner/plan.js';
import { STORED_KEY_PLACEHOLDER, applyPlan } from '../planner/kernel-model.js';
import { cidrContains, parseCidr, parseIP, type IP } from '../core/ip.js';
import { parseKey } from '../core/key.js';
import { DEFAULT_SETTINGS, decodeSettings } from '../core/settings.js';
import { EMPTY_OBSERVED, type ObservedDataplane, type PodKey } from '../core/model.js';

const canonicalIP = (s: string): boolean => {
  const r = parseIP(s);
  return E.isRight(r) && r.right === s;
};

describe('generateCluster', () => {
  const shapes: readonly GenerateOptions[] = [
    { nodes: 7, podsPerNode: 5, flavor: 'aks' },
    { nodes: 7, podsPerNode: 5, flavor: 'aks', dualStack: true },
    { nodes: 9, podsPerNode: 30, flavor: 'podcidr' },
    { nodes: 9, podsPerNode: 30, flavor: 'podcidr', dualStack: true },
    { nodes: 3, podsPerNode: 0, flavor: 'aks', hostNetworkPodsPerNode: 2 },
    { nodes: 4, podsPerNode: 254, flavor: 'podcidr', hostNetworkPodsPerNode: 1 },
    { nodes: 0, podsPerNode: 10, flavor: 'aks' },
  ];

  for (const o of shapes) {
    const label = JSON.stringify(o);
    it(`has the right sizes and unique canonical addresses: ${label}`, () => {
      const { snapshot, objects } = generateCluster(o);
      const fam = o.dualStack ? 2 : 1;
      const hostPods = o.hostNetworkPodsPerNode ?? 0;
      assert.equal(snapshot.nodes.size, o.nodes);
      assert.equal(snapshot.pods.size, o.nodes * (o.podsPerNode + hostPods));
      assert.equal(objects.length, o.nodes + snapshot.pods.size + 1);
      assert.equal(snapshot.settings.enabled, true);

      const seen = new Set<string>();
      const nodeIPs = new Set<string>();
      for (const n of snapshot.nodes.values()) {
        assert.equal(n.addresses.length, fam);
        for (const a of n.addresses) {
          assert.ok(canonicalIP(a.address), a.address);
          assert.ok(!seen.has(a.address), `duplicate ${a.address}`);
          seen.add(a.address);
          nodeIPs.add(a.address);
        }
        if (o.flavor === 'aks') {
          assert.match(n.providerID ?? '', /^azure:\/\/\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.Compute\/virtualMachineScaleSets\/[^/]+\/virtualMachines\/\d+$/);
          assert.ok(Object.keys(n.labels).some((k) => k.startsWith('kubernetes.azure.com/')));
          assert.deepEqual(n.podCIDRs, []);
          assert.ok(cidrContains(AKS_SUBNET, n.addresses[0]!.address));
        } else {
          assert.equal(n.providerID, null);
          assert.equal(n.podCIDRs.length, fam);
          for (const c of n.podCIDRs) {
            const r = parseCidr(c);
            assert.ok(E.isRight(r) && r.right === c, c);
          }
          assert.ok(cidrContains(PODCIDR_CLUSTER_CIDR, n.podCIDRs[0]!.replace('/24', '') as IP));
        }
      }
      for (const p of snapshot.pods.values()) {
        const node = snapshot.nodes.get(p.nodeName!);
        assert.ok(node, `pod ${p.key} on unknown node`);
        assert.equal(p.phase, 'Running');
        assert.equal(p.ips.length, fam);
        if (p.hostNetwork) {
          assert.deepEqual(p.ips, node.addresses.map((a) => a.address));
          continue;
        }
        for (const ip of p.ips) {
          assert.ok(canonicalIP(ip), ip);
          assert.ok(!seen.has(ip), `duplicate ${ip}`);
          seen.add(ip);
          if (o.flavor === 'aks' && !ip.includes(':')) assert.ok(cidrContains(AKS_SUBNET, ip));
          if (o.flavor === 'podcidr') assert.ok(node.podCIDRs.some((c) => cidrContains(c, ip)), `${ip} outside ${node.podCIDRs.join(',')}`);
        }
      }
    });
  }

  it('is deterministic for a seed and differs between seeds', () => {
    const o: GenerateOptions = { nodes: 20, podsPerNode: 12, flavor: 'aks', dualStack: true, seed: 42 };
    const a = generateCluster(o), b = generateCluster(o), c = generateCluster({ ...o, seed: 43 });
    assert.deepEqual(a.snapshot, b.snapshot);
    assert.equal(toListJson(a.objects), toListJson(b.objects));
    assert.notEqual(toListJson(a.objects), toListJson(c.objects));
    const ipsA = [...a.snapshot.pods.values()].map((p) => p.ips[0]);
    const ipsC = [...c.snapshot.pods.values()].map((p) => p.ips[0]);
    assert.notDeepEqual(ipsA, ipsC);
  });

  it('gives valid, unique keys, and the asked fraction of nodes has one', () => {
    for (const [keys, want] of [[true, 40], [false, 0], [0.25, 10], [0.5, 20], [1, 40], [0, 0]] as const) {
      const { snapshot } = generateCluster({ nodes: 40, podsPerNode: 1, flavor: 'podcidr', keys });
      const ks = [...snapshot.nodes.values()].flatMap((n) => (n.publicKey ? [n.publicKey] : []));
      assert.equal(ks.length, want, `keys=${keys}`);
      assert.equal(new Set(ks).size, ks.length);
      for (const k of ks) assert.ok(E.isRight(parseKey(k)), k);
    }
    assert.equal(generateKey(7), generateKey(7));
    assert.notEqual(generateKey(7), generateKey(8));
    assert.ok(E.isRight(parseKey(generateKey(7))));
  });

  it('emits objects that carry the snapshot (node annotations, pod IPs, settings ConfigMap)', () => {
    const { snapshot, objects } = generateCluster({ nodes: 3, podsPerNode: 2, flavor: 'aks', dualStack: true, keys: 0.5, settings: { fwmark: 0x4000, mtu: 1380, hostEncryption: 'true' } });
    type Obj = { kind: string; metadata: { name: string; namespace?: string; annotations?: Record<string, string> }; data?: Record<string, string>; status?: { podIPs?: { ip: string }[]; addresses?: { type: string; address: string }[] }; spec?: { nodeName?: string } };
    const objs = objects as Obj[];
    for (const n of snapshot.nodes.values()) {
      const o = objs.find((x) => x.kind === 'Node' && x.metadata.name === n.name)!;
      assert.equal(o.metadata.annotations?.['wgplane.io/public-key'] ?? null, n.publicKey);
      assert.deepEqual(o.status?.addresses?.filter((a) => a.type === 'InternalIP').map((a) => a.address), n.addresses.map((a) => a.address));
    }
    for (const p of snapshot.pods.values()) {
      const [ns, name] = p.key.split('/');
      const o = objs.find((x) => x.kind === 'Pod' && x.metadata.name === name && x.metadata.namespace === ns)!;
      assert.deepEqual(o.status?.podIPs?.map((x) => x.ip), p.ips);
      assert.equal(o.spec?.nodeName, p.nodeName);
    }
    const cm = objs.find((x) => x.kind === 'ConfigMap')!;
    assert.equal(cm.metadata.name, 'wgplane');
    assert.equal(cm.metadata.namespace, 'kube-system');
    assert.equal(cm.data?.fwmark, '0x4000');
    const decoded = decodeSettings(cm.data, 'ConfigMap kube-system/wgplane');
    assert.deepEqual(decoded, E.right(snapshot.settings));
    assert.deepEqual(snapshot.settings, { ...DEFAULT_SETTINGS, enabled: true, fwmark: 0x4000, mtu: 1380, hostEncryption: 'true' });
  });

  it('serialises as a kubectl List in JSON and YAML', () => {
    const { objects } = generateCluster({ nodes: 2, podsPerNode: 3, flavor: 'podcidr', dualStack: true });
    const j = JSON.parse(toListJson(objects));
    assert.equal(j.kind, 'List');
    assert.deepEqual(j.items, JSON.parse(JSON.stringify(objects)));
    assert.deepEqual(yamlParse(toListYaml(objects)), j);
    assert.deepEqual(JSON.parse(toListJson(objects, 0)), j);
  });

  it('refuses clusters that do not fit', () => {
    assert.throws(() => generateCluster({ nodes: 10_000, podsPerNode: 110, flavor: 'aks' }), /does not fit/);
    assert.throws(() => generateCluster({ nodes: 2, podsPerNode: 255, flavor: 'podcidr' }), /at most/);
    assert.throws(() => generateCluster({ nodes: -1, podsPerNode: 1, flavor: 'aks' }), /non-negative/);
  });

  it('objects: false builds the same snapshot without objects', () => {
    const o: GenerateOptions = { nodes: 5, podsPerNode: 4, flavor: 'aks', seed: 9 };
    const full = generateCluster(o), lean = generateCluster({ ...o, objects: false });
    assert.deepEqual(lean.objects, []);
    assert.deepEqual(lean.snapshot, full.snapshot);
  });
});

describe('formatV6Groups', () => {
  const table: readonly (readonly number[])[] = [
    [0xfd12, 0x3456, 0x789a, 1, 0, 0, 0, 5],
    [0xfd12, 0x3456, 0x789a, 1, 0, 0, 1, 0],
    [0xfd12, 0x3456, 0x789a, 1, 0, 0, 0, 0],
    [0xfd10, 0x244, 0, 0, 0, 0, 0, 0],
    [0xfd10, 0x244, 0, 7, 0, 0, 0, 0],
    [0xfd10, 0, 0x244, 0, 0, 0, 0, 3],
    [1, 0, 2, 0, 0, 3, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 1],
    [1, 2, 3, 4, 5, 6, 7, 8],
    [1, 0, 2, 3, 4, 5, 6, 7],
  ];
  for (const g of table) {
    it(`is canonical for ${g.map((x) => x.toString(16)).join(':')}`, () => {
      const s = formatV6Groups(g);
      const full = g.map((x) => x.toString(16)).join(':');
      assert.deepEqual(parseIP(full), E.right(s));
    });
  }
});

describe('cluster mutations', () => {
  const base = generateCluster({ nodes: 4, podsPerNode: 3, flavor: 'aks', seed: 5 });
  const [n0, n1] = nodeNames(base);
  const someJson = toListJson(base.objects);

  const podObjects = (objs: readonly unknown[]) => (objs as { kind: string; metadata: { name: string; namespace: string }; spec: { nodeName: string }; status: { podIPs: { ip: string }[] } }[]).filter((o) => o.kind === 'Pod');

  it('addPod adds to snapshot and objects, leaving the input alone', () => {
    const { cluster, pod } = addPod(base, n1!, ['10.239.0.9' as IP], 'extra', 'shop');
    assert.equal(pod, 'shop/extra');
    assert.equal(cluster.snapshot.pods.size, base.snapshot.pods.size + 1);
    assert.deepEqual(cluster.snapshot.pods.get(pod), { key: pod, nodeName: n1, ips: ['10.239.0.9'], phase: 'Running', hostNetwork: false });
    const o = podObjects(cluster.objects).find((x) => x.metadata.name === 'extra')!;
    assert.equal(o.spec.nodeName, n1);
    assert.deepEqual(o.status.podIPs, [{ ip: '10.239.0.9' }]);
    assert.equal(toListJson(base.objects), someJson);
    assert.throws(() => addPod(cluster, n1!, ['10.239.0.10' as IP], 'extra', 'shop'), /exists/);
  });

  it('removePod removes from both', () => {
    const victim = [...base.snapshot.pods.keys()][2]!;
    const c = removePod(base, victim);
    assert.equal(c.snapshot.pods.has(victim), false);
    assert.equal(podObjects(c.objects).length, base.snapshot.pods.size - 1);
    assert.equal(base.snapshot.pods.has(victim), true);
    assert.throws(() => removePod(c, victim), /no pod/);
  });

  it('movePodIP hands the IPs to a new pod on another node', () => {
    const victim = [...base.snapshot.pods.values()].find((p) => p.nodeName === n0)!;
    const { cluster, pod } = movePodIP(base, victim.key, n1!);
    assert.equal(cluster.snapshot.pods.has(victim.key), false);
    assert.deepEqual(cluster.snapshot.pods.get(pod)?.ips, victim.ips);
    assert.equal(cluster.snapshot.pods.get(pod)?.nodeName, n1);
    assert.equal(cluster.snapshot.pods.size, base.snapshot.pods.size);
    const holders = podObjects(cluster.objects).filter((o) => o.status.podIPs.some((x) => x.ip === victim.ips[0]));
    assert.deepEqual(holders.map((h) => h.spec.nodeName), [n1]);
  });

  it('setNodeKey changes or clears the published key', () => {
    const k = generateKey(999);
    const c = setNodeKey(base, n0!, k);
    assert.equal(c.snapshot.nodes.get(n0!)?.publicKey, k);
    const nodeObj = (objs: readonly unknown[]) => (objs as { kind: string; metadata: { name: string; annotations: Record<string, string> } }[]).find((o) => o.kind === 'Node' && o.metadata.name === n0)!;
    assert.equal(nodeObj(c.objects).metadata.annotations['wgplane.io/public-key'], k);
    const cleared = setNodeKey(c, n0!, null);
    assert.equal(cleared.snapshot.nodes.get(n0!)?.publicKey, null);
    assert.equal('wgplane.io/public-key' in nodeObj(cleared.objects).metadata.annotations, false);
    assert.notEqual(base.snapshot.nodes.get(n0!)?.publicKey, k);
  });

  it('keeps pod keys unique and in namespace/name form', () => {
    const keys: PodKey[] = [...base.snapshot.pods.keys()];
    for (const k of keys) assert.match(k, /^[a-z0-9-]+\/[a-z0-9-]+$/);
  });
});

describe('generated objects decode to the generated snapshot', () => {
  const shapes: readonly GenerateOptions[] = [
    { nodes: 6, podsPerNode: 4, flavor: 'aks', seed: 3 },
    { nodes: 6, podsPerNode: 4, flavor: 'aks', dualStack: true, keys: 0.5, hostNetworkPodsPerNode: 1, seed: 4 },
    { nodes: 5, podsPerNode: 7, flavor: 'podcidr', dualStack: true, settings: { fwmark: 0x200000, resyncInterval: 120, routeSource: 'podCIDR' } },
  ];
  for (const o of shapes) {
    it(JSON.stringify(o), () => {
      const { snapshot, objects } = generateCluster(o);
      assert.deepEqual(decodeObjects([{ source: 'gen.json', value: JSON.parse(toListJson(objects)) }]), E.right(snapshot));
      assert.deepEqual(decodeObjects([{ source: 'gen.yaml', value: yamlParse(toListYaml(objects)) }]), E.right(snapshot));
    });
  }
});

describe('programmedObserved', () => {
  const norm = (o: ObservedDataplane) => ({
    ...o,
    rules: [...o.rules].sort((a, b) => a.family - b.family || a.priority - b.priority),
    firewall: [...o.firewall].sort((a, b) => `${a.family}/${a.table}/${a.name}`.localeCompare(`${b.family}/${b.table}/${b.name}`)),
  });
  const shapes: readonly GenerateOptions[] = [
    { nodes: 30, podsPerNode: 6, flavor: 'aks', seed: 11 },
    { nodes: 12, podsPerNode: 5, flavor: 'aks', dualStack: true, keys: 0.75, hostNetworkPodsPerNode: 1, seed: 12 },
    { nodes: 20, podsPerNode: 9, flavor: 'podcidr', dualStack: true, seed: 13 },
  ];
  for (const o of shapes) {
    it(`equals the kernel model after the plan from empty, and plans nothing: ${JSON.stringify(o)}`, () => {
      const { snapshot } = generateCluster(o);
      const n = [...snapshot.nodes.values()][1]!; // node 1 has a key in every shape above
      for (const host of [{ underlayMtu: 1500, publicKey: n.publicKey }, { underlayMtu: 1500, publicKey: null }]) {
        const d = desired(snapshot, n.name, host);
        assert.ok(E.isRight(d) && d.right.kind === 'enabled');
        const first = plan(d.right, EMPTY_OBSERVED);
        assert.ok(first.ops.length > 0);
        const model = applyPlan(EMPTY_OBSERVED, first.ops);
        assert.ok(E.isRight(model), E.isLeft(model) ? model.left.message : '');
        const built = programmedObserved(d.right, STORED_KEY_PLACEHOLDER);
        assert.deepEqual(norm(built), norm(model.right));
        assert.deepEqual(plan(d.right, built).ops, []);
      }
    });
  }
});
