import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as E from 'fp-ts/lib/Either.js';
import { desired } from './desired.js';
import { HOST, mkNode, mkPod, mkSnapshot, testKey } from './desired-fixtures.js';
import type { Cidr } from './ip.js';
import type { ClusterSnapshot, DesiredDataplane, DesiredEnabled, HostFacts, NodeName, ThrowCause } from './model.js';

const A = 'a' as NodeName;

function enabled(s: ClusterSnapshot, host: HostFacts = HOST, node: NodeName = A): DesiredEnabled {
  const r = desired(s, node, host);
  if (E.isLeft(r)) assert.fail(`unexpected error: ${r.left.message}`);
  assert.equal(r.right.kind, 'enabled');
  return r.right as DesiredEnabled;
}

/** Routes as `dest -> device|throw:cause` for compact expectations. */
function routeTable(d: DesiredEnabled): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, r] of d.routes) out[k] = r.route.kind === 'device' ? `dev ${r.route.device}` : `throw ${r.cause}`;
  return out;
}

function peerTable(d: DesiredEnabled): Record<string, { endpoint: string | null; allowed: readonly Cidr[] }> {
  const out: Record<string, { endpoint: string | null; allowed: readonly Cidr[] }> = {};
  for (const p of d.peers.values()) {
    assert.equal(d.peers.get(p.publicKey), p);
    out[p.node] = { endpoint: p.endpoint, allowed: p.allowedIPs };
  }
  return out;
}

// A pod-CIDR cluster: a (us), b (peer), c (no key).
const podCidrNodes = [
  mkNode('a', { internal: ['10.0.0.1'], podCIDRs: ['10.244.0.0/24'], key: testKey(0) }),
  mkNode('b', { internal: ['10.0.0.2'], podCIDRs: ['10.244.1.0/24'], key: testKey(1) }),
  mkNode('c', { internal: ['10.0.0.3'], podCIDRs: ['10.244.2.0/24'], key: null }),
];
// An AKS cluster with Azure CNI: no pod CIDRs, pod IPs from the node subnet.
const aksNode = (name: string, ip: string, k: number | null) =>
  mkNode(name, { internal: [ip], providerID: `azure:///subscriptions/x/${name}`, labels: { 'kubernetes.azure.com/role': 'agent' }, key: k === null ? null : testKey(k) });
const aksNodes = [aksNode('a', '10.224.0.4', 0), aksNode('b', '10.224.0.5', 1), aksNode('c', '10.224.0.6', 2)];

describe('desired: pod-CIDR mode (IPv4)', () => {
  const d = enabled(
    mkSnapshot(podCidrNodes, [
      mkPod('ns/a1', 'a', ['10.244.0.5']), // inside a's block: covered by the block's throw
      mkPod('ns/a2', 'a', ['10.99.0.1']), // outside a's block: its own local throw
      mkPod('ns/b1', 'b', ['10.244.1.7']), // inside b's block
      mkPod('ns/b2', 'b', ['10.99.0.2']), // outside b's block: own /32 to b
      mkPod('ns/c1', 'c', ['10.99.0.3']),
    ]),
  );
  it('routes blocks and outside pod IPs; local and unpeerable ones are thrown', () => {
    assert.deepEqual(routeTable(d), {
      '10.244.0.0/24': 'throw local',
      '10.99.0.1/32': 'throw local',
      '10.244.1.0/24': 'dev wireguard.wgp',
      '10.99.0.2/32': 'dev wireguard.wgp',
      '10.244.2.0/24': 'throw no-key',
      '10.99.0.3/32': 'throw no-key',
    });
    assert.deepEqual(d.routes.get('10.99.0.2/32' as Cidr)!.origin, { kind: 'pod', pod: 'ns/b2', node: 'b' });
    assert.deepEqual(d.routes.get('10.244.1.0/24' as Cidr)!.origin, { kind: 'pod-cidr', node: 'b' });
  });
  it('peers only b, with its block and outside pod IP, sorted', () => {
    assert.deepEqual(peerTable(d), { b: { endpoint: '10.0.0.2:51820', allowed: ['10.99.0.2/32', '10.244.1.0/24'] } });
    assert.equal([...d.peers.values()][0]!.persistentKeepalive, 0);
  });
  it('device: tunnel address is the network address of our block; MTU 1440', () => {
    assert.deepEqual(d.device.addresses, ['10.244.0.0/32']);
    assert.equal(d.device.mtu, 1440);
    assert.equal(d.device.listenPort, 51820);
    assert.equal(d.device.fwmark, 0x100000);
    assert.equal(d.device.publicKey, HOST.publicKey);
    assert.equal(d.device.name, 'wireguard.wgp');
  });
  it('facts, rule, filter chains, no sysctls, problems', () => {
    assert.deepEqual(d.facts, { aks: false, routeSource: 'podCIDR', hostEncryption: false, workloadInterfacePrefix: null, families: [4] });
    assert.deepEqual(d.rules, [{ family: 4, priority: 99, table: 51820, fwmark: 0x100000, mask: 0x100000 }]);
    assert.deepEqual(d.firewall, [
      { family: 4, table: 'filter', name: 'WGPLANE-INPUT', hook: 'INPUT', rules: ['-p udp -m udp --dport 51820 -j ACCEPT'] },
      { family: 4, table: 'filter', name: 'WGPLANE-OUTPUT', hook: 'OUTPUT', rules: ['-p udp -m udp --dport 51820 -j ACCEPT'] },
    ]);
    assert.equal(d.sysctls.size, 0);
    assert.deepEqual(d.problems, [{ kind: 'no-key', node: 'c' }]);
    assert.equal(d.table, 51820);
  });
});

describe('desired: AKS, workload-IP mode, host encryption', () => {
  const d = enabled(
    mkSnapshot(aksNodes, [
      mkPod('ns/a1', 'a', ['10.224.0.30']),
      mkPod('ns/b1', 'b', ['10.224.0.41']),
      mkPod('ns/b2', 'b', ['10.224.0.9']),
      mkPod('ns/c1', 'c', ['10.224.0.50']),
    ]),
    HOST,
  );
  it('facts: AKS detected, workload IPs, host encryption on, prefix azv', () => {
    assert.deepEqual(d.facts, { aks: true, routeSource: 'workloadIPs', hostEncryption: true, workloadInterfacePrefix: 'azv', families: [4] });
  });
  it('every pod IP and node IP is its own /32', () => {
    assert.deepEqual(routeTable(d), {
      '10.224.0.4/32': 'throw local',
      '10.224.0.30/32': 'throw local',
      '10.224.0.5/32': 'dev wireguard.wgp',
      '10.224.0.41/32': 'dev wireguard.wgp',
      '10.224.0.9/32': 'dev wireguard.wgp',
      '10.224.0.6/32': 'dev wireguard.wgp',
      '10.224.0.50/32': 'dev wireguard.wgp',
    });
    assert.deepEqual(d.routes.get('10.224.0.5/32' as Cidr)!.origin, { kind: 'node-ip', node: 'b' });
  });
  it('peers carry node IPs and pod IPs, numerically sorted', () => {
    assert.deepEqual(peerTable(d), {
      b: { endpoint: '10.224.0.5:51820', allowed: ['10.224.0.5/32', '10.224.0.9/32', '10.224.0.41/32'] },
      c: { endpoint: '10.224.0.6:51820', allowed: ['10.224.0.6/32', '10.224.0.50/32'] },
    });
  });
  it('device address is our node IP; MTU 1340 at 1500', () => {
    assert.deepEqual(d.device.addresses, ['10.224.0.4/32']);
    assert.equal(d.device.mtu, 1340);
    assert.match(d.device.mtuReason, /1500.*60.*100.*= 1340/);
  });
  it('raw PREROUTING marking, src_valid_mark and loose rp_filter on the device', () => {
    assert.deepEqual(d.firewall.map((c) => `${c.family} ${c.table} ${c.name} ${c.hook}`), [
      '4 filter WGPLANE-INPUT INPUT',
      '4 filter WGPLANE-OUTPUT OUTPUT',
      '4 raw WGPLANE-PREROUTING PREROUTING',
    ]);
    assert.deepEqual(d.firewall[2]!.rules, ['-i lo -j RETURN', '-i wireguard.wgp -j RETURN', '-i azv+ -j RETURN', '-j MARK --set-xmark 0x100000/0x100000']);
    assert.deepEqual([...d.sysctls], [['net.ipv4.conf.all.src_valid_mark', '1'], ['net/ipv4/conf/wireguard.wgp/rp_filter', '2']]);
    assert.deepEqual(d.problems, []);
  });
});

describe('desired: settings resolution', () => {
  const cases: { name: string; nodes: typeof podCidrNodes; settings: Parameters<typeof mkSnapshot>[2]; facts: Partial<DesiredEnabled['facts']> }[] = [
    { name: 'AKS detected by label only', nodes: [mkNode('a', { internal: ['10.1.0.1'], labels: { 'kubernetes.azure.com/cluster': 'x' } })], settings: {}, facts: { aks: true, hostEncryption: true } },
    { name: 'AKS detected by providerID only', nodes: [mkNode('a', { internal: ['10.1.0.1'], providerID: 'azure:///vm/a' })], settings: {}, facts: { aks: true, workloadInterfacePrefix: 'azv' } },
    { name: 'AKS with pod CIDRs: host encryption stays off', nodes: [mkNode('a', { internal: ['10.1.0.1'], providerID: 'azure:///vm/a', podCIDRs: ['10.244.0.0/24'] })], settings: {}, facts: { aks: true, routeSource: 'podCIDR', hostEncryption: false } },
    { name: 'non-AKS workload IPs: host encryption off', nodes: [mkNode('a', { internal: ['10.1.0.1'], providerID: 'aws:///i-1' })], settings: {}, facts: { aks: false, routeSource: 'workloadIPs', hostEncryption: false, workloadInterfacePrefix: null } },
    { name: 'explicit routeSource wins', nodes: podCidrNodes, settings: { routeSource: 'workloadIPs' }, facts: { routeSource: 'workloadIPs' } },
    { name: 'explicit hostEncryption false on AKS', nodes: aksNodes, settings: { hostEncryption: 'false' }, facts: { hostEncryption: false } },
    { name: 'explicit prefix with host encryption off-AKS', nodes: podCidrNodes, settings: { hostEncryption: 'true', workloadInterfacePrefix: 'cali' }, facts: { hostEncryption: true, workloadInterfacePrefix: 'cali' } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const d = enabled(mkSnapshot(c.nodes, [], c.settings));
      for (const [k, v] of Object.entries(c.facts)) assert.deepEqual(d.facts[k as keyof typeof d.facts], v, k);
    });
  }
  it('explicit prefix goes into the raw rule', () => {
    const d = enabled(mkSnapshot(podCidrNodes, [], { hostEncryption: 'true', workloadInterfacePrefix: 'cali', fwmark: 0x20000 }));
    assert.deepEqual(d.firewall.find((c) => c.table === 'raw')!.rules, ['-i lo -j RETURN', '-i wireguard.wgp -j RETURN', '-i cali+ -j RETURN', '-j MARK --set-xmark 0x20000/0x20000']);
    // host encryption in pod-CIDR mode: node IPs join the blocks; the device address is the node IP
    assert.equal(routeTable(d)['10.0.0.2/32'], 'dev wireguard.wgp');
    assert.deepEqual(d.device.addresses, ['10.0.0.1/32']);
  });
  it('settings error: host encryption off-AKS with prefix auto names the settings', () => {
    const r = desired(mkSnapshot(podCidrNodes, [], { hostEncryption: 'true' }), A, HOST);
    assert.ok(E.isLeft(r));
    assert.equal(r.left.kind, 'settings');
    assert.match(r.left.message, /hostEncryption/);
    assert.match(r.left.message, /workloadInterfacePrefix/);
  });
  it('settings error: fwmark 0', () => {
    const r = desired(mkSnapshot(podCidrNodes, [], { fwmark: 0 }), A, HOST);
    assert.ok(E.isLeft(r));
    assert.equal(r.left.kind, 'settings');
    assert.match(r.left.message, /fwmark/);
  });
  it('node not found names the node', () => {
    const r = desired(mkSnapshot(podCidrNodes, []), 'zz' as NodeName, HOST);
    assert.ok(E.isLeft(r));
    assert.deepEqual(r.left.kind, 'node-not-found');
    assert.match(r.left.message, /"zz"/);
  });
});

describe('desired: disabled', () => {
  const cases: { name: string; s: ClusterSnapshot; expected: DesiredDataplane }[] = [
    {
      name: 'by setting',
      s: mkSnapshot(podCidrNodes, [], { enabled: false, interfaceName: 'wg0', routingTable: 7 }),
      expected: { kind: 'disabled', node: A, why: 'setting', interfaceName: 'wg0', table: 7, problems: [] },
    },
    {
      name: 'by label on this node',
      s: mkSnapshot([mkNode('a', { internal: ['10.0.0.1'], labels: { 'wgplane.io/wireguard': 'disabled' } }), ...podCidrNodes.slice(1)], []),
      expected: { kind: 'disabled', node: A, why: 'node-label', interfaceName: 'wireguard.wgp', table: 51820, problems: [] },
    },
  ];
  for (const c of cases) it(c.name, () => assert.deepEqual(desired(c.s, A, HOST), E.right(c.expected)));
  it('a labelled other node is thrown, not peered, and not a problem', () => {
    const b = mkNode('b', { internal: ['10.0.0.2'], podCIDRs: ['10.244.1.0/24'], key: testKey(1), labels: { 'wgplane.io/wireguard': 'disabled' } });
    const d = enabled(mkSnapshot([podCidrNodes[0]!, b], [mkPod('ns/b', 'b', ['10.9.9.9'])]));
    assert.deepEqual(routeTable(d), { '10.244.0.0/24': 'throw local', '10.244.1.0/24': 'throw disabled', '10.9.9.9/32': 'throw disabled' });
    assert.equal(d.peers.size, 0);
    assert.deepEqual(d.problems, []);
  });
});

describe('desired: unpeerable nodes', () => {
  const cases: { name: string; nodes: ReturnType<typeof mkNode>[]; host?: HostFacts; causes: Record<string, ThrowCause | 'peer'>; problems: unknown[] }[] = [
    {
      name: 'no key',
      nodes: [podCidrNodes[0]!, podCidrNodes[2]!],
      causes: { c: 'no-key' },
      problems: [{ kind: 'no-key', node: 'c' }],
    },
    {
      name: 'two nodes share a key: neither is peered',
      nodes: [podCidrNodes[0]!, podCidrNodes[1]!, mkNode('d', { internal: ['10.0.0.4'], podCIDRs: ['10.244.4.0/24'], key: testKey(1) }), mkNode('e', { internal: ['10.0.0.5'], podCIDRs: ['10.244.5.0/24'], key: testKey(5) })],
      causes: { b: 'shared-key', d: 'shared-key', e: 'peer' },
      problems: [{ kind: 'shared-key', nodes: ['b', 'd'], key: testKey(1) }],
    },
    {
      name: 'a node holding our key',
      nodes: [mkNode('a', { internal: ['10.0.0.1'], podCIDRs: ['10.244.0.0/24'] }), mkNode('b', { internal: ['10.0.0.2'], podCIDRs: ['10.244.1.0/24'], key: testKey(0) })],
      causes: { b: 'shared-key' },
      problems: [{ kind: 'shared-key', nodes: ['a', 'b'], key: testKey(0) }],
    },
    {
      name: 'no address: no endpoint',
      nodes: [podCidrNodes[0]!, mkNode('b', { podCIDRs: ['10.244.1.0/24'], key: testKey(1) })],
      causes: { b: 'no-endpoint' },
      problems: [{ kind: 'no-endpoint', node: 'b' }],
    },
    {
      name: 'ExternalIP only is an endpoint',
      nodes: [podCidrNodes[0]!, mkNode('b', { external: ['203.0.113.9'], podCIDRs: ['10.244.1.0/24'], key: testKey(1) })],
      causes: { b: 'peer' },
      problems: [],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const d = enabled(mkSnapshot(c.nodes, []), c.host ?? HOST);
      for (const [node, cause] of Object.entries(c.causes)) {
        const block = c.nodes.find((n) => n.name === node)!.podCIDRs[0]!;
        const r = d.routes.get(block)!;
        if (cause === 'peer') {
          assert.equal(r.route.kind, 'device', node);
          assert.ok([...d.peers.values()].some((p) => p.node === node));
        } else {
          assert.equal(r.route.kind, 'throw', node);
          assert.equal(r.cause, cause, node);
          assert.ok(![...d.peers.values()].some((p) => p.node === node), `${node} must not be a peer`);
        }
      }
      assert.deepEqual(d.problems, c.problems);
    });
  }
});

describe('desired: conflicts', () => {
  it('a pod IP on two nodes is thrown, reported, and in no allowed IPs', () => {
    const d = enabled(mkSnapshot(aksNodes, [mkPod('ns/x', 'b', ['10.224.0.77']), mkPod('ns/y', 'c', ['10.224.0.77']), mkPod('ns/z', 'c', ['10.224.0.78'])]));
    const r = d.routes.get('10.224.0.77/32' as Cidr)!;
    assert.deepEqual(r, { route: { kind: 'throw', dest: '10.224.0.77/32' }, origin: { kind: 'conflict', ip: '10.224.0.77/32', nodes: ['b', 'c'] }, cause: 'conflict' });
    for (const p of d.peers.values()) assert.ok(!p.allowedIPs.includes('10.224.0.77/32' as Cidr));
    assert.deepEqual(d.problems, [{ kind: 'ip-conflict', ip: '10.224.0.77/32', claimants: ['pod ns/x on node b', 'pod ns/y on node c'] }]);
    assert.equal(routeTable(d)['10.224.0.78/32'], 'dev wireguard.wgp');
  });
  it('a conflict involving our own node is thrown as a conflict too', () => {
    const d = enabled(mkSnapshot(aksNodes, [mkPod('ns/x', 'a', ['10.224.0.77']), mkPod('ns/y', 'b', ['10.224.0.77'])]));
    assert.equal(d.routes.get('10.224.0.77/32' as Cidr)!.cause, 'conflict');
  });
  it('the same IP twice on one node is no conflict', () => {
    const d = enabled(mkSnapshot(aksNodes, [mkPod('ns/x', 'b', ['10.224.0.77']), mkPod('ns/y', 'b', ['10.224.0.77'])]));
    assert.deepEqual(d.routes.get('10.224.0.77/32' as Cidr)!.origin, { kind: 'pod', pod: 'ns/x', node: 'b' });
    assert.deepEqual(d.problems, []);
  });
  it('a pod CIDR on two nodes', () => {
    const nodes = [podCidrNodes[0]!, podCidrNodes[1]!, mkNode('d', { internal: ['10.0.0.4'], podCIDRs: ['10.244.1.0/24'], key: testKey(4) })];
    const d = enabled(mkSnapshot(nodes, []));
    assert.equal(d.routes.get('10.244.1.0/24' as Cidr)!.cause, 'conflict');
    assert.deepEqual(d.problems, [{ kind: 'pod-cidr-conflict', cidr: '10.244.1.0/24', nodes: ['b', 'd'] }]);
    for (const p of d.peers.values()) assert.deepEqual(p.allowedIPs, []);
  });
  it('a pod using another node IP conflicts (host encryption); a hostNetwork pod does not', () => {
    const d = enabled(mkSnapshot(aksNodes, [mkPod('ns/x', 'c', ['10.224.0.5']), mkPod('ns/h', 'c', ['10.224.0.6'], 'Running', true)]));
    assert.equal(d.routes.get('10.224.0.5/32' as Cidr)!.cause, 'conflict');
    assert.deepEqual(d.problems, [{ kind: 'ip-conflict', ip: '10.224.0.5/32', claimants: ['node b (node address)', 'pod ns/x on node c'] }]);
    assert.equal(routeTable(d)['10.224.0.6/32'], 'dev wireguard.wgp');
  });
  it('pod-CIDR mode: a pod IP inside one block claimed by a pod of another node conflicts', () => {
    const d = enabled(mkSnapshot(podCidrNodes, [mkPod('ns/in', 'b', ['10.244.1.7']), mkPod('ns/out', 'c', ['10.244.1.7'])]));
    assert.equal(d.routes.get('10.244.1.7/32' as Cidr)!.cause, 'conflict');
    assert.ok(!d.peers.get(testKey(1))!.allowedIPs.includes('10.244.1.7/32' as Cidr));
  });
});

describe('desired: which pods count', () => {
  const cases: { name: string; pod: ReturnType<typeof mkPod>; counts: boolean }[] = [
    { name: 'Running', pod: mkPod('ns/p', 'b', ['10.224.0.80']), counts: true },
    { name: 'Pending with an IP', pod: mkPod('ns/p', 'b', ['10.224.0.80'], 'Pending'), counts: true },
    { name: 'Succeeded', pod: mkPod('ns/p', 'b', ['10.224.0.80'], 'Succeeded'), counts: false },
    { name: 'Failed', pod: mkPod('ns/p', 'b', ['10.224.0.80'], 'Failed'), counts: false },
    { name: 'Unknown', pod: mkPod('ns/p', 'b', ['10.224.0.80'], 'Unknown'), counts: false },
    { name: 'hostNetwork', pod: mkPod('ns/p', 'b', ['10.224.0.80'], 'Running', true), counts: false },
    { name: 'on a node not in the snapshot', pod: mkPod('ns/p', 'ghost', ['10.224.0.80']), counts: false },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const d = enabled(mkSnapshot(aksNodes, [c.pod]));
      assert.equal(d.routes.has('10.224.0.80/32' as Cidr), c.counts);
      assert.equal(d.peers.get(testKey(1))!.allowedIPs.includes('10.224.0.80/32' as Cidr), c.counts);
    });
  }
  it('a running pod without a node is a problem and routes nothing', () => {
    const d = enabled(mkSnapshot(aksNodes, [mkPod('ns/p', null, ['10.224.0.80'])]));
    assert.ok(!d.routes.has('10.224.0.80/32' as Cidr));
    assert.deepEqual(d.problems, [{ kind: 'pod-without-node', pod: 'ns/p' }]);
  });
});

describe('desired: IPv6 and dual stack', () => {
  it('dual stack pod-CIDR: both families, v4 endpoints, 1440', () => {
    const nodes = [
      mkNode('a', { internal: ['10.0.0.1', 'fd00::1'], podCIDRs: ['10.244.0.0/24', 'fd10:0:0:1::/64'], key: testKey(0) }),
      mkNode('b', { internal: ['fd00::2', '10.0.0.2'], podCIDRs: ['10.244.1.0/24', 'fd10:0:0:2::/64'], key: testKey(1) }),
    ];
    const d = enabled(mkSnapshot(nodes, [mkPod('ns/b', 'b', ['10.244.1.5', 'fd10::9'])], { persistentKeepalive: 25 }));
    assert.deepEqual(peerTable(d), { b: { endpoint: '10.0.0.2:51820', allowed: ['10.244.1.0/24', 'fd10::9/128', 'fd10:0:0:2::/64'] } });
    assert.equal(d.peers.get(testKey(1))!.persistentKeepalive, 25);
    assert.equal(routeTable(d)['fd10::9/128'], 'dev wireguard.wgp');
    assert.deepEqual(d.device.addresses, ['10.244.0.0/32', 'fd10:0:0:1::/128']);
    assert.equal(d.device.mtu, 1440);
    assert.deepEqual(d.facts.families, [4, 6]);
    assert.deepEqual(d.rules.map((r) => r.family), [4, 6]);
    assert.deepEqual(d.firewall.map((c) => `${c.family} ${c.name}`), ['4 WGPLANE-INPUT', '4 WGPLANE-OUTPUT', '6 WGPLANE-INPUT', '6 WGPLANE-OUTPUT']);
  });
  it('IPv6-only workload IPs: [ip6]:port endpoints, /128 routes, MTU 1420', () => {
    const nodes = [mkNode('a', { internal: ['fd00::1'], key: testKey(0) }), mkNode('b', { internal: ['fd00::2'], key: testKey(1) })];
    const d = enabled(mkSnapshot(nodes, [mkPod('ns/b', 'b', ['fd00::b:1']), mkPod('ns/a', 'a', ['fd00::a:1'])]));
    assert.deepEqual(peerTable(d), { b: { endpoint: '[fd00::2]:51820', allowed: ['fd00::b:1/128'] } });
    assert.deepEqual(routeTable(d), { 'fd00::a:1/128': 'throw local', 'fd00::b:1/128': 'dev wireguard.wgp' });
    assert.equal(d.device.mtu, 1420);
    assert.deepEqual(d.facts.families, [6]);
    assert.deepEqual(d.rules.map((r) => r.family), [6]);
  });
  it('endpoint family follows our first InternalIP', () => {
    const nodes = [
      mkNode('a', { internal: ['fd00::1', '10.0.0.1'], key: testKey(0) }),
      mkNode('b', { internal: ['10.0.0.2', 'fd00::2'], key: testKey(1) }),
    ];
    const d = enabled(mkSnapshot(nodes, []));
    assert.equal(peerTable(d).b!.endpoint, '[fd00::2]:51820');
    assert.equal(d.device.mtu, 1420);
  });
});

describe('desired: MTU', () => {
  const cases: { name: string; host: HostFacts; mtu: 'auto' | number; nodes?: typeof aksNodes; want: number; unknown: boolean }[] = [
    { name: 'explicit setting wins', host: HOST, mtu: 1300, want: 1300, unknown: false },
    { name: 'explicit setting wins on AKS', host: { ...HOST, underlayMtu: null }, mtu: 1400, nodes: aksNodes, want: 1400, unknown: false },
    { name: 'unknown underlay: 1500 assumed and said', host: { ...HOST, underlayMtu: null }, mtu: 'auto', want: 1440, unknown: true },
    { name: 'jumbo underlay', host: { ...HOST, underlayMtu: 9000 }, mtu: 'auto', want: 8940, unknown: false },
    { name: 'AKS host encryption at 1500', host: HOST, mtu: 'auto', nodes: aksNodes, want: 1340, unknown: false },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const d = enabled(mkSnapshot(c.nodes ?? podCidrNodes.slice(0, 2), [], { mtu: c.mtu }), c.host);
      assert.equal(d.device.mtu, c.want);
      assert.equal(d.problems.some((p) => p.kind === 'mtu-unknown'), c.unknown);
    });
  }
});

describe('desired: determinism', () => {
  it('does not depend on the order of nodes and pods', () => {
    const nodes = [...aksNodes, aksNode('d', '10.224.0.7', 1), aksNode('e', '10.224.0.8', null)];
    const pods = [
      mkPod('ns/x', 'b', ['10.224.0.77']), mkPod('ns/y', 'c', ['10.224.0.77']), mkPod('ns/w', 'c', ['10.224.0.77']),
      mkPod('ns/q', 'c', ['10.224.1.1']), mkPod('ns/r', 'c', ['10.224.1.1']), mkPod('ns/s', null, ['10.1.1.1']), mkPod('ns/t', null, ['10.1.1.2']),
      ...Array.from({ length: 40 }, (_, i) => mkPod(`ns/p${i}`, ['a', 'b', 'c', 'd', 'e'][i % 5]!, [`10.224.${2 + (i % 3)}.${(i * 37) % 250}`])),
    ];
    const one = desired(mkSnapshot(nodes, pods), A, HOST);
    const two = desired(mkSnapshot([...nodes].reverse(), [...pods].reverse()), A, HOST);
    assert.deepStrictEqual(two, one);
    const d = enabled(mkSnapshot(nodes, pods));
    assert.deepEqual(d.problems.map((p) => p.kind), ['ip-conflict', 'no-key', 'pod-without-node', 'pod-without-node', 'shared-key']);
    assert.deepEqual(d.routes.get('10.224.1.1/32' as Cidr)!.origin, { kind: 'pod', pod: 'ns/q', node: 'c' });
  });
});
