// `--source dir:PATH`: the cluster as a directory of manifests (what `wgplane plan --snapshot DIR` reads),
// watched for changes. Several agents on one machine share it (the tests, the lab).
//
// - Reading: every manifest under the directory (adapters/manifest.ts rules), parsed per file and decoded
//   together (core/decode.ts), with the node publications merged onto their Nodes (adapters/publication.ts).
//   Each change emits `replace` with the whole snapshot, but only when the snapshot really changed (a status
//   publication changes no NodeInfo: without this, agents publishing status would wake each other forever).
//   `synced` follows the first read in which every file was good.
// - A file that fails to parse or decode gets an `error` event naming it, and its last good content is kept:
//   a half-written file never flaps the mesh. A bad file that never was good is left out; before the first
//   sync none may be bad (a partial first read could make the agent remove what a missing file describes).
//   Files are read when the directory has been quiet for `debounceMs`, and a file that changes while it is
//   read is read again.
// - Watching: fs.watch (recursive) for promptness, plus a poll every `pollMs` (stat only; files whose
//   identity, size and times are unchanged are not read again) because watches miss things on some file
//   systems and do not exist before the directory does.
// - Publishing: each agent writes only `<dir>/wgplane-published/<node>.yaml` (tmp file + rename), never
//   another agent's or the operator's files. patchSettings edits the document of the ConfigMap
//   kube-system/wgplane in place (yaml Document API: the file's other documents and comments stay), or
//   writes `<dir>/wgplane-settings.yaml` when no file holds it.
import { type FSWatcher, watch } from 'node:fs';
import { mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { type Document, isMap, parseAllDocuments, stringify } from 'yaml';
import { type DecodeError, type SourceDocument, decodeObjects, formatDecodeError } from '../../core/decode.js';
import type { WgKey } from '../../core/key.js';
import type { ClusterSnapshot, NodeName } from '../../core/model.js';
import { OWNERSHIP } from '../../core/model.js';
import { decodeSettings } from '../../core/settings.js';
import { SnapshotError, listManifests, parseText } from '../manifest.js';
import {
  PUBLICATION_DIR,
  type NodeAnnotations,
  type Publication,
  decodePublication,
  mergePublications,
  isPublicationDocument,
  isValidNodeName,
  nodeAnnotations,
  publicationText,
} from '../publication.js';
import type { ClusterEvent, ClusterSource, PublishedStatus } from './source.js';

export interface DirSourceOptions {
  /** Interval of the poll fallback (ms). Default 1000. */
  readonly pollMs?: number;
  /** Quiet time after a change before the directory is read (ms). Default 50. */
  readonly debounceMs?: number;
}

export interface DirSource extends ClusterSource {
  readonly dir: string;
  /** The wgplane annotations (key, status) of every Node as of the last good read, publications merged. */
  nodeAnnotations(): ReadonlyMap<NodeName, NodeAnnotations>;
}

/** The file that holds the settings when no manifest does. */
export const SETTINGS_FILE = 'wgplane-settings.yaml';

export class DirSourceError extends Error {
  override readonly name = 'DirSourceError';
}

interface FileState {
  /** Identity of the content last read (inode, size, mtime, ctime). */
  sig: string;
  /** The documents of the last content that was accepted, or null if it never was. */
  good: SourceDocument[] | null;
  /** The sig of content already reported bad (so a bad file is reported once per change). */
  reportedSig: string | null;
}

type Rec = Record<string, unknown>;
const isRec = (u: unknown): u is Rec => u !== null && typeof u === 'object' && !Array.isArray(u);
const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));
const sigOf = (s: { ino: number; size: number; mtimeMs: number; ctimeMs: number }) => `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;

/** A text that changes when and only when the snapshot does (for suppressing replays). */
function fingerprint(s: ClusterSnapshot): string {
  return JSON.stringify([[...s.nodes.values()], [...s.pods.values()], s.settings, s.settingsFound]);
}

/** Writes `text` to `file` atomically: a hidden temporary file in the same directory, then rename. */
async function atomicWrite(file: string, text: string, mode = 0o644): Promise<void> {
  const tmp = join(dirname(file), `.${basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await writeFile(tmp, text, { mode });
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

function isSettingsCM(u: unknown, defaultKind = ''): u is Rec {
  if (!isRec(u) || (u.kind ?? defaultKind) !== 'ConfigMap' || (u.apiVersion ?? (defaultKind ? 'v1' : undefined)) !== 'v1') return false;
  const md = u.metadata;
  return isRec(md) && md.namespace === OWNERSHIP.settingsNamespace && md.name === OWNERSHIP.settingsName;
}

/** The path (within a document) of the settings ConfigMap: [] for a top-level object, ['items', i] in a List. */
function settingsPathIn(value: unknown): (string | number)[] | null {
  if (isSettingsCM(value)) return [];
  if (isRec(value) && value.apiVersion === 'v1' && (value.kind === 'List' || value.kind === 'ConfigMapList') && Array.isArray(value.items)) {
    const dk = value.kind === 'ConfigMapList' ? 'ConfigMap' : '';
    const i = value.items.findIndex((it) => isSettingsCM(it, dk));
    if (i >= 0) return ['items', i];
  }
  return null;
}

/** The stringify options that reproduce the operator's layout best (kubectl writes sequences
 *  unindented, the yaml library indents them by default): a patch must not re-indent the whole file. */
function yamlStyle(text: string): { indentSeq: boolean; lineWidth: number } {
  const options = [{ indentSeq: true, lineWidth: 0 }, { indentSeq: false, lineWidth: 0 }, { indentSeq: true, lineWidth: 80 }, { indentSeq: false, lineWidth: 80 }];
  const lines = new Set(text.split('\n'));
  let best = options[0]!;
  let bestScore = -1;
  for (const o of options) {
    const out = parseAllDocuments(text);
    if (!Array.isArray(out)) return best;
    const printed = out.map((d) => d.toString(o)).join('');
    if (printed === text) return o;
    const score = printed.split('\n').filter((l) => lines.has(l)).length;
    if (score > bestScore) {
      best = o;
      bestScore = score;
    }
  }
  return best;
}

class Dir implements DirSource {
  readonly description: string;
  private readonly files = new Map<string, FileState>();
  private readonly pollMs: number;
  private readonly debounceMs: number;
  private onEvent: ((e: ClusterEvent) => void) | null = null;
  private watcher: FSWatcher | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private debounceTimer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private synced = false;
  private lastPrint: string | null = null;
  private lastDocs: SourceDocument[] = [];
  private lastDirError: string | null = null;
  /** What this process has published, per node (the file is rewritten whole). */
  private readonly published = new Map<NodeName, { publicKey: WgKey | null; status: PublishedStatus | null }>();
  private writes: Promise<unknown> = Promise.resolve();

  constructor(readonly dir: string, opts: DirSourceOptions) {
    this.description = `dir:${dir}`;
    this.pollMs = opts.pollMs ?? 1000;
    this.debounceMs = opts.debounceMs ?? 50;
  }

  async start(onEvent: (e: ClusterEvent) => void): Promise<void> {
    if (this.onEvent) throw new DirSourceError(`${this.description}: already started`);
    this.onEvent = onEvent;
    this.stopped = false;
    this.startWatch();
    await this.reload();
    this.pollTimer = setInterval(() => {
      if (!this.watcher) this.startWatch();
      this.schedule(0);
    }, this.pollMs);
    this.pollTimer.unref?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = null;
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    this.pollTimer = this.debounceTimer = null;
    await this.running;
    await this.writes.catch(() => undefined);
    this.onEvent = null;
  }

  nodeAnnotations(): ReadonlyMap<NodeName, NodeAnnotations> {
    return nodeAnnotations(this.lastDocs);
  }

  // ----------------------------------------------------------------------------------------------
  // Reading

  private emit(e: ClusterEvent): void {
    if (!this.stopped) this.onEvent?.(e);
  }

  private startWatch(): void {
    try {
      const w = watch(this.dir, { recursive: true, persistent: false }, () => this.schedule(this.debounceMs));
      w.on('error', () => {
        w.close();
        if (this.watcher === w) this.watcher = null; // the poll carries on and retries the watch
      });
      this.watcher = w;
    } catch {
      this.watcher = null; // no directory yet, or no watch support: the poll reads it
    }
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    if (this.debounceTimer) {
      if (delay === 0) return; // a read is pending anyway
      clearTimeout(this.debounceTimer);
    }
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = null;
      void this.reload();
    }, delay);
  }

  /** Reads the directory now (serialised: a request during a read runs one more read after it). */
  reload(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.readOnce().catch((e) => this.emit({ kind: 'error', where: this.dir, message: errorText(e) }));
        } while (this.again && !this.stopped);
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  private dirError(message: string): void {
    if (this.lastDirError === message) return;
    this.lastDirError = message;
    this.emit({ kind: 'error', where: this.dir, message });
  }

  private async readOnce(): Promise<void> {
    let paths: string[];
    try {
      paths = await listManifests(this.dir);
    } catch (e) {
      this.dirError(`cannot read the directory: ${errorText(e)}`);
      return;
    }
    if (paths.length === 0) {
      this.dirError('no *.yaml, *.yml or *.json files in this directory');
      return;
    }
    this.lastDirError = null;
    let changed = false;
    const listed = new Set(paths);
    for (const f of [...this.files.keys()]) {
      if (listed.has(f)) continue;
      this.files.delete(f); // removed: its objects go
      changed = true;
    }

    // New content per file (candidates); unchanged files keep their good documents.
    const candidates = new Map<string, { docs: SourceDocument[]; sig: string }>();
    const bad = new Map<string, string>(); // file -> message, for files whose new content is bad
    for (const f of paths) {
      const st = this.files.get(f);
      let sig: string;
      try {
        sig = sigOf(await stat(f));
      } catch {
        continue; // vanished between list and stat: the next read sees it gone
      }
      if (st && st.sig === sig) continue;
      changed = true;
      let text: string;
      try {
        text = await readFile(f, 'utf8');
        const after = sigOf(await stat(f));
        if (after !== sig) {
          this.schedule(this.debounceMs); // written while read: read it again when the writer is done
          continue;
        }
      } catch (e) {
        bad.set(f, `cannot read: ${errorText(e)}`);
        this.mark(f, sig);
        continue;
      }
      this.mark(f, sig);
      try {
        candidates.set(f, { docs: parseText(text, f, /\.json$/i.test(f) ? 'json' : 'yaml'), sig });
      } catch (e) {
        bad.set(f, e instanceof SnapshotError ? e.errors.map(formatDecodeError).join('; ') : errorText(e));
      }
    }
    if (!changed && this.synced) return;

    // Decode all together; a candidate whose documents do not decode falls back to its last good content.
    let result: { snapshot: ClusterSnapshot; docs: SourceDocument[] } | null = null;
    let unattributed: DecodeError[] = [];
    for (let round = 0; round <= paths.length + 1; round++) {
      const docs: SourceDocument[] = [];
      for (const f of paths) {
        const c = candidates.get(f);
        const d = c ? c.docs : this.files.get(f)?.good;
        if (d) docs.push(...d);
      }
      const errors = this.decode(docs);
      if (E.isRight(errors)) {
        result = errors.right;
        break;
      }
      const byFile = new Map<string, DecodeError[]>();
      unattributed = [];
      for (const e of errors.left) {
        const f = paths.find((p) => e.where === p || e.where.startsWith(p + ': '));
        if (f !== undefined && candidates.has(f)) byFile.set(f, [...(byFile.get(f) ?? []), e]);
        else unattributed.push(e);
      }
      if (byFile.size === 0) {
        if (candidates.size === 0) break; // the last good contents do not go together: nothing to fall back on
        // The error shows in a file that did not change (a duplicate of an object in a changed file):
        // every changed file falls back.
        for (const f of candidates.keys()) bad.set(f, errors.left.map(formatDecodeError).join('; '));
        candidates.clear();
        continue;
      }
      for (const [f, es] of byFile) {
        bad.set(f, es.map(formatDecodeError).join('; '));
        candidates.delete(f);
      }
    }

    for (const [f, message] of bad) {
      const st = this.files.get(f);
      if (st && st.reportedSig === st.sig) continue;
      if (st) st.reportedSig = st.sig;
      const kept = st?.good ? 'its last good content is kept' : 'it is left out';
      this.emit({ kind: 'error', where: f, message: `${message} (${kept})` });
    }
    if (!result) {
      if (unattributed.length > 0) this.emit({ kind: 'error', where: this.dir, message: `${unattributed.map(formatDecodeError).join('; ')} (the previous snapshot is kept)` });
      return;
    }
    for (const [f, c] of candidates) {
      const st = this.files.get(f)!;
      st.good = c.docs;
      st.reportedSig = null;
    }
    const leftOut = paths.some((f) => !this.files.get(f)?.good);
    if (!this.synced && leftOut) return; // the first sync waits until every file is good
    this.lastDocs = result.docs;
    const print = fingerprint(result.snapshot);
    if (print !== this.lastPrint) {
      this.lastPrint = print;
      this.emit({ kind: 'replace', snapshot: result.snapshot });
    }
    if (!this.synced) {
      this.synced = true;
      this.emit({ kind: 'synced' });
    }
  }

  private mark(f: string, sig: string): void {
    const st = this.files.get(f);
    if (st) st.sig = sig;
    else this.files.set(f, { sig, good: null, reportedSig: null });
  }

  private decode(docs: SourceDocument[]): E.Either<DecodeError[], { snapshot: ClusterSnapshot; docs: SourceDocument[] }> {
    const merged = mergePublications(docs);
    if (E.isLeft(merged)) return merged;
    const r = decodeObjects(merged.right);
    return E.isLeft(r) ? E.left([...r.left]) : E.right({ snapshot: r.right, docs: merged.right });
  }

  // ----------------------------------------------------------------------------------------------
  // Publishing

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.writes.then(fn, fn);
    this.writes = p.catch(() => undefined);
    return p;
  }

  private publicationFile(node: NodeName): string {
    if (!isValidNodeName(node)) throw new DirSourceError(`${JSON.stringify(node)} is not a node name: nothing published`);
    return join(this.dir, PUBLICATION_DIR, `${node}.yaml`);
  }

  /** What this node has published so far: from memory, else from its file (written by an earlier run). */
  private async current(node: NodeName, file: string): Promise<{ publicKey: WgKey | null; status: PublishedStatus | null }> {
    const mine = this.published.get(node);
    if (mine) return mine;
    try {
      const docs = parseText(await readFile(file, 'utf8'), file, 'yaml');
      const d = docs.find((x) => isPublicationDocument(x.value));
      if (d && isRec(d.value)) {
        const r = decodePublication(d.value, file);
        if (E.isRight(r) && r.right.node === node) return { publicKey: r.right.publicKey, status: r.right.status };
      }
    } catch {
      // no file, or not readable: start afresh
    }
    return { publicKey: null, status: null };
  }

  private publish(node: NodeName, change: (p: { publicKey: WgKey | null; status: PublishedStatus | null }) => { publicKey: WgKey | null; status: PublishedStatus | null }): Promise<void> {
    return this.serial(async () => {
      const file = this.publicationFile(node);
      const next = change(await this.current(node, file));
      await mkdir(dirname(file), { recursive: true });
      await atomicWrite(file, publicationText(node, next.publicKey, next.status));
      this.published.set(node, next);
    });
  }

  publishKey(node: NodeName, key: WgKey | null): Promise<void> {
    return this.publish(node, (p) => ({ ...p, publicKey: key }));
  }

  publishStatus(node: NodeName, status: PublishedStatus | null): Promise<void> {
    return this.publish(node, (p) => ({ ...p, status }));
  }

  patchSettings(data: Readonly<Record<string, string>>): Promise<void> {
    return this.serial(async () => {
      const check = decodeSettings(data, 'settings');
      if (E.isLeft(check)) throw new DirSourceError(`nothing written: ${check.left.map(formatDecodeError).join('; ')}`);
      let paths: string[] = [];
      try {
        paths = await listManifests(this.dir);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        await mkdir(this.dir, { recursive: true });
      }
      for (const f of paths) {
        if (f.startsWith(join(this.dir, PUBLICATION_DIR) + '/')) continue;
        const text = await readFile(f, 'utf8');
        const mode = (await stat(f)).mode & 0o777;
        if (/\.json$/i.test(f)) {
          let value: unknown;
          try {
            value = JSON.parse(text);
          } catch {
            continue; // not ours to judge here; the reader reports it
          }
          const path = settingsPathIn(value);
          if (!path) continue;
          let cm: Rec = value as Rec;
          for (const k of path) cm = (cm as Record<string | number, unknown>)[k] as Rec;
          cm.data = { ...(isRec(cm.data) ? cm.data : {}), ...data };
          await atomicWrite(f, JSON.stringify(value, null, 2) + '\n', mode);
          return;
        }
        const docs = parseAllDocuments(text);
        if (!Array.isArray(docs)) continue;
        const style = yamlStyle(text);
        const found = docs.findIndex((d) => d.errors.length === 0 && settingsPathIn(d.toJS()) !== null);
        if (found < 0) continue;
        const doc = docs[found] as Document.Parsed;
        const path = [...settingsPathIn(doc.toJS())!, 'data'];
        if (isMap(doc.getIn(path, true))) {
          for (const [k, v] of Object.entries(data)) doc.setIn([...path, k], v);
        } else {
          const old = doc.getIn(path);
          doc.setIn(path, doc.createNode({ ...(isRec(old) ? old : {}), ...data }));
        }
        await atomicWrite(f, docs.map((d) => d.toString(style)).join(''), mode);
        return;
      }
      const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: OWNERSHIP.settingsName, namespace: OWNERSHIP.settingsNamespace }, data: { ...data } };
      await atomicWrite(join(this.dir, SETTINGS_FILE), `# wgplane's settings (written by wgplane enable/disable; edit freely)\n${stringify(cm)}`);
    });
  }
}

/** The dir source for `--source dir:PATH`. */
export function createDirSource(dir: string, opts: DirSourceOptions = {}): DirSource {
  return new Dir(dir, opts);
}

/** Parses `dir:PATH` (null when `spec` is not a dir source). */
export function parseDirSpec(spec: string): string | null {
  return spec.startsWith('dir:') && spec.length > 4 ? spec.slice(4) : null;
}

export type { Publication };
