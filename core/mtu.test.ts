import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chooseMtu, type MtuInput } from './mtu.js';

const base: MtuInput = { setting: 'auto', underlayMtu: 1500, ipv6Endpoint: false, aks: false, hostEncryption: false };

describe('chooseMtu', () => {
  const cases: { name: string; input: Partial<MtuInput>; mtu: number; unknown: boolean; reason: RegExp }[] = [
    { name: 'IPv4 at 1500', input: {}, mtu: 1440, unknown: false, reason: /1500 .*- 60 .*= 1440/ },
    { name: 'IPv6 endpoint at 1500', input: { ipv6Endpoint: true }, mtu: 1420, unknown: false, reason: /- 80 .*IPv6.*= 1420/ },
    { name: 'AKS with host encryption', input: { aks: true, hostEncryption: true }, mtu: 1340, unknown: false, reason: /- 60 .*- 100 .*Azure.*= 1340/ },
    { name: 'AKS with host encryption, IPv6', input: { aks: true, hostEncryption: true, ipv6Endpoint: true }, mtu: 1320, unknown: false, reason: /= 1320/ },
    { name: 'AKS without host encryption', input: { aks: true }, mtu: 1440, unknown: false, reason: /^(?!.*Azure)/ },
    { name: 'host encryption off AKS', input: { hostEncryption: true }, mtu: 1440, unknown: false, reason: /= 1440/ },
    { name: 'unknown underlay', input: { underlayMtu: null }, mtu: 1440, unknown: true, reason: /assumed/ },
    { name: 'small underlay', input: { underlayMtu: 1400 }, mtu: 1340, unknown: false, reason: /1400/ },
    { name: 'explicit', input: { setting: 1280, aks: true, hostEncryption: true, underlayMtu: null }, mtu: 1280, unknown: false, reason: /explicit/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = chooseMtu({ ...base, ...c.input });
      assert.equal(r.mtu, c.mtu);
      assert.deepEqual(r.problem, c.unknown ? { kind: 'mtu-unknown', assumed: 1500 } : null);
      assert.match(r.reason, c.reason);
    });
  }
});
