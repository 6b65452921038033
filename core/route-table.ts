// The desired routes of an index: a Map<Cidr, DesiredRoute> in behaviour (get, set, delete, has, size,
// iteration), shaped for the cold build of a large cluster (550k pod IPs on AKS, each its own /32).
//
// A hash map of 550k string keys costs about 200 ms to fill and a hash entry per route. The bulk build
// walks its IPv4 /32 destinations in address order anyway, so those go into sorted arrays instead (the
// "base": address numbers in a Uint32Array, keys, values): appending is cheap, a lookup is a binary search
// on the address (about 20 steps at 550k), and iterating yields them in address order, which is the
// kernel's order and what the planner's lockstep walk wants. Every other destination (IPv6, pod CIDR
// blocks, IPv4 /32s set after the build) sits in an ordinary Map (`other`).
//
// Invariants: base addresses are strictly ascending; a key is in the base or in `other`, never both; a
// base key whose route is deleted keeps its slot (value undefined) and is reused if set again, so the base
// never moves or grows after the build and the daemon's changes are a Map update or a slot write.
// Iteration: the base in address order, then `other` in insertion order. Pure data structure: no I/O.
import { ipv4TextNumber, type Cidr } from './ip.js';
import type { DesiredRoute } from './model.js';

/** The IPv4 address of an IPv4 /32 key as a number, or -1 for any other key. Keys are canonical. */
export function v4HostNumber(k: string): number {
  const end = k.length - 3;
  if (end < 7 || k.charCodeAt(end) !== 47 || k.charCodeAt(end + 1) !== 51 || k.charCodeAt(end + 2) !== 50) return -1;
  return ipv4TextNumber(k, end);
}

export class RouteTable implements Map<Cidr, DesiredRoute> {
  private bNums: Uint32Array = new Uint32Array(0);
  private bKeys: Cidr[] = [];
  private bVals: (DesiredRoute | undefined)[] = [];
  /** Slots in use (sealed or being appended). */
  private n = 0;
  /** Defined values in the base. */
  private live = 0;
  private readonly other = new Map<Cidr, DesiredRoute>();

  /** Makes room for `extra` more appended base entries (the bulk build knows its count up front). */
  reserve(extra: number): void {
    if (this.n + extra <= this.bNums.length) return;
    const next = new Uint32Array(Math.max(this.n + extra, this.bNums.length * 2, 16));
    next.set(this.bNums.subarray(0, this.n));
    this.bNums = next;
  }

  /** Appends an IPv4 /32 route in address order (bulk build): `num` is the address of `key`. An address
   *  not above every base address (not in order) is stored as `set` stores it: correct, not as compact. */
  append(num: number, key: Cidr, value: DesiredRoute): void {
    if (this.n > 0 && !(num > this.bNums[this.n - 1]!)) { this.set(key, value); return; }
    if (this.n === this.bNums.length) this.reserve(1);
    this.bNums[this.n] = num;
    this.bKeys.push(key);
    this.bVals.push(value);
    this.n++;
    this.live++;
  }

  /** Moves `key` from `other` into the base (it must be the next address in order); no-op if absent. */
  appendFromOther(num: number, key: Cidr): void {
    const v = this.other.get(key);
    if (v === undefined) return;
    this.other.delete(key);
    this.append(num, key, v);
  }

  /** Base slot of key, or -1. */
  private slot(key: string): number {
    if (this.n === 0) return -1;
    const num = v4HostNumber(key);
    if (num < 0) return -1;
    const nums = this.bNums;
    let lo = 0, hi = this.n - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const x = nums[mid]!;
      if (x < num) lo = mid + 1;
      else if (x > num) hi = mid - 1;
      else return mid;
    }
    return -1;
  }

  get size(): number {
    return this.live + this.other.size;
  }

  get(key: Cidr): DesiredRoute | undefined {
    if (this.other.size > 0) {
      const v = this.other.get(key);
      if (v !== undefined) return v;
    }
    const i = this.slot(key);
    return i < 0 ? undefined : this.bVals[i];
  }

  has(key: Cidr): boolean {
    return this.get(key) !== undefined;
  }

  set(key: Cidr, value: DesiredRoute): this {
    const i = this.slot(key);
    if (i < 0) this.other.set(key, value);
    else {
      if (this.bVals[i] === undefined) this.live++;
      this.bVals[i] = value;
    }
    return this;
  }

  delete(key: Cidr): boolean {
    if (this.other.delete(key)) return true;
    const i = this.slot(key);
    if (i < 0 || this.bVals[i] === undefined) return false;
    this.bVals[i] = undefined;
    this.live--;
    return true;
  }

  clear(): void {
    this.bNums = new Uint32Array(0);
    this.bKeys = [];
    this.bVals = [];
    this.n = 0;
    this.live = 0;
    this.other.clear();
  }

  forEach(fn: (value: DesiredRoute, key: Cidr, map: Map<Cidr, DesiredRoute>) => void, thisArg?: unknown): void {
    const keys = this.bKeys, vals = this.bVals;
    for (let i = 0; i < this.n; i++) {
      const v = vals[i];
      if (v !== undefined) fn.call(thisArg, v, keys[i]!, this);
    }
    this.other.forEach((v, k) => fn.call(thisArg, v, k, this));
  }

  *entries(): MapIterator<[Cidr, DesiredRoute]> {
    const keys = this.bKeys, vals = this.bVals;
    for (let i = 0; i < this.n; i++) {
      const v = vals[i];
      if (v !== undefined) yield [keys[i]!, v];
    }
    yield* this.other.entries();
  }

  *keys(): MapIterator<Cidr> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): MapIterator<DesiredRoute> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): MapIterator<[Cidr, DesiredRoute]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return 'RouteTable';
  }
}
