// The one interface every KMS mode implements. DEKs travel as Uint8Array only
// (never strings) so callers can zero them when done.

/** Bound into every wrap/unwrap so a wrapped DEK cannot be replayed onto another version. */
export interface EncryptionContext {
  secret: string;
  version: number;
}

export interface GeneratedDataKey {
  /** 32-byte DEK. The caller zeroes it after sealing. */
  plaintext: Uint8Array;
  /** The DEK wrapped by the KMS; the only form that is stored. */
  wrapped: Uint8Array;
  /** Key id that wrapped it (stored per version as `kms_key_id`). */
  keyId: string;
}

export interface ReEncrypted {
  wrapped: Uint8Array;
  keyId: string;
}

export interface KeyRotation {
  /** ISO-8601 time of the rotation. */
  rotatedAt: string;
  keyId: string;
}

export interface KmsProvider {
  readonly mode: 'local' | 'aws';
  /** Key id new data keys are generated under. */
  readonly currentKeyId: string;
  generateDataKey(ctx: EncryptionContext): Promise<GeneratedDataKey>;
  /** Unwraps with the key id stored beside the wrapped DEK. Throws KmsIntegrityError when the wrap does not authenticate. */
  decrypt(wrapped: Uint8Array, keyId: string, ctx: EncryptionContext): Promise<Uint8Array>;
  /** Re-wraps onto the current key material without exposing the DEK to the caller. */
  reEncrypt(wrapped: Uint8Array, keyId: string, ctx: EncryptionContext): Promise<ReEncrypted>;
  /** Rotations of the current key, oldest first. */
  listRotations(): Promise<KeyRotation[]>;
}

/** KMS could not be reached or refused service (maps to 503 kms_unavailable). Message never carries key material. */
export class KmsUnavailableError extends Error {
  override readonly name = 'KmsUnavailableError';
}

/** The wrapped DEK did not authenticate under the stored key id (maps to 500 integrity_error). */
export class KmsIntegrityError extends Error {
  override readonly name = 'KmsIntegrityError';
}
