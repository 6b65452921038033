// Where a lab lives and what it is made of: /var/lib/wgplane-lab/<name>/ holds lab.json (the state: what
// was created, the agents' pids), cluster/ (the dir source: manifests the agents read and publish into),
// nodes/<node>/ (each agent's state directory) and logs/<node>.log. /run/wgplane-lab/<name>/<ns>/wireguard
// is each node's private /run/wireguard. Namespaces are named wgl-<name>-br, wgl-<name>-n<i>,
// wgl-<name>-n<i>-p<j>, so that `lab down` finds them by name even without lab.json.
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ClusterPod, Flavor } from './topology.js';

export const LAB_STATE_ROOT = '/var/lib/wgplane-lab';
export const LAB_RUN_ROOT = '/run/wgplane-lab';
export const LAB_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,19}$/;

export class LabError extends Error {
  override readonly name = 'LabError';
}

export function checkLabName(name: string): string {
  if (!LAB_NAME_PATTERN.test(name)) throw new LabError(`lab name ${JSON.stringify(name)}: use 1-20 of a-z, 0-9 and '-', starting with a letter or digit`);
  return name;
}

export interface LabPaths {
  readonly dir: string;
  readonly stateFile: string;
  readonly clusterDir: string;
  readonly logsDir: string;
  readonly nodesDir: string;
  readonly runRoot: string;
}

export function labPaths(name: string, stateRoot = LAB_STATE_ROOT, runRoot = LAB_RUN_ROOT): LabPaths {
  const dir = path.join(stateRoot, name);
  return {
    dir,
    stateFile: path.join(dir, 'lab.json'),
    clusterDir: path.join(dir, 'cluster'),
    logsDir: path.join(dir, 'logs'),
    nodesDir: path.join(dir, 'nodes'),
    runRoot: path.join(runRoot, name),
  };
}

export const labNsPrefix = (name: string): string => `wgl-${name}-`;
export const bridgeNs = (name: string): string => `wgl-${name}-br`;
export const nodeNs = (name: string, i: number): string => `wgl-${name}-n${i}`;
export const podNs = (name: string, i: number, j: number): string => `wgl-${name}-n${i}-p${j}`;

/** Whether `ns` is one of lab `name`'s namespaces (exactly, so that lab "a" never matches lab "a-b"). */
export function isLabNamespace(name: string, ns: string): boolean {
  const p = labNsPrefix(name);
  return ns.startsWith(p) && /^(br|n\d+(-p\d+)?)$/.test(ns.slice(p.length));
}

export type Agent = 'daemon' | 'apply';

export interface LabNode {
  readonly name: string;
  readonly ns: string;
  readonly ip: string;
  readonly index: number;
  readonly podCIDR: string | null;
  readonly plain: boolean;
  readonly stateDir: string;
  readonly log: string | null;
  /** The agent's pid (daemon mode), null for plain nodes or before it started. */
  readonly pid: number | null;
  readonly pods: readonly ClusterPod[];
}

export interface LabState {
  readonly version: 1;
  readonly name: string;
  readonly phase: 'building' | 'up' | 'failed';
  readonly createdAt: string;
  readonly flavor: Flavor;
  readonly agent: Agent;
  readonly wireguard: 'auto' | 'kernel' | 'userspace';
  readonly paths: LabPaths;
  readonly bridge: string;
  /** Every namespace the lab made (or was about to make). */
  readonly namespaces: readonly string[];
  readonly nodes: readonly LabNode[];
  readonly error?: string;
}

export async function writeLabState(s: LabState): Promise<void> {
  const tmp = `${s.paths.stateFile}.tmp`;
  await writeFile(tmp, JSON.stringify(s, null, 2) + '\n', { mode: 0o600 });
  await rename(tmp, s.paths.stateFile);
}

/** Reads lab.json; null when there is none. Throws LabError when it cannot be read. */
export async function readLabState(name: string, stateRoot = LAB_STATE_ROOT): Promise<LabState | null> {
  const file = labPaths(name, stateRoot).stateFile;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new LabError(`${file}: ${(e as Error).message}`);
  }
  try {
    const s = JSON.parse(text) as LabState;
    if (s.version !== 1 || s.name !== name || !Array.isArray(s.nodes)) throw new Error('not a wgplane lab state (version 1)');
    return s;
  } catch (e) {
    throw new LabError(`${file}: ${(e as Error).message}`);
  }
}

/** Like readLabState, but a missing lab is an error that says how to make one. */
export async function requireLab(name: string, stateRoot = LAB_STATE_ROOT): Promise<LabState> {
  const s = await readLabState(name, stateRoot);
  if (!s) throw new LabError(`there is no lab named ${JSON.stringify(name)} (no ${labPaths(name, stateRoot).stateFile}); start one with \`sudo wgplane lab up --name ${name}\``);
  return s;
}
