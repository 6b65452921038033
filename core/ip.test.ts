import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from 'fp-ts/lib/Either.js';
import { cidrContains, cidrCovers, compareCidr, familyOf, hostCidr, networkHostCidr, parseCidr, parseIP, type Cidr, type IP } from './ip.js';
import { parseKey } from './key.js';

test('parseIP canonicalises IPv4 and IPv6 and refuses what is not an address', () => {
  const cases: [string, string | null][] = [
    ['10.224.0.4', '10.224.0.4'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    ['10.224.0.999', null],
    ['010.1.1.1', null],
    ['10.1.1', null],
    ['FD00:10:244:1::A', 'fd00:10:244:1::a'],
    ['fd00:0:0:0:0:0:0:1', 'fd00::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['::', '::'],
    ['::ffff:10.0.0.1', '::ffff:a00:1'],
    ['1::2::3', null],
    ['fd00::g', null],
    ['', null],
  ];
  for (const [input, want] of cases) {
    const r = parseIP(input);
    if (want === null) assert.ok(E.isLeft(r), input);
    else assert.deepEqual(r, E.right(want), input);
  }
});

test('parseCidr wants network form and names the network when host bits are set', () => {
  assert.deepEqual(parseCidr('10.244.1.0/24'), E.right('10.244.1.0/24'));
  assert.deepEqual(parseCidr('FD00:10:244:1::/64'), E.right('fd00:10:244:1::/64'));
  const bad = parseCidr('10.244.1.7/24');
  assert.ok(E.isLeft(bad) && /network is 10\.244\.1\.0\/24/.test(bad.left));
  for (const s of ['10.0.0.0/33', 'fd00::/129', '10.0.0.0', '10.0.0.0/x']) assert.ok(E.isLeft(parseCidr(s)), s);
});

test('containment, covering, order, host and network CIDRs', () => {
  const c = (s: string) => s as Cidr;
  assert.equal(cidrContains(c('10.244.1.0/24'), '10.244.1.200' as IP), true);
  assert.equal(cidrContains(c('10.244.1.0/24'), '10.244.2.1' as IP), false);
  assert.equal(cidrContains(c('fd00:10:244:1::/64'), 'fd00:10:244:1::5' as IP), true);
  assert.equal(cidrContains(c('10.0.0.0/8'), 'fd00::1' as IP), false);
  assert.equal(cidrCovers(c('10.0.0.0/8'), c('10.244.1.0/24')), true);
  assert.equal(cidrCovers(c('10.244.1.0/24'), c('10.0.0.0/8')), false);
  const sorted = [c('fd00::/64'), c('10.0.0.10/32'), c('10.0.0.9/32'), c('10.0.0.0/24'), c('10.0.0.0/8')].sort(compareCidr);
  assert.deepEqual(sorted, ['10.0.0.0/8', '10.0.0.0/24', '10.0.0.9/32', '10.0.0.10/32', 'fd00::/64']);
  assert.equal(hostCidr('10.1.2.3' as IP), '10.1.2.3/32');
  assert.equal(hostCidr('fd00::1' as IP), 'fd00::1/128');
  assert.equal(networkHostCidr(c('10.244.1.0/24')), '10.244.1.0/32');
  assert.equal(familyOf(c('fd00::/64')), 6);
});

test('parseKey accepts 32-byte base64 public keys only', () => {
  assert.ok(E.isRight(parseKey(Buffer.alloc(32, 7).toString('base64'))));
  assert.ok(E.isLeft(parseKey(Buffer.alloc(31, 7).toString('base64'))));
  assert.ok(E.isLeft(parseKey('not a key')));
  assert.ok(E.isLeft(parseKey(42)));
  const almost = Buffer.alloc(32, 7).toString('base64').slice(0, 42) + 'B=';
  assert.ok(E.isLeft(parseKey(almost)), 'non-zero padding bits');
});
