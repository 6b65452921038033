import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as E from 'fp-ts/lib/Either.js';
import type { DesiredDisabled, ObservedDataplane, Operation, OperationKind } from '../core/model.js';
import { deviceSysctlKey, EMPTY_OBSERVED } from '../core/model.js';
import { applyPlan, blackHoles } from '../planner/kernel-model.js';
import type { ModelState } from '../planner/kernel-model.js';
import { plan, planScoped } from '../planner/plan.js';
import { c, converged, DEV, desired, INPUT_CHAIN, key, node, peer, rule, TABLE } from '../property-tests/planner-fixtures.js';

const kinds = (ops: readonly Operation[]): OperationKind[] => ops.map((o) => o.kind);
const index = (ops: readonly Operation[], f: (o: Operation) => boolean): number => ops.findIndex(f);

const B = peer('b', 2, ['10.1.0.2/32', '10.1.0.3/32']);
const C = peer('c', 3, ['10.1.0.4/32', 'fd00::4/128']);
const BASE = desired([B, C], ['10.1.0.9/32']);

/** Applies the plan to the observed state and checks that planning again gives nothing, and that no
 *  prefix of the plan black-holes a destination that was not black-holed before. */
function applyAndCheck(d: Parameters<typeof plan>[0], s: ModelState): ModelState {
  const p = plan(d, s);
  const before = blackHoles(s, DEV);
  let cur = s;
  for (const op of p.ops) {
    const r = applyPlan(cur, [op]);
    if (E.isLeft(r)) assert.fail(`op ${op.kind} failed: ${r.left.message}`);
    cur = r.right;
    for (const dest of blackHoles(cur, DEV)) assert.ok(before.has(dest), `after ${op.kind}, ${dest} is black-holed`);
  }
  assert.deepEqual(plan(d, cur).ops, [], 'planning again gives no change');
  return cur;
}

describe('plan: enabled, from an empty node', () => {
  const p = plan(BASE, EMPTY_OBSERVED);
  it('orders the operations safely', () => {
    assert.deepEqual(kinds(p.ops), [
      'sysctl-set', 'link-create', 'link-set-up', 'address-add', 'device-configure',
      'route-add', // the throw (retreat phase)
      'peer-add', 'peer-add',
      'route-add', 'route-add', 'route-add', 'route-add', // device routes (advance), IPv4 then IPv6
      'rule-add', 'rule-add', 'firewall-chain',
    ]);
    const dests = p.ops.filter((o) => o.kind === 'route-add').map((o) => (o as { route: { dest: string } }).route.dest);
    assert.deepEqual(dests, ['10.1.0.9/32', '10.1.0.2/32', '10.1.0.3/32', '10.1.0.4/32', 'fd00::4/128']);
  });
  it('converges, with no black hole on the way', () => {
    const s = applyAndCheck(BASE, EMPTY_OBSERVED);
    assert.equal(s.device?.up, true);
    assert.equal(s.peers.size, 2);
    assert.equal(s.routes.size, 5);
  });
  it('is empty against the state it produces', () => {
    assert.deepEqual(plan(BASE, converged(BASE)).ops, []);
  });
});

describe('plan: changes (table)', () => {
  const s0 = converged(BASE);
  const cases: { name: string; d: ReturnType<typeof desired>; s?: ModelState; expect: OperationKind[]; check?: (ops: readonly Operation[]) => void }[] = [
    {
      name: 'a changed key: peer-add of the new key (taking the IPs) before peer-remove of the old',
      d: desired([peer('b', 12, ['10.1.0.2/32', '10.1.0.3/32']), C], ['10.1.0.9/32']),
      expect: ['peer-add', 'peer-remove'],
      check: (ops) => {
        const add = ops[0] as Extract<Operation, { kind: 'peer-add' }>;
        assert.deepEqual(add.moves, [{ allowedIP: c('10.1.0.2/32'), from: key(2) }, { allowedIP: c('10.1.0.3/32'), from: key(2) }]);
      },
    },
    {
      name: 'a pod IP moving from node b to node c: one addition to c, nothing to remove from b',
      d: desired([peer('b', 2, ['10.1.0.2/32']), peer('c', 3, ['10.1.0.3/32', '10.1.0.4/32', 'fd00::4/128'])], ['10.1.0.9/32']),
      expect: ['peer-update'], // the route stays `dev wg0`: only the peers change
      check: (ops) => {
        const u = ops[0] as Extract<Operation, { kind: 'peer-update' }>;
        assert.equal(u.publicKey, key(3));
        assert.deepEqual(u.addAllowedIPs, [c('10.1.0.3/32')]);
        assert.deepEqual(u.moves, [{ allowedIP: c('10.1.0.3/32'), from: key(2) }]);
      },
    },
    {
      name: 'a pod that goes away: route-delete before the peer loses the IP',
      d: desired([peer('b', 2, ['10.1.0.2/32']), C], ['10.1.0.9/32']),
      expect: ['route-delete', 'peer-update'],
      check: (ops) => assert.deepEqual((ops[1] as Extract<Operation, { kind: 'peer-update' }>).removeAllowedIPs, [c('10.1.0.3/32')]),
    },
    {
      name: 'a node loses its key: routes become throws before the peer goes',
      d: desired([C], ['10.1.0.9/32', '10.1.0.2/32', '10.1.0.3/32']),
      expect: ['route-replace', 'route-replace', 'peer-remove'],
    },
    {
      name: 'a new pod: the peer gains the IP before the route points into the device',
      d: desired([peer('b', 2, ['10.1.0.2/32', '10.1.0.3/32', '10.1.0.5/32']), C], ['10.1.0.9/32']),
      expect: ['peer-update', 'route-add'],
    },
    {
      name: 'endpoint and keepalive change in place',
      d: desired([peer('b', 2, ['10.1.0.2/32', '10.1.0.3/32'], '192.168.9.9:51820', 25), C], ['10.1.0.9/32']),
      expect: ['peer-update'],
      check: (ops) => {
        const u = ops[0] as Extract<Operation, { kind: 'peer-update' }>;
        assert.equal(u.endpoint, '192.168.9.9:51820');
        assert.equal(u.persistentKeepalive, 25);
      },
    },
    {
      name: 'a changed rule priority: rule-delete first, rule-add after the routes',
      d: { ...BASE, rules: [rule(4, 100), rule(6)] },
      expect: ['rule-delete', 'rule-add'],
    },
    {
      name: 'MTU, address and port changes on the existing device',
      d: { ...BASE, device: { ...BASE.device, mtu: 1340, listenPort: 51821, addresses: [c('10.0.0.2/32')] } },
      expect: ['link-set-mtu', 'address-delete', 'address-add', 'device-configure'],
    },
    {
      name: 'a sysctl that differs',
      d: { ...BASE, sysctls: new Map([['net.ipv4.conf.all.src_valid_mark', '0']]) },
      expect: ['sysctl-set'],
    },
    {
      name: 'a changed chain, and an owned chain no longer desired',
      d: { ...BASE, firewall: [{ ...INPUT_CHAIN, rules: ['-p udp -m udp --dport 51821 -j ACCEPT'] }] },
      s: { ...s0, firewall: [...s0.firewall, { family: 4, table: 'raw', name: 'WGPLANE-PRE', hook: 'PREROUTING', rules: [], hooked: true }] },
      expect: ['firewall-chain', 'firewall-chain'],
      check: (ops) => assert.deepEqual(ops.map((o) => (o as { remove: boolean }).remove), [true, false]),
    },
    {
      name: 'an unhooked chain is hooked again',
      d: BASE,
      s: { ...s0, firewall: s0.firewall.map((f) => ({ ...f, hooked: false })) },
      expect: ['firewall-chain'],
    },
    {
      name: 'a device key that is not the stored one (observed key missing) is configured',
      d: BASE,
      s: { ...s0, device: { ...s0.device!, publicKey: null } },
      expect: ['device-configure'],
    },
    {
      name: 'a stale device goes first, and the routes through it go with it',
      d: BASE,
      s: { ...s0, staleDevices: ['wg-old'], routes: new Map([...s0.routes, [c('10.7.0.0/24'), { kind: 'device', dest: c('10.7.0.0/24'), device: 'wg-old' }]]) },
      expect: ['link-delete'],
    },
    {
      name: 'routes in the table that wgplane did not make are removed',
      d: BASE,
      s: { ...s0, routes: new Map([...s0.routes, [c('10.8.0.0/16'), { kind: 'throw', dest: c('10.8.0.0/16') }]]) },
      expect: ['route-delete'],
    },
    {
      name: 'an existing device that is down comes up after its peers, before new routes into it',
      d: desired([B, C, peer('d', 4, ['10.1.0.6/32'])], ['10.1.0.9/32']),
      s: { ...s0, device: { ...s0.device!, up: false } },
      expect: ['peer-add', 'link-set-up', 'route-add'],
    },
  ];
  for (const t of cases) {
    it(t.name, () => {
      const s = t.s ?? s0;
      const p = plan(t.d, s);
      assert.deepEqual(kinds(p.ops), t.expect);
      t.check?.(p.ops);
      applyAndCheck(t.d, s);
    });
  }
});

describe("plan: the device's own sysctls (they exist only while the device does)", () => {
  const RP = deviceSysctlKey(DEV, 'rp_filter');
  const d = desired([B, C], ['10.1.0.9/32'], { sysctls: new Map([['net.ipv4.conf.all.src_valid_mark', '1'], [RP, '2']]) });
  it('from an empty node: global sysctls first, the device sysctl right after the device, before any route', () => {
    const ops = plan(d, EMPTY_OBSERVED).ops;
    const at = (key: string) => index(ops, (o) => o.kind === 'sysctl-set' && o.key === key);
    assert.ok(at('net.ipv4.conf.all.src_valid_mark') < index(ops, (o) => o.kind === 'link-create'));
    assert.ok(at(RP) > index(ops, (o) => o.kind === 'device-configure'));
    assert.ok(at(RP) < index(ops, (o) => o.kind === 'route-add'));
    const after = applyAndCheck(d, EMPTY_OBSERVED);
    assert.equal(after.sysctls.get(RP), '2');
  });
  it('the kernel model refuses it before the device exists (so the order above is checked)', () => {
    const op: Operation = { kind: 'sysctl-set', key: RP, value: '2', from: null, origin: { kind: 'setting', setting: 'hostEncryption' } };
    const r = applyPlan(EMPTY_OBSERVED, [op]);
    assert.ok(E.isLeft(r) && /No such file or directory/.test(r.left.message));
  });
  it('on an existing device whose value differs: one sysctl-set, from the observed value', () => {
    const s0 = converged(d);
    const s1: ModelState = { ...s0, sysctls: new Map([...s0.sysctls, [RP, '1']]) };
    const ops = plan(d, s1).ops;
    assert.deepEqual(ops.map((o) => [o.kind, (o as { from?: string }).from]), [['sysctl-set', '1']]);
  });
  it('goes with the device on tear-down, and a re-created device gets it again', () => {
    const s0 = converged(d);
    const off: DesiredDisabled = { kind: 'disabled', node: node('self'), why: 'setting', interfaceName: DEV, table: TABLE, problems: [] };
    const down = applyAndCheck(off, s0);
    assert.equal(down.sysctls.has(RP), false);
    assert.equal(down.sysctls.get('net.ipv4.conf.all.src_valid_mark'), '1');
    const ops = plan(d, down).ops;
    assert.equal(ops.filter((o) => o.kind === 'sysctl-set').length, 1);
    applyAndCheck(d, down);
  });
});

describe('plan: disabled and blocked', () => {
  const s0: ModelState = { ...converged(BASE), staleDevices: ['wg-old'] };
  const off: DesiredDisabled = { kind: 'disabled', node: node('self'), why: 'setting', interfaceName: DEV, table: TABLE, problems: [] };
  it('tears down: rules first, then the table per family, the devices, the chains; sysctls stay', () => {
    const p = plan(off, s0);
    assert.deepEqual(kinds(p.ops), ['rule-delete', 'rule-delete', 'table-flush', 'table-flush', 'link-delete', 'link-delete', 'firewall-chain']);
    const flush = p.ops.filter((o) => o.kind === 'table-flush').map((o) => [(o as { family: number }).family, (o as { routes: number }).routes]);
    assert.deepEqual(flush, [[4, 4], [6, 1]]);
    const after = applyAndCheck(off, s0);
    assert.equal(after.device, null);
    assert.equal(after.routes.size, 0);
    assert.deepEqual(after.rules, []);
    assert.equal(after.sysctls.get('net.ipv4.conf.all.src_valid_mark'), '1');
  });
  it('on a node where wgplane never ran, does nothing', () => {
    assert.deepEqual(plan(off, EMPTY_OBSERVED).ops, []);
  });
  it('with a conflict, plans nothing and says why', () => {
    const obs: ObservedDataplane = { ...EMPTY_OBSERVED, conflicts: ['wg0 is a veth link without the wgplane alias'] };
    for (const d of [BASE, off]) {
      const p = plan(d, obs);
      assert.deepEqual(p.ops, []);
      assert.deepEqual(p.blocked, obs.conflicts);
    }
  });
});

describe('plan: determinism and scope', () => {
  it('does not depend on the insertion order of maps', () => {
    const rev = <K, V>(m: ReadonlyMap<K, V>): Map<K, V> => new Map([...m].reverse());
    const s0 = converged(BASE);
    const d2 = desired([peer('b', 12, ['10.1.0.2/32']), peer('c', 3, ['10.1.0.3/32', 'fd00::4/128']), peer('e', 5, ['fd00::1/128', '10.1.0.1/32'])], ['10.1.0.4/32', 'fd00::9/128']);
    const a = plan(d2, s0);
    const b = plan({ ...d2, peers: rev(d2.peers), routes: rev(d2.routes) }, { ...s0, peers: rev(s0.peers), routes: rev(s0.routes) });
    assert.deepEqual(b, a);
    assert.ok(a.ops.length > 5);
  });
  it('planScoped over the changed keys equals plan', () => {
    const s0 = converged(BASE);
    const d2 = desired([peer('b', 2, ['10.1.0.2/32']), peer('c', 3, ['10.1.0.3/32', '10.1.0.4/32', 'fd00::4/128'])], ['10.1.0.9/32', '10.1.0.7/32']);
    const scoped = planScoped(d2, s0, { routes: [c('10.1.0.3/32'), c('10.1.0.7/32')], peers: [key(2), key(3)] });
    assert.deepEqual(scoped, plan(d2, s0));
    // and a scope that misses the change misses it (the scope is what is diffed)
    assert.deepEqual(kinds(planScoped(d2, s0, { routes: [], peers: [] }).ops), []);
  });
});
