// Settings: defaults and decoding of the ConfigMap kube-system/wgplane (data: all strings). Pure.
//
// Every key has a default (DEFAULT_SETTINGS); a key that is not a setting is an error, so that a typo
// never silently falls back to a default. Values are trimmed of surrounding white space (YAML block
// scalars end in a newline). Accepted values:
//   enabled                  true | false
//   hostEncryption           auto | true | false
//   routeSource              auto | podCIDR | workloadIPs
//   mtu                      auto | integer 1280..65535
//   listenPort               integer 1..65535
//   interfaceName            a Linux interface name: 1..15 characters, no '/', ':' or white space, not . or ..
//   routingTable             integer 1..4294967295 except 253, 254, 255 (default, main, local)
//   rulePriority             integer 1..32765
//   fwmark                   decimal or 0x-hex, non-zero, below 2^32
//   persistentKeepalive      integer seconds 0..65535 (0 = off)
//   workloadInterfacePrefix  auto | an interface name prefix of 1..14 characters; a trailing '+'
//                            (iptables wildcard style, `azv+`) is accepted and stripped: stored as `azv`
//   resyncInterval           seconds: an integer, or a duration `90s`, `2m`, `1h`; 5 seconds .. 24 hours
import * as E from 'fp-ts/lib/Either.js';
import type { HostEncryptionSetting, RouteSourceSetting, Settings } from './model.js';
import { type DecodeError, at, joinPath, showValue } from './errors.js';

export const DEFAULT_SETTINGS: Settings = {
  enabled: false,
  hostEncryption: 'auto',
  routeSource: 'auto',
  mtu: 'auto',
  listenPort: 51820,
  interfaceName: 'wireguard.wgp',
  routingTable: 51820,
  rulePriority: 99,
  fwmark: 0x100000,
  persistentKeepalive: 0,
  workloadInterfacePrefix: 'auto',
  resyncInterval: 90,
};

/** The setting keys, in documentation order. */
export const SETTING_KEYS: readonly (keyof Settings)[] = Object.keys(DEFAULT_SETTINGS) as (keyof Settings)[];

type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly message: string };
const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const bad = (message: string): Parsed<never> => ({ ok: false, message });

const DECIMAL = /^[0-9]+$/;

function parseIntIn(s: string, lo: number, hi: number, what: string): Parsed<number> {
  if (!DECIMAL.test(s) || s.length > 12) return bad(`${showValue(s)} is not ${what}: want an integer ${lo}..${hi}`);
  const n = Number(s);
  if (n < lo || n > hi) return bad(`${showValue(s)} is out of range: want an integer ${lo}..${hi}`);
  return ok(n);
}

function oneOf<T extends string>(s: string, values: readonly T[]): Parsed<T> {
  return (values as readonly string[]).includes(s) ? ok(s as T) : bad(`${showValue(s)} is not one of ${values.join(', ')}`);
}

/** Linux dev_valid_name: 1..15 bytes, not "." or "..", no '/', ':' or white space. */
export function ifnameProblem(s: string, max = 15): string | null {
  if (s.length === 0) return 'is empty';
  if (Buffer.byteLength(s, 'utf8') > max) return `is longer than ${max} characters`;
  if (s === '.' || s === '..') return 'is not a valid interface name';
  if (/[/:\s\0]/.test(s)) return "contains '/', ':' or white space";
  return null;
}

/** The kernel's own routing tables: never wgplane's (the executor refuses them too). */
export const KERNEL_TABLES: ReadonlyMap<number, string> = new Map([[0, 'unspec'], [253, 'default'], [254, 'main'], [255, 'local']]);

const PARSERS: { readonly [K in keyof Settings]: (s: string) => Parsed<Settings[K]> } = {
  enabled: (s) => (s === 'true' ? ok(true) : s === 'false' ? ok(false) : bad(`${showValue(s)} is not one of true, false`)),
  hostEncryption: (s) => oneOf<HostEncryptionSetting>(s, ['auto', 'true', 'false']),
  routeSource: (s) => oneOf<RouteSourceSetting>(s, ['auto', 'podCIDR', 'workloadIPs']),
  mtu: (s) => (s === 'auto' ? ok('auto' as const) : parseIntIn(s, 1280, 65535, 'auto or an MTU')),
  listenPort: (s) => parseIntIn(s, 1, 65535, 'a port'),
  interfaceName: (s) => {
    const p = ifnameProblem(s);
    return p === null ? ok(s) : bad(`${showValue(s)} ${p}: want a Linux interface name`);
  },
  routingTable: (s) => {
    const r = parseIntIn(s, 1, 4294967295, 'a routing table number');
    const kernel = r.ok ? KERNEL_TABLES.get(r.value) : undefined;
    if (kernel !== undefined) return bad(`${showValue(s)} is the kernel's ${kernel} table: choose another table`);
    return r;
  },
  rulePriority: (s) => parseIntIn(s, 1, 32765, 'a rule priority'),
  fwmark: (s) => {
    let n: number;
    if (/^0[xX][0-9a-fA-F]{1,8}$/.test(s)) n = parseInt(s.slice(2), 16);
    else if (DECIMAL.test(s) && s.length <= 10) n = Number(s);
    else return bad(`${showValue(s)} is not a firewall mark: want a decimal or 0x-hex number`);
    if (n === 0) return bad(`${showValue(s)} is zero: the firewall mark must have at least one bit set`);
    if (n >= 2 ** 32) return bad(`${showValue(s)} does not fit in 32 bits`);
    return ok(n);
  },
  persistentKeepalive: (s) => parseIntIn(s, 0, 65535, 'a keepalive interval in seconds'),
  workloadInterfacePrefix: (s) => {
    if (s === 'auto') return ok('auto');
    const stripped = s.endsWith('+') ? s.slice(0, -1) : s;
    const p = ifnameProblem(stripped, 14);
    if (p !== null) return bad(`${showValue(s)} ${p}: want auto or an interface name prefix such as azv`);
    if (stripped.includes('+')) return bad(`${showValue(s)} contains '+' before its end: want auto or an interface name prefix such as azv`);
    return ok(stripped);
  },
  resyncInterval: (s) => {
    const m = /^([0-9]{1,6})(s|m|h)?$/.exec(s);
    if (!m) return bad(`${showValue(s)} is not a duration: want seconds (90) or 90s, 2m, 1h`);
    const n = Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1);
    if (n < 5 || n > 86400) return bad(`${showValue(s)} is out of range: want 5 seconds to 24 hours`);
    return ok(n);
  },
};

const KNOWN = new Set<string>(SETTING_KEYS);

/** A whole number in [lo, hi] from text, or why not (`what` names it: "a port"); for command-line flags. */
export function parseIntInRange(s: string, lo: number, hi: number, what: string): E.Either<string, number> {
  const r = parseIntIn(s.trim(), lo, hi, what);
  return r.ok ? E.right(r.value) : E.left(r.message);
}

/** One setting's value from text (as in the ConfigMap), or why it is refused (for command-line flags that
 *  stand for a setting: they obey the same rules). */
export function parseSetting<K extends keyof Settings>(key: K, value: string): E.Either<string, Settings[K]> {
  const r = (PARSERS[key] as (s: string) => Parsed<Settings[K]>)(value.trim());
  return r.ok ? E.right(r.value) : E.left(r.message);
}

/** Decodes the ConfigMap data found at the path `dataPath` of `where` (see errors.ts `at`). */
export function decodeSettingsAt(data: unknown, where: string, dataPath: string): E.Either<readonly DecodeError[], Settings> {
  if (data === undefined || data === null) return E.right(DEFAULT_SETTINGS);
  if (typeof data !== 'object' || Array.isArray(data)) {
    return E.left([{ where: at(where, dataPath), message: `expected a map of settings (strings), got ${showValue(data)}` }]);
  }
  const errors: DecodeError[] = [];
  const out: { -readonly [K in keyof Settings]: Settings[K] } = { ...DEFAULT_SETTINGS };
  const rec = data as Record<string, unknown>;
  for (const key of Object.keys(rec)) {
    const v = rec[key];
    const w = at(where, joinPath(dataPath, key));
    if (!KNOWN.has(key)) {
      errors.push({ where: w, message: `unknown setting ${JSON.stringify(key)} (known: ${SETTING_KEYS.join(', ')})` });
      continue;
    }
    if (typeof v !== 'string') {
      const hint = typeof v === 'boolean' || typeof v === 'number' ? ` (ConfigMap values are strings: quote it, "${String(v)}")` : '';
      errors.push({ where: w, message: `expected a string, got ${showValue(v)}${hint}` });
      continue;
    }
    const k = key as keyof Settings;
    const r = (PARSERS[k] as (s: string) => Parsed<unknown>)(v.trim());
    if (r.ok) (out as Record<string, unknown>)[k] = r.value;
    else errors.push({ where: w, message: r.message });
  }
  return errors.length > 0 ? E.left(errors) : E.right(out);
}

/** Decodes the `data` of the ConfigMap kube-system/wgplane; errors name `<where>.data.<key>`.
 *  Absent data (null/undefined) gives the defaults. */
export function decodeSettings(data: unknown, where: string): E.Either<readonly DecodeError[], Settings> {
  return decodeSettingsAt(data, '', `${where}.data`);
}
