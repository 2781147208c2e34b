import {
  DecryptCommand, DescribeKeyCommand, DisabledException, GenerateDataKeyCommand, IncorrectKeyException,
  InvalidCiphertextException, KMSClient, KMSInternalException, KMSInvalidStateException, ListKeyRotationsCommand,
  NotFoundException, ReEncryptCommand,
} from '@aws-sdk/client-kms';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { AwsKms, isRetryable } from '../../../server/kms/aws.js';
import { KmsIntegrityError, KmsUnavailableError } from '../../../server/kms/provider.js';

const KEY_ARN = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const OLD_ARN = 'arn:aws:kms:eu-west-1:111122223333:key/0000abcd-12ab-34cd-56ef-1234567890ab';
const ctx = { secret: 'app/db', version: 7 };
const awsCtx = { secret: 'app/db', version: '7' };
const meta = { $metadata: { httpStatusCode: 400 } };

/** Errors shaped like the SDK's unmodeled service errors. */
function sdkError(name: string, httpStatusCode = 400, message = 'secret internal detail req-id=abc'): Error {
  return Object.assign(new Error(message), { name, $metadata: { httpStatusCode } });
}

const client = new KMSClient({ region: 'eu-west-1', credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test' } });
const kmsMock = mockClient(client);
let sleeps: number[];

function provider(keyId = KEY_ARN, maxAttempts = 4) {
  return new AwsKms({
    keyId, client, maxAttempts, baseDelayMs: 100, maxDelayMs: 1000,
    sleep: async (ms) => { sleeps.push(ms); }, random: () => 0.5,
  });
}

beforeEach(() => {
  kmsMock.reset();
  sleeps = [];
});

describe('AwsKms commands', () => {
  it('GenerateDataKey: AES_256, the configured key, string-valued context; returns a copy and zeroes the SDK buffer', async () => {
    const sdkPlain = new Uint8Array(32).fill(9);
    kmsMock.on(GenerateDataKeyCommand).resolves({ Plaintext: sdkPlain, CiphertextBlob: Uint8Array.of(1, 2, 3), KeyId: KEY_ARN });
    const dk = await provider('alias/coffer').generateDataKey(ctx);
    const input = kmsMock.commandCalls(GenerateDataKeyCommand)[0]!.args[0].input;
    expect(input).toEqual({ KeyId: 'alias/coffer', KeySpec: 'AES_256', EncryptionContext: awsCtx });
    expect(dk.plaintext).toEqual(new Uint8Array(32).fill(9));
    expect(sdkPlain).toEqual(new Uint8Array(32));
    expect(dk.wrapped).toEqual(Uint8Array.of(1, 2, 3));
    expect(dk.keyId).toBe(KEY_ARN); // the ARN KMS reports, not the alias: this is what gets stored
  });

  it('Decrypt uses the stored key id (not the current one) and the same context', async () => {
    kmsMock.on(DecryptCommand).resolves({ Plaintext: new Uint8Array(32).fill(4), KeyId: OLD_ARN });
    const dek = await provider(KEY_ARN).decrypt(Uint8Array.of(7, 7), OLD_ARN, ctx);
    expect(dek).toEqual(new Uint8Array(32).fill(4));
    expect(kmsMock.commandCalls(DecryptCommand)[0]!.args[0].input).toEqual({
      CiphertextBlob: Uint8Array.of(7, 7), KeyId: OLD_ARN, EncryptionContext: awsCtx,
    });
  });

  it('rejects a data key of the wrong length', async () => {
    kmsMock.on(DecryptCommand).resolves({ Plaintext: new Uint8Array(16), KeyId: KEY_ARN });
    await expect(provider().decrypt(Uint8Array.of(1), KEY_ARN, ctx)).rejects.toThrow(KmsUnavailableError);
  });

  it('ReEncrypt: stored id as source, current key as destination, same context on both sides', async () => {
    kmsMock.on(ReEncryptCommand).resolves({ CiphertextBlob: Uint8Array.of(9), KeyId: KEY_ARN });
    const re = await provider(KEY_ARN).reEncrypt(Uint8Array.of(5), OLD_ARN, ctx);
    expect(re).toEqual({ wrapped: Uint8Array.of(9), keyId: KEY_ARN });
    expect(kmsMock.commandCalls(ReEncryptCommand)[0]!.args[0].input).toEqual({
      CiphertextBlob: Uint8Array.of(5),
      SourceKeyId: OLD_ARN, SourceEncryptionContext: awsCtx,
      DestinationKeyId: KEY_ARN, DestinationEncryptionContext: awsCtx,
    });
  });

  it('ListKeyRotations paginates and returns rotations oldest first', async () => {
    kmsMock.on(ListKeyRotationsCommand, { KeyId: KEY_ARN, Marker: undefined }).resolves({
      Rotations: [{ KeyId: KEY_ARN, RotationDate: new Date('2025-03-01T00:00:00Z') }], Truncated: true, NextMarker: 'm1',
    });
    kmsMock.on(ListKeyRotationsCommand, { KeyId: KEY_ARN, Marker: 'm1' }).resolves({
      Rotations: [{ KeyId: KEY_ARN, RotationDate: new Date('2024-03-01T00:00:00Z') }], Truncated: false,
    });
    expect(await provider().listRotations()).toEqual([
      { rotatedAt: '2024-03-01T00:00:00.000Z', keyId: KEY_ARN },
      { rotatedAt: '2025-03-01T00:00:00.000Z', keyId: KEY_ARN },
    ]);
    expect(kmsMock.commandCalls(ListKeyRotationsCommand)).toHaveLength(2);
  });

  it('ListKeyRotations resolves an alias to the key ARN once (the API does not take aliases)', async () => {
    kmsMock.on(DescribeKeyCommand).resolves({ KeyMetadata: { KeyId: 'k', Arn: KEY_ARN } });
    kmsMock.on(ListKeyRotationsCommand).resolves({ Rotations: [] });
    const p = provider('alias/coffer');
    expect(await p.listRotations()).toEqual([]);
    expect(await p.listRotations()).toEqual([]);
    expect(kmsMock.commandCalls(DescribeKeyCommand)).toHaveLength(1);
    expect(kmsMock.commandCalls(ListKeyRotationsCommand)[0]!.args[0].input.KeyId).toBe(KEY_ARN);
  });
});

describe('AwsKms error mapping', () => {
  it.each([
    ['InvalidCiphertextException', new InvalidCiphertextException({ message: 'ctx mismatch', ...meta })],
    ['IncorrectKeyException', new IncorrectKeyException({ message: 'wrong key', ...meta })],
  ])('%s -> KmsIntegrityError, not retried', async (name, err) => {
    kmsMock.on(DecryptCommand).rejects(err);
    const e = await provider().decrypt(Uint8Array.of(1), KEY_ARN, ctx).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(KmsIntegrityError);
    expect((e as Error).message).toBe(`KMS Decrypt rejected the wrapped data key (${name})`);
    expect(kmsMock.commandCalls(DecryptCommand)).toHaveLength(1);
  });

  it.each([
    ['AccessDeniedException', sdkError('AccessDeniedException')],
    ['DisabledException', new DisabledException({ message: 'disabled', ...meta })],
    ['KMSInvalidStateException', new KMSInvalidStateException({ message: 'pending deletion', ...meta })],
    ['NotFoundException', new NotFoundException({ message: 'nope', ...meta })],
    ['UnrecognizedClientException', sdkError('UnrecognizedClientException')],
  ])('%s -> KmsUnavailableError at once (no retry)', async (name, err) => {
    kmsMock.on(DecryptCommand).rejects(err);
    const e = await provider().decrypt(Uint8Array.of(1), KEY_ARN, ctx).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(KmsUnavailableError);
    expect((e as Error).message).toBe(`KMS Decrypt failed (${name})`);
    expect(kmsMock.commandCalls(DecryptCommand)).toHaveLength(1);
    expect(sleeps).toEqual([]);
  });

  it('retries throttling with exponential backoff and jitter, then succeeds', async () => {
    kmsMock.on(DecryptCommand)
      .rejectsOnce(sdkError('ThrottlingException'))
      .rejectsOnce(sdkError('ThrottlingException'))
      .resolvesOnce({ Plaintext: new Uint8Array(32).fill(1), KeyId: KEY_ARN });
    const dek = await provider().decrypt(Uint8Array.of(1), KEY_ARN, ctx);
    expect(dek).toEqual(new Uint8Array(32).fill(1));
    expect(kmsMock.commandCalls(DecryptCommand)).toHaveLength(3);
    expect(sleeps).toEqual([50, 100]); // random 0.5 x (100, 200)
  });

  it('gives up after maxAttempts with KmsUnavailableError; delays are capped', async () => {
    kmsMock.on(GenerateDataKeyCommand).rejects(new KMSInternalException({ message: 'internal detail', $metadata: { httpStatusCode: 500 } }));
    const p = new AwsKms({ keyId: KEY_ARN, client, maxAttempts: 6, baseDelayMs: 100, maxDelayMs: 1000, sleep: async (ms) => { sleeps.push(ms); }, random: () => 0.999 });
    const e = await p.generateDataKey(ctx).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(KmsUnavailableError);
    expect((e as Error).message).toBe('KMS GenerateDataKey failed after 6 attempts (KMSInternalException)');
    expect(kmsMock.commandCalls(GenerateDataKeyCommand)).toHaveLength(6);
    expect(sleeps).toEqual([99, 199, 399, 799, 999]);
  });

  it('retries network errors and 5xx, and never leaks SDK messages', async () => {
    const net = Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:443'), { code: 'ECONNREFUSED' });
    kmsMock.on(DecryptCommand).rejects(net);
    const e = await provider().decrypt(Uint8Array.of(1), KEY_ARN, ctx).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(KmsUnavailableError);
    expect((e as Error).message).toBe('KMS Decrypt failed after 4 attempts (ECONNREFUSED)');
    expect((e as Error).message).not.toMatch(/10\.0\.0\.1|secret internal/);
    expect((e as Error).cause).toBeUndefined();
    expect(isRetryable(sdkError('SomethingNew', 503))).toBe(true);
    expect(isRetryable(sdkError('SomethingNew', 400))).toBe(false);
    expect(isRetryable(sdkError('DependencyTimeoutException'))).toBe(true);
    expect(isRetryable(sdkError('KeyUnavailableException'))).toBe(true);
  });

  it('an incomplete response is KmsUnavailableError', async () => {
    kmsMock.on(GenerateDataKeyCommand).resolves({ CiphertextBlob: Uint8Array.of(1), KeyId: KEY_ARN });
    await expect(provider().generateDataKey(ctx)).rejects.toThrow(KmsUnavailableError);
  });

  it('requires a key id', () => {
    expect(() => new AwsKms({ keyId: '', client })).toThrow(/VAULT_KMS_KEY_ID/);
  });
});

describe('AwsKms deadline', () => {
  it('stops retrying once the next attempt would start past the deadline', async () => {
    let clock = 0;
    kmsMock.on(DecryptCommand).callsFake(async () => {
      clock += 5_000; // every attempt times out after 5 s
      throw sdkError('TimeoutError', 0);
    });
    const p = new AwsKms({
      keyId: KEY_ARN, client, maxAttempts: 10, baseDelayMs: 100, maxDelayMs: 1000, deadlineMs: 10_000,
      now: () => clock, sleep: async (ms) => { clock += ms; sleeps.push(ms); }, random: () => 0.5,
    });
    await expect(p.decrypt(Uint8Array.of(1), KEY_ARN, ctx)).rejects.toThrow(KmsUnavailableError);
    // Two 5 s attempts reach the 10 s deadline: no third attempt, though ten were allowed.
    expect(kmsMock.commandCalls(DecryptCommand)).toHaveLength(2);
    expect(clock).toBeLessThan(15_000);
  });
});

