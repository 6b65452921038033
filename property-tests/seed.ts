// Shared fast-check parameters: a fixed seed (override with FC_SEED), printed by fast-check on failure.
import type { Parameters } from 'fast-check';

export const SEED = Number(process.env.FC_SEED ?? 20261126);

export function fcParams<T>(numRuns = Number(process.env.FC_RUNS ?? 200)): Parameters<T> {
  return { seed: SEED, numRuns, verbose: 1 };
}
