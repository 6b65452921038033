// The node's WireGuard key pair, kept on disk (mode 0600 in a 0700 directory) and reused across restarts
// and reboots. The private key never leaves this module except as the input of `wg set ... private-key
// /dev/stdin`; it is never printed, logged, or put in a plan.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { promises as fs, constants as fsc } from 'node:fs';
import path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { parseKey, type WgKey } from '../core/key.js';

export const PRIVATE_KEY_FILE = 'private.key';

/** PKCS#8 DER prefix of an X25519 private key; the 32 raw key bytes follow. */
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

export interface NodeKey {
  readonly publicKey: WgKey;
  /** The private key in WireGuard's base64 form, for `wg set ... private-key /dev/stdin` only. */
  readonly privateKey: () => Promise<string>;
  readonly created: boolean;
  readonly path: string;
}

export class KeyStoreError extends Error {
  override readonly name = 'KeyStoreError';
}

function publicFromPrivate(raw: Buffer): WgKey {
  const priv = createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, raw]), format: 'der', type: 'pkcs8' });
  const jwk = createPublicKey(priv).export({ format: 'jwk' }) as { x?: string };
  const pub = Buffer.from(jwk.x ?? '', 'base64url').toString('base64');
  const k = parseKey(pub);
  if (E.isLeft(k)) throw new KeyStoreError('could not derive the public key');
  return k.right;
}

function decodePrivate(text: string, file: string): Buffer {
  const t = text.trim();
  const raw = Buffer.from(t, 'base64');
  if (raw.length !== 32 || raw.toString('base64') !== t) {
    throw new KeyStoreError(`${file}: not a WireGuard private key (want 32 bytes in base64); refusing to replace it`);
  }
  return raw;
}

function generateRaw(): Buffer {
  const { privateKey } = generateKeyPairSync('x25519');
  const jwk = privateKey.export({ format: 'jwk' }) as { d?: string };
  return Buffer.from(jwk.d ?? '', 'base64url');
}

async function writeKeyFile(file: string, raw: Buffer): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await tmpWrite(tmp, raw);
  await fs.rename(tmp, file);
}

async function ensureDir(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
}

function nodeKey(file: string, raw: Buffer, created: boolean): NodeKey {
  const publicKey = publicFromPrivate(raw);
  // Re-read on use: nothing keeps the secret in long-lived memory structures or closures' printable state.
  return {
    publicKey,
    created,
    path: file,
    privateKey: async () => decodePrivate(await fs.readFile(file, 'utf8'), file).toString('base64'),
  };
}

/** Loads the node's key from `stateDir`, or makes one if there is none. Fixes a too-open file mode. */
export async function loadOrCreateKey(stateDir: string): Promise<NodeKey> {
  const file = path.join(stateDir, PRIVATE_KEY_FILE);
  try {
    const st = await fs.stat(file);
    if ((st.mode & 0o077) !== 0) await fs.chmod(file, 0o600);
    return nodeKey(file, decodePrivate(await fs.readFile(file, 'utf8'), file), false);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await ensureDir(stateDir);
  const raw = generateRaw();
  const tmp = path.join(stateDir, `.${PRIVATE_KEY_FILE}.new-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await tmpWrite(tmp, raw);
    await fs.link(tmp, file); // atomic "create if absent"
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return loadOrCreateKey(stateDir); // another process won the race: use its key
  } finally {
    await fs.rm(tmp, { force: true });
  }
  return nodeKey(file, raw, true);
}

async function tmpWrite(tmp: string, raw: Buffer): Promise<void> {
  const fh = await fs.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
  try {
    await fh.writeFile(raw.toString('base64') + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Reads the node's key without creating one; null when there is none (or it cannot be read). */
export async function readKey(stateDir: string): Promise<NodeKey | null> {
  const file = path.join(stateDir, PRIVATE_KEY_FILE);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return null;
  }
  return nodeKey(file, decodePrivate(text, file), false);
}

/** Replaces the node's key with a new one (on purpose only: every peer must learn the new public key). */
export async function rotateKey(stateDir: string): Promise<NodeKey> {
  await ensureDir(stateDir);
  const file = path.join(stateDir, PRIVATE_KEY_FILE);
  const raw = generateRaw();
  await writeKeyFile(file, raw);
  return nodeKey(file, raw, true);
}
