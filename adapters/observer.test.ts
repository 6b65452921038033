// Observer tests against the real kernel in throwaway network namespaces: real state planted with ip, wg,
// wireguard-go and iptables, including foreign state that must not be reported as wgplane's.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Cidr } from '../core/ip.js';
import type { WgKey } from '../core/key.js';
import { observe, parseIptablesSave, parseRules, parseWgDump } from './observer.js';
import { Lab, kernelTestSkipReason, nodeExecChecked, type TestNamespace } from '../testing/netns.js';

const skip = kernelTestSkipReason();
if (skip) console.log(`# observer kernel tests: ${skip}`);

const sh = (ns: string, script: string, input?: string) => nodeExecChecked(ns, 'sh', ['-c', script], input === undefined ? {} : { input });

async function genKey(ns: string): Promise<{ priv: string; pub: WgKey }> {
  const priv = (await sh(ns, 'wg genkey')).stdout.trim();
  const pub = (await sh(ns, 'wg pubkey', priv + '\n')).stdout.trim() as WgKey;
  return { priv, pub };
}

describe('observer (pure parsers)', () => {
  it('drops the private key of a wg dump and reads peers', () => {
    const priv = 'ePrivateKeyPrivateKeyPrivateKeyPrivateKey0=';
    const pub = 'sBiy01YHY5mQ833xgpoXnQ0wWulqaRmGZ6yqdQy9aVI=';
    const peer = 'VQ61Ignw0tLgQBdZ5bKOgD3ycRUT+PiPnkrskx29fjM=';
    const dump = `${priv}\t${pub}\t51820\t0x100000\n${peer}\t(none)\t10.0.0.2:51820\t10.1.0.7/32,10.1.0.3/32,fd00::1/128\t1700000000\t10\t20\toff\n`;
    const d = parseWgDump(dump, 'test');
    assert.equal(d.publicKey, pub);
    assert.equal(d.listenPort, 51820);
    assert.equal(d.fwmark, 0x100000);
    assert.deepEqual([...d.peers.values()], [
      { publicKey: peer, endpoint: '10.0.0.2:51820', allowedIPs: ['10.1.0.3/32', '10.1.0.7/32', 'fd00::1/128'], persistentKeepalive: 0, latestHandshake: 1700000000, rxBytes: 10, txBytes: 20 },
    ]);
    assert.ok(!JSON.stringify({ ...d, peers: [...d.peers.values()] }).includes(priv));
  });

  it('keeps only protocol-98 rules, with names of tables mapped', () => {
    const rows = [
      { priority: 0, src: 'all', table: 'local' },
      { priority: 99, not: null, src: 'all', fwmark: '0x100000', fwmask: '0x100000', table: '51820', protocol: '98' },
      { priority: 100, src: 'all', fwmark: '0x1', table: 'main', protocol: '98' },
      { priority: 101, not: null, src: 'all', fwmark: '0x100000', fwmask: '0x100000', table: '51820' },
    ];
    assert.deepEqual(parseRules(rows, 4), [
      { family: 4, priority: 99, table: 51820, fwmark: 0x100000, mask: 0x100000 },
      { family: 4, priority: 100, table: 254, fwmark: 1, mask: 0xffffffff },
    ]);
  });

  it('reads WGPLANE-* chains and their hooks only', () => {
    const save = [
      '*raw', ':PREROUTING ACCEPT [0:0]', ':WGPLANE-RAW - [0:0]', '-A WGPLANE-RAW -j MARK --set-xmark 0x100000/0x100000', 'COMMIT',
      '*filter', ':INPUT ACCEPT [0:0]', ':OTHER - [0:0]', ':WGPLANE-IN - [0:0]', '-A INPUT -j OTHER', '-A INPUT -j WGPLANE-IN',
      '-A OTHER -j WGPLANE-IN', '-A WGPLANE-IN -p udp -m udp --dport 51820 -j ACCEPT', 'COMMIT',
      '*nat', ':WGPLANE-NAT - [0:0]', 'COMMIT',
    ].join('\n');
    assert.deepEqual(parseIptablesSave(save, 4), [
      { family: 4, table: 'raw', name: 'WGPLANE-RAW', hook: 'PREROUTING', rules: ['-j MARK --set-xmark 0x100000/0x100000'], hooked: false },
      { family: 4, table: 'filter', name: 'WGPLANE-IN', hook: 'INPUT', rules: ['-p udp -m udp --dport 51820 -j ACCEPT'], hooked: true },
    ]);
  });
});

describe('observer (real kernel)', { skip: skip ?? false }, () => {
  const lab = new Lab('wgpobs');
  let node: TestNamespace;
  let other: TestNamespace;
  let own: { priv: string; pub: WgKey };
  let foreignKey: { priv: string; pub: WgKey };
  let peerA: WgKey;
  let peerB: WgKey;

  before(async () => {
    node = await lab.namespace();
    other = await lab.namespace();
    const n = node.name;
    own = await genKey(n);
    foreignKey = await genKey(n);
    peerA = (await genKey(n)).pub;
    peerB = (await genKey(n)).pub;
    // Underlay: eth0 (1450, global address), a pod interface (excluded by prefix), an unaddressed link.
    await sh(n, [
      'ip link add eth0 mtu 1450 type veth peer name eth0p mtu 1200',
      'ip address add 192.168.50.2/24 dev eth0',
      'ip link set eth0 up', 'ip link set eth0p up',
      'ip link add azvpod1 mtu 1300 type veth peer name azvpod1p',
      'ip address add 192.168.60.2/24 dev azvpod1', 'ip link set azvpod1 up', 'ip link set azvpod1p up',
    ].join(' && '));
    // wgplane's device (wireguard-go), a foreign WireGuard device, and a stale wgplane device.
    await sh(n, 'wireguard-go wg0 && wireguard-go wgforeign && wireguard-go wgold');
    await sh(n, 'ip link set wg0 alias wgplane mtu 1400 up && ip address add 10.9.0.1/32 dev wg0 && ip address add fd09::1/128 dev wg0');
    await sh(n, 'ip link set wgold alias wgplane');
    await sh(n, 'cat | wg set wg0 private-key /dev/stdin listen-port 51820 fwmark 0x100000', own.priv + '\n');
    await sh(n, `wg set wg0 peer ${peerA} endpoint 192.168.50.3:51820 allowed-ips 10.1.0.9/32,10.1.0.3/32,fd01::3/128 peer ${peerB} allowed-ips 10.2.0.0/24 persistent-keepalive 25`);
    await sh(n, `cat | wg set wgforeign private-key /dev/stdin listen-port 51999 peer ${peerA} allowed-ips 10.77.0.0/16`, foreignKey.priv + '\n');
    // wgplane's table (both families), foreign routes in another table.
    await sh(n, [
      'ip route add 10.1.0.3/32 dev wg0 scope link table 51820',
      'ip route add throw 10.3.0.0/24 table 51820',
      'ip route add 10.4.0.0/24 dev eth0 table 51820',
      'ip -6 route add fd01::3/128 dev wg0 table 51820',
      'ip -6 route add throw fd03::/64 table 51820',
      'ip route add 10.1.0.0/16 dev wg0 table 100',
      'ip route add 10.5.0.0/16 dev eth0',
    ].join(' && '));
    // Rules: wgplane's (protocol 98) and foreign ones.
    await sh(n, [
      'ip rule add not fwmark 0x100000/0x100000 table 51820 priority 99 protocol 98',
      'ip -6 rule add not fwmark 0x100000/0x100000 table 51820 priority 99 protocol 98',
      'ip rule add not fwmark 0x100000/0x100000 table 51820 priority 98',
      'ip rule add from 10.1.0.0/16 table 100 priority 200',
    ].join(' && '));
    // Firewall: wgplane's chains (hooked and not), a foreign chain, and IPv6.
    await sh(n, 'iptables-restore --noflush', [
      '*filter', ':WGPLANE-IN - [0:0]', ':FOREIGN - [0:0]', '-A WGPLANE-IN -p udp -m udp --dport 51820 -j ACCEPT',
      '-A FOREIGN -p tcp -m tcp --dport 22 -j ACCEPT', '-I INPUT 1 -j WGPLANE-IN', '-A INPUT -j FOREIGN', 'COMMIT',
      '*raw', ':WGPLANE-MARK - [0:0]', '-A WGPLANE-MARK -i lo -j RETURN', 'COMMIT', '',
    ].join('\n'));
    await sh(n, 'ip6tables-restore --noflush', ['*filter', ':WGPLANE-IN6 - [0:0]', '-A WGPLANE-IN6 -p udp -m udp --dport 51820 -j ACCEPT', '-I OUTPUT 1 -j WGPLANE-IN6', 'COMMIT', ''].join('\n'));
    await sh(n, 'sysctl -qw net.ipv4.conf.all.src_valid_mark=1 net.ipv4.conf.wg0.rp_filter=2 net.ipv4.conf.wgforeign.rp_filter=1');
    // The other namespace: a link holding the configured name that is not wgplane's.
    await sh(other.name, 'ip link add wg0 type veth peer name wg0p && ip link set wg0 alias someone-else');
  });

  after(async () => { await lab.dispose(); });

  it('reports wgplane-owned state exactly, and nothing foreign', async () => {
    const o = await observe({ interfaceName: 'wg0', table: 51820, workloadInterfacePrefix: 'azv', run: node.run });
    assert.deepEqual(o.device, {
      name: 'wg0', linkKind: 'tun', mtu: 1400, up: true, addresses: ['10.9.0.1/32', 'fd09::1/128'],
      listenPort: 51820, fwmark: 0x100000, publicKey: own.pub,
    });
    assert.deepEqual(o.staleDevices, ['wgold']);
    assert.deepEqual(o.conflicts, []);
    assert.deepEqual([...o.peers.keys()].sort(), [peerA, peerB].sort());
    assert.deepEqual(o.peers.get(peerA), {
      publicKey: peerA, endpoint: '192.168.50.3:51820', allowedIPs: ['10.1.0.3/32', '10.1.0.9/32', 'fd01::3/128'],
      persistentKeepalive: 0, latestHandshake: 0, rxBytes: 0, txBytes: 0,
    });
    assert.equal(o.peers.get(peerB)?.persistentKeepalive, 25);
    assert.deepEqual(o.peers.get(peerB)?.allowedIPs, ['10.2.0.0/24']);
    assert.deepEqual(new Map(o.routes), new Map<Cidr, unknown>([
      ['10.1.0.3/32' as Cidr, { kind: 'device', dest: '10.1.0.3/32', device: 'wg0' }],
      ['10.3.0.0/24' as Cidr, { kind: 'throw', dest: '10.3.0.0/24' }],
      ['10.4.0.0/24' as Cidr, { kind: 'device', dest: '10.4.0.0/24', device: 'eth0' }], // via another device: reported
      ['fd01::3/128' as Cidr, { kind: 'device', dest: 'fd01::3/128', device: 'wg0' }],
      ['fd03::/64' as Cidr, { kind: 'throw', dest: 'fd03::/64' }],
    ]));
    assert.deepEqual(o.rules, [
      { family: 4, priority: 99, table: 51820, fwmark: 0x100000, mask: 0x100000 },
      { family: 6, priority: 99, table: 51820, fwmark: 0x100000, mask: 0x100000 },
    ]);
    assert.deepEqual(o.firewall, [
      { family: 4, table: 'filter', name: 'WGPLANE-IN', hook: 'INPUT', rules: ['-p udp -m udp --dport 51820 -j ACCEPT'], hooked: true },
      { family: 4, table: 'raw', name: 'WGPLANE-MARK', hook: 'PREROUTING', rules: ['-i lo -j RETURN'], hooked: false },
      { family: 6, table: 'filter', name: 'WGPLANE-IN6', hook: 'OUTPUT', rules: ['-p udp -m udp --dport 51820 -j ACCEPT'], hooked: true },
    ]);
    // the device's own sysctls by path (a device name may hold dots); none of a foreign device
    assert.deepEqual(o.sysctls, new Map([['net.ipv4.conf.all.src_valid_mark', '1'], ['net/ipv4/conf/wg0/rp_filter', '2']]));
    assert.equal(o.underlayMtu, 1450);
  });

  it('never carries a private key (own or foreign)', async () => {
    const o = await observe({ interfaceName: 'wg0', table: 51820, run: node.run });
    const text = JSON.stringify(o, (_k, v: unknown) => (v instanceof Map ? [...v.entries()] : v));
    assert.ok(text.includes(own.pub), 'the public key is there (the check below is meaningful)');
    assert.ok(!text.includes(own.priv), 'the private key leaked into the observed state');
    assert.ok(!text.includes(foreignKey.priv));
  });

  it('without the workload prefix, a pod interface counts for the underlay MTU', async () => {
    const o = await observe({ interfaceName: 'wg0', table: 51820, workloadInterfacePrefix: null, run: node.run });
    assert.equal(o.underlayMtu, 1300);
  });

  it('a link with the configured name but without the alias is a conflict, not a device', async () => {
    const o = await observe({ interfaceName: 'wg0', table: 51820, run: other.run });
    assert.equal(o.device, null);
    assert.equal(o.conflicts.length, 1);
    assert.match(o.conflicts[0]!, /wg0/);
    assert.equal(o.peers.size, 0);
    assert.equal(o.routes.size, 0);
    assert.deepEqual(o.rules, []);
    assert.deepEqual(o.firewall, []);
    assert.deepEqual([...o.sysctls.keys()], ['net.ipv4.conf.all.src_valid_mark'], 'no device, no device sysctl');
    assert.equal(o.underlayMtu, null);
  });

  it('a failed observation throws a clear error', async () => {
    const broken = (cmd: string, args: readonly string[], opts?: { input?: string }) =>
      cmd === 'iptables-save' ? node.run('iptables-save', ['-t', 'no-such-table'], opts) : node.run(cmd, args, opts);
    await assert.rejects(observe({ interfaceName: 'wg0', table: 51820, run: broken }), /observing the kernel failed: `iptables-save/);
  });
});
