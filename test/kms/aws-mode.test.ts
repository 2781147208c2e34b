// aws mode end to end against the KMS emulator: a real `coffer server` process
// gets its DEKs from GenerateDataKey (key given by alias), stores the key ARN
// KMS answered with, unwraps with Decrypt under the {secret, version} context,
// and maps KMS failures to the DESIGN §4 error codes.
import { DecryptCommand } from '@aws-sdk/client-kms';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectError } from '../helpers/assert.js';
import { client } from '../helpers/http.js';
import { allFiles } from '../helpers/node.js';
import { versionCount, versionRow } from '../helpers/state-db.js';
import { MotoServer, type MotoKey } from './moto.js';
import { metricSum, spawnAwsNode, timed, type AwsNode } from './node.js';

let moto: MotoServer;
let key: MotoKey;
let node: AwsNode;
const VALUE = 'aws-mode-value-1-do-not-leak';
const VALUE2 = 'aws-mode-value-2-do-not-leak';

beforeAll(async () => {
  moto = await MotoServer.start();
  key = await moto.createKey();
  node = await spawnAwsNode(moto.endpoint, key.alias);
});

afterAll(async () => {
  await node?.destroy();
  await moto?.close();
});

describe('aws mode against the KMS emulator', () => {
  it('PUT, GET, rotate and versions round-trip', async () => {
    const c = client(node.url, node.token);
    const put1 = await c.put('/v1/secrets/app/db-password', { value: VALUE });
    expect(put1.status).toBe(201);
    expect(put1.body).toMatchObject({ name: 'app/db-password', version: 1 });
    const put2 = await c.put('/v1/secrets/app/db-password', { value: VALUE2, cas: 1 });
    expect(put2.status).toBe(200);
    expect(put2.body.version).toBe(2);
    const rot = await c.post('/v1/secrets/app/db-password:rotate', { length: 40 });
    expect(rot.status).toBe(200);
    expect(rot.body.version).toBe(3);
    expect(rot.body.value).toHaveLength(40);

    const reader = client(node.url);
    expect((await reader.get('/v1/secrets/app/db-password')).body).toMatchObject({ version: 3, value: rot.body.value });
    expect((await reader.get('/v1/secrets/app/db-password?version=1')).body).toMatchObject({ version: 1, value: VALUE });
    expect((await reader.get('/v1/secrets/app/db-password?version=2')).body).toMatchObject({ version: 2, value: VALUE2 });
    expect((await reader.get('/v1/secrets/app/db-password?version=2&consistency=stale')).body.value).toBe(VALUE2);
    expectError(await reader.get('/v1/secrets/app/db-password?version=4'), 404, 'not_found');
    expect(await metricSum(node.url, 'coffer_kms_requests_total', { operation: 'generate_data_key', result: 'ok' })).toBe(3);
    expect(await metricSum(node.url, 'coffer_kms_requests_total', { operation: 'decrypt', result: 'ok' })).toBeGreaterThanOrEqual(3);
  });

  it('metadata shows the key ARN KMS answered with, not the configured alias', async () => {
    const meta = await client(node.url, node.token).get('/v1/metadata/app/db-password');
    expect(meta.status).toBe(200);
    expect(meta.body.current_version).toBe(3);
    expect(meta.body.versions).toHaveLength(3);
    for (const v of meta.body.versions) {
      expect(v.kms_key_id).toBe(key.arn);
      expect(v.kms_key_id).not.toContain('alias/');
    }
    expect(versionRow(node.dataDir, 'app/db-password', 1)?.kms_key_id).toBe(key.arn);
  });

  it('stores a KMS ciphertext blob that KMS decrypts only under the {secret, version} context', async () => {
    const row = versionRow(node.dataDir, 'app/db-password', 1)!;
    const ctx = { secret: 'app/db-password', version: '1' };
    const out = await moto.client.send(new DecryptCommand({ CiphertextBlob: row.wrapped_dek, KeyId: row.kms_key_id, EncryptionContext: ctx }));
    expect(out.KeyId).toBe(key.arn);
    const dek = Uint8Array.from(out.Plaintext!);
    expect(dek).toHaveLength(32);
    // The unwrapped DEK really is the one that sealed the value (XChaCha20-Poly1305, AAD `name:version`).
    const aad = new TextEncoder().encode('app/db-password:1');
    const plain = xchacha20poly1305(dek, row.nonce, aad).decrypt(row.ciphertext);
    expect(Buffer.from(plain).toString('utf8')).toBe(VALUE);
    dek.fill(0);

    for (const other of <Array<Record<string, string>>>[
      { secret: 'app/db-password', version: '2' },
      { secret: 'app/other', version: '1' },
      { secret: 'app/db-password' },
      {},
    ]) {
      await expect(
        moto.client.send(new DecryptCommand({ CiphertextBlob: row.wrapped_dek, KeyId: row.kms_key_id, EncryptionContext: other })),
      ).rejects.toMatchObject({ name: 'InvalidCiphertextException' });
    }
  });

  it('no file under the data dir contains a plaintext value', async () => {
    const rot = await client(node.url).get('/v1/secrets/app/db-password');
    const needles = [VALUE, VALUE2, rot.body.value as string];
    for (const f of allFiles(node.dataDir)) {
      const bytes = fs.readFileSync(f);
      for (const n of needles) {
        expect(bytes.includes(Buffer.from(n)), `${path.basename(f)} contains a plaintext value`).toBe(false);
        expect(bytes.includes(Buffer.from(n, 'utf16le')), `${path.basename(f)} contains a plaintext value (utf16)`).toBe(false);
      }
    }
  });

  it('a flipped byte of wrapped_dek is a 500 integrity_error, and other versions still read', async () => {
    const c = client(node.url, node.token);
    expect((await c.put('/v1/secrets/tamper/me', { value: 'tamper-v1-do-not-leak' })).status).toBe(201);
    expect((await c.put('/v1/secrets/tamper/me', { value: 'tamper-v2-do-not-leak' })).status).toBe(200);
    // Read once so an unwrapped DEK for the original bytes sits in the cache: the tampered row must not hit it.
    expect((await c.get('/v1/secrets/tamper/me?version=2')).body.value).toBe('tamper-v2-do-not-leak');
    await node.stop();
    const db = new Database(path.join(node.dataDir, 'state.db'));
    const row = db.prepare('SELECT wrapped_dek FROM secret_versions WHERE name = ? AND version = 2').get('tamper/me') as { wrapped_dek: Buffer };
    const b = Buffer.from(row.wrapped_dek);
    b[b.length - 1] = b[b.length - 1]! ^ 0x01; // in the AES-GCM body KMS authenticates
    expect(db.prepare('UPDATE secret_versions SET wrapped_dek = ? WHERE name = ? AND version = 2').run(b, 'tamper/me').changes).toBe(1);
    db.close();
    await node.restart();

    const reader = client(node.url);
    for (const p of ['/v1/secrets/tamper/me', '/v1/secrets/tamper/me?version=2', '/v1/secrets/tamper/me?version=2&consistency=stale']) {
      const res = await reader.get(p);
      expectError(res, 500, 'integrity_error');
      expect(res.text).not.toContain('do-not-leak');
      expect(res.text).not.toMatch(/InvalidCiphertext|arn:aws|alias\//);
    }
    expect((await reader.get('/v1/secrets/tamper/me?version=1')).body.value).toBe('tamper-v1-do-not-leak');
    expect(await metricSum(node.url, 'coffer_kms_requests_total', { operation: 'decrypt', result: 'integrity_error' })).toBeGreaterThanOrEqual(1);
    // The tampered row is not "repaired" by anything: it stays bad, and the rest of the vault works.
    expect((await client(node.url, node.token).put('/v1/secrets/tamper/me', { value: 'tamper-v3-do-not-leak' })).body.version).toBe(3);
    expect((await reader.get('/v1/secrets/tamper/me')).body.value).toBe('tamper-v3-do-not-leak');
  });
});

describe('aws mode with a key id KMS does not know', () => {
  let bad: AwsNode;
  beforeAll(async () => {
    bad = await spawnAwsNode(moto.endpoint, 'alias/coffer-no-such-key');
  });
  afterAll(async () => {
    await bad?.destroy();
  });

  it('writes fail fast with 503 kms_unavailable, leaking no SDK detail, and store nothing', async () => {
    const c = client(bad.url, bad.token);
    for (const send of [
      () => c.put('/v1/secrets/app/x', { value: 'never-stored-do-not-leak' }),
      () => c.put('/v1/secrets/app/x', { value: 'never-stored-do-not-leak', cas: 0 }),
    ]) {
      const { value: res, ms } = await timed(send);
      expectError(res, 503, 'kms_unavailable');
      expect(res.body.error.message).toBe('KMS is unavailable');
      expect(res.text).not.toMatch(/NotFound|AccessDenied|Exception|alias\/|arn:|coffer-no-such-key|RequestId|\$metadata|127\.0\.0\.1/i);
      expect(res.text).not.toContain('do-not-leak');
      expect(ms).toBeLessThan(5_000); // not retried: NotFoundException is not transient
    }
    expectError(await c.get('/v1/metadata/app/x'), 404, 'not_found');
    expect(versionCount(bad.dataDir)).toBe(0);
    expect(await metricSum(bad.url, 'coffer_kms_requests_total', { operation: 'generate_data_key', result: 'unavailable' })).toBe(2);
    // The exception name goes to the log only at most; the request still answered with the fixed vocabulary.
    expect(bad.proc.output()).not.toContain('never-stored-do-not-leak');
  });

  it('the node stays healthy and serves the rest of its API', async () => {
    const c = client(bad.url, bad.token);
    expect((await c.get('/v1/health')).status).toBe(200);
    expect((await c.get('/v1/ready')).status).toBe(200);
    expect((await c.get('/v1/tokens')).status).toBe(200);
  });
});
