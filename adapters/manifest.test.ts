import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync, readdirSync } from 'node:fs';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { fcParams } from '../property-tests/seed.js';
import { SnapshotError, decodeText, parseText, parseYamlExact, parseYamlFast, readDocuments, readSnapshot } from './manifest.js';
import { formatDecodeError } from '../core/errors.js';
import { parseKey } from '../core/key.js';
import type { NodeName, PodKey } from '../core/model.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const EX = join(ROOT, 'examples');

async function snapshotError(p: Promise<unknown> | (() => unknown)): Promise<SnapshotError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    assert.ok(e instanceof SnapshotError, `not a SnapshotError: ${String(e)}`);
    return e;
  }
  assert.fail('expected a SnapshotError');
}

describe('the bundled examples', () => {
  it('aks-azure-cni.yaml: 4 AKS nodes without podCIDR, one without key, VNET pod IPs', async () => {
    const s = await readSnapshot(join(EX, 'aks-azure-cni.yaml'));
    assert.equal(s.settingsFound, true);
    assert.equal(s.settings.enabled, true);
    assert.deepEqual([...s.nodes.keys()], [0, 1, 2, 3].map((i) => `aks-nodepool1-12345678-vmss00000${i}`));
    for (const [i, n] of [...s.nodes.values()].entries()) {
      assert.deepEqual(n.podCIDRs, []);
      assert.match(n.providerID ?? '', new RegExp(`^azure:///subscriptions/[0-9a-f-]{36}/resourceGroups/mc_rg_aks_westeurope/providers/Microsoft.Compute/virtualMachineScaleSets/aks-nodepool1-12345678-vmss/virtualMachines/${i}$`));
      assert.deepEqual(n.addresses, [{ type: 'InternalIP', address: `10.224.0.${4 + i}` }]);
      assert.equal(n.labels['kubernetes.azure.com/cluster'], 'MC_rg_aks_westeurope');
      assert.equal(n.publicKey === null, i === 3);
    }
    const keys = [...s.nodes.values()].flatMap((n) => (n.publicKey ? [n.publicKey] : []));
    assert.equal(new Set(keys).size, 3);
    const pods = [...s.pods.values()];
    const hostNet = pods.filter((p) => p.hostNetwork);
    assert.equal(hostNet.length, 16);
    for (const p of hostNet) assert.match(p.ips[0] ?? '', /^10\.224\.0\.[4-7]$/);
    for (const p of pods.filter((p) => !p.hostNetwork && p.ips.length > 0)) assert.match(p.ips[0]!, /^10\.224\.0\.(1\d|2\d|3\d|4\d)$/);
    assert.deepEqual(pods.map((p) => p.phase).filter((ph) => ph !== 'Running').sort(), ['Failed', 'Pending', 'Succeeded']);
    assert.equal(s.pods.get('shop/search-6c9d8f7b5-w2m4n' as PodKey)?.nodeName, null);
  });
  it('podcidr.yaml: 3 nodes, pods inside their blocks', async () => {
    const s = await readSnapshot(join(EX, 'podcidr.yaml'));
    assert.deepEqual([...s.nodes.values()].map((n) => n.podCIDRs), [['10.244.0.0/24'], ['10.244.1.0/24'], ['10.244.2.0/24']]);
    for (const p of s.pods.values()) {
      if (p.hostNetwork) continue;
      const i = [...s.nodes.keys()].indexOf(p.nodeName!);
      assert.ok(p.ips[0]!.startsWith(`10.244.${i}.`), `${p.key} ${p.ips[0]}`);
    }
  });
  it('dual-stack.yaml: both families on nodes and pods', async () => {
    const s = await readSnapshot(join(EX, 'dual-stack.yaml'));
    assert.equal(s.nodes.size, 3);
    for (const n of s.nodes.values()) {
      assert.equal(n.podCIDRs.length, 2);
      assert.match(n.podCIDRs[1]!, /^fd00:10:244:(\d:)?:\/64$/);
      assert.equal(n.addresses.length, 2);
    }
    for (const p of s.pods.values()) assert.equal(p.ips.length, 2, p.key);
  });
  it('mixed.yaml: disabled label, no key, shared key, IP conflict, pod outside its block', async () => {
    const s = await readSnapshot(join(EX, 'mixed.yaml'));
    const n = (x: string) => s.nodes.get(x as NodeName)!;
    assert.equal(n('node-b').labels['wgplane.io/wireguard'], 'disabled');
    assert.equal(n('node-c').publicKey, null);
    assert.ok(n('node-d').publicKey !== null && n('node-d').publicKey === n('node-e').publicKey);
    const holders = [...s.pods.values()].filter((p) => p.ips.includes('10.244.0.50' as never)).map((p) => p.nodeName);
    assert.deepEqual(holders, ['node-a', 'node-c']);
    assert.equal([...s.pods.values()].find((p) => p.ips.includes('10.250.0.10' as never))?.nodeName, 'node-a');
  });
  it('every public key in the examples is a valid key and keys are not reused across files', async () => {
    const seen = new Map<string, string>();
    for (const f of ['aks-azure-cni.yaml', 'podcidr.yaml', 'dual-stack.yaml', 'mixed.yaml']) {
      const s = await readSnapshot(join(EX, f));
      for (const node of s.nodes.values()) {
        if (!node.publicKey) continue;
        assert.equal(parseKey(node.publicKey)._tag, 'Right');
        const other = seen.get(node.publicKey);
        assert.ok(other === undefined || (f === 'mixed.yaml' && other === 'mixed.yaml'), `${node.name}: key also in ${other}`);
        seen.set(node.publicKey, f);
      }
    }
  });
});

describe('readDocuments / readSnapshot', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wgplane-manifest-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const nodeYaml = (name: string) => `apiVersion: v1\nkind: Node\nmetadata:\n  name: ${name}\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 10.0.0.${name.length}\n`;

  it('a directory: recursive, sorted by path, only manifests, hidden names skipped', async () => {
    const d = join(dir, 'tree');
    await mkdir(join(d, 'b-sub'), { recursive: true });
    await mkdir(join(d, '..2024_05_14'), { recursive: true });
    await writeFile(join(d, 'c.yml'), nodeYaml('n-c'));
    await writeFile(join(d, 'a.yaml'), `${nodeYaml('n-a')}---\n# nothing here\n---\n${nodeYaml('n-a2')}`);
    await writeFile(join(d, 'b-sub', 'pods.json'), JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [{ apiVersion: 'v1', kind: 'Pod', metadata: { namespace: 'x', name: 'p' }, status: { podIP: '10.1.0.1' } }] }));
    await writeFile(join(d, 'D.YAML'), nodeYaml('n-d'));
    await writeFile(join(d, 'notes.md'), 'not: [yaml');
    await writeFile(join(d, '.hidden.yaml'), 'not: [yaml');
    await writeFile(join(d, '..2024_05_14', 'x.yaml'), nodeYaml('n-a'));
    const docs = await readDocuments(d);
    assert.deepEqual(docs.map((x) => [x.source.slice(d.length + 1), x.document]), [['D.YAML', 1], ['a.yaml', 1], ['a.yaml', 3], ['b-sub/pods.json', 1], ['c.yml', 1]]);
    const s = await readSnapshot(d);
    assert.deepEqual([...s.nodes.keys()], ['n-d', 'n-a', 'n-a2', 'n-c']);
    assert.deepEqual([...s.pods.keys()], ['x/p']);
  });
  it('a decode error names the file and the document number in the file (empty documents count)', async () => {
    const f = join(dir, 'bad.yaml');
    await writeFile(f, `${nodeYaml('n1')}---\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: p, namespace: d}\n  status:\n    podIPs:\n    - ip: 10.224.0.999\n`);
    const e = await snapshotError(readSnapshot(f));
    assert.deepEqual(e.errors.map(formatDecodeError), [`${f}: document 3: items[0].status.podIPs[0].ip: "10.224.0.999" is not an IP address`]);
    assert.match(e.message, /^an error in the snapshot:\n {2}.*document 3: items\[0\]\.status\.podIPs\[0\]\.ip/);
  });
  it('a YAML syntax error names file, document and line', async () => {
    const f = join(dir, 'syntax.yaml');
    await writeFile(f, `${nodeYaml('n1')}---\napiVersion: v1\nkind: Node\nmetadata:\n  name: [n2\n`);
    const e = await snapshotError(readDocuments(f));
    assert.equal(e.errors.length, 1);
    assert.match(formatDecodeError(e.errors[0]!), new RegExp(`^${f.replace(/[.]/g, '\\.')}: document 2: line \\d+, column \\d+: `));
  });
  it('YAML duplicate keys and tabs are errors', async () => {
    const e1 = await snapshotError(() => parseText('a: 1\na: 2\n', 'dup.yaml'));
    assert.match(formatDecodeError(e1.errors[0]!), /^dup\.yaml: document 1: line 2, column 1: Map keys must be unique/);
    const e2 = await snapshotError(() => parseText('apiVersion: v1\nkind: Node\nmetadata: *nope\n', 'alias.yaml'));
    assert.match(formatDecodeError(e2.errors[0]!), /^alias\.yaml: document 1/);
  });
  it('JSON: a single object and a List, and a JSON syntax error with its line', async () => {
    const one = join(dir, 'one.json');
    await writeFile(one, JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'j1' } }));
    assert.deepEqual([...(await readSnapshot(one)).nodes.keys()], ['j1']);
    const bad = join(dir, 'bad.json');
    await writeFile(bad, '{\n  "apiVersion": "v1",\n  "kind": "Node",\n  "metadata": {"name": "x",}\n}\n');
    const e = await snapshotError(readDocuments(bad));
    assert.match(formatDecodeError(e.errors[0]!), /bad\.json: document 1: line 4, column 28: not valid JSON: Expected double-quoted property name$/);
  });
  it('a missing path and an empty directory are errors', async () => {
    const e1 = await snapshotError(readSnapshot(join(dir, 'nope.yaml')));
    assert.match(e1.message, /nope\.yaml: cannot read: .*ENOENT/);
    await mkdir(join(dir, 'empty'));
    const e2 = await snapshotError(readSnapshot(join(dir, 'empty')));
    assert.match(e2.message, /no \*\.yaml, \*\.yml or \*\.json files/);
  });
  it('errors from several files are all reported', async () => {
    const d = join(dir, 'many');
    await mkdir(d);
    await writeFile(join(d, '1.yaml'), 'a: [');
    await writeFile(join(d, '2.json'), '{');
    await writeFile(join(d, '3.yaml'), nodeYaml('ok'));
    const e = await snapshotError(readSnapshot(d));
    assert.deepEqual(e.errors.map((x) => x.where.slice(d.length + 1).split(':')[0]), ['1.yaml', '2.json']);
  });
});

describe('decodeText and stdin', () => {
  it('decodeText: YAML and JSON text', () => {
    assert.equal(decodeText('apiVersion: v1\nkind: Node\nmetadata: {name: a}\n', '<stdin>').nodes.size, 1);
    assert.equal(decodeText(' {"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Node","metadata":{"name":"a"}}]}', '<stdin>').nodes.size, 1);
  });
  it('decodeText: a decode error names <stdin>', async () => {
    const e = await snapshotError(() => decodeText('kind: Node\n', '<stdin>'));
    assert.deepEqual(e.errors.map(formatDecodeError), ['<stdin>: document 1: apiVersion: is missing: not a Kubernetes object (want apiVersion and kind)']);
  });
  it('readSnapshot("-") reads stdin', () => {
    const script = `import { readSnapshot } from './adapters/manifest.ts'; const s = await readSnapshot('-'); console.log([...s.nodes.keys()].join(','), s.pods.size);`;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, input: 'apiVersion: v1\nkind: Node\nmetadata: {name: from-stdin}\n', encoding: 'utf8' });
    assert.equal(out.trim(), 'from-stdin 0');
  });
});

// YAML goes through js-yaml (fast) and, when js-yaml rejects a text, through the `yaml` package (exact
// errors). Where both accept, they must read the same documents with the same numbers.
describe('the two YAML readers agree', () => {
  it('on every bundled example', () => {
    for (const f of readdirSync(EX).filter((x) => x.endsWith('.yaml'))) {
      const text = readFileSync(join(EX, f), 'utf8');
      const fast = parseYamlFast(text, f);
      assert.ok(fast !== null, `${f}: js-yaml rejected it`);
      assert.deepEqual(fast, parseYamlExact(text, f), f);
    }
  });
  it('on documents of any JSON values written as YAML (scalars that look like other types included)', () => {
    const tricky = fc.constantFrom('yes', 'no', 'on', 'off', 'y', 'n', '~', 'null', 'true', '1e3', '0x1F', '0o17', '017', '1_000', '2024-05-14T09:12:33Z', '2024-05-14', '.inf', '-.nan', '10.224.0.4', 'fd00::1', '+1', '- x', ': y', '#z', '"q"', "'s'", '', ' lead', 'a\nb', '<<');
    const value = fc.letrec((tie) => ({
      v: fc.oneof({ maxDepth: 3 }, tricky, fc.string(), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null), fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(fc.oneof(fc.string(), tricky), tie('v'), { maxKeys: 4 })),
    })).v;
    // Where js-yaml rejects a text (a top-level block scalar without indentation, say) the exact reader
    // takes over, so only acceptance must agree; most texts must be accepted for this to say anything.
    let runs = 0, accepted = 0;
    fc.assert(
      fc.property(fc.array(fc.option(value), { minLength: 1, maxLength: 4 }), (docs) => {
        const text = docs.map((d) => (d === null ? '' : stringify(d))).join('---\n');
        const exact = parseYamlExact(text, 't.yaml');
        const fast = parseYamlFast(text, 't.yaml');
        runs++;
        if (fast === null) return;
        accepted++;
        assert.deepEqual(fast, exact, text);
        assert.deepEqual(parseText(text, 't.yaml', 'yaml'), exact);
      }),
      fcParams(300),
    );
    assert.ok(accepted >= runs * 0.8, `js-yaml accepted only ${accepted} of ${runs} texts`);
  });
});
