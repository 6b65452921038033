// Branded IP addresses and CIDRs, IPv4 and IPv6 in one model. Pure: no I/O.
// Values are canonical strings (IPv4 dotted quad, IPv6 RFC 5952 lower case; CIDRs in network form),
// so they can be used directly as Map keys and compared with ===.
import * as E from 'fp-ts/lib/Either.js';

declare const IPBrand: unique symbol;
declare const CidrBrand: unique symbol;
/** A canonical IPv4 or IPv6 address. */
export type IP = string & { readonly [IPBrand]: 'IP' };
/** A canonical CIDR in network form, e.g. `10.224.0.0/16`, `10.224.0.7/32`, `fd00::/64`. */
export type Cidr = string & { readonly [CidrBrand]: 'Cidr' };
export type Family = 4 | 6;

const V4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function parseV4(s: string): number | null {
  const m = V4.exec(s);
  if (!m) return null;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i]!;
    if (part.length > 1 && part[0] === '0') return null; // no octal-looking octets
    const v = Number(part);
    if (v > 255) return null;
    n = n * 256 + v;
  }
  return n;
}

function formatV4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function parseV6(s: string): bigint | null {
  if (s.length < 2 || s.length > 45) return null;
  let head = s;
  let tailV4: number | null = null;
  const lastColon = s.lastIndexOf(':');
  if (lastColon >= 0 && s.indexOf('.', lastColon) > 0) {
    tailV4 = parseV4(s.slice(lastColon + 1));
    if (tailV4 === null) return null;
    head = s.slice(0, lastColon + 1) + '0:0'; // placeholder groups, replaced below
  }
  const dbl = head.indexOf('::');
  if (dbl !== head.lastIndexOf('::')) return null;
  const parseGroups = (t: string): number[] | null => {
    if (t === '') return [];
    const out: number[] = [];
    for (const g of t.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  let groups: number[];
  if (dbl >= 0) {
    const left = parseGroups(head.slice(0, dbl));
    const right = parseGroups(head.slice(dbl + 2));
    if (!left || !right || left.length + right.length > 7) return null;
    groups = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  } else {
    const all = parseGroups(head);
    if (!all || all.length !== 8) return null;
    groups = all;
  }
  let n = 0n;
  for (const g of groups) n = (n << 16n) | BigInt(g);
  if (tailV4 !== null) n = (n & ~0xffffffffn) | BigInt(tailV4);
  return n;
}

function formatV6(n: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((n >> BigInt(i * 16)) & 0xffffn));
  return formatV6Groups(groups);
}

/** RFC 5952 text of 8 16-bit groups: the longest run (>= 2) of zero groups compressed, the first on ties. */
export function formatV6Groups(groups: readonly number[]): string {
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

const ipCache = new Map<string, IP>();

/** Parses and canonicalizes an IP address. */
export function parseIP(s: string): E.Either<string, IP> {
  if (typeof s !== 'string') return E.left(`${JSON.stringify(s)} is not an IP address`);
  const v4 = parseV4(s);
  if (v4 !== null) return E.right(s as IP); // a valid v4 literal without leading zeros is canonical
  if (s.includes(':')) {
    const cached = ipCache.get(s);
    if (cached) return E.right(cached);
    const v6 = parseV6(s);
    if (v6 !== null) {
      const c = formatV6(v6) as IP;
      if (ipCache.size < 100_000) ipCache.set(s, c);
      return E.right(c);
    }
  }
  return E.left(`${JSON.stringify(s)} is not an IP address`);
}

export function isIP(s: string): s is IP {
  const r = parseIP(s);
  return E.isRight(r) && r.right === s;
}

export function familyOf(ip: IP | Cidr): Family {
  return ip.includes(':') ? 6 : 4;
}

/** Parses a CIDR; host bits must be zero (`10.0.0.1/24` is refused) so that input mistakes surface. */
export function parseCidr(s: string): E.Either<string, Cidr> {
  if (typeof s !== 'string') return E.left(`${JSON.stringify(s)} is not a CIDR`);
  const slash = s.indexOf('/');
  if (slash < 0) return E.left(`${JSON.stringify(s)} is not a CIDR (no prefix length)`);
  const addr = s.slice(0, slash);
  const lenStr = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenStr)) return E.left(`${JSON.stringify(s)} is not a CIDR (bad prefix length)`);
  const len = Number(lenStr);
  const v4 = parseV4(addr);
  if (v4 !== null) {
    if (len > 32) return E.left(`${JSON.stringify(s)} is not a CIDR (prefix length over 32)`);
    const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
    if (((v4 & ~mask) >>> 0) !== 0) return E.left(`${JSON.stringify(s)} has host bits set (network is ${formatV4((v4 & mask) >>> 0)}/${len})`);
    return E.right(`${addr}/${len}` as Cidr);
  }
  const v6 = addr.includes(':') ? parseV6(addr) : null;
  if (v6 !== null) {
    if (len > 128) return E.left(`${JSON.stringify(s)} is not a CIDR (prefix length over 128)`);
    const hostMask = len === 128 ? 0n : (1n << BigInt(128 - len)) - 1n;
    if ((v6 & hostMask) !== 0n) return E.left(`${JSON.stringify(s)} has host bits set (network is ${formatV6(v6 & ~hostMask)}/${len})`);
    return E.right(`${formatV6(v6)}/${len}` as Cidr);
  }
  return E.left(`${JSON.stringify(s)} is not a CIDR`);
}

/** The host route of an address: /32 or /128. */
export function hostCidr(ip: IP): Cidr {
  return (ip.includes(':') ? `${ip}/128` : `${ip}/32`) as Cidr;
}

export function cidrPrefixLength(c: Cidr): number {
  return Number(c.slice(c.indexOf('/') + 1));
}

export function cidrAddress(c: Cidr): IP {
  return c.slice(0, c.indexOf('/')) as IP;
}

export function isHostCidr(c: Cidr): boolean {
  return cidrPrefixLength(c) === (c.includes(':') ? 128 : 32);
}

/** Does `cidr` contain the address `ip`? Families must match. */
export function cidrContains(cidr: Cidr, ip: IP): boolean {
  const fam = familyOf(cidr);
  if (fam !== familyOf(ip)) return false;
  const len = cidrPrefixLength(cidr);
  const net = cidrAddress(cidr);
  if (fam === 4) {
    const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
    return ((parseV4(ip)! & mask) >>> 0) === parseV4(net);
  }
  const hostMask = len === 128 ? 0n : (1n << BigInt(128 - len)) - 1n;
  return (parseV6(ip)! & ~hostMask) === parseV6(net);
}

/** Does CIDR `outer` contain all of CIDR `inner`? */
export function cidrCovers(outer: Cidr, inner: Cidr): boolean {
  return familyOf(outer) === familyOf(inner) && cidrPrefixLength(outer) <= cidrPrefixLength(inner) && cidrContains(outer, cidrAddress(inner));
}

/** Total order on CIDRs: IPv4 before IPv6, then by address, then by prefix length. Used for stable output. */
export function compareCidr(a: Cidr, b: Cidr): number {
  if (a === b) return 0;
  const fa = familyOf(a), fb = familyOf(b);
  if (fa !== fb) return fa - fb;
  if (fa === 4) {
    const na = parseV4(cidrAddress(a))!, nb = parseV4(cidrAddress(b))!;
    if (na !== nb) return na - nb;
  } else {
    const na = parseV6(cidrAddress(a))!, nb = parseV6(cidrAddress(b))!;
    if (na !== nb) return na < nb ? -1 : 1;
  }
  return cidrPrefixLength(a) - cidrPrefixLength(b);
}

/** The network address of a CIDR as a host CIDR (used as the tunnel address in pod CIDR mode, as flannel does). */
export function networkHostCidr(c: Cidr): Cidr {
  return hostCidr(cidrAddress(c));
}

/** The IPv4 address written in s[0, end) as a number, or -1 if that is not four dot-separated runs of
 *  digits. For text already validated and canonical (IP and Cidr values): a hot-path parser, one pass,
 *  no allocation (the bulk build, the route table and the planner's sort keys use it). */
export function ipv4TextNumber(s: string, end: number = s.length): number {
  let n = 0, oct = 0, dots = 0;
  for (let i = 0; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) { n = n * 256 + oct; oct = 0; dots++; } else if (c >= 48 && c <= 57) oct = oct * 10 + (c - 48);
    else return -1;
  }
  return dots === 3 ? n * 256 + oct : -1;
}

/** IPv4 address <-> 32-bit number, for generators and fast set arithmetic. */
export function ipv4FromNumber(n: number): IP {
  return formatV4(n >>> 0) as IP;
}
export function ipv4ToNumber(ip: IP): number {
  return parseV4(ip)!;
}
