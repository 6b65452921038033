// Node publications of the dir source: what an agent publishes about its own node (public key, status)
// when the cluster is a directory of manifests. Each agent writes only its own file
// `<dir>/wgplane-published/<node>.yaml` holding one document
//
//   apiVersion: wgplane.io/v1
//   kind: NodePublication
//   metadata: {name: <node>}
//   publicKey: <base64 public key, or null when cleared>
//   status: {...PublishedStatus, or null}
//
// When the directory is read (by the dir source and by `readSnapshot`, so `wgplane plan --snapshot DIR`
// sees published keys), publications are merged onto the Nodes as the annotations wgplane.io/public-key and
// wgplane.io/status, exactly as the daemon's kube source would find them on the API server. A publication
// overrides an annotation of the operator's Node manifest (the agent is the authority on its own key); a
// publication for a node that does not exist is ignored. No I/O here: parsing and merging of documents.
import * as E from 'fp-ts/lib/Either.js';
import { stringify } from 'yaml';
import type { DecodeError, SourceDocument } from '../core/decode.js';
import { showValue } from '../core/errors.js';
import { type WgKey, parseKey } from '../core/key.js';
import { type NodeName, OWNERSHIP } from '../core/model.js';
import { STATUS_ANNOTATION, type PublishedStatus } from './sources/source.js';

export const PUBLICATION_DIR = 'wgplane-published';
export const PUBLICATION_API_VERSION = 'wgplane.io/v1';
export const PUBLICATION_KIND = 'NodePublication';

export interface Publication {
  readonly node: NodeName;
  readonly publicKey: WgKey | null;
  readonly status: PublishedStatus | null;
  /** `<file>: document N`, for messages. */
  readonly where: string;
}

type Rec = Record<string, unknown>;
const isRec = (u: unknown): u is Rec => u !== null && typeof u === 'object' && !Array.isArray(u);

/** A Kubernetes node name (DNS subdomain): also safe as a file name. */
export function isValidNodeName(s: string): boolean {
  return s.length > 0 && s.length <= 253 && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(s);
}

/** Whether a parsed document is a NodePublication (of any validity). */
export function isPublicationDocument(u: unknown): u is Rec {
  return isRec(u) && u.apiVersion === PUBLICATION_API_VERSION && u.kind === PUBLICATION_KIND;
}

const STATUS_NUMBERS = ['peers', 'peersWithHandshake', 'allowedIPs', 'pendingOps'] as const;

/** Checks the shape of a published status (from a publication or the status annotation). */
export function parsePublishedStatus(u: unknown): E.Either<string, PublishedStatus | null> {
  if (u === null || u === undefined) return E.right(null);
  if (!isRec(u)) return E.left(`expected a status object, got ${showValue(u)}`);
  if (typeof u.time !== 'string') return E.left(`status.time: expected a string, got ${showValue(u.time)}`);
  if (u.device !== null && typeof u.device !== 'string') return E.left(`status.device: expected a string or null, got ${showValue(u.device)}`);
  if (u.mtu !== null && typeof u.mtu !== 'number') return E.left(`status.mtu: expected a number or null, got ${showValue(u.mtu)}`);
  for (const k of STATUS_NUMBERS) {
    if (typeof u[k] !== 'number' || !Number.isFinite(u[k])) return E.left(`status.${k}: expected a number, got ${showValue(u[k])}`);
  }
  if (u.lastApply !== 'ok' && u.lastApply !== 'failed' && u.lastApply !== 'none') return E.left(`status.lastApply: expected ok, failed or none, got ${showValue(u.lastApply)}`);
  if (u.lastError !== null && typeof u.lastError !== 'string') return E.left(`status.lastError: expected a string or null, got ${showValue(u.lastError)}`);
  return E.right({
    time: u.time,
    device: u.device as string | null,
    mtu: u.mtu as number | null,
    peers: u.peers as number,
    peersWithHandshake: u.peersWithHandshake as number,
    allowedIPs: u.allowedIPs as number,
    pendingOps: u.pendingOps as number,
    lastApply: u.lastApply,
    lastError: u.lastError as string | null,
  });
}

/** Decodes one NodePublication document; `where` names it. */
export function decodePublication(u: Rec, where: string): E.Either<DecodeError, Publication> {
  const md = u.metadata;
  const name = isRec(md) ? md.name : undefined;
  if (typeof name !== 'string' || !isValidNodeName(name)) {
    return E.left({ where: `${where}: metadata.name`, message: `expected a node name, got ${showValue(name)}` });
  }
  let publicKey: WgKey | null = null;
  if (u.publicKey !== undefined && u.publicKey !== null && u.publicKey !== '') {
    const k = parseKey(u.publicKey);
    if (E.isLeft(k)) return E.left({ where: `${where}: publicKey`, message: k.left });
    publicKey = k.right;
  }
  const st = parsePublishedStatus(u.status);
  if (E.isLeft(st)) return E.left({ where: `${where}: status`, message: st.left });
  return E.right({ node: name as NodeName, publicKey, status: st.right, where });
}

/** Finds the publications among documents. A document that is a publication but does not decode, and the
 *  same node published twice, are errors. */
export function extractPublications(docs: readonly SourceDocument[]): E.Either<DecodeError[], Map<NodeName, Publication>> {
  const out = new Map<NodeName, Publication>();
  const errors: DecodeError[] = [];
  const counts = new Map<string, number>();
  for (const doc of docs) {
    const n = doc.document ?? (counts.get(doc.source) ?? 0) + 1;
    counts.set(doc.source, n);
    if (!isPublicationDocument(doc.value)) continue;
    const where = `${doc.source}: document ${n}`;
    const r = decodePublication(doc.value, where);
    if (E.isLeft(r)) {
      errors.push(r.left);
      continue;
    }
    const first = out.get(r.right.node);
    if (first) {
      errors.push({ where, message: `node ${JSON.stringify(r.right.node)} is published twice (first at ${first.where})` });
      continue;
    }
    out.set(r.right.node, r.right);
  }
  return errors.length > 0 ? E.left(errors) : E.right(out);
}

function withAnnotations(node: Rec, pub: Publication): Rec {
  const md = isRec(node.metadata) ? node.metadata : {};
  const annotations: Rec = isRec(md.annotations) ? { ...md.annotations } : {};
  if (pub.publicKey !== null) annotations[OWNERSHIP.annotationPublicKey] = pub.publicKey;
  else delete annotations[OWNERSHIP.annotationPublicKey];
  if (pub.status !== null) annotations[STATUS_ANNOTATION] = JSON.stringify(pub.status);
  else delete annotations[STATUS_ANNOTATION];
  return { ...node, metadata: { ...md, annotations } };
}

const LIST_KINDS: Readonly<Record<string, boolean>> = { List: true, NodeList: true };

/** The documents with every publication merged onto its Node (as annotations). Documents without a
 *  matching Node are unchanged (copy-on-write: the input is never mutated). Publications whose Node does
 *  not exist are ignored. */
export function applyPublications(docs: readonly SourceDocument[], pubs: ReadonlyMap<NodeName, Publication>): SourceDocument[] {
  if (pubs.size === 0) return [...docs];
  const nodeOf = (u: unknown, defaultKind: string): Publication | undefined => {
    if (!isRec(u)) return undefined;
    const kind = u.kind ?? defaultKind;
    const api = u.apiVersion ?? (defaultKind !== '' ? 'v1' : undefined);
    if (kind !== 'Node' || api !== 'v1' || !isRec(u.metadata) || typeof u.metadata.name !== 'string') return undefined;
    return pubs.get(u.metadata.name as NodeName);
  };
  return docs.map((doc) => {
    const v = doc.value;
    if (!isRec(v)) return doc;
    const top = nodeOf(v, '');
    if (top) return { ...doc, value: withAnnotations(v, top) };
    if (v.apiVersion === 'v1' && typeof v.kind === 'string' && LIST_KINDS[v.kind] && Array.isArray(v.items)) {
      const defaultKind = v.kind === 'NodeList' ? 'Node' : '';
      let items: unknown[] | null = null;
      v.items.forEach((it: unknown, i: number) => {
        const p = nodeOf(it, defaultKind);
        if (!p) return;
        items ??= [...(v.items as unknown[])];
        items[i] = withAnnotations(it as Rec, p);
      });
      return items ? { ...doc, value: { ...v, items } } : doc;
    }
    return doc;
  });
}

/** extractPublications then applyPublications. */
export function mergePublications(docs: readonly SourceDocument[]): E.Either<DecodeError[], SourceDocument[]> {
  const p = extractPublications(docs);
  return E.isLeft(p) ? p : E.right(applyPublications(docs, p.right));
}

/** The text of a publication file. */
export function publicationText(node: NodeName, publicKey: WgKey | null, status: PublishedStatus | null): string {
  const doc = { apiVersion: PUBLICATION_API_VERSION, kind: PUBLICATION_KIND, metadata: { name: node }, publicKey, status };
  return `# Published by the wgplane agent of node ${node}: its public key and status. The agent rewrites this\n# file; it overrides the Node's annotations ${OWNERSHIP.annotationPublicKey} and ${STATUS_ANNOTATION}.\n${stringify(doc)}`;
}

/** What the Node objects of a set of (merged) documents carry in wgplane's annotations, for
 *  `wgplane status --all`: the raw key annotation and the decoded status annotation. */
export interface NodeAnnotations {
  readonly publicKey: string | null;
  readonly status: PublishedStatus | null;
  /** Set when the status annotation is present but not a valid status. */
  readonly statusError: string | null;
}

export function annotationsOf(annotations: unknown): NodeAnnotations {
  const a = isRec(annotations) ? annotations : {};
  const key = a[OWNERSHIP.annotationPublicKey];
  const raw = a[STATUS_ANNOTATION];
  let status: PublishedStatus | null = null;
  let statusError: string | null = null;
  if (typeof raw === 'string' && raw.trim() !== '') {
    try {
      const r = parsePublishedStatus(JSON.parse(raw));
      if (E.isLeft(r)) statusError = r.left;
      else status = r.right;
    } catch (e) {
      statusError = `not JSON: ${(e as Error).message}`;
    }
  }
  return { publicKey: typeof key === 'string' && key.trim() !== '' ? key.trim() : null, status, statusError };
}

/** The wgplane annotations of every Node found in the documents (top level or in a List). */
export function nodeAnnotations(docs: readonly SourceDocument[]): Map<NodeName, NodeAnnotations> {
  const out = new Map<NodeName, NodeAnnotations>();
  const visit = (u: unknown, defaultKind: string) => {
    if (!isRec(u) || (u.kind ?? defaultKind) !== 'Node' || !isRec(u.metadata) || typeof u.metadata.name !== 'string') return;
    out.set(u.metadata.name as NodeName, annotationsOf(u.metadata.annotations));
  };
  for (const d of docs) {
    const v = d.value;
    if (!isRec(v) || v.apiVersion !== 'v1') continue;
    if (typeof v.kind === 'string' && LIST_KINDS[v.kind] && Array.isArray(v.items)) for (const it of v.items) visit(it, v.kind === 'NodeList' ? 'Node' : '');
    else visit(v, '');
  }
  return out;
}
