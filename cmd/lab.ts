// `wgplane lab up|down|status`: an encrypted cluster of network namespaces on this machine (root).
import { Command, Option } from 'commander';
import { isRoot } from '../adapters/lab/netns.js';
import { labDown, labStatus, labUp, type LabStatus } from '../adapters/lab/lab.js';
import { requireLab, type LabState } from '../adapters/lab/state.js';
import { CliError } from './common.js';
import { backendOption, outputOption, print, type Output } from './output.js';
import { textTable } from '../adapters/text-table.js';

/** The command that runs this very wgplane (the same node, loader and entry point). */
export function selfCommand(): string[] {
  const entry = process.argv[1];
  if (!entry) throw new CliError('cannot tell how wgplane was started (no entry script)');
  return [process.execPath, ...process.execArgv, entry];
}

function needRoot(what: string): void {
  if (!isRoot()) throw new CliError(`${what} needs root (network namespaces, WireGuard): run it with sudo`);
}

const int = (name: string, min: number, max: number) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new CliError(`${name}: ${JSON.stringify(v)} is not a whole number from ${min} to ${max}`);
  return n;
};

function collectSetting(v: string, acc: Record<string, string>): Record<string, string> {
  const i = v.indexOf('=');
  if (i <= 0) throw new CliError(`--set ${JSON.stringify(v)}: use KEY=VALUE (a key of the settings ConfigMap)`);
  return { ...acc, [v.slice(0, i)]: v.slice(i + 1) };
}

export function guide(s: LabState): string {
  const self = 'wgplane';
  const agents = s.nodes.filter((n) => !n.plain);
  const plain = s.nodes.filter((n) => n.plain);
  const n0 = s.nodes[0];
  const p0 = n0?.pods[0];
  const lines = [
    `Lab ${s.name} is up: ${s.nodes.length} nodes (${s.flavor}), ${agents.length} with wgplane${plain.length ? `, ${plain.length} plain (${plain.map((n) => n.name).join(', ')})` : ''}.`,
    '',
    'Nodes (network namespace, eth0 address, pods):',
    ...s.nodes.map((n) => `  ${n.name.padEnd(34)} ${n.ns.padEnd(16)} ${n.ip.padEnd(14)} ${n.pods.map((p) => `${p.ip} (${p.ns})`).join(', ')}${n.plain ? '  [no wgplane]' : ''}`),
    `Bridge (the network): namespace ${s.bridge}, interface br0`,
    `Manifests (the agents' dir source): ${s.paths.clusterDir}  (settings.yaml holds the settings ConfigMap)`,
    `Agent logs: ${s.paths.logsDir}/<node>.log   State: ${s.paths.stateFile}`,
    '',
    'Look around:',
    ...(n0 ? [`  sudo ip netns exec ${n0.ns} ip rule; sudo ip netns exec ${n0.ns} ip route show table all | head`] : []),
    ...(n0 && !n0.plain ? [`  sudo ip netns exec ${n0.ns} unshare -m sh -c 'mount --bind ${s.paths.runRoot}/${n0.ns}/wireguard /run/wireguard && wg show'`] : []),
    ...(p0 && s.nodes[1]?.pods[0] ? [`  sudo ip netns exec ${p0.ns} ping -c 3 ${s.nodes[1].pods[0].ip}      # pod to pod across nodes`] : []),
    `  sudo ip netns exec ${s.bridge} tcpdump -ni br0      # what crosses the wire`,
    ...(agents[0]?.log ? [`  tail -f ${agents[0].log}`] : []),
    '',
    'Next:',
    `  sudo ${self} verify --lab ${s.name}        # prove the pairs are encrypted (handshakes, counters, capture)`,
    `  sudo ${self} graph --lab ${s.name} --out mesh.dot --svg mesh.svg`,
    `  sudo ${self} lab status --name ${s.name}`,
    `  sudo ${self} lab down --name ${s.name}     # removes everything`,
  ];
  return lines.join('\n');
}

function renderStatus(st: LabStatus): string {
  const rows = st.nodes.map((n) => [
    n.name, n.ns, n.ip, n.plain ? 'plain' : 'wgplane', n.namespace ? 'yes' : 'MISSING',
    n.agent === 'none' ? '-' : `${n.agent}${n.pid ? ` (${n.pid})` : ''}`, n.plain ? '-' : n.device ? 'yes' : 'no', n.plain ? '-' : String(n.peers), String(n.pods),
  ]);
  const head = ['NODE', 'NAMESPACE', 'IP', 'KIND', 'NETNS', 'AGENT', 'DEVICE', 'PEERS', 'PODS'];
  return [
    `Lab ${st.name}: ${st.phase}, flavor ${st.flavor}, agent ${st.agent}, bridge ${st.bridge}, manifests ${st.clusterDir}`,
    ...(st.error ? [`error: ${st.error}`] : []),
    ...textTable(head, rows),
  ].join('\n');
}

export function registerLab(program: Command): void {
  const lab = program.command('lab').description('A small encrypted cluster of network namespaces on this machine, to see wgplane work (root).');

  lab
    .command('up')
    .description('Build the lab (a bridge, nodes, pods), write its manifests to a dir source and start `wgplane daemon` in every node.')
    .option('--name <name>', 'lab name (namespaces wgl-<name>-*)', 'lab')
    .option('--nodes <n>', 'number of nodes', int('--nodes', 1, 200), 3)
    .option('--pods <n>', 'pods per node', int('--pods', 0, 200), 2)
    .addOption(new Option('--flavor <flavor>', 'aks: Azure CNI (pod IPs from the node subnet, azv* host ends, strict rp_filter); podcidr: a /24 per node').choices(['aks', 'podcidr']).default('aks'))
    .option('--plain-nodes <n>', 'how many nodes (the last ones) run no wgplane', int('--plain-nodes', 0, 200), 1)
    .addOption(backendOption())
    .addOption(new Option('--agent <agent>', 'daemon: a `wgplane daemon` per node; apply: a one-shot `wgplane apply` per node').choices(['daemon', 'apply']).default('daemon'))
    .option('--set <key=value>', 'a setting for the ConfigMap (repeatable), e.g. --set resyncInterval=600', collectSetting, {})
    .option('--wait <seconds>', 'how long to wait for the mesh to converge', int('--wait', 1, 3600), 90)
    .action(async (o: { name: string; nodes: number; pods: number; flavor: 'aks' | 'podcidr'; plainNodes: number; wireguard: 'auto' | 'kernel' | 'userspace'; agent: 'daemon' | 'apply'; set: Record<string, string>; wait: number }) => {
      needRoot('wgplane lab up');
      try {
        const s = await labUp({
          name: o.name, nodes: o.nodes, pods: o.pods, flavor: o.flavor, plainNodes: o.plainNodes, wireguard: o.wireguard, agent: o.agent,
          settings: o.set, waitSeconds: o.wait, wgplane: selfCommand(), log: (l) => process.stderr.write(`${l}\n`),
        });
        print(guide(s));
      } catch (err) {
        process.stderr.write(`wgplane: lab up failed: ${(err as Error).message}\n` +
          `The lab is left as it is for a look (sudo wgplane lab status --name ${o.name}); remove it with: sudo wgplane lab down --name ${o.name}\n`);
        process.exitCode = 1;
      }
    });

  lab
    .command('down')
    .description('Remove the lab completely (agents, wireguard-go, namespaces, files), also after a crash or a failed `up`.')
    .option('--name <name>', 'lab name', 'lab')
    .action(async (o: { name: string }) => {
      needRoot('wgplane lab down');
      const r = await labDown(o.name);
      print(r.namespaces.length === 0 && r.removed.length === 0 ? `No lab named ${o.name} was found; nothing to remove.` : `Lab ${o.name} removed: ${r.namespaces.length} namespaces, ${r.killed.length} processes stopped, ${r.removed.length} directories.`);
    });

  lab
    .command('status')
    .description("Summarise the lab: nodes, namespaces, agents, devices and peers.")
    .option('--name <name>', 'lab name', 'lab')
    .addOption(outputOption())
    .action(async (o: { name: string; output: Output }) => {
      needRoot('wgplane lab status');
      const st = await labStatus(await requireLab(o.name));
      print(o.output === 'json' ? JSON.stringify(st, null, 2) : renderStatus(st));
      const healthy = st.phase === 'up' && st.nodes.every((n) => n.namespace && (n.plain || ((n.agent === 'running' || n.agent === 'none') && n.device)));
      process.exitCode = healthy ? 0 : 1;
    });
}
