// `wgplane status`: this node (key, device, peers, pending plan, last apply), or every node with --all.
import type { Command } from 'commander';
import { readKey } from '../adapters/keystore.js';
import {
  type ClusterView,
  clusterStatus,
  nodeStatus,
  observeForStatus,
  parseSourceSpec,
  readCluster,
  readDaemonStatus,
  renderClusterStatusText,
  renderNodeStatusText,
} from '../adapters/status.js';
import { DEFAULT_STATE_DIR, intFlag, nodeNameFrom, workloadPrefix } from './common.js';
import { outputOption, print, type Output } from './output.js';

interface StatusOpts { node?: string; all?: boolean; source?: string; snapshot?: string; kubeconfig?: string; stateDir: string; output: Output; timeout: number }

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description("This node's WireGuard state (key, device, peers with handshakes and bytes, pending plan, last apply), or every node's published key and status with --all")
    .option('-n, --node <name>', 'this node (default: $NODE_NAME, then the hostname)')
    .option('--all', 'every node of the cluster: key published, and the status its agent publishes')
    .option('--source <source>', 'where the cluster is: kube (the API; default) or dir:PATH')
    .option('--kubeconfig <file>', 'kubeconfig for --source kube (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)')
    .option('-s, --snapshot <path>', 'read the cluster from manifests instead of a source (read only)')
    .option('--state-dir <dir>', "where the node key and the daemon's status.json are", DEFAULT_STATE_DIR)
    .option('--timeout <seconds>', 'how long to wait for the source to list the cluster', intFlag(1, 3600), 30)
    .addOption(outputOption())
    .action(async (o: StatusOpts) => {
      const node = nodeNameFrom(o.node);
      const spec = parseSourceSpec(o.source, o.snapshot, o.kubeconfig);
      const view: ClusterView = await readCluster(spec, node, o.timeout * 1000);
      if (o.all) {
        const rows = clusterStatus(view, Date.now());
        if (o.output === 'json') print(JSON.stringify({ source: view.description, nodes: rows, warnings: view.warnings }, null, 2));
        else print(renderClusterStatusText(rows, view.description) + view.warnings.map((w) => `\nwarning: ${w}`).join(''));
        return;
      }
      const [key, observed, daemon] = await Promise.all([
        readKey(o.stateDir).catch(() => null),
        observeForStatus(view.snapshot, workloadPrefix(view.snapshot)),
        readDaemonStatus(o.stateDir),
      ]);
      const s = nodeStatus({ node, view, storedKey: key?.publicKey ?? null, observed, daemon, nowS: Math.floor(Date.now() / 1000) });
      print(o.output === 'json' ? JSON.stringify(s, null, 2) : renderNodeStatusText(s));
      process.exitCode = s.errors.length > 0 ? 1 : 0;
    });
}
