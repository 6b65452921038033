// `wgplane observe`: what wgplane owns in this kernel, as JSON.
import type { Command } from 'commander';
import { DEFAULT_SETTINGS } from '../core/settings.js';
import { observe } from '../adapters/observer.js';
import { observedToJson } from '../adapters/observed-json.js';
import { loadSnapshot, workloadPrefix } from './common.js';
import { print } from './output.js';

export function registerObserve(program: Command): void {
  program
  .command('observe')
  .description("Print what wgplane owns in this kernel (device, peers, table, rules, chains, sysctls) as JSON. Never prints a private key.")
  .option('-s, --snapshot <path>', 'read the interface name and table from the settings in these manifests')
  .option('--interface <name>', 'the WireGuard device name', DEFAULT_SETTINGS.interfaceName)
  .option('--table <n>', 'the routing table', (v) => Number(v), DEFAULT_SETTINGS.routingTable)
  .action(async (o: { snapshot?: string; interface: string; table: number }) => {
    const snapshot = o.snapshot ? await loadSnapshot(o.snapshot) : null;
    const settings = snapshot?.settings ?? { ...DEFAULT_SETTINGS, interfaceName: o.interface, routingTable: o.table };
    const observed = await observe({ interfaceName: settings.interfaceName, table: settings.routingTable, workloadInterfacePrefix: snapshot ? workloadPrefix(snapshot) : null });
    print(JSON.stringify(observedToJson(observed), null, 2));
  });
}
