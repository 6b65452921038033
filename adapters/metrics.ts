// Prometheus metrics of the daemon (prom-client, its own Registry: nothing global). Per-peer series are
// produced at scrape time from the engine's last observation of the peers (labels: node name and the
// short public key; never a private key).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { shortKey, type WgKey } from '../core/key.js';
import type { OperationKind } from '../core/model.js';

export interface PeerSample {
  readonly node: string; // the node name, or "unknown" for a peer no node asks for
  readonly publicKey: WgKey;
  readonly latestHandshake: number; // unix seconds, 0 = never
  readonly rxBytes: number;
  readonly txBytes: number;
  readonly allowedIPs: number;
}

export type ErrorKind = 'source' | 'observe' | 'execute' | 'desired' | 'blocked' | 'publish-key' | 'publish-status' | 'status-file';
export type ReconcileKind = 'full' | 'scoped' | 'resync';

export class DaemonMetrics {
  readonly registry = new Registry();
  private peers: () => readonly PeerSample[] = () => [];
  private readonly now: () => number;

  readonly reconcileDuration = new Histogram({
    name: 'wgplane_reconcile_duration_seconds',
    help: 'Duration of one reconcile (observe when needed, plan, execute), by kind',
    labelNames: ['kind'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly operations = new Counter({
    name: 'wgplane_operations_applied_total',
    help: 'Operations applied to the kernel, by kind',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly driftRepairs = new Counter({
    name: 'wgplane_drift_repairs_total',
    help: 'Operations a periodic resync needed although nothing changed in the cluster (kernel state changed behind the agent)',
    registers: [this.registry],
  });
  readonly errors = new Counter({
    name: 'wgplane_errors_total',
    help: 'Errors by kind (source, observe, execute, desired, blocked, publish-key, publish-status, status-file)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly lastSuccess = new Gauge({
    name: 'wgplane_last_success_timestamp_seconds',
    help: 'Unix time of the last reconcile that left the kernel equal to the desired state',
    registers: [this.registry],
  });
  readonly events = new Counter({
    name: 'wgplane_events_received_total',
    help: 'Cluster events received from the source, by kind',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly executions = new Counter({
    name: 'wgplane_executions_total',
    help: 'Plans executed against the kernel',
    registers: [this.registry],
  });
  readonly ready = new Gauge({
    name: 'wgplane_ready',
    help: '1 once the source has synced and the first apply succeeded',
    registers: [this.registry],
  });

  constructor(now: () => number = Date.now) {
    this.now = now;
    const t = () => this.now() / 1000;
    this.peerGauge('wgplane_peer_handshake_age_seconds', 'Seconds since the latest handshake with the peer (no series while it never handshaked)',
      (p) => (p.latestHandshake > 0 ? Math.max(0, t() - p.latestHandshake) : null));
    this.peerGauge('wgplane_peer_received_bytes', 'Bytes received from the peer (the device counter)', (p) => p.rxBytes);
    this.peerGauge('wgplane_peer_sent_bytes', 'Bytes sent to the peer (the device counter)', (p) => p.txBytes);
    this.peerGauge('wgplane_peer_allowed_ips', 'Allowed IPs programmed on the peer', (p) => p.allowedIPs);
    const self = this;
    new Gauge({
      name: 'wgplane_peers',
      help: 'Peers programmed on the device',
      registers: [this.registry],
      collect() {
        this.set(self.scrapePeers().length);
      },
    });
  }

  /** A per-peer gauge (labels node and short key); `value` null: no series for that peer. */
  private peerGauge(name: string, help: string, value: (p: PeerSample) => number | null): void {
    const self = this;
    new Gauge({
      name,
      help,
      labelNames: ['node', 'key'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const p of self.scrapePeers()) {
          const v = value(p);
          if (v !== null) this.set({ node: p.node, key: shortKey(p.publicKey) }, v);
        }
      },
    });
  }

  /** The peer samples of the scrape in progress: taken once per scrape (text()), not once per gauge. */
  private scrapePeers(): readonly PeerSample[] {
    return this.scraped ?? this.peers();
  }
  private scraped: readonly PeerSample[] | null = null;

  /** Where the per-peer series come from (called at scrape time). */
  setPeerSource(f: () => readonly PeerSample[]): void {
    this.peers = f;
  }

  countOps(byKind: ReadonlyMap<OperationKind, number>): void {
    for (const [kind, n] of byKind) this.operations.inc({ kind }, n);
  }

  async text(): Promise<string> {
    this.scraped = this.peers();
    try {
      return await this.registry.metrics();
    } finally {
      this.scraped = null;
    }
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
