// The executor: runs a plan's operations against the kernel, in order, with as few processes as the work
// allows. A new link is created by its own process (wireguard-go or `ip link add`); its alias and MTU and the
// `ip` operations right after it share one `ip -batch -` (if the alias line fails, the link is deleted again).
// Consecutive operations of one tool are grouped: links, addresses, routes and rules go through one
// `ip -batch -` (IPv6/IPv4 rules and table flushes need `ip -6`/`ip -4`, which batch lines do not accept, so
// they get their own batch when the family changes); peers through `wg addconf X /dev/stdin` and bounded
// `wg set X peer K remove ...`; firewall chains through `iptables-restore --noflush`; sysctls through
// `sysctl -w`. It stops at the first failure and reports the operation and the tool's own message.
// The private key is only ever written to `wg`'s stdin; it never appears in argv, files or messages.
import { familyOf, type Cidr, type Family } from '../core/ip.js';
import type { WgKey } from '../core/key.js';
import { OWNERSHIP, type FirewallChain, type ObservedDataplane, type Operation, type Route, type Rule } from '../core/model.js';
import { KERNEL_TABLES } from '../core/settings.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Backend } from './backend.js';
import { defaultRunner, type RunResult, type Runner } from './run.js';

export type ExecResult =
  | { readonly kind: 'ok'; readonly applied: number }
  | { readonly kind: 'failed'; readonly applied: number; readonly failed: Operation; readonly message: string };

export interface ExecEnv {
  readonly backend: Backend;
  /** The node's private key (base64), read only when a device-configure operation needs it. */
  readonly privateKey: () => Promise<string>;
  readonly run?: Runner;
  /** The kernel state the plan was made against. When given, a peer update that adds allowed IPs takes the
   *  peer's current list from here instead of reading every peer's list back from the kernel. */
  readonly observed?: ObservedDataplane;
  /** Lines per `ip -batch` process (default IP_BATCH_MAX_LINES). */
  readonly ipBatchMaxLines?: number;
}

/** A valid public key with no known private key: removed allowed IPs are parked on it, then it is removed. */
export const THROWAWAY_PEER = 'RkN2PQxYmjI5Vr48wxHV6b2lukZKQ3eO/po2E3AVHHU=' as WgKey;

/** Peers removed (or given an endpoint) per `wg set` process: argv stays bounded whatever the cluster size. */
const PEER_REMOVE_CHUNK = 500;
/** Lines per `ip -batch` process. iproute2's batch mode keeps about 4 KB per command until it exits
 *  (measured with iproute2 6.1: 200,000 route lines peak at 0.8 GB, 555,000 at 2.2 GB), so a large plan
 *  goes through several processes, one after the other: about 80 MB each at most. */
export const IP_BATCH_MAX_LINES = 20_000;
/** Allowed IPs per `AllowedIPs =` line of a config (lines stay short). */
const ALLOWED_IPS_PER_LINE = 64;

const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;

// ---------------------------------------------------------------------------------------------------
// Rendering of single operations

function routeLine(verb: 'replace' | 'del', table: number, r: Route): string {
  if (verb === 'del') return `route del ${r.dest} table ${table}`;
  return r.kind === 'throw' ? `route replace throw ${r.dest} table ${table}` : `route replace ${r.dest} dev ${r.device} scope link table ${table}`;
}

function ruleLine(verb: 'add' | 'del', r: Rule): string {
  return `rule ${verb} not fwmark ${hex(r.fwmark)}/${hex(r.mask)} table ${r.table} priority ${r.priority} protocol ${OWNERSHIP.ruleProtocol}`;
}

/** The `ip -batch` line of an operation (null: not an `ip` operation). Every `ip` operation is one line. */
function ipLine(op: Operation): string | null {
  switch (op.kind) {
    case 'link-set-mtu': return `link set dev ${op.name} mtu ${op.mtu}`;
    case 'link-set-up': return `link set dev ${op.name} up`;
    case 'link-delete': return `link del dev ${op.name}`;
    case 'address-add': return `address add ${op.address} dev ${op.device}`;
    case 'address-delete': return `address del ${op.address} dev ${op.device}`;
    case 'route-add':
    case 'route-replace': return routeLine('replace', op.table, op.route);
    case 'route-delete': return routeLine('del', op.table, op.route);
    case 'table-flush': return `route flush table ${op.table}`;
    case 'rule-add': return ruleLine('add', op.rule);
    case 'rule-delete': return ruleLine('del', op.rule);
    default: return null;
  }
}

/** Family of the addresses an `ip` operation names (null: none, e.g. links). */
function ipFamily(op: Operation): Family | null {
  switch (op.kind) {
    case 'address-add':
    case 'address-delete': return familyOf(op.address);
    case 'route-add':
    case 'route-replace':
    case 'route-delete': return familyOf(op.route.dest);
    case 'table-flush': return op.family;
    case 'rule-add':
    case 'rule-delete': return op.rule.family;
    default: return null;
  }
}

/** Whether an `ip` operation needs `ip -4`/`ip -6` (rules and flushes have no address to infer it from). */
const ipNeedsFlag = (op: Operation): boolean => op.kind === 'table-flush' || op.kind === 'rule-add' || op.kind === 'rule-delete';

function allowedLines(out: string[], ips: readonly Cidr[]): void {
  for (let i = 0; i < ips.length; i += ALLOWED_IPS_PER_LINE) out.push(`AllowedIPs = ${ips.slice(i, i + ALLOWED_IPS_PER_LINE).join(', ')}`);
}

const keepaliveArg = (n: number) => (n > 0 ? String(n) : 'off');

/** What one peer operation needs from wg. A `[Peer]` section of a config REPLACES the peer's allowed IPs
 *  (wireguard-tools 1.0.20210914 has no incremental form; a section without AllowedIPs clears them), so:
 *  - peer-add: a section with the whole list (exactly the desired peer);
 *  - peer-update that adds IPs: a section with the peer's whole new list (current kernel list + added -
 *    removed; the current list is read just before), a replace in one request;
 *  - peer-update that only removes IPs: the removed IPs go to the throw-away peer (an allowed IP belongs to
 *    one peer only), which is removed afterwards: the peer's other IPs are never touched;
 *  - endpoint/keepalive of an update without added IPs: `wg set X peer K endpoint E persistent-keepalive N`
 *    (no allowed-ips argument: the list is kept). */
function peerSection(op: Operation, current: ReadonlyMap<string, readonly Cidr[]>, claimed: ReadonlyMap<string, string>): { conf: string[]; set: string[]; throwaway: boolean } {
  const conf: string[] = [];
  const set: string[] = [];
  if (op.kind === 'peer-add') {
    conf.push('[Peer]', `PublicKey = ${op.peer.publicKey}`);
    if (op.peer.endpoint) conf.push(`Endpoint = ${op.peer.endpoint}`);
    conf.push(`PersistentKeepalive = ${keepaliveArg(op.peer.persistentKeepalive)}`);
    allowedLines(conf, op.peer.allowedIPs);
    return { conf, set, throwaway: false };
  }
  if (op.kind !== 'peer-update') return { conf, set, throwaway: false };
  if (op.addAllowedIPs.length > 0) {
    const removed = new Set<string>(op.removeAllowedIPs);
    const list = new Set<string>();
    for (const ip of current.get(op.publicKey) ?? []) {
      // An IP that another peer of this step takes (a pod IP moving between nodes) must not come back here.
      const taker = claimed.get(ip);
      if (!removed.has(ip) && (taker === undefined || taker === op.publicKey)) list.add(ip);
    }
    for (const ip of op.addAllowedIPs) list.add(ip);
    conf.push('[Peer]', `PublicKey = ${op.publicKey}`);
    if (op.endpoint) conf.push(`Endpoint = ${op.endpoint}`);
    if (op.persistentKeepalive !== undefined) conf.push(`PersistentKeepalive = ${keepaliveArg(op.persistentKeepalive)}`);
    allowedLines(conf, [...list] as Cidr[]);
    return { conf, set, throwaway: false };
  }
  if (op.removeAllowedIPs.length > 0) {
    conf.push('[Peer]', `PublicKey = ${THROWAWAY_PEER}`);
    allowedLines(conf, op.removeAllowedIPs);
  }
  if (op.endpoint || op.persistentKeepalive !== undefined) {
    set.push('peer', op.publicKey);
    if (op.endpoint) set.push('endpoint', op.endpoint);
    if (op.persistentKeepalive !== undefined) set.push('persistent-keepalive', keepaliveArg(op.persistentKeepalive));
  }
  return { conf, set, throwaway: op.removeAllowedIPs.length > 0 };
}

/** iptables-restore text of one firewall-chain operation (one table block, committed on its own). */
function firewallBlock(chain: FirewallChain, remove: boolean, hooked: boolean): string[] {
  if (!chain.name.startsWith(OWNERSHIP.chainPrefix)) throw new Error(`refusing to touch chain ${chain.name}: not a ${OWNERSHIP.chainPrefix} chain`);
  const b = [`*${chain.table}`, `:${chain.name} - [0:0]`, `-F ${chain.name}`];
  if (remove) {
    // `:CHAIN` creates the chain when it is missing, so that removal is idempotent; the jump goes first.
    if (hooked) b.splice(1, 0, `-D ${chain.hook} -j ${chain.name}`);
    b.push(`-X ${chain.name}`);
  } else {
    // `:CHAIN` with --noflush flushes a user chain on the nf_tables backend but not on every version:
    // the explicit -F makes "exactly these rules" hold either way.
    for (const r of chain.rules) b.push(`-A ${chain.name} ${r}`);
    if (!hooked) b.push(`-I ${chain.hook} 1 -j ${chain.name}`);
  }
  b.push('COMMIT');
  return b;
}

// ---------------------------------------------------------------------------------------------------
// Grouping into steps

type IpStep = { readonly kind: 'ip'; flag: Family | null; readonly ops: Operation[]; readonly lines: string[]; readonly lineOp: number[] };

type Step =
  | IpStep
  /** The link is created by its own process; its alias and MTU, and the `ip` operations right after it (link
   *  up, addresses, ...), go through one `ip -batch` whose first line (alias and MTU) belongs to the link. */
  | { readonly kind: 'link-create'; readonly op: Extract<Operation, { kind: 'link-create' }>; readonly ip: IpStep }
  | { readonly kind: 'device-configure'; readonly op: Extract<Operation, { kind: 'device-configure' }> }
  | { readonly kind: 'peer-conf'; readonly device: string; readonly ops: Operation[] }
  | { readonly kind: 'peer-remove'; readonly device: string; readonly ops: Extract<Operation, { kind: 'peer-remove' }>[] }
  | { readonly kind: 'firewall'; readonly family: Family; readonly ops: Extract<Operation, { kind: 'firewall-chain' }>[] }
  | { readonly kind: 'sysctl'; readonly ops: Extract<Operation, { kind: 'sysctl-set' }>[] };

export function groupSteps(ops: readonly Operation[]): Step[] {
  const steps: Step[] = [];
  // Families of the addresses named so far by the open ip batch (bit 1: IPv4, bit 2: IPv6).
  let ipFams = 0;
  const famBit = (f: Family) => (f === 4 ? 1 : 2);
  for (const op of ops) {
    const last = steps[steps.length - 1];
    const line = ipLine(op);
    if (line !== null) {
      const family = ipFamily(op);
      const needsFlag = ipNeedsFlag(op);
      const open = last?.kind === 'ip' ? last : last?.kind === 'link-create' ? last.ip : null;
      let joinable = open !== null;
      if (open !== null) {
        if (needsFlag) joinable = (open.flag === null || open.flag === family) && (ipFams & ~famBit(family!)) === 0;
        else joinable = open.flag === null || family === null || family === open.flag;
      }
      let step: IpStep;
      if (joinable && open !== null) {
        step = open;
        if (needsFlag && open.flag === null) open.flag = family;
      } else {
        step = { kind: 'ip', flag: needsFlag ? family : null, ops: [], lines: [], lineOp: [] };
        steps.push(step);
        ipFams = 0;
      }
      if (family !== null) ipFams |= famBit(family);
      step.ops.push(op);
      step.lines.push(line);
      step.lineOp.push(step.ops.length - 1);
      continue;
    }
    switch (op.kind) {
      case 'link-create':
        steps.push({ kind: 'link-create', op, ip: { kind: 'ip', flag: null, ops: [op], lines: [`link set dev ${op.name} alias ${OWNERSHIP.linkAlias} mtu ${op.mtu}`], lineOp: [0] } });
        ipFams = 0;
        break;
      case 'device-configure': steps.push({ kind: 'device-configure', op }); break;
      case 'peer-add':
      case 'peer-update': {
        const s = last?.kind === 'peer-conf' && last.device === op.device ? last : null;
        if (s) s.ops.push(op); else steps.push({ kind: 'peer-conf', device: op.device, ops: [op] });
        break;
      }
      case 'peer-remove': {
        if (last?.kind === 'peer-remove' && last.device === op.device && last.ops.length < PEER_REMOVE_CHUNK) last.ops.push(op);
        else steps.push({ kind: 'peer-remove', device: op.device, ops: [op] });
        break;
      }
      case 'firewall-chain': {
        if (last?.kind === 'firewall' && last.family === op.chain.family) last.ops.push(op);
        else steps.push({ kind: 'firewall', family: op.chain.family, ops: [op] });
        break;
      }
      case 'sysctl-set': {
        if (last?.kind === 'sysctl') last.ops.push(op);
        else steps.push({ kind: 'sysctl', ops: [op] });
        break;
      }
      default: {
        const never: never = op as never;
        throw new Error(`unknown operation ${JSON.stringify((never as Operation).kind)}`);
      }
    }
  }
  return steps;
}

function stepSize(s: Step): number {
  return s.kind === 'link-create' ? s.ip.ops.length : s.kind === 'device-configure' ? 1 : s.ops.length;
}

// ---------------------------------------------------------------------------------------------------
// Running steps

type StepOutcome = { readonly ok: true } | { readonly ok: false; readonly done: number; readonly message: string };

/** Runs `cmd args` with `input` on a real pipe: Node gives children a socket for stdin, and opening
 *  /dev/stdin on a socket fails (ENXIO), so `wg ... /dev/stdin` needs `cat |` in front. The input never
 *  reaches argv or a file. */
function runPiped(run: Runner, cmd: string, args: readonly string[], input: string): Promise<RunResult> {
  return run('sh', ['-c', 'cat | "$@"', 'sh', cmd, ...args], { input });
}

const msgOf = (r: RunResult) => (r.stderr.trim() || r.stdout.trim() || `exit code ${r.exitCode}`);

async function runIp(run: Runner, step: IpStep, maxLines = IP_BATCH_MAX_LINES): Promise<StepOutcome> {
  const args = step.flag === null ? ['-batch', '-'] : [`-${step.flag}`, '-batch', '-'];
  let from = 0; // first line not yet known to be applied
  while (from < step.lines.length) {
    const to = Math.min(step.lines.length, from + Math.max(1, maxLines));
    const r = await run('ip', args, { input: step.lines.slice(from, to).join('\n') + '\n' });
    if (r.exitCode === 0) { from = to; continue; }
    const m = /Command failed -:(\d+)/.exec(r.stderr);
    const message = r.stderr.split('\n').filter((l) => l.trim() !== '' && !/^Command failed -:\d+/.test(l)).join('; ') || msgOf(r);
    if (!m) return { ok: false, done: step.lineOp[from] ?? 0, message };
    const line = from + Number(m[1]) - 1;
    const opIdx = step.lineOp[line] ?? 0;
    const op = step.ops[opIdx]!;
    // Flushing an IPv6 table that has never held a route: the kernel has no such table; nothing to flush.
    if (op.kind === 'table-flush' && /FIB table does not exist/.test(message)) { from = line + 1; continue; }
    return { ok: false, done: opIdx, message };
  }
  return { ok: true };
}

async function runLinkCreate(run: Runner, backend: Backend, step: Extract<Step, { kind: 'link-create' }>, maxLines: number): Promise<StepOutcome> {
  const op = step.op;
  const created = backend === 'kernel' ? await run('ip', ['link', 'add', 'dev', op.name, 'type', 'wireguard']) : await run('wireguard-go', [op.name]);
  if (created.exitCode !== 0) return { ok: false, done: 0, message: msgOf(created) };
  // One batch: alias and MTU (line 1, the link-create itself), then the ip operations that followed it.
  const marked = await runIp(run, step.ip, maxLines);
  if (marked.ok || marked.done > 0) return marked; // a later line failed: the link is marked, it stays
  // Without the alias the new link would look like someone else's device forever: take it away again.
  await run('ip', ['link', 'del', 'dev', op.name]);
  return marked;
}

async function runDeviceConfigure(run: Runner, env: ExecEnv, op: Extract<Step, { kind: 'device-configure' }>['op']): Promise<StepOutcome> {
  const key = (await env.privateKey()).trim();
  const args = ['set', op.device, 'private-key', '/dev/stdin', 'listen-port', String(op.listenPort), 'fwmark', op.fwmark === 0 ? 'off' : hex(op.fwmark)];
  const r = await runPiped(run, 'wg', args, key + '\n');
  if (r.exitCode === 0) return { ok: true };
  return { ok: false, done: 0, message: key === '' ? msgOf(r) : msgOf(r).split(key).join('(private key)') };
}

/** The allowed IPs of every peer now (`wg show X allowed-ips`), for updates that add IPs. */
async function currentAllowedIPs(run: Runner, device: string): Promise<Map<string, readonly Cidr[]> | string> {
  const r = await run('wg', ['show', device, 'allowed-ips']);
  if (r.exitCode !== 0) return msgOf(r);
  const m = new Map<string, readonly Cidr[]>();
  for (const line of r.stdout.split('\n')) {
    const [key, ips] = line.split('\t');
    if (!key) continue;
    m.set(key, !ips || ips === '(none)' ? [] : (ips.split(' ').filter((x) => x !== '') as Cidr[]));
  }
  return m;
}

/** Runs `wg addconf DEVICE FILE` with the config in a private temporary file (one process; peer configs
 *  hold public keys only, never the private key). */
async function wgAddconf(run: Runner, device: string, conf: string): Promise<RunResult> {
  const dir = await mkdtemp(path.join(tmpdir(), 'wgplane-'));
  try {
    const file = path.join(dir, 'peers.conf');
    await writeFile(file, conf, { mode: 0o600 });
    return await run('wg', ['addconf', device, file]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function runPeerConf(run: Runner, step: Extract<Step, { kind: 'peer-conf' }>, observed: ObservedDataplane | undefined): Promise<StepOutcome> {
  const many = (m: string) => (step.ops.length > 1 ? `${m} (one of ${step.ops.length} peer operations given to wg at once)` : m);
  let current: ReadonlyMap<string, readonly Cidr[]> = new Map();
  const adds = step.ops.filter((o) => o.kind === 'peer-update' && o.addAllowedIPs.length > 0);
  if (adds.length > 0 && observed && observed.device?.name === step.device) {
    const m = new Map<string, readonly Cidr[]>();
    for (const o of adds) m.set((o as { publicKey: string }).publicKey, observed.peers.get((o as { publicKey: WgKey }).publicKey)?.allowedIPs ?? []);
    current = m;
  } else if (adds.length > 0) {
    const c = await currentAllowedIPs(run, step.device);
    if (typeof c === 'string') return { ok: false, done: 0, message: many(c) };
    current = c;
  }
  // Which peer of this step takes an IP: only updates that add IPs (and so rewrite a list) need to know.
  const claimed = new Map<string, string>();
  if (adds.length > 0) for (const op of step.ops) {
    if (op.kind === 'peer-add') for (const ip of op.peer.allowedIPs) claimed.set(ip, op.peer.publicKey);
    else if (op.kind === 'peer-update') for (const ip of op.addAllowedIPs) claimed.set(ip, op.publicKey);
  }
  const conf: string[] = [];
  const sets: string[][] = [];
  let throwaway = false;
  for (const op of step.ops) {
    const s = peerSection(op, current, claimed);
    conf.push(...s.conf);
    if (s.set.length > 0) sets.push(s.set);
    throwaway ||= s.throwaway;
  }
  if (conf.length > 0) {
    const r = await wgAddconf(run, step.device, conf.join('\n') + '\n');
    if (r.exitCode !== 0) return { ok: false, done: 0, message: many(msgOf(r)) };
  }
  if (throwaway) {
    const rm = await run('wg', ['set', step.device, 'peer', THROWAWAY_PEER, 'remove']);
    if (rm.exitCode !== 0) return { ok: false, done: 0, message: many(`removing the throw-away peer: ${msgOf(rm)}`) };
  }
  for (let i = 0; i < sets.length; i += PEER_REMOVE_CHUNK) {
    const r = await run('wg', ['set', step.device, ...sets.slice(i, i + PEER_REMOVE_CHUNK).flat()]);
    if (r.exitCode !== 0) return { ok: false, done: 0, message: many(msgOf(r)) };
  }
  return { ok: true };
}

async function runPeerRemove(run: Runner, step: Extract<Step, { kind: 'peer-remove' }>): Promise<StepOutcome> {
  const args = ['set', step.device];
  for (const op of step.ops) args.push('peer', op.publicKey, 'remove');
  const r = await run('wg', args);
  return r.exitCode === 0 ? { ok: true } : { ok: false, done: 0, message: msgOf(r) };
}

async function runFirewall(run: Runner, step: Extract<Step, { kind: 'firewall' }>): Promise<StepOutcome> {
  const lines: string[] = [];
  const lineOp: number[] = [];
  step.ops.forEach((op, i) => {
    for (const l of firewallBlock(op.chain, op.remove, op.hooked)) { lines.push(l); lineOp.push(i); }
  });
  const cmd = step.family === 6 ? 'ip6tables-restore' : 'iptables-restore';
  const r = await run(cmd, ['--noflush'], { input: lines.join('\n') + '\n' });
  if (r.exitCode === 0) return { ok: true };
  // "iptables-restore: line N failed" (each op is its own block committed on its own).
  const m = /line (\d+) failed/.exec(r.stderr);
  const done = m ? (lineOp[Number(m[1]) - 1] ?? 0) : 0;
  return { ok: false, done, message: msgOf(r) };
}

/** A sysctl key `sysctl -w` cannot misread: no white space, '=' or NUL; as a path (a device's sysctl,
 *  core/model.ts), no empty, '.' or '..' segment. */
function saneSysctlKey(key: string): boolean {
  if (key.length === 0 || /[\s=\0]/.test(key)) return false;
  return !key.includes('/') || key.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..');
}

async function runSysctl(run: Runner, step: Extract<Step, { kind: 'sysctl' }>): Promise<StepOutcome> {
  for (const op of step.ops) {
    if (!saneSysctlKey(op.key) || /[\n\0]/.test(op.value)) return { ok: false, done: step.ops.indexOf(op), message: `refusing sysctl ${JSON.stringify(op.key)}=${JSON.stringify(op.value)}` };
  }
  const r = await run('sysctl', ['-w', ...step.ops.map((o) => `${o.key}=${o.value}`)]);
  if (r.exitCode === 0) return { ok: true };
  const i = step.ops.findIndex((o) => r.stderr.includes(o.key) || r.stderr.includes(o.key.replaceAll('.', '/')));
  return { ok: false, done: Math.max(0, i), message: msgOf(r) };
}

/** The first operation that would write into one of the kernel's own tables (main, local, default, 0),
 *  whatever the plan says: a second guard behind the settings' own check. */
function kernelTableOp(ops: readonly Operation[]): { index: number; message: string } | null {
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    const table = op.kind === 'route-add' || op.kind === 'route-replace' || op.kind === 'route-delete' || op.kind === 'table-flush' ? op.table : op.kind === 'rule-add' ? op.rule.table : null;
    const name = table === null ? undefined : KERNEL_TABLES.get(table);
    if (name !== undefined) return { index: i, message: `refusing to touch the kernel's ${name} table (${table}): nothing was changed` };
  }
  return null;
}

/** Runs the operations in order; stops at the first failure. `applied` counts operations known done. */
export async function execute(ops: readonly Operation[], env: ExecEnv): Promise<ExecResult> {
  const refused = kernelTableOp(ops);
  if (refused !== null) return { kind: 'failed', applied: 0, failed: ops[refused.index]!, message: refused.message };
  const run = env.run ?? defaultRunner;
  const steps = groupSteps(ops);
  let applied = 0;
  for (const step of steps) {
    let out: StepOutcome;
    try {
      switch (step.kind) {
        case 'ip': out = await runIp(run, step, env.ipBatchMaxLines); break;
        case 'link-create': out = await runLinkCreate(run, env.backend, step, env.ipBatchMaxLines ?? IP_BATCH_MAX_LINES); break;
        case 'device-configure': out = await runDeviceConfigure(run, env, step.op); break;
        case 'peer-conf': out = await runPeerConf(run, step, env.observed); break;
        case 'peer-remove': out = await runPeerRemove(run, step); break;
        case 'firewall': out = await runFirewall(run, step); break;
        case 'sysctl': out = await runSysctl(run, step); break;
      }
    } catch (e) {
      out = { ok: false, done: 0, message: (e as Error).message };
    }
    if (!out.ok) {
      const failed = ops[applied + out.done]!;
      return { kind: 'failed', applied: applied + out.done, failed, message: out.message };
    }
    applied += stepSize(step);
  }
  return { kind: 'ok', applied };
}

/** Number of steps of these operations: the processes `execute` starts when nothing fails, except that a link
 *  creation takes two (the creation, then its alias/MTU batch with the ip operations after it). */
export function countSteps(ops: readonly Operation[]): number {
  return groupSteps(ops).length;
}
