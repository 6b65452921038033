// The namespace harness: unique names, a per-node /run/wireguard, bridge connectivity, idempotent cleanup.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { defaultRunner } from '../adapters/run.js';
import { Lab, TEST_ROOT, connectToBridge, destroyNamespace, kernelTestSkipReason, nodeExecChecked } from './netns.js';

const skip = kernelTestSkipReason();
if (skip) console.log(`# netns harness tests: ${skip}`);

describe('netns harness', { skip: skip ?? false }, () => {
  it('gives each node its own wireguard-go socket directory, joins nodes by a bridge, and cleans up twice', async () => {
    const lab = new Lab('wgphar');
    try {
      const a = await lab.namespace();
      const b = await lab.namespace();
      assert.notEqual(a.name, b.name);
      const br = await lab.bridge();
      await connectToBridge(br, a.name, { addresses: ['192.168.77.1/24'] });
      await connectToBridge(br, b.name, { addresses: ['192.168.77.2/24'] });
      // Reachability without ping (not installed): a TCP connect to a closed port is refused by b.
      const conn = await nodeExecChecked(a.name, 'sh', ['-c', "timeout 3 bash -c 'exec 3<>/dev/tcp/192.168.77.2/9' 2>&1; true"]);
      assert.match(conn.stdout, /Connection refused/);
      // The same device name in two nodes: wireguard-go sockets must not collide.
      await nodeExecChecked(a.name, 'wireguard-go', ['wg0']);
      await nodeExecChecked(b.name, 'wireguard-go', ['wg0']);
      await nodeExecChecked(a.name, 'wg', ['set', 'wg0', 'listen-port', '5001']);
      await nodeExecChecked(b.name, 'wg', ['set', 'wg0', 'listen-port', '5002']);
      assert.equal((await nodeExecChecked(a.name, 'wg', ['show', 'wg0', 'listen-port'])).stdout.trim(), '5001');
      assert.equal((await nodeExecChecked(b.name, 'wg', ['show', 'wg0', 'listen-port'])).stdout.trim(), '5002');
      assert.ok(!existsSync('/run/wireguard/wg0.sock'), 'socket leaked into the host /run/wireguard');
      await destroyNamespace(a.name);
      await destroyNamespace(a.name); // twice: no error
      assert.equal((await defaultRunner('ip', ['netns', 'pids', a.name])).exitCode !== 0, true);
      assert.ok(!existsSync(`${TEST_ROOT}/${a.name}`));
    } finally {
      await lab.dispose();
    }
    assert.equal((await defaultRunner('sh', ['-c', 'ip netns list | grep -c wgphar- || true'])).stdout.trim(), '0');
  });
});
