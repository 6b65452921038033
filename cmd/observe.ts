// `wgplane observe`: what wgplane owns in this kernel, as JSON.
import type { Command } from 'commander';
import { observedToJson } from '../adapters/observed-json.js';
import { observeFor, ownedNameOptions, ownedSettings, workloadPrefix, type OwnedNameOptions } from './common.js';
import { print } from './output.js';

export function registerObserve(program: Command): void {
  ownedNameOptions(program
  .command('observe')
  .description("Print what wgplane owns in this kernel (device, peers, table, rules, chains, sysctls) as JSON. Never prints a private key."))
  .action(async (o: OwnedNameOptions) => {
    const { settings, snapshot } = await ownedSettings(o);
    const observed = await observeFor('live', settings, snapshot ? workloadPrefix(snapshot) : null);
    print(JSON.stringify(observedToJson(observed), null, 2));
  });
}
