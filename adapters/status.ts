// What `wgplane status` shows: this node (key, device, peers, pending plan, last apply) and, with --all,
// every node of the cluster with its published key and status. Gathering (sources, kernel, files) and
// rendering (text tables, JSON). Never shows a private key: only public keys are read.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { shortKey, type WgKey } from '../core/key.js';
import { STATUS_FILE } from './daemon/status-file.js';
import { textTable } from './text-table.js';
import type { ClusterSnapshot, NodeInfo, NodeName, ObservedDataplane, PodInfo, PodKey } from '../core/model.js';
import { desired } from '../core/desired.js';
import { plan } from '../planner/plan.js';
import { decodeObjects } from '../core/decode.js';
import { observe } from './observer.js';
import { readDocuments, withPublications, SnapshotError } from './manifest.js';
import { annotationsOf, nodeAnnotations, type NodeAnnotations } from './publication.js';
import { createDirSource, parseDirSpec, type DirSource } from './sources/dir.js';
import type { ClusterEvent, ClusterSource, PublishedStatus } from './sources/source.js';

export class StatusError extends Error {
  override readonly name = 'StatusError';
}

// ---------------------------------------------------------------------------------------------------
// Where the cluster comes from

export type SourceSpec = { readonly kind: 'kube'; readonly kubeconfig?: string } | { readonly kind: 'dir'; readonly dir: string } | { readonly kind: 'snapshot'; readonly path: string };

/** `kube`, `dir:PATH` (and `--snapshot PATH`, which is read once and never written). */
export function parseSourceSpec(source: string | undefined, snapshot: string | undefined, kubeconfig?: string): SourceSpec {
  if (snapshot !== undefined && source !== undefined) throw new StatusError('give --source or --snapshot, not both');
  if (snapshot !== undefined) return { kind: 'snapshot', path: snapshot };
  const s = source ?? 'kube';
  if (s === 'kube') return kubeconfig !== undefined ? { kind: 'kube', kubeconfig } : { kind: 'kube' };
  const dir = parseDirSpec(s);
  if (dir !== null) return { kind: 'dir', dir };
  throw new StatusError(`--source ${JSON.stringify(s)}: want kube or dir:PATH`);
}

/** A ClusterSource for a kube or dir spec (for enable/disable, and status). The Kubernetes client is
 *  loaded only here, when asked for: it is most of the CLI's start-up time otherwise (~0.5 s). */
export async function openSource(spec: SourceSpec, node: NodeName): Promise<ClusterSource> {
  if (spec.kind === 'kube') {
    const { createKubeSource } = await import('./sources/kube.js');
    return createKubeSource({ node, ...(spec.kubeconfig !== undefined ? { kubeconfig: spec.kubeconfig } : {}) });
  }
  if (spec.kind === 'dir') return createDirSource(spec.dir);
  throw new StatusError('a --snapshot is read only: use --source dir:PATH or --source kube to change the cluster');
}

export interface ClusterView {
  readonly snapshot: ClusterSnapshot;
  /** wgplane's annotations per node (key, status). */
  readonly annotations: ReadonlyMap<NodeName, NodeAnnotations>;
  readonly description: string;
  /** Problems the source reported while it was read (bad files, objects left out). */
  readonly warnings: readonly string[];
}

/** Starts a source, waits for `synced` (applying the events before it), and stops it. */
export async function readSourceOnce(source: ClusterSource, timeoutMs: number): Promise<{ snapshot: ClusterSnapshot; warnings: string[] }> {
  let nodes = new Map<NodeName, NodeInfo>();
  let pods = new Map<PodKey, PodInfo>();
  let snapshot: ClusterSnapshot | null = null;
  const warnings: string[] = [];
  let done: () => void = () => undefined;
  let held: (why: string) => void = () => undefined;
  const synced = new Promise<'ok' | string>((r) => { done = () => r('ok'); held = r; });
  const onEvent = (e: ClusterEvent): void => {
    switch (e.kind) {
      case 'replace':
        snapshot = e.snapshot;
        nodes = new Map(e.snapshot.nodes);
        pods = new Map(e.snapshot.pods);
        break;
      case 'node-upsert': nodes.set(e.node.name, e.node); break;
      case 'node-delete': nodes.delete(e.name); break;
      case 'pod-upsert': pods.set(e.pod.key, e.pod); break;
      case 'pod-delete': pods.delete(e.key); break;
      case 'settings': if (snapshot) snapshot = { ...(snapshot as ClusterSnapshot), settings: e.settings, settingsFound: e.found }; break;
      case 'error':
        warnings.push(`${e.where}: ${e.message}`);
        if (e.holdsSync === true) held(`${e.where}: ${e.message}`);
        break;
      case 'synced': done(); break;
    }
  };
  let timer: NodeJS.Timeout | undefined;
  try {
    await source.start(onEvent);
    const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
    const outcome = await Promise.race([synced, timeout]);
    if (outcome === 'timeout') {
      throw new StatusError(`${source.description}: not synced within ${timeoutMs / 1000} s${warnings.length ? `:\n  ${warnings.join('\n  ')}` : ''}`);
    }
    if (outcome !== 'ok') {
      const others = warnings.filter((w) => w !== outcome);
      throw new StatusError(`${source.description}: cannot sync: ${outcome}${others.length ? `\n  ${others.join('\n  ')}` : ''}`);
    }
  } finally {
    clearTimeout(timer);
    await source.stop();
  }
  const base = snapshot as ClusterSnapshot | null;
  if (!base) throw new StatusError(`${source.description}: synced without a snapshot`);
  return { snapshot: { ...base, nodes, pods }, warnings };
}

/** Reads the cluster once from a spec, with wgplane's node annotations. */
export async function readCluster(spec: SourceSpec, node: NodeName, timeoutMs = 30_000): Promise<ClusterView> {
  if (spec.kind === 'snapshot') {
    const docs = withPublications(await readDocuments(spec.path));
    const r = decodeObjects(docs);
    if (E.isLeft(r)) throw new SnapshotError(r.left);
    return { snapshot: r.right, annotations: nodeAnnotations(docs), description: `snapshot ${spec.path}`, warnings: [] };
  }
  if (spec.kind === 'dir') {
    const src: DirSource = createDirSource(spec.dir);
    const { snapshot, warnings } = await readSourceOnce(src, timeoutMs);
    return { snapshot, annotations: src.nodeAnnotations(), description: src.description, warnings };
  }
  const src = await openSource(spec, node);
  const { snapshot, warnings } = await readSourceOnce(src, timeoutMs);
  return { snapshot, annotations: await kubeNodeAnnotations(spec), description: src.description, warnings };
}

/** The wgplane annotations of every Node, read from the API (the ClusterSource carries no status). */
async function kubeNodeAnnotations(spec: { readonly kubeconfig?: string }): Promise<Map<NodeName, NodeAnnotations>> {
  const [{ loadKubeConfig }, { CoreV1Api }] = await Promise.all([import('./sources/kube.js'), import('@kubernetes/client-node')]);
  const { kc } = loadKubeConfig({ node: '' as NodeName, ...(spec.kubeconfig !== undefined ? { kubeconfig: spec.kubeconfig } : {}) });
  const api = kc.makeApiClient(CoreV1Api);
  const out = new Map<NodeName, NodeAnnotations>();
  let cont: string | undefined;
  do {
    const list = await api.listNode({ limit: 500, ...(cont ? { _continue: cont } : {}) });
    for (const n of list.items) if (n.metadata?.name) out.set(n.metadata.name as NodeName, annotationsOf(n.metadata.annotations));
    cont = list.metadata?._continue || undefined;
  } while (cont);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// This node

/** What the daemon wrote to `<state-dir>/status.json` that status shows (the file has more). */
export interface DaemonStatus {
  readonly time: string | null;
  readonly source: string | null;
  readonly lastApply: string;
  readonly lastError: string | null;
  readonly lastSuccess: string | null;
  readonly lastReconcile: { readonly kind: string; readonly time: string; readonly result: string; readonly planned: number; readonly applied: number; readonly durationMs: number } | null;
}

/** Reads the daemon's status file; null when there is none (the daemon never ran here). */
export async function readDaemonStatus(stateDir: string): Promise<DaemonStatus | null> {
  const file = path.join(stateDir, STATUS_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new StatusError(`${file}: ${(e as Error).message}`);
  }
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new StatusError(`${file}: not JSON: ${(e as Error).message}`);
  }
  const str = (x: unknown) => (typeof x === 'string' ? x : null);
  const lr = v.lastReconcile as Record<string, unknown> | null | undefined;
  return {
    time: str(v.time),
    source: str(v.source),
    lastApply: str(v.lastApply) ?? 'unknown',
    lastError: str(v.lastError),
    lastSuccess: str(v.lastSuccess),
    lastReconcile: lr && typeof lr === 'object'
      ? { kind: String(lr.kind), time: String(lr.time), result: String(lr.result), planned: Number(lr.planned), applied: Number(lr.applied), durationMs: Number(lr.durationMs) }
      : null,
  };
}

export interface PeerStatus {
  readonly node: string | null; // null: a key no node publishes
  readonly publicKey: WgKey;
  readonly endpoint: string | null;
  /** Seconds since the latest handshake; null = never. */
  readonly handshakeAgeS: number | null;
  readonly rxBytes: number;
  readonly txBytes: number;
  readonly allowedIPs: number;
}

export interface NodeStatus {
  readonly node: NodeName;
  readonly source: string;
  readonly inCluster: boolean;
  readonly wireguard: 'enabled' | 'disabled';
  readonly disabledWhy: string | null;
  readonly key: {
    readonly stored: WgKey | null;
    readonly published: WgKey | null;
    /** stored === published (null: nothing stored). */
    readonly publishedMatches: boolean | null;
  };
  readonly device: { readonly name: string; readonly mtu: number; readonly up: boolean; readonly listenPort: number | null; readonly keyMatchesStore: boolean | null } | null;
  readonly routes: number | null;
  readonly peers: readonly PeerStatus[];
  /** Operations a plan against the live kernel holds now; null when it could not be computed. */
  readonly pendingOps: number | null;
  readonly blocked: readonly string[];
  readonly daemon: DaemonStatus | null;
  /** Why some part is missing (kernel not readable, ...). */
  readonly errors: readonly string[];
  readonly warnings: readonly string[];
}

export interface NodeStatusInput {
  readonly node: NodeName;
  readonly view: ClusterView;
  readonly storedKey: WgKey | null;
  /** The live kernel (or the error reading it). */
  readonly observed: ObservedDataplane | Error;
  readonly daemon: DaemonStatus | null;
  readonly nowS: number;
}

/** Pure assembly of this node's status from what was read. */
export function nodeStatus(i: NodeStatusInput): NodeStatus {
  const { snapshot } = i.view;
  const me = snapshot.nodes.get(i.node);
  const published = me?.publicKey ?? null;
  const errors: string[] = [];
  const o = i.observed instanceof Error ? null : i.observed;
  if (i.observed instanceof Error) errors.push(`cannot read the kernel: ${i.observed.message}`);
  if (!me) errors.push(`node ${i.node} is not in ${i.view.description}`);
  const byKey = new Map<string, string>();
  for (const n of snapshot.nodes.values()) if (n.publicKey) byKey.set(n.publicKey, byKey.has(n.publicKey) ? `${byKey.get(n.publicKey)},${n.name}` : n.name);
  const peers: PeerStatus[] = o
    ? [...o.peers.values()].map((p) => ({
        node: byKey.get(p.publicKey) ?? null,
        publicKey: p.publicKey,
        endpoint: p.endpoint,
        handshakeAgeS: p.latestHandshake > 0 ? Math.max(0, i.nowS - p.latestHandshake) : null,
        rxBytes: p.rxBytes,
        txBytes: p.txBytes,
        allowedIPs: p.allowedIPs.length,
      })).sort((a, b) => (a.node ?? '~').localeCompare(b.node ?? '~'))
    : [];
  let pendingOps: number | null = null;
  let blocked: readonly string[] = [];
  let wireguard: 'enabled' | 'disabled' = snapshot.settings.enabled ? 'enabled' : 'disabled';
  let disabledWhy: string | null = snapshot.settings.enabled ? null : 'setting enabled=false';
  const d = desired(snapshot, i.node, { underlayMtu: o?.underlayMtu ?? null, publicKey: i.storedKey });
  if (E.isLeft(d)) errors.push(d.left.message);
  else {
    if (d.right.kind === 'disabled') {
      wireguard = 'disabled';
      disabledWhy = d.right.why === 'setting' ? 'setting enabled=false' : 'node label wgplane.io/wireguard=disabled';
    } else wireguard = 'enabled';
    if (o) {
      const p = plan(d.right, o);
      pendingOps = p.ops.length;
      blocked = p.blocked;
    }
  }
  return {
    node: i.node,
    source: i.view.description,
    inCluster: me !== undefined,
    wireguard,
    disabledWhy,
    key: { stored: i.storedKey, published, publishedMatches: i.storedKey === null ? null : published === i.storedKey },
    device: o?.device
      ? { name: o.device.name, mtu: o.device.mtu, up: o.device.up, listenPort: o.device.listenPort, keyMatchesStore: i.storedKey === null || o.device.publicKey === null ? null : o.device.publicKey === i.storedKey }
      : null,
    routes: o ? o.routes.size : null,
    peers,
    pendingOps,
    blocked,
    daemon: i.daemon,
    errors,
    warnings: i.view.warnings,
  };
}

/** Reads the kernel of the current network namespace for the status (errors become values). */
export async function observeForStatus(snapshot: ClusterSnapshot, workloadPrefix: string | null): Promise<ObservedDataplane | Error> {
  try {
    return await observe({ interfaceName: snapshot.settings.interfaceName, table: snapshot.settings.routingTable, workloadInterfacePrefix: workloadPrefix });
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
}

// ---------------------------------------------------------------------------------------------------
// Every node

export interface ClusterNodeStatus {
  readonly node: NodeName;
  readonly keyPublished: boolean;
  /** Published key valid as the agents decode it (an invalid annotation is reported). */
  readonly publicKey: WgKey | null;
  readonly wireguardLabel: string | null;
  readonly status: PublishedStatus | null;
  readonly statusError: string | null;
  /** Seconds since the status was published. */
  readonly statusAgeS: number | null;
}

export function clusterStatus(view: ClusterView, nowMs: number): ClusterNodeStatus[] {
  const out: ClusterNodeStatus[] = [];
  for (const n of [...view.snapshot.nodes.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const a = view.annotations.get(n.name);
    const t = a?.status ? Date.parse(a.status.time) : NaN;
    out.push({
      node: n.name,
      keyPublished: n.publicKey !== null,
      publicKey: n.publicKey,
      wireguardLabel: n.labels['wgplane.io/wireguard'] ?? null,
      status: a?.status ?? null,
      statusError: a?.statusError ?? null,
      statusAgeS: Number.isFinite(t) ? Math.max(0, Math.round((nowMs - t) / 1000)) : null,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Rendering

export function age(s: number | null): string {
  if (s === null) return 'never';
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.floor(s / 60)}m ago`;
  if (s < 172800) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

const short = (k: WgKey | null) => (k === null ? '-' : shortKey(k));

/** Left-aligned columns separated by two spaces. */
function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  return textTable(header, rows).join('\n');
}

export function renderNodeStatusText(s: NodeStatus): string {
  const lines: string[] = [];
  lines.push(`node ${s.node} (${s.source})`);
  lines.push(`  wireguard   ${s.wireguard}${s.disabledWhy ? ` (${s.disabledWhy})` : ''}`);
  const pub = s.key.published === null ? 'not published' : s.key.publishedMatches === false ? `published ${short(s.key.published)} DIFFERS from the stored key` : s.key.publishedMatches ? 'published (matches)' : `published ${short(s.key.published)}`;
  lines.push(`  key         ${s.key.stored === null ? 'none in the key store' : short(s.key.stored)}; ${pub}`);
  if (s.device) {
    const keyNote = s.device.keyMatchesStore === false ? ', device key DIFFERS from the stored key' : '';
    lines.push(`  device      ${s.device.name}: mtu ${s.device.mtu}, ${s.device.up ? 'up' : 'DOWN'}, port ${s.device.listenPort ?? '-'}, ${s.routes ?? 0} routes${keyNote}`);
  } else lines.push(`  device      none`);
  const pending = s.pendingOps === null ? 'unknown' : s.pendingOps === 0 ? '0 operations (the kernel matches the desired state)' : `${s.pendingOps} operations (run \`wgplane plan\` to see them)`;
  lines.push(`  pending     ${pending}`);
  for (const b of s.blocked) lines.push(`  blocked     ${b}`);
  if (s.daemon) {
    const r = s.daemon.lastReconcile;
    const detail = r ? ` (${r.kind} at ${r.time}: ${r.applied} of ${r.planned} operations, ${Math.round(r.durationMs)} ms)` : '';
    lines.push(`  last apply  ${s.daemon.lastApply}${detail}${s.daemon.lastError ? `: ${s.daemon.lastError}` : ''}`);
  } else lines.push('  last apply  unknown (no status.json: the daemon has not run here)');
  lines.push('');
  if (s.peers.length === 0) lines.push('no peers');
  else {
    lines.push(`peers (${s.peers.length})`);
    lines.push(table(['NODE', 'KEY', 'ENDPOINT', 'HANDSHAKE', 'RX', 'TX', 'ALLOWED IPS'], s.peers.map((p) => [p.node ?? '(unknown key)', short(p.publicKey), p.endpoint ?? '-', age(p.handshakeAgeS), bytes(p.rxBytes), bytes(p.txBytes), String(p.allowedIPs)])));
  }
  for (const e of s.errors) lines.push(`error: ${e}`);
  for (const w of s.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n');
}

export function renderClusterStatusText(rows: readonly ClusterNodeStatus[], description: string): string {
  const published = rows.filter((r) => r.keyPublished).length;
  const head = `${rows.length} nodes in ${description}; ${published} with a published key`;
  const body = table(
    ['NODE', 'KEY', 'DEVICE', 'MTU', 'PEERS', 'HANDSHAKES', 'ALLOWED IPS', 'PENDING', 'LAST APPLY', 'REPORTED'],
    rows.map((r) => {
      const s = r.status;
      const label = r.wireguardLabel === 'disabled' ? ' (label: disabled)' : '';
      return [
        r.node,
        (r.keyPublished ? short(r.publicKey) : 'no') + label,
        s?.device ?? '-',
        s?.mtu != null ? String(s.mtu) : '-',
        s ? String(s.peers) : '-',
        s ? `${s.peersWithHandshake}/${s.peers}` : '-',
        s ? String(s.allowedIPs) : '-',
        s ? String(s.pendingOps) : '-',
        s ? s.lastApply + (s.lastError ? `: ${s.lastError.slice(0, 60)}` : '') : r.statusError ? `bad status: ${r.statusError}` : 'no status',
        s ? age(r.statusAgeS) : '-',
      ];
    }),
  );
  return `${head}\n${body}`;
}
