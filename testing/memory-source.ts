// MemorySource: an in-memory ClusterSource, a stand-in for the Kubernetes API and the dir source in the
// daemon's tests. The test drives it (emit / replace / synced); what the engine publishes is recorded, and
// a published key is reflected back as a node-upsert, as the API's watch would show the patched Node.
import type { WgKey } from '../core/key.js';
import type { ClusterSnapshot, NodeInfo, NodeName } from '../core/model.js';
import type { ClusterEvent, ClusterSource, PublishedStatus } from '../adapters/sources/source.js';

export interface MemorySourceOptions {
  /** Reflect publishKey as a node-upsert event (default true). */
  readonly reflect?: boolean;
}

export class MemorySource implements ClusterSource {
  readonly description = 'memory (test stand-in)';
  readonly keyCalls: { readonly node: NodeName; readonly key: WgKey | null }[] = [];
  readonly statusCalls: { readonly node: NodeName; readonly status: PublishedStatus | null }[] = [];
  readonly settingsPatches: Readonly<Record<string, string>>[] = [];
  /** When set, publishKey rejects with this message. */
  failPublish: string | null = null;
  started = false;
  stopped = false;
  private handler: ((e: ClusterEvent) => void) | null = null;
  private readonly nodes = new Map<NodeName, NodeInfo>();

  constructor(private readonly opts: MemorySourceOptions = {}) {}

  async start(onEvent: (e: ClusterEvent) => void): Promise<void> {
    this.handler = onEvent;
    this.started = true;
  }

  async stop(): Promise<void> {
    this.handler = null;
    this.stopped = true;
  }

  /** Delivers one event (as the watch would). */
  emit(e: ClusterEvent): void {
    if (e.kind === 'node-upsert') this.nodes.set(e.node.name, e.node);
    if (e.kind === 'node-delete') this.nodes.delete(e.name);
    if (e.kind === 'replace') {
      this.nodes.clear();
      for (const n of e.snapshot.nodes.values()) this.nodes.set(n.name, n);
    }
    this.handler?.(e);
  }

  replace(snapshot: ClusterSnapshot): void {
    this.emit({ kind: 'replace', snapshot });
  }

  synced(): void {
    this.emit({ kind: 'synced' });
  }

  /** The key last published for `node` (undefined: never published). */
  lastKey(node: NodeName): WgKey | null | undefined {
    for (let i = this.keyCalls.length - 1; i >= 0; i--) if (this.keyCalls[i]!.node === node) return this.keyCalls[i]!.key;
    return undefined;
  }

  node(name: NodeName): NodeInfo | undefined {
    return this.nodes.get(name);
  }

  async publishKey(node: NodeName, key: WgKey | null): Promise<void> {
    if (this.failPublish !== null) throw new Error(this.failPublish);
    this.keyCalls.push({ node, key });
    const n = this.nodes.get(node);
    if ((this.opts.reflect ?? true) && n !== undefined && n.publicKey !== key) {
      // as a watch delivers the patched Node: asynchronously
      setImmediate(() => this.emit({ kind: 'node-upsert', node: { ...n, publicKey: key } }));
    }
  }

  async publishStatus(node: NodeName, status: PublishedStatus | null): Promise<void> {
    this.statusCalls.push({ node, status });
  }

  async patchSettings(data: Readonly<Record<string, string>>): Promise<void> {
    this.settingsPatches.push(data);
  }
}
