// The kernel observer: reads the live dataplane of the current network namespace (or wherever the Runner
// runs) into the ObservedDataplane model. Reports only what wgplane owns (its device, stale devices with its
// alias, its table, protocol-98 rules, WGPLANE-* chains, managed sysctls) plus conflicts. A failed
// observation throws a clear error, so that nothing is done on a partial picture. The private key printed
// by `wg show dump` is dropped as soon as the line is split; it is never stored, returned or logged.
import * as E from 'fp-ts/lib/Either.js';
import { compareCidr, familyOf, parseCidr, parseIP, type Cidr, type Family } from '../core/ip.js';
import { parseKey, type WgKey } from '../core/key.js';
import {
  OWNERSHIP,
  deviceSysctlKey,
  sysctlPath,
  type FirewallChain,
  type FirewallHook,
  type FirewallTable,
  type ObservedDataplane,
  type ObservedDevice,
  type ObservedPeer,
  type Route,
  type Rule,
} from '../core/model.js';
import { defaultRunner, type Runner } from './run.js';

/** The sysctls wgplane manages (and therefore observes). */
export const MANAGED_SYSCTLS: readonly string[] = ['net.ipv4.conf.all.src_valid_mark'];
/** The sysctls of wgplane's own device it manages (read only while the device exists; core/model.ts
 *  deviceSysctlKey names them). */
export const DEVICE_SYSCTLS: readonly string[] = ['rp_filter'];

export interface ObserveOptions {
  readonly interfaceName: string;
  readonly table: number;
  /** Pod host interfaces (e.g. `azv`), excluded from the underlay MTU. */
  readonly workloadInterfacePrefix?: string | null;
  readonly run?: Runner;
  /** Where sysctls are read (through the runner, so that it sees the runner's namespace). */
  readonly sysctlRoot?: string;
}

export class ObserveError extends Error {
  override readonly name = 'ObserveError';
}

type Json = Record<string, unknown>;

async function runOrThrow(run: Runner, cmd: string, args: readonly string[], ok?: (stderr: string, exitCode: number) => boolean): Promise<string | null> {
  const r = await run(cmd, args);
  if (r.exitCode === 0) return r.stdout;
  if (ok && ok(r.stderr, r.exitCode)) return null;
  throw new ObserveError(`observing the kernel failed: \`${[cmd, ...args].join(' ')}\` exited ${r.exitCode}: ${r.stderr.trim() || r.stdout.trim()}`);
}

function parseJsonArray(text: string | null, what: string): Json[] {
  if (text === null) return [];
  const t = text.trim();
  if (t === '') return [];
  try {
    const v: unknown = JSON.parse(t);
    if (!Array.isArray(v)) throw new Error('not a list');
    return v as Json[];
  } catch (e) {
    throw new ObserveError(`observing the kernel failed: cannot read the JSON of ${what}: ${(e as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------------------
// Links and addresses (one `ip -json -d addr show`: links with details, alias and addresses)

interface LinkFacts {
  readonly name: string;
  readonly alias: string | null;
  readonly kind: 'wireguard' | 'tun' | 'other';
  readonly mtu: number;
  readonly up: boolean;
  readonly loopback: boolean;
  /** Addresses other than link-scope ones, as `address/prefixlen`. */
  readonly addresses: readonly Cidr[];
  readonly hasGlobal: boolean;
}

export function parseLinks(links: readonly Json[]): LinkFacts[] {
  return links.map((l) => {
    const name = String(l.ifname);
    const info = (l.linkinfo as Json | undefined)?.info_kind;
    const kind = info === 'wireguard' ? 'wireguard' : info === 'tun' ? 'tun' : 'other';
    const flags = Array.isArray(l.flags) ? (l.flags as string[]) : [];
    const addrs: Cidr[] = [];
    let hasGlobal = false;
    for (const a of (Array.isArray(l.addr_info) ? l.addr_info : []) as Json[]) {
      if (a.scope === 'global') hasGlobal = true;
      if (a.scope === 'link' || typeof a.local !== 'string') continue;
      const ip = parseIP(a.local);
      const len = Number(a.prefixlen);
      if (E.isLeft(ip) || !Number.isInteger(len)) continue;
      // An interface address keeps its host bits (10.0.0.1/24); a host address is a canonical CIDR.
      const c = parseCidr(`${ip.right}/${len}`);
      addrs.push(E.isRight(c) ? c.right : (`${ip.right}/${len}` as Cidr));
    }
    addrs.sort(compareCidr);
    return {
      name,
      alias: typeof l.ifalias === 'string' ? l.ifalias : null,
      kind,
      mtu: Number(l.mtu),
      up: flags.includes('UP'),
      loopback: flags.includes('LOOPBACK') || l.link_type === 'loopback',
      addresses: addrs,
      hasGlobal,
    };
  });
}

/** Smallest MTU of the up underlay links: not loopback, with a global address, not wgplane's device, not a
 *  tun/WireGuard link, not a workload (pod) interface. */
export function underlayMtuOf(links: readonly LinkFacts[], interfaceName: string, workloadPrefix: string | null | undefined): number | null {
  let min: number | null = null;
  for (const l of links) {
    if (!l.up || l.loopback || !l.hasGlobal || l.name === interfaceName || l.kind !== 'other') continue;
    if (l.alias === OWNERSHIP.linkAlias) continue;
    if (workloadPrefix && l.name.startsWith(workloadPrefix)) continue;
    if (Number.isFinite(l.mtu) && (min === null || l.mtu < min)) min = l.mtu;
  }
  return min;
}

// ---------------------------------------------------------------------------------------------------
// WireGuard (`wg show X dump`)

export interface WgDump {
  readonly listenPort: number | null;
  readonly fwmark: number;
  readonly publicKey: WgKey | null;
  readonly peers: Map<WgKey, ObservedPeer>;
}

function num(s: string | undefined): number {
  const n = Number(s);
  return Number.isFinite(n) ? n : 0;
}

export function parseWgDump(text: string, where: string): WgDump {
  const lines = text.split('\n');
  let listenPort: number | null = null;
  let fwmark = 0;
  let publicKey: WgKey | null = null;
  const peers = new Map<WgKey, ObservedPeer>();
  let first = true;
  for (const line of lines) {
    if (line === '') continue;
    if (first) {
      first = false;
      // private-key public-key listen-port fwmark: the private key (field 0) is skipped, never kept.
      const t1 = line.indexOf('\t');
      const rest = t1 < 0 ? [] : line.slice(t1 + 1).split('\t');
      if (rest.length < 3) throw new ObserveError(`observing the kernel failed: ${where}: unexpected interface line in wg dump`);
      const k = parseKey(rest[0]);
      publicKey = E.isRight(k) ? k.right : null;
      const port = Number(rest[1]);
      listenPort = Number.isInteger(port) && port > 0 ? port : null;
      fwmark = rest[2] === 'off' || rest[2] === undefined ? 0 : Number(rest[2]);
      if (!Number.isFinite(fwmark)) fwmark = 0;
      continue;
    }
    // public-key preshared-key endpoint allowed-ips latest-handshake rx tx keepalive (preshared key dropped)
    const f = line.split('\t');
    if (f.length < 8) throw new ObserveError(`observing the kernel failed: ${where}: unexpected peer line in wg dump`);
    const k = parseKey(f[0]);
    if (E.isLeft(k)) throw new ObserveError(`observing the kernel failed: ${where}: ${k.left}`);
    const allowed: Cidr[] = [];
    if (f[3] !== '(none)' && f[3] !== '') {
      for (const s of f[3]!.split(',')) {
        const c = parseCidr(s);
        if (E.isLeft(c)) throw new ObserveError(`observing the kernel failed: ${where}: peer ${k.right}: ${c.left}`);
        allowed.push(c.right);
      }
    }
    allowed.sort(compareCidr);
    peers.set(k.right, {
      publicKey: k.right,
      endpoint: f[2] === '(none)' ? null : f[2]!,
      allowedIPs: allowed,
      persistentKeepalive: f[7] === 'off' ? 0 : num(f[7]),
      latestHandshake: num(f[4]),
      rxBytes: num(f[5]),
      txBytes: num(f[6]),
    });
  }
  return { listenPort, fwmark, publicKey, peers };
}

// ---------------------------------------------------------------------------------------------------
// Routes and rules

export function parseRoutes(rows: readonly Json[], family: Family, into: Map<Cidr, Route>): void {
  for (const r of rows) {
    let dst = String(r.dst);
    if (dst === 'default') dst = family === 4 ? '0.0.0.0/0' : '::/0';
    else if (!dst.includes('/')) dst = `${dst}/${family === 4 ? 32 : 128}`;
    const c = parseCidr(dst);
    if (E.isLeft(c)) throw new ObserveError(`observing the kernel failed: route in table: ${c.left}`);
    const type = typeof r.type === 'string' ? r.type : 'unicast';
    let route: Route;
    if (type === 'throw') route = { kind: 'throw', dest: c.right };
    else if (type === 'unicast' && typeof r.dev === 'string') route = { kind: 'device', dest: c.right, device: r.dev };
    // Anything else (blackhole, unreachable, a route without device) is reported as a route via a device
    // that cannot be wgplane's, so that the planner replaces or removes it.
    else route = { kind: 'device', dest: c.right, device: typeof r.dev === 'string' ? `${r.dev} (${type})` : `(${type})` };
    into.set(c.right, route);
  }
}

const TABLE_NAMES: Record<string, number> = { local: 255, main: 254, default: 253, unspec: 0 };

export function parseRules(rows: readonly Json[], family: Family): Rule[] {
  const out: Rule[] = [];
  for (const r of rows) {
    if (String(r.protocol) !== String(OWNERSHIP.ruleProtocol)) continue;
    const tableStr = String(r.table);
    const table = TABLE_NAMES[tableStr] ?? Number(tableStr);
    const fwmark = r.fwmark === undefined ? 0 : Number(r.fwmark);
    const mask = r.fwmask === undefined ? (r.fwmark === undefined ? 0 : 0xffffffff) : Number(r.fwmask);
    out.push({ family, priority: Number(r.priority ?? 0), table, fwmark, mask });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Firewall (`iptables-save`)

const HOOKS: readonly string[] = ['INPUT', 'OUTPUT', 'PREROUTING'];

export function parseIptablesSave(text: string, family: Family): (FirewallChain & { readonly hooked: boolean })[] {
  const out: (FirewallChain & { hooked: boolean })[] = [];
  let table: string | null = null;
  let chains = new Map<string, { rules: string[]; hook: FirewallHook | null }>();
  const flush = () => {
    if (table === 'filter' || table === 'raw') {
      for (const [name, c] of chains) {
        out.push({
          family,
          table: table as FirewallTable,
          name,
          hook: c.hook ?? (table === 'raw' ? 'PREROUTING' : 'INPUT'),
          rules: c.rules,
          hooked: c.hook !== null,
        });
      }
    }
    chains = new Map();
  };
  const prefix = OWNERSHIP.chainPrefix;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) { flush(); table = line.slice(1).trim(); continue; }
    if (line.startsWith('COMMIT')) { flush(); table = null; continue; }
    if (line.startsWith(':')) {
      const name = line.slice(1, line.indexOf(' ') < 0 ? undefined : line.indexOf(' '));
      if (name.startsWith(prefix) && !chains.has(name)) chains.set(name, { rules: [], hook: null });
      continue;
    }
    if (!line.startsWith('-A ')) continue;
    const sp = line.indexOf(' ', 3);
    const chain = line.slice(3, sp < 0 ? undefined : sp);
    const rule = sp < 0 ? '' : line.slice(sp + 1);
    if (chain.startsWith(prefix)) {
      let c = chains.get(chain);
      if (!c) chains.set(chain, (c = { rules: [], hook: null }));
      c.rules.push(rule);
    } else if (HOOKS.includes(chain)) {
      const m = /(?:^|\s)-j (\S+)\s*$/.exec(rule);
      if (m && m[1]!.startsWith(prefix)) {
        let c = chains.get(m[1]!);
        if (!c) chains.set(m[1]!, (c = { rules: [], hook: null }));
        if (c.hook === null) c.hook = chain as FirewallHook;
      }
    }
  }
  flush();
  return out;
}

// ---------------------------------------------------------------------------------------------------

const cmpStr = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export async function observe(opts: ObserveOptions): Promise<ObservedDataplane> {
  const run = opts.run ?? defaultRunner;
  const name = opts.interfaceName;
  const table = String(opts.table);
  const sysctlRoot = opts.sysctlRoot ?? '/proc/sys';
  const noTable = (stderr: string) => /FIB table does not exist/.test(stderr);
  // A node without ip6tables: the program is missing (exit 127, as from the shell), so there is no IPv6 firewall.
  const missingTool = (_stderr: string, exitCode: number) => exitCode === 127;

  const [linksText, r4, r6, ru4, ru6, ipt4, ipt6, sysctlText] = await Promise.all([
    runOrThrow(run, 'ip', ['-json', '-d', 'addr', 'show']),
    runOrThrow(run, 'ip', ['-json', '-4', 'route', 'show', 'table', table], noTable),
    runOrThrow(run, 'ip', ['-json', '-6', 'route', 'show', 'table', table], noTable),
    runOrThrow(run, 'ip', ['-json', '-4', 'rule', 'show']),
    runOrThrow(run, 'ip', ['-json', '-6', 'rule', 'show']),
    runOrThrow(run, 'iptables-save', []),
    runOrThrow(run, 'ip6tables-save', [], missingTool),
    runOrThrow(run, 'cat', MANAGED_SYSCTLS.map((k) => sysctlPath(sysctlRoot, k))),
  ]);

  const links = parseLinks(parseJsonArray(linksText, 'ip addr show'));
  let deviceLink: LinkFacts | null = null;
  const conflicts: string[] = [];
  const staleDevices: string[] = [];
  for (const l of links) {
    if (l.name === name) {
      if (l.alias === OWNERSHIP.linkAlias) deviceLink = l;
      else conflicts.push(`a link named ${name} exists (${l.kind}${l.alias ? `, alias ${JSON.stringify(l.alias)}` : ', no alias'}) and is not wgplane's`);
    } else if (l.alias === OWNERSHIP.linkAlias) staleDevices.push(l.name);
  }

  let device: ObservedDevice | null = null;
  let peers = new Map<WgKey, ObservedPeer>();
  const deviceSysctls = new Map<string, string>();
  if (deviceLink) {
    const devKeys = DEVICE_SYSCTLS.map((leaf) => deviceSysctlKey(name, leaf));
    const [r, devText] = await Promise.all([
      run('wg', ['show', name, 'dump']),
      runOrThrow(run, 'cat', devKeys.map((k) => sysctlPath(sysctlRoot, k))),
    ]);
    const devValues = (devText ?? '').split('\n');
    devKeys.forEach((k, i) => deviceSysctls.set(k, (devValues[i] ?? '').trim()));
    let dump: WgDump | null = null;
    if (r.exitCode === 0) dump = parseWgDump(r.stdout, `wg show ${name} dump`);
    else if (deviceLink.kind === 'wireguard') {
      throw new ObserveError(`observing the kernel failed: \`wg show ${name} dump\` exited ${r.exitCode}: ${r.stderr.trim()}`);
    }
    // A tun (or other) link with wgplane's alias whose WireGuard side does not answer (wireguard-go gone):
    // it carries no key, port or peers.
    device = {
      name,
      linkKind: deviceLink.kind,
      mtu: deviceLink.mtu,
      up: deviceLink.up,
      addresses: deviceLink.addresses,
      listenPort: dump?.listenPort ?? null,
      fwmark: dump?.fwmark ?? 0,
      publicKey: dump?.publicKey ?? null,
    };
    if (dump) peers = dump.peers;
  }

  const routes = new Map<Cidr, Route>();
  parseRoutes(parseJsonArray(r4, `ip -4 route show table ${table}`), 4, routes);
  parseRoutes(parseJsonArray(r6, `ip -6 route show table ${table}`), 6, routes);
  const rules = [...parseRules(parseJsonArray(ru4, 'ip -4 rule show'), 4), ...parseRules(parseJsonArray(ru6, 'ip -6 rule show'), 6)];
  const firewall = [...parseIptablesSave(ipt4 ?? '', 4), ...parseIptablesSave(ipt6 ?? '', 6)].sort(
    (a, b) => a.family - b.family || cmpStr(a.table, b.table) || cmpStr(a.name, b.name),
  );

  const values = (sysctlText ?? '').split('\n');
  const sysctls = new Map<string, string>();
  MANAGED_SYSCTLS.forEach((k, i) => sysctls.set(k, (values[i] ?? '').trim()));
  for (const [k, v] of deviceSysctls) sysctls.set(k, v);

  return {
    device,
    staleDevices,
    conflicts,
    peers,
    routes,
    rules,
    firewall,
    sysctls,
    underlayMtu: underlayMtuOf(links, name, opts.workloadInterfacePrefix),
  };
}

/** The family of a CIDR-keyed route (re-exported for callers that split the table per family). */
export const routeFamily = (r: Route): Family => familyOf(r.dest);
