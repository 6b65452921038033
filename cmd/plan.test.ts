// `wgplane plan` as a newcomer runs it: the real CLI (cmd/main.ts in a child process) on the bundled
// examples, every node of each. No root and no kernel: --observed empty, or a JSON file in the format
// `wgplane observe` prints. Also: README's example output is the CLI's real output, byte for byte.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { desired } from '../core/desired.js';
import type { NodeName } from '../core/model.js';
import { readSnapshot } from '../adapters/manifest.js';
import { observedToJson } from '../adapters/observed-json.js';
import { generateKey, programmedObserved } from '../testing/generate.js';
import { CLI_ARGS, REPO, wgplaneHere } from '../testing/cluster.js';
import { defaultRunner } from '../adapters/run.js';

const EXAMPLES = path.join(REPO, 'examples');

let stateDir = '';
const wgplane = (args: readonly string[], input?: string) => wgplaneHere(args, input === undefined ? undefined : { input });
/** `plan` with an empty state directory (no stored key), so nothing depends on this machine. */
const plan = (snapshot: string, node: string, ...rest: string[]) =>
  wgplane(['plan', '--snapshot', snapshot, '--node', node, '--state-dir', stateDir, ...rest]);

const SUMMARY = /^Plan: (\d+) to add, (\d+) to change, (\d+) to remove\.$/m;

interface PlanJson {
  version: number;
  node: string;
  summary: { add: number; change: number; remove: number };
  problems: { kind: string; message: string }[];
  blocked: string[];
  operations: { op: string; reason: string; origin: { kind: string }; dest?: string; type?: string; node?: string }[];
}

/** Every node of every example: the text and the JSON plan agree, every operation has a reason. */
const CASES: readonly { file: string; expect: Record<string, { exit: 0 | 2 | 1; why?: RegExp }> }[] = [
  { file: 'aks-azure-cni.yaml', expect: {
    'aks-nodepool1-12345678-vmss000000': { exit: 2 },
    'aks-nodepool1-12345678-vmss000001': { exit: 2 },
    'aks-nodepool1-12345678-vmss000002': { exit: 2 },
    'aks-nodepool1-12345678-vmss000003': { exit: 2 },
  } },
  { file: 'podcidr.yaml', expect: { 'cp-1': { exit: 2 }, 'worker-1': { exit: 2 }, 'worker-2': { exit: 2 } } },
  { file: 'dual-stack.yaml', expect: { 'dual-control-plane': { exit: 2 }, 'dual-worker': { exit: 2 }, 'dual-worker2': { exit: 2 } } },
];

describe('wgplane plan on the bundled examples (the real CLI)', () => {
  before(async () => {
    stateDir = await mkdtemp(path.join(os.tmpdir(), 'wgplane-plan-test-'));
  });
  after(async () => {
    await rm(stateDir, { recursive: true, force: true });
  });

  it('README shows the real output of its plan command, byte for byte', async () => {
    const readme = await readFile(path.join(REPO, 'README.md'), 'utf8');
    const cmd = 'npx wgplane plan --snapshot examples/aks-azure-cni.yaml --node aks-nodepool1-12345678-vmss000000 --observed empty';
    assert.ok(readme.includes(cmd), 'README no longer shows the plan command this test runs');
    const start = readme.indexOf('```text\nwgplane plan for node aks-nodepool1-12345678-vmss000000');
    assert.ok(start >= 0, 'README has no plan output block');
    const shown = readme.slice(start + '```text\n'.length, readme.indexOf('```', start + 8));
    const r = await plan('examples/aks-azure-cni.yaml', 'aks-nodepool1-12345678-vmss000000', '--observed', 'empty');
    assert.equal(r.exitCode, 2, r.stderr);
    assert.equal(shown, r.stdout);
  });

  for (const c of CASES) {
    for (const [node, want] of Object.entries(c.expect)) {
      it(`${c.file}, node ${node}: text and JSON agree, exit ${want.exit}`, async () => {
        const file = path.join('examples', c.file);
        const [text, json] = await Promise.all([
          plan(file, node, '--observed', 'empty'),
          plan(file, node, '--observed', 'empty', '--output', 'json'),
        ]);
        assert.equal(text.exitCode, want.exit, text.stderr);
        assert.equal(json.exitCode, want.exit, json.stderr);
        assert.equal(text.stderr, '');
        const m = SUMMARY.exec(text.stdout);
        assert.ok(m, `no summary line in:\n${text.stdout}`);
        const p = JSON.parse(json.stdout) as PlanJson;
        assert.equal(p.version, 1);
        assert.equal(p.node, node);
        assert.deepEqual([p.summary.add, p.summary.change, p.summary.remove], [Number(m[1]), Number(m[2]), Number(m[3])]);
        assert.ok(p.operations.length > 0);
        for (const op of p.operations) {
          assert.ok(op.reason.length > 0 && op.reason !== op.op, `${op.op} has no reason`);
          assert.ok(op.origin.kind.length > 0);
        }
        // the device before any peer, peers before the rule that steers traffic to them
        const first = (k: string) => p.operations.findIndex((o) => o.op === k);
        const last = (k: string) => p.operations.map((o) => o.op).lastIndexOf(k);
        assert.ok(first('link-create') < first('peer-add') || first('peer-add') < 0);
        assert.ok(last('peer-add') < first('rule-add'));
        assert.ok(last('route-add') < first('rule-add'));
        for (const pr of p.problems) assert.ok(text.stdout.includes(pr.message), `warning missing from the text: ${pr.message}`);
        assert.ok(!/privateKey|PrivateKey/.test(json.stdout), 'a private key field in the plan');
      });
    }
  }

  it('mixed.yaml: the IP claimed by two nodes is reported and routed to neither; a shared key peers neither', async () => {
    const r = await plan('examples/mixed.yaml', 'node-a', '--observed', 'empty', '--output', 'json');
    assert.equal(r.exitCode, 2, r.stderr);
    const p = JSON.parse(r.stdout) as PlanJson;
    const kinds = p.problems.map((x) => x.kind);
    assert.ok(kinds.includes('ip-conflict'), kinds.join(', '));
    assert.ok(kinds.includes('shared-key'), kinds.join(', '));
    assert.ok(!p.operations.some((o) => o.op === 'route-add' && o.dest === '10.244.0.50/32' && o.type === 'device'));
    assert.ok(!p.operations.some((o) => o.op === 'peer-add' && (o.node === 'node-d' || o.node === 'node-e')));
  });

  it('reads the same snapshot from stdin (YAML and JSON) and from a directory of files', async () => {
    const node = 'aks-nodepool1-12345678-vmss000001';
    const file = path.join(EXAMPLES, 'aks-azure-cni.yaml');
    const want = await plan(file, node, '--observed', 'empty', '--output', 'json');
    const yaml = await readFile(file, 'utf8');
    const fromYaml = await wgplane(['plan', '--snapshot', '-', '--node', node, '--state-dir', stateDir, '--observed', 'empty', '-o', 'json'], yaml);
    assert.equal(fromYaml.exitCode, 2, fromYaml.stderr);
    assert.equal(fromYaml.stdout, want.stdout);
    // kubectl's JSON form, and the objects one per file in a directory
    const snapshotDocs = (await import('js-yaml')).load(yaml) as { items: unknown[] };
    const fromJson = await wgplane(['plan', '--snapshot', '-', '--node', node, '--state-dir', stateDir, '--observed', 'empty', '-o', 'json'], JSON.stringify(snapshotDocs, null, 4));
    assert.equal(fromJson.stdout, want.stdout, fromJson.stderr);
    const dir = path.join(stateDir, 'manifests');
    await mkdir(dir, { recursive: true });
    await Promise.all(snapshotDocs.items.map((o, i) => writeFile(path.join(dir, `${String(i).padStart(3, '0')}.json`), JSON.stringify(o))));
    const fromDir = await plan(dir, node, '--observed', 'empty', '-o', 'json');
    assert.equal(fromDir.stdout, want.stdout, fromDir.stderr);
  });

  it('--node defaults to $NODE_NAME', async () => {
    const r = await defaultRunner('env', ['NODE_NAME=worker-2', process.execPath, ...CLI_ARGS, 'plan', '--snapshot', 'examples/podcidr.yaml', '--state-dir', stateDir, '--observed', 'empty', '-o', 'json']);
    assert.equal(r.exitCode, 2, r.stderr);
    assert.equal((JSON.parse(r.stdout) as PlanJson).node, 'worker-2');
  });

  it('--observed FILE: against the state the plan leads to, nothing to do (exit 0)', async () => {
    for (const [file, node] of [['aks-azure-cni.yaml', 'aks-nodepool1-12345678-vmss000000'], ['dual-stack.yaml', 'dual-worker']] as const) {
      const snapshot = await readSnapshot(path.join(EXAMPLES, file));
      const d = desired(snapshot, node as NodeName, { underlayMtu: 1500, publicKey: null });
      assert.ok(E.isRight(d) && d.right.kind === 'enabled');
      const observedFile = path.join(stateDir, `observed-${node}.json`);
      await writeFile(observedFile, JSON.stringify(observedToJson(programmedObserved(d.right, generateKey(1), 1500))));
      const r = await plan(path.join('examples', file), node, '--observed', observedFile);
      assert.equal(r.exitCode, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /No changes|nothing to do/i);
    }
  });

  it('bad input: exit 1, the place named, nothing on stdout', async () => {
    const yaml = (await readFile(path.join(EXAMPLES, 'aks-azure-cni.yaml'), 'utf8')).replace('10.224.0.21', '10.224.0.999');
    const r = await wgplane(['plan', '--snapshot', '-', '--node', 'aks-nodepool1-12345678-vmss000000', '--state-dir', stateDir, '--observed', 'empty'], yaml);
    assert.equal(r.exitCode, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /<stdin>|stdin/);
    assert.match(r.stderr, /items\[\d+\]\.status\.podIPs?(\[0\]\.ip)?: "10\.224\.0\.999" is not an IP address/);
  });

  it('errors: unknown node, missing file, bad --observed file (exit 1, one clear line)', async () => {
    const cases: [string[], RegExp][] = [
      [['plan', '--snapshot', 'examples/podcidr.yaml', '--node', 'no-such-node', '--observed', 'empty'], /no-such-node/],
      [['plan', '--snapshot', 'examples/nope.yaml', '--node', 'cp-1', '--observed', 'empty'], /examples\/nope\.yaml/],
      [['plan', '--snapshot', 'examples/podcidr.yaml', '--node', 'cp-1', '--observed', 'README.md'], /--observed README\.md: not JSON/],
    ];
    for (const [args, re] of cases) {
      const r = await wgplane([...args, '--state-dir', stateDir]);
      assert.equal(r.exitCode, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, re);
      assert.ok(!/\n\s+at /.test(r.stderr), `a stack trace for an expected error:\n${r.stderr}`);
    }
  });

  it('every command has --help (exit 0)', async () => {
    const top = await wgplane(['--help']);
    assert.equal(top.exitCode, 0);
    const commands = [...top.stdout.matchAll(/^ {2}([a-z][a-z-]*)\b/gm)].map((m) => m[1]!).filter((c) => c !== 'help');
    assert.ok(commands.includes('plan') && commands.includes('apply') && commands.includes('daemon'), commands.join(' '));
    const helps = await Promise.all(commands.map((c) => wgplane([c, '--help'])));
    helps.forEach((h, i) => {
      assert.equal(h.exitCode, 0, `${commands[i]} --help: ${h.stderr}`);
      assert.match(h.stdout, /^Usage: wgplane /);
    });
  });
});
