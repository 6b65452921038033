// Decode errors: where the bad input is and what is wrong with it. Pure data, shared by the decoders
// (core/decode.ts, core/settings.ts) and the manifest reader (adapters/manifest.ts).

export interface DecodeError {
  /** The place of the bad input: source, document and field path, e.g.
   *  `cluster.yaml: document 1: items[4].status.podIPs[0].ip`. */
  readonly where: string;
  readonly message: string;
}

/** `<where>: <message>`. */
export function formatDecodeError(e: DecodeError): string {
  return `${e.where}: ${e.message}`;
}

/** Decoders stop collecting after this many errors (and then say so in one more line). */
export const MAX_DECODE_ERRORS = 50;

/** A short, safe rendering of an input value for an error message. Never throws (cycles, bigint, ...). */
export function showValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  switch (typeof v) {
    case 'string': {
      const s = v.length > 60 ? v.slice(0, 60) + '...' : v;
      return JSON.stringify(s);
    }
    case 'number':
    case 'boolean':
      return String(v);
    case 'bigint':
      return `${v}n`;
    case 'object':
      return 'an object';
    default:
      return `a ${typeof v}`;
  }
}

/** Appends a field name to a path: `a.b`, `a["x.y/z"]`, or `b` at the root. */
export function joinPath(path: string, key: string): string {
  if (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key)) return path === '' ? key : `${path}.${key}`;
  return `${path}[${JSON.stringify(key)}]`;
}

/** Appends an array index to a path: `items[4]`. */
export function indexPath(path: string, i: number): string {
  return `${path}[${i}]`;
}

/** `where: path`, or `where` alone when the path is empty. */
export function at(where: string, path: string): string {
  if (path === '') return where;
  if (where === '') return path;
  return `${where}: ${path}`;
}
