// `VAULT_KMS_MODE=local`: DEKs wrapped with XChaCha20-Poly1305 under a 32-byte
// master key held in this process (development and tests; DESIGN §1).
//
// Wrapped DEK layout: 0x01 || nonce (24) || ciphertext (32) || tag (16).
// The AAD binds the key id and the encryption context, so a wrapped DEK moved
// to another secret/version (or presented with another key id) fails.
// keyId = `local:` + first 16 hex of sha256(master key): a record wrapped under
// a different master key is recognised as such (KmsIntegrityError) instead of
// surfacing as a generic decryption failure.

import { createHash, randomFillSync } from 'node:crypto';
import { IntegrityError } from '../crypto/errors.js';
import { randomArray } from '../crypto/random-pool.js';
import { NONCE_BYTES, openXChaCha, sealXChaCha } from '../crypto/xchacha.js';
import {
  KmsIntegrityError, KmsUnavailableError,
  type EncryptionContext, type GeneratedDataKey, type KeyRotation, type KmsProvider, type ReEncrypted,
} from './provider.js';

export const LOCAL_MASTER_KEY_BYTES = 32;
const WRAP_FORMAT = 0x01;
const WRAPPED_BYTES = 1 + NONCE_BYTES + 32 + 16;

/**
 * Parses VAULT_LOCAL_MASTER_KEY (standard base64 of exactly 32 bytes;
 * surrounding whitespace such as a trailing newline is ignored).
 * The message never repeats the value.
 */
export function parseLocalMasterKey(b64: string): Uint8Array {
  const s = b64.trim();
  if (s.length === 0 || s.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(s)) {
    throw new Error('VAULT_LOCAL_MASTER_KEY must be base64 of exactly 32 bytes (value is not valid base64)');
  }
  const buf = Buffer.from(s, 'base64');
  try {
    if (buf.length !== LOCAL_MASTER_KEY_BYTES) {
      throw new Error(`VAULT_LOCAL_MASTER_KEY must be base64 of exactly 32 bytes (decodes to ${buf.length} bytes)`);
    }
    return new Uint8Array(buf); // own copy, outside Node's shared Buffer pool
  } finally {
    buf.fill(0);
  }
}

/** A random master key for a node started without VAULT_LOCAL_MASTER_KEY (data is lost on restart). */
export function generateEphemeralMasterKey(): Uint8Array {
  return randomFillSync(new Uint8Array(LOCAL_MASTER_KEY_BYTES));
}

export function localKeyId(masterKey: Uint8Array): string {
  return `local:${createHash('sha256').update(masterKey).digest('hex').slice(0, 16)}`;
}

/** Canonical AAD: fixed field order, so the same context always gives the same bytes. */
function wrapAad(keyId: string, ctx: EncryptionContext): Uint8Array {
  return new TextEncoder().encode(`coffer-local-dek-v1\n${keyId}\n${JSON.stringify({ secret: ctx.secret, version: ctx.version })}`);
}

export class LocalKms implements KmsProvider {
  readonly mode = 'local' as const;
  private keys = new Map<string, Uint8Array>(); // keyId -> master key; old ones kept after rotate()
  private rotations: KeyRotation[] = [];
  private current: string;
  private closed = false;

  /** Copies `masterKey`; the caller may zero its own buffer afterwards. */
  constructor(masterKey: Uint8Array, private readonly now: () => Date = () => new Date()) {
    this.current = this.addKey(masterKey);
  }

  get currentKeyId(): string {
    return this.current;
  }

  async generateDataKey(ctx: EncryptionContext): Promise<GeneratedDataKey> {
    const dek = randomArray(32);
    return { plaintext: dek, wrapped: this.wrap(dek, this.current, ctx), keyId: this.current };
  }

  async decrypt(wrapped: Uint8Array, keyId: string, ctx: EncryptionContext): Promise<Uint8Array> {
    return this.unwrap(wrapped, keyId, ctx);
  }

  async reEncrypt(wrapped: Uint8Array, keyId: string, ctx: EncryptionContext): Promise<ReEncrypted> {
    const dek = this.unwrap(wrapped, keyId, ctx);
    try {
      return { wrapped: this.wrap(dek, this.current, ctx), keyId: this.current };
    } finally {
      dek.fill(0);
    }
  }

  async listRotations(): Promise<KeyRotation[]> {
    return this.rotations.map((r) => ({ ...r }));
  }

  /**
   * Test/dev only: switches to a new master key (random unless given) while
   * keeping the old ones for decrypt, like a manual CMK rotation. Nodes of a
   * real cluster must share one key, so nothing in production calls this.
   */
  rotate(newMasterKey: Uint8Array = generateEphemeralMasterKey()): string {
    this.assertOpen();
    this.current = this.addKey(newMasterKey);
    this.rotations.push({ rotatedAt: this.now().toISOString(), keyId: this.current });
    return this.current;
  }

  /** Zeroes every master key copy; later calls fail with KmsUnavailableError. */
  close(): void {
    for (const k of this.keys.values()) k.fill(0);
    this.keys.clear();
    this.closed = true;
  }

  private addKey(masterKey: Uint8Array): string {
    if (masterKey.length !== LOCAL_MASTER_KEY_BYTES) throw new RangeError('local master key must be 32 bytes');
    const id = localKeyId(masterKey);
    if (!this.keys.has(id)) this.keys.set(id, masterKey.slice());
    return id;
  }

  private assertOpen(): void {
    if (this.closed) throw new KmsUnavailableError('local KMS is closed');
  }

  private wrap(dek: Uint8Array, keyId: string, ctx: EncryptionContext): Uint8Array {
    this.assertOpen();
    const key = this.keys.get(keyId)!;
    const nonce = randomArray(NONCE_BYTES);
    const sealed = sealXChaCha(key, nonce, dek, wrapAad(keyId, ctx));
    const out = new Uint8Array(1 + NONCE_BYTES + sealed.length);
    out[0] = WRAP_FORMAT;
    out.set(nonce, 1);
    out.set(sealed, 1 + NONCE_BYTES);
    return out;
  }

  private unwrap(wrapped: Uint8Array, keyId: string, ctx: EncryptionContext): Uint8Array {
    this.assertOpen();
    const key = this.keys.get(keyId);
    if (!key) throw new KmsIntegrityError('wrapped data key names a local master key this node does not hold');
    if (wrapped.length !== WRAPPED_BYTES || wrapped[0] !== WRAP_FORMAT) {
      throw new KmsIntegrityError('wrapped data key is malformed');
    }
    try {
      return openXChaCha(key, wrapped.subarray(1, 1 + NONCE_BYTES), wrapped.subarray(1 + NONCE_BYTES), wrapAad(keyId, ctx));
    } catch (err) {
      if (err instanceof IntegrityError) throw new KmsIntegrityError('wrapped data key failed authentication');
      throw err;
    }
  }
}
