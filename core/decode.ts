// Decoding Kubernetes objects (what `kubectl get nodes,pods,configmaps -A -o yaml` prints) into the
// branded cluster snapshot of core/model.ts. Pure: no I/O; never throws, whatever the input.
//
// The io-ts codecs below are the definition of what is accepted and the source of precise errors
// (source, document, field path, bad value). Pods and nodes first go through a hand-written fast path
// that accepts only input the codecs accept and builds the same value (a property test checks this);
// anything it does not like goes to the codec, which decides and explains. 550k pods decode without
// io-ts context allocation per field.
//
// Decisions:
// - Node addresses: InternalIP/ExternalIP must be IP addresses (else an error); other types (Hostname,
//   InternalDNS, ...) are kept only when their value is an IP address. Canonical, deduplicated.
// - Node pod CIDRs: spec.podCIDRs when non-empty, else spec.podCIDR; canonical, deduplicated; host bits
//   set is an error (`10.244.1.1/24`).
// - Annotation wgplane.io/public-key: absent or blank -> null; otherwise a valid key or an error.
// - Pods: metadata.namespace defaults to "default" (as kubectl does), status.phase to "Pending",
//   spec.hostNetwork to false; spec.nodeName "" is null; status.podIP "" is absent. IPs: status.podIPs[].ip
//   then status.podIP, canonical, deduplicated, in that order.
// - null for an optional field is the same as absent.
// - Lists: `kind: List` (items carry apiVersion/kind) and typed lists `NodeList`, `PodList`,
//   `ConfigMapList` (items may omit apiVersion/kind, as the raw API prints them). A List inside a List
//   is an error. Objects of other kinds, and ConfigMaps other than kube-system/wgplane, are ignored.
// - The same Node, Pod or settings ConfigMap twice is an error naming both places.
// - At most MAX_DECODE_ERRORS errors are collected, then one line says that decoding stopped.
import * as E from 'fp-ts/lib/Either.js';
import * as t from 'io-ts/lib/index.js';
import { type Cidr, type IP, parseCidr, parseIP } from './ip.js';
import { type WgKey, parseKey } from './key.js';
import { type ClusterSnapshot, type NodeAddress, type NodeInfo, type NodeName, type PodInfo, type PodKey, type Settings, OWNERSHIP } from './model.js';
import { DEFAULT_SETTINGS, decodeSettingsAt } from './settings.js';
import { type DecodeError, MAX_DECODE_ERRORS, at, formatDecodeError, indexPath, joinPath, showValue } from './errors.js';

export { type DecodeError, formatDecodeError, MAX_DECODE_ERRORS } from './errors.js';

/** One parsed YAML/JSON document: a single object or a List. `source` names the file (or `<stdin>`). */
export interface SourceDocument {
  readonly source: string;
  readonly value: unknown;
  /** 1-based number of the document in its source; when absent, documents are counted per source. */
  readonly document?: number;
}

type Rec = Record<string, unknown>;
function isRec(u: unknown): u is Rec {
  return u !== null && typeof u === 'object' && !Array.isArray(u);
}

// ---------------------------------------------------------------------------------------------------
// io-ts codecs: the definition of valid input

function named<A>(name: string, is: (u: unknown) => u is A): t.Type<A, A, unknown> {
  return new t.Type<A, A, unknown>(name, is, (u, c) => (is(u) ? t.success(u) : t.failure(u, c)), t.identity);
}

const Str = named('a string', (u): u is string => typeof u === 'string');
const Bool = named('true or false', (u): u is boolean => typeof u === 'boolean');
const NonEmpty = named('a non-empty string', (u): u is string => typeof u === 'string' && u !== '');

/** Optional field: absent or null -> undefined. */
function opt<A>(codec: t.Type<A, unknown, unknown>): t.Type<A | undefined, unknown, unknown> {
  return new t.Type<A | undefined, unknown, unknown>(
    codec.name,
    (u): u is A | undefined => u === undefined || codec.is(u),
    (u, c) => (u === undefined || u === null ? t.success(undefined) : codec.validate(u, c)),
    t.identity,
  );
}

function fromParser<A>(name: string, parse: (s: string) => E.Either<string, A>): t.Type<A, unknown, unknown> {
  return new t.Type<A, unknown, unknown>(
    name,
    (u): u is A => typeof u === 'string' && E.isRight(parse(u)) && (parse(u) as E.Right<A>).right === u,
    (u, c) => {
      if (typeof u !== 'string') return t.failure(u, c, `expected ${name}, got ${showValue(u)}`);
      const r = parse(u);
      return E.isRight(r) ? t.success(r.right) : t.failure(u, c, r.left);
    },
    t.identity,
  );
}

const IPC = fromParser<IP>('an IP address', parseIP);
const CidrC = fromParser<Cidr>('a CIDR', parseCidr);
/** status.podIP: "" is the same as absent. */
const OptPodIP = new t.Type<IP | undefined, unknown, unknown>(
  'an IP address',
  (u): u is IP | undefined => u === undefined || IPC.is(u),
  (u, c) => (u === undefined || u === null || u === '' ? t.success(undefined) : IPC.validate(u, c)),
  t.identity,
);

function isBlank(u: unknown): boolean {
  return u === undefined || u === null || (typeof u === 'string' && u.trim() === '');
}

/** The public-key annotation: absent or blank -> null. */
const PublicKeyC = new t.Type<WgKey | null, unknown, unknown>(
  'a WireGuard public key',
  (u): u is WgKey | null => u === null || (typeof u === 'string' && E.isRight(parseKey(u))),
  (u, c) => {
    if (isBlank(u)) return t.success(null);
    const r = parseKey(u);
    return E.isRight(r) ? t.success(r.right) : t.failure(u, c, r.left);
  },
  t.identity,
);

/** metadata.annotations: only wgplane's key annotation is read. */
const AnnotationsC = new t.Type<WgKey | null, unknown, unknown>(
  'a map of strings',
  (u): u is WgKey | null => false,
  (u, c) => {
    if (!isRec(u)) return t.failure(u, c);
    const v = u[OWNERSHIP.annotationPublicKey];
    return PublicKeyC.validate(v, t.appendContext(c, OWNERSHIP.annotationPublicKey, PublicKeyC, v));
  },
  t.identity,
);

const StrMap = t.record(t.string, Str, 'a map of strings');

const IP_ADDRESS_TYPES = new Set(['InternalIP', 'ExternalIP']);
const RawAddressC = t.type({ type: NonEmpty, address: Str }, 'an object');
/** A node address: null when it is not an IP address and need not be (Hostname, InternalDNS, ...). */
const AddressC = new t.Type<NodeAddress | null, unknown, unknown>(
  'a node address',
  (u): u is NodeAddress | null => false,
  (u, c) => {
    const r = RawAddressC.validate(u, c);
    if (E.isLeft(r)) return r;
    const { type, address } = r.right;
    const ip = parseIP(address);
    if (E.isRight(ip)) return t.success({ type, address: ip.right });
    if (IP_ADDRESS_TYPES.has(type)) return t.failure(address, t.appendContext(c, 'address', IPC, address), `${ip.left} (type ${type})`);
    return t.success(null);
  },
  t.identity,
);

const list = <A>(codec: t.Type<A, unknown, unknown>) => t.array(codec, 'a list');

export const NodeCodec = t.type(
  {
    metadata: t.type({ name: NonEmpty, labels: opt(StrMap), annotations: opt(AnnotationsC) }, 'an object'),
    spec: opt(t.type({ providerID: opt(Str), podCIDR: opt(CidrC), podCIDRs: opt(list(CidrC)) }, 'an object')),
    status: opt(t.type({ addresses: opt(list(AddressC)) }, 'an object')),
  },
  'a Node object',
);

export const PodCodec = t.type(
  {
    metadata: t.type({ name: NonEmpty, namespace: opt(NonEmpty) }, 'an object'),
    spec: opt(t.type({ nodeName: opt(Str), hostNetwork: opt(Bool) }, 'an object')),
    status: opt(t.type({ phase: opt(Str), podIP: OptPodIP, podIPs: opt(list(t.type({ ip: IPC }, 'an object'))) }, 'an object')),
  },
  'a Pod object',
);


// ---------------------------------------------------------------------------------------------------
// From decoded raw shapes to the model (shared by the codec path and the fast path)

const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});
const NO_IPS: readonly IP[] = Object.freeze([]);

function dedupe<A>(xs: readonly A[]): readonly A[] {
  if (xs.length < 2) return xs;
  if (xs.length === 2) return xs[0] === xs[1] ? [xs[0]!] : xs;
  return [...new Set(xs)];
}

function nodeFromRaw(raw: t.TypeOf<typeof NodeCodec>): NodeInfo {
  const spec = raw.spec;
  const cidrs = spec?.podCIDRs !== undefined && spec.podCIDRs.length > 0 ? spec.podCIDRs : spec?.podCIDR !== undefined ? [spec.podCIDR] : [];
  const addresses: NodeAddress[] = [];
  const seen = new Set<string>();
  for (const a of raw.status?.addresses ?? []) {
    if (a === null) continue;
    const k = `${a.type} ${a.address}`;
    if (seen.has(k)) continue;
    seen.add(k);
    addresses.push(a);
  }
  return {
    name: raw.metadata.name as NodeName,
    addresses,
    labels: raw.metadata.labels ?? NO_LABELS,
    providerID: spec?.providerID ? spec.providerID : null,
    podCIDRs: dedupe(cidrs),
    publicKey: raw.metadata.annotations ?? null,
  };
}

function podFromRaw(raw: t.TypeOf<typeof PodCodec>): PodInfo {
  const st = raw.status;
  const ips: IP[] = [];
  for (const p of st?.podIPs ?? []) ips.push(p.ip);
  if (st?.podIP !== undefined) ips.push(st.podIP);
  return {
    key: `${raw.metadata.namespace ?? 'default'}/${raw.metadata.name}` as PodKey,
    nodeName: raw.spec?.nodeName ? (raw.spec.nodeName as NodeName) : null,
    ips: dedupe(ips),
    phase: st?.phase ?? 'Pending',
    hostNetwork: raw.spec?.hostNetwork ?? false,
  };
}

// ---------------------------------------------------------------------------------------------------
// Fast paths: accept a subset of what the codecs accept, build the same value; undefined = ask the codec.

/** A canonical IPv4 literal (what parseIP returns unchanged), checked without a regular expression. */
function isCanonicalV4(s: string): boolean {
  const n = s.length;
  if (n < 7 || n > 15) return false;
  let dots = 0;
  let digits = 0;
  let v = 0;
  let first = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || v > 255 || (digits > 1 && first === 48)) return false;
      dots++;
      digits = 0;
      v = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits === 0) first = c;
      if (++digits > 3) return false;
      v = v * 10 + (c - 48);
    } else return false;
  }
  return dots === 3 && digits > 0 && v <= 255 && !(digits > 1 && first === 48);
}

function fastIP(u: unknown): IP | undefined {
  if (typeof u !== 'string') return undefined;
  if (isCanonicalV4(u)) return u as IP;
  const r = parseIP(u);
  return r._tag === 'Right' ? r.right : undefined;
}

/** Exported for the property test that checks it against the codec. */
export function podFast(u: unknown): PodInfo | undefined {
  if (!isRec(u)) return undefined;
  const md = u.metadata;
  if (!isRec(md)) return undefined;
  const name = md.name;
  if (typeof name !== 'string' || name === '') return undefined;
  let ns = md.namespace;
  if (ns === undefined || ns === null) ns = 'default';
  else if (typeof ns !== 'string' || ns === '') return undefined;
  let nodeName: NodeName | null = null;
  let hostNetwork = false;
  const spec = u.spec;
  if (spec !== undefined && spec !== null) {
    if (!isRec(spec)) return undefined;
    const nn = spec.nodeName;
    if (nn !== undefined && nn !== null) {
      if (typeof nn !== 'string') return undefined;
      if (nn !== '') nodeName = nn as NodeName;
    }
    const hn = spec.hostNetwork;
    if (hn !== undefined && hn !== null) {
      if (typeof hn !== 'boolean') return undefined;
      hostNetwork = hn;
    }
  }
  let phase = 'Pending';
  let ips: readonly IP[] = NO_IPS;
  const st = u.status;
  if (st !== undefined && st !== null) {
    if (!isRec(st)) return undefined;
    const ph = st.phase;
    if (ph !== undefined && ph !== null) {
      if (typeof ph !== 'string') return undefined;
      phase = ph;
    }
    const list = st.podIPs;
    let a: IP | undefined;
    let b: IP | undefined;
    let more: IP[] | undefined;
    if (list !== undefined && list !== null) {
      if (!Array.isArray(list)) return undefined;
      for (let i = 0; i < list.length; i++) {
        const e: unknown = list[i];
        if (!isRec(e)) return undefined;
        const ip = fastIP(e.ip);
        if (ip === undefined) return undefined;
        if (a === undefined || a === ip) a = ip;
        else if (b === undefined || b === ip) b = ip;
        else if (more === undefined) more = [ip];
        else more.push(ip);
      }
    }
    const one = st.podIP;
    if (one !== undefined && one !== null && one !== '') {
      const ip = fastIP(one);
      if (ip === undefined) return undefined;
      if (a === undefined || a === ip) a = ip;
      else if (b === undefined || b === ip) b = ip;
      else if (more === undefined) more = [ip];
      else more.push(ip);
    }
    if (more !== undefined) ips = dedupe([a!, b!, ...more]);
    else if (b !== undefined) ips = [a!, b];
    else if (a !== undefined) ips = [a];
  }
  return { key: `${ns}/${name}` as PodKey, nodeName, ips, phase, hostNetwork };
}

// ---------------------------------------------------------------------------------------------------
// Errors from io-ts contexts

function contextPath(base: string, c: t.Context): string {
  let path = base;
  for (let i = 1; i < c.length; i++) {
    const parent = c[i - 1]!;
    const entry = c[i]!;
    if (parent.type instanceof t.IntersectionType || parent.type instanceof t.UnionType) continue;
    if (Array.isArray(parent.actual) && /^[0-9]+$/.test(entry.key)) path = indexPath(path, Number(entry.key));
    else path = joinPath(path, entry.key);
  }
  return path;
}

function toDecodeErrors(errors: t.Errors, where: string, base: string): DecodeError[] {
  return errors.map((e) => {
    const last = e.context[e.context.length - 1];
    const name = last?.type.name ?? 'a value';
    const message = e.message ?? (e.value === undefined ? `is missing (want ${name})` : `expected ${name}, got ${showValue(e.value)}`);
    return { where: at(where, contextPath(base, e.context)), message };
  });
}

function runCodec<A, O>(codec: t.Type<A, O, unknown>, u: unknown, where: string, base: string): E.Either<DecodeError[], A> {
  const r = codec.validate(u, [{ key: '', type: codec, actual: u }]);
  return E.isLeft(r) ? E.left(toDecodeErrors(r.left, where, base)) : E.right(r.right);
}

// ---------------------------------------------------------------------------------------------------
// Per-object decoders (also for the daemon). `where` names the object; field paths follow it after ': '.

function nodeAt(u: unknown, where: string, base: string): E.Either<DecodeError[], NodeInfo> {
  return E.map(nodeFromRaw)(runCodec(NodeCodec, u, where, base));
}

function podAt(u: unknown, where: string, base: string): E.Either<DecodeError[], PodInfo> {
  const fast = podFast(u);
  return fast !== undefined ? E.right(fast) : E.map(podFromRaw)(runCodec(PodCodec, u, where, base));
}

/** The codec path only (no fast path): for tests that compare the two. */
export function decodePodSlow(value: unknown, where: string): E.Either<readonly DecodeError[], PodInfo> {
  return E.map(podFromRaw)(runCodec(PodCodec, value, where, ''));
}

/** Decodes a v1 Node (apiVersion/kind are not checked). */
export function decodeNode(value: unknown, where: string): E.Either<readonly DecodeError[], NodeInfo> {
  return nodeAt(value, where, '');
}

/** Decodes a v1 Pod (apiVersion/kind are not checked). */
export function decodePod(value: unknown, where: string): E.Either<readonly DecodeError[], PodInfo> {
  return podAt(value, where, '');
}

function settingsAt(u: unknown, where: string, base: string): E.Either<DecodeError[], Settings> {
  if (!isRec(u)) return E.left([{ where: at(where, base), message: `expected a ConfigMap object, got ${showValue(u)}` }]);
  return decodeSettingsAt(u.data, where, joinPath(base, 'data')) as E.Either<DecodeError[], Settings>;
}

/** Decodes the settings held by the ConfigMap kube-system/wgplane (its `data`; identity not checked). */
export function decodeSettingsConfigMap(value: unknown, where: string): E.Either<readonly DecodeError[], Settings> {
  return settingsAt(value, where, '');
}

// ---------------------------------------------------------------------------------------------------
// Whole snapshot

const LIST_ITEM_KIND: Readonly<Record<string, string>> = { List: '', NodeList: 'Node', PodList: 'Pod', ConfigMapList: 'ConfigMap' };

interface Acc {
  readonly docs: ReadonlyArray<SourceDocument>;
  readonly nodes: Map<NodeName, NodeInfo>;
  readonly pods: Map<PodKey, PodInfo>;
  settings: Settings;
  settingsWhere: string | null;
  readonly errors: DecodeError[];
}

function isSettingsConfigMap(u: Rec): boolean {
  const md = u.metadata;
  return isRec(md) && md.namespace === OWNERSHIP.settingsNamespace && md.name === OWNERSHIP.settingsName;
}

/** Where the object `kind`/`key` was first decoded successfully (for the message about a duplicate). Error path only. */
function firstPlace(acc: Acc, kind: 'Node' | 'Pod', key: string): string {
  const counts = new Map<string, number>();
  for (const doc of acc.docs) {
    const n = doc.document ?? (counts.get(doc.source) ?? 0) + 1;
    counts.set(doc.source, n);
    const where = `${doc.source}: document ${n}`;
    const v = doc.value;
    if (!isRec(v)) continue;
    const elem = typeof v.kind === 'string' ? LIST_ITEM_KIND[v.kind] : undefined;
    const items: readonly unknown[] = elem !== undefined && Array.isArray(v.items) ? v.items : [v];
    for (let i = 0; i < items.length; i++) {
      const it = items[i];
      if (!isRec(it)) continue;
      const k = (it.kind ?? elem) === kind && isRec(it.metadata) ? it.metadata : undefined;
      if (k === undefined) continue;
      const name = kind === 'Pod' ? `${typeof k.namespace === 'string' && k.namespace !== '' ? k.namespace : 'default'}/${String(k.name)}` : k.name;
      if (name !== key) continue;
      const decoded = kind === 'Pod' ? E.isRight(decodePod(it, '')) : E.isRight(decodeNode(it, ''));
      if (decoded) return elem !== undefined ? at(where, itemPath(i)) : where;
    }
  }
  return '(unknown)';
}

function itemPath(index: number): string {
  return index < 0 ? '' : `items[${index}]`;
}

function decodeOne(acc: Acc, u: unknown, where: string, index: number, defaultKind: string): void {
  if (!isRec(u)) {
    acc.errors.push({ where: at(where, itemPath(index)), message: `expected a Kubernetes object (with apiVersion and kind), got ${showValue(u)}` });
    return;
  }
  let apiVersion = u.apiVersion;
  let kind = u.kind;
  if (defaultKind !== '') {
    if (apiVersion === undefined) apiVersion = 'v1';
    if (kind === undefined) kind = defaultKind;
  }
  if (typeof apiVersion !== 'string' || apiVersion === '' || typeof kind !== 'string' || kind === '') {
    const path = itemPath(index);
    const which = typeof apiVersion !== 'string' || apiVersion === '' ? 'apiVersion' : 'kind';
    const v = which === 'apiVersion' ? apiVersion : kind;
    acc.errors.push({
      where: at(where, joinPath(path, which)),
      message: v === undefined ? 'is missing: not a Kubernetes object (want apiVersion and kind)' : `expected a non-empty string, got ${showValue(v)}`,
    });
    return;
  }
  if (apiVersion !== 'v1') return;
  if (kind === 'Pod') {
    let pod = podFast(u);
    if (pod === undefined) {
      const r = E.map(podFromRaw)(runCodec(PodCodec, u, where, itemPath(index)));
      if (E.isLeft(r)) {
        acc.errors.push(...r.left);
        return;
      }
      pod = r.right;
    }
    if (acc.pods.has(pod.key)) {
      acc.errors.push({ where: at(where, joinPath(itemPath(index), 'metadata')), message: `pod ${JSON.stringify(pod.key)} appears twice (first at ${firstPlace(acc, 'Pod', pod.key)})` });
      return;
    }
    acc.pods.set(pod.key, pod);
  } else if (kind === 'Node') {
    const path = itemPath(index);
    const r = nodeAt(u, where, path);
    if (E.isLeft(r)) {
      acc.errors.push(...r.left);
      return;
    }
    const node = r.right;
    if (acc.nodes.has(node.name)) {
      acc.errors.push({ where: at(where, joinPath(joinPath(path, 'metadata'), 'name')), message: `node ${JSON.stringify(node.name)} appears twice (first at ${firstPlace(acc, 'Node', node.name)})` });
      return;
    }
    acc.nodes.set(node.name, node);
  } else if (kind === 'ConfigMap') {
    if (!isSettingsConfigMap(u)) return; // other ConfigMaps are ignored
    const path = itemPath(index);
    const here = at(where, path);
    if (acc.settingsWhere !== null) {
      acc.errors.push({ where: here, message: `the settings ConfigMap kube-system/wgplane appears twice (first at ${acc.settingsWhere})` });
      return;
    }
    acc.settingsWhere = here;
    const r = settingsAt(u, where, path);
    if (E.isLeft(r)) acc.errors.push(...r.left);
    else acc.settings = r.right;
  } else if (LIST_ITEM_KIND[kind] !== undefined) {
    if (index >= 0) acc.errors.push({ where: at(where, joinPath(itemPath(index), 'kind')), message: `a ${kind} inside a List is not supported` });
    else decodeList(acc, u, where, LIST_ITEM_KIND[kind]!);
  }
}

function decodeList(acc: Acc, u: Rec, where: string, elemKind: string): void {
  const items = u.items;
  if (items === undefined || items === null) return; // an empty List prints `items: []`, some tools omit it
  if (!Array.isArray(items)) {
    acc.errors.push({ where: at(where, 'items'), message: `expected a list, got ${showValue(items)}` });
    return;
  }
  for (let i = 0; i < items.length; i++) {
    decodeOne(acc, items[i], where, i, elemKind);
    if (acc.errors.length >= MAX_DECODE_ERRORS) return;
  }
}

/** Decodes parsed documents (each one object or a List) into a snapshot; collects all errors (capped). */
export function decodeObjects(docs: ReadonlyArray<SourceDocument>): E.Either<readonly DecodeError[], ClusterSnapshot> {
  const acc: Acc = { docs, nodes: new Map(), pods: new Map(), settings: DEFAULT_SETTINGS, settingsWhere: null, errors: [] };
  const counts = new Map<string, number>();
  for (let d = 0; d < docs.length && acc.errors.length < MAX_DECODE_ERRORS; d++) {
    const doc = docs[d]!;
    const n = doc.document ?? (counts.get(doc.source) ?? 0) + 1;
    counts.set(doc.source, n);
    decodeOne(acc, doc.value, `${doc.source}: document ${n}`, -1, '');
  }
  if (acc.errors.length > 0) {
    if (acc.errors.length >= MAX_DECODE_ERRORS) {
      const last = acc.errors[MAX_DECODE_ERRORS - 1]!;
      acc.errors.length = MAX_DECODE_ERRORS;
      acc.errors.push({ where: last.where, message: `stopped after ${MAX_DECODE_ERRORS} errors; fix these and run again` });
    }
    return E.left(acc.errors);
  }
  return E.right({ nodes: acc.nodes, pods: acc.pods, settings: acc.settings, settingsFound: acc.settingsWhere !== null });
}

/** All errors as one text, one per line. */
export function formatDecodeErrors(errors: readonly DecodeError[]): string {
  return errors.map(formatDecodeError).join('\n');
}
