// The kernel model in place (applyOperationsInPlace, for the daemon and applyPlan) agrees with the
// functional model (applyOperation, one copy per operation) on every operation sequence: same states,
// same number of operations applied, same failure message. Sequences mix operations that succeed and fail
// on wgplane's and foreign objects, allowed IPs moving between peers, and states where one allowed IP is
// held by several peers.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import * as E from 'fp-ts/lib/Either.js';
import type { Cidr } from '../core/ip.js';
import type { Operation, Route } from '../core/model.js';
import { EMPTY_OBSERVED } from '../core/model.js';
import { applyOperation, applyOperationsInPlace, applyPlan, toMutable, type ForeignState, type ModelState } from '../planner/kernel-model.js';
import { fcParams } from './seed.js';
import { c, DEV, key, node, TABLE } from './planner-fixtures.js';

const IPS: readonly Cidr[] = [c('10.1.0.1/32'), c('10.1.0.2/32'), c('10.1.0.3/32'), c('10.2.0.0/24'), c('fd00::1/128'), c('fd00:1::/64')];
const KEYS = [1, 2, 3, 4].map(key);
const DEVICES = [DEV, 'wg-old', 'eth0', 'nosuch'];
const TABLES = [TABLE, 100, 7];
const O = { kind: 'unowned', detail: 'test' } as const;

const FOREIGN: ForeignState = {
  links: [{ name: 'eth0', mtu: 1500, up: true, addresses: [c('192.168.0.0/24')] }],
  tables: new Map<number, ReadonlyMap<Cidr, Route>>([[100, new Map([[c('10.1.0.2/32'), { kind: 'device', dest: c('10.1.0.2/32'), device: 'eth0' } as Route]])]]),
  rules: [],
  chains: [{ family: 4, table: 'filter', name: 'KUBE-FIREWALL', hook: 'INPUT', rules: ['-j DROP'], hooked: true }],
};

const routeArb: fc.Arbitrary<Route> = fc.oneof(
  fc.constantFrom(...IPS).map((dest): Route => ({ kind: 'throw', dest })),
  fc.record({ dest: fc.constantFrom(...IPS), device: fc.constantFrom(...DEVICES) }).map(({ dest, device }): Route => ({ kind: 'device', dest, device })),
);
const ipsArb = fc.subarray([...IPS], { maxLength: 4 });
const opArb: fc.Arbitrary<Operation> = fc.oneof(
  fc.record({ name: fc.constantFrom(...DEVICES), mtu: fc.constantFrom(1420, 1500) }).map(({ name, mtu }): Operation => ({ kind: 'link-create', name, mtu, origin: O })),
  fc.constantFrom(...DEVICES).map((name): Operation => ({ kind: 'link-delete', name, peers: 0, origin: O })),
  fc.constantFrom(...DEVICES).map((name): Operation => ({ kind: 'link-set-up', name, origin: O })),
  fc.record({ name: fc.constantFrom(...DEVICES), mtu: fc.constantFrom(1280, 1420) }).map(({ name, mtu }): Operation => ({ kind: 'link-set-mtu', name, mtu, from: 0, origin: O })),
  fc.record({ device: fc.constantFrom(...DEVICES), address: fc.constantFrom(c('10.0.0.1/32'), c('10.0.0.2/32')), del: fc.boolean() }).map(
    ({ device, address, del }): Operation => ({ kind: del ? 'address-delete' : 'address-add', device, address, origin: O }),
  ),
  fc.record({ device: fc.constantFrom(...DEVICES), k: fc.constantFrom(null, key(9)) }).map(({ device, k }): Operation => ({ kind: 'device-configure', device, listenPort: 51820, fwmark: 0x100000, publicKey: k, origin: O })),
  fc.record({ k: fc.constantFrom(...KEYS), ips: ipsArb, ka: fc.constantFrom(0, 25) }).map(
    ({ k, ips, ka }): Operation => ({ kind: 'peer-add', device: DEV, peer: { node: node('n'), publicKey: k, endpoint: '192.168.0.9:51820', allowedIPs: ips, persistentKeepalive: ka }, origin: O }),
  ),
  fc.record({ k: fc.constantFrom(...KEYS), add: ipsArb, remove: fc.subarray([...IPS], { maxLength: 2 }), ep: fc.option(fc.constantFrom('192.168.0.1:51820', null), { nil: undefined }), ka: fc.option(fc.constantFrom(0, 25), { nil: undefined }) }).map(
    ({ k, add, remove, ep, ka }): Operation => ({
      kind: 'peer-update', device: DEV, publicKey: k, node: null, addAllowedIPs: add, removeAllowedIPs: remove, origin: O,
      ...(ep !== undefined ? { endpoint: ep } : {}), ...(ka !== undefined ? { persistentKeepalive: ka } : {}),
    }),
  ),
  fc.constantFrom(...KEYS).map((publicKey): Operation => ({ kind: 'peer-remove', device: DEV, publicKey, node: null, origin: O })),
  fc.record({ table: fc.constantFrom(...TABLES), route: routeArb, kind: fc.constantFrom('route-add' as const, 'route-delete' as const) }).map(
    ({ table, route, kind }): Operation => ({ kind, table, route, origin: O }),
  ),
  fc.record({ table: fc.constantFrom(...TABLES), route: routeArb, from: routeArb }).map(({ table, route, from }): Operation => ({ kind: 'route-replace', table, route, from: { ...from, dest: route.dest }, origin: O })),
  fc.record({ table: fc.constantFrom(...TABLES), family: fc.constantFrom(4 as const, 6 as const) }).map(({ table, family }): Operation => ({ kind: 'table-flush', table, family, routes: 0, origin: O })),
  fc.record({ family: fc.constantFrom(4 as const, 6 as const), priority: fc.constantFrom(99, 98), del: fc.boolean() }).map(
    ({ family, priority, del }): Operation => ({ kind: del ? 'rule-delete' : 'rule-add', rule: { family, priority, table: TABLE, fwmark: 0x100000, mask: 0x100000 }, origin: O }),
  ),
  fc.record({ name: fc.constantFrom('WGPLANE-INPUT', 'WGPLANE-OLD', 'KUBE-FIREWALL'), remove: fc.boolean(), rules: fc.constantFrom(['-j ACCEPT'], ['-j RETURN']) }).map(
    ({ name, remove, rules }): Operation => ({ kind: 'firewall-chain', chain: { family: 4, table: 'filter', name, hook: 'INPUT', rules }, remove, hooked: false, origin: O }),
  ),
  fc.constantFrom('0', '1').map((value): Operation => ({ kind: 'sysctl-set', key: 'net.ipv4.conf.all.src_valid_mark', value, from: null, origin: O })),
);

/** Reference: the functional model, one operation at a time. */
function functional(s: ModelState, ops: readonly Operation[]): { state: ModelState; applied: number; error: string | null } {
  for (let i = 0; i < ops.length; i++) {
    const r = applyOperation(s, ops[i]!);
    if (E.isLeft(r)) return { state: s, applied: i, error: r.left };
    s = r.right;
  }
  return { state: s, applied: ops.length, error: null };
}

function withoutFailures(s: ModelState, ops: readonly Operation[]): ModelState {
  for (const op of ops) {
    const r = applyOperation(s, op);
    if (E.isRight(r)) s = r.right;
  }
  return s;
}

const stateArb: fc.Arbitrary<ModelState> = fc
  .record({
    table: fc.boolean(),
    foreign: fc.boolean(),
    stale: fc.boolean(),
    peers: fc.array(fc.tuple(fc.constantFrom(...KEYS), ipsArb), { maxLength: 3 }),
    setup: fc.array(opArb, { maxLength: 15 }),
    // an allowed IP held by two peers: not reachable by operations, but an observation may show it
    shared: fc.option(fc.constantFrom(...IPS), { nil: null }),
  })
  .map(({ table, foreign, stale, peers: initial, setup, shared }) => {
    let s: ModelState = { ...EMPTY_OBSERVED, ...(table ? { table: TABLE } : {}), ...(foreign ? { foreign: FOREIGN } : {}), ...(stale ? { staleDevices: ['wg-old'] } : {}) };
    const adds = initial.map(([k, ips]): Operation => ({ kind: 'peer-add', device: DEV, peer: { node: node('n'), publicKey: k, endpoint: null, allowedIPs: ips, persistentKeepalive: 0 }, origin: O }));
    s = withoutFailures(s, [{ kind: 'link-create', name: DEV, mtu: 1420, origin: O }, ...adds, ...setup]);
    if (shared !== null && s.peers.size >= 2) {
      const peers = new Map(s.peers);
      for (const [k, p] of [...peers].slice(0, 2)) if (!p.allowedIPs.includes(shared)) peers.set(k, { ...p, allowedIPs: [...p.allowedIPs, shared] });
      s = { ...s, peers };
    }
    return s;
  });

function plain(s: ModelState): ModelState {
  const { owners: _o, ...rest } = s as ModelState & { owners?: unknown };
  void _o;
  return rest;
}

describe('kernel model in place', () => {
  it('agrees with the functional model (state, operations applied, failure)', () => {
    fc.assert(
      fc.property(stateArb, fc.array(opArb, { maxLength: 25 }), (s0, ops) => {
        const want = functional(s0, ops);
        const m = toMutable(s0);
        const got = applyOperationsInPlace(m, ops);
        assert.deepStrictEqual({ applied: got.applied, error: got.error }, { applied: want.applied, error: want.error });
        assert.deepStrictEqual(plain(m), plain(want.state));
        // the input state is never touched
        assert.deepStrictEqual(plain(toMutable(s0)), plain(s0 as ModelState));
        // applyPlan (built on the in-place model) gives the same result as well
        const ap = applyPlan(s0, ops);
        if (want.error === null) assert.deepStrictEqual(ap, E.right(want.state));
        else assert.deepStrictEqual(ap, E.left({ index: want.applied, message: want.error, state: want.state }));
      }),
      fcParams(400),
    );
  });

  it("applies 1,000 peers x 30 allowed IPs and their 30,000 routes (31,000 operations) in one pass", () => {
    // Not a timing test (timings live in the benchmarks): the functional model copies the maps on every
    // operation (31,000 operations x 31,000 entries), which would take minutes; this finishes at once.
    const ops: Operation[] = [{ kind: 'link-create', name: DEV, mtu: 1420, origin: O }];
    for (let p = 0; p < 1000; p++) {
      const ips: Cidr[] = [];
      for (let i = 0; i < 30; i++) ips.push(c(`10.${p >> 8}.${p & 255}.${i}/32`));
      ops.push({ kind: 'peer-add', device: DEV, peer: { node: node(`n${p}`), publicKey: `${'p'.repeat(38)}${String(p).padStart(4, '0')}A=` as never, endpoint: null, allowedIPs: ips, persistentKeepalive: 0 }, origin: O });
      for (const ip of ips) ops.push({ kind: 'route-add', table: TABLE, route: { kind: 'device', dest: ip, device: DEV }, origin: O });
    }
    const r = applyPlan(EMPTY_OBSERVED, ops);
    assert.ok(E.isRight(r));
    assert.equal(r.right.routes.size, 30_000);
    assert.equal(r.right.peers.size, 1000);
  });
});
