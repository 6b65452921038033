// Small builders for planner tests: keys, desired states, and a converged observed state via the kernel model.
import * as E from 'fp-ts/lib/Either.js';
import type { Cidr, Family } from '../core/ip.js';
import { compareCidr, familyOf } from '../core/ip.js';
import type { WgKey } from '../core/key.js';
import type { DesiredEnabled, DesiredPeer, DesiredRoute, FirewallChain, NodeName, Rule } from '../core/model.js';
import { EMPTY_OBSERVED } from '../core/model.js';
import type { ModelState } from '../planner/kernel-model.js';
import { applyPlan } from '../planner/kernel-model.js';
import { plan } from '../planner/plan.js';

export const DEV = 'wg0';
export const TABLE = 51820;

/** A syntactically valid public key, distinct per number. */
export function key(i: number): WgKey {
  return `${'k'.repeat(38)}${String(i).padStart(4, '0')}A=` as WgKey;
}
export const node = (s: string): NodeName => s as NodeName;
export const c = (s: string): Cidr => s as Cidr;

export function peer(n: string, k: number, ips: readonly string[], endpoint: string | null = `192.168.0.${k}:51820`, keepalive = 0): DesiredPeer {
  return { node: node(n), publicKey: key(k), endpoint, allowedIPs: [...ips].map(c).sort(compareCidr), persistentKeepalive: keepalive };
}

export function rule(family: Family, priority = 99): Rule {
  return { family, priority, table: TABLE, fwmark: 0x100000, mask: 0x100000 };
}

export const INPUT_CHAIN: FirewallChain = { family: 4, table: 'filter', name: 'WGPLANE-INPUT', hook: 'INPUT', rules: ['-p udp -m udp --dport 51820 -j ACCEPT'] };

/** A desired state whose device routes are exactly the peers' allowed IPs, plus the given throws. */
export function desired(peers: readonly DesiredPeer[], throws: readonly string[] = [], over: Partial<DesiredEnabled> = {}): DesiredEnabled {
  const routes = new Map<Cidr, DesiredRoute>();
  for (const p of peers) for (const ip of p.allowedIPs) routes.set(ip, { route: { kind: 'device', dest: ip, device: DEV }, origin: { kind: 'pod', pod: `default/p-${ip}` as never, node: p.node } });
  for (const t of throws) routes.set(c(t), { route: { kind: 'throw', dest: c(t) }, origin: { kind: 'node-ip', node: node('self') }, cause: 'local' });
  const families = new Set<Family>([...routes.keys()].map(familyOf));
  return {
    kind: 'enabled',
    node: node('self'),
    facts: { aks: false, routeSource: 'workloadIPs', hostEncryption: false, workloadInterfacePrefix: null, families: [...families] },
    device: { name: DEV, mtu: 1420, listenPort: 51820, fwmark: 0x100000, addresses: [c('10.0.0.1/32')], publicKey: null, mtuReason: 'host MTU 1500 - 80' },
    peers: new Map(peers.map((p) => [p.publicKey, p])),
    table: TABLE,
    routes,
    rules: [...families].sort().map((f) => rule(f)),
    firewall: [INPUT_CHAIN],
    sysctls: new Map([['net.ipv4.conf.all.src_valid_mark', '1']]),
    problems: [],
    ...over,
  };
}

/** The kernel state after planning `d` from an empty node and applying the plan. */
export function converged(d: DesiredEnabled, from: ModelState = EMPTY_OBSERVED): ModelState {
  const r = applyPlan(from, plan(d, from).ops);
  if (E.isLeft(r)) throw new Error(`fixture did not apply: op ${r.left.index}: ${r.left.message}`);
  return r.right;
}
