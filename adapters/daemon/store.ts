// The daemon's cluster state, fed by ClusterEvents and updated with immer. Shaped for 550k pods: pods sit
// in POD_BUCKETS buckets chosen by a hash of the pod key, grouped POD_GROUP_SIZE buckets to a group, so one
// pod event copies one bucket (about 70 entries at 550k pods), its group map (128) and the group map
// (64), never a 550k-entry map (one level of 1,024 buckets copied about 1,600 entries an event). Nodes (at most a few thousand) are
// one map. The flat ClusterSnapshot the core wants is a view over the buckets (no copy), built on demand
// and cached until the next change. Each event reports what it changed, with the pod's before/after.
import { castDraft, enableMapSet, freeze, produce } from 'immer';
import type { ClusterSnapshot, NodeInfo, NodeName, PodInfo, PodKey, Settings } from '../../core/model.js';
import { DEFAULT_SETTINGS } from '../../core/settings.js';
import { sameNode, samePod, sameSettings, type ClusterEvent } from '../sources/source.js';

enableMapSet();

export const POD_GROUPS = 64;
export const POD_GROUP_SIZE = 128;
export const POD_BUCKETS = POD_GROUPS * POD_GROUP_SIZE;

type Bucket = ReadonlyMap<PodKey, PodInfo>;

export interface StoreState {
  readonly nodes: ReadonlyMap<NodeName, NodeInfo>;
  /** Pods by group, then bucket (podBucket(key) = group * POD_GROUP_SIZE + bucket); empty ones are absent. */
  readonly pods: ReadonlyMap<number, ReadonlyMap<number, Bucket>>;
  readonly podCount: number;
  readonly settings: Settings;
  readonly settingsFound: boolean;
}

/** What one event changed. `pod`: the pod as it was and as it is (null: absent). */
export type StoreChange =
  | { readonly kind: 'none' }
  | { readonly kind: 'pod'; readonly before: PodInfo | null; readonly after: PodInfo | null }
  | { readonly kind: 'node'; readonly before: NodeInfo | null; readonly after: NodeInfo | null }
  | { readonly kind: 'settings' }
  | { readonly kind: 'replace' };

export const EMPTY_STORE: StoreState = freeze(
  { nodes: new Map(), pods: new Map(), podCount: 0, settings: DEFAULT_SETTINGS, settingsFound: false },
  true,
);

/** FNV-1a of the key, reduced to a bucket number. */
export function podBucket(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % POD_BUCKETS;
}

const groupOf = (b: number) => Math.floor(b / POD_GROUP_SIZE);
const slotOf = (b: number) => b % POD_GROUP_SIZE;

export function bucketOf(s: StoreState, b: number): Bucket | undefined {
  return s.pods.get(groupOf(b))?.get(slotOf(b));
}

export function lookupPod(s: StoreState, key: PodKey): PodInfo | undefined {
  return bucketOf(s, podBucket(key))?.get(key);
}

/** The state holding exactly `snap` (O(snapshot), once per list/re-list). */
export function stateOf(snap: ClusterSnapshot): StoreState {
  const pods = new Map<number, Map<number, Map<PodKey, PodInfo>>>();
  for (const p of snap.pods.values()) {
    const b = podBucket(p.key);
    let g = pods.get(groupOf(b));
    if (g === undefined) pods.set(groupOf(b), (g = new Map()));
    let m = g.get(slotOf(b));
    if (m === undefined) g.set(slotOf(b), (m = new Map()));
    m.set(p.key, p);
  }
  return freeze({ nodes: new Map(snap.nodes), pods, podCount: snap.pods.size, settings: snap.settings, settingsFound: snap.settingsFound }, true);
}

/** Applies one event; pure (the old state is untouched and shares everything unchanged). Events that
 *  carry no state (synced, error) and no-op updates return the same state and `none`. */
export function applyEvent(s: StoreState, e: ClusterEvent): { readonly state: StoreState; readonly change: StoreChange } {
  switch (e.kind) {
    case 'pod-upsert': {
      const before = lookupPod(s, e.pod.key) ?? null;
      if (before !== null && samePod(before, e.pod)) return { state: s, change: { kind: 'none' } };
      const b = podBucket(e.pod.key);
      const state = produce(s, (d) => {
        let g = d.pods.get(groupOf(b));
        if (g === undefined) d.pods.set(groupOf(b), (g = castDraft(new Map())));
        const m = g.get(slotOf(b));
        if (m === undefined) g.set(slotOf(b), castDraft(new Map([[e.pod.key, e.pod]])));
        else m.set(e.pod.key, castDraft(e.pod));
        if (before === null) d.podCount++;
      });
      return { state, change: { kind: 'pod', before, after: e.pod } };
    }
    case 'pod-delete': {
      const before = lookupPod(s, e.key) ?? null;
      if (before === null) return { state: s, change: { kind: 'none' } };
      const b = podBucket(e.key);
      const state = produce(s, (d) => {
        const g = d.pods.get(groupOf(b))!;
        const m = g.get(slotOf(b))!;
        m.delete(e.key);
        if (m.size === 0) g.delete(slotOf(b));
        if (g.size === 0) d.pods.delete(groupOf(b));
        d.podCount--;
      });
      return { state, change: { kind: 'pod', before, after: null } };
    }
    case 'node-upsert': {
      const before = s.nodes.get(e.node.name) ?? null;
      if (before !== null && sameNode(before, e.node)) return { state: s, change: { kind: 'none' } };
      const state = produce(s, (d) => {
        d.nodes.set(e.node.name, castDraft(e.node));
      });
      return { state, change: { kind: 'node', before, after: e.node } };
    }
    case 'node-delete': {
      const before = s.nodes.get(e.name) ?? null;
      if (before === null) return { state: s, change: { kind: 'none' } };
      const state = produce(s, (d) => {
        d.nodes.delete(e.name);
      });
      return { state, change: { kind: 'node', before, after: null } };
    }
    case 'settings': {
      if (s.settingsFound === e.found && sameSettings(s.settings, e.settings)) return { state: s, change: { kind: 'none' } };
      const state = produce(s, (d) => {
        d.settings = e.settings;
        d.settingsFound = e.found;
      });
      return { state, change: { kind: 'settings' } };
    }
    case 'replace':
      return { state: stateOf(e.snapshot), change: { kind: 'replace' } };
    case 'synced':
    case 'error':
      return { state: s, change: { kind: 'none' } };
  }
}

/** A read-only Map view of the bucketed pods (no copy). */
class PodView implements ReadonlyMap<PodKey, PodInfo> {
  constructor(private readonly s: StoreState) {}
  get size(): number {
    return this.s.podCount;
  }
  get(key: PodKey): PodInfo | undefined {
    return lookupPod(this.s, key);
  }
  has(key: PodKey): boolean {
    return lookupPod(this.s, key) !== undefined;
  }
  *entries(): MapIterator<[PodKey, PodInfo]> {
    for (const g of this.s.pods.values()) for (const m of g.values()) yield* m.entries();
  }
  *keys(): MapIterator<PodKey> {
    for (const g of this.s.pods.values()) for (const m of g.values()) yield* m.keys();
  }
  *values(): MapIterator<PodInfo> {
    for (const g of this.s.pods.values()) for (const m of g.values()) yield* m.values();
  }
  [Symbol.iterator](): MapIterator<[PodKey, PodInfo]> {
    return this.entries();
  }
  forEach(cb: (value: PodInfo, key: PodKey, map: ReadonlyMap<PodKey, PodInfo>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) cb.call(thisArg, v, k, this);
  }
}

/** The store: the current state, the flat snapshot view (cached), and whether the source has synced. */
export class ClusterStore {
  private current: StoreState = EMPTY_STORE;
  private view: ClusterSnapshot | null = null;
  private syncedFlag = false;

  get state(): StoreState {
    return this.current;
  }
  get synced(): boolean {
    return this.syncedFlag;
  }

  apply(e: ClusterEvent): StoreChange {
    if (e.kind === 'synced') this.syncedFlag = true;
    const r = applyEvent(this.current, e);
    if (r.state !== this.current) {
      this.current = r.state;
      this.view = null;
    }
    return r.change;
  }

  pod(key: PodKey): PodInfo | undefined {
    return lookupPod(this.current, key);
  }

  node(name: NodeName): NodeInfo | undefined {
    return this.current.nodes.get(name);
  }

  /** The cluster as a ClusterSnapshot (a view over the state; cached until the next change). */
  snapshot(): ClusterSnapshot {
    if (this.view === null) {
      const s = this.current;
      this.view = { nodes: s.nodes, pods: new PodView(s), settings: s.settings, settingsFound: s.settingsFound };
    }
    return this.view;
  }
}
