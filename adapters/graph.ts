// `wgplane graph`: the mesh as Graphviz dot: nodes (WireGuard or not), which pairs are encrypted and which
// are in clear, and the handshake age on the edges when the kernels can be read (the lab). From a snapshot
// the picture is what wgplane will build: a pair is encrypted when both nodes take part in WireGuard
// (enabled, not labelled disabled, with a published key that no other node shares, with an address).
import { execa } from 'execa';
import type { ClusterSnapshot, NodeInfo } from '../core/model.js';
import { OWNERSHIP } from '../core/model.js';
import { NetnsHome } from './lab/netns.js';
import type { LabState } from './lab/state.js';
import { ageOf, ageText, endpointHost, readPeers } from './verify.js';

export interface MeshNode {
  readonly name: string;
  readonly ip: string | null;
  readonly wireguard: boolean;
  /** Why a node takes no part (no key, shared key, disabled, ...), for the picture. */
  readonly note: string | null;
}

export type EdgeKind = 'encrypted' | 'clear' | 'broken';

export interface MeshEdge {
  readonly a: string;
  readonly b: string;
  readonly kind: EdgeKind;
  /** Handshake ages seen by a and by b (seconds; null = never; undefined = not read). */
  readonly handshakeAgeS?: readonly [number | null, number | null];
  readonly note: string | null;
}

export interface Mesh {
  readonly title: string;
  readonly nodes: readonly MeshNode[];
  readonly edges: readonly MeshEdge[];
}

function firstIP(n: NodeInfo): string | null {
  return (n.addresses.find((a) => a.type === 'InternalIP') ?? n.addresses[0])?.address ?? null;
}

/** The mesh wgplane builds for a snapshot. */
export function meshFromSnapshot(s: ClusterSnapshot, title = 'wgplane mesh'): Mesh {
  const all = [...s.nodes.values()].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  const keyCount = new Map<string, number>();
  for (const n of all) if (n.publicKey) keyCount.set(n.publicKey, (keyCount.get(n.publicKey) ?? 0) + 1);
  const nodes: MeshNode[] = all.map((n) => {
    const ip = firstIP(n);
    const note = !s.settings.enabled ? 'WireGuard disabled (setting)'
      : n.labels[OWNERSHIP.labelWireguard] === 'disabled' ? 'WireGuard disabled (label)'
      : !n.publicKey ? 'no key published'
      : (keyCount.get(n.publicKey) ?? 0) > 1 ? 'key shared with another node'
      : ip === null ? 'no address'
      : null;
    return { name: n.name, ip, wireguard: note === null, note };
  });
  const edges: MeshEdge[] = [];
  for (let i = 0; i < nodes.length; i++) for (let j = i + 1; j < nodes.length; j++) {
    const a = nodes[i]!, b = nodes[j]!;
    edges.push({ a: a.name, b: b.name, kind: a.wireguard && b.wireguard ? 'encrypted' : 'clear', note: null });
  }
  return { title, nodes, edges };
}

/** The lab's mesh as its kernels have it: each WireGuard pair with the handshake ages on both sides; a
 *  pair where a side has no peer for the other is drawn as broken. */
export async function meshFromLab(lab: LabState, snapshot: ClusterSnapshot): Promise<Mesh> {
  const base = meshFromSnapshot(snapshot, `wgplane lab ${lab.name}`);
  const home = new NetnsHome(lab.paths.runRoot);
  const iface = snapshot.settings.interfaceName;
  const now = Date.now() / 1000;
  const byName = new Map(lab.nodes.map((n) => [n.name, n]));
  const readings = new Map<string, Awaited<ReturnType<typeof readPeers>>>();
  for (const n of lab.nodes) readings.set(n.name, n.plain ? null : await readPeers(home.runner(n.ns), iface));
  const nodes = base.nodes.map((m) => (byName.get(m.name)?.plain ? { ...m, wireguard: false, note: 'no wgplane (plain node)' } : m));
  const wg = new Map(nodes.map((n) => [n.name, n.wireguard]));
  const edges = base.edges.map((e): MeshEdge => {
    if (!wg.get(e.a) || !wg.get(e.b)) return { ...e, kind: 'clear' };
    const ageAt = (me: string, other: string): number | null | 'none' => {
      const ip = byName.get(other)?.ip;
      const p = readings.get(me)?.find((r) => endpointHost(r.endpoint) === ip);
      return p ? ageOf(p, now) : 'none';
    };
    const x = ageAt(e.a, e.b), y = ageAt(e.b, e.a);
    if (x === 'none' || y === 'none') return { ...e, kind: 'broken', note: `no peer on ${x === 'none' ? e.a : e.b}` };
    return { ...e, kind: 'encrypted', handshakeAgeS: [x, y] };
  });
  return { title: base.title, nodes, edges };
}

/** A dot string literal. */
export function dotString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

export function renderDot(m: Mesh): string {
  const out = [
    `graph ${dotString(m.title)} {`,
    `  label=${dotString(`${m.title}: solid green = encrypted (WireGuard), dashed grey = clear, red = should be encrypted but is not`)};`,
    '  labelloc=t; fontname="Helvetica"; layout=circo;',
    '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
    '  edge [fontname="Helvetica", fontsize=9];',
  ];
  for (const n of m.nodes) {
    const label = [n.name, n.ip ?? '', n.wireguard ? 'WireGuard' : n.note ?? 'clear'].filter(Boolean).join('\n');
    out.push(`  ${dotString(n.name)} [label=${dotString(label)}, fillcolor=${n.wireguard ? '"#d9f2d9"' : '"#eeeeee"'}];`);
  }
  for (const e of m.edges) {
    const attrs = e.kind === 'encrypted'
      ? [`color="#2e8b57"`, 'penwidth=2', 'style=solid', ...(e.handshakeAgeS ? [`label=${dotString(`handshake ${ageText(e.handshakeAgeS[0])} / ${ageText(e.handshakeAgeS[1])}`)}`] : [])]
      : e.kind === 'clear'
        ? ['color="#999999"', 'style=dashed', 'label="clear"']
        : ['color="#cc0000"', 'penwidth=2', 'style=dotted', `label=${dotString(`NOT encrypted: ${e.note ?? ''}`)}`];
    out.push(`  ${dotString(e.a)} -- ${dotString(e.b)} [${attrs.join(', ')}];`);
  }
  out.push('}');
  return out.join('\n') + '\n';
}

export class GraphError extends Error {
  override readonly name = 'GraphError';
}

/** Renders dot to SVG with Graphviz's `dot`. */
export async function dotToSvg(dot: string): Promise<string> {
  const r = await execa('dot', ['-Tsvg'], { input: dot, reject: false });
  if (r.failed) {
    if ((r as { code?: string }).code === 'ENOENT') throw new GraphError('`dot` (Graphviz) is not installed: install the graphviz package for SVG');
    throw new GraphError(`dot failed: ${String(r.stderr).trim()}`);
  }
  return String(r.stdout);
}
