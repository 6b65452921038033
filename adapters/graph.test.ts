// `wgplane graph`: the picture agrees with what core/desired() peers, and the dot is valid Graphviz.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as E from 'fp-ts/lib/Either.js';
import { execa } from 'execa';
import { desired } from '../core/desired.js';
import type { NodeName } from '../core/model.js';
import { readSnapshot } from './manifest.js';
import { dotString, meshFromSnapshot, renderDot, type Mesh } from './graph.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const EXAMPLES = ['aks-azure-cni.yaml', 'podcidr.yaml', 'mixed.yaml', 'dual-stack.yaml'];

/** Runs Graphviz on the dot; null when `dot` is not installed. */
async function graphviz(dot: string): Promise<{ exitCode: number; stderr: string; stdout: string } | null> {
  const r = await execa('dot', ['-Tcanon'], { input: dot, reject: false });
  if ((r as { code?: string }).code === 'ENOENT') return null;
  return { exitCode: r.exitCode ?? -1, stderr: String(r.stderr), stdout: String(r.stdout) };
}
const NO_DOT = 'Graphviz `dot` is not installed (Debian package graphviz)';

describe('graph from a snapshot', () => {
  for (const ex of EXAMPLES) {
    it(`${ex}: an edge is encrypted exactly when desired() peers the two nodes with each other`, async () => {
      const s = await readSnapshot(path.join(REPO, 'examples', ex));
      const mesh = meshFromSnapshot(s);
      assert.equal(mesh.nodes.length, s.nodes.size);
      assert.equal(mesh.edges.length, (s.nodes.size * (s.nodes.size - 1)) / 2);
      const peersOf = (n: string): Set<string> => {
        const d = desired(s, n as NodeName, { underlayMtu: 1500, publicKey: s.nodes.get(n as NodeName)!.publicKey });
        assert.ok(E.isRight(d));
        return d.right.kind === 'enabled' ? new Set([...d.right.peers.values()].map((p) => p.node as string)) : new Set();
      };
      let encrypted = 0;
      for (const e of mesh.edges) {
        const peered = peersOf(e.a).has(e.b) && peersOf(e.b).has(e.a);
        assert.equal(e.kind === 'encrypted', peered, `${e.a} -- ${e.b}: graph says ${e.kind}, desired() ${peered ? 'peers them' : 'does not'}`);
        if (peered) encrypted++;
      }
      if (ex !== 'mixed.yaml') assert.ok(encrypted > 0, 'the example has encrypted pairs');
    });
  }

  it('mixed.yaml: says why a node takes no part', async () => {
    const mesh = meshFromSnapshot(await readSnapshot(path.join(REPO, 'examples', 'mixed.yaml')));
    const notes = new Set(mesh.nodes.map((n) => n.note));
    for (const n of ['WireGuard disabled (label)', 'no key published', 'key shared with another node']) assert.ok(notes.has(n), n);
  });
});

describe('dot output', () => {
  const tricky: Mesh = {
    title: 'lab "x" \\ y',
    nodes: [
      { name: 'a"b', ip: '10.0.0.1', wireguard: true, note: null },
      { name: 'c\\d', ip: null, wireguard: true, note: null },
      { name: 'e', ip: 'fd00::1', wireguard: false, note: 'no key published' },
    ],
    edges: [
      { a: 'a"b', b: 'c\\d', kind: 'encrypted', handshakeAgeS: [3, null], note: null },
      { a: 'a"b', b: 'e', kind: 'clear', note: null },
      { a: 'c\\d', b: 'e', kind: 'broken', note: 'no peer on "c"' },
    ],
  };

  it('escapes names and labels', () => {
    assert.equal(dotString('a"b\\c\nd'), '"a\\"b\\\\c\\nd"');
    const dot = renderDot(tricky);
    assert.match(dot, /^graph "lab \\"x\\" \\\\ y" \{/);
    assert.match(dot, /"a\\"b" -- "c\\\\d" \[.*style=solid.*label="handshake 3s \/ never"\]/);
    assert.match(dot, /"a\\"b" -- "e" \[.*style=dashed/);
    assert.match(dot, /"c\\\\d" -- "e" \[.*style=dotted.*NOT encrypted: no peer on \\"c\\"/);
  });

  for (const [what, make] of [
    ['tricky names', async () => renderDot(tricky)],
    ...EXAMPLES.map((ex) => [ex, async () => renderDot(meshFromSnapshot(await readSnapshot(path.join(REPO, 'examples', ex))))] as const),
  ] as const) {
    it(`parses as dot (${what})`, async (t) => {
      const dot = await make();
      const r = await graphviz(dot);
      if (r === null) { t.skip(NO_DOT); return; }
      assert.equal(r.exitCode, 0, r.stderr);
      // Graphviz read every node and edge.
      assert.equal((r.stdout.match(/ -- /g) ?? []).length, (dot.match(/ -- /g) ?? []).length);
    });
  }

  it('Graphviz rejects broken dot (the parse check can fail)', async (t) => {
    const r = await graphviz(renderDot(tricky).replace('--', '-- -- ['));
    if (r === null) { t.skip(NO_DOT); return; }
    assert.notEqual(r.exitCode, 0);
  });
});
