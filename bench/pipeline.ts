// Loads the pure pipeline (decode, desired, plan) for the benchmarks. Each piece is loaded
// on its own so that a piece that is not there yet makes its cases say "not available yet" instead of
// the whole benchmark failing (or, worse, a figure being made up).
/** What the benchmarks need of each module; the types come from the modules themselves (the import
 *  is only a type here: at run time each module is loaded on its own by loadPipeline). */
export interface Pipeline {
  readonly decode: typeof import('../core/decode.js').decodeObjects | null;
  readonly desired: typeof import('../core/desired.js').desired | null;
  readonly plan: typeof import('../planner/plan.js').plan | null;
  /** Why a piece is missing, for the report. */
  readonly missing: Readonly<Record<string, string>>;
}

async function load(rel: string): Promise<Record<string, unknown> | string> {
  const spec = new URL(rel, import.meta.url).href;
  try {
    return (await import(spec)) as Record<string, unknown>;
  } catch (e) {
    const err = e as { code?: string; message?: string };
    if (err.code === 'ERR_MODULE_NOT_FOUND') return `${rel.replace('../', '')} not available yet`;
    return `${rel.replace('../', '')} failed to load: ${err.message ?? String(e)}`;
  }
}

export async function loadPipeline(): Promise<Pipeline> {
  const missing: Record<string, string> = {};
  const pick = async <T>(what: string, rel: string, names: readonly string[]): Promise<T | null> => {
    const m = await load(rel);
    if (typeof m === 'string') {
      missing[what] = m;
      return null;
    }
    for (const n of names) if (typeof m[n] === 'function') return m[n] as unknown as T;
    missing[what] = `${rel.replace('../', '')} has no export ${names.join(' / ')} yet`;
    return null;
  };
  const decode = await pick<NonNullable<Pipeline['decode']>>('decode', '../core/decode.js', ['decodeObjects']);
  const desired = await pick<NonNullable<Pipeline['desired']>>('desired', '../core/desired.js', ['desired']);
  const plan = await pick<NonNullable<Pipeline['plan']>>('plan', '../planner/plan.js', ['plan']);
  return { decode, desired, plan, missing };
}
