// AKS detection from the cluster snapshot. Pure.
import type { NodeInfo } from './model.js';

export const AZURE_PROVIDER_PREFIX = 'azure://';
export const AKS_LABEL_PREFIX = 'kubernetes.azure.com/';

/** Does this node carry a sign of AKS: providerID `azure://...` or a label `kubernetes.azure.com/*`? */
export function isAksNode(node: NodeInfo): boolean {
  if (node.providerID !== null && node.providerID.startsWith(AZURE_PROVIDER_PREFIX)) return true;
  for (const label in node.labels) if (label.startsWith(AKS_LABEL_PREFIX)) return true;
  return false;
}

/** The cluster is AKS when any node carries a sign of AKS. */
export function detectAks(nodes: Iterable<NodeInfo>): boolean {
  for (const n of nodes) if (isAksNode(n)) return true;
  return false;
}

/** Name prefix of the pod host interfaces on AKS (Azure CNI). */
export const AKS_WORKLOAD_INTERFACE_PREFIX = 'azv';

/** The pod host interfaces' name prefix: the setting, or with `auto` azv on AKS and none elsewhere. The
 *  nodes are looked at only for `auto` (`aks` may be given when already known). */
export function workloadInterfacePrefix(setting: string, nodes: Iterable<NodeInfo> | { readonly aks: boolean }): string | null {
  if (setting !== 'auto') return setting;
  const aks = 'aks' in nodes ? nodes.aks : detectAks(nodes);
  return aks ? AKS_WORKLOAD_INTERFACE_PREFIX : null;
}
