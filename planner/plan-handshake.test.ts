// The handshake gate through the planner: the daemon's incremental path (applyHandshakeChange, then
// planScoped over the changed keys) plans exactly what a full plan does, and the plan opens the gate in
// a safe order (the peer's keepalive is set before its node IPs enter the device).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as E from 'fp-ts/lib/Either.js';
import { applyHandshakeChange, buildDesiredIndex, desiredOf, type DesiredIndex } from '../core/desired-index.js';
import { mkNode, mkPod, mkSnapshot, testKey } from '../core/desired-fixtures.js';
import { EMPTY_OBSERVED, type HostFacts, type NodeName } from '../core/model.js';
import { applyPlan, type ModelState } from './kernel-model.js';
import { plan, planScoped } from './plan.js';

const aksNode = (name: string, ip: string, k: number) =>
  mkNode(name, { internal: [ip], providerID: `azure:///subscriptions/x/${name}`, labels: { 'kubernetes.azure.com/role': 'agent' }, key: testKey(k) });
const SNAP = mkSnapshot(
  [aksNode('a', '10.224.0.4', 0), aksNode('b', '10.224.0.5', 1), aksNode('c', '10.224.0.6', 2)],
  [mkPod('ns/b1', 'b', ['10.224.0.50']), mkPod('ns/c1', 'c', ['10.224.0.60'])],
);
const HOST: HostFacts = { underlayMtu: 1500, publicKey: testKey(0), handshakes: new Map() };

function index(): DesiredIndex {
  const r = buildDesiredIndex(SNAP, 'a' as NodeName, HOST);
  if (E.isLeft(r) || r.right.kind !== 'index') throw new Error('expected an index');
  return r.right;
}

function applied(s: ModelState, ops: Parameters<typeof applyPlan>[1]): ModelState {
  const r = applyPlan(s, ops);
  if (E.isLeft(r)) assert.fail(`plan did not apply: ${r.left.message}`);
  return r.right;
}

describe('handshake gate through the planner', () => {
  it('a node that comes up with no handshakes sends no host traffic into the device', () => {
    const ix = index();
    const p = plan(desiredOf(ix), EMPTY_OBSERVED);
    const intoDevice = p.ops.flatMap((o) => (o.kind === 'route-add' && o.route.kind === 'device' ? [o.route.dest] : []));
    assert.deepEqual(intoDevice.sort(), ['10.224.0.50/32', '10.224.0.60/32']);
    const throws = p.ops.flatMap((o) => (o.kind === 'route-add' && o.route.kind === 'throw' && o.cause === 'no-handshake' ? [o.route.dest] : []));
    assert.deepEqual(throws.sort(), ['10.224.0.5/32', '10.224.0.6/32']);
    for (const o of p.ops) if (o.kind === 'peer-add') assert.equal(o.peer.persistentKeepalive, 25);
  });

  it('the first handshake: planScoped over the change equals the full plan, keepalive first, then the routes', () => {
    const ix = index();
    let s = applied(EMPTY_OBSERVED, plan(desiredOf(ix), EMPTY_OBSERVED).ops);
    const ch = applyHandshakeChange(ix, testKey(1), 1700000000);
    const d = desiredOf(ix);
    const full = plan(d, s);
    const scoped = planScoped(d, s, { routes: ch.routes, peers: ch.peers });
    assert.deepStrictEqual(scoped, full);
    assert.deepEqual(full.ops.map((o) => o.kind), ['peer-update', 'route-replace']);
    const [pu, rr] = full.ops;
    assert.ok(pu!.kind === 'peer-update' && pu.persistentKeepalive === 0 && pu.addAllowedIPs.length === 0 && pu.removeAllowedIPs.length === 0);
    assert.ok(rr!.kind === 'route-replace' && rr.route.dest === '10.224.0.5/32' && rr.route.kind === 'device' && rr.from.kind === 'throw');
    s = applied(s, full.ops);
    assert.equal(plan(desiredOf(ix), s).ops.length, 0);
  });
});
