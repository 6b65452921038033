// The observed dataplane as JSON (what `wgplane observe` prints and `plan --observed FILE` reads).
// Reading validates every field into branded types; a bad file is an error naming the field.
import * as E from 'fp-ts/lib/Either.js';
import { parseCidr, type Cidr } from '../core/ip.js';
import { parseKey, type WgKey } from '../core/key.js';
import type { FirewallChain, ObservedDataplane, ObservedDevice, ObservedPeer, Route, Rule } from '../core/model.js';

export function observedToJson(o: ObservedDataplane): unknown {
  return {
    version: 1,
    device: o.device,
    staleDevices: o.staleDevices,
    conflicts: o.conflicts,
    underlayMtu: o.underlayMtu,
    peers: [...o.peers.values()],
    routes: [...o.routes.values()],
    rules: o.rules,
    firewall: o.firewall,
    sysctls: Object.fromEntries(o.sysctls),
  };
}

export class ObservedFileError extends Error {
  override readonly name = 'ObservedFileError';
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export function observedFromJson(v: unknown, source: string): ObservedDataplane {
  const fail = (where: string, msg: string): never => {
    throw new ObservedFileError(`${source}: ${where}: ${msg}`);
  };
  const num = (x: unknown, where: string): number => (typeof x === 'number' && Number.isFinite(x) ? x : fail(where, `${JSON.stringify(x)} is not a number`));
  const str = (x: unknown, where: string): string => (typeof x === 'string' ? x : fail(where, `${JSON.stringify(x)} is not a string`));
  const arr = (x: unknown, where: string): unknown[] => (Array.isArray(x) ? x : x === undefined ? [] : fail(where, 'is not a list'));
  const cidr = (x: unknown, where: string): Cidr => {
    const r = parseCidr(str(x, where));
    return E.isRight(r) ? r.right : fail(where, r.left);
  };
  const key = (x: unknown, where: string): WgKey => {
    const r = parseKey(x);
    return E.isRight(r) ? r.right : fail(where, r.left);
  };
  if (!isObj(v)) return fail('(top)', 'not an object');
  let device: ObservedDevice | null = null;
  if (v.device != null) {
    const d = isObj(v.device) ? v.device : fail('device', 'not an object');
    const kind = str(d.linkKind, 'device.linkKind');
    device = {
      name: str(d.name, 'device.name'),
      linkKind: kind === 'wireguard' || kind === 'tun' ? kind : 'other',
      mtu: num(d.mtu, 'device.mtu'),
      up: d.up === true,
      addresses: arr(d.addresses, 'device.addresses').map((a, i) => cidr(a, `device.addresses[${i}]`)),
      listenPort: d.listenPort == null ? null : num(d.listenPort, 'device.listenPort'),
      fwmark: d.fwmark == null ? 0 : num(d.fwmark, 'device.fwmark'),
      publicKey: d.publicKey == null ? null : key(d.publicKey, 'device.publicKey'),
    };
  }
  const peers = new Map<WgKey, ObservedPeer>();
  arr(v.peers, 'peers').forEach((p, i) => {
    const w = `peers[${i}]`;
    if (!isObj(p)) return fail(w, 'not an object');
    const pk = key(p.publicKey, `${w}.publicKey`);
    peers.set(pk, {
      publicKey: pk,
      endpoint: p.endpoint == null ? null : str(p.endpoint, `${w}.endpoint`),
      allowedIPs: arr(p.allowedIPs, `${w}.allowedIPs`).map((a, j) => cidr(a, `${w}.allowedIPs[${j}]`)),
      persistentKeepalive: p.persistentKeepalive == null ? 0 : num(p.persistentKeepalive, `${w}.persistentKeepalive`),
      latestHandshake: p.latestHandshake == null ? 0 : num(p.latestHandshake, `${w}.latestHandshake`),
      rxBytes: p.rxBytes == null ? 0 : num(p.rxBytes, `${w}.rxBytes`),
      txBytes: p.txBytes == null ? 0 : num(p.txBytes, `${w}.txBytes`),
    });
  });
  const routes = new Map<Cidr, Route>();
  arr(v.routes, 'routes').forEach((r, i) => {
    const w = `routes[${i}]`;
    if (!isObj(r)) return fail(w, 'not an object');
    const dest = cidr(r.dest, `${w}.dest`);
    if (r.kind === 'throw') routes.set(dest, { kind: 'throw', dest });
    else if (r.kind === 'device') routes.set(dest, { kind: 'device', dest, device: str(r.device, `${w}.device`) });
    else fail(`${w}.kind`, `${JSON.stringify(r.kind)} is not "device" or "throw"`);
  });
  const rules: Rule[] = arr(v.rules, 'rules').map((r, i) => {
    const w = `rules[${i}]`;
    if (!isObj(r)) return fail(w, 'not an object');
    const family = num(r.family, `${w}.family`);
    if (family !== 4 && family !== 6) fail(`${w}.family`, 'is not 4 or 6');
    return { family: family as 4 | 6, priority: num(r.priority, `${w}.priority`), table: num(r.table, `${w}.table`), fwmark: num(r.fwmark, `${w}.fwmark`), mask: num(r.mask, `${w}.mask`) };
  });
  const firewall = arr(v.firewall, 'firewall').map((c, i) => {
    const w = `firewall[${i}]`;
    if (!isObj(c)) return fail(w, 'not an object');
    const family = num(c.family, `${w}.family`);
    const table = str(c.table, `${w}.table`);
    const hook = str(c.hook, `${w}.hook`);
    if (table !== 'filter' && table !== 'raw') fail(`${w}.table`, 'is not filter or raw');
    if (hook !== 'INPUT' && hook !== 'OUTPUT' && hook !== 'PREROUTING') fail(`${w}.hook`, 'is not INPUT, OUTPUT or PREROUTING');
    const chain: FirewallChain & { hooked: boolean } = {
      family: family === 6 ? 6 : 4,
      table: table as FirewallChain['table'],
      name: str(c.name, `${w}.name`),
      hook: hook as FirewallChain['hook'],
      rules: arr(c.rules, `${w}.rules`).map((x, j) => str(x, `${w}.rules[${j}]`)),
      hooked: c.hooked === true,
    };
    return chain;
  });
  const sysctls = new Map<string, string>();
  if (v.sysctls != null) {
    if (!isObj(v.sysctls)) fail('sysctls', 'not an object');
    for (const [k, x] of Object.entries(v.sysctls as Obj)) sysctls.set(k, str(x, `sysctls.${k}`));
  }
  return {
    device,
    staleDevices: arr(v.staleDevices, 'staleDevices').map((x, i) => str(x, `staleDevices[${i}]`)),
    conflicts: arr(v.conflicts, 'conflicts').map((x, i) => str(x, `conflicts[${i}]`)),
    peers,
    routes,
    rules,
    firewall,
    sysctls,
    underlayMtu: v.underlayMtu == null ? null : num(v.underlayMtu, 'underlayMtu'),
  };
}
