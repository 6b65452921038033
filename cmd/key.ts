// `wgplane key public|rotate`: the node's key pair (the private key never leaves the state directory).
import type { Command } from 'commander';
import { loadOrCreateKey, rotateKey } from '../adapters/keystore.js';
import { DEFAULT_STATE_DIR } from './common.js';
import { print } from './output.js';

export function registerKey(program: Command): void {
  const key = program.command('key').description("The node's WireGuard key pair (the private key never leaves the state directory)");
key
  .command('public')
  .description('Print this node\'s public key, making the key pair if there is none')
  .option('--state-dir <dir>', 'where the key is kept', DEFAULT_STATE_DIR)
  .action(async (o: { stateDir: string }) => {
    print((await loadOrCreateKey(o.stateDir)).publicKey);
  });
key
  .command('rotate')
  .description('Replace the key pair with a new one (peers must learn the new public key; the daemon publishes it)')
  .option('--state-dir <dir>', 'where the key is kept', DEFAULT_STATE_DIR)
  .action(async (o: { stateDir: string }) => {
    print((await rotateKey(o.stateDir)).publicKey);
  });
}
