import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Cidr } from '../core/ip.js';
import type { WgKey } from '../core/key.js';
import type { NodeName, Plan, PodKey } from '../core/model.js';
import { renderPlanJson, renderPlanText, summarize } from './render.js';

const K1 = 'AAAAbbbbCCCCddddEEEEffffGGGGhhhhIIIIjjjjKKA=' as WgKey;
const K2 = 'ZZZZyyyyXXXXwwwwVVVVuuuuTTTTssssRRRRqqqqPPA=' as WgKey;
const n = (s: string): NodeName => s as NodeName;
const c = (s: string): Cidr => s as Cidr;
const N2 = n('aks-nodepool1-vmss000002');

const PLAN: Plan = {
  node: n('aks-nodepool1-vmss000001'),
  problems: [{ kind: 'no-key', node: n('aks-nodepool1-vmss000004') }],
  blocked: [],
  ops: [
    { kind: 'sysctl-set', key: 'net.ipv4.conf.all.src_valid_mark', value: '1', from: '0', origin: { kind: 'setting', setting: 'hostEncryption' } },
    { kind: 'link-set-mtu', name: 'wireguard.wgp', mtu: 1340, from: 1420, origin: { kind: 'setting', setting: 'mtu', detail: 'AKS with host encryption' } },
    { kind: 'route-replace', table: 51820, route: { kind: 'throw', dest: c('10.224.0.40/32') }, from: { kind: 'device', dest: c('10.224.0.40/32'), device: 'wireguard.wgp' }, origin: { kind: 'node-ip', node: n('aks-nodepool1-vmss000004') }, cause: 'no-key' },
    { kind: 'peer-update', device: 'wireguard.wgp', publicKey: K1, node: N2, addAllowedIPs: [c('10.224.0.7/32')], removeAllowedIPs: [], origin: { kind: 'peer', node: N2 }, moves: [{ allowedIP: c('10.224.0.7/32'), from: K2 }] },
    { kind: 'peer-remove', device: 'wireguard.wgp', publicKey: K2, node: null, origin: { kind: 'unowned', detail: 'not in the desired state' } },
    { kind: 'route-add', table: 51820, route: { kind: 'device', dest: c('10.224.0.7/32'), device: 'wireguard.wgp' }, origin: { kind: 'pod', pod: 'default/web-1' as PodKey, node: N2 } },
    { kind: 'route-add', table: 51820, route: { kind: 'device', dest: c('10.224.0.8/32'), device: 'wireguard.wgp' }, origin: { kind: 'pod', pod: 'default/web-2' as PodKey, node: N2 } },
  ],
};

const EXPECTED = `wgplane plan for node aks-nodepool1-vmss000001

Warnings:
  ! node aks-nodepool1-vmss000004 has published no key: its destinations stay in clear

Sysctls:
  ~ net.ipv4.conf.all.src_valid_mark = 1 (now 0)  # setting hostEncryption

Device:
  ~ link wireguard.wgp mtu 1420 -> 1340  # AKS with host encryption

Peers:
  ~ peer AAAAbbbb… node aks-nodepool1-vmss000002: + allowed IPs 10.224.0.7/32 (1 moving from peer ZZZZyyyy…)  # node aks-nodepool1-vmss000002
  - peer ZZZZyyyy…                                                                                            # not in the desired state

Routes:
  ~ route 10.224.0.40/32 dev wireguard.wgp -> throw (table 51820)  # node aks-nodepool1-vmss000004 has no key (throw)
  + route 10.224.0.7/32 dev wireguard.wgp (table 51820)            # pod default/web-1 on node aks-nodepool1-vmss000002
  + route 10.224.0.8/32 dev wireguard.wgp (table 51820)            # pod default/web-2 on node aks-nodepool1-vmss000002

Plan: 2 to add, 4 to change, 1 to remove.
`;

describe('renderPlanText', () => {
  it('groups by object with signs, reasons, warnings and a summary', () => {
    assert.equal(renderPlanText(PLAN), EXPECTED);
  });
  it('shortens long groups to maxPerGroup lines', () => {
    const text = renderPlanText(PLAN, { maxPerGroup: 1, header: 'Plan for the test node' });
    assert.match(text, /^Plan for the test node\n/);
    assert.match(text, /Routes:\n  ~ route 10\.224\.0\.40\/32 [^\n]*\n  \.\.\. and 2 more\n/);
    assert.match(text, /Peers:\n  ~ peer [^\n]*\n  \.\.\. and 1 more\n/);
    assert.doesNotMatch(text, /10\.224\.0\.8\/32/);
  });
  it('says so when there is nothing to do, and when blocked', () => {
    assert.equal(renderPlanText({ ...PLAN, ops: [], problems: [] }), 'wgplane plan for node aks-nodepool1-vmss000001\n\nNo changes. The dataplane matches the desired state.\n');
    const blocked = renderPlanText({ ...PLAN, ops: [], problems: [], blocked: ['wireguard.wgp is a veth link that is not wgplane\'s'] });
    assert.match(blocked, /Blocked \(nothing will be done\):\n  x wireguard\.wgp is a veth link/);
    assert.match(blocked, /Plan: blocked\.\n$/);
  });
});

describe('summarize', () => {
  const table: { name: string; plan: Plan; expect: { add: number; change: number; remove: number } }[] = [
    { name: 'the sample plan', plan: PLAN, expect: { add: 2, change: 4, remove: 1 } },
    { name: 'empty', plan: { ...PLAN, ops: [] }, expect: { add: 0, change: 0, remove: 0 } },
    {
      name: 'a table flush counts its routes',
      plan: { ...PLAN, ops: [{ kind: 'table-flush', table: 1, family: 4, routes: 30, origin: { kind: 'setting', setting: 'enabled' } }, { kind: 'link-delete', name: 'wg0', peers: 3, origin: { kind: 'setting', setting: 'enabled' } }] },
      expect: { add: 0, change: 0, remove: 31 },
    },
  ];
  for (const t of table) it(t.name, () => assert.deepEqual(summarize(t.plan), t.expect));
});

describe('renderPlanJson', () => {
  const json = renderPlanJson(PLAN) as Record<string, unknown>;
  it('has the documented shape, operations in execution order', () => {
    assert.equal(json.version, 1);
    assert.equal(json.node, 'aks-nodepool1-vmss000001');
    assert.deepEqual(json.summary, { add: 2, change: 4, remove: 1 });
    assert.deepEqual(json.blocked, []);
    const ops = json.operations as Record<string, unknown>[];
    assert.deepEqual(ops.map((o) => o.op), PLAN.ops.map((o) => o.kind));
    assert.deepEqual(ops[2], {
      op: 'route-replace', table: 51820, dest: '10.224.0.40/32', type: 'throw', from: { type: 'device', device: 'wireguard.wgp' }, cause: 'no-key',
      reason: 'node aks-nodepool1-vmss000004 has no key (throw)', origin: { kind: 'node-ip', node: 'aks-nodepool1-vmss000004' },
    });
    assert.equal(ops[3]!.publicKey, K1);
    assert.equal((json.problems as { message: string }[])[0]!.message, 'node aks-nodepool1-vmss000004 has published no key: its destinations stay in clear');
  });
  it('round-trips through JSON and holds no field named like a private key', () => {
    const text = JSON.stringify(json);
    assert.deepEqual(JSON.parse(text), json);
    const names: string[] = [];
    JSON.parse(text, (k, v) => { names.push(k); return v; });
    assert.ok(names.includes('publicKey'));
    assert.ok(!names.some((k) => /private|secret/i.test(k)), names.join(','));
  });
});
