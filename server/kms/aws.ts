// `VAULT_KMS_MODE=aws`: DEKs from AWS KMS. Region, credentials and endpoint
// come from the standard AWS SDK environment (AWS_REGION, AWS_ENDPOINT_URL_KMS,
// IRSA, …), never from VAULT_* variables.
//
// Retries are done here, not by the SDK (client maxAttempts = 1): one place
// decides what is retryable, the backoff is testable with an injected sleep,
// and SDK retries would otherwise multiply ours.
//
// Error mapping (decided here, DESIGN §4 codes in brackets):
//   InvalidCiphertextException, IncorrectKeyException
//       -> KmsIntegrityError [integrity_error]: the wrapped DEK does not
//          authenticate under the stored key id + context. Never retried.
//   throttling (ThrottlingException, LimitExceededException, …), KMSInternalException,
//   DependencyTimeoutException, KeyUnavailableException, HTTP 5xx/429, timeouts,
//   network errors (ECONNRESET, ENOTFOUND, …)
//       -> retried with capped exponential backoff + full jitter, then KmsUnavailableError.
//   everything else (AccessDeniedException, DisabledException, KMSInvalidStateException,
//   NotFoundException, InvalidKeyUsageException, credential/config errors, …)
//       -> KmsUnavailableError at once [kms_unavailable]: the vault cannot get
//          service, but retrying will not help.
// Messages carry only the operation and the exception name, never SDK
// messages, request ids or key material; no `cause` is attached.

import {
  DecryptCommand, DescribeKeyCommand, GenerateDataKeyCommand, KMSClient, ListKeyRotationsCommand, ReEncryptCommand,
} from '@aws-sdk/client-kms';
import {
  KmsIntegrityError, KmsUnavailableError,
  type EncryptionContext, type GeneratedDataKey, type KeyRotation, type KmsProvider, type ReEncrypted,
} from './provider.js';

export interface AwsKmsOptions {
  /** VAULT_KMS_KEY_ID: key id, ARN, alias name or alias ARN. */
  keyId: string;
  /** Injected for tests; by default built from the SDK environment. */
  client?: KMSClient;
  /** Total tries per call, including the first (default 5). */
  maxAttempts?: number;
  baseDelayMs?: number; // default 100
  maxDelayMs?: number; // default 5000
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  /** No retry starts after this long since the call began (default 10 s), so a hung KMS answers 503 in bounded time. */
  deadlineMs?: number;
  now?: () => number;
}

const INTEGRITY = new Set(['InvalidCiphertextException', 'IncorrectKeyException']);
const RETRYABLE = new Set([
  'ThrottlingException', 'Throttling', 'ThrottledException', 'TooManyRequestsException', 'LimitExceededException',
  'RequestLimitExceeded', 'RequestThrottled', 'RequestThrottledException', 'SlowDown',
  'KMSInternalException', 'DependencyTimeoutException', 'KeyUnavailableException', 'InternalFailure',
  'ServiceUnavailable', 'ServiceUnavailableException', 'TimeoutError', 'RequestTimeout', 'RequestTimeoutException',
]);
const NETWORK_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

interface SdkErrorShape {
  name?: unknown;
  code?: unknown;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
}

/** Exception name safe to show: a bare identifier, else a generic label. */
function errorName(err: unknown): string {
  const e = (err ?? {}) as SdkErrorShape;
  for (const c of [e.name, e.code]) if (typeof c === 'string' && /^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(c) && c !== 'Error') return c;
  return 'UnknownError';
}

export function isRetryable(err: unknown): boolean {
  const e = (err ?? {}) as SdkErrorShape;
  if (typeof e.name === 'string' && RETRYABLE.has(e.name)) return true;
  if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return true;
  if (e.$retryable) return true;
  const status = e.$metadata?.httpStatusCode;
  return status === 429 || (typeof status === 'number' && status >= 500);
}

export function mapKmsError(op: string, err: unknown, attempts: number): Error {
  const name = errorName(err);
  if (INTEGRITY.has(name)) return new KmsIntegrityError(`KMS ${op} rejected the wrapped data key (${name})`);
  const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
  return new KmsUnavailableError(`KMS ${op} failed${tries} (${name})`);
}

const sleepReal = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const ALIAS = /(^alias\/)|(:alias\/)/;

export class AwsKms implements KmsProvider {
  readonly mode = 'aws' as const;
  readonly currentKeyId: string;
  private readonly client: KMSClient;
  private readonly maxAttempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly random: () => number;
  private readonly ownsClient: boolean;
  private readonly deadlineMs: number;
  private readonly now: () => number;
  private resolvedKeyArn: string | undefined;

  constructor(opts: AwsKmsOptions) {
    if (!opts.keyId) throw new Error('VAULT_KMS_KEY_ID is required when VAULT_KMS_MODE=aws');
    this.currentKeyId = opts.keyId;
    this.ownsClient = !opts.client;
    this.client = opts.client ?? new KMSClient({
      maxAttempts: 1,
      // throwOnRequestTimeout: without it the SDK only logs a warning and an unanswering KMS hangs the call.
      requestHandler: { connectionTimeout: 2_000, requestTimeout: 5_000, socketTimeout: 5_000, throwOnRequestTimeout: true },
    });
    this.maxAttempts = Math.max(1, opts.maxAttempts ?? 5);
    this.baseDelayMs = opts.baseDelayMs ?? 100;
    this.maxDelayMs = opts.maxDelayMs ?? 5_000;
    this.sleep = opts.sleep ?? sleepReal;
    this.random = opts.random ?? Math.random;
    this.deadlineMs = opts.deadlineMs ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  async generateDataKey(ctx: EncryptionContext): Promise<GeneratedDataKey> {
    const out = await this.call('GenerateDataKey', () => this.client.send(new GenerateDataKeyCommand({
      KeyId: this.currentKeyId, KeySpec: 'AES_256', EncryptionContext: awsContext(ctx),
    })));
    if (!out.Plaintext || !out.CiphertextBlob || !out.KeyId) throw new KmsUnavailableError('KMS GenerateDataKey returned an incomplete response');
    return { plaintext: takeKey(out.Plaintext, 'GenerateDataKey'), wrapped: Uint8Array.from(out.CiphertextBlob), keyId: out.KeyId };
  }

  async decrypt(wrapped: Uint8Array, keyId: string, ctx: EncryptionContext): Promise<Uint8Array> {
    const out = await this.call('Decrypt', () => this.client.send(new DecryptCommand({
      CiphertextBlob: wrapped, KeyId: keyId, EncryptionContext: awsContext(ctx),
    })));
    if (!out.Plaintext) throw new KmsUnavailableError('KMS Decrypt returned an incomplete response');
    return takeKey(out.Plaintext, 'Decrypt');
  }

  async reEncrypt(wrapped: Uint8Array, keyId: string, ctx: EncryptionContext): Promise<ReEncrypted> {
    const c = awsContext(ctx);
    const out = await this.call('ReEncrypt', () => this.client.send(new ReEncryptCommand({
      CiphertextBlob: wrapped,
      SourceKeyId: keyId,
      SourceEncryptionContext: c,
      DestinationKeyId: this.currentKeyId,
      DestinationEncryptionContext: c,
    })));
    if (!out.CiphertextBlob || !out.KeyId) throw new KmsUnavailableError('KMS ReEncrypt returned an incomplete response');
    return { wrapped: Uint8Array.from(out.CiphertextBlob), keyId: out.KeyId };
  }

  async listRotations(): Promise<KeyRotation[]> {
    const keyId = await this.keyArnForRotations();
    const rotations: KeyRotation[] = [];
    let marker: string | undefined;
    do {
      const page = await this.call('ListKeyRotations', () => this.client.send(new ListKeyRotationsCommand({ KeyId: keyId, Marker: marker })));
      for (const r of page.Rotations ?? []) {
        if (r.RotationDate) rotations.push({ rotatedAt: r.RotationDate.toISOString(), keyId: r.KeyId ?? keyId });
      }
      marker = page.Truncated ? page.NextMarker : undefined;
    } while (marker);
    return rotations.sort((a, b) => a.rotatedAt.localeCompare(b.rotatedAt));
  }

  /** Releases the HTTP agent of a client this class created. */
  close(): void {
    if (this.ownsClient) this.client.destroy();
  }

  /** ListKeyRotations does not accept aliases, so an alias is resolved once via DescribeKey. */
  private async keyArnForRotations(): Promise<string> {
    if (!ALIAS.test(this.currentKeyId)) return this.currentKeyId;
    if (!this.resolvedKeyArn) {
      const out = await this.call('DescribeKey', () => this.client.send(new DescribeKeyCommand({ KeyId: this.currentKeyId })));
      const arn = out.KeyMetadata?.Arn;
      if (!arn) throw new KmsUnavailableError('KMS DescribeKey returned an incomplete response');
      this.resolvedKeyArn = arn;
    }
    return this.resolvedKeyArn;
  }

  /** Runs one KMS operation with bounded retries; maps the final error. */
  private async call<T>(op: string, send: () => Promise<T>): Promise<T> {
    const started = this.now();
    for (let attempt = 1; ; attempt++) {
      try {
        return await send();
      } catch (err) {
        if (attempt >= this.maxAttempts || !isRetryable(err)) throw mapKmsError(op, err, attempt);
        // Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))].
        const ceiling = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (attempt - 1));
        const delay = Math.floor(this.random() * ceiling);
        if (this.now() - started + delay >= this.deadlineMs) throw mapKmsError(op, err, attempt);
        await this.sleep(delay);
      }
    }
  }
}

/** KMS encryption context values are strings. */
function awsContext(ctx: EncryptionContext): Record<string, string> {
  return { secret: ctx.secret, version: String(ctx.version) };
}

/** Copies the SDK's plaintext into a buffer we own, then zeroes the SDK's. */
function takeKey(plaintext: Uint8Array, op: string): Uint8Array {
  try {
    if (plaintext.length !== 32) throw new KmsUnavailableError(`KMS ${op} returned a data key of unexpected length`);
    return Uint8Array.from(plaintext);
  } finally {
    plaintext.fill(0);
  }
}
