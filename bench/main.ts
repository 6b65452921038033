// `npm run bench`: runs every case of bench/cases.ts in a fresh child process (peak RSS is that case's)
// and prints a Markdown table for README. Options: --quick (baseline and the 1,000 x 30 cases only),
// --only TEXT (cases whose name contains TEXT), --runs N (each case N times, each in a fresh process;
// time = median, peak RSS = the largest; default 3), --json PATH (also write the raw results).
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { allCases, type CaseResult, type CaseSpec } from './cases.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const repo = join(here, '..');

function runNode(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [...args], { cwd: repo, maxBuffer: 64 * 1024 * 1024, timeout: 10 * 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`.trim()));
      else resolve(stdout);
    });
  });
}

async function runCase(spec: CaseSpec): Promise<CaseResult> {
  try {
    const out = await runNode(['--expose-gc', '--import', 'tsx', join(here, 'case.ts'), JSON.stringify(spec)]);
    const line = out.split('\n').find((l) => l.startsWith('RESULT '));
    if (!line) return { id: spec.id, status: 'error', note: `no result from the child: ${out.slice(0, 300)}` };
    return JSON.parse(line.slice('RESULT '.length)) as CaseResult;
  } catch (e) {
    return { id: spec.id, status: 'error', note: `child failed: ${(e as Error).message.split('\n').slice(0, 3).join(' ')}` };
  }
}

function target(spec: CaseSpec): string {
  const t: string[] = [];
  if (spec.maxMs !== undefined) t.push(`< ${spec.maxMs.toLocaleString('en')} ms`);
  if (spec.maxRssMB !== undefined) t.push(`< ${spec.maxRssMB === 1024 ? '1 GB' : `${spec.maxRssMB} MB`}`);
  if (spec.mode === 'programmed') t.push('no ops');
  return t.length > 0 ? t.join(', ') : '—';
}

function verdict(spec: CaseSpec, r: CaseResult): string {
  if (r.status === 'unavailable') return `N/A: ${r.note ?? 'not available yet'}`;
  if (r.status === 'error') return `FAIL: ${r.note ?? 'error'}`;
  if (spec.maxMs === undefined && spec.maxRssMB === undefined) return spec.mode === 'programmed' ? 'PASS (no ops)' : '—';
  const miss: string[] = [];
  if (spec.maxMs !== undefined && (r.timeMs ?? Infinity) >= spec.maxMs) miss.push('time');
  if (spec.maxRssMB !== undefined && (r.peakRssMB ?? Infinity) >= spec.maxRssMB) miss.push('memory');
  return miss.length === 0 ? 'PASS' : `MISS (${miss.join(', ')})`;
}

const fmt = (x: number | undefined, unavailable: boolean): string =>
  unavailable ? 'not available yet' : x === undefined ? '—' : x.toLocaleString('en', { maximumFractionDigits: x < 10 ? 1 : 0 });

/** Several runs of one case: the first failure if any; else the run with the median time, carrying the
 *  largest peak RSS of all runs. */
function combine(all: readonly CaseResult[]): CaseResult {
  const bad = all.find((r) => r.status !== 'ok');
  if (bad) return bad;
  const sorted = [...all].sort((a, b) => (a.timeMs ?? 0) - (b.timeMs ?? 0));
  const median = sorted[Math.floor((sorted.length - 1) / 2)]!;
  const peaks = all.flatMap((r) => (r.peakRssMB !== undefined ? [r.peakRssMB] : []));
  return peaks.length > 0 ? { ...median, peakRssMB: Math.max(...peaks) } : median;
}

function timeCell(r: CaseResult, times: readonly number[]): string {
  const t = fmt(r.timeMs, r.status === 'unavailable');
  if (times.length < 2 || r.status !== 'ok') return t;
  return `${t} (${fmt(Math.min(...times), false)}–${fmt(Math.max(...times), false)})`;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const quick = argv.includes('--quick');
  const onlyAt = argv.indexOf('--only');
  const only = onlyAt >= 0 ? argv[onlyAt + 1] : undefined;
  const jsonAt = argv.indexOf('--json');
  const jsonPath = jsonAt >= 0 ? argv[jsonAt + 1] : undefined;
  const runsAt = argv.indexOf('--runs');
  const runs = runsAt >= 0 ? Math.max(1, Number(argv[runsAt + 1]) || 1) : 3;

  let cases = allCases();
  if (quick) cases = cases.filter((c) => c.mode === 'baseline' || (c.nodes === 1000 && c.podsPerNode === 30));
  if (only) cases = cases.filter((c) => c.mode === 'baseline' || c.id.includes(only));

  const dir = mkdtempSync(join(tmpdir(), 'wgplane-bench-'));
  const fixtures = new Map<string, string>();
  const results: { spec: CaseSpec; r: CaseResult; times: number[] }[] = [];
  try {
    for (const c of cases) {
      let spec = c;
      if (c.mode === 'empty-decode') {
        const key = `${c.flavor}-${c.nodes}-${c.podsPerNode}-${c.seed}`;
        let path = fixtures.get(key);
        if (!path) {
          path = join(dir, `${key}.json`);
          process.stderr.write(`preparing ${key}.json ...\n`);
          await runNode(['--import', 'tsx', join(here, 'prepare.ts'), c.flavor, String(c.nodes), String(c.podsPerNode), String(c.seed), path]);
          fixtures.set(key, path);
        }
        spec = { ...c, fixture: path };
      }
      process.stderr.write(`running ${c.id} ...\n`);
      const all: CaseResult[] = [];
      for (let i = 0; i < (c.mode === 'baseline' ? 1 : runs); i++) {
        const r = await runCase(spec);
        process.stderr.write(`  ${r.status}${r.timeMs !== undefined ? ` ${r.timeMs} ms` : ''}${r.peakRssMB !== undefined ? `, peak RSS ${r.peakRssMB} MB` : ''}${r.note ? ` (${r.note})` : ''}\n`);
        all.push(r);
        if (r.status !== 'ok') break;
      }
      results.push({ spec, r: combine(all), times: all.flatMap((r) => (r.timeMs !== undefined ? [r.timeMs] : [])) });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const load = loadavg().map((x) => x.toFixed(1)).join(' ');
  console.log(`\nwgplane benchmarks: Node ${process.version}, ${cpus().length} x ${cpu}; each case run ${runs} time(s), each run a fresh process (node --import tsx); time = median (min–max), peak RSS = the largest process.resourceUsage().maxRSS, including node, tsx and the input. Load average at the end: ${load} (other work on the machine skews the times).\n`);
  console.log('| case | time ms | peak RSS MB | target | result |');
  console.log('|---|---:|---:|---|---|');
  for (const { spec, r, times } of results) {
    const na = r.status === 'unavailable';
    console.log(`| ${r.id} | ${spec.mode === 'baseline' ? '—' : timeCell(r, times)} | ${fmt(r.peakRssMB, na)} | ${target(spec)} | ${verdict(spec, r)} |`);
  }
  console.log('\nDetails of the median run (ms per step of the timed part; RSS at its start, with the input in memory):\n');
  console.log('| case | steps | RSS at start MB | ops | routes | peers |');
  console.log('|---|---|---:|---:|---:|---:|');
  for (const { r } of results) {
    if (r.status !== 'ok' || !r.parts) continue;
    const steps = Object.entries(r.parts).map(([k, v]) => `${k} ${v}`).join(', ') + (r.inputMB !== undefined ? ` (input ${r.inputMB} MB of JSON)` : '');
    console.log(`| ${r.id} | ${steps} | ${fmt(r.startRssMB, false)} | ${fmt(r.ops, false)} | ${fmt(r.routes, false)} | ${fmt(r.peers, false)} |`);
  }
  if (jsonPath) writeFileSync(jsonPath, JSON.stringify(results.map((x) => x.r), null, 2) + '\n');
  const failed = results.filter((x) => x.r.status === 'error');
  if (failed.length > 0) process.exitCode = 1;
}

await main();
