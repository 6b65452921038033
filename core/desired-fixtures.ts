// Builders of snapshots for the tests of desired() and its index (test-only helpers, pure).
import type { Cidr, IP } from './ip.js';
import type { WgKey } from './key.js';
import * as E from 'fp-ts/lib/Either.js';
import type { ClusterSnapshot, DesiredDataplane, HostFacts, NodeInfo, NodeName, PodInfo, PodKey, Settings } from './model.js';
import { DEFAULT_SETTINGS } from './settings.js';

/** A valid public key, distinct per n (0..255). */
export function testKey(n: number): WgKey {
  const b = Buffer.alloc(32, 7);
  b[0] = n;
  return b.toString('base64') as WgKey;
}

export interface NodeOpts {
  readonly internal?: readonly string[];
  readonly external?: readonly string[];
  readonly podCIDRs?: readonly string[];
  readonly key?: WgKey | null;
  readonly labels?: Record<string, string>;
  readonly providerID?: string | null;
}

export function mkNode(name: string, o: NodeOpts = {}): NodeInfo {
  return {
    name: name as NodeName,
    addresses: [
      ...(o.internal ?? []).map((a) => ({ type: 'InternalIP', address: a as IP })),
      ...(o.external ?? []).map((a) => ({ type: 'ExternalIP', address: a as IP })),
    ],
    labels: o.labels ?? {},
    providerID: o.providerID ?? null,
    podCIDRs: (o.podCIDRs ?? []) as Cidr[],
    publicKey: o.key === undefined ? null : o.key,
  };
}

export function mkPod(key: string, node: string | null, ips: readonly string[], phase = 'Running', hostNetwork = false): PodInfo {
  return { key: key as PodKey, nodeName: node as NodeName | null, ips: ips as IP[], phase, hostNetwork };
}

export function mkSnapshot(nodes: readonly NodeInfo[], pods: readonly PodInfo[], settings: Partial<Settings> = {}): ClusterSnapshot {
  return {
    nodes: new Map(nodes.map((n) => [n.name, n])),
    pods: new Map(pods.map((p) => [p.key, p])),
    settings: { ...DEFAULT_SETTINGS, enabled: true, ...settings },
    settingsFound: true,
  };
}

export const HOST: HostFacts = { underlayMtu: 1500, publicKey: testKey(0) };

/** A desired result with its routes as a plain Map, for deep comparison: the route table of an index
 *  (core/route-table.ts) keeps the same routes in different places depending on how it got them (bulk
 *  build or events), so two equal dataplanes compare equal only by their entries. */
export function comparable<L>(r: E.Either<L, DesiredDataplane>): E.Either<L, unknown> {
  if (E.isLeft(r) || r.right.kind !== 'enabled') return r;
  return E.right({ ...r.right, routes: new Map(r.right.routes) });
}
