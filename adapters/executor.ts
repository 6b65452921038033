// The executor: runs a plan's operations against the kernel, in order, with as few processes as the work
// allows. Consecutive operations of one tool are grouped: links, addresses, routes and rules go through one
// `ip -batch -` (IPv6/IPv4 rules and table flushes need `ip -6`/`ip -4`, which batch lines do not accept, so
// they get their own batch when the family changes); peers through `wg addconf X /dev/stdin` and bounded
// `wg set X peer K remove ...`; firewall chains through `iptables-restore --noflush`; sysctls through
// `sysctl -w`. It stops at the first failure and reports the operation and the tool's own message.
// The private key is only ever written to `wg`'s stdin; it never appears in argv, files or messages.
import { familyOf, type Cidr, type Family } from '../core/ip.js';
import type { WgKey } from '../core/key.js';
import { OWNERSHIP, type FirewallChain, type Operation, type Route, type Rule } from '../core/model.js';
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
}

/** A valid public key with no known private key: removed allowed IPs are parked on it, then it is removed. */
export const THROWAWAY_PEER = 'RkN2PQxYmjI5Vr48wxHV6b2lukZKQ3eO/po2E3AVHHU=' as WgKey;

/** Peers removed per `wg set` process (argv stays bounded whatever the cluster size). */
const PEER_REMOVE_CHUNK = 500;
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

/** `ip -batch` lines of an operation, and the family flag it needs (null: any batch of its family). */
interface IpLines {
  readonly lines: readonly string[];
  /** Family of the addresses the lines name (null: none, e.g. links). */
  readonly family: Family | null;
  /** Whether the lines need `ip -4`/`ip -6` (rules and flushes have no address to infer it from). */
  readonly needsFlag: boolean;
}

function ipLines(op: Operation): IpLines | null {
  switch (op.kind) {
    case 'link-set-mtu': return { lines: [`link set dev ${op.name} mtu ${op.mtu}`], family: null, needsFlag: false };
    case 'link-set-up': return { lines: [`link set dev ${op.name} up`], family: null, needsFlag: false };
    case 'link-delete': return { lines: [`link del dev ${op.name}`], family: null, needsFlag: false };
    case 'address-add': return { lines: [`address add ${op.address} dev ${op.device}`], family: familyOf(op.address), needsFlag: false };
    case 'address-delete': return { lines: [`address del ${op.address} dev ${op.device}`], family: familyOf(op.address), needsFlag: false };
    case 'route-add':
    case 'route-replace': return { lines: [routeLine('replace', op.table, op.route)], family: familyOf(op.route.dest), needsFlag: false };
    case 'route-delete': return { lines: [routeLine('del', op.table, op.route)], family: familyOf(op.route.dest), needsFlag: false };
    case 'table-flush': return { lines: [`route flush table ${op.table}`], family: op.family, needsFlag: true };
    case 'rule-add': return { lines: [ruleLine('add', op.rule)], family: op.rule.family, needsFlag: true };
    case 'rule-delete': return { lines: [ruleLine('del', op.rule)], family: op.rule.family, needsFlag: true };
    default: return null;
  }
}

function peerConf(op: Operation): string {
  const out: string[] = [];
  const allowed = (key: string, ips: readonly Cidr[]) => {
    out.push('[Peer]', `PublicKey = ${key}`);
    for (let i = 0; i < ips.length; i += ALLOWED_IPS_PER_LINE) out.push(`AllowedIPs = ${ips.slice(i, i + ALLOWED_IPS_PER_LINE).join(', ')}`);
  };
  if (op.kind === 'peer-add') {
    out.push('[Peer]', `PublicKey = ${op.peer.publicKey}`);
    if (op.peer.endpoint) out.push(`Endpoint = ${op.peer.endpoint}`);
    out.push(`PersistentKeepalive = ${op.peer.persistentKeepalive > 0 ? op.peer.persistentKeepalive : 'off'}`);
    for (let i = 0; i < op.peer.allowedIPs.length; i += ALLOWED_IPS_PER_LINE) {
      out.push(`AllowedIPs = ${op.peer.allowedIPs.slice(i, i + ALLOWED_IPS_PER_LINE).join(', ')}`);
    }
  } else if (op.kind === 'peer-update') {
    out.push('[Peer]', `PublicKey = ${op.publicKey}`);
    if (op.endpoint) out.push(`Endpoint = ${op.endpoint}`);
    if (op.persistentKeepalive !== undefined) out.push(`PersistentKeepalive = ${op.persistentKeepalive > 0 ? op.persistentKeepalive : 'off'}`);
    for (let i = 0; i < op.addAllowedIPs.length; i += ALLOWED_IPS_PER_LINE) {
      out.push(`AllowedIPs = ${op.addAllowedIPs.slice(i, i + ALLOWED_IPS_PER_LINE).join(', ')}`);
    }
    // An allowed IP belongs to one peer only: giving it to the throw-away peer takes it from this one
    // without touching the peer's other IPs (`wg set ... allowed-ips` would replace the whole list).
    if (op.removeAllowedIPs.length > 0) allowed(THROWAWAY_PEER, op.removeAllowedIPs);
  }
  return out.join('\n') + '\n';
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

type Step =
  | { readonly kind: 'ip'; readonly flag: Family | null; readonly ops: Operation[]; readonly lines: string[]; readonly lineOp: number[] }
  | { readonly kind: 'link-create'; readonly op: Extract<Operation, { kind: 'link-create' }> }
  | { readonly kind: 'device-configure'; readonly op: Extract<Operation, { kind: 'device-configure' }> }
  | { readonly kind: 'peer-conf'; readonly device: string; readonly ops: Operation[]; throwaway: boolean }
  | { readonly kind: 'peer-remove'; readonly device: string; readonly ops: Extract<Operation, { kind: 'peer-remove' }>[] }
  | { readonly kind: 'firewall'; readonly family: Family; readonly ops: Extract<Operation, { kind: 'firewall-chain' }>[] }
  | { readonly kind: 'sysctl'; readonly ops: Extract<Operation, { kind: 'sysctl-set' }>[] };

export function groupSteps(ops: readonly Operation[]): Step[] {
  const steps: Step[] = [];
  let ipFams = new Set<Family>();
  for (const op of ops) {
    const last = steps[steps.length - 1];
    const il = ipLines(op);
    if (il) {
      let joinable = last?.kind === 'ip';
      if (joinable && last?.kind === 'ip') {
        if (il.needsFlag) joinable = (last.flag === null || last.flag === il.family) && [...ipFams].every((f) => f === il.family);
        else joinable = last.flag === null || il.family === null || il.family === last.flag;
      }
      let step: Extract<Step, { kind: 'ip' }>;
      if (joinable && last?.kind === 'ip') {
        step = il.needsFlag && last.flag === null ? { ...last, flag: il.family } : last;
        if (step !== last) steps[steps.length - 1] = step;
      } else {
        step = { kind: 'ip', flag: il.needsFlag ? il.family : null, ops: [], lines: [], lineOp: [] };
        steps.push(step);
        ipFams = new Set();
      }
      if (il.family !== null) ipFams.add(il.family);
      step.ops.push(op);
      for (const l of il.lines) { step.lines.push(l); step.lineOp.push(step.ops.length - 1); }
      continue;
    }
    switch (op.kind) {
      case 'link-create': steps.push({ kind: 'link-create', op }); break;
      case 'device-configure': steps.push({ kind: 'device-configure', op }); break;
      case 'peer-add':
      case 'peer-update': {
        const s = last?.kind === 'peer-conf' && last.device === op.device ? last : null;
        const throwaway = op.kind === 'peer-update' && op.removeAllowedIPs.length > 0;
        if (s) { s.ops.push(op); s.throwaway ||= throwaway; } else steps.push({ kind: 'peer-conf', device: op.device, ops: [op], throwaway });
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
  return s.kind === 'link-create' || s.kind === 'device-configure' ? 1 : s.ops.length;
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

async function runIp(run: Runner, step: Extract<Step, { kind: 'ip' }>): Promise<StepOutcome> {
  let from = 0; // first line not yet known to be applied
  for (;;) {
    const args = step.flag === null ? ['-batch', '-'] : [`-${step.flag}`, '-batch', '-'];
    const r = await run('ip', args, { input: step.lines.slice(from).join('\n') + '\n' });
    if (r.exitCode === 0) return { ok: true };
    const m = /Command failed -:(\d+)/.exec(r.stderr);
    const message = r.stderr.split('\n').filter((l) => l.trim() !== '' && !/^Command failed -:\d+/.test(l)).join('; ') || msgOf(r);
    if (!m) return { ok: false, done: step.lineOp[from] ?? 0, message };
    const line = from + Number(m[1]) - 1;
    const opIdx = step.lineOp[line] ?? 0;
    const op = step.ops[opIdx]!;
    // Flushing an IPv6 table that has never held a route: the kernel has no such table; nothing to flush.
    if (op.kind === 'table-flush' && /FIB table does not exist/.test(message) && line + 1 < step.lines.length) { from = line + 1; continue; }
    if (op.kind === 'table-flush' && /FIB table does not exist/.test(message)) return { ok: true };
    return { ok: false, done: opIdx, message };
  }
}

async function runLinkCreate(run: Runner, backend: Backend, op: Extract<Step, { kind: 'link-create' }>['op']): Promise<StepOutcome> {
  const created = backend === 'kernel' ? await run('ip', ['link', 'add', 'dev', op.name, 'type', 'wireguard']) : await run('wireguard-go', [op.name]);
  if (created.exitCode !== 0) return { ok: false, done: 0, message: msgOf(created) };
  const marked = await run('ip', ['link', 'set', 'dev', op.name, 'alias', OWNERSHIP.linkAlias, 'mtu', String(op.mtu)]);
  if (marked.exitCode === 0) return { ok: true };
  // Without the alias the new link would look like someone else's device forever: take it away again.
  await run('ip', ['link', 'del', 'dev', op.name]);
  return { ok: false, done: 0, message: msgOf(marked) };
}

async function runDeviceConfigure(run: Runner, env: ExecEnv, op: Extract<Step, { kind: 'device-configure' }>['op']): Promise<StepOutcome> {
  const key = (await env.privateKey()).trim();
  const args = ['set', op.device, 'private-key', '/dev/stdin', 'listen-port', String(op.listenPort), 'fwmark', op.fwmark === 0 ? 'off' : hex(op.fwmark)];
  const r = await runPiped(run, 'wg', args, key + '\n');
  if (r.exitCode === 0) return { ok: true };
  return { ok: false, done: 0, message: key === '' ? msgOf(r) : msgOf(r).split(key).join('(private key)') };
}

async function runPeerConf(run: Runner, step: Extract<Step, { kind: 'peer-conf' }>): Promise<StepOutcome> {
  const text = step.ops.map(peerConf).join('');
  const r = await runPiped(run, 'wg', ['addconf', step.device, '/dev/stdin'], text);
  if (r.exitCode !== 0) {
    const message = step.ops.length > 1 ? `${msgOf(r)} (one of ${step.ops.length} peer operations given to wg addconf at once)` : msgOf(r);
    return { ok: false, done: 0, message };
  }
  if (step.throwaway) {
    const rm = await run('wg', ['set', step.device, 'peer', THROWAWAY_PEER, 'remove']);
    if (rm.exitCode !== 0) return { ok: false, done: step.ops.length - 1, message: `removing the throw-away peer: ${msgOf(rm)}` };
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

async function runSysctl(run: Runner, step: Extract<Step, { kind: 'sysctl' }>): Promise<StepOutcome> {
  for (const op of step.ops) {
    if (!/^[A-Za-z0-9_.-]+$/.test(op.key) || /[\n\0]/.test(op.value)) return { ok: false, done: step.ops.indexOf(op), message: `refusing sysctl ${JSON.stringify(op.key)}=${JSON.stringify(op.value)}` };
  }
  const r = await run('sysctl', ['-w', ...step.ops.map((o) => `${o.key}=${o.value}`)]);
  if (r.exitCode === 0) return { ok: true };
  const i = step.ops.findIndex((o) => r.stderr.includes(o.key) || r.stderr.includes(o.key.replaceAll('.', '/')));
  return { ok: false, done: Math.max(0, i), message: msgOf(r) };
}

/** Runs the operations in order; stops at the first failure. `applied` counts operations known done. */
export async function execute(ops: readonly Operation[], env: ExecEnv): Promise<ExecResult> {
  const run = env.run ?? defaultRunner;
  const steps = groupSteps(ops);
  let applied = 0;
  for (const step of steps) {
    let out: StepOutcome;
    try {
      switch (step.kind) {
        case 'ip': out = await runIp(run, step); break;
        case 'link-create': out = await runLinkCreate(run, env.backend, step.op); break;
        case 'device-configure': out = await runDeviceConfigure(run, env, step.op); break;
        case 'peer-conf': out = await runPeerConf(run, step); break;
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

/** Number of processes `execute` would start for these operations when nothing fails (for tests/benchmarks). */
export function countSteps(ops: readonly Operation[]): number {
  return groupSteps(ops).length;
}
