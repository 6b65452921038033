// The WireGuard device MTU. Pure.
import type { Problem, Settings } from './model.js';

export const DEFAULT_HOST_MTU = 1500;
/** Outer IPv4 (20) + UDP (8) + WireGuard (32). */
export const OVERHEAD_IPV4 = 60;
/** Outer IPv6 (40) + UDP (8) + WireGuard (32). */
export const OVERHEAD_IPV6 = 80;
/** AKS with host encryption: the Azure fabric fragments above 1400 bytes. */
export const AKS_HOST_ENCRYPTION_EXTRA = 100;

export interface MtuInput {
  readonly setting: Settings['mtu'];
  /** Smallest MTU of the up underlay interfaces; null when unknown. */
  readonly underlayMtu: number | null;
  /** Some endpoint (a peer's, or this node's own) is IPv6. */
  readonly ipv6Endpoint: boolean;
  readonly aks: boolean;
  readonly hostEncryption: boolean;
}

export interface MtuChoice {
  readonly mtu: number;
  /** How the MTU was chosen, in words. */
  readonly reason: string;
  /** mtu-unknown when the host MTU had to be assumed. */
  readonly problem: Problem | null;
}

export function chooseMtu(input: MtuInput): MtuChoice {
  if (input.setting !== 'auto') {
    return { mtu: input.setting, reason: `set explicitly by the mtu setting (${input.setting})`, problem: null };
  }
  const known = input.underlayMtu !== null;
  const host = input.underlayMtu ?? DEFAULT_HOST_MTU;
  const overhead = input.ipv6Endpoint ? OVERHEAD_IPV6 : OVERHEAD_IPV4;
  const aksExtra = input.aks && input.hostEncryption ? AKS_HOST_ENCRYPTION_EXTRA : 0;
  const mtu = host - overhead - aksExtra;
  const hostWords = known ? `${host} (underlay)` : `${host} (underlay MTU unknown: assumed)`;
  const overheadWords = input.ipv6Endpoint ? `${OVERHEAD_IPV6} (IPv6 + UDP + WireGuard)` : `${OVERHEAD_IPV4} (IPv4 + UDP + WireGuard)`;
  const aksWords = aksExtra ? ` - ${aksExtra} (AKS with host encryption: the Azure fabric fragments above 1400)` : '';
  return {
    mtu,
    reason: `${hostWords} - ${overheadWords}${aksWords} = ${mtu}`,
    problem: known ? null : { kind: 'mtu-unknown', assumed: DEFAULT_HOST_MTU },
  };
}
