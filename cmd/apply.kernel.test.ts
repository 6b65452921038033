// `wgplane apply` end to end on a cluster of network namespaces with real WireGuard (wireguard-go) and
// real packets: what crosses the bridge is captured with tcpdump and checked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { TestCluster, ping, type ClusterNode } from '../testing/cluster.js';
import { Capture, type Packet } from '../testing/capture.js';
import { kernelTestSkipReason, nodeExec } from '../testing/netns.js';

const skip = kernelTestSkipReason();
const PORT = 51820;

interface Ctx { c: TestCluster; file: string; keys: Map<string, string | null>; outputs: string[] }

async function setUp(flavor: 'aks' | 'podcidr'): Promise<Ctx> {
  const c = await TestCluster.create({ flavor, nodes: 3, podsPerNode: 2, plainNodes: [2] });
  const keys = new Map<string, string | null>();
  const outputs: string[] = [];
  for (const n of c.nodes) {
    if (n.plain) { keys.set(n.name, null); continue; }
    const r = await c.wgplane(n, ['key', 'public', '--state-dir', n.stateDir]);
    assert.equal(r.exitCode, 0, r.stderr);
    outputs.push(r.stdout, r.stderr);
    keys.set(n.name, r.stdout.trim());
  }
  const file = path.join(c.nodes[0]!.stateDir, '..', 'cluster.json');
  await writeFile(file, JSON.stringify(c.manifests(keys, { enabled: 'true' })));
  return { c, file, keys, outputs };
}

async function applyAll(ctx: Ctx, extra: readonly string[] = []): Promise<void> {
  for (const n of ctx.c.nodes.filter((x) => !x.plain)) {
    const r = await ctx.c.wgplane(n, ['apply', '--snapshot', ctx.file, '--node', n.name, '--state-dir', n.stateDir, ...extra]);
    ctx.outputs.push(r.stdout, r.stderr);
    assert.equal(r.exitCode, 0, `apply on ${n.name} failed:\n${r.stdout}\n${r.stderr}`);
  }
}

async function captured(ctx: Ctx, fn: () => Promise<void>): Promise<Packet[]> {
  const cap = await Capture.start(ctx.c.bridge.name, 'br0');
  try {
    await fn();
  } finally {
    var packets = await cap.stop();
  }
  return packets;
}

const involves = (p: Packet, ...ips: string[]) => ips.includes(p.src) || ips.includes(p.dst);
const isWireGuard = (p: Packet, a: ClusterNode, b: ClusterNode) =>
  p.proto === 'udp' && p.sport === PORT && p.dport === PORT && [a.ip, b.ip].includes(p.src) && [a.ip, b.ip].includes(p.dst);

async function privateKeys(ctx: Ctx): Promise<string[]> {
  const out: string[] = [];
  for (const n of ctx.c.nodes.filter((x) => !x.plain)) out.push((await readFile(path.join(n.stateDir, 'private.key'), 'utf8')).trim());
  return out;
}

for (const flavor of ['aks', 'podcidr'] as const) {
  test(`apply builds an encrypted mesh (${flavor})`, { skip: skip ?? false, timeout: 240_000 }, async (t) => {
    const ctx = await setUp(flavor);
    t.after(() => ctx.c.destroy());
    const [n0, n1, n2] = ctx.c.nodes as [ClusterNode, ClusterNode, ClusterNode];
    const hostEncryption = flavor === 'aks';

    // Before: everything reachable in clear (the underlay works).
    assert.ok(await ping(n0.pods[0]!.ns, n1.pods[0]!.ip), 'pod to pod across nodes works before wgplane');

    await applyAll(ctx);

    await t.test('the key file is 0600 and no private key appears in any output', async () => {
      for (const n of [n0, n1]) assert.equal((await stat(path.join(n.stateDir, 'private.key'))).mode & 0o777, 0o600);
      const all = ctx.outputs.join('\n');
      for (const k of await privateKeys(ctx)) assert.ok(!all.includes(k), 'a private key was printed');
    });

    await t.test('after apply, plan shows no change (exit 0)', async () => {
      for (const n of [n0, n1]) {
        const r = await ctx.c.wgplane(n, ['plan', '--snapshot', ctx.file, '--node', n.name, '--state-dir', n.stateDir]);
        assert.equal(r.exitCode, 0, `${n.name}: ${r.stdout}${r.stderr}`);
        assert.match(r.stdout, /No changes/);
      }
    });

    await t.test('applying again changes nothing', async () => {
      const r = await ctx.c.wgplane(n0, ['apply', '--snapshot', ctx.file, '--node', n0.name, '--state-dir', n0.stateDir]);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.match(r.stdout, /No changes/);
    });

    await t.test('the kernel holds the desired state', async () => {
      const dump = await nodeExec(n0.ns, 'wg', ['show', 'wireguard.wgp', 'dump']);
      assert.equal(dump.exitCode, 0, dump.stderr);
      const peers = dump.stdout.trim().split('\n').slice(1);
      assert.equal(peers.length, 1, 'one peer: the other WireGuard node (the plain node is not a peer)');
      const allowed = peers[0]!.split('\t')[3]!.split(',').sort();
      const expectAllowed = (hostEncryption ? [...n1.pods.map((p) => `${p.ip}/32`), `${n1.ip}/32`] : [n1.podCIDR!]).sort();
      assert.deepEqual(allowed, expectAllowed);
      const rules = await nodeExec(n0.ns, 'ip', ['rule', 'show']);
      assert.match(rules.stdout, /99:\s+not from all fwmark 0x100000\/0x100000 lookup 51820 proto 98/);
      const link = await nodeExec(n0.ns, 'ip', ['-j', 'link', 'show', 'wireguard.wgp']);
      const mtu = (JSON.parse(link.stdout) as { mtu: number }[])[0]!.mtu;
      assert.equal(mtu, hostEncryption ? 1340 : 1440);
      if (hostEncryption) {
        const s = await nodeExec(n0.ns, 'sysctl', ['-n', 'net.ipv4.conf.all.src_valid_mark']);
        assert.equal(s.stdout.trim(), '1');
        const raw = await nodeExec(n0.ns, 'iptables-save', ['-t', 'raw']);
        assert.match(raw.stdout, /-A WGPLANE-PREROUTING -i azv\+ -j RETURN/);
      }
    });

    await t.test('pod to pod across nodes is encrypted: only WireGuard UDP between node IPs on the wire', async () => {
      const a = n0.pods[0]!, b = n1.pods[1]!;
      let ok = false;
      const packets = await captured(ctx, async () => { ok = await ping(a.ns, b.ip, 3); });
      assert.ok(ok, 'ping across nodes failed');
      assert.equal(packets.filter((p) => involves(p, a.ip, b.ip)).length, 0, 'pod IPs seen in clear on the wire');
      assert.ok(packets.filter((p) => isWireGuard(p, n0, n1)).length >= 3, 'no WireGuard packets seen');
    });

    await t.test('pod to pod on one node is not encrypted and never leaves the node', async () => {
      const a = n0.pods[0]!, b = n0.pods[1]!;
      let ok = false;
      const packets = await captured(ctx, async () => { ok = await ping(a.ns, b.ip, 3); });
      assert.ok(ok);
      assert.equal(packets.filter((p) => involves(p, a.ip, b.ip)).length, 0);
      assert.equal(packets.filter((p) => p.proto === 'udp' && p.dport === PORT).length, 0, 'same-node traffic went through WireGuard');
    });

    await t.test(`host to host ${hostEncryption ? 'is encrypted' : 'stays in clear without host encryption'}`, async () => {
      let ok = false;
      const packets = await captured(ctx, async () => { ok = await ping(n0.ns, n1.ip, 3); });
      assert.ok(ok);
      const clear = packets.filter((p) => p.proto === 'icmp' && involves(p, n0.ip) && involves(p, n1.ip));
      if (hostEncryption) assert.equal(clear.length, 0, 'host ICMP seen in clear');
      else assert.ok(clear.length >= 3, 'host ICMP should be in clear');
    });

    await t.test('a node without WireGuard still reaches and is reached in clear', async () => {
      const a = n0.pods[0]!, c = n2.pods[0]!;
      let ok1 = false, ok2 = false, ok3 = false;
      const packets = await captured(ctx, async () => {
        ok1 = await ping(a.ns, c.ip, 2);
        ok2 = await ping(c.ns, a.ip, 2);
        ok3 = await ping(n2.ns, n0.ip, 2);
      });
      assert.ok(ok1 && ok2 && ok3, `plain node unreachable: ${ok1} ${ok2} ${ok3}`);
      assert.ok(packets.some((p) => p.proto === 'icmp' && involves(p, a.ip) && involves(p, c.ip)), 'expected clear ICMP with the plain node');
    });

    await t.test('a bulk TCP transfer across nodes completes at the chosen MTU', async () => {
      const server = n1.pods[0]!, client = n0.pods[1]!;
      const bytes = 8 * 1024 * 1024;
      const srv = nodeExec(server.ns, 'node', ['-e', `
        const net = require('net'); let n = 0;
        const s = net.createServer((c) => { c.on('data', (d) => { n += d.length; }); c.on('end', () => { c.end(String(n)); s.close(); }); });
        s.listen(5001, '${server.ip}', () => console.log('ready'));
        setTimeout(() => process.exit(3), 60000).unref();`]);
      await new Promise((r) => setTimeout(r, 700));
      let packets: Packet[] = [];
      const res = await (async () => {
        const cap = await Capture.start(ctx.c.bridge.name, 'br0');
        const r = await nodeExec(client.ns, 'node', ['-e', `
          const net = require('net'); const c = net.connect(5001, '${server.ip}', () => { c.end(Buffer.alloc(${bytes}, 7)); });
          let got = ''; c.on('data', (d) => got += d); c.on('end', () => { console.log(got); });
          c.on('error', (e) => { console.error(e.message); process.exit(2); }); setTimeout(() => process.exit(3), 60000).unref();`]);
        packets = await cap.stop();
        return r;
      })();
      await srv;
      assert.equal(res.exitCode, 0, res.stderr);
      assert.equal(res.stdout.trim(), String(bytes), 'the server did not receive every byte');
      assert.equal(packets.filter((p) => involves(p, server.ip, client.ip)).length, 0, 'TCP payload seen in clear');
      assert.ok(packets.filter((p) => isWireGuard(p, n0, n1)).length > 100);
    });

    await t.test('disabling WireGuard removes all of wgplane and traffic flows in clear again', async () => {
      await writeFile(ctx.file, JSON.stringify(ctx.c.manifests(ctx.keys, { enabled: 'false' })));
      await applyAll(ctx);
      for (const n of [n0, n1]) {
        const r = await ctx.c.wgplane(n, ['observe']);
        assert.equal(r.exitCode, 0, r.stderr);
        const o = JSON.parse(r.stdout) as { device: unknown; routes: unknown[]; rules: unknown[]; firewall: unknown[]; peers: unknown[] };
        assert.equal(o.device, null);
        assert.deepEqual([o.routes.length, o.rules.length, o.firewall.length, o.peers.length], [0, 0, 0, 0]);
      }
      const a = n0.pods[0]!, b = n1.pods[0]!;
      let ok = false;
      const packets = await captured(ctx, async () => { ok = await ping(a.ns, b.ip, 2); });
      assert.ok(ok);
      assert.ok(packets.some((p) => p.proto === 'icmp' && involves(p, a.ip, b.ip)), 'traffic should be in clear now');
    });
  });
}
