// Wiring shared by the CLI commands: reading input, the node name, host facts, errors and exit codes.
import os from 'node:os';
import { InvalidArgumentError, type Command } from 'commander';
import { DEFAULT_SETTINGS, parseIntInRange, parseSetting } from '../core/settings.js';
import * as E from 'fp-ts/lib/Either.js';
import type { ClusterSnapshot, DesiredDataplane, HostFacts, NodeName, ObservedDataplane, Settings } from '../core/model.js';
import { EMPTY_OBSERVED } from '../core/model.js';
import { desired } from '../core/desired.js';
import { workloadInterfacePrefix } from '../core/aks.js';
import { readSnapshot } from '../adapters/manifest.js';
import { observe } from '../adapters/observer.js';
import { observedFromJson } from '../adapters/observed-json.js';
import { readFile } from 'node:fs/promises';

export const DEFAULT_STATE_DIR = '/var/lib/wgplane';

/** An error the CLI reports in one line (or a few) and exits with `exitCode`. */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}

export function nodeNameFrom(opt: string | undefined): NodeName {
  const n = opt ?? process.env.NODE_NAME ?? os.hostname();
  if (!n) throw new CliError('no node name: pass --node NAME or set NODE_NAME');
  return n as NodeName;
}

export async function loadSnapshot(path: string | undefined): Promise<ClusterSnapshot> {
  if (!path) throw new CliError('--snapshot PATH is required (a file, a directory of manifests, or - for stdin)');
  return readSnapshot(path);
}

/** The workload interface prefix the observer must leave out of the underlay (azv on AKS by default). */
export function workloadPrefix(snapshot: ClusterSnapshot): string | null {
  return workloadInterfacePrefix(snapshot.settings.workloadInterfacePrefix, snapshot.nodes.values());
}

export type ObservedMode = 'live' | 'empty' | { file: string };

export function parseObservedMode(v: string | undefined): ObservedMode {
  if (v === undefined || v === 'live') return 'live';
  if (v === 'empty') return 'empty';
  return { file: v };
}

export async function observeFor(mode: ObservedMode, settings: Settings, prefix: string | null): Promise<ObservedDataplane> {
  if (mode === 'empty') return EMPTY_OBSERVED;
  if (mode === 'live') {
    return observe({ interfaceName: settings.interfaceName, table: settings.routingTable, workloadInterfacePrefix: prefix });
  }
  const text = await readFile(mode.file, 'utf8').catch((err: Error) => {
    throw new CliError(`--observed ${mode.file}: ${err.message}`);
  });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CliError(`--observed ${mode.file}: not JSON: ${(err as Error).message}`);
  }
  return observedFromJson(json, mode.file);
}

export function desiredOrFail(snapshot: ClusterSnapshot, node: NodeName, host: HostFacts): DesiredDataplane {
  const d = desired(snapshot, node, host);
  if (E.isLeft(d)) throw new CliError(d.left.message);
  return d.right;
}

const plural = (n: number, what: string) => `${n.toLocaleString('en-US')} ${what}${n === 1 ? '' : 's'}`;

export function describeDesired(d: DesiredDataplane, backend: string | null): string {
  if (d.kind === 'disabled') {
    return `wgplane plan for node ${d.node}: WireGuard is disabled here (${d.why === 'setting' ? 'setting enabled=false' : 'node label wgplane.io/wireguard=disabled'}); wgplane's state is removed`;
  }
  const f = d.facts;
  const parts = [
    f.routeSource === 'workloadIPs' ? 'workload IPs (/32 per pod)' : 'pod CIDRs',
    `host encryption ${f.hostEncryption ? 'on' : 'off'}`,
    f.aks ? 'AKS' : null,
    `IPv${f.families.join('+IPv')}`,
  ].filter(Boolean);
  const lines = [
    `wgplane plan for node ${d.node}: ${parts.join(', ')}`,
    `device ${d.device.name}: mtu ${d.device.mtu} (${d.device.mtuReason}), port ${d.device.listenPort}, fwmark 0x${d.device.fwmark.toString(16)}, table ${d.table}` +
      (backend ? `, backend ${backend === 'userspace' ? 'userspace wireguard-go' : backend}` : ''),
    `${plural(d.peers.size, 'peer')}, ${plural(d.routes.size, 'route')} in table ${d.table}`,
  ];
  return lines.join('\n');
}

/** `--snapshot | --interface --table`: which device and table are wgplane's (cleanup, observe). */
export interface OwnedNameOptions { snapshot?: string; interface: string; table: number }

/** A flag's value through a parser; commander reports a refusal with the flag's name. */
const flag = <T>(parse: (v: string) => E.Either<string, T>) => (v: string): T => {
  const r = parse(v);
  if (E.isLeft(r)) throw new InvalidArgumentError(r.left);
  return r.right;
};

/** A flag that stands for a setting obeys the setting's rules (`--table 254`, the main table, is refused
 *  as `routingTable: "254"` is: cleanup would otherwise flush the main table). */
const settingFlag = <K extends 'interfaceName' | 'routingTable'>(key: K) => flag((v) => parseSetting(key, v));

/** A whole number in [min, max] for a numeric flag. */
export const intFlag = (min: number, max = 999_999_999) => flag((v) => parseIntInRange(v, min, max, 'a whole number'));

export function ownedNameOptions(c: Command): Command {
  return c
    .option('-s, --snapshot <path>', 'read the interface name and table from the settings in these manifests')
    .option('--interface <name>', 'the WireGuard device name', settingFlag('interfaceName'), DEFAULT_SETTINGS.interfaceName)
    .option('--table <n>', 'the routing table (not 253, 254 or 255: the kernel\'s own)', settingFlag('routingTable'), DEFAULT_SETTINGS.routingTable);
}

export async function ownedSettings(o: OwnedNameOptions): Promise<{ settings: Settings; snapshot: ClusterSnapshot | null }> {
  const snapshot = o.snapshot ? await loadSnapshot(o.snapshot) : null;
  return { snapshot, settings: snapshot?.settings ?? { ...DEFAULT_SETTINGS, interfaceName: o.interface, routingTable: o.table } };
}
