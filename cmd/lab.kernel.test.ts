// `wgplane lab` end to end, through the CLI as a newcomer runs it: `lab up` (3 nodes, one plain, real
// agents and WireGuard), `verify` passes (WireGuard pairs encrypted, pairs with the plain node in clear),
// `verify` fails when encryption is broken on purpose (a pod routed around the device; a peer removed
// behind the agent's back with the resync far away), `graph` draws the mesh as valid dot, and `lab down`
// leaves no namespace, process, file or mount. Also: `down` cleans up what a crashed `up` left.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { defaultRunner, runChecked, type RunResult } from '../adapters/run.js';
import { NetnsHome, kernelTestSkipReason, listNamespaces } from '../adapters/lab/netns.js';
import { LAB_RUN_ROOT, LAB_STATE_ROOT, isLabNamespace, labPaths, readLabState, type LabState } from '../adapters/lab/state.js';
import type { VerifyReport } from '../adapters/verify.js';
import { isRunning } from '../adapters/lab/lab.js';
import { wgplaneHere as wgplane } from '../testing/cluster.js';

const skip = kernelTestSkipReason();
const AGENT = 'daemon';


/** Everything of lab `name` still on the machine: namespaces, directories, processes naming its
 *  directories, and mounts (in any process's mount namespace) under its directories. */
async function leftovers(name: string, pids: readonly number[]): Promise<string[]> {
  const p = labPaths(name);
  const out: string[] = [];
  for (const ns of await listNamespaces()) if (isLabNamespace(name, ns)) out.push(`namespace ${ns}`);
  for (const d of [p.dir, p.runRoot]) if (existsSync(d)) out.push(`directory ${d}`);
  // A process that exited but is not reaped yet by its parent (init, for the detached agents) is a zombie:
  // it holds no namespace, mount or file any more.
  for (const pid of pids) if (isRunning(pid)) out.push(`agent pid ${pid}`);
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid || !isRunning(Number(e))) continue;
    let cmdline = '', mounts = '';
    try { cmdline = readFileSync(`/proc/${e}/cmdline`, 'utf8'); mounts = readFileSync(`/proc/${e}/mountinfo`, 'utf8'); } catch { continue; }
    if (cmdline.includes(p.dir) || cmdline.includes(p.runRoot)) out.push(`process ${e}: ${cmdline.replace(/\0/g, ' ')}`);
    for (const l of mounts.split('\n')) {
      const ns = /\/run\/netns\/(\S+)/.exec(l)?.[1];
      if (l.includes(`${p.runRoot}/`) || (ns && isLabNamespace(name, ns))) out.push(`mount in ${e}: ${l}`);
    }
  }
  return out;
}

async function verifyJson(name: string): Promise<{ r: RunResult; report: VerifyReport }> {
  const r = await wgplane(['verify', '--lab', name, '--output', 'json']);
  let report: VerifyReport;
  try { report = JSON.parse(r.stdout) as VerifyReport; } catch { assert.fail(`verify printed no JSON (exit ${r.exitCode}):\n${r.stdout}\n${r.stderr}`); }
  return { r, report };
}

for (const flavor of ['aks', 'podcidr'] as const) {
  test(`lab up, verify, graph, break it, lab down (${flavor})`, { skip: skip ?? false, timeout: 300_000 }, async (t) => {
    const name = `ci${flavor === 'aks' ? 'a' : 'p'}${randomBytes(3).toString('hex')}`;
    let state: LabState | null = null;
    t.after(async () => { await wgplane(['lab', 'down', '--name', name]); });

    const up = await wgplane(['lab', 'up', '--name', name, '--nodes', '3', '--pods', '2', '--flavor', flavor, '--plain-nodes', '1', '--agent', AGENT, '--set', 'resyncInterval=3600', '--wait', '120']);
    assert.equal(up.exitCode, 0, `lab up failed:\n${up.stdout}\n${up.stderr}`);
    assert.match(up.stdout, new RegExp(`wgplane verify --lab ${name}`), 'lab up says what to run next');
    assert.match(up.stdout, /wgl-.*-n0/, 'lab up names the namespaces');
    state = await readLabState(name);
    assert.ok(state && state.phase === 'up');
    const [n0, n1, n2] = state.nodes as [LabState['nodes'][0], LabState['nodes'][0], LabState['nodes'][0]];
    assert.deepEqual(state.nodes.map((n) => n.plain), [false, false, true], 'the last node is plain');
    if (AGENT === 'daemon') for (const n of [n0, n1]) assert.ok(n.pid !== null && existsSync(`/proc/${n.pid}`), `the agent of ${n.name} runs`);
    const pids = state.nodes.flatMap((n) => (n.pid ? [n.pid] : []));

    await t.test('lab status reports every node healthy', async () => {
      const r = await wgplane(['lab', 'status', '--name', name, '--output', 'json']);
      assert.equal(r.exitCode, 0, r.stdout + r.stderr);
      const st = JSON.parse(r.stdout) as { nodes: { plain: boolean; device: boolean; peers: number; namespace: boolean }[] };
      assert.deepEqual(st.nodes.map((n) => [n.namespace, n.plain || n.device, n.plain ? 0 : n.peers]), [[true, true, 1], [true, true, 1], [true, true, 0]]);
    });

    await t.test('verify passes: WireGuard pairs encrypted, pairs with the plain node in clear', async () => {
      const { r, report } = await verifyJson(name);
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      assert.equal(report.ok, true);
      const by = new Map(report.pairs.map((p) => [`${p.a}|${p.b}`, p]));
      const enc = by.get(`${n0.name}|${n1.name}`)!;
      assert.equal(enc.verdict, 'encrypted');
      assert.equal(enc.clearPackets, 0);
      assert.ok(enc.wireguardPackets >= enc.probe.received && enc.probe.received > 0);
      for (const s of enc.sides) {
        assert.ok(s.handshakeAgeS !== null && s.handshakeAgeS <= 180, `${s.node}: handshake`);
        assert.ok(s.txDelta > 0 && s.rxDelta > 0, `${s.node}: counters moved`);
      }
      for (const k of [`${n0.name}|${n2.name}`, `${n1.name}|${n2.name}`]) {
        const p = by.get(k)!;
        assert.equal(p.verdict, 'clear (expected)', k);
        assert.ok(p.clearPackets > 0, `${k}: the probe is seen in clear`);
      }
      const text = await wgplane(['verify', '--lab', name]);
      assert.equal(text.exitCode, 0);
      assert.match(text.stdout, /PAIR +EXPECTED +RESULT/);
      assert.match(text.stdout, /clear \(expected\)/);
    });

    await t.test('graph draws the mesh as dot that Graphviz accepts', async (tt) => {
      const r = await wgplane(['graph', '--lab', name]);
      assert.equal(r.exitCode, 0, r.stderr);
      const edges = r.stdout.split('\n').filter((l) => l.includes(' -- '));
      assert.equal(edges.length, 3);
      assert.match(edges.find((l) => l.includes(n0.name) && l.includes(n1.name))!, /style=solid.*label="handshake \d+s \/ \d+s"/);
      assert.equal(edges.filter((l) => l.includes(n2.name) && /style=dashed/.test(l)).length, 2);
      const dot = await execa('dot', ['-Tcanon'], { input: r.stdout, reject: false });
      if ((dot as { code?: string }).code === 'ENOENT') { tt.skip('Graphviz `dot` is not installed (Debian package graphviz)'); return; }
      assert.equal(dot.exitCode, 0, `dot rejected the graph: ${String(dot.stderr)}`);
    });

    const home = new NetnsHome(state.paths.runRoot);
    const pod0 = n0.pods[0]!;

    await t.test('verify fails when a pod is routed around the device', async () => {
      await runChecked(defaultRunner, 'ip', ['-n', n0.ns, 'rule', 'add', 'priority', '50', 'from', pod0.ip, 'lookup', 'main']);
      try {
        const { r, report } = await verifyJson(name);
        assert.equal(r.exitCode, 1, 'verify must exit non-zero');
        const p = report.pairs.find((x) => x.a === n0.name && x.b === n1.name)!;
        assert.equal(p.ok, false);
        assert.equal(p.verdict, 'NOT ENCRYPTED');
        assert.ok(p.clearPackets > 0 && p.reasons.some((s) => /seen in clear/.test(s)), p.reasons.join('; '));
      } finally {
        await runChecked(defaultRunner, 'ip', ['-n', n0.ns, 'rule', 'del', 'priority', '50', 'from', pod0.ip, 'lookup', 'main']);
      }
      const again = await verifyJson(name);
      assert.equal(again.r.exitCode, 0, 'verify passes again once the bypass is gone');
    });

    await t.test('verify fails when a peer is removed behind the agent\'s back', async () => {
      const iface = 'wireguard.wgp';
      const dump = await home.execChecked(n0.ns, 'wg', ['show', iface, 'dump']);
      const line = dump.stdout.trim().split('\n').slice(1).find((l) => l.split('\t')[2]?.startsWith(`${n1.ip}:`));
      assert.ok(line, 'n0 has a peer for n1');
      await home.execChecked(n0.ns, 'wg', ['set', iface, 'peer', line.split('\t')[0]!, 'remove']);
      const { r, report } = await verifyJson(name);
      assert.equal(r.exitCode, 1, 'verify must exit non-zero');
      const p = report.pairs.find((x) => x.a === n0.name && x.b === n1.name)!;
      assert.equal(p.ok, false);
      assert.ok(p.reasons.some((s) => s.includes(`${n0.name} has no WireGuard peer`)), p.reasons.join('; '));
      const g = await wgplane(['graph', '--lab', name]);
      assert.match(g.stdout.split('\n').find((l) => l.includes(' -- ') && l.includes(n0.name) && l.includes(n1.name))!, /NOT encrypted: no peer/);
    });

    await t.test('lab down leaves no namespace, process, file or mount', async () => {
      const r = await wgplane(['lab', 'down', '--name', name]);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.deepEqual(await leftovers(name, pids), []);
      const again = await wgplane(['lab', 'down', '--name', name]);
      assert.equal(again.exitCode, 0, 'down twice is fine');
      assert.match(again.stdout, /nothing to remove/);
    });
  });
}

test('lab down removes what a crashed lab up left, without lab.json', { skip: skip ?? false, timeout: 60_000 }, async (t) => {
  const name = `crash${randomBytes(3).toString('hex')}`;
  t.after(async () => { await wgplane(['lab', 'down', '--name', name]); });
  const p = labPaths(name);
  const home = new NetnsHome(p.runRoot);
  // What an `up` killed half-way leaves: a bridge and a node namespace, a process inside, a half-written dir.
  await home.create(`wgl-${name}-br`);
  await home.create(`wgl-${name}-n0`);
  const sleeper = execa('ip', ['netns', 'exec', `wgl-${name}-n0`, 'sleep', '300'], { reject: false, detached: true, stdio: 'ignore' });
  await mkdir(p.clusterDir, { recursive: true });
  await writeFile(path.join(p.clusterDir, 'cluster.yaml'), '');
  // Another lab whose name starts the same must not be touched.
  const other = `wgl-${name}-x-n0`;
  await runChecked(defaultRunner, 'ip', ['netns', 'add', other]);
  try {
    const deadline = Date.now() + 5000;
    while (!(await defaultRunner('ip', ['netns', 'pids', `wgl-${name}-n0`])).stdout.trim() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const r = await wgplane(['lab', 'down', '--name', name]);
    assert.equal(r.exitCode, 0, r.stderr);
    await sleeper;
    assert.deepEqual(await leftovers(name, sleeper.pid ? [sleeper.pid] : []), []);
    assert.ok((await listNamespaces()).includes(other), 'a namespace of another lab was removed');
  } finally {
    await defaultRunner('ip', ['netns', 'del', other]);
  }
  assert.equal(LAB_STATE_ROOT, '/var/lib/wgplane-lab');
  assert.equal(LAB_RUN_ROOT, '/run/wgplane-lab');
});
