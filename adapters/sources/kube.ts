// `--source kube`: the cluster from the Kubernetes API through @kubernetes/client-node 1.4.
//
// Config: an explicit --kubeconfig wins; else in-cluster (KUBERNETES_SERVICE_HOST/PORT and the service
// account token); else $KUBECONFIG; else ~/.kube/config. When none applies, createKubeSource throws a clear
// error: there is never a silent fallback to localhost.
//
// One reflector per kind (Nodes, Pods in all namespaces, the ConfigMap kube-system/wgplane by field
// selector): a paged list (limit/continue) at a resourceVersion, then a watch from it with bookmarks.
// - Lists are read as raw JSON with client-node's own auth/TLS (KubeConfig.applyToFetchOptions) rather than
//   through CoreV1Api, whose ObjectSerializer roughly triples the cost per pod (measured ~85 us vs ~25 us
//   for JSON.parse, 1 kB pods); objects are decoded once, here, by core/decode.ts. Watches use
//   client-node's Watch class; patches and creates use CoreV1Api.
// - The first complete list of all three kinds -> `replace`, then `synced`. Before that nothing else is
//   emitted (the replace carries it). A later re-list of one kind (410 Gone, a broken watch that could not
//   resume) -> `replace` with the whole snapshot.
// - A watch that ends cleanly is resumed from the last resourceVersion (bookmarks keep it fresh); one that
//   fails or expires (410, as an ERROR event or an HTTP status) re-lists; every failure is an `error` event
//   and is retried with exponential backoff (cap 30 s). A watch silent for longer than its server timeout
//   plus a margin is aborted and resumed (a half-open connection must not stall the agent).
// - Bad objects: an `error` event naming the object and the field; the object's last good version (if
//   any) is kept, otherwise it is left out. Keeping the last good version is the safe choice for traffic:
//   a Node whose annotation someone garbled keeps its peer instead of dropping it, and a garbled settings
//   ConfigMap does not switch WireGuard off (defaults have enabled=false). With no last good settings (the
//   first list of a starting agent), a garbled settings ConfigMap holds the first sync: the agent stays
//   not ready and changes nothing until the ConfigMap decodes or is deleted. A deletion always removes.
// - Upserts are emitted only when the decoded value changed (Node heartbeats and pod condition updates
//   are dropped here, not planned), without copying any big structure; the replace snapshot copies the
//   source's maps (so later events never mutate what a consumer holds).
import { existsSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { CoreV1Api, KubeConfig, PatchStrategy, Watch, setHeaderOptions } from '@kubernetes/client-node';
import * as E from 'fp-ts/lib/Either.js';
import { decodeNode, decodePod, decodeSettingsConfigMap, type DecodeError, MAX_DECODE_ERRORS } from '../../core/decode.js';
import type { WgKey } from '../../core/key.js';
import { OWNERSHIP, type ClusterSnapshot, type NodeInfo, type NodeName, type PodInfo, type PodKey, type Settings } from '../../core/model.js';
import { DEFAULT_SETTINGS } from '../../core/settings.js';
import { sameNode, samePod, sameSettings, type ClusterEvent, type ClusterSource, type PublishedStatus, STATUS_ANNOTATION } from './source.js';

export interface KubeTuning {
  /** Items per list page (limit/continue). */
  readonly pageSize: number;
  /** Asked of the server per watch (it ends the watch after this; the reflector resumes). */
  readonly watchTimeoutSeconds: number;
  /** A watch that delivers nothing (no event, no bookmark) for this long is aborted and resumed. */
  readonly idleTimeoutMs: number;
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
}

export const DEFAULT_KUBE_TUNING: KubeTuning = {
  pageSize: 500,
  watchTimeoutSeconds: 300,
  idleTimeoutMs: 330_000,
  backoffInitialMs: 500,
  backoffMaxMs: 30_000,
};

export interface KubeSourceOptions {
  readonly kubeconfig?: string;
  readonly context?: string;
  readonly node: NodeName;
  /** Environment to read KUBECONFIG / KUBERNETES_SERVICE_* from (default process.env); for tests. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Home directory for ~/.kube/config (default os.homedir()); for tests. */
  readonly homeDir?: string;
  /** Service account directory (default /var/run/secrets/kubernetes.io/serviceaccount); for tests. */
  readonly serviceAccountDir?: string;
  readonly tuning?: Partial<KubeTuning>;
}

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** Loads the client configuration as the module comment says. Throws an Error with a clear message. */
export function loadKubeConfig(opts: KubeSourceOptions): { readonly kc: KubeConfig; readonly description: string } {
  const env = opts.env ?? process.env;
  const kc = new KubeConfig();
  let description: string;
  const fromFile = (file: string, how: string): void => {
    if (!existsSync(file)) throw new Error(`kube source: kubeconfig ${file} (${how}) does not exist`);
    try {
      kc.loadFromFile(file);
    } catch (e) {
      throw new Error(`kube source: kubeconfig ${file} (${how}) cannot be read: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  const saDir = opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  if (opts.kubeconfig !== undefined && opts.kubeconfig !== '') {
    fromFile(opts.kubeconfig, '--kubeconfig');
    description = `kube (kubeconfig ${opts.kubeconfig}`;
  } else if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT) {
    if (!existsSync(join(saDir, 'token'))) {
      throw new Error(`kube source: KUBERNETES_SERVICE_HOST is set but there is no service account token at ${join(saDir, 'token')}`);
    }
    kc.loadFromClusterAndUser(
      {
        name: 'inCluster',
        server: `https://${env.KUBERNETES_SERVICE_HOST.includes(':') ? `[${env.KUBERNETES_SERVICE_HOST}]` : env.KUBERNETES_SERVICE_HOST}:${env.KUBERNETES_SERVICE_PORT}`,
        caFile: join(saDir, 'ca.crt'),
        skipTLSVerify: false,
      },
      { name: 'inClusterUser', authProvider: { name: 'tokenFile', config: { tokenFile: join(saDir, 'token') } } },
    );
    description = 'kube (in-cluster';
  } else if (env.KUBECONFIG !== undefined && env.KUBECONFIG !== '') {
    const files = env.KUBECONFIG.split(delimiter).filter((f) => f !== '');
    const present = files.filter((f) => existsSync(f));
    if (present.length === 0) throw new Error(`kube source: none of the files in $KUBECONFIG exists (${files.join(delimiter)})`);
    fromFile(present[0]!, '$KUBECONFIG');
    for (const f of present.slice(1)) {
      const more = new KubeConfig();
      more.loadFromFile(f);
      kc.mergeConfig(more, true);
    }
    description = `kube (kubeconfig ${present.join(delimiter)}`;
  } else {
    const file = join(opts.homeDir ?? homedir(), '.kube', 'config');
    if (!existsSync(file)) {
      throw new Error(
        `kube source: no Kubernetes configuration: not in a pod (KUBERNETES_SERVICE_HOST unset), no --kubeconfig, no $KUBECONFIG, and ${file} does not exist`,
      );
    }
    fromFile(file, '~/.kube/config');
    description = `kube (kubeconfig ${file}`;
  }
  if (opts.context !== undefined && opts.context !== '') {
    if (kc.getContextObject(opts.context) === null) throw new Error(`kube source: the kubeconfig has no context ${JSON.stringify(opts.context)}`);
    kc.setCurrentContext(opts.context);
  }
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new Error(`kube source: the kubeconfig has no current context with a cluster (${description.slice(6)})`);
  if (opts.context) description += `, context ${opts.context}`;
  return { kc, description: `${description}, server ${cluster.server})` };
}

/** An HTTP error from the API (list or watch). */
class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

function errText(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    const body = (e as { body?: unknown }).body;
    if (typeof code === 'number') {
      let msg = '';
      try {
        const b = typeof body === 'string' ? JSON.parse(body) : body;
        if (b && typeof b === 'object' && typeof (b as { message?: unknown }).message === 'string') msg = (b as { message: string }).message;
      } catch {
        /* not JSON */
      }
      return `HTTP ${code}${msg ? `: ${msg}` : ''}`;
    }
    return e.message || e.name;
  }
  return String(e);
}

function httpCode(e: unknown): number | undefined {
  if (e && typeof e === 'object') {
    const c = (e as { code?: unknown }).code;
    if (typeof c === 'number') return c;
    const s = (e as { statusCode?: unknown }).statusCode;
    if (typeof s === 'number') return s;
  }
  return undefined;
}

/** GET a JSON document with client-node's auth and TLS settings. */
async function getJson(kc: KubeConfig, path: string): Promise<unknown> {
  const cluster = kc.getCurrentCluster()!;
  const url = new URL(cluster.server.replace(/\/$/, '') + path);
  const init = (await kc.applyToFetchOptions({})) as unknown as { agent?: http.Agent; headers: Headers };
  const headers: Record<string, string> = { accept: 'application/json' };
  init.headers.forEach((v, k) => (headers[k] = v));
  const mod = url.protocol === 'https:' ? https : http;
  return await new Promise<unknown>((resolve, reject) => {
    const req = mod.request(url, { method: 'GET', headers, ...(init.agent ? { agent: init.agent } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          if (res.statusCode === 200) return reject(new Error(`GET ${path}: the response is not JSON`));
        }
        if (res.statusCode !== 200) {
          const m = body && typeof body === 'object' ? (body as { message?: unknown }).message : undefined;
          return reject(new ApiError(res.statusCode ?? 0, `GET ${path}: HTTP ${res.statusCode}${typeof m === 'string' ? `: ${m}` : ''}`));
        }
        resolve(body);
      });
    });
    req.on('error', reject);
    req.end();
  });
}

type Rec = Record<string, unknown>;
function isRec(u: unknown): u is Rec {
  return u !== null && typeof u === 'object' && !Array.isArray(u);
}

function metaOf(o: unknown): { name: string; namespace: string; rv: string } {
  const m = isRec(o) && isRec(o.metadata) ? o.metadata : {};
  return {
    name: typeof m.name === 'string' ? m.name : '',
    namespace: typeof m.namespace === 'string' && m.namespace !== '' ? m.namespace : 'default',
    rv: typeof m.resourceVersion === 'string' ? m.resourceVersion : '',
  };
}

type Kind = 'nodes' | 'pods' | 'settings';

/** Turns a list of decode errors into one error event (where = object and field of the first). */
function decodeErrorEvent(errs: readonly DecodeError[]): ClusterEvent {
  const first = errs[0]!;
  const rest = errs.length > 1 ? ` (and ${errs.length - 1} more: ${errs.slice(1, 4).map((e) => `${e.where}: ${e.message}`).join('; ')})` : '';
  return { kind: 'error', where: first.where, message: `${first.message}${rest}; the object's last good version, if any, is kept` };
}

interface Abortable {
  abort(): void;
}

class Reflector {
  rv = '';
  private failures = 0;
  private request: Abortable | null = null;
  private wake: (() => void) | null = null;
  private running: Promise<void> | null = null;
  /** Errors reported during the current list (capped). */
  private listErrors = 0;

  constructor(
    private readonly src: KubeSource,
    readonly kind: Kind,
    private readonly path: string,
    private readonly fieldSelector: string | undefined,
  ) {}

  start(): void {
    this.running = this.loop();
  }

  async stop(): Promise<void> {
    this.request?.abort();
    this.wake?.();
    await this.running;
  }

  private get where(): string {
    return `watch ${this.path}${this.fieldSelector ? `?fieldSelector=${this.fieldSelector}` : ''}`;
  }

  private backoffMs(): number {
    const t = this.src.tuning;
    return Math.min(t.backoffMaxMs, t.backoffInitialMs * 2 ** Math.max(0, this.failures - 1));
  }

  private async sleep(ms: number): Promise<void> {
    if (this.src.stopped) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
    this.wake = null;
  }

  private async fail(message: string): Promise<void> {
    this.failures++;
    const ms = this.backoffMs();
    this.src.emitAlways({ kind: 'error', where: this.where, message: `${message}; retrying in ${ms} ms` });
    await this.sleep(ms);
  }

  private async loop(): Promise<void> {
    let needList = true;
    while (!this.src.stopped) {
      if (needList) {
        try {
          await this.list();
          needList = false;
        } catch (e) {
          if (this.src.stopped) return;
          await this.fail(`list failed: ${errText(e)}`);
          continue;
        }
      }
      if (this.src.stopped) return;
      const r = await this.watchOnce();
      if (this.src.stopped) return;
      if (r.kind === 'gone') {
        needList = true;
        await this.fail(`resourceVersion ${r.rv} is too old (410 Gone): re-listing`);
      } else if (r.kind === 'error') {
        await this.fail(`watch failed: ${r.message}`);
      } else if (r.events > 0) {
        this.failures = 0; // a healthy watch that ended (server timeout, dropped connection): resume at once
      } else {
        // Ended without delivering anything: resume from the same resourceVersion after a pause, so that a
        // server that closes every watch at once is not hammered. Not an error by itself.
        this.failures++;
        await this.sleep(this.backoffMs());
      }
    }
  }

  /** Paged list; hands the items to the source page by page, then commits. */
  private async list(): Promise<void> {
    const t = this.src.tuning;
    const sink = this.src.beginList(this.kind);
    this.listErrors = 0;
    let cont = '';
    let rv = '';
    do {
      const q = new URLSearchParams();
      q.set('limit', String(t.pageSize));
      if (cont !== '') q.set('continue', cont);
      if (this.fieldSelector) q.set('fieldSelector', this.fieldSelector);
      const body = await getJson(this.src.kc, `${this.path}?${q.toString()}`);
      if (this.src.stopped) return;
      if (!isRec(body) || !Array.isArray(body.items)) throw new Error(`${this.path}: the list response has no items`);
      const md = isRec(body.metadata) ? body.metadata : {};
      cont = typeof md.continue === 'string' ? md.continue : '';
      rv = typeof md.resourceVersion === 'string' ? md.resourceVersion : '';
      for (const item of body.items) sink(item);
    } while (cont !== '');
    this.rv = rv;
    this.src.commitList(this.kind);
  }

  private watchOnce(): Promise<{ kind: 'closed'; events: number } | { kind: 'gone'; rv: string } | { kind: 'error'; message: string }> {
    const t = this.src.tuning;
    const startRv = this.rv;
    return new Promise((resolve) => {
      let events = 0;
      let gone = false;
      let errorMsg: string | null = null;
      let idle = false;
      let controller: AbortController | null = null;
      let finished = false;
      const idleTimer = setTimeout(() => {
        idle = true;
        controller?.abort();
      }, t.idleTimeoutMs);
      const finish = (err: unknown): void => {
        if (finished) return;
        finished = true;
        clearTimeout(idleTimer);
        this.request = null;
        if (gone || httpCode(err) === 410) resolve({ kind: 'gone', rv: startRv });
        else if (errorMsg !== null) resolve({ kind: 'error', message: errorMsg });
        else if (idle) resolve({ kind: 'error', message: `nothing received for ${t.idleTimeoutMs} ms` });
        else if (err && !this.src.stopped) resolve({ kind: 'error', message: errText(err) });
        else resolve({ kind: 'closed', events });
      };
      const params: Record<string, string | number | boolean | undefined> = {
        resourceVersion: this.rv,
        allowWatchBookmarks: true,
        timeoutSeconds: t.watchTimeoutSeconds,
        fieldSelector: this.fieldSelector,
      };
      this.request = { abort: () => (controller ? controller.abort() : finish(null)) };
      const onEvent = (phase: string, obj: unknown): void => {
        if (finished) return;
        idleTimer.refresh();
        events++;
        if (phase === 'ERROR') {
          const code = isRec(obj) ? obj.code : undefined;
          if (code === 410) gone = true;
          else errorMsg = `ERROR event: ${isRec(obj) && typeof obj.message === 'string' ? obj.message : JSON.stringify(obj)}`;
          controller?.abort();
          return;
        }
        const rv = metaOf(obj).rv;
        if (phase === 'ADDED' || phase === 'MODIFIED') this.src.upsert(this.kind, obj);
        else if (phase === 'DELETED') this.src.remove(this.kind, obj);
        // BOOKMARK: only the resourceVersion moves.
        if (rv !== '') this.rv = rv;
      };
      new Watch(this.src.kc)
        .watch(this.path, params, onEvent, finish)
        .then((c) => {
          controller = c;
          if (finished || this.src.stopped) c.abort();
        })
        .catch((e: unknown) => finish(e));
    });
  }

  /** Counts a decode error of the current list; true when it should still be reported. */
  reportListError(): boolean {
    return ++this.listErrors <= MAX_DECODE_ERRORS;
  }

  listErrorCount(): number {
    return this.listErrors;
  }
}

class KubeSource implements ClusterSource {
  readonly description: string;
  readonly tuning: KubeTuning;
  stopped = true;
  private emitFn: ((e: ClusterEvent) => void) | null = null;
  private nodes = new Map<NodeName, NodeInfo>();
  private pods = new Map<PodKey, PodInfo>();
  private settings: Settings = DEFAULT_SETTINGS;
  private settingsFound = false;
  /** The settings ConfigMap exists but does not decode, and no valid settings were known before it: the
   *  first sync waits for a valid one (or its deletion) instead of going on with the defaults, which
   *  would turn WireGuard off and tear the node's dataplane down because of a typo. */
  private settingsBlocked = false;
  private readonly listed = new Set<Kind>();
  private synced = false;
  private reflectors: Reflector[] = [];
  private readonly api: CoreV1Api;
  // A list in progress (one per kind at a time).
  private pending: { nodes?: Map<NodeName, NodeInfo>; pods?: Map<PodKey, PodInfo>; settings?: { s: Settings; found: boolean; blocked: boolean } } = {};

  constructor(
    readonly kc: KubeConfig,
    description: string,
    tuning: KubeTuning,
  ) {
    this.description = description;
    this.tuning = tuning;
    this.api = kc.makeApiClient(CoreV1Api);
  }

  async start(onEvent: (e: ClusterEvent) => void): Promise<void> {
    if (!this.stopped) throw new Error('kube source: already started');
    this.stopped = false;
    this.emitFn = onEvent;
    this.reflectors = [
      new Reflector(this, 'nodes', '/api/v1/nodes', undefined),
      new Reflector(this, 'pods', '/api/v1/pods', undefined),
      new Reflector(this, 'settings', `/api/v1/namespaces/${OWNERSHIP.settingsNamespace}/configmaps`, `metadata.name=${OWNERSHIP.settingsName}`),
    ];
    for (const r of this.reflectors) r.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.reflectors.map((r) => r.stop()));
    this.reflectors = [];
    this.emitFn = null;
  }

  /** Emits only once the initial replace has gone out (before it, the replace carries everything). */
  private emit(e: ClusterEvent): void {
    if (this.synced && !this.stopped) this.emitFn?.(e);
  }

  emitAlways(e: ClusterEvent): void {
    if (!this.stopped) this.emitFn?.(e);
  }

  private reflector(kind: Kind): Reflector {
    return this.reflectors.find((r) => r.kind === kind)!;
  }

  private badObject(kind: Kind, errs: readonly DecodeError[], inList: boolean): void {
    if (inList && !this.reflector(kind).reportListError()) return;
    this.emitAlways(decodeErrorEvent(errs));
  }

  beginList(kind: Kind): (item: unknown) => void {
    switch (kind) {
      case 'nodes': {
        const next = new Map<NodeName, NodeInfo>();
        this.pending.nodes = next;
        return (item) => {
          const m = metaOf(item);
          const r = decodeNode(item, `Node ${m.name}`);
          if (E.isRight(r)) next.set(r.right.name, r.right);
          else {
            this.badObject('nodes', r.left, true);
            const old = this.nodes.get(m.name as NodeName);
            if (old !== undefined) next.set(old.name, old);
          }
        };
      }
      case 'pods': {
        const next = new Map<PodKey, PodInfo>();
        this.pending.pods = next;
        return (item) => {
          const m = metaOf(item);
          const r = decodePod(item, `Pod ${m.namespace}/${m.name}`);
          if (E.isRight(r)) next.set(r.right.key, r.right);
          else {
            this.badObject('pods', r.left, true);
            const key = `${m.namespace}/${m.name}` as PodKey;
            const old = this.pods.get(key);
            if (old !== undefined) next.set(key, old);
          }
        };
      }
      case 'settings': {
        const p = { s: DEFAULT_SETTINGS, found: false, blocked: false };
        this.pending.settings = p;
        return (item) => {
          const m = metaOf(item);
          if (m.name !== OWNERSHIP.settingsName) return;
          const r = decodeSettingsConfigMap(item, `ConfigMap ${OWNERSHIP.settingsNamespace}/${m.name}`);
          if (E.isRight(r)) p.s = r.right;
          else {
            this.badObject('settings', r.left, true);
            p.s = this.settings;
            // nothing valid to fall back on before the first sync: hold the sync (see settingsBlocked)
            p.blocked = !this.synced && !this.settingsFound;
          }
          p.found = true;
        };
      }
    }
  }

  commitList(kind: Kind): void {
    const refl = this.reflector(kind);
    const n = refl.listErrorCount();
    if (n > MAX_DECODE_ERRORS) {
      this.emitAlways({ kind: 'error', where: `list ${kind}`, message: `${n - MAX_DECODE_ERRORS} more objects did not decode (not reported one by one)` });
    }
    if (kind === 'nodes') this.nodes = this.pending.nodes!;
    else if (kind === 'pods') this.pods = this.pending.pods!;
    else {
      const p = this.pending.settings!;
      this.settingsBlocked = p.blocked;
      this.settings = p.s;
      this.settingsFound = p.found && !p.blocked;
    }
    this.pending = { ...this.pending, [kind]: undefined };
    this.listed.add(kind);
    if (!this.synced) this.maybeSync();
    else this.emit({ kind: 'replace', snapshot: this.snapshot() });
  }

  /** The first sync: once every kind is listed and the settings are not blocked. */
  private maybeSync(): void {
    if (this.synced || this.listed.size < 3) return;
    if (this.settingsBlocked) {
      this.emitAlways({
        kind: 'error',
        where: `ConfigMap ${OWNERSHIP.settingsNamespace}/${OWNERSHIP.settingsName}`,
        message: 'the settings do not decode and no valid settings are known yet: not synced, nothing is changed on this node until the ConfigMap is fixed or deleted',
        holdsSync: true,
      });
      return;
    }
    this.synced = true;
    this.emit({ kind: 'replace', snapshot: this.snapshot() });
    this.emit({ kind: 'synced' });
  }

  /** The whole cluster as the source knows it: copies, so that later events never change it. */
  private snapshot(): ClusterSnapshot {
    return { nodes: new Map(this.nodes), pods: new Map(this.pods), settings: this.settings, settingsFound: this.settingsFound };
  }

  upsert(kind: Kind, obj: unknown): void {
    const m = metaOf(obj);
    if (kind === 'nodes') {
      const r = decodeNode(obj, `Node ${m.name}`);
      if (E.isLeft(r)) return this.badObject(kind, r.left, false);
      const old = this.nodes.get(r.right.name);
      if (old !== undefined && sameNode(old, r.right)) return;
      this.nodes.set(r.right.name, r.right);
      this.emit({ kind: 'node-upsert', node: r.right });
    } else if (kind === 'pods') {
      const r = decodePod(obj, `Pod ${m.namespace}/${m.name}`);
      if (E.isLeft(r)) return this.badObject(kind, r.left, false);
      const old = this.pods.get(r.right.key);
      if (old !== undefined && samePod(old, r.right)) return;
      this.pods.set(r.right.key, r.right);
      this.emit({ kind: 'pod-upsert', pod: r.right });
    } else {
      if (m.name !== OWNERSHIP.settingsName) return;
      const r = decodeSettingsConfigMap(obj, `ConfigMap ${OWNERSHIP.settingsNamespace}/${m.name}`);
      if (E.isLeft(r)) return this.badObject(kind, r.left, false);
      if (this.settingsBlocked) {
        this.settingsBlocked = false;
        this.settings = r.right;
        this.settingsFound = true;
        return this.maybeSync();
      }
      if (this.settingsFound && sameSettings(this.settings, r.right)) return;
      this.settings = r.right;
      this.settingsFound = true;
      this.emit({ kind: 'settings', settings: r.right, found: true });
    }
  }

  remove(kind: Kind, obj: unknown): void {
    const m = metaOf(obj);
    if (kind === 'nodes') {
      const name = m.name as NodeName;
      if (!this.nodes.delete(name)) return;
      this.emit({ kind: 'node-delete', name });
    } else if (kind === 'pods') {
      const key = `${m.namespace}/${m.name}` as PodKey;
      if (!this.pods.delete(key)) return;
      this.emit({ kind: 'pod-delete', key });
    } else {
      if (m.name !== OWNERSHIP.settingsName) return;
      if (this.settingsBlocked) {
        // the bad ConfigMap is gone: the defaults are what the operator asks for now
        this.settingsBlocked = false;
        return this.maybeSync();
      }
      if (!this.settingsFound) return;
      this.settings = DEFAULT_SETTINGS;
      this.settingsFound = false;
      this.emit({ kind: 'settings', settings: DEFAULT_SETTINGS, found: false });
    }
  }

  // -------------------------------------------------------------------------------------------------
  // Writes

  private mergePatchOptions() {
    return setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  }

  private async patchNodeAnnotation(node: NodeName, key: string, value: string | null, what: string): Promise<void> {
    try {
      await this.api.patchNode({ name: node, body: { metadata: { annotations: { [key]: value } } } }, this.mergePatchOptions());
    } catch (e) {
      throw new Error(`kube source: ${what} on Node ${node}: ${errText(e)}`);
    }
  }

  publishKey(node: NodeName, key: WgKey | null): Promise<void> {
    return this.patchNodeAnnotation(node, OWNERSHIP.annotationPublicKey, key, key === null ? 'clearing the public key' : 'publishing the public key');
  }

  publishStatus(node: NodeName, status: PublishedStatus | null): Promise<void> {
    return this.patchNodeAnnotation(node, STATUS_ANNOTATION, status === null ? null : JSON.stringify(status), status === null ? 'clearing the status' : 'publishing the status');
  }

  async patchSettings(data: Readonly<Record<string, string>>): Promise<void> {
    const name = OWNERSHIP.settingsName;
    const namespace = OWNERSHIP.settingsNamespace;
    const where = `ConfigMap ${namespace}/${name}`;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await this.api.patchNamespacedConfigMap({ name, namespace, body: { data } }, this.mergePatchOptions());
        return;
      } catch (e) {
        if (httpCode(e) !== 404) throw new Error(`kube source: patching ${where}: ${errText(e)}`);
      }
      try {
        await this.api.createNamespacedConfigMap({ namespace, body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data: { ...data } } });
        return;
      } catch (e) {
        // 409: someone created it between our patch and our create: patch again.
        if (httpCode(e) !== 409) throw new Error(`kube source: creating ${where}: ${errText(e)}`);
      }
    }
    throw new Error(`kube source: ${where} keeps appearing and disappearing; gave up after 3 attempts`);
  }
}

/** The Kubernetes source (see the module comment). Throws when no configuration can be found. */
export function createKubeSource(opts: KubeSourceOptions): ClusterSource {
  const { kc, description } = loadKubeConfig(opts);
  return new KubeSource(kc, description, { ...DEFAULT_KUBE_TUNING, ...opts.tuning });
}

