import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as E from 'fp-ts/lib/Either.js';
import { DEFAULT_SETTINGS, SETTING_KEYS, decodeSettings } from './settings.js';
import { formatDecodeError } from './errors.js';
import type { Settings } from './model.js';

const W = 'cm.yaml: document 1: items[3]';

function good(data: Record<string, unknown>): Settings {
  const r = decodeSettings(data, W);
  if (E.isLeft(r)) assert.fail(`unexpected errors: ${r.left.map(formatDecodeError).join('; ')}`);
  return r.right;
}

function errors(data: unknown): string[] {
  const r = decodeSettings(data, W);
  if (E.isRight(r)) assert.fail(`expected errors for ${JSON.stringify(data)}, got ${JSON.stringify(r.right)}`);
  return r.left.map(formatDecodeError);
}

describe('decodeSettings: defaults', () => {
  for (const data of [undefined, null, {}]) {
    it(`${JSON.stringify(data)} gives the defaults`, () => {
      assert.deepEqual(decodeSettings(data, W), E.right(DEFAULT_SETTINGS));
    });
  }
  it('a single key changes only that key', () => {
    assert.deepEqual(good({ enabled: 'true' }), { ...DEFAULT_SETTINGS, enabled: true });
  });
  it('lists every key of Settings', () => {
    assert.deepEqual([...SETTING_KEYS].sort(), Object.keys(DEFAULT_SETTINGS).sort());
  });
});

describe('decodeSettings: accepted values', () => {
  const cases: [keyof Settings, string, Settings[keyof Settings]][] = [
    ['enabled', 'true', true],
    ['enabled', 'false', false],
    ['enabled', ' true\n', true],
    ['hostEncryption', 'auto', 'auto'],
    ['hostEncryption', 'true', 'true'],
    ['hostEncryption', 'false', 'false'],
    ['routeSource', 'auto', 'auto'],
    ['routeSource', 'podCIDR', 'podCIDR'],
    ['routeSource', 'workloadIPs', 'workloadIPs'],
    ['mtu', 'auto', 'auto'],
    ['mtu', '1280', 1280],
    ['mtu', '1420', 1420],
    ['mtu', '65535', 65535],
    ['listenPort', '1', 1],
    ['listenPort', '51821', 51821],
    ['listenPort', '65535', 65535],
    ['interfaceName', 'wg0', 'wg0'],
    ['interfaceName', 'wireguard.cali', 'wireguard.cali'],
    ['interfaceName', '123456789012345', '123456789012345'],
    ['routingTable', '1', 1],
    ['routingTable', '252', 252],
    ['routingTable', '256', 256],
    ['routingTable', '4294967295', 4294967295],
    ['rulePriority', '1', 1],
    ['rulePriority', '32765', 32765],
    ['fwmark', '0x100000', 0x100000],
    ['fwmark', '0XfF', 255],
    ['fwmark', '1048576', 1048576],
    ['fwmark', '0xffffffff', 0xffffffff],
    ['fwmark', '4294967295', 4294967295],
    ['persistentKeepalive', '0', 0],
    ['persistentKeepalive', '25', 25],
    ['workloadInterfacePrefix', 'auto', 'auto'],
    ['workloadInterfacePrefix', 'azv', 'azv'],
    ['workloadInterfacePrefix', 'azv+', 'azv'],
    ['workloadInterfacePrefix', 'cali', 'cali'],
    ['resyncInterval', '5', 5],
    ['resyncInterval', '90', 90],
    ['resyncInterval', '90s', 90],
    ['resyncInterval', '2m', 120],
    ['resyncInterval', '1h', 3600],
    ['resyncInterval', '24h', 86400],
  ];
  for (const [key, text, want] of cases) {
    it(`${key}: ${JSON.stringify(text)} -> ${JSON.stringify(want)}`, () => {
      assert.deepEqual(good({ [key]: text }), { ...DEFAULT_SETTINGS, [key]: want });
    });
  }
});

describe('decodeSettings: refused values name the key and the value', () => {
  const cases: [string, unknown, RegExp][] = [
    ['enabled', 'yes', /"yes" is not one of true, false/],
    ['enabled', 'True', /"True" is not one of true, false/],
    ['enabled', '', /"" is not one of true, false/],
    ['hostEncryption', 'on', /"on" is not one of auto, true, false/],
    ['routeSource', 'podCidr', /"podCidr" is not one of auto, podCIDR, workloadIPs/],
    ['mtu', '1279', /"1279" is out of range: want an integer 1280\.\.65535/],
    ['mtu', '65536', /out of range/],
    ['mtu', '1400.5', /"1400\.5" is not auto or an MTU/],
    ['mtu', '-1', /is not auto or an MTU/],
    ['listenPort', '0', /"0" is out of range: want an integer 1\.\.65535/],
    ['listenPort', '65536', /out of range/],
    ['listenPort', '0x10', /is not a port/],
    ['interfaceName', '', /"" is empty/],
    ['interfaceName', '1234567890123456', /longer than 15 characters/],
    ['interfaceName', 'wg/0', /contains '\/', ':' or white space/],
    ['interfaceName', 'wg:0', /contains/],
    ['interfaceName', 'wg 0', /contains/],
    ['interfaceName', '..', /is not a valid interface name/],
    ['routingTable', '0', /out of range: want an integer 1\.\.4294967295/],
    ['routingTable', '253', /kernel's default table/],
    ['routingTable', '254', /kernel's main table/],
    ['routingTable', '255', /kernel's local table/],
    ['routingTable', '4294967296', /out of range/],
    ['routingTable', 'main', /is not a routing table number/],
    ['rulePriority', '0', /out of range/],
    ['rulePriority', '32766', /out of range: want an integer 1\.\.32765/],
    ['fwmark', '0', /is zero/],
    ['fwmark', '0x0', /is zero/],
    ['fwmark', '4294967296', /does not fit in 32 bits/],
    ['fwmark', '0x100000000', /is not a firewall mark/],
    ['fwmark', '0x', /is not a firewall mark/],
    ['fwmark', '-5', /is not a firewall mark/],
    ['persistentKeepalive', '65536', /out of range: want an integer 0\.\.65535/],
    ['persistentKeepalive', 'off', /is not a keepalive interval/],
    ['workloadInterfacePrefix', '+', /"\+" is empty/],
    ['workloadInterfacePrefix', 'az+v', /contains '\+' before its end/],
    ['workloadInterfacePrefix', '123456789012345', /longer than 14 characters/],
    ['workloadInterfacePrefix', 'a z', /contains/],
    ['resyncInterval', '4', /out of range: want 5 seconds to 24 hours/],
    ['resyncInterval', '4s', /out of range/],
    ['resyncInterval', '25h', /out of range/],
    ['resyncInterval', '1m30s', /is not a duration/],
    ['resyncInterval', '90ms', /is not a duration/],
    ['enabled', true, /expected a string, got true \(ConfigMap values are strings: quote it, "true"\)/],
    ['mtu', 1400, /expected a string, got 1400/],
    ['mtu', null, /expected a string, got null/],
    ['mtu', { a: 1 }, /expected a string, got an object/],
  ];
  for (const [key, value, want] of cases) {
    it(`${key}: ${JSON.stringify(value)}`, () => {
      const errs = errors({ [key]: value });
      assert.equal(errs.length, 1, errs.join('\n'));
      assert.ok(errs[0]!.startsWith(`${W}.data.${key}: `), errs[0]);
      assert.match(errs[0]!, want);
    });
  }
});

describe('decodeSettings: structure', () => {
  it('an unknown key is an error listing the known keys', () => {
    assert.deepEqual(errors({ enabled: 'true', foo: 'x' }), [
      `${W}.data.foo: unknown setting "foo" (known: enabled, hostEncryption, routeSource, mtu, listenPort, interfaceName, routingTable, rulePriority, fwmark, persistentKeepalive, workloadInterfacePrefix, resyncInterval)`,
    ]);
  });
  it('a key that is not a plain name is quoted in the path', () => {
    assert.match(errors({ 'my.key': 'x' })[0]!, /^cm\.yaml: document 1: items\[3\]\.data\["my\.key"\]: unknown setting "my\.key"/);
  });
  it('__proto__ and inherited names are unknown settings, not crashes', () => {
    const data = JSON.parse('{"__proto__": "x", "toString": "y"}');
    assert.equal(errors(data).length, 2);
  });
  it('collects every error', () => {
    assert.equal(errors({ enabled: 'maybe', mtu: 'big', listenPort: '0', bogus: '1' }).length, 4);
  });
  for (const data of [42, 'enabled=true', [], ['enabled'], true]) {
    it(`data ${JSON.stringify(data)} is an error at .data`, () => {
      assert.deepEqual(errors(data), [`${W}.data: expected a map of settings (strings), got ${Array.isArray(data) ? 'a list' : typeof data === 'string' ? JSON.stringify(data) : String(data)}`]);
    });
  }
  it('does not modify DEFAULT_SETTINGS', () => {
    good({ enabled: 'true', mtu: '1400' });
    assert.equal(DEFAULT_SETTINGS.enabled, false);
    assert.equal(DEFAULT_SETTINGS.mtu, 'auto');
  });
});
