// `npm run bench` (apply part, root only): programming a real node in a throwaway network namespace with
// wireguard-go, against the floor: the same device, peers, routes and rule pushed by hand-written
// `wg setconf` and `ip -batch` (what a perfect tool would spend in the kernel and the tools).
//   1. fresh node, 1,000 nodes x 30 pods (30k routes, 999 peers): wgplane (observe, desired, plan, execute)
//      vs the floor (device, address, peers, routes, rule, firewall chains and sysctl in the fewest
//      processes, nothing observed or planned). Target: within 1.3x of the floor.
//   2. one-pod change on the programmed node, as the daemon does it (applyPodChange, planScoped, execute):
//      median and max over 20 changes. Target: under 50 ms. Floor: `wg set ... allowed-ips` + `ip route`.
import { performance } from 'node:perf_hooks';
import * as E from 'fp-ts/lib/Either.js';
import { generateCluster, nodeNames } from '../testing/generate.js';
import { Lab, addUnderlay, kernelTestSkipReason } from '../testing/netns.js';
import { defaultRunner, runChecked, type Runner } from '../adapters/run.js';
import { observe } from '../adapters/observer.js';
import { execute } from '../adapters/executor.js';
import { buildDesiredIndex, applyPodChange, desiredOf } from '../core/desired-index.js';
import { plan, planScoped } from '../planner/plan.js';
import { applyPlan } from '../planner/kernel-model.js';
import { hostCidr, type IP } from '../core/ip.js';
import type { DesiredEnabled, NodeName, ObservedDataplane, PodInfo, PodKey } from '../core/model.js';
import { sysctlDevice } from '../core/model.js';

const NODES = Number(process.env.BENCH_APPLY_NODES ?? 1000);
const PODS = Number(process.env.BENCH_APPLY_PODS ?? 30);
const RUNS = Number(process.env.BENCH_APPLY_RUNS ?? 3);

async function floorFresh(run: Runner, d: DesiredEnabled, privateKey: string): Promise<number> {
  const dev = d.device.name;
  const conf = [`[Interface]`, `PrivateKey = ${privateKey}`, `ListenPort = ${d.device.listenPort}`, `FwMark = 0x${d.device.fwmark.toString(16)}`];
  for (const p of d.peers.values()) conf.push('[Peer]', `PublicKey = ${p.publicKey}`, `Endpoint = ${p.endpoint}`, `AllowedIPs = ${p.allowedIPs.join(',')}`);
  const routes: string[] = [];
  for (const [dest, r] of d.routes) routes.push(r.route.kind === 'throw' ? `route replace throw ${dest} table ${d.table}` : `route replace ${dest} dev ${dev} scope link table ${d.table}`);
  for (const a of d.device.addresses) routes.push(`address add ${a} dev ${dev}`);
  const rule = d.rules.map((r) => `rule add not fwmark 0x${r.fwmark.toString(16)}/0x${r.mask.toString(16)} table ${r.table} priority ${r.priority}`).join('\n') + '\n';
  // The firewall chains and sysctls wgplane also programs, by hand too, so that both sides do the same work.
  const fw: string[] = [];
  for (const table of ['raw', 'filter'] as const) {
    const chains = d.firewall.filter((c) => c.table === table && c.family === 4);
    if (chains.length === 0) continue;
    fw.push(`*${table}`, ...chains.map((c) => `:${c.name} - [0:0]`));
    for (const c of chains) fw.push(...c.rules.map((r) => `-A ${c.name} ${r}`), `-I ${c.hook} 1 -j ${c.name}`);
    fw.push('COMMIT');
  }
  // global sysctls first; the device's own once it exists (as wgplane does)
  const sysctls = [...d.sysctls].filter(([k]) => sysctlDevice(k) === null).map(([k, v]) => `${k}=${v}`);
  const devSysctls = [...d.sysctls].filter(([k]) => sysctlDevice(k) !== null).map(([k, v]) => `${k}=${v}`);
  const t0 = performance.now();
  if (sysctls.length > 0) await runChecked(run, 'sysctl', ['-qw', ...sysctls]);
  await runChecked(run, 'wireguard-go', [dev]);
  await runChecked(run, 'ip', ['link', 'set', dev, 'mtu', String(d.device.mtu), 'up']);
  if (devSysctls.length > 0) await runChecked(run, 'sysctl', ['-qw', ...devSysctls]);
  await runChecked(run, 'sh', ['-c', `cat | wg setconf ${dev} /dev/stdin`], { input: conf.join('\n') + '\n' });
  await runChecked(run, 'ip', ['-batch', '-'], { input: routes.join('\n') + '\n' });
  await runChecked(run, 'ip', ['-4', '-batch', '-'], { input: rule });
  await runChecked(run, 'iptables-restore', ['--noflush'], { input: fw.join('\n') + '\n' });
  return performance.now() - t0;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const skip = kernelTestSkipReason();
  if (skip) {
    console.log(`apply benchmarks skipped: ${skip}`);
    return;
  }
  const c = generateCluster({ nodes: NODES, podsPerNode: PODS, flavor: 'aks', seed: 11, objects: false });
  const local = nodeNames(c)[0]!;
  const localIP = c.snapshot.nodes.get(local)!.addresses[0]!.address;
  const keyRun = defaultRunner;
  const privateKey = (await runChecked(keyRun, 'wg', ['genkey'])).stdout.trim();
  const publicKey = (await runChecked(keyRun, 'wg', ['pubkey'], { input: privateKey })).stdout.trim();
  const host = { underlayMtu: 1500, publicKey: publicKey as never };

  const floors: number[] = [];
  const ours: number[] = [];
  const oursPhases: string[] = [];
  let last: { run: Runner; lab: Lab; d: DesiredEnabled; observed: ObservedDataplane } | null = null;
  for (let i = 0; i < RUNS; i++) {
    const lab = new Lab('wgpb');
    try {
      const a = await lab.namespace();
      await addUnderlay(a.run, localIP);
      const ix0 = buildDesiredIndex(c.snapshot, local, host);
      if (E.isLeft(ix0) || ix0.right.kind !== 'index') throw new Error('desired failed');
      floors.push(await floorFresh(a.run, desiredOf(ix0.right), privateKey));

      const b = await lab.namespace();
      await addUnderlay(b.run, localIP);
      const t0 = performance.now();
      const observed = await observe({ interfaceName: 'wireguard.wgp', table: 51820, workloadInterfacePrefix: 'azv', run: b.run });
      const t1 = performance.now();
      const ix = buildDesiredIndex(c.snapshot, local, { ...host, underlayMtu: observed.underlayMtu });
      if (E.isLeft(ix) || ix.right.kind !== 'index') throw new Error('desired failed');
      const d = desiredOf(ix.right);
      const p = plan(d, observed);
      const t2 = performance.now();
      const r = await execute(p.ops, { backend: 'userspace', privateKey: async () => privateKey, run: b.run, observed });
      const t3 = performance.now();
      if (r.kind !== 'ok') throw new Error(`execute failed: ${r.message}`);
      ours.push(t3 - t0);
      oursPhases.push(`observe ${(t1 - t0).toFixed(0)} ms, desired+plan ${(t2 - t1).toFixed(0)} ms, execute ${(t3 - t2).toFixed(0)} ms (${p.ops.length} ops)`);
      if (i === RUNS - 1) {
        const after = applyPlan(observed as never, p.ops);
        if (E.isLeft(after)) throw new Error('model disagrees');
        last = { run: b.run, lab, d, observed: after.right };
      } else await lab.dispose();
    } catch (e) {
      await lab.dispose();
      throw e;
    }
  }

  // One-pod changes through the daemon's path.
  const change: number[] = [];
  const planMs: number[] = [];
  const floorChange: number[] = [];
  if (last) {
    const ixE = buildDesiredIndex(c.snapshot, local, host);
    if (E.isLeft(ixE) || ixE.right.kind !== 'index') throw new Error('desired failed');
    const ix = ixE.right;
    let observed = last.observed;
    const remote = nodeNames(c)[1]! as NodeName;
    for (let i = 0; i < 20; i++) {
      const ip = `10.239.${200 + Math.floor(i / 200)}.${(i % 200) + 1}` as IP;
      const pod: PodInfo = { key: `bench/p${i}` as PodKey, nodeName: remote, ips: [ip], phase: 'Running', hostNetwork: false };
      const t0 = performance.now();
      const ch = applyPodChange(ix, null, pod);
      const p = planScoped(desiredOf(ix), observed, { routes: ch.routes, peers: ch.peers });
      planMs.push(performance.now() - t0);
      const r = await execute(p.ops, { backend: 'userspace', privateKey: async () => privateKey, run: last.run, observed });
      const t1 = performance.now();
      if (r.kind !== 'ok') throw new Error(`execute failed: ${r.message}`);
      const next = applyPlan(observed as never, p.ops);
      if (E.isLeft(next)) throw new Error('model disagrees');
      observed = next.right;
      change.push(t1 - t0);
      const peer = [...ix.peers.values()].find((x) => x.node === remote)!;
      const f0 = performance.now();
      await runChecked(last.run, 'wg', ['set', 'wireguard.wgp', 'peer', peer.publicKey, 'allowed-ips', [...peer.allowedIPs].join(',')]);
      await runChecked(last.run, 'ip', ['route', 'replace', hostCidr(ip), 'dev', 'wireguard.wgp', 'scope', 'link', 'table', '51820']);
      floorChange.push(performance.now() - f0);
    }
    await last.lab.dispose();
  }

  const fm = median(floors), om = median(ours);
  const ratio = om / fm;
  console.log(`\n### Apply on a real node (wireguard-go, ${NODES.toLocaleString('en')} nodes x ${PODS} pods: ${(NODES * PODS).toLocaleString('en')} pod routes, ${NODES - 1} peers; median of ${RUNS})\n`);
  console.log('| case | wgplane ms | floor ms | ratio | target | result |');
  console.log('|---|---:|---:|---:|---|---|');
  console.log(`| fresh node | ${om.toFixed(0)} | ${fm.toFixed(0)} | ${ratio.toFixed(2)}x | within 1.3x | ${ratio <= 1.3 ? 'PASS' : 'MISS'} |`);
  const cm = median(change), cmax = Math.max(...change);
  console.log(`| one-pod change (median / max of ${change.length}) | ${cm.toFixed(1)} / ${cmax.toFixed(1)} | ${median(floorChange).toFixed(1)} | ${(cm / median(floorChange)).toFixed(2)}x | < 50 ms | ${cm < 50 ? 'PASS' : 'MISS'} |`);
  if (planMs.length > 0) console.log(`\none-pod change: planning (applyPodChange + planScoped) median ${median(planMs).toFixed(2)} ms; the rest is execution`);
  console.log(`\nwgplane fresh-node phases (last run): ${oursPhases[oursPhases.length - 1]}`);
}

await main();
