// The route table behaves as a Map whatever mix of bulk appends (sorted base) and later sets and deletes
// it gets; and the cases where a key is not an IPv4 /32 (so never in the base) are told apart correctly.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { fcParams } from '../property-tests/seed.js';
import type { Cidr } from './ip.js';
import type { DesiredRoute } from './model.js';
import { RouteTable, v4HostNumber } from './route-table.js';

const route = (dest: string, device = 'wg0'): DesiredRoute => ({
  route: { kind: 'device', dest: dest as Cidr, device },
  origin: { kind: 'node-ip', node: 'n' as never },
});

describe('v4HostNumber', () => {
  const cases: [string, number][] = [
    ['10.0.0.1/32', 0x0a000001],
    ['0.0.0.0/32', 0],
    ['255.255.255.255/32', 0xffffffff],
    ['10.0.0.0/24', -1],
    ['10.0.0.1/3', -1],
    ['2001:db8::/32', -1],
    ['::1/128', -1],
    ['fd00::/32', -1],
    ['1.2.3/32', -1],
  ];
  for (const [k, want] of cases) it(`${k} -> ${want}`, () => assert.equal(v4HostNumber(k), want));
});

describe('RouteTable: examples', () => {
  it('keeps base keys in address order, then the others in insertion order, and reuses deleted slots', () => {
    const t = new RouteTable();
    t.set('fd00::1/128' as Cidr, route('fd00::1/128'));
    t.append(v4HostNumber('10.0.0.1/32'), '10.0.0.1/32' as Cidr, route('10.0.0.1/32'));
    t.append(v4HostNumber('10.0.0.9/32'), '10.0.0.9/32' as Cidr, route('10.0.0.9/32'));
    t.set('10.0.0.5/32' as Cidr, route('10.0.0.5/32')); // not in the base: goes to the others
    assert.deepEqual([...t.keys()], ['10.0.0.1/32', '10.0.0.9/32', 'fd00::1/128', '10.0.0.5/32']);
    assert.equal(t.size, 4);
    assert.equal(t.delete('10.0.0.9/32' as Cidr), true);
    assert.equal(t.delete('10.0.0.9/32' as Cidr), false);
    assert.equal(t.has('10.0.0.9/32' as Cidr), false);
    assert.equal(t.size, 3);
    t.set('10.0.0.9/32' as Cidr, route('10.0.0.9/32', 'wg1'));
    assert.equal(t.get('10.0.0.9/32' as Cidr)!.route.kind === 'device' && (t.get('10.0.0.9/32' as Cidr)!.route as { device: string }).device, 'wg1');
    assert.deepEqual([...t.keys()], ['10.0.0.1/32', '10.0.0.9/32', 'fd00::1/128', '10.0.0.5/32']);
    assert.equal(t.size, 4);
  });

  it('an append out of order is stored as set stores it (the base stays sorted)', () => {
    const t = new RouteTable();
    t.append(5, '0.0.0.5/32' as Cidr, route('0.0.0.5/32'));
    const again = route('0.0.0.5/32', 'wg1');
    t.append(5, '0.0.0.5/32' as Cidr, again); // the same key: replaces it in the base
    t.append(4, '0.0.0.4/32' as Cidr, route('0.0.0.4/32')); // below the base: among the others
    t.append(6, '0.0.0.6/32' as Cidr, route('0.0.0.6/32')); // in order again: in the base
    assert.equal(t.get('0.0.0.5/32' as Cidr), again);
    assert.deepEqual([...t.keys()], ['0.0.0.5/32', '0.0.0.6/32', '0.0.0.4/32']);
    assert.equal(t.size, 3);
    assert.ok(t.has('0.0.0.4/32' as Cidr) && t.has('0.0.0.6/32' as Cidr));
  });

  it('moves a key set during the build into the base in its place', () => {
    const t = new RouteTable();
    t.append(1, '0.0.0.1/32' as Cidr, route('0.0.0.1/32'));
    t.set('0.0.0.2/32' as Cidr, route('0.0.0.2/32'));
    t.appendFromOther(2, '0.0.0.2/32' as Cidr);
    t.appendFromOther(3, '0.0.0.3/32' as Cidr); // absent: nothing
    t.append(4, '0.0.0.4/32' as Cidr, route('0.0.0.4/32'));
    assert.deepEqual([...t.keys()], ['0.0.0.1/32', '0.0.0.2/32', '0.0.0.4/32']);
    assert.equal(t.size, 3);
  });
});

// A model test: any sequence of appends (ascending addresses) and then sets and deletes of keys drawn from
// a small pool (IPv4 /32 in and out of the base, IPv4 blocks, IPv6) answers exactly as a Map does.
const POOL = ['10.0.0.1/32', '10.0.0.2/32', '10.0.0.3/32', '10.0.0.10/32', '10.0.1.0/24', 'fd00::1/128', '2001:db8::/32', '10.0.0.255/32'] as Cidr[];

describe('RouteTable: equals a Map', () => {
  it('for random builds and changes', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), k: fc.constantFrom(...POOL), dev: fc.constantFrom('a', 'b') }),
      fc.record({ kind: fc.constant('delete' as const), k: fc.constantFrom(...POOL) }),
    );
    fc.assert(
      fc.property(fc.subarray(POOL.filter((k) => v4HostNumber(k) >= 0)), fc.array(op, { maxLength: 30 }), (base, ops) => {
        const t = new RouteTable();
        const m = new Map<Cidr, DesiredRoute>();
        for (const k of [...base].sort((a, b) => v4HostNumber(a) - v4HostNumber(b))) {
          const r = route(k);
          t.append(v4HostNumber(k), k, r);
          m.set(k, r);
        }
        for (const o of ops) {
          if (o.kind === 'set') {
            const r = route(o.k, o.dev);
            t.set(o.k, r);
            m.set(o.k, r);
          } else assert.equal(t.delete(o.k), m.delete(o.k));
          assert.equal(t.size, m.size);
          for (const k of POOL) {
            assert.equal(t.get(k), m.get(k), k);
            assert.equal(t.has(k), m.has(k), k);
          }
          assert.deepEqual(new Map(t), m);
          const seen: Cidr[] = [];
          t.forEach((v, k) => { assert.equal(v, m.get(k)); seen.push(k); });
          assert.deepEqual(seen.sort(), [...m.keys()].sort());
          assert.deepEqual([...t.values()].length, m.size);
        }
      }),
      fcParams(200),
    );
  });
});
