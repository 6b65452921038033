// wgplane never touches what it does not own: foreign state planted before `apply` (another WireGuard
// device, routes in other tables, other rules, other iptables chains) is untouched by apply and cleanup;
// cleanup is safe where wgplane never ran; bad input touches nothing; a device key changed behind the
// agent's back is corrected; two applies at once do not interleave.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateCluster, toListJson, nodeNames } from '../testing/generate.js';
import { Lab, addUnderlay, kernelTestSkipReason, nodeExec } from '../testing/netns.js';
import { CLI_ARGS } from '../testing/cluster.js';
import { runChecked, type Runner } from '../adapters/run.js';

const skip = kernelTestSkipReason();

/** Everything in the namespace that is not wgplane's, in a comparable form (no private keys). */
async function foreignState(run: Runner): Promise<string> {
  const out: string[] = [];
  // wgplane's own rule (protocol 98) is left out: everything else must stay exactly as it was.
  const cmd = async (c: string, a: string[]) =>
    out.push(`$ ${c} ${a.join(' ')}\n${(await run(c, a)).stdout.split('\n').filter((l) => !l.includes('proto 98')).join('\n')}`);
  await cmd('ip', ['rule', 'show']);
  await cmd('ip', ['route', 'show', 'table', '100']);
  await cmd('ip', ['route', 'show', 'table', 'main']);
  await cmd('wg', ['show', 'wgforeign', 'peers']);
  await cmd('wg', ['show', 'wgforeign', 'allowed-ips']);
  await cmd('wg', ['show', 'wgforeign', 'public-key']);
  await cmd('wg', ['show', 'wgforeign', 'listen-port']);
  const filter = (await run('iptables-save', ['-t', 'filter'])).stdout.split('\n');
  const raw = (await run('iptables-save', ['-t', 'raw'])).stdout.split('\n');
  out.push([...filter, ...raw].filter((l) => l.includes('FOREIGN') || (l.startsWith('-A') && !l.includes('WGPLANE'))).join('\n'));
  return out.join('\n').replace(/rule\s+\d+:/g, '');
}

test('apply and cleanup leave foreign state alone; bad input touches nothing; key drift is corrected', { skip: skip ?? false, timeout: 300_000 }, async (t) => {
  const lab = new Lab('wgpx');
  t.after(() => lab.dispose());
  const ns = await lab.namespace();
  const run = ns.run;
  const c = generateCluster({ nodes: 4, podsPerNode: 3, flavor: 'aks', seed: 3 });
  const local = nodeNames(c)[0]!;
  const localIP = c.snapshot.nodes.get(local)!.addresses[0]!.address;
  const dir = mkdtempSync(path.join(tmpdir(), 'wgpx-'));
  const snapshot = path.join(dir, 'cluster.json');
  writeFileSync(snapshot, toListJson(c.objects));
  const stateDir = path.join(dir, 'state');
  const wgplane = (args: string[], input?: string) => nodeExec(ns.name, process.execPath, [...CLI_ARGS, ...args], input !== undefined ? { input } : undefined);

  // The underlay and the foreign state.
  await addUnderlay(run, localIP);
  await runChecked(run, 'wireguard-go', ['wgforeign']);
  const foreignKey = (await runChecked(run, 'wg', ['genkey'])).stdout.trim();
  const foreignPeer = (await runChecked(run, 'wg', ['pubkey'], { input: (await runChecked(run, 'wg', ['genkey'])).stdout })).stdout.trim();
  await runChecked(run, 'sh', ['-c', `cat | wg set wgforeign private-key /dev/stdin listen-port 41000 peer ${foreignPeer} allowed-ips 192.0.2.0/24`], { input: foreignKey });
  await runChecked(run, 'ip', ['link', 'set', 'wgforeign', 'up']);
  await runChecked(run, 'ip', ['route', 'add', '198.51.100.0/24', 'dev', 'wgforeign', 'table', '100']);
  await runChecked(run, 'ip', ['route', 'add', 'throw', '203.0.113.0/24', 'table', '100']);
  await runChecked(run, 'ip', ['rule', 'add', 'from', '192.0.2.0/24', 'lookup', '100', 'priority', '50']);
  await runChecked(run, 'ip', ['rule', 'add', 'not', 'fwmark', '0x100000/0x100000', 'lookup', '100', 'priority', '99']); // looks like ours, is not (no protocol 98)
  await runChecked(run, 'iptables', ['-N', 'FOREIGN-CHAIN']);
  await runChecked(run, 'iptables', ['-A', 'FOREIGN-CHAIN', '-p', 'tcp', '--dport', '22', '-j', 'ACCEPT']);
  await runChecked(run, 'iptables', ['-I', 'INPUT', '-j', 'FOREIGN-CHAIN']);
  await runChecked(run, 'iptables', ['-t', 'raw', '-A', 'PREROUTING', '-i', 'eth9', '-j', 'NOTRACK']);
  const before = await foreignState(run);

  await t.test('cleanup where wgplane never ran changes nothing', async () => {
    const r = await wgplane(['cleanup', '--state-dir', stateDir]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /No changes/);
    assert.equal(await foreignState(run), before);
  });

  // Found in review: `cleanup --table 254` planned "all routes of table 254" and flushed the main table.
  await t.test("cleanup/observe/apply --table naming one of the kernel's tables is refused; nothing is touched", async () => {
    const main = (await run('ip', ['route', 'show', 'table', 'main'])).stdout;
    assert.ok(main.trim() !== '', 'the main table has routes to lose');
    for (const [table, name] of [['254', 'main'], ['255', 'local'], ['253', 'default'], ['0', '']] as const) {
      for (const cmd of ['cleanup', 'observe']) {
        const r = await wgplane([cmd, '--table', table, '--state-dir', stateDir]);
        assert.equal(r.exitCode, 1, `${cmd} --table ${table}: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, new RegExp(`--table.*${name ? `kernel's ${name} table` : 'out of range|want'}`));
      }
    }
    for (const bad of ['abc', '-1', '1.5']) {
      const r = await wgplane(['cleanup', '--table', bad, '--state-dir', stateDir]);
      assert.equal(r.exitCode, 1, `--table ${bad}: ${r.stdout}${r.stderr}`);
    }
    const r = await wgplane(['cleanup', '--interface', 'a/b', '--state-dir', stateDir]);
    assert.equal(r.exitCode, 1, r.stdout + r.stderr);
    assert.equal((await run('ip', ['route', 'show', 'table', 'main'])).stdout, main);
    assert.equal(await foreignState(run), before);
  });

  await t.test('bad input is refused with its place named, and the kernel is untouched', async () => {
    const bad = path.join(dir, 'bad.json');
    const objects = JSON.parse(toListJson(c.objects)) as { items: { kind: string; status?: { podIPs?: { ip: string }[] } }[] };
    const i = objects.items.findIndex((o) => o.kind === 'Pod' && o.status?.podIPs?.length);
    objects.items[i]!.status!.podIPs![0]!.ip = '10.224.0.999';
    writeFileSync(bad, JSON.stringify(objects));
    const r = await wgplane(['apply', '--snapshot', bad, '--node', local, '--state-dir', stateDir]);
    assert.equal(r.exitCode, 1);
    assert.match(r.stderr, new RegExp(`bad.json: document 1: items\\[${i}\\]\\.status\\.podIPs\\[0\\]\\.ip: "10.224.0.999" is not an IP address`));
    const o = JSON.parse((await wgplane(['observe'])).stdout) as { device: unknown; rules: unknown[] };
    assert.equal(o.device, null);
    assert.equal(o.rules.length, 0);
    assert.equal(await foreignState(run), before);
  });

  await t.test('apply programs the node and leaves foreign state alone', async () => {
    const r = await wgplane(['apply', '--snapshot', snapshot, '--node', local, '--state-dir', stateDir]);
    assert.equal(r.exitCode, 0, r.stdout + r.stderr);
    assert.equal(await foreignState(run), before);
    const p = await wgplane(['plan', '--snapshot', snapshot, '--node', local, '--state-dir', stateDir]);
    assert.equal(p.exitCode, 0, p.stdout);
  });

  await t.test('a device key changed behind the agent\'s back is corrected', async () => {
    const other = (await runChecked(run, 'wg', ['genkey'])).stdout.trim();
    await runChecked(run, 'sh', ['-c', 'cat | wg set wireguard.wgp private-key /dev/stdin'], { input: other });
    const p = await wgplane(['plan', '--snapshot', snapshot, '--node', local, '--state-dir', stateDir]);
    assert.equal(p.exitCode, 2);
    assert.match(p.stdout, /configure wireguard\.wgp/);
    assert.ok(!p.stdout.includes(other));
    const r = await wgplane(['apply', '--snapshot', snapshot, '--node', local, '--state-dir', stateDir]);
    assert.equal(r.exitCode, 0, r.stderr);
    const pub = (await run('wg', ['show', 'wireguard.wgp', 'public-key'])).stdout.trim();
    assert.equal(pub, (await wgplane(['key', 'public', '--state-dir', stateDir])).stdout.trim());
  });

  await t.test('two applies at once both succeed and leave the desired state', async () => {
    await runChecked(run, 'ip', ['route', 'flush', 'table', '51820']);
    const [a, b] = await Promise.all([1, 2].map(() => wgplane(['apply', '--snapshot', snapshot, '--node', local, '--state-dir', stateDir])));
    assert.equal(a!.exitCode, 0, a!.stderr);
    assert.equal(b!.exitCode, 0, b!.stderr);
    assert.ok([a!.stdout, b!.stdout].some((s) => /No changes/.test(s)), 'the second apply, run after the first under the lock, found nothing to do');
    const p = await wgplane(['plan', '--snapshot', snapshot, '--node', local, '--state-dir', stateDir]);
    assert.equal(p.exitCode, 0, p.stdout);
  });

  await t.test('cleanup removes what wgplane owns, and only that', async () => {
    const r = await wgplane(['cleanup', '--state-dir', stateDir]);
    assert.equal(r.exitCode, 0, r.stderr);
    const o = JSON.parse((await wgplane(['observe'])).stdout) as { device: unknown; rules: unknown[]; routes: unknown[]; firewall: unknown[] };
    assert.equal(o.device, null);
    assert.deepEqual([o.rules.length, o.routes.length, o.firewall.length], [0, 0, 0]);
    assert.equal(await foreignState(run), before);
    const again = await wgplane(['cleanup', '--state-dir', stateDir]);
    assert.equal(again.exitCode, 0);
    assert.match(again.stdout, /No changes/);
  });
});
