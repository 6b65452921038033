// Executor tests against the real kernel in throwaway namespaces with wireguard-go: operations built by
// hand (and by plan()), executed, then observed and compared. Foreign state must stay untouched.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { ipv4FromNumber, type Cidr } from '../core/ip.js';
import type { WgKey } from '../core/key.js';
import type { DesiredEnabled, DesiredPeer, FirewallChain, NodeName, Operation, Origin, Rule } from '../core/model.js';
import { plan } from '../planner/plan.js';
import { countSteps, execute, THROWAWAY_PEER } from './executor.js';
import { observe } from './observer.js';
import type { Runner } from './run.js';
import { detectBackend } from './backend.js';
import { Lab, kernelTestSkipReason, nodeExecChecked, type TestNamespace } from '../testing/netns.js';

const skip = kernelTestSkipReason();
if (skip) console.log(`# executor kernel tests: ${skip}`);

const O: Origin = { kind: 'setting', setting: 'enabled' };
const N = 'node-b' as NodeName;
const DEV = 'wg0';
const TABLE = 51820;
const c = (s: string) => s as Cidr;

const sh = (ns: string, script: string, input?: string) => nodeExecChecked(ns, 'sh', ['-c', script], input === undefined ? {} : { input });

async function genKey(ns: string): Promise<{ priv: string; pub: WgKey }> {
  const priv = (await sh(ns, 'wg genkey')).stdout.trim();
  const pub = (await sh(ns, 'wg pubkey', priv + '\n')).stdout.trim() as WgKey;
  return { priv, pub };
}

/** A Runner that counts the processes it starts. */
function counting(run: Runner): { run: Runner; calls: string[] } {
  const calls: string[] = [];
  return { calls, run: (cmd, args, opts) => { calls.push([cmd, ...args.slice(0, 4)].join(' ')); return run(cmd, args, opts); } };
}

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** Foreign state: another WireGuard device with a peer, a route in another table, a rule, a chain. */
async function plantForeign(ns: string, peerKey: WgKey): Promise<void> {
  const k = await genKey(ns);
  await sh(ns, 'wireguard-go wgforeign && ip link set wgforeign up');
  await sh(ns, `cat | wg set wgforeign private-key /dev/stdin listen-port 51999 peer ${peerKey} allowed-ips 10.77.0.0/16`, k.priv + '\n');
  await sh(ns, 'ip route add 10.77.0.0/16 dev wgforeign table 100 && ip rule add from 10.77.0.0/16 table 100 priority 200 && ip rule add fwmark 0x4 table 100 priority 98');
  await sh(ns, 'iptables-restore --noflush', '*filter\n:FOREIGN - [0:0]\n-A FOREIGN -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -j FOREIGN\nCOMMIT\n');
}

/** A digest of everything foreign (the foreign device's dump is hashed: it holds a private key). */
async function foreignState(ns: string): Promise<Record<string, string>> {
  const run = async (s: string) => (await sh(ns, s)).stdout;
  return {
    rules: (await run('ip rule show; ip -6 rule show')).split('\n').filter((l) => !l.includes('proto 98')).join('\n'),
    table100: await run('ip route show table 100'),
    main: await run('ip route show table main'),
    chains: (await run('iptables-save -t filter')).split('\n').filter((l) => /FOREIGN/.test(l)).join('\n'),
    wgforeign: sha(await run('wg show wgforeign dump')),
    links: (await run('ip -o link show')).split('\n').filter((l) => /wgforeign|eth0/.test(l)).map((l) => l.replace(/^\d+: /, '')).join('\n'),
  };
}

const udpChain = (family: 4 | 6): FirewallChain => ({
  family, table: 'filter', name: 'WGPLANE-INPUT', hook: 'INPUT', rules: ['-p udp -m udp --dport 51820 -j ACCEPT'],
});
const rawChain: FirewallChain = {
  family: 4, table: 'raw', name: 'WGPLANE-MARK', hook: 'PREROUTING',
  rules: ['-i lo -j RETURN', '-i wg0 -j RETURN', '-j MARK --set-xmark 0x100000/0x100000'],
};
const rule = (family: 4 | 6): Rule => ({ family, priority: 99, table: TABLE, fwmark: 0x100000, mask: 0x100000 });

function peer(pub: WgKey, endpoint: string | null, ips: string[]): DesiredPeer {
  return { publicKey: pub, endpoint, allowedIPs: ips.map(c), persistentKeepalive: 0, node: N };
}

describe('executor (real kernel, wireguard-go)', { skip: skip ?? false }, () => {
  const lab = new Lab('wgpexe');
  let node: TestNamespace;
  let own: { priv: string; pub: WgKey };
  let peerA: WgKey;
  let peerB: WgKey;
  let foreignBefore: Record<string, string>;
  const privateKey = async () => own.priv;

  before(async () => {
    node = await lab.namespace();
    own = await genKey(node.name);
    peerA = (await genKey(node.name)).pub;
    peerB = (await genKey(node.name)).pub;
    await sh(node.name, 'ip link add eth0 type veth peer name eth0p && ip address add 192.168.50.2/24 dev eth0 && ip link set eth0 up && ip link set eth0p up');
    await plantForeign(node.name, peerA);
    foreignBefore = await foreignState(node.name);
  });
  after(async () => { await lab.dispose(); });

  it('detects the userspace backend here (no kernel module)', async () => {
    assert.equal(await detectBackend('auto', node.run), 'userspace');
    await assert.rejects(detectBackend('kernel', node.run), /kernel cannot create a WireGuard device/);
  });

  it('programs a fresh device, peers, routes, rules, firewall and sysctl; observe shows exactly that', async () => {
    const ops: Operation[] = [
      { kind: 'sysctl-set', key: 'net.ipv4.conf.all.src_valid_mark', value: '1', from: '0', origin: O },
      { kind: 'link-create', name: DEV, mtu: 1380, origin: O },
      { kind: 'link-set-up', name: DEV, origin: O },
      { kind: 'address-add', device: DEV, address: c('192.168.50.2/32'), origin: O },
      { kind: 'address-add', device: DEV, address: c('fd50::2/128'), origin: O },
      { kind: 'device-configure', device: DEV, listenPort: 51820, fwmark: 0x100000, publicKey: own.pub, origin: O },
      { kind: 'route-add', table: TABLE, route: { kind: 'throw', dest: c('10.1.0.0/24') }, origin: O },
      { kind: 'route-add', table: TABLE, route: { kind: 'throw', dest: c('fd01::/64') }, origin: O },
      { kind: 'peer-add', device: DEV, peer: peer(peerA, '192.168.50.3:51820', ['10.2.0.0/24', '192.168.50.3/32', 'fd02::/64']), origin: O },
      { kind: 'peer-add', device: DEV, peer: { ...peer(peerB, null, ['10.3.0.0/24']), persistentKeepalive: 25 }, origin: O },
      { kind: 'route-add', table: TABLE, route: { kind: 'device', dest: c('10.2.0.0/24'), device: DEV }, origin: O },
      { kind: 'route-add', table: TABLE, route: { kind: 'device', dest: c('192.168.50.3/32'), device: DEV }, origin: O },
      { kind: 'route-add', table: TABLE, route: { kind: 'device', dest: c('fd02::/64'), device: DEV }, origin: O },
      { kind: 'route-add', table: TABLE, route: { kind: 'device', dest: c('10.3.0.0/24'), device: DEV }, origin: O },
      { kind: 'rule-add', rule: rule(4), origin: O },
      { kind: 'rule-add', rule: rule(6), origin: O },
      { kind: 'firewall-chain', chain: udpChain(4), remove: false, hooked: false, origin: O },
      { kind: 'firewall-chain', chain: rawChain, remove: false, hooked: false, origin: O },
      { kind: 'firewall-chain', chain: udpChain(6), remove: false, hooked: false, origin: O },
    ];
    const counter = counting(node.run);
    const r = await execute(ops, { backend: 'userspace', privateKey, run: counter.run });
    assert.deepEqual(r, { kind: 'ok', applied: ops.length });
    assert.equal(counter.calls.length, countSteps(ops) + 1, counter.calls.join('\n')); // +1: alias/MTU after wireguard-go
    assert.ok(counter.calls.length <= 12, `too many processes: ${counter.calls.length}`);
    assert.ok(!counter.calls.join(' ').includes(own.priv), 'private key in argv');

    const o = await observe({ interfaceName: DEV, table: TABLE, run: node.run });
    assert.deepEqual(o.device, {
      name: DEV, linkKind: 'tun', mtu: 1380, up: true, addresses: ['192.168.50.2/32', 'fd50::2/128'],
      listenPort: 51820, fwmark: 0x100000, publicKey: own.pub,
    });
    assert.deepEqual(o.conflicts, []);
    assert.deepEqual(o.staleDevices, []);
    assert.deepEqual(o.peers.get(peerA)?.allowedIPs, ['10.2.0.0/24', '192.168.50.3/32', 'fd02::/64']);
    assert.equal(o.peers.get(peerA)?.endpoint, '192.168.50.3:51820');
    assert.deepEqual(o.peers.get(peerB)?.allowedIPs, ['10.3.0.0/24']);
    assert.equal(o.peers.get(peerB)?.persistentKeepalive, 25);
    assert.equal(o.peers.size, 2);
    assert.deepEqual(new Map([...o.routes].sort()), new Map([
      [c('10.1.0.0/24'), { kind: 'throw', dest: '10.1.0.0/24' }],
      [c('10.2.0.0/24'), { kind: 'device', dest: '10.2.0.0/24', device: DEV }],
      [c('10.3.0.0/24'), { kind: 'device', dest: '10.3.0.0/24', device: DEV }],
      [c('192.168.50.3/32'), { kind: 'device', dest: '192.168.50.3/32', device: DEV }],
      [c('fd01::/64'), { kind: 'throw', dest: 'fd01::/64' }],
      [c('fd02::/64'), { kind: 'device', dest: 'fd02::/64', device: DEV }],
    ]));
    assert.deepEqual(o.rules, [rule(4), rule(6)]);
    assert.deepEqual(o.firewall, [
      { ...udpChain(4), hooked: true },
      { ...rawChain, hooked: true },
      { ...udpChain(6), hooked: true },
    ]);
    assert.equal(o.sysctls.get('net.ipv4.conf.all.src_valid_mark'), '1');
    assert.deepEqual(await foreignState(node.name), foreignBefore);
  });

  it('a firewall chain that exists and is hooked is set to exactly the given rules, without a second jump', async () => {
    const changed: FirewallChain = { ...udpChain(4), rules: ['-p udp -m udp --dport 51821 -j ACCEPT', '-p udp -m udp --dport 51822 -j ACCEPT'] };
    const r = await execute([{ kind: 'firewall-chain', chain: changed, remove: false, hooked: true, origin: O }], { backend: 'userspace', privateKey, run: node.run });
    assert.equal(r.kind, 'ok');
    const o = await observe({ interfaceName: DEV, table: TABLE, run: node.run });
    assert.deepEqual(o.firewall.find((f) => f.family === 4 && f.table === 'filter'), { ...changed, hooked: true });
    const jumps = (await sh(node.name, 'iptables-save -t filter')).stdout.split('\n').filter((l) => l === '-A INPUT -j WGPLANE-INPUT');
    assert.equal(jumps.length, 1);
  });

  it('removing allowed IPs keeps the peer and its other IPs; the throw-away peer is gone', async () => {
    const r = await execute([{
      kind: 'peer-update', device: DEV, publicKey: peerA, node: N, addAllowedIPs: [c('10.2.1.0/24')],
      removeAllowedIPs: [c('192.168.50.3/32'), c('fd02::/64')], origin: O,
    }], { backend: 'userspace', privateKey, run: node.run });
    assert.deepEqual(r, { kind: 'ok', applied: 1 });
    const o = await observe({ interfaceName: DEV, table: TABLE, run: node.run });
    assert.deepEqual(o.peers.get(peerA)?.allowedIPs, ['10.2.0.0/24', '10.2.1.0/24']);
    assert.equal(o.peers.get(peerA)?.endpoint, '192.168.50.3:51820');
    assert.deepEqual(o.peers.get(peerB)?.allowedIPs, ['10.3.0.0/24']);
    assert.ok(!o.peers.has(THROWAWAY_PEER));

    // Removal only (with a new endpoint): the other IP stays, nothing replaces the peer's list.
    const r2 = await execute([{
      kind: 'peer-update', device: DEV, publicKey: peerA, node: N, endpoint: '192.168.50.9:51820', addAllowedIPs: [],
      removeAllowedIPs: [c('10.2.1.0/24')], origin: O,
    }], { backend: 'userspace', privateKey, run: node.run });
    assert.deepEqual(r2, { kind: 'ok', applied: 1 });
    const o2 = await observe({ interfaceName: DEV, table: TABLE, run: node.run });
    assert.deepEqual(o2.peers.get(peerA)?.allowedIPs, ['10.2.0.0/24']);
    assert.equal(o2.peers.get(peerA)?.endpoint, '192.168.50.9:51820');
    assert.deepEqual(o2.peers.get(peerB)?.allowedIPs, ['10.3.0.0/24']);
    assert.ok(!o2.peers.has(THROWAWAY_PEER));
  });

  it('stops at the first failure and names the failed operation with the tool message', async () => {
    const good = { kind: 'route-add', table: TABLE, route: { kind: 'throw', dest: c('10.9.0.0/24') }, origin: O } as const;
    const bad = { kind: 'route-add', table: TABLE, route: { kind: 'device', dest: c('10.9.1.0/24'), device: 'nosuchdev' }, origin: O } as const;
    const later = { kind: 'route-add', table: TABLE, route: { kind: 'throw', dest: c('10.9.2.0/24') }, origin: O } as const;
    const sysctl = { kind: 'sysctl-set', key: 'net.ipv4.conf.all.src_valid_mark', value: '0', from: '1', origin: O } as const;
    const r = await execute([good, bad, later, sysctl], { backend: 'userspace', privateKey, run: node.run });
    assert.equal(r.kind, 'failed');
    assert.ok(r.kind === 'failed');
    assert.equal(r.applied, 1);
    assert.equal(r.failed, bad);
    assert.match(r.message, /Cannot find device "nosuchdev"/);
    const o = await observe({ interfaceName: DEV, table: TABLE, run: node.run });
    assert.ok(o.routes.has(c('10.9.0.0/24')));
    assert.ok(!o.routes.has(c('10.9.2.0/24')), 'ran past the failure');
    assert.equal(o.sysctls.get('net.ipv4.conf.all.src_valid_mark'), '1', 'ran past the failure');

    // A bad firewall rule: iptables-restore's message, the right operation.
    const badChain: FirewallChain = { ...udpChain(4), name: 'WGPLANE-BAD', rules: ['-p udp --no-such-option -j ACCEPT'] };
    const fw = await execute([good, { kind: 'firewall-chain', chain: badChain, remove: false, hooked: false, origin: O }], { backend: 'userspace', privateKey, run: node.run });
    assert.ok(fw.kind === 'failed');
    assert.equal(fw.applied, 1);
    assert.equal(fw.failed.kind, 'firewall-chain');
    assert.match(fw.message, /iptables-restore/);

    // A failing device-configure never shows the key.
    const dc = await execute([{ kind: 'device-configure', device: 'nosuchdev', listenPort: 1, fwmark: 0, publicKey: null, origin: O }], { backend: 'userspace', privateKey, run: node.run });
    assert.ok(dc.kind === 'failed');
    assert.ok(!dc.message.includes(own.priv));
    assert.ok(dc.message.length > 0);
  });

  it('splits a large ip batch into bounded processes, and names the right operation when a later one fails', async () => {
    const route = (dest: string, device?: string): Operation => ({ kind: 'route-add', table: TABLE, route: device ? { kind: 'device', dest: c(dest), device } : { kind: 'throw', dest: c(dest) }, origin: O });
    const ok = [route('10.8.0.1/32'), route('10.8.0.2/32'), route('10.8.0.3/32'), route('10.8.0.4/32'), route('10.8.0.5/32')];
    const counter = counting(node.run);
    assert.deepEqual(await execute(ok, { backend: 'userspace', privateKey, run: counter.run, ipBatchMaxLines: 2 }), { kind: 'ok', applied: 5 });
    assert.deepEqual(counter.calls.filter((x) => x.startsWith('ip ')).length, 3, counter.calls.join(' | '));
    const bad = route('10.8.1.4/32', 'nosuchdev');
    const ops = [route('10.8.1.1/32'), route('10.8.1.2/32'), route('10.8.1.3/32'), bad, route('10.8.1.5/32')];
    const r = await execute(ops, { backend: 'userspace', privateKey, run: node.run, ipBatchMaxLines: 2 });
    assert.ok(r.kind === 'failed');
    assert.equal(r.applied, 3);
    assert.equal(r.failed, bad);
    assert.match(r.message, /Cannot find device "nosuchdev"/);
    const o = await observe({ interfaceName: DEV, table: TABLE, run: node.run });
    for (const d of ['10.8.0.1/32', '10.8.0.5/32', '10.8.1.3/32']) assert.ok(o.routes.has(c(d)), d);
    assert.ok(!o.routes.has(c('10.8.1.5/32')), 'ran past the failure');
  });

  it('plan() against the observed node, executed, converges to an empty plan', async () => {
    const obs = await observe({ interfaceName: DEV, table: TABLE, run: node.run });
    const desired: DesiredEnabled = {
      kind: 'enabled', node: N, table: TABLE, problems: [],
      facts: { aks: false, routeSource: 'podCIDR', hostEncryption: true, workloadInterfacePrefix: null, families: [4, 6] },
      device: { name: DEV, mtu: 1400, listenPort: 51821, fwmark: 0x100000, addresses: [c('192.168.50.2/32')], publicKey: own.pub, mtuReason: 'test' },
      peers: new Map([
        [peerA, peer(peerA, '192.168.50.3:51821', ['10.2.0.0/24', '192.168.50.3/32'])],
        [peerB, peer(peerB, '192.168.50.4:51821', ['10.3.0.0/24', 'fd03::/64'])],
      ]),
      routes: new Map([
        [c('10.1.0.0/24'), { route: { kind: 'throw', dest: c('10.1.0.0/24') }, origin: O, cause: 'local' }],
        [c('10.2.0.0/24'), { route: { kind: 'device', dest: c('10.2.0.0/24'), device: DEV }, origin: O }],
        [c('192.168.50.3/32'), { route: { kind: 'device', dest: c('192.168.50.3/32'), device: DEV }, origin: O }],
        [c('10.3.0.0/24'), { route: { kind: 'device', dest: c('10.3.0.0/24'), device: DEV }, origin: O }],
        [c('fd03::/64'), { route: { kind: 'device', dest: c('fd03::/64'), device: DEV }, origin: O }],
      ]),
      rules: [rule(4), rule(6)],
      firewall: [udpChain(4), { ...udpChain(4), table: 'raw', name: 'WGPLANE-MARK', hook: 'PREROUTING', rules: ['-i lo -j RETURN'] }],
      sysctls: new Map([['net.ipv4.conf.all.src_valid_mark', '1']]),
    };
    const p = plan(desired, obs);
    assert.ok(p.ops.length > 5, `plan too small: ${p.ops.map((o) => o.kind).join(', ')}`);
    const r = await execute(p.ops, { backend: 'userspace', privateKey, run: node.run });
    assert.deepEqual(r, { kind: 'ok', applied: p.ops.length }, JSON.stringify(r.kind === 'failed' ? { failed: r.failed, message: r.message } : r));
    const after = await observe({ interfaceName: DEV, table: TABLE, run: node.run });
    const again = plan(desired, after);
    assert.deepEqual(again.ops.map((o) => o.kind), []);
    assert.equal(after.device?.mtu, 1400);
    assert.equal(after.device?.listenPort, 51821);
    assert.deepEqual(after.firewall.map((f) => `${f.family}/${f.table}/${f.name}`), ['4/filter/WGPLANE-INPUT', '4/raw/WGPLANE-MARK']);
    assert.deepEqual(await foreignState(node.name), foreignBefore);
  });

  it('tears down: rule, table flush, device, chains; foreign state untouched', async () => {
    const obs = await observe({ interfaceName: DEV, table: TABLE, run: node.run });
    const ops: Operation[] = [
      ...obs.rules.map((rl): Operation => ({ kind: 'rule-delete', rule: rl, origin: O })),
      { kind: 'table-flush', table: TABLE, family: 4, routes: 1, origin: O },
      { kind: 'table-flush', table: TABLE, family: 6, routes: 1, origin: O },
      { kind: 'link-delete', name: DEV, peers: obs.peers.size, origin: O },
      ...obs.firewall.map((f): Operation => ({ kind: 'firewall-chain', chain: f, remove: true, hooked: f.hooked, origin: O })),
    ];
    const r = await execute(ops, { backend: 'userspace', privateKey, run: node.run });
    assert.deepEqual(r, { kind: 'ok', applied: ops.length }, JSON.stringify(r.kind === 'failed' ? r.message : r));
    const o = await observe({ interfaceName: DEV, table: TABLE, run: node.run });
    assert.equal(o.device, null);
    assert.equal(o.routes.size, 0);
    assert.deepEqual(o.rules, []);
    assert.deepEqual(o.firewall, []);
    assert.deepEqual(await foreignState(node.name), foreignBefore);
    // Flushing tables that no longer exist is not an error (the next clean-up is safe).
    const again = await execute(ops.filter((op) => op.kind === 'table-flush'), { backend: 'userspace', privateKey, run: node.run });
    assert.equal(again.kind, 'ok');
  });
});

describe('executor at scale (1,000 peers x 30 allowed IPs)', { skip: skip ?? false }, () => {
  const lab = new Lab('wgpexs');
  after(async () => { await lab.dispose(); });

  it('programs 1,000 peers and 30,000 routes in one execute with a handful of processes', async () => {
    const node = await lab.namespace();
    const own = await genKey(node.name);
    // Public keys: any 32 bytes are a valid WireGuard key; made deterministically here.
    const keys = Array.from({ length: 1000 }, (_, i) => createHash('sha256').update(`peer-${i}`).digest('base64') as WgKey);
    const base = 10 << 24 | 64 << 16;
    const ops: Operation[] = [
      { kind: 'link-create', name: DEV, mtu: 1420, origin: O },
      { kind: 'link-set-up', name: DEV, origin: O },
      { kind: 'device-configure', device: DEV, listenPort: 51820, fwmark: 0x100000, publicKey: own.pub, origin: O },
    ];
    const routes: Operation[] = [];
    keys.forEach((k, i) => {
      const ips = Array.from({ length: 30 }, (_, j) => c(`${ipv4FromNumber(base + i * 30 + j)}/32`));
      ops.push({ kind: 'peer-add', device: DEV, peer: peer(k, `192.168.${(i >> 8) & 255}.${i & 255}:51820`, ips), origin: O });
      for (const ip of ips) routes.push({ kind: 'route-add', table: TABLE, route: { kind: 'device', dest: ip, device: DEV }, origin: O });
    });
    ops.push(...routes, { kind: 'rule-add', rule: rule(4), origin: O });
    const counter = counting(node.run);
    const r = await execute(ops, { backend: 'userspace', privateKey: async () => own.priv, run: counter.run });
    assert.deepEqual(r, { kind: 'ok', applied: ops.length }, r.kind === 'failed' ? r.message : '');
    assert.ok(counter.calls.length <= 8, `processes: ${counter.calls.length}: ${counter.calls.join(' | ')}`);
    const o = await observe({ interfaceName: DEV, table: TABLE, run: node.run });
    assert.equal(o.peers.size, 1000);
    assert.equal(o.routes.size, 30_000);
    assert.equal([...o.peers.values()].reduce((n, p) => n + p.allowedIPs.length, 0), 30_000);
    assert.deepEqual(o.peers.get(keys[999]!)?.allowedIPs.length, 30);
    assert.equal(o.peers.get(keys[999]!)?.endpoint, '192.168.3.231:51820');
    assert.deepEqual(o.rules, [rule(4)]);

    // Removing 1,000 peers goes through bounded `wg set` chunks.
    const rm = counting(node.run);
    const removal = keys.map((k): Operation => ({ kind: 'peer-remove', device: DEV, publicKey: k, node: N, origin: O }));
    assert.deepEqual(await execute(removal, { backend: 'userspace', privateKey: async () => own.priv, run: rm.run }), { kind: 'ok', applied: 1000 });
    assert.equal(rm.calls.length, 2);
    assert.equal((await observe({ interfaceName: DEV, table: TABLE, run: node.run })).peers.size, 0);
  });
});

describe("executor: never writes into the kernel's own tables", () => {
  // No kernel needed: the refusal comes before any process is started (the runner fails the test if called).
  const never: Runner = (cmd, args) => assert.fail(`a process was started: ${cmd} ${args.join(' ')}`);
  const route = { kind: 'device', dest: c('10.1.0.0/24'), device: DEV } as const;
  const cases: [string, Operation][] = [
    ['table-flush main', { kind: 'table-flush', table: 254, family: 4, routes: 3, origin: O }],
    ['route-add local', { kind: 'route-add', table: 255, route, origin: O }],
    ['route-delete default', { kind: 'route-delete', table: 253, route, origin: O }],
    ['route-replace 0', { kind: 'route-replace', table: 0, route, from: route, origin: O }],
    ['rule-add into main', { kind: 'rule-add', rule: { family: 4, priority: 99, table: 254, fwmark: 1, mask: 1 }, origin: O }],
  ];
  for (const [name, bad] of cases) {
    it(`refuses a plan holding ${name}, before running anything`, async () => {
      const ok: Operation = { kind: 'link-set-up', name: DEV, origin: O };
      const r = await execute([ok, bad], { backend: 'userspace', privateKey: async () => 'x', run: never });
      assert.equal(r.kind, 'failed');
      assert.ok(r.kind === 'failed' && r.applied === 0 && r.failed === bad, JSON.stringify(r));
      assert.match(r.kind === 'failed' ? r.message : '', /refusing to touch the kernel's (main|local|default|unspec) table/);
    });
  }
});
