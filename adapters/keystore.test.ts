import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, statSync, readFileSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadOrCreateKey, readKey, rotateKey, PRIVATE_KEY_FILE } from './keystore.js';
import { withLock } from './lock.js';

const fresh = () => mkdtempSync(path.join(tmpdir(), 'wgplane-keys-'));
const hasWg = (() => { try { execFileSync('wg', ['--version']); return true; } catch { return false; } })();

test('a new key is made once, kept with mode 0600 in a 0700 directory, and reused', async () => {
  const dir = path.join(fresh(), 'state');
  const a = await loadOrCreateKey(dir);
  assert.equal(a.created, true);
  assert.equal(statSync(path.join(dir, PRIVATE_KEY_FILE)).mode & 0o777, 0o600);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  const b = await loadOrCreateKey(dir);
  assert.equal(b.created, false);
  assert.equal(b.publicKey, a.publicKey);
  assert.equal(await b.privateKey(), await a.privateKey());
  assert.equal((await readKey(dir))?.publicKey, a.publicKey);
});

test('the public key is the X25519 public key of the stored private key (checked with wg pubkey)', { skip: !hasWg && 'wg not installed' }, async () => {
  const k = await loadOrCreateKey(fresh());
  const pub = execFileSync('wg', ['pubkey'], { input: await k.privateKey() }).toString().trim();
  assert.equal(pub, k.publicKey);
});

test('a key written by wg genkey is read and its public key derived', { skip: !hasWg && 'wg not installed' }, async () => {
  const dir = fresh();
  const priv = execFileSync('wg', ['genkey']).toString().trim();
  writeFileSync(path.join(dir, PRIVATE_KEY_FILE), priv + '\n', { mode: 0o644 });
  const k = await loadOrCreateKey(dir);
  assert.equal(k.created, false);
  assert.equal(k.publicKey, execFileSync('wg', ['pubkey'], { input: priv }).toString().trim());
  assert.equal(statSync(path.join(dir, PRIVATE_KEY_FILE)).mode & 0o777, 0o600, 'a too-open key file is tightened');
});

test('a corrupt key file is an error and is not replaced', async () => {
  const dir = fresh();
  writeFileSync(path.join(dir, PRIVATE_KEY_FILE), 'not a key\n', { mode: 0o600 });
  await assert.rejects(loadOrCreateKey(dir), /not a WireGuard private key/);
  assert.equal(readFileSync(path.join(dir, PRIVATE_KEY_FILE), 'utf8'), 'not a key\n');
});

test('rotate makes a different key; readKey is null without a key', async () => {
  const dir = fresh();
  assert.equal(await readKey(dir), null);
  const a = await loadOrCreateKey(dir);
  const b = await rotateKey(dir);
  assert.notEqual(a.publicKey, b.publicKey);
  assert.equal((await loadOrCreateKey(dir)).publicKey, b.publicKey);
});

test('concurrent creators agree on one key', async () => {
  const dir = fresh();
  const keys = await Promise.all([1, 2, 3, 4].map(() => loadOrCreateKey(dir)));
  assert.equal(new Set(keys.map((k) => k.publicKey)).size, 1);
});

test('withLock serializes holders and takes over a stale lock', async () => {
  const dir = fresh();
  const events: string[] = [];
  const job = (name: string) => withLock(dir, async () => {
    events.push(`${name}+`);
    await new Promise((r) => setTimeout(r, 30));
    events.push(`${name}-`);
  });
  await Promise.all([job('a'), job('b'), job('c')]);
  for (let i = 0; i < events.length; i += 2) assert.equal(events[i]!.slice(0, 1), events[i + 1]!.slice(0, 1), events.join(' '));
  writeFileSync(path.join(dir, 'apply.lock'), '999999999\n'); // no such process
  chmodSync(path.join(dir, 'apply.lock'), 0o600);
  assert.equal(await withLock(dir, async () => 'ran', 1000), 'ran');
  rmSync(dir, { recursive: true, force: true });
});
