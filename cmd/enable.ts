// `wgplane enable` / `wgplane disable`: the one command an operator runs. Creates or patches the settings
// ConfigMap kube-system/wgplane through the source (the API, or a manifest directory).
import type { Command } from 'commander';
import * as E from 'fp-ts/lib/Either.js';
import { formatDecodeError } from '../core/decode.js';
import { decodeSettings } from '../core/settings.js';
import { openSource, parseSourceSpec } from '../adapters/status.js';
import { CliError, nodeNameFrom } from './common.js';
import { print } from './output.js';

/** `key=value` pairs of --set into ConfigMap data, checked with the settings decoder. Throws CliError. */
export function settingsPatch(enabled: boolean, sets: readonly string[]): Record<string, string> {
  const data: Record<string, string> = {};
  for (const s of sets) {
    const i = s.indexOf('=');
    if (i <= 0) throw new CliError(`--set ${JSON.stringify(s)}: want key=value`);
    const k = s.slice(0, i).trim();
    if (k === 'enabled') throw new CliError('--set enabled=...: use `wgplane enable` or `wgplane disable`');
    if (k in data) throw new CliError(`--set ${k} given twice`);
    data[k] = s.slice(i + 1);
  }
  data.enabled = enabled ? 'true' : 'false';
  const r = decodeSettings(data, 'settings');
  if (E.isLeft(r)) throw new CliError(`nothing was written:\n${r.left.map((e) => '  ' + formatDecodeError(e).replace(/^settings\.data\./, '--set ')).join('\n')}`);
  return data;
}

interface Opts { source?: string; kubeconfig?: string; set: string[] }

async function patch(o: Opts, enabled: boolean): Promise<void> {
  const spec = parseSourceSpec(o.source, undefined, o.kubeconfig);
  const data = settingsPatch(enabled, o.set);
  const source = await openSource(spec, nodeNameFrom(process.env.NODE_NAME ?? 'wgplane-cli'));
  await source.patchSettings(data);
  const rest = Object.entries(data).filter(([k]) => k !== 'enabled').map(([k, v]) => `${k}=${v}`);
  print(`WireGuard ${enabled ? 'enabled' : 'disabled'} in ${source.description} (ConfigMap kube-system/wgplane: enabled=${data.enabled}${rest.length ? ', ' + rest.join(', ') : ''}); the agents apply it as they see it.`);
}

const collect = (v: string, prev: string[]) => [...prev, v];

export function registerEnable(program: Command): void {
  for (const enabled of [true, false]) {
    program
      .command(enabled ? 'enable' : 'disable')
      .description(enabled
        ? 'Turn WireGuard on for the cluster: set enabled=true (and any --set key=value) in the settings ConfigMap kube-system/wgplane, creating it if needed'
        : "Turn WireGuard off for the cluster: set enabled=false in the settings ConfigMap; every agent removes wgplane's state and clears its key")
      .option('--source <source>', 'where the cluster is: kube (the API; default) or dir:PATH')
      .option('--kubeconfig <file>', 'kubeconfig for --source kube')
      .option('--set <key=value>', 'also set this setting (repeatable), checked before anything is written', collect, [] as string[])
      .action((o: Opts) => patch(o, enabled));
  }
}
