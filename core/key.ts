// WireGuard public keys: 32 bytes, base64 (44 characters ending in '='). Pure.
import * as E from 'fp-ts/lib/Either.js';

declare const KeyBrand: unique symbol;
/** A WireGuard public key in canonical base64. Private keys never get this type and never enter the core. */
export type WgKey = string & { readonly [KeyBrand]: 'WgKey' };

const B64 = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

export function parseKey(s: unknown): E.Either<string, WgKey> {
  if (typeof s !== 'string') return E.left(`${JSON.stringify(s)} is not a WireGuard key`);
  const t = s.trim();
  if (!B64.test(t)) return E.left(`${JSON.stringify(s.length > 60 ? s.slice(0, 60) + '...' : s)} is not a WireGuard public key (want 32 bytes in base64, 44 characters)`);
  return E.right(t as WgKey);
}

/** Short form for people: first 8 characters. */
export function shortKey(k: WgKey): string {
  return k.slice(0, 8) + '…';
}
