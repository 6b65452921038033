// `wgplane graph`: the mesh as Graphviz dot (and SVG where `dot` is installed).
import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { readSnapshot } from '../adapters/manifest.js';
import { requireLab } from '../adapters/lab/state.js';
import { dotToSvg, meshFromLab, meshFromSnapshot, renderDot } from '../adapters/graph.js';
import { CliError, loadSnapshot } from './common.js';
import { print } from './output.js';

export function registerGraph(program: Command): void {
  program
    .command('graph')
    .description('Draw the mesh as Graphviz dot: nodes, encrypted and clear pairs, handshake ages (lab). Prints dot unless --out or --svg is given.')
    .option('--lab <name>', "a lab: the mesh as its nodes' kernels have it, with handshake ages (root)")
    .option('-s, --snapshot <path>', 'manifests: the mesh wgplane builds for them')
    .option('--out <file.dot>', 'write the dot here')
    .option('--svg <file.svg>', 'also render SVG with Graphviz `dot`')
    .action(async (o: { lab?: string; snapshot?: string; out?: string; svg?: string }) => {
      if ((o.lab === undefined) === (o.snapshot === undefined)) throw new CliError('give exactly one of --lab NAME or --snapshot PATH');
      let mesh;
      if (o.lab !== undefined) {
        const lab = await requireLab(o.lab);
        mesh = await meshFromLab(lab, await readSnapshot(lab.paths.clusterDir));
      } else {
        mesh = meshFromSnapshot(await loadSnapshot(o.snapshot));
      }
      const dot = renderDot(mesh);
      if (o.out) await writeFile(o.out, dot);
      if (o.svg) await writeFile(o.svg, await dotToSvg(dot));
      if (!o.out && !o.svg) print(dot);
      else print([o.out ? `wrote ${o.out}` : null, o.svg ? `wrote ${o.svg}` : null].filter(Boolean).join('\n'));
    });
}
