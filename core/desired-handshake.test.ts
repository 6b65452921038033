// Host-encryption start-up safety: the handshake gate of core/desired-index.ts (a peer that never
// handshaked keeps its pod destinations in the device, its node IPs in clear, and keepalive 25).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as E from 'fp-ts/lib/Either.js';
import { fcParams } from '../property-tests/seed.js';
import { desired } from './desired.js';
import { applyHandshakeChange, applyPodChange, BOOTSTRAP_KEEPALIVE, buildDesiredIndex, desiredOf, type DesiredIndex } from './desired-index.js';
import { comparable, mkNode, mkPod, mkSnapshot, testKey } from './desired-fixtures.js';
import type { ClusterSnapshot, DesiredEnabled, HostFacts, NodeName, PodInfo, PodKey, Settings } from './model.js';
import type { WgKey } from './key.js';

const A = 'a' as NodeName;
const aksNode = (name: string, ips: string[], k: number | null) =>
  mkNode(name, { internal: ips, providerID: `azure:///subscriptions/x/${name}`, labels: { 'kubernetes.azure.com/role': 'agent' }, key: k === null ? null : testKey(k) });
// a (us), b and c peers (b has two node addresses), d without key
const NODES = [aksNode('a', ['10.224.0.4'], 0), aksNode('b', ['10.224.0.5', '10.224.1.5'], 1), aksNode('c', ['10.224.0.6'], 2), aksNode('d', ['10.224.0.7'], null)];
const PODS = [mkPod('ns/a1', 'a', ['10.224.0.40']), mkPod('ns/b1', 'b', ['10.224.0.50']), mkPod('ns/c1', 'c', ['10.224.0.60']), mkPod('ns/d1', 'd', ['10.224.0.70'])];
const KB = testKey(1), KC = testKey(2);

function host(handshakes?: Record<number, number>): HostFacts {
  const base = { underlayMtu: 1500, publicKey: testKey(0) };
  if (handshakes === undefined) return base;
  return { ...base, handshakes: new Map(Object.entries(handshakes).map(([k, v]) => [testKey(Number(k)), v] as [WgKey, number])) };
}

function enabled(s: ClusterSnapshot, h: HostFacts): DesiredEnabled {
  const r = desired(s, A, h);
  if (E.isLeft(r) || r.right.kind !== 'enabled') assert.fail('expected an enabled desired state');
  return r.right;
}

function routes(d: DesiredEnabled): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, r] of d.routes) out[k] = r.route.kind === 'device' ? 'dev' : `throw ${r.cause}`;
  return out;
}
function peers(d: DesiredEnabled): Record<string, { allowed: string; keepalive: number }> {
  const out: Record<string, { allowed: string; keepalive: number }> = {};
  for (const p of d.peers.values()) out[p.node] = { allowed: p.allowedIPs.join(' '), keepalive: p.persistentKeepalive };
  return out;
}

const OPEN = { '10.224.0.4/32': 'throw local', '10.224.0.40/32': 'throw local', '10.224.0.7/32': 'throw no-key', '10.224.0.70/32': 'throw no-key' };

describe('handshake gate (host encryption start-up safety)', () => {
  const cases: readonly {
    name: string;
    settings?: Partial<Settings>;
    handshakes?: Record<number, number>;
    routes: Record<string, string>;
    peers: Record<string, { allowed: string; keepalive: number }>;
  }[] = [
    {
      name: 'no handshakes given (the one-shot CLI): everything routed as before',
      routes: { ...OPEN, '10.224.0.5/32': 'dev', '10.224.1.5/32': 'dev', '10.224.0.50/32': 'dev', '10.224.0.6/32': 'dev', '10.224.0.60/32': 'dev' },
      peers: { b: { allowed: '10.224.0.5/32 10.224.0.50/32 10.224.1.5/32', keepalive: 0 }, c: { allowed: '10.224.0.6/32 10.224.0.60/32', keepalive: 0 } },
    },
    {
      name: 'all peers handshaked: as before',
      handshakes: { 1: 1700000000, 2: 1700000001 },
      routes: { ...OPEN, '10.224.0.5/32': 'dev', '10.224.1.5/32': 'dev', '10.224.0.50/32': 'dev', '10.224.0.6/32': 'dev', '10.224.0.60/32': 'dev' },
      peers: { b: { allowed: '10.224.0.5/32 10.224.0.50/32 10.224.1.5/32', keepalive: 0 }, c: { allowed: '10.224.0.6/32 10.224.0.60/32', keepalive: 0 } },
    },
    {
      name: 'b never handshaked: its node IPs stay in clear (still allowed), its pods in the device, keepalive 25',
      handshakes: { 1: 0, 2: 1700000001 },
      routes: { ...OPEN, '10.224.0.5/32': 'throw no-handshake', '10.224.1.5/32': 'throw no-handshake', '10.224.0.50/32': 'dev', '10.224.0.6/32': 'dev', '10.224.0.60/32': 'dev' },
      peers: { b: { allowed: '10.224.0.5/32 10.224.0.50/32 10.224.1.5/32', keepalive: BOOTSTRAP_KEEPALIVE }, c: { allowed: '10.224.0.6/32 10.224.0.60/32', keepalive: 0 } },
    },
    {
      name: 'a peer missing from the handshakes (not in the kernel yet) counts as never',
      handshakes: { 2: 1700000001 },
      routes: { ...OPEN, '10.224.0.5/32': 'throw no-handshake', '10.224.1.5/32': 'throw no-handshake', '10.224.0.50/32': 'dev', '10.224.0.6/32': 'dev', '10.224.0.60/32': 'dev' },
      peers: { b: { allowed: '10.224.0.5/32 10.224.0.50/32 10.224.1.5/32', keepalive: 25 }, c: { allowed: '10.224.0.6/32 10.224.0.60/32', keepalive: 0 } },
    },
    {
      name: 'the configured keepalive applies after the first handshake',
      settings: { persistentKeepalive: 10 },
      handshakes: { 1: 0, 2: 5 },
      routes: { ...OPEN, '10.224.0.5/32': 'throw no-handshake', '10.224.1.5/32': 'throw no-handshake', '10.224.0.50/32': 'dev', '10.224.0.6/32': 'dev', '10.224.0.60/32': 'dev' },
      peers: { b: { allowed: '10.224.0.5/32 10.224.0.50/32 10.224.1.5/32', keepalive: 25 }, c: { allowed: '10.224.0.6/32 10.224.0.60/32', keepalive: 10 } },
    },
    {
      name: 'host encryption off: no node IPs, no gate',
      settings: { hostEncryption: 'false' },
      handshakes: { 1: 0, 2: 0 },
      routes: { '10.224.0.40/32': 'throw local', '10.224.0.70/32': 'throw no-key', '10.224.0.50/32': 'dev', '10.224.0.60/32': 'dev' },
      peers: { b: { allowed: '10.224.0.50/32', keepalive: 0 }, c: { allowed: '10.224.0.60/32', keepalive: 0 } },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const d = enabled(mkSnapshot(NODES, PODS, c.settings ?? {}), host(c.handshakes));
      assert.deepEqual(routes(d), c.routes);
      assert.deepEqual(peers(d), c.peers);
    });
  }

  it('a pod IP equal to a gated node IP is a conflict whatever the gate', () => {
    const d = enabled(mkSnapshot(NODES, [...PODS, mkPod('ns/x', 'c', ['10.224.0.5'])]), host({ 1: 0, 2: 0 }));
    assert.equal(routes(d)['10.224.0.5/32'], 'throw conflict');
    assert.equal(routes(d)['10.224.1.5/32'], 'throw no-handshake');
    assert.ok(!d.peers.get(KB)!.allowedIPs.includes('10.224.0.5/32' as never));
  });
});

function index(s: ClusterSnapshot, h: HostFacts): DesiredIndex {
  const r = buildDesiredIndex(s, A, h);
  if (E.isLeft(r) || r.right.kind !== 'index') throw new Error('expected an index');
  return r.right;
}

describe('applyHandshakeChange', () => {
  it('the first handshake opens the gate: the node IP routes and the peer change, nothing else', () => {
    const ix = index(mkSnapshot(NODES, PODS), host({ 1: 0, 2: 0 }));
    const ch = applyHandshakeChange(ix, KB, 1700000000);
    assert.deepEqual([...ch.routes].sort(), ['10.224.0.5/32', '10.224.1.5/32']);
    assert.deepEqual(ch.peers, [KB]);
    assert.deepStrictEqual(comparable(E.right(desiredOf(ix))), comparable(desired(mkSnapshot(NODES, PODS), A, host({ 1: 1700000000, 2: 0 }))));
  });
  it('a later handshake, an unknown key or no gate change nothing', () => {
    const ix = index(mkSnapshot(NODES, PODS), host({ 1: 5, 2: 0 }));
    for (const [k, t] of [[KB, 9], [testKey(77), 0], [testKey(3), 0]] as const) {
      const ch = applyHandshakeChange(ix, k, t);
      assert.deepEqual([ch.routes, ch.peers], [[], []]);
    }
    const off = index(mkSnapshot(NODES, PODS), host());
    assert.deepEqual(applyHandshakeChange(off, KC, 0).routes, []);
  });
  it('a peer back at "never" (re-created in the kernel) closes the gate again', () => {
    const ix = index(mkSnapshot(NODES, PODS), host({ 1: 5, 2: 5 }));
    const ch = applyHandshakeChange(ix, KC, 0);
    assert.deepEqual(ch.routes, ['10.224.0.6/32']);
    assert.equal(ix.routes.get('10.224.0.6/32' as never)!.cause, 'no-handshake');
    assert.equal(ix.peers.get(KC)!.persistentKeepalive, 25);
  });
});

describe('handshake and pod events: incremental equals full recomputation', () => {
  const IPS = ['10.224.0.5', '10.224.0.50', '10.224.0.51', '10.224.0.6', '10.224.0.9'];
  const event = fc.oneof(
    fc.record({ kind: fc.constant('hs' as const), node: fc.constantFrom(1, 2, 3), t: fc.constantFrom(0, 0, 100) }),
    fc.record({ kind: fc.constant('pod' as const), i: fc.integer({ min: 0, max: 4 }), node: fc.option(fc.constantFrom('a', 'b', 'c', 'd'), { nil: undefined }), ip: fc.constantFrom(...IPS) }),
  );
  it('for random sequences', () => {
    fc.assert(
      fc.property(fc.array(event, { maxLength: 20 }), fc.constantFrom<'true' | 'false'>('true', 'false'), (events, hostEncryption) => {
        const hs = new Map<WgKey, number>([[KB, 0]]);
        const pods = new Map<PodKey, PodInfo>();
        const snap = (): ClusterSnapshot => mkSnapshot(NODES, [...pods.values()], { hostEncryption });
        const ix = index(snap(), { ...host(), handshakes: new Map(hs) });
        for (const e of events) {
          if (e.kind === 'hs') {
            hs.set(testKey(e.node), e.t);
            applyHandshakeChange(ix, testKey(e.node), e.t);
          } else {
            const key = `ns/p${e.i}` as PodKey;
            const before = pods.get(key) ?? null;
            const after = e.node === undefined ? null : mkPod(key, e.node, [e.ip]);
            applyPodChange(ix, before, after);
            if (after === null) pods.delete(key);
            else pods.set(key, after);
          }
          assert.deepStrictEqual(comparable(E.right(desiredOf(ix))), comparable(desired(snap(), A, { ...host(), handshakes: new Map(hs) })));
        }
      }),
      fcParams(150),
    );
  });
});
