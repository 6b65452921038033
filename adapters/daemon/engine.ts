// The daemon engine: the cluster store fed by a ClusterSource, an incremental DesiredIndex, a model of the
// kernel (the last observation, kept current by applying the executed operations to it), and the reconcile
// loop that keeps the kernel equal to the desired state.
//
// - Nothing is planned, and so nothing is removed from the kernel, before the source has sent `synced`:
//   a restarting agent leaves the dataplane as it found it until it knows the whole cluster.
// - Pod events update the index in place (applyPodChange) and collect the changed route and peer keys; a
//   reconcile with only pod changes plans with planScoped over those keys: O(change). Node, settings and
//   replace events (and a changed underlay MTU) rebuild the index and plan fully.
// - Events are coalesced by the loop (debounce, bounded delay); failures re-observe and retry with
//   exponential backoff (cap 30 s). Source errors are counted and logged; the dataplane stays as it is.
// - Every resyncInterval seconds: observe, plan fully, execute; the operations needed although the
//   cluster did not change are drift repairs (counted).
// - The public key is published after the device exists and carries it, again whenever the Node shows
//   another or no key; when WireGuard is off here, after the tear-down, the key is cleared.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import type { Cidr } from '../../core/ip.js';
import type { WgKey } from '../../core/key.js';
import { workloadInterfacePrefix } from '../../core/aks.js';
import {
  applyHandshakeChange,
  applyPodChange,
  buildDesiredIndex,
  desiredOf,
  prepareForEvents,
  type DesiredIndex,
} from '../../core/desired-index.js';
import type {
  DesiredDataplane,
  DesiredDisabled,
  HostFacts,
  NodeInfo,
  NodeName,
  ObservedDataplane,
  Operation,
  OperationKind,
  Plan,
  Settings,
} from '../../core/model.js';
import { plan as fullPlan, planScoped } from '../../planner/plan.js';
import { applyOperationsInPlace, toMutable, type MutableObserved } from '../../planner/kernel-model.js';

const isMutable = (o: ObservedDataplane): o is MutableObserved => 'owners' in o;

/** With wireguard-go, bootstrap keepalives are used only up to this many peers (see hostFacts). */
export const BOOTSTRAP_KEEPALIVE_MAX_PEERS = 32;
import { problemText } from '../../planner/render.js';
import type { Backend } from '../backend.js';
import { execute } from '../executor.js';
import { loadOrCreateKey, type NodeKey } from '../keystore.js';
import { withLock } from '../lock.js';
import type { Logger } from '../log.js';
import { DaemonMetrics, type PeerSample, type ReconcileKind } from '../metrics.js';
import { observe } from '../observer.js';
import { reconcile } from '../reconcile.js';
import { defaultRunner, type Runner } from '../run.js';
import type { ClusterEvent, ClusterSource, PublishedStatus } from '../sources/source.js';
import { CoalescingLoop } from './loop.js';
import { ClusterStore } from './store.js';

import { STATUS_FILE } from './status-file.js';

export interface EngineOptions {
  readonly node: NodeName;
  readonly source: ClusterSource;
  /** Key store and lock directory; status.json is written here. */
  readonly stateDir: string;
  readonly backend: Backend;
  readonly log: Logger;
  readonly metrics?: DaemonMetrics;
  /** Where kernel commands run (tests: inside a namespace). */
  readonly run?: Runner;
  readonly sysctlRoot?: string;
  /** The node key; default loadOrCreateKey(stateDir) at start. */
  readonly key?: NodeKey;
  readonly debounceMs?: number;
  readonly maxDelayMs?: number;
  readonly backoffBaseMs?: number;
  readonly backoffCapMs?: number;
  /** Overrides settings.resyncInterval (seconds) for tests. */
  readonly resyncIntervalMs?: number;
  /** While a peer never handshaked, its state is re-read this often. */
  readonly bootstrapPollMs?: number;
  /** Status is published at most this often. */
  readonly statusMinIntervalMs?: number;
  /** A key publication that did not show up on the Node is tried again after this long. */
  readonly publishRetryMs?: number;
  /** A loop run longer than this makes /healthz fail. */
  readonly stuckMs?: number;
  /** Hold the state-dir lock around each reconcile (default true). */
  readonly lock?: boolean;
  readonly now?: () => number;
}

export type ApplyResult = 'ok' | 'failed' | 'blocked' | 'none';

export interface LastReconcile {
  readonly kind: ReconcileKind;
  readonly time: string;
  readonly durationMs: number;
  readonly result: 'ok' | 'failed' | 'blocked';
  readonly planned: number;
  readonly applied: number;
  readonly byKind: Readonly<Partial<Record<OperationKind, number>>>;
  readonly error: string | null;
}

/** Counters for tests and status. */
export interface EngineStats {
  cycles: number;
  executions: number;
  observations: number;
  peerPolls: number;
  indexBuilds: number;
  scopedPlans: number;
  fullPlans: number;
  driftRepairs: number;
  opsApplied: number;
  keyPublications: number;
  statusPublications: number;
  sourceErrors: number;
}

/** The content of `<state-dir>/status.json` (no secrets: public keys at most). */
export interface StatusFile {
  readonly version: 1;
  readonly node: string;
  readonly time: string;
  /** When this agent process started (tells a restarted agent's status from its predecessor's). */
  readonly startedAt: string;
  readonly source: string;
  readonly synced: boolean;
  readonly ready: boolean;
  readonly wireguard: 'enabled' | 'disabled' | 'unknown';
  readonly disabledWhy: DesiredDisabled['why'] | null;
  readonly lastApply: ApplyResult;
  readonly lastError: string | null;
  readonly lastSuccess: string | null;
  readonly lastReconcile: LastReconcile | null;
  readonly pendingOps: number;
  readonly publicKey: WgKey;
  readonly keyPublished: boolean;
  readonly device: { readonly name: string; readonly mtu: number; readonly up: boolean; readonly listenPort: number | null; readonly publicKey: WgKey | null } | null;
  readonly routes: number;
  readonly peers: readonly {
    readonly node: string;
    readonly publicKey: WgKey;
    readonly endpoint: string | null;
    readonly allowedIPs: number;
    readonly latestHandshake: number;
    readonly rxBytes: number;
    readonly txBytes: number;
  }[];
  readonly problems: readonly string[];
  readonly counters: Readonly<EngineStats>;
}

type Built = DesiredIndex | DesiredDisabled;

interface Step {
  readonly kind: ReconcileKind;
  readonly started: number;
}


function countKinds(ops: readonly Operation[]): Map<OperationKind, number> {
  const m = new Map<OperationKind, number>();
  for (const op of ops) m.set(op.kind, (m.get(op.kind) ?? 0) + 1);
  return m;
}

const errMsg = (e: unknown) => (e instanceof Error ? e.message : String(e));

export class Engine {
  readonly store = new ClusterStore();
  readonly metrics: DaemonMetrics;
  readonly stats: EngineStats = {
    cycles: 0, executions: 0, observations: 0, peerPolls: 0, indexBuilds: 0, scopedPlans: 0, fullPlans: 0,
    driftRepairs: 0, opsApplied: 0, keyPublications: 0, statusPublications: 0, sourceErrors: 0,
  };
  /** The last plan made (for tests and status). */
  lastPlan: { readonly kind: ReconcileKind; readonly plan: Plan } | null = null;

  private key: NodeKey | null;
  private readonly log: Logger;
  private readonly run: Runner;
  private readonly now: () => number;
  private readonly loop: CoalescingLoop;

  private index: Built | null = null;
  private indexStale = true;
  private indexError: string | null = null;
  private builtMtu: number | null | undefined = undefined;
  private builtHandshaked = new Set<WgKey>();
  private observed: ObservedDataplane | null = null;
  private observedFor = '';
  private needFull = true;
  private readonly scopeRoutes = new Set<Cidr>();
  private readonly scopePeers = new Set<WgKey>();
  private resyncDue = false;
  private pollDue = false;
  private pollBackoffMs = 2000;
  private bootstrapCount = 0;
  private bootstrapChangedAt = 0;

  private lastApply: ApplyResult = 'none';
  private lastError: string | null = null;
  /** The source's last error before it synced (a held sync says why here, in /readyz and /status). */
  private lastSourceErrorBeforeSync: string | null = null;
  private lastSuccessAt: number | null = null;
  private lastReconcile: LastReconcile | null = null;
  private pendingOps = 0;
  private firstApplyOk = false;
  private started = false;
  private startedAt = 0;
  private stopped = false;

  private resyncTimer: NodeJS.Timeout | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private publishTimer: NodeJS.Timeout | null = null;
  private statusTimer: NodeJS.Timeout | null = null;
  private statusFileTimer: NodeJS.Timeout | null = null;
  private publishing: Promise<void> | null = null;
  private lastKeyAttempt: { readonly value: WgKey | null; readonly own: NodeInfo | undefined; readonly at: number } | null = null;
  private statusPublishing = false;
  private lastStatusKey = '';
  private lastStatusAt = -Infinity;
  private lastStatusFileAt = -Infinity;
  private background = new Set<Promise<unknown>>();

  constructor(private readonly opts: EngineOptions) {
    this.key = opts.key ?? null;
    this.log = opts.log;
    this.run = opts.run ?? defaultRunner;
    this.now = opts.now ?? Date.now;
    this.metrics = opts.metrics ?? new DaemonMetrics(this.now);
    this.metrics.setPeerSource(() => this.peerSamples());
    this.loop = new CoalescingLoop(() => this.cycle(), {
      debounceMs: opts.debounceMs ?? 5,
      maxDelayMs: opts.maxDelayMs ?? 200,
      backoffBaseMs: opts.backoffBaseMs ?? 500,
      backoffCapMs: opts.backoffCapMs ?? 30_000,
      now: this.now,
      onError: (err) => this.log.error({ err: errMsg(err) }, 'reconcile threw'),
    });
  }

  get publicKey(): WgKey {
    if (this.key === null) throw new Error('engine not started');
    return this.key.publicKey;
  }

  /** Loads the key and starts the source; reconciling begins once the source has synced. */
  async start(): Promise<void> {
    if (this.started) throw new Error('engine started twice');
    this.started = true;
    this.startedAt = this.now();
    if (this.key === null) this.key = await loadOrCreateKey(this.opts.stateDir);
    this.log.info({ node: this.opts.node, source: this.opts.source.description, publicKey: this.key.publicKey, backend: this.opts.backend }, 'daemon starting; nothing is changed before the source has synced');
    await this.opts.source.start((e) => this.onEvent(e));
  }

  /** Stops the loop and the source. The dataplane stays as it is, unless `cleanup`: then the published
   *  key is cleared first (peers stop encrypting to this node), and everything wgplane owns is removed. */
  async stop(opts: { readonly cleanup?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of [this.resyncTimer, this.pollTimer, this.publishTimer, this.statusTimer, this.statusFileTimer]) if (t !== null) clearTimeout(t);
    await this.loop.stop();
    await Promise.allSettled([...this.background]);
    let cleanupError: unknown = null;
    if (opts.cleanup) {
      try {
        await this.opts.source.publishKey(this.opts.node, null);
        this.stats.keyPublications++;
      } catch (err) {
        this.metrics.errors.inc({ kind: 'publish-key' });
        this.log.warn({ err: errMsg(err) }, 'clearing the published key failed');
      }
      try {
        await this.teardown();
      } catch (err) {
        cleanupError = err;
      }
    }
    await this.opts.source.stop();
    await this.writeStatusFile().catch(() => undefined);
    this.log.info({ cleanup: opts.cleanup ?? false }, opts.cleanup ? 'daemon stopped; dataplane removed' : 'daemon stopped; dataplane left in place');
    if (cleanupError !== null) throw cleanupError;
  }

  /** Resolves once nothing is pending or running (tests). */
  async idle(): Promise<void> {
    for (;;) {
      await this.loop.idle();
      await Promise.allSettled([...this.background]);
      if (!this.loop.busy && this.background.size === 0) {
        await this.loop.idle();
        if (!this.loop.busy && this.background.size === 0) return;
      }
    }
  }

  /** Asks for a full resync now (as the timer does). */
  requestResync(): void {
    this.resyncDue = true;
    this.loop.kick(true);
  }

  get synced(): boolean {
    return this.store.synced;
  }

  health(): { ok: boolean; detail: string } {
    const t = this.loop.runStartedAt;
    const stuck = this.opts.stuckMs ?? 300_000;
    if (t !== null && this.now() - t > stuck) return { ok: false, detail: `a reconcile has been running for ${Math.round((this.now() - t) / 1000)} s` };
    return { ok: true, detail: this.stopped ? 'stopping' : 'running' };
  }

  ready(): { ok: boolean; detail: string } {
    if (!this.store.synced) {
      const why = this.lastSourceErrorBeforeSync;
      return { ok: false, detail: why === null ? 'waiting for the source to sync' : `waiting for the source to sync; last source error: ${why}` };
    }
    if (!this.firstApplyOk) return { ok: false, detail: this.lastError ? `first apply not done: ${this.lastError}` : 'first apply not done yet' };
    return { ok: true, detail: `last apply ${this.lastApply}` };
  }

  // -------------------------------------------------------------------------------------------------
  // Events

  onEvent(e: ClusterEvent): void {
    this.metrics.events.inc({ kind: e.kind });
    if (e.kind === 'error') {
      this.stats.sourceErrors++;
      this.metrics.errors.inc({ kind: 'source' });
      this.log.warn({ where: e.where, err: e.message }, 'source error; the dataplane is left as it is');
      if (!this.store.synced) this.lastSourceErrorBeforeSync = `${e.where}: ${e.message}`;
      return;
    }
    const wasSynced = this.store.synced;
    const change = this.store.apply(e);
    if (e.kind === 'synced') {
      if (!wasSynced) {
        this.log.info({ nodes: this.store.state.nodes.size, pods: this.store.state.podCount }, 'source synced; reconciling');
        this.armResync();
        this.loop.kick(true);
      }
      return;
    }
    switch (change.kind) {
      case 'none':
        return;
      case 'pod': {
        const ix = this.index;
        if (this.indexStale || ix === null) break; // the rebuild reads the store
        if (ix.kind === 'disabled') return; // pods do not matter here
        const c = applyPodChange(ix, change.before, change.after);
        for (const r of c.routes) this.scopeRoutes.add(r);
        for (const p of c.peers) this.scopePeers.add(p);
        if (c.routes.length === 0 && c.peers.length === 0 && !c.problems) return;
        break;
      }
      case 'node':
      case 'settings':
      case 'replace':
        this.indexStale = true;
        break;
    }
    if (this.store.synced) this.loop.kick();
  }

  // -------------------------------------------------------------------------------------------------
  // The reconcile

  private async cycle(): Promise<'ok' | 'retry'> {
    if (!this.store.synced || this.stopped) return 'ok';
    this.stats.cycles++;
    const useLock = this.opts.lock ?? true;
    const body = () => this.cycleBody();
    const outcome = useLock ? await withLock(this.opts.stateDir, body) : await body();
    this.afterCycle();
    return outcome;
  }

  private async cycleBody(): Promise<'ok' | 'retry'> {
    const started = this.now();
    let kind: ReconcileKind = 'full';
    try {
      if (this.observed === null || this.observedFor !== this.observeKey()) await this.observeNow();
      if (this.pollDue) await this.pollPeers();
      if (!this.ensureIndex()) return 'ok';
      const pending = this.needFull || this.scopeRoutes.size > 0 || this.scopePeers.size > 0;
      if (pending) {
        kind = this.needFull ? 'full' : 'scoped';
        const r = await this.step({ kind, started });
        if (r !== 'ok') return r;
      }
      if (this.resyncDue) {
        this.resyncDue = false;
        kind = 'resync';
        await this.observeNow();
        if (!this.ensureIndex()) return 'ok';
        const r = await this.step({ kind, started: this.now() });
        if (r !== 'ok') return r;
      }
      return 'ok';
    } catch (err) {
      // A failed observation (or anything unexpected): nothing was changed by this step; look again later.
      this.observed = null;
      this.needFull = true;
      this.lastApply = 'failed';
      this.lastError = errMsg(err);
      this.metrics.errors.inc({ kind: 'observe' });
      this.log.error({ err: this.lastError, kind }, 'reconcile failed before executing; retrying with backoff');
      return 'retry';
    }
  }

  /** The workload prefix, worked out again only when the nodes or the settings changed (not per pod event). */
  private workloadPrefix(): string | null {
    const st = this.store.state;
    const m = this.prefixMemo;
    if (m !== null && m.nodes === st.nodes && m.settings === st.settings) return m.value;
    const value = workloadInterfacePrefix(st.settings.workloadInterfacePrefix, st.nodes.values());
    this.prefixMemo = { nodes: st.nodes, settings: st.settings, value };
    return value;
  }
  private prefixMemo: { readonly nodes: unknown; readonly settings: unknown; readonly value: string | null } | null = null;

  private observeKey(): string {
    const s = this.store.state.settings;
    return `${s.interfaceName}\0${s.routingTable}\0${this.workloadPrefix()}`;
  }

  private async observeNow(): Promise<void> {
    const s = this.store.state.settings;
    const key = this.observeKey();
    const o = await observe({
      interfaceName: s.interfaceName,
      table: s.routingTable,
      workloadInterfacePrefix: this.workloadPrefix(),
      run: this.run,
      ...(this.opts.sysctlRoot !== undefined ? { sysctlRoot: this.opts.sysctlRoot } : {}),
    });
    this.stats.observations++;
    this.observed = o;
    this.observedFor = key;
    this.needFull = true;
    this.noteHandshakes();
  }

  /** Re-reads the peers' latest handshakes only (`wg show IF latest-handshakes`: a key and a number per
   *  peer, cheap even at 5,000 peers), while a peer is in bootstrap. Peers changed behind our back are the
   *  resync's business. */
  private async pollPeers(): Promise<void> {
    this.pollDue = false;
    const o = this.observed;
    if (o === null || o.device === null) return;
    const r = await this.run('wg', ['show', o.device.name, 'latest-handshakes']);
    this.stats.peerPolls++;
    if (r.exitCode !== 0) throw new Error(`wg show ${o.device.name} latest-handshakes exited ${r.exitCode}: ${r.stderr.trim()}`);
    const m = isMutable(o) ? o : toMutable(o);
    let changed = false;
    for (const line of r.stdout.split('\n')) {
      const [key, ts] = line.split('\t');
      if (!key || ts === undefined) continue;
      const peer = m.peers.get(key as WgKey);
      const latest = Number(ts);
      if (peer !== undefined && Number.isFinite(latest) && latest !== peer.latestHandshake) {
        m.peers.set(peer.publicKey, { ...peer, latestHandshake: latest });
        changed = true;
      }
    }
    this.observed = m;
    if (changed) this.noteHandshakes();
  }

  /** Host facts: the underlay MTU observed, the stored key, and the peers' latest handshakes (the
   *  host-encryption handshake gate of core/desired-index.ts keeps a never-handshaked peer's node IPs out
   *  of the device; HostFacts.handshakes is optional, so the object is built loosely). */
  private hostFacts(): HostFacts {
    const handshakes = new Map<WgKey, number>();
    if (this.observed !== null) for (const p of this.observed.peers.values()) handshakes.set(p.publicKey, p.latestHandshake);
    // wireguard-go takes 0.1-0.4 s per peer to apply a keepalive (measured here: 999 peers, minutes), so
    // with it and a large mesh, bootstrap peers get none and handshake on their first traffic instead.
    const slowKeepalive = this.opts.backend === 'userspace' && this.store.state.nodes.size > BOOTSTRAP_KEEPALIVE_MAX_PEERS + 1;
    return { underlayMtu: this.observed?.underlayMtu ?? null, publicKey: this.key!.publicKey, handshakes, ...(slowKeepalive ? { bootstrapKeepalive: 0 } : {}) };
  }

  /** A peer that handshaked for the first time opens the gate (core/desired-index.ts): its node IPs now go
   *  through the device. Applied to the index incrementally; the changed keys join the scoped plan. */
  private noteHandshakes(): void {
    const ix = this.index;
    if (ix === null || ix.kind !== 'index' || this.observed === null) return;
    for (const p of this.observed.peers.values()) {
      if (p.latestHandshake > 0 && !this.builtHandshaked.has(p.publicKey)) {
        this.builtHandshaked.add(p.publicKey);
        const c = applyHandshakeChange(ix, p.publicKey, p.latestHandshake);
        if (c.routes.length === 0 && c.peers.length === 0) continue;
        this.log.info({ peer: p.publicKey }, 'first handshake with a peer: its node IPs now go through the device');
        for (const r of c.routes) this.scopeRoutes.add(r);
        for (const k of c.peers) this.scopePeers.add(k);
        this.pollBackoffMs = this.opts.bootstrapPollMs ?? 2000;
      }
    }
  }

  /** (Re)builds the index when the cluster or the host facts changed. False: no desired state (error). */
  private ensureIndex(): boolean {
    // Checked before the host facts are built: they copy every peer's handshake (a pod event's cycle must
    // stay O(change)).
    if (!this.indexStale && this.index !== null && this.builtMtu === (this.observed?.underlayMtu ?? null)) return true;
    const host = this.hostFacts();
    this.scopeRoutes.clear();
    this.scopePeers.clear();
    this.needFull = true;
    this.indexStale = false;
    this.builtMtu = host.underlayMtu;
    this.builtHandshaked = new Set([...(this.observed?.peers.values() ?? [])].filter((p) => p.latestHandshake > 0).map((p) => p.publicKey));
    const t0 = this.now();
    const r = buildDesiredIndex(this.store.snapshot(), this.opts.node, host);
    this.stats.indexBuilds++;
    if (E.isLeft(r)) {
      this.index = null;
      if (this.indexError !== r.left.message) this.log.error({ err: r.left.message }, 'no desired state; the dataplane is left as it is');
      this.indexError = r.left.message;
      this.lastError = r.left.message;
      this.metrics.errors.inc({ kind: 'desired' });
      this.indexStale = true; // try again on the next change
      return false;
    }
    this.indexError = null;
    this.index = r.right;
    if (r.right.kind === 'index') prepareForEvents(r.right); // pod events stay O(change) from the first one
    this.log.debug({ ms: this.now() - t0 }, 'desired index built');
    return true;
  }

  private desired(): DesiredDataplane {
    const ix = this.index!;
    return ix.kind === 'disabled' ? ix : desiredOf(ix);
  }

  private async step(st: Step): Promise<'ok' | 'retry'> {
    const observed = this.observed!;
    const d = this.desired();
    const scoped = st.kind === 'scoped';
    const p = scoped ? planScoped(d, observed, { routes: this.scopeRoutes, peers: this.scopePeers }) : fullPlan(d, observed);
    if (scoped) this.stats.scopedPlans++;
    else this.stats.fullPlans++;
    this.scopeRoutes.clear();
    this.scopePeers.clear();
    this.needFull = false;
    this.lastPlan = { kind: st.kind, plan: p };
    const byKind = countKinds(p.ops);
    const finish = (result: LastReconcile['result'], applied: number, error: string | null) => {
      const durationMs = this.now() - st.started;
      this.metrics.reconcileDuration.observe({ kind: st.kind }, durationMs / 1000);
      this.lastReconcile = { kind: st.kind, time: new Date(this.now()).toISOString(), durationMs, result, planned: p.ops.length, applied, byKind: Object.fromEntries(byKind), error };
      return durationMs;
    };
    if (p.blocked.length > 0) {
      const msg = `blocked: ${p.blocked.join('; ')}`;
      finish('blocked', 0, msg);
      if (this.lastError !== msg) this.log.error({ blocked: p.blocked }, 'nothing may be done on this node');
      this.lastApply = 'blocked';
      this.lastError = msg;
      this.pendingOps = 0;
      this.metrics.errors.inc({ kind: 'blocked' });
      this.observed = null;
      this.needFull = true;
      return 'retry';
    }
    if (p.ops.length === 0) {
      finish('ok', 0, null);
      this.succeeded();
      return 'ok';
    }
    const result = await execute(p.ops, { backend: this.opts.backend, privateKey: () => this.key!.privateKey(), run: this.run, observed });
    this.stats.executions++;
    this.metrics.executions.inc();
    const done = p.ops.slice(0, result.applied);
    this.stats.opsApplied += done.length;
    this.metrics.countOps(countKinds(done));
    if (st.kind === 'resync') {
      // A resync runs after pending cluster changes were applied: whatever it needs is drift.
      this.stats.driftRepairs += done.length;
      this.metrics.driftRepairs.inc(done.length);
    }
    if (result.kind === 'failed') {
      const msg = `operation ${result.applied + 1} of ${p.ops.length} (${result.failed.kind}) failed: ${result.message}`;
      const durationMs = finish('failed', done.length, msg);
      this.lastApply = 'failed';
      this.lastError = msg;
      this.pendingOps = p.ops.length - done.length;
      this.metrics.errors.inc({ kind: 'execute' });
      this.log.error({ kind: st.kind, planned: p.ops.length, applied: done.length, durationMs, err: msg }, 'apply failed; re-observing and retrying with backoff');
      this.observed = null;
      this.needFull = true;
      return 'retry';
    }
    const durationMs = finish('ok', done.length, null);
    this.advanceModel(observed, done);
    this.log.info({ kind: st.kind, ops: done.length, byKind: Object.fromEntries(byKind), durationMs, ...(st.kind === 'resync' ? { drift: done.length } : {}) }, 'applied plan');
    this.succeeded();
    return 'ok';
  }

  /** The model after the executed operations: applied in place to the observation (O(operations)); a
   *  disagreement between the model and what ran asks for a fresh observation. */
  private advanceModel(observed: ObservedDataplane, ops: readonly Operation[]): void {
    const m = isMutable(observed) ? observed : toMutable(observed);
    const r = applyOperationsInPlace(m, ops);
    if (r.error !== null) {
      this.log.warn({ err: r.error }, 'the kernel model disagrees with the executed plan; re-observing');
      this.observed = null;
      return;
    }
    this.observed = m;
  }

  private succeeded(): void {
    this.lastApply = 'ok';
    this.lastError = null;
    this.pendingOps = 0;
    this.lastSuccessAt = this.now();
    this.metrics.lastSuccess.set(this.lastSuccessAt / 1000);
    if (!this.firstApplyOk) {
      this.firstApplyOk = true;
      this.metrics.ready.set(1);
      this.log.info('first apply done; ready');
    }
  }

  // -------------------------------------------------------------------------------------------------
  // After each cycle: key publication, status, bootstrap polling

  private afterCycle(): void {
    if (this.stopped) return;
    this.maybePublishKey();
    this.maybePublishStatus();
    this.scheduleStatusFile();
    this.schedulePoll();
  }

  private track<T>(p: Promise<T>): void {
    const q = p.finally(() => this.background.delete(q));
    this.background.add(q);
  }

  private maybePublishKey(): void {
    if (this.publishing !== null || this.index === null || this.lastApply !== 'ok') return;
    const own = this.store.node(this.opts.node);
    if (own === undefined) return;
    const o = this.observed;
    let want: WgKey | null | undefined;
    if (this.index.kind === 'disabled') {
      if (o !== null && o.device === null && own.publicKey !== null) want = null;
    } else if (o !== null && o.device !== null && o.device.publicKey === this.key!.publicKey && own.publicKey !== this.key!.publicKey) {
      want = this.key!.publicKey;
    }
    if (want === undefined) return;
    const last = this.lastKeyAttempt;
    const retryMs = this.opts.publishRetryMs ?? 10_000;
    if (last !== null && last.value === want && last.own === own && this.now() - last.at < retryMs) {
      // Published already and the Node has not changed since: give the source time to show it.
      if (this.publishTimer === null) {
        this.publishTimer = setTimeout(() => { this.publishTimer = null; this.loop.kick(); }, retryMs - (this.now() - last.at));
      }
      return;
    }
    this.lastKeyAttempt = { value: want, own, at: this.now() };
    const value = want;
    this.publishing = (async () => {
      try {
        await this.opts.source.publishKey(this.opts.node, value);
        this.stats.keyPublications++;
        this.log.info({ publicKey: value, restored: own.publicKey !== null && value !== null }, value === null ? 'published key cleared' : 'public key published');
      } catch (err) {
        this.metrics.errors.inc({ kind: 'publish-key' });
        this.log.warn({ err: errMsg(err) }, 'publishing the key failed; retrying');
        this.lastKeyAttempt = { value, own, at: this.now() };
        if (this.publishTimer === null && !this.stopped) {
          this.publishTimer = setTimeout(() => { this.publishTimer = null; this.lastKeyAttempt = null; this.loop.kick(); }, this.loop.backoffMs(2));
        }
      } finally {
        this.publishing = null;
      }
    })();
    this.track(this.publishing);
  }

  publishedStatus(): PublishedStatus {
    const o = this.observed;
    let allowed = 0, hs = 0;
    if (o !== null) for (const p of o.peers.values()) { allowed += p.allowedIPs.length; if (p.latestHandshake > 0) hs++; }
    return {
      time: new Date(this.now()).toISOString(),
      device: o?.device?.name ?? null,
      mtu: o?.device?.mtu ?? null,
      peers: o?.peers.size ?? 0,
      peersWithHandshake: hs,
      allowedIPs: allowed,
      pendingOps: this.pendingOps,
      lastApply: this.lastApply === 'blocked' ? 'failed' : this.lastApply,
      lastError: this.lastError,
    };
  }

  private maybePublishStatus(): void {
    if (this.statusPublishing) return;
    const st = this.publishedStatus();
    const { time: _t, ...rest } = st;
    const key = JSON.stringify(rest);
    if (key === this.lastStatusKey) return;
    const wait = (this.opts.statusMinIntervalMs ?? 10_000) - (this.now() - this.lastStatusAt);
    if (wait > 0) {
      if (this.statusTimer === null) this.statusTimer = setTimeout(() => { this.statusTimer = null; this.maybePublishStatus(); }, wait);
      return;
    }
    this.statusPublishing = true;
    this.lastStatusAt = this.now();
    this.track(
      this.opts.source.publishStatus(this.opts.node, st).then(
        () => { this.lastStatusKey = key; this.stats.statusPublications++; },
        (err) => { this.metrics.errors.inc({ kind: 'publish-status' }); this.log.warn({ err: errMsg(err) }, 'publishing the status failed'); },
      ).finally(() => { this.statusPublishing = false; }),
    );
  }

  private scheduleStatusFile(): void {
    const wait = 1000 - (this.now() - this.lastStatusFileAt);
    if (wait <= 0) {
      this.lastStatusFileAt = this.now();
      this.track(this.writeStatusFile().catch((err) => { this.metrics.errors.inc({ kind: 'status-file' }); this.log.warn({ err: errMsg(err) }, 'writing status.json failed'); }));
    } else if (this.statusFileTimer === null) {
      this.statusFileTimer = setTimeout(() => { this.statusFileTimer = null; if (!this.stopped) this.scheduleStatusFile(); }, wait);
    }
  }

  /** While a peer has never handshaked, look again every 2 s, and keep that pace for 5 minutes after the
   *  set of such peers last changed: the two ends of a pair open their gates when each next reads the
   *  handshake, and until the slower one does, host packets from the faster one are dropped by the slower
   *  one's strict rp_filter (its route back to the peer's node IP is still `throw`). After 5 minutes
   *  without change (a peer whose agent is down), back off, doubling up to once a minute, so that an idle
   *  daemon does not spawn a process every 2 s. */
  private schedulePoll(): void {
    if (this.pollTimer !== null || this.index === null || this.index.kind === 'disabled' || !this.index.handshakeGate) return;
    const o = this.observed;
    if (o === null || o.device === null) return;
    let bootstrap = 0;
    for (const p of o.peers.values()) if (p.latestHandshake === 0) bootstrap++;
    const base = this.opts.bootstrapPollMs ?? 2000;
    if (bootstrap === 0) {
      this.pollBackoffMs = base;
      this.bootstrapCount = 0;
      return;
    }
    if (bootstrap !== this.bootstrapCount) {
      this.bootstrapCount = bootstrap;
      this.bootstrapChangedAt = this.now();
      this.pollBackoffMs = base;
    }
    const delay = this.pollBackoffMs;
    if (this.now() - this.bootstrapChangedAt > 5 * 60_000) this.pollBackoffMs = Math.min(delay * 2, Math.max(base, 60_000));
    this.pollTimer = setTimeout(() => {
      this.pollTimer = null;
      this.pollDue = true;
      this.loop.kick(true);
    }, delay);
  }

  private armResync(): void {
    if (this.resyncTimer !== null || this.stopped) return;
    const ms = this.opts.resyncIntervalMs ?? this.store.state.settings.resyncInterval * 1000;
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = null;
      this.requestResync();
      this.armResync();
    }, ms);
  }

  // -------------------------------------------------------------------------------------------------
  // Status

  private peerSamples(): PeerSample[] {
    const o = this.observed;
    if (o === null) return [];
    const ix = this.index;
    const out: PeerSample[] = [];
    for (const p of o.peers.values()) {
      const dp = ix !== null && ix.kind === 'index' ? ix.peers.get(p.publicKey) : undefined;
      out.push({ node: dp?.node ?? 'unknown', publicKey: p.publicKey, latestHandshake: p.latestHandshake, rxBytes: p.rxBytes, txBytes: p.txBytes, allowedIPs: p.allowedIPs.length });
    }
    return out;
  }

  status(): StatusFile {
    const o = this.observed;
    const ix = this.index;
    const own = this.store.node(this.opts.node);
    const problems = ix !== null && ix.kind === 'index' ? desiredOf(ix).problems.map(problemText) : [];
    if (this.indexError !== null) problems.unshift(this.indexError);
    return {
      version: 1,
      node: this.opts.node,
      time: new Date(this.now()).toISOString(),
      startedAt: new Date(this.startedAt).toISOString(),
      source: this.opts.source.description,
      synced: this.store.synced,
      ready: this.ready().ok,
      wireguard: ix === null ? 'unknown' : ix.kind === 'disabled' ? 'disabled' : 'enabled',
      disabledWhy: ix !== null && ix.kind === 'disabled' ? ix.why : null,
      lastApply: this.lastApply,
      lastError: this.lastError ?? (this.store.synced ? null : this.lastSourceErrorBeforeSync),
      lastSuccess: this.lastSuccessAt === null ? null : new Date(this.lastSuccessAt).toISOString(),
      lastReconcile: this.lastReconcile,
      pendingOps: this.pendingOps,
      publicKey: this.key?.publicKey ?? ('' as WgKey),
      keyPublished: own !== undefined && this.key !== null && own.publicKey === this.key.publicKey,
      device: o?.device ? { name: o.device.name, mtu: o.device.mtu, up: o.device.up, listenPort: o.device.listenPort, publicKey: o.device.publicKey } : null,
      routes: o?.routes.size ?? 0,
      peers: this.peerSamples().map((p) => ({
        node: p.node, publicKey: p.publicKey, endpoint: o?.peers.get(p.publicKey)?.endpoint ?? null, allowedIPs: p.allowedIPs,
        latestHandshake: p.latestHandshake, rxBytes: p.rxBytes, txBytes: p.txBytes,
      })),
      problems,
      counters: { ...this.stats },
    };
  }

  private async writeStatusFile(): Promise<void> {
    const file = path.join(this.opts.stateDir, STATUS_FILE);
    const tmp = `${file}.tmp-${process.pid}`;
    await fs.writeFile(tmp, JSON.stringify(this.status(), null, 2) + '\n', { mode: 0o644 });
    await fs.rename(tmp, file);
  }

  // -------------------------------------------------------------------------------------------------

  /** Removes everything wgplane owns (as `wgplane cleanup`), observing and repeating up to 3 times. */
  private async teardown(): Promise<void> {
    const s: Settings = this.store.state.settings;
    const d: DesiredDisabled = { kind: 'disabled', node: this.opts.node, why: 'setting', interfaceName: s.interfaceName, table: s.routingTable, problems: [] };
    const body = async () => {
      const r = await reconcile({
        observe: async () => { await this.observeNow(); return this.observed!; },
        desired: () => d,
        backend: this.opts.backend,
        privateKey: () => this.key!.privateKey(),
        run: this.run,
        attempts: 3,
        onResult: (res) => { this.stats.executions++; this.log.info({ ops: res.applied, result: res.kind }, 'clean-up plan executed'); },
      });
      if (r.kind === 'blocked') throw new Error(`clean-up blocked: ${r.plan.blocked.join('; ')}`);
      if (r.kind === 'gave-up') throw new Error(`clean-up did not converge after 3 attempts: ${r.lastError}`);
    };
    if (this.opts.lock ?? true) await withLock(this.opts.stateDir, body);
    else await body();
  }
}
