// Where the daemon learns the cluster from, and where it publishes its key and status: the Kubernetes API
// (`--source kube`) or a directory of manifests (`--source dir:PATH`). Both feed the same events to the
// daemon's snapshot store. Decoding happens inside the source (at the edge), one object at a time: an
// object that does not decode is reported as an error event and left out, never crashing the source.
import type { WgKey } from '../../core/key.js';
import type { ClusterSnapshot, NodeInfo, NodeName, PodInfo, PodKey, Settings } from '../../core/model.js';

export type ClusterEvent =
  | { readonly kind: 'node-upsert'; readonly node: NodeInfo }
  | { readonly kind: 'node-delete'; readonly name: NodeName }
  | { readonly kind: 'pod-upsert'; readonly pod: PodInfo }
  | { readonly kind: 'pod-delete'; readonly key: PodKey }
  /** The settings ConfigMap changed (found = false: it is gone; defaults apply). */
  | { readonly kind: 'settings'; readonly settings: Settings; readonly found: boolean }
  /** The whole cluster as of now (after the first list, a re-list after 410 Gone, a directory reload):
   *  replaces everything the store knows from this source. */
  | { readonly kind: 'replace'; readonly snapshot: ClusterSnapshot }
  /** Every kind of object has been listed once: removals from the kernel are allowed from now on. */
  | { readonly kind: 'synced' }
  /** Something went wrong that the source is handling (a watch broke and is retried, an object did not
   *  decode): reported and counted, never fatal. `where` names the object or the watch. */
  /** `holdsSync`: the source will not sync until someone fixes what it names (a one-shot reader stops
   *  waiting; the daemon waits on). */
  | { readonly kind: 'error'; readonly where: string; readonly message: string; readonly holdsSync?: boolean };

/** What an agent publishes about itself for `wgplane status --all`. */
export interface PublishedStatus {
  readonly time: string; // ISO 8601
  readonly device: string | null;
  readonly mtu: number | null;
  readonly peers: number;
  readonly peersWithHandshake: number;
  readonly allowedIPs: number;
  readonly pendingOps: number;
  readonly lastApply: 'ok' | 'failed' | 'none';
  readonly lastError: string | null;
}

export interface ClusterSource {
  /** For people and logs: "kube (in-cluster)", "dir:/path". */
  readonly description: string;
  /** Starts listing/watching; events arrive through `onEvent` until `stop`. Resolves once started. */
  start(onEvent: (e: ClusterEvent) => void): Promise<void>;
  stop(): Promise<void>;
  /** Publishes (key) or clears (null) this node's public key annotation `wgplane.io/public-key`,
   *  touching nothing else of the Node. */
  publishKey(node: NodeName, key: WgKey | null): Promise<void>;
  /** Publishes this node's status (annotation `wgplane.io/status`), or clears it. */
  publishStatus(node: NodeName, status: PublishedStatus | null): Promise<void>;
  /** Merges `data` into the settings ConfigMap kube-system/wgplane, creating it if needed
   *  (`wgplane enable` / `wgplane disable`). */
  patchSettings(data: Readonly<Record<string, string>>): Promise<void>;
}

export const STATUS_ANNOTATION = 'wgplane.io/status';

// Equality of decoded values: a source emits, and the store applies, only what changed (Node heartbeats
// and pod condition updates decode to equal values).

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function samePod(a: PodInfo, b: PodInfo): boolean {
  return a.key === b.key && a.nodeName === b.nodeName && a.phase === b.phase && a.hostNetwork === b.hostNetwork && sameStrings(a.ips, b.ips);
}

export function sameNode(a: NodeInfo, b: NodeInfo): boolean {
  if (a.name !== b.name || a.providerID !== b.providerID || a.publicKey !== b.publicKey || !sameStrings(a.podCIDRs, b.podCIDRs)) return false;
  if (a.addresses.length !== b.addresses.length) return false;
  for (let i = 0; i < a.addresses.length; i++) {
    if (a.addresses[i]!.type !== b.addresses[i]!.type || a.addresses[i]!.address !== b.addresses[i]!.address) return false;
  }
  const ak = Object.keys(a.labels);
  if (ak.length !== Object.keys(b.labels).length) return false;
  for (const k of ak) if (a.labels[k] !== b.labels[k]) return false;
  return true;
}

export function sameSettings(a: Settings, b: Settings): boolean {
  for (const k of Object.keys(a) as (keyof Settings)[]) if (a[k] !== b[k]) return false;
  return true;
}
