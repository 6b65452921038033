// `wgplane daemon`: the node agent. Watches the cluster (Kubernetes API or a directory of manifests),
// keeps this node's kernel equal to the desired state incrementally, publishes the node's key and status,
// and serves /metrics, /healthz, /readyz and /status. SIGTERM/SIGINT stop it cleanly and leave the
// dataplane in place (or remove it with --cleanup-on-exit, clearing the published key first).
import type { Command } from 'commander';
import { Option } from 'commander';
import type { NodeName } from '../core/model.js';
import { detectBackend } from '../adapters/backend.js';
import { DEFAULT_METRICS_ADDR, parseListenAddr, startHttpServer, type RunningServer } from '../adapters/http.js';
import { createLogger, parseLogLevel, LOG_LEVELS, type Logger } from '../adapters/log.js';
import type { ClusterSource } from '../adapters/sources/source.js';
import { openSource, parseSourceSpec } from '../adapters/status.js';
import { CliError, DEFAULT_STATE_DIR, nodeNameFrom } from './common.js';
import { backendOption } from './output.js';
import { stopSignals } from './signals.js';

interface DaemonOpts {
  source: string;
  kubeconfig?: string;
  node?: string;
  stateDir: string;
  wireguard: 'auto' | 'kernel' | 'userspace';
  metricsAddr: string;
  logLevel: string;
  cleanupOnExit?: boolean;
}

/** The daemon's source for `--source kube|dir:PATH` (the same factory as status, enable and disable). */
export async function createSource(spec: string, node: NodeName, kubeconfig: string | undefined): Promise<ClusterSource> {
  try {
    return await openSource(parseSourceSpec(spec, undefined, kubeconfig), node);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
}

export async function runDaemon(o: DaemonOpts): Promise<void> {
  let level;
  try {
    level = parseLogLevel(o.logLevel);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  let addr;
  try {
    addr = parseListenAddr(o.metricsAddr);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  const node = nodeNameFrom(o.node);
  const log: Logger = createLogger({ level, base: { node } });
  const signal = stopSignals((sig) => log.warn({ signal: sig }, 'second stop signal; exiting now without finishing the stop'));
  const backend = await detectBackend(o.wireguard);
  const source = await createSource(o.source, node, o.kubeconfig);
  // The engine (with its metrics registry) is loaded only by the daemon, not by every CLI command.
  const { Engine } = await import('../adapters/daemon/engine.js');
  const engine = new Engine({ node, source, stateDir: o.stateDir, backend, log });
  let server: RunningServer | null = null;
  if (addr !== null) {
    server = await startHttpServer(addr, {
      metrics: async () => ({ contentType: engine.metrics.contentType, body: await engine.metrics.text() }),
      health: () => engine.health(),
      ready: () => engine.ready(),
      status: () => engine.status(),
    });
    log.info({ addr: `${addr.host}:${server.port}` }, 'serving /metrics, /healthz, /readyz, /status');
  }
  await engine.start();
  const sig = await signal;
  log.info({ signal: sig, cleanup: o.cleanupOnExit ?? false }, 'stopping');
  try {
    await engine.stop({ cleanup: o.cleanupOnExit ?? false });
  } finally {
    await server?.close();
  }
  process.exitCode = 0;
}

export function registerDaemon(program: Command): void {
  program
    .command('daemon')
    .description('Run the node agent: watch the cluster, keep this node programmed, publish its key, serve metrics and probes.')
    .option('--source <source>', 'where the cluster comes from: kube (the API) or dir:PATH (a directory of manifests)', 'kube')
    .option('--kubeconfig <path>', 'kubeconfig for --source kube (default: in-cluster config, then $KUBECONFIG)')
    .option('-n, --node <name>', 'this node (default: $NODE_NAME, then the hostname)')
    .option('--state-dir <dir>', 'where the node key, the lock and status.json are kept', DEFAULT_STATE_DIR)
    .addOption(backendOption())
    .option('--metrics-addr <addr>', 'HOST:PORT for /metrics, /healthz, /readyz and /status, or off', DEFAULT_METRICS_ADDR)
    .addOption(new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]).default('info'))
    .option('--cleanup-on-exit', 'on SIGTERM/SIGINT, clear the published key and remove everything wgplane owns')
    .action(async (o: DaemonOpts) => {
      await runDaemon(o);
    });
}
