// A stand-in Kubernetes API server for tests: real HTTP on 127.0.0.1 (random port), no auth, serving just
// enough of the core/v1 API for @kubernetes/client-node's list, watch, get, patch and create calls on
// Nodes, Pods and ConfigMaps. It is a stand-in (a real kube-apiserver cannot run here), not a fake of the
// client: everything goes over the wire, so the client's own request building, streaming and error paths
// are exercised.
//
// What it models:
// - One global resourceVersion counter bumped by every change; each object carries its own
//   metadata.resourceVersion; an event history per change (kept until `compact()`).
// - list: `kind: XList` with metadata.resourceVersion, `limit`/`continue` paging over a consistent
//   snapshot; a list (or continue token) at a resourceVersion older than the compacted history is HTTP 410.
// - watch (`?watch=true`): JSON lines `{type, object}` of ADDED/MODIFIED/DELETED since `resourceVersion`
//   (unset or "0": synthetic ADDED for every current object first); a resourceVersion older than the
//   compacted history gets an ERROR event carrying a Status with code 410, then the stream ends; BOOKMARK
//   events on demand (`bookmark()`) to watches that asked with allowWatchBookmarks=true; `timeoutSeconds`.
// - fieldSelector `metadata.name=X` / `metadata.namespace=X` (comma-separated, equality only).
// - PATCH with application/merge-patch+json (RFC 7386) and application/strategic-merge-patch+json (treated
//   as a merge patch: right for maps such as annotations, not for lists); other patch types get 415.
// - POST (create) of ConfigMaps (409 when it exists); GET of one object (404 when missing).
// Test controls: put/remove objects, compact history, drop all watches, make the server unreachable (the
// listening socket closes and every connection is destroyed) and reachable again on the same port, and a
// request log for assertions.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type StandinResource = 'nodes' | 'pods' | 'configmaps';

const KIND: Readonly<Record<StandinResource, string>> = { nodes: 'Node', pods: 'Pod', configmaps: 'ConfigMap' };
const NAMESPACED: Readonly<Record<StandinResource, boolean>> = { nodes: false, pods: true, configmaps: true };

type Json = Record<string, unknown>;

export interface StandinRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly contentType: string | null;
  /** The parsed JSON body (PATCH/POST), or undefined. */
  readonly body: unknown;
  readonly status: number;
}

interface HistoryEvent {
  readonly rv: number;
  readonly resource: StandinResource;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly object: Json;
}

interface WatchConn {
  readonly resource: StandinResource;
  readonly namespace: string | null;
  readonly selector: (o: Json) => boolean;
  readonly bookmarks: boolean;
  readonly res: ServerResponse;
  timer: NodeJS.Timeout | null;
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

function isRec(u: unknown): u is Json {
  return u !== null && typeof u === 'object' && !Array.isArray(u);
}

/** RFC 7386 JSON merge patch. Returns a new value; `target` is not modified. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isRec(patch)) return clone(patch);
  const out: Json = isRec(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function meta(o: Json): Json {
  if (!isRec(o.metadata)) o.metadata = {};
  return o.metadata as Json;
}

function objKey(o: Json): string {
  const m = meta(o);
  return `${typeof m.namespace === 'string' ? m.namespace : ''}/${String(m.name)}`;
}

function status(code: number, reason: string, message: string): Json {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function parseSelector(sel: string | undefined): (o: Json) => boolean {
  if (sel === undefined || sel === '') return () => true;
  const terms = sel.split(',').map((t) => {
    const [field, value] = t.split('=') as [string, string | undefined];
    if (value === undefined) throw new Error(`unsupported field selector ${JSON.stringify(t)}`);
    const f = field.replace(/=$/, '');
    if (f !== 'metadata.name' && f !== 'metadata.namespace') throw new Error(`unsupported field selector field ${JSON.stringify(f)}`);
    return { f, value: value.replace(/^=/, '') };
  });
  return (o) => terms.every(({ f, value }) => (f === 'metadata.name' ? meta(o).name : meta(o).namespace ?? '') === value);
}

export interface StandinOptions {
  /** Put these objects in before the server starts (resource inferred from `kind`). */
  readonly objects?: readonly unknown[];
}

export class StandinApiServer {
  readonly requests: StandinRequest[] = [];
  private readonly store: Record<StandinResource, Map<string, Json>> = { nodes: new Map(), pods: new Map(), configmaps: new Map() };
  private history: HistoryEvent[] = [];
  private rv = 1;
  /** Resource versions below this are gone (410): the history starts here. */
  private compactedRv = 0;
  private readonly watches = new Set<WatchConn>();
  private readonly sockets = new Set<Socket>();
  private readonly pages = new Map<string, { rv: number; items: Json[] }>();
  private pageSeq = 0;
  private reachable = true;
  private port = 0;
  private readonly dir: string;
  readonly kubeconfigPath: string;

  private constructor(private readonly server: Server) {
    this.dir = mkdtempSync(join(tmpdir(), 'wgplane-standin-'));
    this.kubeconfigPath = join(this.dir, 'kubeconfig');
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  static async start(opts: StandinOptions = {}): Promise<StandinApiServer> {
    let self!: StandinApiServer;
    const server = createServer((req, res) => self.handle(req, res));
    self = new StandinApiServer(server);
    for (const o of opts.objects ?? []) self.put(o);
    await self.listen(0);
    self.writeKubeconfig();
    return self;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get resourceVersion(): string {
    return String(this.rv);
  }

  private async listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const addr = this.server.address();
    if (addr === null || typeof addr === 'string') throw new Error('stand-in API server: no TCP address');
    this.port = addr.port;
  }

  private writeKubeconfig(): void {
    const cfg = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'standin', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'standin', user: {} }],
      contexts: [{ name: 'standin', context: { cluster: 'standin', user: 'standin' } }],
      'current-context': 'standin',
    };
    writeFileSync(this.kubeconfigPath, JSON.stringify(cfg, null, 2));
  }

  async close(): Promise<void> {
    this.dropWatches();
    for (const s of this.sockets) s.destroy();
    if (this.server.listening) await new Promise<void>((r) => this.server.close(() => r()));
    rmSync(this.dir, { recursive: true, force: true });
  }

  // -------------------------------------------------------------------------------------------------
  // Test controls

  /** Adds or replaces an object (ADDED or MODIFIED event), bumping the resourceVersion. Returns the stored copy. */
  put(object: unknown, resource?: StandinResource): Json {
    if (!isRec(object)) throw new Error('stand-in: put wants an object');
    const res = resource ?? resourceOfKind(object.kind);
    const o = clone(object);
    const m = meta(o);
    if (typeof m.name !== 'string' || m.name === '') throw new Error('stand-in: object without metadata.name');
    if (NAMESPACED[res] && (typeof m.namespace !== 'string' || m.namespace === '')) m.namespace = 'default';
    o.apiVersion ??= 'v1';
    o.kind ??= KIND[res];
    const key = objKey(o);
    const existed = this.store[res].has(key);
    if (!existed && m.uid === undefined) m.uid = `standin-${res}-${key}`;
    m.resourceVersion = String(++this.rv);
    this.store[res].set(key, o);
    this.record(res, existed ? 'MODIFIED' : 'ADDED', o);
    return clone(o);
  }

  /** Deletes an object (DELETED event). Returns whether it existed. */
  remove(resource: StandinResource, name: string, namespace?: string): boolean {
    const key = `${NAMESPACED[resource] ? (namespace ?? 'default') : ''}/${name}`;
    const o = this.store[resource].get(key);
    if (o === undefined) return false;
    this.store[resource].delete(key);
    const gone = clone(o);
    meta(gone).resourceVersion = String(++this.rv);
    this.record(resource, 'DELETED', gone);
    return true;
  }

  get(resource: StandinResource, name: string, namespace?: string): Json | undefined {
    const o = this.store[resource].get(`${NAMESPACED[resource] ? (namespace ?? 'default') : ''}/${name}`);
    return o === undefined ? undefined : clone(o);
  }

  /** Forgets the event history: every resourceVersion before now gets 410 Gone. */
  compact(): void {
    this.compactedRv = this.rv;
    this.history = [];
  }

  /** Ends every open watch stream (as an API server restart or a load balancer would). */
  dropWatches(): void {
    for (const w of this.watches) this.endWatch(w);
  }

  /** Sends a BOOKMARK at the current resourceVersion to the watches that allow bookmarks. */
  bookmark(): void {
    for (const w of this.watches) {
      if (!w.bookmarks) continue;
      this.send(w, { type: 'BOOKMARK', object: { kind: KIND[w.resource], apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) } } });
    }
  }

  /** Number of open watch streams (for a resource, or all). */
  watchCount(resource?: StandinResource): number {
    let n = 0;
    for (const w of this.watches) if (resource === undefined || w.resource === resource) n++;
    return n;
  }

  /** Unreachable: the listening socket is closed and every connection destroyed (connection refused). */
  async setReachable(reachable: boolean): Promise<void> {
    if (reachable === this.reachable) return;
    this.reachable = reachable;
    if (!reachable) {
      for (const w of this.watches) if (w.timer) clearTimeout(w.timer);
      this.watches.clear();
      for (const s of this.sockets) s.destroy();
      await new Promise<void>((r) => this.server.close(() => r()));
    } else {
      await this.listen(this.port);
    }
  }

  // -------------------------------------------------------------------------------------------------

  private record(resource: StandinResource, type: HistoryEvent['type'], object: Json): void {
    const ev: HistoryEvent = { rv: this.rv, resource, type, object: clone(object) };
    this.history.push(ev);
    for (const w of this.watches) if (w.resource === resource) this.deliver(w, ev);
  }

  private deliver(w: WatchConn, ev: HistoryEvent): void {
    if (w.namespace !== null && meta(ev.object).namespace !== w.namespace) return;
    if (!w.selector(ev.object)) return;
    this.send(w, { type: ev.type, object: ev.object });
  }

  private send(w: WatchConn, line: unknown): void {
    if (!w.res.writableEnded) w.res.write(JSON.stringify(line) + '\n');
  }

  private endWatch(w: WatchConn): void {
    if (w.timer) clearTimeout(w.timer);
    this.watches.delete(w);
    if (!w.res.writableEnded) w.res.end();
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://standin');
      const query: Record<string, string> = {};
      for (const [k, v] of url.searchParams) query[k] = v;
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      let bad = false;
      if (text !== '') {
        try {
          body = JSON.parse(text);
        } catch {
          bad = true;
        }
      }
      const contentType = (req.headers['content-type'] ?? null) as string | null;
      const entry = { method: req.method ?? 'GET', path: url.pathname, query, contentType, body, status: 0 };
      this.requests.push(entry);
      const reply = (code: number, obj: unknown): void => {
        entry.status = code;
        res.writeHead(code, { 'content-type': 'application/json' });
        res.end(JSON.stringify(obj));
      };
      if (bad) return reply(400, status(400, 'BadRequest', 'the body is not JSON'));
      try {
        this.route(entry, res, reply, (code) => (entry.status = code));
      } catch (e) {
        reply(500, status(500, 'InternalError', e instanceof Error ? e.message : String(e)));
      }
    });
  }

  private route(
    r: { method: string; path: string; query: Record<string, string>; contentType: string | null; body: unknown },
    res: ServerResponse,
    reply: (code: number, obj: unknown) => void,
    streaming: (code: number) => void,
  ): void {
    const parts = r.path.split('/').filter((p) => p !== '');
    if (parts[0] !== 'api' || parts[1] !== 'v1') return reply(404, status(404, 'NotFound', `the stand-in serves /api/v1 only, not ${r.path}`));
    let i = 2;
    let namespace: string | null = null;
    if (parts[i] === 'namespaces' && parts.length >= 5) {
      namespace = parts[i + 1]!;
      i += 2;
    }
    const resource = parts[i] as StandinResource | undefined;
    if (resource === undefined || !(resource in KIND)) return reply(404, status(404, 'NotFound', `unknown resource in ${r.path}`));
    const name = parts[i + 1];
    if (parts.length > i + 2) return reply(404, status(404, 'NotFound', `subresources are not served: ${r.path}`));
    if (NAMESPACED[resource] === false && namespace !== null) return reply(404, status(404, 'NotFound', `${resource} are not namespaced`));

    if (name === undefined) {
      if (r.method === 'GET' && r.query.watch === 'true') return this.watch(resource, namespace, r.query, res, reply, streaming);
      if (r.method === 'GET') return this.list(resource, namespace, r.query, reply);
      if (r.method === 'POST') return this.create(resource, namespace, r.body, reply);
      return reply(405, status(405, 'MethodNotAllowed', `${r.method} on a collection`));
    }
    const key = `${NAMESPACED[resource] ? namespace ?? '' : ''}/${name}`;
    const current = this.store[resource].get(key);
    if (r.method === 'GET') {
      return current === undefined ? reply(404, status(404, 'NotFound', `${resource} "${name}" not found`)) : reply(200, current);
    }
    if (r.method === 'PATCH') {
      const ct = (r.contentType ?? '').split(';')[0]!.trim();
      if (ct !== 'application/merge-patch+json' && ct !== 'application/strategic-merge-patch+json') {
        return reply(415, status(415, 'UnsupportedMediaType', `the stand-in does not serve patch type ${JSON.stringify(ct)}`));
      }
      if (current === undefined) return reply(404, status(404, 'NotFound', `${resource} "${name}" not found`));
      if (!isRec(r.body)) return reply(400, status(400, 'BadRequest', 'a merge patch must be an object'));
      const next = mergePatch(current, r.body) as Json;
      // Identity fields cannot change through a patch.
      const m = meta(next);
      const cm = meta(current);
      m.name = cm.name;
      if (cm.namespace !== undefined) m.namespace = cm.namespace;
      m.uid = cm.uid;
      m.resourceVersion = cm.resourceVersion;
      if (JSON.stringify(next) === JSON.stringify(current)) return reply(200, current);
      return reply(200, this.put(next, resource));
    }
    return reply(405, status(405, 'MethodNotAllowed', `${r.method} on an object`));
  }

  private selected(resource: StandinResource, namespace: string | null, query: Record<string, string>): Json[] {
    const sel = parseSelector(query.fieldSelector);
    const out: Json[] = [];
    for (const o of this.store[resource].values()) {
      if (namespace !== null && meta(o).namespace !== namespace) continue;
      if (sel(o)) out.push(o);
    }
    return out;
  }

  private list(resource: StandinResource, namespace: string | null, query: Record<string, string>, reply: (code: number, obj: unknown) => void): void {
    let page: { rv: number; items: Json[] };
    const cont = query.continue;
    if (cont !== undefined && cont !== '') {
      const p = this.pages.get(cont);
      if (p === undefined || p.rv < this.compactedRv) {
        return reply(410, status(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result.'));
      }
      this.pages.delete(cont);
      page = p;
    } else {
      const rvq = query.resourceVersion;
      if (rvq !== undefined && rvq !== '' && rvq !== '0' && Number(rvq) < this.compactedRv) {
        return reply(410, status(410, 'Expired', `too old resource version: ${rvq} (${this.compactedRv + 1})`));
      }
      page = { rv: this.rv, items: this.selected(resource, namespace, query).map(clone) };
    }
    const limit = Number(query.limit ?? '0');
    let items = page.items;
    let next: string | undefined;
    if (limit > 0 && items.length > limit) {
      next = `standin-${++this.pageSeq}`;
      this.pages.set(next, { rv: page.rv, items: items.slice(limit) });
      items = items.slice(0, limit);
    }
    reply(200, {
      kind: `${KIND[resource]}List`,
      apiVersion: 'v1',
      metadata: next === undefined ? { resourceVersion: String(page.rv) } : { resourceVersion: String(page.rv), continue: next },
      items,
    });
  }

  private watch(
    resource: StandinResource,
    namespace: string | null,
    query: Record<string, string>,
    res: ServerResponse,
    reply: (code: number, obj: unknown) => void,
    streaming: (code: number) => void,
  ): void {
    let selector: (o: Json) => boolean;
    try {
      selector = parseSelector(query.fieldSelector);
    } catch (e) {
      return reply(400, status(400, 'BadRequest', (e as Error).message));
    }
    streaming(200);
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const w: WatchConn = { resource, namespace, selector, bookmarks: query.allowWatchBookmarks === 'true', res, timer: null };
    const rvq = query.resourceVersion;
    if (rvq === undefined || rvq === '' || rvq === '0') {
      for (const o of this.selected(resource, namespace, query)) this.send(w, { type: 'ADDED', object: o });
    } else {
      const from = Number(rvq);
      if (!Number.isFinite(from) || from < this.compactedRv) {
        this.send(w, { type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${rvq} (${this.compactedRv + 1})`) });
        res.end();
        return;
      }
      for (const ev of this.history) if (ev.resource === resource && ev.rv > from) this.deliver(w, ev);
    }
    this.watches.add(w);
    res.on('close', () => {
      if (w.timer) clearTimeout(w.timer);
      this.watches.delete(w);
    });
    const timeout = Number(query.timeoutSeconds ?? '0');
    if (timeout > 0) w.timer = setTimeout(() => this.endWatch(w), timeout * 1000);
  }

  private create(resource: StandinResource, namespace: string | null, body: unknown, reply: (code: number, obj: unknown) => void): void {
    if (resource !== 'configmaps') return reply(405, status(405, 'MethodNotAllowed', `the stand-in creates configmaps only`));
    if (!isRec(body)) return reply(400, status(400, 'BadRequest', 'the body must be an object'));
    const m = meta(body);
    if (namespace === null) return reply(404, status(404, 'NotFound', 'create needs a namespace'));
    if (m.namespace !== undefined && m.namespace !== namespace) return reply(400, status(400, 'BadRequest', 'namespace mismatch'));
    m.namespace = namespace;
    if (typeof m.name !== 'string' || m.name === '') return reply(422, status(422, 'Invalid', 'metadata.name: Required value'));
    if (this.store.configmaps.has(objKey(body))) return reply(409, status(409, 'AlreadyExists', `configmaps "${m.name}" already exists`));
    reply(201, this.put(body, 'configmaps'));
  }
}

function resourceOfKind(kind: unknown): StandinResource {
  switch (kind) {
    case 'Node':
      return 'nodes';
    case 'Pod':
      return 'pods';
    case 'ConfigMap':
      return 'configmaps';
    default:
      throw new Error(`stand-in: cannot store kind ${JSON.stringify(kind)}`);
  }
}
