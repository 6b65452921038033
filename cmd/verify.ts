// `wgplane verify`: prove that traffic is encrypted (a lab: every pair of nodes; a node: its peers).
import type { Command } from 'commander';
import { DEFAULT_SETTINGS } from '../core/settings.js';
import { readSnapshot } from '../adapters/manifest.js';
import { requireLab } from '../adapters/lab/state.js';
import { isRoot } from '../adapters/lab/netns.js';
import { renderVerifyText, verifyLab, verifyNode } from '../adapters/verify.js';
import { CliError, intFlag, loadSnapshot } from './common.js';
import { outputOption, print, type Output } from './output.js';

interface VerifyOpts { lab?: string; snapshot?: string; interface?: string; probe?: boolean; count: number; output: Output }

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('Prove encryption: per pair of nodes in a lab (probe, handshakes, counters, capture on the wire), or per peer of this node. Exit 1 when something that should be encrypted is not.')
    .option('--lab <name>', 'verify the lab of this name (see `wgplane lab up`)')
    .option('-s, --snapshot <path>', 'node mode: manifests for the interface name and peer names')
    .option('--interface <name>', `node mode: the WireGuard device (default ${DEFAULT_SETTINGS.interfaceName} or the snapshot's setting)`)
    .option('--probe', 'node mode: ping one /32 allowed IP of each peer and check the counters move')
    .option('--count <n>', 'lab: pings per probe', intFlag(1, 100), 3)
    .addOption(outputOption())
    .action(async (o: VerifyOpts) => {
      if (!isRoot()) throw new CliError('wgplane verify needs root (it reads WireGuard devices, and in the lab enters namespaces and captures packets)');
      let report;
      if (o.lab !== undefined) {
        const lab = await requireLab(o.lab);
        const settings = (await readSnapshot(lab.paths.clusterDir)).settings;
        report = await verifyLab(lab, { interfaceName: settings.interfaceName, listenPort: settings.listenPort, count: o.count });
      } else {
        const snapshot = o.snapshot ? await loadSnapshot(o.snapshot) : null;
        const names = new Map<string, string>();
        for (const n of snapshot?.nodes.values() ?? []) if (n.publicKey) names.set(n.publicKey, n.name);
        report = await verifyNode({ interfaceName: o.interface ?? snapshot?.settings.interfaceName ?? DEFAULT_SETTINGS.interfaceName, probe: o.probe ?? false, names });
      }
      print(o.output === 'json' ? JSON.stringify(report, null, 2) : renderVerifyText(report));
      process.exitCode = report.ok ? 0 : 1;
    });
}
