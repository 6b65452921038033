// Settings: defaults and decoding of the ConfigMap kube-system/wgplane (data: all strings). Pure.
import type { Settings } from './model.js';

export const DEFAULT_SETTINGS: Settings = {
  enabled: false,
  hostEncryption: 'auto',
  routeSource: 'auto',
  mtu: 'auto',
  listenPort: 51820,
  interfaceName: 'wireguard.wgp',
  routingTable: 51820,
  rulePriority: 99,
  fwmark: 0x100000,
  persistentKeepalive: 0,
  workloadInterfacePrefix: 'auto',
  resyncInterval: 90,
};
