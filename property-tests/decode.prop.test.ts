// The decoder never throws, whatever the input, and always answers with an Either; the pod fast path
// agrees with the io-ts codec on everything it accepts. Seed fixed (property-tests/seed.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as E from 'fp-ts/lib/Either.js';
import { MAX_DECODE_ERRORS, decodeNode, decodeObjects, decodePod, decodePodSlow, decodeSettingsConfigMap, podFast } from '../core/decode.js';
import { decodeSettings } from '../core/settings.js';
import { parseIP } from '../core/ip.js';
import { fcParams } from './seed.js';

const KEY = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
const NODE = {
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name: 'aks-nodepool1-12345678-vmss000000', labels: { 'kubernetes.azure.com/cluster': 'MC_rg', agentpool: 'nodepool1' }, annotations: { 'wgplane.io/public-key': KEY, other: 'x' } },
  spec: { providerID: 'azure:///subscriptions/x/virtualMachines/0', podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'] },
  status: { addresses: [{ type: 'InternalIP', address: '10.224.0.4' }, { type: 'InternalIP', address: 'fd00::4' }, { type: 'Hostname', address: 'aks-1' }] },
};
const POD = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'web-7f9c8d6b5-2kq9x', namespace: 'default', labels: { app: 'web' } },
  spec: { nodeName: 'aks-nodepool1-12345678-vmss000000', hostNetwork: false, containers: [{ name: 'web', image: 'nginx' }] },
  status: { phase: 'Running', podIP: '10.224.0.12', podIPs: [{ ip: '10.224.0.12' }, { ip: 'fd00::12' }] },
};
const CM = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'kube-system', name: 'wgplane' }, data: { enabled: 'true', mtu: '1400' } };

/** Every path (list of keys) inside a value. */
function paths(v: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...prefix, i])));
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...prefix, k]));
  return out;
}

function setAt(root: unknown, path: (string | number)[], value: unknown, del: boolean): unknown {
  if (path.length === 0) return value;
  const copy = structuredClone(root) as Record<string | number, unknown>;
  let cur: Record<string | number, unknown> = copy;
  for (const k of path.slice(0, -1)) cur = cur[k] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (del) delete cur[last];
  else cur[last] = value;
  return copy;
}

const ipish = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.ipV4Extended(),
  fc.constantFrom('010.0.0.1', '1.2.3.04', '1.2.3.00', '1.02.3.4', '1.2.3.256', '1.2.3', '1.2.3.4.5', ' 1.2.3.4', '0.0.0.0', '255.255.255.255', '::', 'FD00::1', '::ffff:1.2.3.4', '', '1..2.3', '10.224.0.999'),
);
const cidrish = fc.oneof(fc.tuple(ipish, fc.integer({ min: -1, max: 130 })).map(([a, l]) => `${a}/${l}`), fc.constantFrom('10.0.0.0/8', '10.0.0.1/8', 'fd00::/64', '/24'));
const replacement = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 3, arbitrary: ipish },
  { weight: 1, arbitrary: cidrish },
  { weight: 1, arbitrary: fc.anything({ maxDepth: 2 }) },
  { weight: 1, arbitrary: fc.constantFrom(null, undefined, '', [], {}, true, 0, KEY, KEY.slice(1), [{ ip: '10.0.0.1' }, { ip: '10.0.0.1' }]) },
);

function mutated(base: unknown) {
  const ps = paths(base);
  return fc
    .array(fc.record({ p: fc.nat({ max: ps.length - 1 }), v: replacement, del: fc.boolean() }), { minLength: 1, maxLength: 3 })
    .map((ms) => ms.reduce((acc, m) => {
      const live = paths(acc);
      const path = live[m.p % live.length]!;
      return setAt(acc, path, m.v, m.del);
    }, base as unknown));
}

function checkEither(r: E.Either<readonly { where: string; message: string }[], unknown>): void {
  assert.ok(E.isLeft(r) || E.isRight(r));
  if (E.isLeft(r)) {
    assert.ok(r.left.length > 0 && r.left.length <= MAX_DECODE_ERRORS + 1);
    for (const e of r.left) assert.ok(typeof e.where === 'string' && typeof e.message === 'string' && e.message.length > 0);
  }
}

describe('decoder: never throws, always an Either', () => {
  it('decodeObjects on arbitrary JSON documents', () => {
    fc.assert(fc.property(fc.array(fc.jsonValue(), { maxLength: 4 }), (values) => {
      checkEither(decodeObjects(values.map((value, i) => ({ source: `doc${i % 2}.json`, value }))));
    }), fcParams());
  });
  it('decodeObjects on anything (incl. undefined, symbols-free objects, -0, sparse arrays)', () => {
    fc.assert(fc.property(fc.anything(), (value) => {
      checkEither(decodeObjects([{ source: 's', value }]));
      checkEither(decodeObjects([{ source: 's', value: { apiVersion: 'v1', kind: 'List', items: [value, value] } }]));
      checkEither(decodeNode(value, 'n'));
      checkEither(decodePod(value, 'p'));
      checkEither(decodeSettingsConfigMap(value, 'c'));
      checkEither(decodeSettings(value, 'c'));
    }), fcParams());
  });
  it('decodeObjects on Lists of mutated real Nodes, Pods and the settings ConfigMap', () => {
    fc.assert(fc.property(fc.array(fc.oneof(mutated(NODE), mutated(POD), mutated(CM), fc.constant(POD)), { maxLength: 5 }), (items) => {
      checkEither(decodeObjects([{ source: 'cluster.yaml', value: { apiVersion: 'v1', kind: 'List', items } }]));
    }), fcParams());
  });
  it('deeply nested input', () => {
    let deep: unknown = {};
    for (let i = 0; i < 100_000; i++) deep = { metadata: deep, items: [deep] };
    checkEither(decodeObjects([{ source: 'deep', value: deep }, { source: 'deep', value: { apiVersion: 'v1', kind: 'List', items: [deep] } }]));
    checkEither(decodeNode(deep, 'n'));
    checkEither(decodePod(deep, 'p'));
  });
  it('cyclic input', () => {
    const a: Record<string, unknown> = { apiVersion: 'v1', kind: 'Pod' };
    a.metadata = a;
    a.status = { podIPs: [a] };
    checkEither(decodeObjects([{ source: 'cycle', value: a }, { source: 'cycle', value: { apiVersion: 'v1', kind: 'List', items: [a, a] } }]));
  });
});

describe('pod fast path', () => {
  it('accepts only what the codec accepts, and builds the same value', () => {
    let accepted = 0;
    let refused = 0;
    fc.assert(fc.property(mutated(POD), (v) => {
      const fast = podFast(v);
      const slow = decodePodSlow(v, 'p');
      if (fast === undefined) {
        refused++;
        // When the fast path refuses, decodePod gives the codec's answer.
        assert.deepEqual(decodePod(v, 'p'), slow);
      } else {
        accepted++;
        assert.deepEqual(slow, E.right(fast));
      }
    }), fcParams(500));
    assert.ok(accepted > 20 && refused > 20, `both paths exercised: ${accepted} accepted, ${refused} refused`);
  });
  it('its IPv4 check agrees with parseIP', () => {
    fc.assert(fc.property(ipish, (ip) => {
      const pod = { metadata: { name: 'p' }, status: { podIP: ip } };
      const fast = podFast(pod);
      const parsed = parseIP(ip);
      if (ip === '') assert.deepEqual(fast?.ips, []);
      else if (E.isLeft(parsed)) assert.equal(fast, undefined);
      else assert.deepEqual(fast?.ips, [parsed.right]);
    }), fcParams(1000));
  });
});
