// Memory and timings of the REAL `wgplane daemon` process at scale (root only):
//   node --import tsx bench/daemon-scale.ts [--nodes 5000] [--pods 110] [--resync-interval 90] [--idle 30]
//                                           [--events 6] [--cli dist|tsx] [--seed 7] [--keep]
//                                           [--node-options '--max-old-space-size=256']
//
// The cluster is AKS-shaped (generateCluster flavor 'aks': workload IPs, every pod IP its own /32 route and
// allowed IP, host encryption on). A stand-in API server (testing/standin-apiserver.ts) holds its Nodes,
// Pods and the settings ConfigMap; it runs in a separate process (this file re-invoked with `--serve`) so
// that the daemon's RSS is the daemon's alone. Both run in ONE network namespace (the local node, with an
// `eth0` carrying the local node's InternalIP): the daemon reaches the stand-in on that namespace's
// 127.0.0.1. The remote nodes do not exist: their peers have endpoints nobody answers.
//
// The daemon is the compiled CLI, as the image runs it: `tsc -p . --outDir <tmp>/dist` (a private build
// in a temporary directory, so that the repository's dist/ is not touched), started as
// `node <tmp>/dist/cmd/main.js daemon --source kube --kubeconfig K --state-dir D --wireguard userspace
// --metrics-addr 127.0.0.1:9476 --log-level info` with NODE_NAME and the DaemonSet's NODE_OPTIONS
// (read from deploy/daemonset.yaml), inside the namespace with its own /run/wireguard (testing/netns.ts nodePrefix, as the
// daemon kernel tests do). `--cli tsx` runs cmd/main.ts through tsx instead (as the kernel tests do; tsx's
// loader thread adds memory that the image does not have).
//
// Measured (VmRSS of the daemon's /proc/PID/status sampled every 100 ms; VmHWM for peaks, reset with
// `echo 5 > /proc/PID/clear_refs` between phases):
//   1. start -> source synced (paged list of every Node and Pod) -> first apply done; ready; RSS at ready,
//      peak RSS during start-up (VmHWM at ready).
//   2. steady RSS after --idle seconds (and its range over the window).
//   3. the next periodic full resync (resyncInterval from the settings ConfigMap, default 90 s: the daemon
//      has no other trigger): observe (`ip -json route show table`, `wg show dump`), full plan, execute; its
//      duration (timer due -> lastReconcile in status.json) and the peak RSS across it (VmHWM since reset).
//   4. --events pod creations on remote nodes through the stand-in (then their deletions): time until the
//      /32 route is in (out of) table 51820 of the namespace.
//   Also: routes in table 51820 and peers on the device (the scale was real), wireguard-go's RSS, and the
//   peak of the summed RSS of every process of the namespace but the stand-in (daemon + wireguard-go +
//   the ip/wg/iptables it runs): what the container's memory limit (deploy/daemonset.yaml) covers.
// Prints a Markdown table; the daemon's warn/error log lines after it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync, existsSync, symlinkSync, copyFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

const HERE = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(HERE), '..');
const DEV = 'wireguard.wgp';
const TABLE = 51820;

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : def;
}
const NODES = Number(arg('nodes', '5000'));
const PODS = Number(arg('pods', '110'));
const SEED = Number(arg('seed', '7'));
const RESYNC_S = Number(arg('resync-interval', '90'));
const IDLE_S = Number(arg('idle', '30'));
const EVENTS = Number(arg('events', '6'));
const CLI_KIND = arg('cli', 'dist') as 'dist' | 'tsx';
const TIMEOUT_MS = Number(arg('timeout', '1800')) * 1000;
/** Appended to the DaemonSet's NODE_OPTIONS, e.g. `--max-old-space-size=256`: the old-generation limit V8
 *  picks by itself inside a 1Gi container (Node sizes the heap from the cgroup limit: a quarter of it). */
const EXTRA_NODE_OPTIONS = arg('node-options', '');

/** The DaemonSet's memory limit in GiB (deploy/daemonset.yaml, `memory: NGi` under limits). */
function daemonSetMemoryLimitGi(): number {
  const m = /limits:[\s\S]*?memory: (\d+)Gi/.exec(readFileSync(path.join(REPO, 'deploy', 'daemonset.yaml'), 'utf8'));
  if (!m) throw new Error('deploy/daemonset.yaml: no memory limit in Gi found');
  return Number(m[1]);
}

/** The NODE_OPTIONS the DaemonSet gives the agent (deploy/daemonset.yaml), as scripts/bench.sh reads them. */
function daemonSetNodeOptions(): string {
  const m = /^\s*value: (--max-semi-space-size=.*)$/m.exec(readFileSync(path.join(REPO, 'deploy', 'daemonset.yaml'), 'utf8'));
  if (!m) throw new Error('deploy/daemonset.yaml: no NODE_OPTIONS value found');
  return m[1]!.trim();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (m: string) => process.stderr.write(`[daemon-scale ${new Date().toISOString().slice(11, 19)}] ${m}\n`);
const mb = (kb: number) => `${(kb / 1024).toFixed(0)} MiB`;
const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

// ---------------------------------------------------------------------------------------------------
// --serve: the stand-in API server process. Prints one JSON line {kubeconfig, node, ip}, then serves
// commands on stdin (JSON lines): {op:'add', i} -> a new pod on a remote node, {op:'del', i}; replies
// one JSON line each.

async function serve(): Promise<void> {
  const { generateCluster, nodeNames } = await import('../testing/generate.js');
  const { StandinApiServer } = await import('../testing/standin-apiserver.js');
  let c: ReturnType<typeof generateCluster> | null = generateCluster({ nodes: NODES, podsPerNode: PODS, flavor: 'aks', seed: SEED, objects: true, settings: { resyncInterval: RESYNC_S } });
  const names = nodeNames(c);
  const local = names[0]!;
  const ip = c.snapshot.nodes.get(local)!.addresses[0]!.address;
  const cm = c.objects.find((o) => (o as { kind: string }).kind === 'ConfigMap') as { metadata: { name: string; namespace: string }; data: Record<string, string> } | undefined;
  if (cm === undefined || cm.data.enabled !== 'true') throw new Error('the generated objects hold no settings ConfigMap with enabled=true');
  const remote = (i: number) => names[1 + ((i * 7919) % (names.length - 1))]!;
  const templates = new Map<string, unknown>();
  for (let i = 0; i < EVENTS; i++) templates.set(remote(i), null);
  for (const o of c.objects) {
    const p = o as { kind: string; spec?: { nodeName?: string } };
    if (p.kind === 'Pod' && p.spec?.nodeName !== undefined && templates.get(p.spec.nodeName) === null) templates.set(p.spec.nodeName, structuredClone(o));
  }
  const server = await StandinApiServer.start({ objects: c.objects });
  const counts = { objects: c.objects.length };
  c = null; // the server holds its own copies
  server.compact(); // the history of the initial puts is not needed (a list is at the current version)
  process.stdout.write(JSON.stringify({ kubeconfig: server.kubeconfigPath, node: local, ip, settings: cm.data, ...counts }) + '\n');
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    const m = JSON.parse(line) as { op: 'add' | 'del'; i: number };
    const name = `bench-scale-${m.i}`;
    const podIP = `10.239.${Math.floor(m.i / 250)}.${(m.i % 250) + 1}`;
    if (m.op === 'add') {
      const t = structuredClone(templates.get(remote(m.i))) as { metadata: Record<string, unknown>; status: Record<string, unknown> };
      t.metadata = { ...t.metadata, name, uid: `bench-scale-uid-${m.i}` };
      t.status = { ...t.status, podIP, podIPs: [{ ip: podIP }] };
      server.put(t);
    } else {
      server.remove('pods', name, (templates.get(remote(m.i)) as { metadata: { namespace: string } }).metadata.namespace);
    }
    process.stdout.write(JSON.stringify({ ok: true, ip: podIP, node: remote(m.i) }) + '\n');
  }
  await server.close();
}

// ---------------------------------------------------------------------------------------------------
// /proc sampling

function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function netnsOf(pid: number): string | null {
  try { return readlinkSync(`/proc/${pid}/ns/net`); } catch { return null; }
}

/** Pids whose network namespace is `ns` (a /proc scan), but `exclude`. */
function pidsIn(ns: string, exclude: ReadonlySet<number>): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const pid = Number(d);
    if (exclude.has(pid)) continue;
    if (netnsOf(pid) === ns) out.push(pid);
  }
  return out;
}

interface Sample { readonly t: number; readonly rss: number; readonly group: number; readonly wg: number; readonly who: string }

class Sampler {
  readonly samples: Sample[] = [];
  private timer: NodeJS.Timeout | null = null;
  wgPid: number | null = null;
  constructor(readonly pid: number, readonly ns: string, readonly exclude: Set<number>) {}
  start(): void {
    this.timer = setInterval(() => this.tick(), 100);
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
  tick(): void {
    const rss = statusKb(this.pid, 'VmRSS');
    let group = 0, wg = 0;
    const who: string[] = [];
    for (const p of pidsIn(this.ns, this.exclude)) {
      const r = statusKb(p, 'VmRSS');
      group += r;
      let comm = '';
      try { comm = readFileSync(`/proc/${p}/comm`, 'utf8').trim(); } catch { /* gone */ }
      if (r > 0) who.push(`${comm} ${(r / 1024).toFixed(0)}`);
      if (p !== this.pid && comm === 'wireguard-go') { wg += r; this.wgPid = p; }
    }
    this.samples.push({ t: performance.now(), rss, group, wg, who: who.join(', ') });
  }
  window(from: number, to = Infinity): Sample[] {
    return this.samples.filter((s) => s.t >= from && s.t <= to);
  }
}
const maxOf = (xs: Sample[], k: 'rss' | 'group' | 'wg') => xs.reduce((m, s) => Math.max(m, s[k]), 0);
const minOf = (xs: Sample[], k: 'rss' | 'group' | 'wg') => xs.reduce((m, s) => Math.min(m, s[k]), Infinity);

// ---------------------------------------------------------------------------------------------------

interface LogLine { readonly at: number; readonly json: Record<string, unknown> | null; readonly text: string }

async function main(): Promise<void> {
  const { kernelTestSkipReason, Lab, nodePrefix, nodeExec, addUnderlay } = await import('../testing/netns.js');
  const { runChecked, defaultRunner } = await import('../adapters/run.js');
  const skip = kernelTestSkipReason();
  if (skip) {
    console.log(`daemon-scale skipped: ${skip}`);
    return;
  }
  log(`${NODES} x ${PODS} (AKS, ${(NODES * PODS).toLocaleString('en')} pods), CLI ${CLI_KIND}, resyncInterval ${RESYNC_S} s`);

  // The CLI
  let cli: string[];
  let buildDir: string | null = null;
  if (CLI_KIND === 'dist') {
    buildDir = mkdtempSync(path.join(tmpdir(), 'wgplane-scale-build-'));
    const t = performance.now();
    const r = await defaultRunner('npx', ['tsc', '-p', REPO, '--outDir', path.join(buildDir, 'dist')], { });
    if (!existsSync(path.join(buildDir, 'dist/cmd/main.js'))) throw new Error(`tsc produced no dist/cmd/main.js: ${r.stdout}${r.stderr}`);
    if (r.exitCode !== 0) log(`tsc reported errors (emitted anyway): ${(r.stdout + r.stderr).slice(0, 500)}`);
    symlinkSync(path.join(REPO, 'node_modules'), path.join(buildDir, 'node_modules'));
    copyFileSync(path.join(REPO, 'package.json'), path.join(buildDir, 'package.json'));
    cli = [path.join(buildDir, 'dist/cmd/main.js')];
    log(`compiled the CLI into ${buildDir} in ${sec(performance.now() - t)}`);
  } else {
    cli = ['--import', 'tsx', path.join(REPO, 'cmd/main.ts')];
  }

  const lab = new Lab('wgsc');
  const stateDir = mkdtempSync(path.join(tmpdir(), 'wgplane-scale-state-'));
  let server: ChildProcess | null = null;
  let daemon: ChildProcess | null = null;
  let sampler: Sampler | null = null;
  const logLines: LogLine[] = [];
  const rows: [string, string][] = [];
  try {
    const ns = await lab.namespace();

    // The stand-in API server, in the namespace (the daemon reaches it on the namespace's 127.0.0.1)
    const tGen = performance.now();
    server = spawn('ip', ['netns', 'exec', ns.name, process.execPath, '--max-old-space-size=20000', '--import', 'tsx', HERE, '--serve', '--nodes', String(NODES), '--pods', String(PODS), '--seed', String(SEED), '--resync-interval', String(RESYNC_S), '--events', String(EVENTS)], { cwd: REPO, stdio: ['pipe', 'pipe', 'inherit'] });
    const serverOut = createInterface({ input: server.stdout! })[Symbol.asyncIterator]();
    const nextServerLine = async () => {
      const r = await serverOut.next();
      if (r.done) throw new Error('the stand-in server ended');
      return JSON.parse(r.value as string) as Record<string, unknown>;
    };
    const info = await nextServerLine() as { kubeconfig: string; node: string; ip: string; settings: Record<string, string>; objects: number };
    log(`stand-in server up (${info.objects.toLocaleString('en')} objects, pid ${server.pid}) in ${sec(performance.now() - tGen)}; local node ${info.node} ${info.ip}; settings ${JSON.stringify(info.settings)}`);

    // The node's underlay
    await addUnderlay(ns.run, info.ip);

    // The daemon
    const [cmd, ...prefix] = nodePrefix(ns.name);
    const args = [...prefix, process.execPath, ...cli, 'daemon', '--source', 'kube', '--kubeconfig', info.kubeconfig, '--state-dir', stateDir, '--wireguard', 'userspace', '--metrics-addr', '127.0.0.1:9476', '--log-level', 'info'];
    const env = { ...process.env, NODE_NAME: info.node, NODE_OPTIONS: `${daemonSetNodeOptions()}${EXTRA_NODE_OPTIONS ? ` ${EXTRA_NODE_OPTIONS}` : ''}` };
    delete (env as Record<string, string | undefined>).KUBECONFIG;
    const t0 = performance.now();
    daemon = spawn(cmd!, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let exited: string | null = null;
    daemon.on('exit', (code, sig) => { exited = `exit code ${code} signal ${sig}`; log(`daemon ended: ${exited}`); });
    const onLine = (text: string) => {
      let json: Record<string, unknown> | null = null;
      try { json = JSON.parse(text) as Record<string, unknown>; } catch { /* not JSON */ }
      logLines.push({ at: performance.now(), json, text });
    };
    createInterface({ input: daemon.stdout! }).on('line', onLine);
    createInterface({ input: daemon.stderr! }).on('line', onLine);
    const pid = daemon.pid!;
    // ip netns exec, unshare and sh all exec: the pid is node's once the prefix has run.
    const execT = performance.now();
    while (!/node/.test(readFileSync(`/proc/${pid}/comm`, 'utf8'))) {
      if (performance.now() - execT > 10_000) throw new Error('the daemon process did not become node');
      await sleep(5);
    }
    const netns = netnsOf(pid)!;
    sampler = new Sampler(pid, netns, new Set([server.pid!]));
    sampler.start();

    const waitLog = async (what: string, pred: (l: LogLine) => boolean, after = 0, ms = TIMEOUT_MS): Promise<LogLine> => {
      const end = performance.now() + ms;
      for (;;) {
        const l = logLines.find((x) => x.at >= after && pred(x));
        if (l) return l;
        if (exited !== null) throw new Error(`the daemon ended (${exited}) while waiting for: ${what}\n${logLines.slice(-30).map((x) => x.text).join('\n')}`);
        if (performance.now() > end) throw new Error(`timed out waiting for: ${what}`);
        await sleep(20);
      }
    };
    const msgIs = (m: string) => (l: LogLine) => l.json?.msg === m;

    // 1. start-up
    const synced = await waitLog('source synced', msgIs('source synced; reconciling'));
    log(`source synced after ${sec(synced.at - t0)}: ${JSON.stringify({ nodes: synced.json?.nodes, pods: synced.json?.pods })}; RSS ${mb(statusKb(pid, 'VmRSS'))}`);
    const syncedEpoch = Date.parse(String(synced.json?.time));
    const ready = await waitLog('first apply done; ready', msgIs('first apply done; ready'));
    const rssReady = statusKb(pid, 'VmRSS');
    const hwmStartup = statusKb(pid, 'VmHWM');
    const firstApply = logLines.find((l) => l.json?.msg === 'applied plan' && l.at <= ready.at);
    log(`ready after ${sec(ready.at - t0)}; RSS ${mb(rssReady)}, VmHWM ${mb(hwmStartup)}; first apply ${JSON.stringify(firstApply?.json?.byKind ?? null)} in ${firstApply?.json?.durationMs} ms`);
    const startup = sampler.window(0, ready.at);

    // 2. idle
    await sleep(IDLE_S * 1000);
    const rssSteady = statusKb(pid, 'VmRSS');
    const idle = sampler.window(ready.at);
    log(`steady after ${IDLE_S} s idle: RSS ${mb(rssSteady)} (range ${mb(minOf(idle, 'rss'))}-${mb(maxOf(idle, 'rss'))})`);
    const hwmBeforeReset = statusKb(pid, 'VmHWM');

    // 3. the next periodic resync
    const readStatus = async () => JSON.parse(await readFile(path.join(stateDir, 'status.json'), 'utf8')) as { lastReconcile: { kind: string; time: string; durationMs: number; applied: number } | null; counters: { observations: number; driftRepairs: number }; routes: number; peers: unknown[] };
    const st0 = await readStatus();
    writeFileSync(`/proc/${pid}/clear_refs`, '5'); // VmHWM := VmRSS
    const markResync = performance.now();
    const markEpoch = Date.now();
    let st = st0;
    const resyncEnd = markEpoch + 2 * RESYNC_S * 1000 + 600_000;
    for (;;) {
      if (exited !== null) throw new Error(`the daemon ended (${exited}) while waiting for a resync`);
      try { st = await readStatus(); } catch { /* being replaced */ }
      if (st.lastReconcile?.kind === 'resync' && Date.parse(st.lastReconcile.time) > markEpoch && st.counters.observations > st0.counters.observations) break;
      if (Date.now() > resyncEnd) throw new Error('no resync seen');
      await sleep(100);
    }
    const resyncDoneEpoch = Date.parse(st.lastReconcile!.time);
    const k = Math.floor((resyncDoneEpoch - syncedEpoch) / (RESYNC_S * 1000));
    const resyncDueEpoch = syncedEpoch + k * RESYNC_S * 1000;
    await sleep(1000); // status.json is written up to 1 s after the cycle: the tail of the resync is in
    const hwmResync = statusKb(pid, 'VmHWM');
    const rssAfterResync = statusKb(pid, 'VmRSS');
    const resyncSamples = sampler.window(markResync);
    log(`resync done: ${resyncDoneEpoch - resyncDueEpoch} ms after it was due (step ${st.lastReconcile!.durationMs} ms, drift ${st.lastReconcile!.applied}); VmHWM since reset ${mb(hwmResync)}; RSS after ${mb(rssAfterResync)}`);

    // The kernel reads a resync makes, timed on their own (their output sizes too)
    const tr = performance.now();
    const routesJson = await runChecked(ns.run, 'ip', ['-json', 'route', 'show', 'table', String(TABLE)]);
    const routeReadMs = performance.now() - tr;
    const tw = performance.now();
    const dump = await runChecked(ns.run, 'wg', ['show', DEV, 'dump']);
    const dumpMs = performance.now() - tw;

    // 4. pod events through the stand-in
    const hasRoute = async (ip: string) => (await defaultRunner('ip', ['-n', ns.name, 'route', 'show', 'table', String(TABLE), `${ip}/32`])).stdout.trim() !== '';
    const addLat: number[] = [], delLat: number[] = [];
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    const markEvents = performance.now();
    let sampleRoute = '';
    for (let i = 0; i < EVENTS; i++) {
      for (const op of ['add', 'del'] as const) {
        const s = performance.now();
        server.stdin!.write(JSON.stringify({ op, i }) + '\n');
        const r = await nextServerLine() as { ip: string };
        for (;;) {
          const present = await hasRoute(r.ip);
          if (present === (op === 'add')) break;
          if (performance.now() - s > 60_000) throw new Error(`pod ${op} ${r.ip}: route not ${op === 'add' ? 'in' : 'out of'} table ${TABLE} after 60 s`);
          if (exited !== null) throw new Error(`the daemon ended (${exited})`);
        }
        (op === 'add' ? addLat : delLat).push(performance.now() - s);
        if (op === 'add' && i === 0) sampleRoute = (await defaultRunner('ip', ['-n', ns.name, 'route', 'show', 'table', String(TABLE), `${r.ip}/32`])).stdout.trim();
      }
    }
    const hwmEvents = statusKb(pid, 'VmHWM');
    log(`pod events: add ${addLat.map((x) => x.toFixed(0)).join(', ')} ms; delete ${delLat.map((x) => x.toFixed(0)).join(', ')} ms (route: ${sampleRoute})`);

    // Scale proof
    const routeCount = (await runChecked(ns.run, 'sh', ['-c', `ip route show table ${TABLE} | wc -l`])).stdout.trim();
    const devRoutes = (await runChecked(ns.run, 'sh', ['-c', `ip route show table ${TABLE} | grep -c ' dev ${DEV}' || true`])).stdout.trim();
    const peerCount = (await nodeExec(ns.name, 'sh', ['-c', `wg show ${DEV} peers | wc -l`])).stdout.trim();
    const allowed = (await nodeExec(ns.name, 'sh', ['-c', `wg show ${DEV} allowed-ips | tr ' \\t' '\\n\\n' | grep -c /`])).stdout.trim();
    const wgRss = sampler.wgPid !== null ? statusKb(sampler.wgPid, 'VmRSS') : 0;
    const wgHwm = sampler.wgPid !== null ? statusKb(sampler.wgPid, 'VmHWM') : 0;
    sampler.tick();
    const all = sampler.samples;
    const peakGroup = maxOf(all, 'group');
    const peakSample = all.find((s) => s.group === peakGroup)!;
    const peakGroupAt = peakSample.t;
    const phaseOf = (t: number) => (t <= ready.at ? 'start-up' : t < markResync ? 'idle' : t < markEvents ? 'resync' : 'pod events');
    const peakDaemon = Math.max(hwmStartup, hwmBeforeReset, hwmResync, hwmEvents, maxOf(all, 'rss'));

    // Stop: SIGTERM (the dataplane is left in place; the namespace goes in the finally)
    const ts = performance.now();
    daemon.kill('SIGTERM');
    while (exited === null && performance.now() - ts < 30_000) await sleep(50);
    const stopMs = performance.now() - ts;

    const warnErr = logLines.filter((l) => l.json === null ? l.text.trim() !== '' : ['warn', 'error', 'fatal', 40, 50, 60].includes(l.json.level as string));
    const node = process.version;
    rows.push(
      ['cluster', `${NODES.toLocaleString('en')} nodes x ${PODS} pods (AKS, ${(NODES * PODS).toLocaleString('en')} pods, ${info.objects.toLocaleString('en')} API objects), host encryption on, resyncInterval ${RESYNC_S} s`],
      ['daemon', `${CLI_KIND === 'dist' ? 'compiled dist/cmd/main.js' : 'tsx cmd/main.ts'}, Node ${node}, NODE_OPTIONS=${env.NODE_OPTIONS}, --source kube (stand-in API server, own process)`],
      ['scale reached', `${routeCount} routes in table ${TABLE} (${devRoutes} into ${DEV}), ${peerCount} peers, ${allowed} allowed IPs`],
      ['start -> source synced (paged list)', sec(synced.at - t0)],
      ['source synced -> first apply done', `${sec(ready.at - synced.at)} (apply ${firstApply ? `${firstApply.json?.ops} ops in ${sec(Number(firstApply.json?.durationMs))}` : '?'})`],
      ['start -> ready', `**${sec(ready.at - t0)}**`],
      ['RSS at ready', mb(rssReady)],
      ['peak RSS during start-up (VmHWM)', `**${mb(hwmStartup)}** (sampled max ${mb(maxOf(startup, 'rss'))})`],
      [`steady RSS after ${IDLE_S} s idle`, `**${mb(rssSteady)}** (range over the window ${mb(minOf(idle, 'rss'))}-${mb(maxOf(idle, 'rss'))})`],
      ['full resync (observe, full plan, execute)', `${sec(resyncDoneEpoch - resyncDueEpoch)} from due to done (plan+execute step ${st.lastReconcile!.durationMs} ms, drift ${st.lastReconcile!.applied} ops)`],
      ['peak RSS across the resync (VmHWM since reset)', `**${mb(hwmResync)}** (sampled max ${mb(maxOf(resyncSamples.filter((s) => s.t < markEvents), 'rss'))}); RSS 1 s after the resync's status ${mb(rssAfterResync)}`],
      ['kernel reads of a resync, alone', `\`ip -json route show table\` ${routeReadMs.toFixed(0)} ms (${(routesJson.stdout.length / 1048576).toFixed(1)} MB of JSON); \`wg show dump\` ${dumpMs.toFixed(0)} ms (${(dump.stdout.length / 1048576).toFixed(1)} MB)`],
      [`pod created on a remote node -> /32 route in table ${TABLE} (${EVENTS})`, `median ${median(addLat).toFixed(0)} ms, max ${Math.max(...addLat).toFixed(0)} ms`],
      [`pod deleted -> route gone (${EVENTS})`, `median ${median(delLat).toFixed(0)} ms, max ${Math.max(...delLat).toFixed(0)} ms; peak RSS across the events ${mb(hwmEvents)}`],
      ['peak RSS of the daemon, whole run', `**${mb(peakDaemon)}**`],
      ['wireguard-go', `RSS ${mb(wgRss)} at the end, VmHWM ${mb(wgHwm)}`],
      ['peak summed RSS of the namespace\'s processes (daemon + wireguard-go + tools)', `**${mb(peakGroup)}** (${phaseOf(peakGroupAt)}: ${peakSample.who} MiB); vs the DaemonSet's memory limit (${daemonSetMemoryLimitGi()}Gi): ${((peakGroup / (daemonSetMemoryLimitGi() * 1048576)) * 100).toFixed(0)} %`],
      ['SIGTERM -> exit', exited !== null ? `${stopMs.toFixed(0)} ms (${exited})` : 'did not exit in 30 s'],
      ['daemon warn/error log lines', String(warnErr.length)],
    );
    console.log(`\n### wgplane daemon at ${NODES.toLocaleString('en')} x ${PODS}\n`);
    console.log('| figure | measured |');
    console.log('|---|---|');
    for (const [a, b] of rows) console.log(`| ${a} | ${b} |`);
    if (warnErr.length > 0) {
      console.log('\nDaemon warn/error lines (first 20):\n');
      console.log('```');
      for (const l of warnErr.slice(0, 20)) console.log(l.text.slice(0, 600));
      console.log('```');
    }
  } catch (err) {
    log(`FAILED: ${(err as Error).stack ?? String(err)}`);
    if (rows.length === 0) {
      log(`last daemon log lines:\n${logLines.slice(-30).map((l) => l.text).join('\n')}`);
    }
    process.exitCode = 1;
  } finally {
    sampler?.stop();
    if (process.argv.includes('--keep')) {
      writeFileSync(path.join(stateDir, 'daemon.log'), logLines.map((l) => l.text).join('\n') + '\n');
      log(`daemon log kept in ${path.join(stateDir, 'daemon.log')}`);
    }
    if (daemon !== null && daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
    if (server !== null && server.exitCode === null && server.signalCode === null) {
      server.stdin?.end(); // the serve loop ends and closes the stand-in (which removes its kubeconfig dir)
      for (let i = 0; i < 50 && server.exitCode === null; i++) await sleep(100);
      if (server.exitCode === null) server.kill('SIGKILL');
    }
    await lab.dispose();
    if (!process.argv.includes('--keep')) rmSync(stateDir, { recursive: true, force: true });
    if (buildDir !== null) rmSync(buildDir, { recursive: true, force: true });
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

if (process.argv.includes('--serve')) await serve();
else await main();
