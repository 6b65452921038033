import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { detectAks, isAksNode } from './aks.js';
import { mkNode } from './desired-fixtures.js';

describe('AKS detection', () => {
  const cases: { name: string; node: ReturnType<typeof mkNode>; aks: boolean }[] = [
    { name: 'azure providerID', node: mkNode('n', { providerID: 'azure:///subscriptions/s/vm/n' }), aks: true },
    { name: 'kubernetes.azure.com label', node: mkNode('n', { labels: { 'kubernetes.azure.com/agentpool': 'np1' } }), aks: true },
    { name: 'aws providerID', node: mkNode('n', { providerID: 'aws:///eu-west-1a/i-1' }), aks: false },
    { name: 'azure-looking label elsewhere', node: mkNode('n', { labels: { 'topology.kubernetes.io/region': 'azure', 'example.com/kubernetes.azure.com': 'x' } }), aks: false },
    { name: 'providerID with azure inside', node: mkNode('n', { providerID: 'gce://azure/' }), aks: false },
    { name: 'nothing', node: mkNode('n'), aks: false },
  ];
  for (const c of cases) it(c.name, () => assert.equal(isAksNode(c.node), c.aks));
  it('the cluster is AKS when any node is', () => {
    assert.equal(detectAks([mkNode('a'), mkNode('b', { providerID: 'azure:///x' })]), true);
    assert.equal(detectAks([mkNode('a'), mkNode('b')]), false);
    assert.equal(detectAks([]), false);
  });
});
