// Dual stack (IPv4 + IPv6) in pod-CIDR mode, end to end: a 3-node cluster of network namespaces with both
// families (adapters/lab/topology.ts, `dualStack: true`), `wgplane apply` on every node with real WireGuard
// (wireguard-go), then real packets (tcpdump on the bridge and on the device) and the real kernel state of
// both families; `plan --observed live` is empty afterwards; `cleanup` removes the IPv6 side too and leaves
// foreign IPv6 state alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
// `ping` (iputils) picks the family from the address.
import { TestCluster, ping, type ClusterNode, type ClusterPod } from '../testing/cluster.js';
import { Capture, type Packet } from '../testing/capture.js';
import { kernelTestSkipReason, nodeExec, nodeExecChecked } from '../testing/netns.js';

const PORT = 51820;
const TABLE = '51820';
const DEVICE = 'wireguard.wgp';
const TOOLS = ['wireguard-go', 'wg', 'tcpdump', 'ip6tables', 'ping'] as const;

function skipReason(): string | null {
  const root = kernelTestSkipReason();
  if (root) return root;
  const missing = TOOLS.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  return missing.length > 0 ? `dual-stack kernel test needs ${missing.join(', ')} (not installed); skipped` : null;
}
const skip = skipReason();
if (skip) console.log(`# dual-stack kernel test: ${skip}`);

const involves = (p: Packet, ...ips: string[]) => ips.includes(p.src) || ips.includes(p.dst);
const nodeAddrs = (nodes: readonly ClusterNode[]) => nodes.flatMap((n) => [n.ip, n.ip6!]);
const isWireGuard = (p: Packet, nodes: readonly ClusterNode[]) =>
  p.proto === 'udp' && p.sport === PORT && p.dport === PORT && nodeAddrs(nodes).includes(p.src) && nodeAddrs(nodes).includes(p.dst);
/** Neighbour discovery and MLD between nodes: the underlay's own IPv6 housekeeping, never a pod's packet. */
const isNdOrMld = (p: Packet) => /ICMP6, (neighbor (solicitation|advertisement)|router (solicitation|advertisement)|multicast listener)/i.test(p.line);

async function capture(ns: string, iface: string, fn: () => Promise<void>, filter?: readonly string[]): Promise<Packet[]> {
  const cap = await Capture.start(ns, iface, filter);
  try {
    await fn();
  } finally {
    var packets = await cap.stop();
  }
  return packets;
}

const json = <T>(s: string): T => JSON.parse(s) as T;

interface Route6 { dst: string; dev?: string; type?: string }
// `ip -j rule` prints a `not` rule as `"not": null`: present or absent.
interface Rule { priority: number; not?: null; fwmark?: string; fwmask?: string; table: string; protocol?: string; src?: string }

test('dual stack (IPv4 + IPv6) pod-CIDR mode: apply encrypts both families, the kernel holds the IPv6 side, cleanup removes it', { skip: skip ?? false, timeout: 180_000 }, async (t) => {
  const c = await TestCluster.create({ flavor: 'podcidr', dualStack: true, nodes: 3, podsPerNode: 2, prefix: 'wgpds' });
  t.after(() => c.destroy());
  const [n0, n1, n2] = c.nodes as [ClusterNode, ClusterNode, ClusterNode];
  const bridge = c.bridge.name;
  const keys = new Map<string, string | null>();
  let snapshot = '';

  await t.test('the dual-stack underlay works in clear before wgplane (IPv6 pod packets are visible on the bridge)', async () => {
    for (const n of c.nodes) {
      assert.ok(n.ip6 && n.podCIDR6, `${n.name} has no IPv6`);
      for (const p of n.pods) assert.ok(p.ip6, `${p.name} has no IPv6`);
    }
    const a = n0.pods[0]!, b = n1.pods[1]!;
    let ok6 = false, ok4 = false;
    const packets = await capture(bridge, 'br0', async () => { ok6 = await ping(a.ns, b.ip6!, 3); ok4 = await ping(a.ns, b.ip); });
    assert.ok(ok6, 'IPv6 pod to pod across nodes fails before wgplane');
    assert.ok(ok4, 'IPv4 pod to pod across nodes fails before wgplane');
    // The positive control of the encryption checks below: this capture does see IPv6 pod echoes in clear.
    assert.ok(packets.filter((p) => p.proto === 'icmp' && p.src === a.ip6 && p.dst === b.ip6).length >= 3, 'the bridge capture did not see clear ICMPv6 echoes');
  });

  for (const n of c.nodes) {
    const r = await c.wgplane(n, ['key', 'public', '--state-dir', n.stateDir]);
    assert.equal(r.exitCode, 0, r.stderr);
    keys.set(n.name, r.stdout.trim());
  }
  snapshot = JSON.stringify(c.manifests(keys, { enabled: 'true' }));
  for (const n of c.nodes) {
    const r = await c.wgplane(n, ['apply', '--snapshot', '-', '--node', n.name, '--state-dir', n.stateDir], snapshot);
    assert.equal(r.exitCode, 0, `apply on ${n.name} failed:\n${r.stdout}\n${r.stderr}`);
  }

  await t.test('the kernel holds the IPv6 side on every node: rule, table routes, ip6tables chains, device address, peers of both families', async () => {
    for (const n of c.nodes) {
      const others = c.nodes.filter((m) => m !== n);
      const rules = json<Rule[]>((await nodeExecChecked(n.ns, 'ip', ['-6', '-j', 'rule', 'show'])).stdout);
      const ours = rules.filter((r) => r.table === TABLE);
      assert.equal(ours.length, 1, `${n.name}: one IPv6 rule to table ${TABLE}: ${JSON.stringify(rules)}`);
      assert.deepEqual([ours[0]!.priority, 'not' in ours[0]!, ours[0]!.fwmark, ours[0]!.fwmask, ours[0]!.protocol], [99, true, '0x100000', '0x100000', '98']);

      const routes = json<Route6[]>((await nodeExecChecked(n.ns, 'ip', ['-6', '-j', 'route', 'show', 'table', TABLE])).stdout);
      const viaDevice = routes.filter((r) => r.dev === DEVICE && r.type !== 'throw').map((r) => r.dst).sort();
      assert.deepEqual(viaDevice, others.map((m) => m.podCIDR6!).sort(), `${n.name}: IPv6 routes into the device`);
      const thrown = routes.filter((r) => r.type === 'throw').map((r) => r.dst);
      assert.deepEqual(thrown, [n.podCIDR6!], `${n.name}: its own IPv6 pod CIDR is thrown back to the main table`);

      const v6fw = (await nodeExecChecked(n.ns, 'ip6tables', ['-w', '-S'])).stdout.split('\n');
      for (const l of ['-N WGPLANE-INPUT', '-N WGPLANE-OUTPUT', '-A INPUT -j WGPLANE-INPUT', '-A OUTPUT -j WGPLANE-OUTPUT']) assert.ok(v6fw.includes(l), `${n.name}: ip6tables lacks '${l}':\n${v6fw.join('\n')}`);
      assert.ok(v6fw.some((l) => l.startsWith('-A WGPLANE-INPUT') && l.includes(`--dport ${PORT}`)), `${n.name}: WGPLANE-INPUT does not accept UDP ${PORT}`);

      const addrs = json<{ addr_info: { family: string; local: string; prefixlen: number }[] }[]>((await nodeExecChecked(n.ns, 'ip', ['-j', 'address', 'show', 'dev', DEVICE])).stdout)[0]!.addr_info;
      const v6 = addrs.filter((a) => a.family === 'inet6' && !a.local.startsWith('fe80:')).map((a) => `${a.local}/${a.prefixlen}`);
      const v4 = addrs.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
      assert.deepEqual(v6, [`${n.podCIDR6!.split('/')[0]}/128`], `${n.name}: the device's IPv6 address is its pod CIDR's network address`);
      assert.deepEqual(v4, [`${n.podCIDR!.split('/')[0]}/32`]);

      const dump = (await nodeExecChecked(n.ns, 'wg', ['show', DEVICE, 'dump'])).stdout.trim().split('\n').slice(1).map((l) => l.split('\t'));
      const allowed = new Map(dump.map((f) => [f[0]!, f[3]!.split(',').sort()]));
      assert.equal(allowed.size, 2, `${n.name}: one peer per other node`);
      for (const m of others) assert.deepEqual(allowed.get(keys.get(m.name)!), [m.podCIDR!, m.podCIDR6!].sort(), `${n.name}: allowed IPs of peer ${m.name}`);
    }
  });

  await t.test('IPv6 pod to pod across nodes is encrypted: only WireGuard UDP between the nodes on the bridge, no ICMPv6 echo', async () => {
    const pairs: [ClusterPod, ClusterPod][] = [[n0.pods[0]!, n1.pods[1]!], [n2.pods[1]!, n0.pods[1]!], [n1.pods[0]!, n2.pods[0]!]];
    const results: boolean[] = [];
    const packets = await capture(bridge, 'br0', async () => { for (const [a, b] of pairs) results.push(await ping(a.ns, b.ip6!, 3)); });
    assert.deepEqual(results, pairs.map(() => true), 'IPv6 ping across nodes failed');
    const podIps = c.nodes.flatMap((n) => n.pods.flatMap((p) => [p.ip, p.ip6!]));
    assert.deepEqual(packets.filter((p) => involves(p, ...podIps)).map((p) => p.line), [], 'pod IPs seen in clear on the wire');
    assert.deepEqual(packets.filter((p) => p.proto === 'icmp' && /echo/i.test(p.line)).map((p) => p.line), [], 'ICMP echo in clear on the wire');
    assert.deepEqual(packets.filter((p) => !isWireGuard(p, c.nodes) && !isNdOrMld(p)).map((p) => p.line), [], 'something other than WireGuard UDP crossed the bridge');
    assert.ok(packets.filter((p) => isWireGuard(p, c.nodes)).length >= 3 * pairs.length * 2, 'too few WireGuard packets on the bridge');
  });

  await t.test('IPv4 pod to pod across nodes is encrypted too', async () => {
    const a = n1.pods[1]!, b = n2.pods[1]!;
    let ok = false;
    const packets = await capture(bridge, 'br0', async () => { ok = await ping(a.ns, b.ip, 3); });
    assert.ok(ok, 'IPv4 ping across nodes failed');
    assert.equal(packets.filter((p) => involves(p, a.ip, b.ip)).length, 0, 'IPv4 pod IPs seen in clear');
    assert.ok(packets.filter((p) => isWireGuard(p, [n1, n2])).length >= 6);
  });

  await t.test('IPv6 at the device MTU (1440) crosses unfragmented, and a node reaches a remote pod over IPv6 from its device address, encrypted', async () => {
    const a = n0.pods[1]!, b = n2.pods[0]!, remote = n1.pods[0]!;
    const mtu = json<{ mtu: number }[]>((await nodeExecChecked(n0.ns, 'ip', ['-j', 'link', 'show', DEVICE])).stdout)[0]!.mtu;
    assert.equal(mtu, 1440, 'device MTU: 1500 - 60 (the endpoints are IPv4)');
    let big: Awaited<ReturnType<typeof nodeExec>> | undefined, host = false;
    const packets = await capture(bridge, 'br0', async () => {
      // 1392 bytes of payload + 8 (ICMPv6) + 40 (IPv6) = 1440, with "don't fragment".
      big = await nodeExec(a.ns, 'ping', ['-n', '-q', '-c', '2', '-i', '0.2', '-W', '2', '-M', 'do', '-s', String(mtu - 48), b.ip6!]);
      host = await ping(n0.ns, remote.ip6!, 3);
    });
    assert.equal(big!.exitCode, 0, `full-size IPv6 ping failed:\n${big!.stdout}${big!.stderr}`);
    assert.ok(host, 'node to remote pod over IPv6 failed');
    const got = json<{ dev: string; prefsrc?: string }[]>((await nodeExecChecked(n0.ns, 'ip', ['-6', '-j', 'route', 'get', remote.ip6!])).stdout)[0]!;
    assert.deepEqual([got.dev, got.prefsrc], [DEVICE, n0.podCIDR6!.split('/')[0]], 'the node sends to remote pods through the device, from its IPv6 device address');
    const device6 = c.nodes.map((n) => n.podCIDR6!.split('/')[0]!);
    assert.deepEqual(packets.filter((p) => involves(p, a.ip6!, b.ip6!, remote.ip6!, ...device6)).map((p) => p.line), [], 'IPv6 pod or device addresses seen in clear');
    assert.deepEqual(packets.filter((p) => !isWireGuard(p, c.nodes) && !isNdOrMld(p)).map((p) => p.line), [], 'something other than WireGuard UDP (a fragment?) crossed the bridge');
  });

  await t.test('IPv6 pod to pod on one node never enters the WireGuard device (while cross-node IPv6 does)', async () => {
    const a = n0.pods[0]!, b = n0.pods[1]!, remote = n2.pods[0]!;
    let same = false, across = false;
    const before = await deviceCounters(n0);
    const onDevice = await capture(n0.ns, DEVICE, async () => {
      same = await ping(a.ns, b.ip6!, 3);
      across = await ping(a.ns, remote.ip6!, 3);
    }, ['ip6']);
    const after = await deviceCounters(n0);
    assert.ok(same && across, `ping failed: same node ${same}, across ${across}`);
    const sameNode = onDevice.filter((p) => [a.ip6, b.ip6].includes(p.src) && [a.ip6, b.ip6].includes(p.dst));
    assert.deepEqual(sameNode.map((p) => p.line), [], 'same-node IPv6 traffic went through the WireGuard device');
    // The control: the same capture sees the cross-node echoes, and the device counters count at least those.
    assert.ok(onDevice.filter((p) => p.src === a.ip6 && p.dst === remote.ip6).length >= 3, 'the device capture missed the cross-node echoes');
    assert.ok(after.tx - before.tx >= 3 && after.rx - before.rx >= 3, `device counters: ${JSON.stringify({ before, after })}`);
    assert.ok(after.tx - before.tx < 3 + 3 + 3, `the device sent more than the cross-node echoes (same-node packets?): ${JSON.stringify({ before, after })}`);
  });

  await t.test('plan --snapshot - --observed live after apply: nothing to do (exit 0) on every node', async () => {
    for (const n of c.nodes) {
      const r = await c.wgplane(n, ['plan', '--snapshot', '-', '--node', n.name, '--observed', 'live', '--state-dir', n.stateDir], snapshot);
      assert.equal(r.exitCode, 0, `${n.name}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /No changes/);
    }
  });

  await t.test('cleanup removes the IPv6 rule, table routes and ip6tables chains, and leaves foreign IPv6 state alone', async () => {
    const n = n2;
    const run = (cmd: string, args: string[]) => nodeExecChecked(n.ns, cmd, args);
    // Foreign IPv6 state: a rule that looks like wgplane's (no protocol 98), another rule, a route in another
    // table, another ip6tables chain with a rule and a jump.
    await run('ip', ['-6', 'rule', 'add', 'not', 'fwmark', '0x100000/0x100000', 'lookup', '100', 'priority', '99']);
    await run('ip', ['-6', 'rule', 'add', 'from', 'fd00:99::/64', 'lookup', '100', 'priority', '50']);
    await run('ip', ['-6', 'route', 'add', 'unreachable', 'fd00:99::/64', 'table', '100']);
    await run('ip6tables', ['-w', '-N', 'FOREIGN-V6']);
    await run('ip6tables', ['-w', '-A', 'FOREIGN-V6', '-p', 'udp', '--dport', '4789', '-j', 'ACCEPT']);
    await run('ip6tables', ['-w', '-A', 'INPUT', '-j', 'FOREIGN-V6']);
    const foreign = async () => ({
      rules: json<Rule[]>((await run('ip', ['-6', '-j', 'rule', 'show'])).stdout).filter((r) => r.table === '100').map((r) => `${r.priority} ${'not' in r ? 'not ' : ''}${r.fwmark ?? ''} ${r.src ?? ''}`).sort(),
      routes: (await run('ip', ['-6', 'route', 'show', 'table', '100'])).stdout.trim(),
      chain: (await run('ip6tables', ['-w', '-S'])).stdout.split('\n').filter((l) => l.includes('FOREIGN-V6')),
    });
    const planted = await foreign();
    assert.equal(planted.rules.length, 2);
    assert.equal(planted.chain.length, 3);

    const r = await c.wgplane(n, ['cleanup', '--snapshot', '-', '--state-dir', n.stateDir], snapshot);
    assert.equal(r.exitCode, 0, `cleanup: ${r.stdout}${r.stderr}`);

    const rules6 = json<Rule[]>((await run('ip', ['-6', '-j', 'rule', 'show'])).stdout);
    assert.deepEqual(rules6.filter((x) => x.table === TABLE || x.protocol === '98'), [], 'an IPv6 rule of wgplane survived');
    const rules4 = json<Rule[]>((await run('ip', ['-4', '-j', 'rule', 'show'])).stdout);
    assert.deepEqual(rules4.filter((x) => x.table === TABLE || x.protocol === '98'), [], 'an IPv4 rule of wgplane survived');
    const t6 = await nodeExec(n.ns, 'ip', ['-6', 'route', 'show', 'table', TABLE]);
    assert.equal(t6.stdout.trim(), '', `IPv6 routes left in table ${TABLE}`);
    const t4 = await nodeExec(n.ns, 'ip', ['-4', 'route', 'show', 'table', TABLE]);
    assert.equal(t4.stdout.trim(), '', `IPv4 routes left in table ${TABLE}`);
    const v6fw = (await run('ip6tables', ['-w', '-S'])).stdout;
    assert.doesNotMatch(v6fw, /WGPLANE/, 'ip6tables chains or jumps of wgplane survived');
    assert.doesNotMatch((await run('iptables', ['-w', '-S'])).stdout, /WGPLANE/, 'iptables chains or jumps of wgplane survived');
    assert.notEqual((await nodeExec(n.ns, 'ip', ['link', 'show', DEVICE])).exitCode, 0, 'the device survived');

    assert.deepEqual(await foreign(), planted, 'foreign IPv6 state changed');
    const o = json<{ device: unknown; routes: unknown[]; rules: unknown[]; firewall: unknown[]; peers: unknown[] }>((await c.wgplane(n, ['observe', '--snapshot', '-'], snapshot)).stdout);
    assert.deepEqual([o.device, o.routes.length, o.rules.length, o.firewall.length, o.peers.length], [null, 0, 0, 0, 0], 'observe still sees wgplane state');
  });
});

/** The WireGuard device's packet counters in `node`. */
async function deviceCounters(node: ClusterNode): Promise<{ rx: number; tx: number }> {
  const l = json<{ stats64: { rx: { packets: number }; tx: { packets: number } } }[]>((await nodeExecChecked(node.ns, 'ip', ['-s', '-j', 'link', 'show', DEVICE])).stdout)[0]!;
  return { rx: l.stats64.rx.packets, tx: l.stats64.tx.packets };
}
