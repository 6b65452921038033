// Rendering of plans: text for people (grouped by object, +/-/~, a reason on each line, a summary) and a
// stable JSON document for machines. Pure. Reasons are built here, only for what is shown.
import { shortKey } from '../core/key.js';
import type { NodeName, Operation, Origin, Plan, Problem, Route, Rule, ThrowCause } from '../core/model.js';

export interface PlanSummary {
  readonly add: number;
  readonly change: number;
  readonly remove: number;
}

type Sign = '+' | '-' | '~';

function signOf(op: Operation): Sign {
  switch (op.kind) {
    case 'link-create': case 'address-add': case 'peer-add': case 'route-add': case 'rule-add':
      return '+';
    case 'link-delete': case 'address-delete': case 'peer-remove': case 'route-delete': case 'rule-delete': case 'table-flush':
      return '-';
    case 'firewall-chain':
      return op.remove ? '-' : op.hooked ? '~' : '+';
    default:
      return '~';
  }
}

/** Counts of what a plan adds, changes and removes: one per operation, except that a table-flush counts
 *  the routes it removes. */
export function summarize(plan: Plan): PlanSummary {
  let add = 0, change = 0, remove = 0;
  for (const op of plan.ops) {
    const s = signOf(op);
    if (s === '+') add++;
    else if (s === '~') change++;
    else remove += op.kind === 'table-flush' ? op.routes : 1;
  }
  return { add, change, remove };
}

// ---------------------------------------------------------------------------------------------------
// Reasons

export function originText(o: Origin): string {
  switch (o.kind) {
    case 'pod': return `pod ${o.pod} on node ${o.node}`;
    case 'pod-cidr': return `pod CIDR of node ${o.node}`;
    case 'node-ip': return `address of node ${o.node}`;
    case 'tunnel-address': return `tunnel address of node ${o.node}`;
    case 'peer': return `node ${o.node}`;
    case 'setting': return o.detail === undefined ? `setting ${o.setting}` : o.detail;
    case 'unowned': return o.detail;
    case 'conflict': return `${o.ip} claimed by nodes ${o.nodes.join(', ')}`;
  }
}

function causeText(cause: ThrowCause, node: NodeName | null): string {
  const n = node === null ? 'its node' : `node ${node}`;
  switch (cause) {
    case 'local': return 'on this node';
    case 'no-key': return `${n} has no key`;
    case 'shared-key': return `${n} shares its key with another node`;
    case 'no-endpoint': return `${n} has no usable address`;
    case 'disabled': return `${n} has WireGuard disabled`;
    case 'conflict': return 'claimed by more than one node';
    case 'no-handshake': return `${n} has not completed a WireGuard handshake yet (host traffic stays in clear until it does)`;
  }
}

/** The reason of an operation, for people. */
export function reasonOf(op: Operation): string {
  const base = originText(op.origin);
  if ((op.kind === 'route-add' || op.kind === 'route-replace') && op.route.kind === 'throw' && op.cause !== undefined) {
    const o = op.origin;
    const node = 'node' in o ? o.node : null;
    const nodeCause = op.cause !== 'local' && op.cause !== 'conflict';
    return nodeCause && o.kind !== 'pod' && node !== null ? `${causeText(op.cause, node)} (throw)` : `${base}, ${causeText(op.cause, node)} (throw)`;
  }
  return base;
}

export function problemText(p: Problem): string {
  switch (p.kind) {
    case 'no-key': return `node ${p.node} has published no key: its destinations stay in clear`;
    case 'shared-key': return `nodes ${p.nodes.join(', ')} share the key ${shortKey(p.key)}: none of them is peered`;
    case 'no-endpoint': return `node ${p.node} has no usable address for an endpoint: its destinations stay in clear`;
    case 'ip-conflict': return `${p.ip} is claimed by ${p.claimants.join(', ')}: it is routed to none of them`;
    case 'pod-cidr-conflict': return `pod CIDR ${p.cidr} is claimed by nodes ${p.nodes.join(', ')}`;
    case 'pod-without-node': return `pod ${p.pod} has IPs but no node`;
    case 'mtu-unknown': return `the underlay MTU is unknown: assumed ${p.assumed}`;
  }
}

// ---------------------------------------------------------------------------------------------------
// Text

type Group = 'Sysctls' | 'Device' | 'Peers' | 'Routes' | 'Rule' | 'Firewall';
const GROUPS: readonly Group[] = ['Sysctls', 'Device', 'Peers', 'Routes', 'Rule', 'Firewall'];

function groupOf(op: Operation): Group {
  switch (op.kind) {
    case 'sysctl-set': return 'Sysctls';
    case 'peer-add': case 'peer-update': case 'peer-remove': return 'Peers';
    case 'route-add': case 'route-replace': case 'route-delete': case 'table-flush': return 'Routes';
    case 'rule-add': case 'rule-delete': return 'Rule';
    case 'firewall-chain': return 'Firewall';
    default: return 'Device';
  }
}

const hex = (n: number): string => `0x${n.toString(16)}`;
const fam = (f: 4 | 6): string => (f === 4 ? 'IPv4' : 'IPv6');
const routeText = (r: Route): string => (r.kind === 'device' ? `dev ${r.device}` : 'throw');
const ruleText = (r: Rule): string => `${fam(r.family)} not fwmark ${hex(r.fwmark)}/${hex(r.mask)} lookup ${r.table} priority ${r.priority}`;

function ipList(ips: readonly string[], max = 4): string {
  return ips.length <= max ? ips.join(', ') : `${ips.slice(0, max).join(', ')}, ... (${ips.length} in all)`;
}

function movesText(op: Operation): string {
  const moves = op.kind === 'peer-add' || op.kind === 'peer-update' ? op.moves : undefined;
  if (moves === undefined || moves.length === 0) return '';
  const from = [...new Set(moves.map((m) => shortKey(m.from)))];
  return ` (${moves.length} moving from peer ${from.join(', ')})`;
}

function describe(op: Operation): string {
  switch (op.kind) {
    case 'sysctl-set': return `${op.key} = ${op.value} (now ${op.from ?? 'unset'})`;
    case 'link-create': return `link ${op.name} (wireguard, mtu ${op.mtu})`;
    case 'link-set-mtu': return `link ${op.name} mtu ${op.from} -> ${op.mtu}`;
    case 'link-set-up': return `link ${op.name} up`;
    case 'link-delete': return `link ${op.name}${op.peers > 0 ? ` and its ${op.peers} peers` : ''}`;
    case 'address-add': case 'address-delete': return `address ${op.address} on ${op.device}`;
    case 'device-configure':
      return `configure ${op.device}: listen port ${op.listenPort}, fwmark ${hex(op.fwmark)}, key ${op.publicKey === null ? 'from the key store' : shortKey(op.publicKey)}`;
    case 'peer-add': {
      const p = op.peer;
      return `peer ${shortKey(p.publicKey)} node ${p.node}, endpoint ${p.endpoint ?? 'none'}, allowed IPs ${ipList(p.allowedIPs)}${p.persistentKeepalive > 0 ? `, keepalive ${p.persistentKeepalive}s` : ''}${movesText(op)}`;
    }
    case 'peer-update': {
      const parts: string[] = [];
      if (op.endpoint !== undefined) parts.push(`endpoint -> ${op.endpoint ?? 'none'}`);
      if (op.persistentKeepalive !== undefined) parts.push(`keepalive -> ${op.persistentKeepalive}s`);
      if (op.addAllowedIPs.length > 0) parts.push(`+ allowed IPs ${ipList(op.addAllowedIPs)}`);
      if (op.removeAllowedIPs.length > 0) parts.push(`- allowed IPs ${ipList(op.removeAllowedIPs)}`);
      return `peer ${shortKey(op.publicKey)}${op.node === null ? '' : ` node ${op.node}`}: ${parts.join('; ')}${movesText(op)}`;
    }
    case 'peer-remove': return `peer ${shortKey(op.publicKey)}${op.node === null ? '' : ` node ${op.node}`}`;
    case 'route-add': case 'route-delete': return `route ${op.route.dest} ${routeText(op.route)} (table ${op.table})`;
    case 'route-replace': return `route ${op.route.dest} ${routeText(op.from)} -> ${routeText(op.route)} (table ${op.table})`;
    case 'table-flush': return `all ${op.routes} ${fam(op.family)} routes of table ${op.table}`;
    case 'rule-add': case 'rule-delete': return `rule ${ruleText(op.rule)}`;
    case 'firewall-chain': {
      const c = op.chain;
      if (op.remove) return `chain ${fam(c.family)} ${c.table} ${c.name}${op.hooked ? ` and its jump from ${c.hook}` : ''}`;
      return `chain ${fam(c.family)} ${c.table} ${c.name} (${c.rules.length} ${c.rules.length === 1 ? 'rule' : 'rules'})${op.hooked ? '' : `, jump from ${c.hook}`}`;
    }
  }
}

/** The plan as text for people. `maxPerGroup` limits the lines of each group (default: all). */
export function renderPlanText(plan: Plan, opts: { header?: string; maxPerGroup?: number } = {}): string {
  const out: string[] = [];
  out.push(opts.header ?? `wgplane plan for node ${plan.node}`);
  if (plan.problems.length > 0) {
    out.push('', 'Warnings:');
    for (const p of plan.problems) out.push(`  ! ${problemText(p)}`);
  }
  if (plan.blocked.length > 0) {
    out.push('', 'Blocked (nothing will be done):');
    for (const b of plan.blocked) out.push(`  x ${b}`);
    out.push('', 'Plan: blocked.');
    return out.join('\n') + '\n';
  }
  const byGroup = new Map<Group, Operation[]>();
  for (const op of plan.ops) {
    const g = groupOf(op);
    let list = byGroup.get(g);
    if (list === undefined) byGroup.set(g, (list = []));
    list.push(op);
  }
  const max = opts.maxPerGroup ?? Infinity;
  for (const g of GROUPS) {
    const list = byGroup.get(g);
    if (list === undefined) continue;
    out.push('', `${g}:`);
    const shown = list.slice(0, Math.max(0, Math.min(max, list.length)));
    const texts = shown.map((op) => `${signOf(op)} ${describe(op)}`);
    const width = texts.reduce((w, t) => Math.max(w, t.length), 0);
    shown.forEach((op, i) => out.push(`  ${texts[i]!.padEnd(width)}  # ${reasonOf(op)}`));
    if (list.length > shown.length) out.push(`  ... and ${list.length - shown.length} more`);
  }
  out.push('');
  if (plan.ops.length === 0) out.push('No changes. The dataplane matches the desired state.');
  else {
    const s = summarize(plan);
    out.push(`Plan: ${s.add} to add, ${s.change} to change, ${s.remove} to remove.`);
  }
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------------
// JSON

/**
 * The plan as a JSON document (stable shape, version 1):
 *
 * ```
 * {
 *   "version": 1,
 *   "node": "aks-nodepool1-12345678-vmss000000",
 *   "summary": { "add": 3, "change": 1, "remove": 0 },      // as summarize()
 *   "problems": [ { "kind": "no-key", "node": "...", "message": "node ... has published no key: ..." } ],
 *   "blocked": [ "a link named wireguard.wgp exists and is not wgplane's" ],
 *   "operations": [                                           // in execution order
 *     { "op": "sysctl-set", "key": "net.ipv4.conf.all.src_valid_mark", "value": "1", "from": "0", ... },
 *     { "op": "link-create", "name": "wireguard.wgp", "mtu": 1340, ... },
 *     { "op": "peer-add", "device": "wireguard.wgp", "publicKey": "base64...", "node": "...",
 *       "endpoint": "10.224.0.5:51820", "allowedIPs": ["10.224.0.33/32"], "persistentKeepalive": 0,
 *       "moves": [ { "allowedIP": "10.224.0.33/32", "from": "base64..." } ], ... },
 *     { "op": "route-add", "table": 51820, "dest": "10.224.0.33/32", "type": "device",
 *       "device": "wireguard.wgp", "cause": "no-key" (throw routes only), ... },
 *     { "op": "route-replace", ..., "from": { "type": "throw" } },
 *     ...
 *   ]
 * }
 * ```
 * Every operation carries `"op"` (the operation kind), its fields, `"reason"` (text for people) and
 * `"origin"` (the structured reason: `{ "kind": "pod", "pod": "ns/name", "node": "..." }`, ...).
 * Route fields are flattened to `dest`, `type` ("device" | "throw") and `device`. Peer operations carry
 * `publicKey`, `node`, `endpoint`, `allowedIPs`, `persistentKeepalive` (peer-add), or `addAllowedIPs` /
 * `removeAllowedIPs` and the changed `endpoint` / `persistentKeepalive` (peer-update). Rules carry
 * `family`, `priority`, `table`, `fwmark`, `mask`; firewall-chain carries `family`, `table`, `name`,
 * `hook`, `rules`, `remove`, `hooked`. Keys are public keys; a plan holds no secret.
 */
export function renderPlanJson(plan: Plan): object {
  return {
    version: 1,
    node: plan.node,
    summary: summarize(plan),
    problems: plan.problems.map((p) => ({ ...p, message: problemText(p) })),
    blocked: [...plan.blocked],
    operations: plan.ops.map(opJson),
  };
}

const routeJson = (r: Route): object => (r.kind === 'device' ? { type: 'device', device: r.device } : { type: 'throw' });

function opJson(op: Operation): object {
  const reason = reasonOf(op);
  switch (op.kind) {
    case 'route-add': case 'route-delete':
      return { op: op.kind, table: op.table, dest: op.route.dest, ...routeJson(op.route), ...('cause' in op && op.cause !== undefined ? { cause: op.cause } : {}), reason, origin: op.origin };
    case 'route-replace':
      return { op: op.kind, table: op.table, dest: op.route.dest, ...routeJson(op.route), from: routeJson(op.from), ...(op.cause !== undefined ? { cause: op.cause } : {}), reason, origin: op.origin };
    case 'peer-add': {
      const p = op.peer;
      return {
        op: op.kind, device: op.device, publicKey: p.publicKey, node: p.node, endpoint: p.endpoint, allowedIPs: [...p.allowedIPs],
        persistentKeepalive: p.persistentKeepalive, ...(op.moves !== undefined ? { moves: op.moves } : {}), reason, origin: op.origin,
      };
    }
    case 'rule-add': case 'rule-delete':
      return { op: op.kind, ...op.rule, reason, origin: op.origin };
    case 'firewall-chain':
      return { op: op.kind, ...op.chain, rules: [...op.chain.rules], remove: op.remove, hooked: op.hooked, reason, origin: op.origin };
    default: {
      const { kind, origin, ...fields } = op;
      return { op: kind, ...fields, reason, origin };
    }
  }
}

