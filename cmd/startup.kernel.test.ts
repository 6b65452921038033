// Host-encryption start-up safety (README "Host-encryption start-up safety (the bootstrap deadlock)",
// core/desired-index.ts "HOST-ENCRYPTION START-UP SAFETY") on the real kernel: three `wgplane daemon` agents
// (child processes in their node namespaces, one shared dir source) in an AKS-like cluster (host encryption
// on, strict rp_filter), real WireGuard (wireguard-go) and real packets (tcpdump on the bridge).
//   1. Fresh start, no keys published: host-to-host pings running from before the agents start lose nothing
//      (node IPs stay `throw` until the first handshake), and the mesh converges: the peers' node IPs route
//      into the device and host ICMP is no longer seen in clear on the bridge.
//   2. An agent restarted with its device and key intact: no packet lost, no operation executed.
//   3. A node coming back with a lost key (agent stopped, private.key and device deleted, agent started): it is
//      reachable again within a bounded window, its new key is published, the peers switch, and host traffic
//      is encrypted again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { readKey } from '../adapters/keystore.js';
import { Capture, type Packet } from '../testing/capture.js';
import { CLI_ARGS, REPO, TestCluster, type ClusterNode } from '../testing/cluster.js';
import { kernelTestSkipReason, nodeExec, nodePrefix } from '../testing/netns.js';

const skip = kernelTestSkipReason();
const IFACE = 'wireguard.wgp';
const TABLE = 51820;
const PORT = 51820;
const PING_INTERVAL_S = 0.1;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `f` until it returns a truthy value; the error names what was awaited and the last reason. */
async function until<T>(what: string, f: () => Promise<T | null | undefined | false>, ms = 60_000, extra: () => string = () => ''): Promise<T> {
  const end = Date.now() + ms;
  let last = '';
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms / 1000} s waiting for: ${what}${last ? ` (last: ${last})` : ''}${extra()}`);
    await sleep(200);
  }
}

/** A continuous ping (every 0.1 s) from a namespace; records which sequence numbers were answered, when. */
class Pinger {
  readonly replies = new Map<number, number>(); // icmp_seq -> arrival (ms since epoch)
  private readonly proc: ResultPromise;
  readonly startedAt = Date.now();
  private partial = '';
  constructor(readonly label: string, ns: string, ip: string) {
    this.proc = execa('ip', ['netns', 'exec', ns, 'ping', '-n', '-i', String(PING_INTERVAL_S), ip], { reject: false, buffer: false, stdin: 'ignore' });
    this.proc.stdout?.on('data', (d: Buffer) => {
      this.partial += d.toString();
      const lines = this.partial.split('\n');
      this.partial = lines.pop() ?? '';
      for (const l of lines) {
        const m = /icmp_seq=(\d+) /.exec(l);
        if (m && !l.includes('DUP')) this.replies.set(Number(m[1]), Date.now());
      }
    });
  }

  /** Stops the ping. Losses are counted up to the last answered packet; the end must still be answered
   *  (a ping that ends in loss is not "working"). */
  async stop(): Promise<{ sent: number; lost: number[]; longestGapS: number; lastReplyAgeMs: number }> {
    const stoppedAt = Date.now();
    this.proc.kill('SIGINT');
    await this.proc;
    const seqs = [...this.replies.keys()].sort((a, b) => a - b);
    const max = seqs.at(-1) ?? 0;
    const lost: number[] = [];
    for (let s = 1; s <= max; s++) if (!this.replies.has(s)) lost.push(s);
    let gap = 0, run = 0;
    for (let s = 1; s <= max; s++) { run = this.replies.has(s) ? 0 : run + 1; gap = Math.max(gap, run); }
    const lastAt = max > 0 ? this.replies.get(max)! : this.startedAt;
    return { sent: max, lost, longestGapS: Math.round(gap * PING_INTERVAL_S * 10) / 10, lastReplyAgeMs: stoppedAt - lastAt };
  }

  /** Resolves once a packet sent after `since` (ms since epoch) is answered; its arrival time. */
  async answeredAfter(since: number, ms: number): Promise<number> {
    return until(`${this.label}: a reply after the event`, async () => {
      for (const at of this.replies.values()) if (at > since + 50) return at;
      return null;
    }, ms);
  }
}

interface Agent {
  proc: ResultPromise | null;
  log: string[];
}

class Mesh {
  readonly agents = new Map<string, Agent>();
  constructor(readonly c: TestCluster, readonly dir: string) {}

  async writeManifests(): Promise<void> {
    const tmp = path.join(this.dir, '.cluster.json.tmp');
    await writeFile(tmp, JSON.stringify(this.c.manifests(new Map(), { enabled: 'true', resyncInterval: '5' }), null, 1));
    await rename(tmp, path.join(this.dir, 'cluster.json'));
  }

  start(node: ClusterNode): Agent {
    const a = this.agents.get(node.name) ?? { proc: null, log: [] };
    const [cmd, ...prefix] = nodePrefix(node.ns);
    const proc = execa(cmd!, [...prefix, process.execPath, ...CLI_ARGS, 'daemon', '--source', `dir:${this.dir}`, '--node', node.name, '--state-dir', node.stateDir, '--wireguard', 'userspace', '--metrics-addr', 'off', '--log-level', 'info'], {
      cwd: REPO, reject: false, buffer: false, stdin: 'ignore', all: true,
    });
    proc.all?.on('data', (d: Buffer) => { a.log.push(...d.toString().split('\n').filter((l) => l !== '')); });
    a.proc = proc;
    this.agents.set(node.name, a);
    return a;
  }

  async stop(node: ClusterNode): Promise<number | string | undefined> {
    const a = this.agents.get(node.name);
    if (!a?.proc) return undefined;
    a.proc.kill('SIGTERM');
    const r = await a.proc;
    a.proc = null;
    return r.exitCode ?? r.signal; // the signal that killed it, if one did
  }

  async stopAll(): Promise<void> {
    for (const a of this.agents.values()) if (a.proc) { a.proc.kill('SIGKILL'); await a.proc; a.proc = null; }
  }

  log(n: ClusterNode): string[] {
    return this.agents.get(n.name)?.log ?? [];
  }

  logs(): string {
    return this.c.nodes.map((n) => `\n--- ${n.name}\n${this.log(n).slice(-20).join('\n')}`).join('');
  }

  async publicKey(n: ClusterNode): Promise<string> {
    const k = await readKey(n.stateDir);
    if (!k) throw new Error(`no key in ${n.stateDir}`);
    return k.publicKey;
  }

  async publishedKey(n: ClusterNode): Promise<string | null> {
    const text = await readFile(path.join(this.dir, 'wgplane-published', `${n.name}.yaml`), 'utf8').catch(() => '');
    const m = /publicKey: "?([A-Za-z0-9+/=]{44})"?/.exec(text);
    return m ? m[1]! : null;
  }

  /** `wg show dump`: public key -> latest handshake, or null without a device. */
  async peers(n: ClusterNode): Promise<Map<string, number> | null> {
    const r = await nodeExec(n.ns, 'wg', ['show', IFACE, 'dump']);
    if (r.exitCode !== 0) return null;
    return new Map(r.stdout.trim().split('\n').slice(1).map((l) => { const f = l.split('\t'); return [f[0]!, Number(f[4])]; }));
  }

  /** Table 51820 of `n`: destination -> 'dev' (into the device) or the route type (throw, ...). */
  async table(n: ClusterNode): Promise<Map<string, string>> {
    const r = await nodeExec(n.ns, 'ip', ['-j', 'route', 'show', 'table', String(TABLE)]);
    if (r.exitCode !== 0 || r.stdout.trim() === '') return new Map();
    return new Map((JSON.parse(r.stdout) as { dst: string; dev?: string; type?: string }[]).map((x) => [x.dst.replace(/\/32$/, ''), x.dev === IFACE ? 'dev' : (x.type ?? 'unicast')]));
  }

  /** Why `a` is not yet in the encrypted mesh with `others` (peer = their current key, handshaked, node
   *  IP and pod IPs routed into the device), or null. */
  async meshProblem(a: ClusterNode, others: readonly ClusterNode[]): Promise<string | null> {
    const peers = await this.peers(a);
    if (!peers) return `${a.name}: no device`;
    const want = await Promise.all(others.map((b) => this.publicKey(b)));
    if (JSON.stringify([...peers.keys()].sort()) !== JSON.stringify([...want].sort())) return `${a.name}: peers ${[...peers.keys()].join(',')} != ${want.join(',')}`;
    for (const k of want) if (!(peers.get(k)! > 0)) return `${a.name}: no handshake with ${k}`;
    const t = await this.table(a);
    for (const b of others) for (const ip of [b.ip, ...b.pods.map((p) => p.ip)]) {
      if (t.get(ip) !== 'dev') return `${a.name}: ${ip} is ${t.get(ip) ?? 'missing'} in table ${TABLE}`;
    }
    return null;
  }

  async converged(what: string, ms = 60_000): Promise<void> {
    let last = '';
    await until(what, async () => {
      for (const a of this.c.nodes) {
        const p = await this.meshProblem(a, this.c.nodes.filter((b) => b !== a));
        if (p) { last = p; return false; }
      }
      return true;
    }, ms, () => `\n${last}${this.logs()}`);
  }
}

const between = (p: Packet, a: ClusterNode, b: ClusterNode) => [a.ip, b.ip].includes(p.src) && [a.ip, b.ip].includes(p.dst);

/** Pings host to host across every pair while capturing on the bridge: every ping answers, no ICMP between
 *  node IPs is on the wire, and each pair's WireGuard UDP is. */
async function hostTrafficEncrypted(m: Mesh): Promise<void> {
  const nodes = m.c.nodes;
  const cap = await Capture.start(m.c.bridge.name, 'br0');
  const failed: string[] = [];
  let packets: Packet[] = [];
  try {
    for (const a of nodes) for (const b of nodes) {
      if (a === b) continue;
      const r = await nodeExec(a.ns, 'ping', ['-n', '-q', '-c', '3', '-i', '0.1', '-W', '2', b.ip]);
      if (r.exitCode !== 0) failed.push(`${a.ip} -> ${b.ip}`);
    }
  } finally {
    packets = await cap.stop();
  }
  assert.deepEqual(failed, [], 'host-to-host pings failed');
  for (const a of nodes) for (const b of nodes) {
    if (a.index >= b.index) continue;
    const clear = packets.filter((p) => p.proto === 'icmp' && between(p, a, b));
    assert.deepEqual(clear.map((p) => p.line), [], `host ICMP between ${a.name} and ${b.name} seen in clear`);
    assert.ok(packets.filter((p) => p.proto === 'udp' && p.sport === PORT && p.dport === PORT && between(p, a, b)).length >= 6, `no WireGuard UDP between ${a.name} and ${b.name}`);
  }
}

/** Packets the node's strict rp_filter dropped so far (its namespace's IPReversePathFilter counter). */
async function rpFilterDrops(n: ClusterNode): Promise<number> {
  const r = await nodeExec(n.ns, 'nstat', ['-asz', 'TcpExtIPReversePathFilter']);
  const m = /TcpExtIPReversePathFilter\s+(\d+)/.exec(r.stdout);
  return m ? Number(m[1]) : NaN;
}

const report = (what: string, r: { sent: number; lost: number[]; longestGapS: number }) =>
  console.log(`# ${what}: ${r.sent} sent, ${r.lost.length} lost, longest gap ${r.longestGapS} s`);

test('host-encryption start-up safety: no cut-off at first start, on restart, or after a lost key (aks)', { skip: skip ?? false, timeout: 240_000 }, async (t) => {
  const c = await TestCluster.create({ flavor: 'aks', nodes: 3, podsPerNode: 1, prefix: 'wgsu' });
  const dir = await mkdtemp(path.join(tmpdir(), 'wgplane-startup-'));
  const m = new Mesh(c, dir);
  const pingers: Pinger[] = [];
  t.after(async () => {
    for (const p of pingers) await p.stop().catch(() => undefined);
    await m.stopAll();
    await c.destroy();
    await rm(dir, { recursive: true, force: true });
  });
  const [n0, n1, n2] = c.nodes as [ClusterNode, ClusterNode, ClusterNode];
  await m.writeManifests();
  const ping = (a: ClusterNode, b: ClusterNode) => { const p = new Pinger(`${a.name} -> ${b.ip}`, a.ns, b.ip); pingers.push(p); return p; };
  let startupLosses: string[] = [];
  const stopPing = async (p: Pinger) => { pingers.splice(pingers.indexOf(p), 1); return p.stop(); };

  await t.test('fresh start, no keys published: host-to-host ping never breaks, then the mesh is encrypted', async () => {
    const ps = [ping(n0, n1), ping(n1, n0), ping(n1, n2), ping(n2, n0)];
    await until('the underlay answers before wgplane', async () => ps.every((p) => p.replies.size > 0), 10_000);
    const startedAt = Date.now();
    for (const n of c.nodes) m.start(n);
    // Watch the gate: a peer's node IP is first seen as `throw` in table 51820, then `dev`.
    const seen = new Map<string, Set<string>>(); // `${on}->${peer ip}` -> kinds seen
    let last = '';
    await until('the encrypted mesh (every node IP routed into the device)', async () => {
      let done = true;
      for (const a of c.nodes) {
        const tb = await m.table(a);
        for (const b of c.nodes) {
          if (b === a) continue;
          const k = `${a.name}->${b.ip}`;
          const kind = tb.get(b.ip);
          if (kind) (seen.get(k) ?? seen.set(k, new Set()).get(k)!).add(kind);
          if (kind !== 'dev') { done = false; last = `${k}: ${kind ?? 'none'}`; }
        }
      }
      return done;
    }, 60_000, () => `\n${last}${m.logs()}`);
    const convergedS = (Date.now() - startedAt) / 1000;
    await m.converged('the full mesh (keys, handshakes, routes)');
    // Every agent opened the gate on a first handshake (the node IPs were held back until then).
    for (const n of c.nodes) {
      const opened = m.log(n).filter((l) => l.includes('first handshake with a peer')).length;
      assert.equal(opened, 2, `${n.name} should open the gate once per peer:${m.logs()}`);
    }
    const throwSeen = [...seen].filter(([, k]) => k.has('throw')).map(([k]) => k);
    await sleep(500);
    const results = await Promise.all(ps.map(stopPing));
    results.forEach((r, i) => report(`start-up ping ${ps[i]!.label}`, r));
    console.log(`# start-up: mesh with node IPs in the device after ${convergedS.toFixed(1)} s; node IP seen as throw before dev on ${throwSeen.length}/6 (node, peer) pairs`);
    const rpDrops = await Promise.all(c.nodes.map(rpFilterDrops));
    console.log(`# start-up: strict rp_filter drops (IPReversePathFilter) per node: ${rpDrops.join(', ')}`);
    startupLosses = [
      ...results.map((r, i) => `${ps[i]!.label}: ${r.lost.length} lost`),
      ...c.nodes.map((n, i) => `${n.name}: ${rpDrops[i]} rp_filter drops`),
    ].filter((x) => !/: 0 /.test(x));
    for (const [i, r] of results.entries()) {
      assert.ok(r.lastReplyAgeMs < 1000, `${ps[i]!.label}: the ping stopped answering`);
      // Never cut off (no deadlock); and no blip either (the next test).
      assert.ok(r.longestGapS <= 2.5, `${ps[i]!.label}: cut off for ${r.longestGapS} s during the start-up`);
    }
    await hostTrafficEncrypted(m);
  });

  // Found by this test: the two ends of a pair open their gates at their own next poll of
  // `wg show latest-handshakes`, up to a poll interval apart. Meanwhile the end that opened first sends host
  // traffic encrypted; the other end decrypts it, but its route back to the sender is still `throw` (main
  // table, eth0), so strict rp_filter dropped the packet arriving on the WireGuard device (1-2 pings per
  // direction, matching the IPReversePathFilter counters). The device now has loose rp_filter of its own
  // (WireGuard checks the sources against the peer's allowed IPs itself): no packet is lost.
  await t.test('no host packet at all is lost when the gates open', () => {
    assert.deepEqual(startupLosses, []);
  });

  await t.test('an agent restarted with its device and key intact loses no packet and changes nothing', async () => {
    const key = await m.publicKey(n1);
    const ps = [ping(n0, n1), ping(n1, n0), ping(n2, n1)];
    await sleep(500);
    const before = (JSON.parse(await readFile(path.join(n1.stateDir, 'status.json'), 'utf8')) as { startedAt: string }).startedAt;
    assert.equal(await m.stop(n1), 0, 'SIGTERM exits 0');
    const from = m.log(n1).length;
    m.start(n1);
    await until('the restarted agent is ready', async () => m.log(n1).slice(from).some((l) => l.includes('first apply done; ready')), 30_000, () => m.logs());
    // Past one resync (5 s) as well: it too must find nothing to do.
    await until('a status written after a resync', async () => {
      // status.json from the agent before the restart also reports a resync: only the new agent's counts.
      const s = JSON.parse(await readFile(path.join(n1.stateDir, 'status.json'), 'utf8')) as { startedAt: string; lastReconcile: { kind: string } | null };
      return s.startedAt !== before && s.lastReconcile?.kind === 'resync';
    }, 20_000, () => m.logs());
    const s = JSON.parse(await readFile(path.join(n1.stateDir, 'status.json'), 'utf8')) as { counters: { executions: number; opsApplied: number }; publicKey: string; keyPublished: boolean };
    const results = await Promise.all(ps.map(stopPing));
    results.forEach((r, i) => report(`restart (intact) ping ${ps[i]!.label}`, r));
    assert.deepEqual(m.log(n1).slice(from).filter((l) => l.includes('applied plan')), [], 'the restarted agent executed operations');
    assert.equal(s.counters.executions, 0);
    assert.equal(s.counters.opsApplied, 0);
    assert.equal(s.publicKey, key);
    assert.equal(s.keyPublished, true);
    assert.equal(await m.publishedKey(n1), key);
    for (const [i, r] of results.entries()) {
      assert.ok(r.lastReplyAgeMs < 1000, `${ps[i]!.label}: the ping stopped answering`);
      assert.deepEqual(r.lost, [], `${ps[i]!.label}: packets lost during the restart`);
    }
    await m.converged('the mesh after the restart', 10_000);
  });

  await t.test('a node back with a lost key (reinstall) is reachable again within seconds and re-encrypted', async () => {
    const oldKey = await m.publicKey(n2);
    const ps = [ping(n0, n2), ping(n2, n0), ping(n1, n2)];
    await sleep(500);
    assert.equal(await m.stop(n2), 0);
    // As after a reinstall: no key file, no device (wireguard-go goes with its TUN link).
    await unlink(path.join(n2.stateDir, 'private.key'));
    const del = await nodeExec(n2.ns, 'ip', ['link', 'del', IFACE]);
    assert.equal(del.exitCode, 0, del.stderr);
    const cutAt = Date.now();
    const from = m.log(n2).length;
    m.start(n2);
    const startedAt = Date.now();
    // Bounded window: every ping answers again soon after the restart (measured and bounded below).
    const back = await Promise.all(ps.map((p) => p.answeredAfter(startedAt, 15_000)));
    const newKey = await until('the new key published', async () => {
      const k = await m.publishedKey(n2);
      return k !== null && k !== oldKey ? k : null;
    }, 30_000, () => m.logs());
    assert.equal(newKey, await m.publicKey(n2), 'the published key is the one on disk');
    assert.ok(m.log(n2).slice(from).some((l) => l.includes('public key published')));
    await m.converged('the mesh with the new key');
    for (const a of [n0, n1]) assert.ok(!(await m.peers(a))!.has(oldKey), `${a.name} keeps the lost key`);
    await sleep(500);
    const results = await Promise.all(ps.map(stopPing));
    results.forEach((r, i) => report(`lost key ping ${ps[i]!.label}`, r));
    console.log(`# lost key: device deleted to agent started ${((startedAt - cutAt) / 1000).toFixed(2)} s; replies again ${back.map((at) => ((at - startedAt) / 1000).toFixed(1)).join(', ')} s after the start`);
    for (const [i, r] of results.entries()) {
      assert.ok(r.lastReplyAgeMs < 1000, `${ps[i]!.label}: the ping stopped answering`);
      // The window is mostly the agent's own start (node + tsx, ~2-3 s here) and the peers' switch.
      assert.ok(r.longestGapS <= 8, `${ps[i]!.label}: cut off for ${r.longestGapS} s`);
    }
    await hostTrafficEncrypted(m);
  });
});
