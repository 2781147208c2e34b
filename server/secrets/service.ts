// Secret operations on typed, validated input. Values are sealed on the node
// that received the request (leader or follower) before they are proposed, so
// the log and state.db only ever see ciphertext; the version number is fixed at
// seal time because it is the AAD.
import { ApiError } from '../api/errors.js';
import type { Replicator } from '../raft/replicator.js';
import type { StateReader, StoredVersion } from '../store/queries.js';
import type { ApplyResult } from '../store/results.js';
import { randomValue, type Charset } from './random-value.js';

export interface SealedVersion {
  ciphertext: Uint8Array;
  nonce: Uint8Array;
  wrappedDek: Uint8Array;
  kmsKeyId: string;
}

export interface VersionSealer {
  seal(name: string, version: number, value: Uint8Array): Promise<SealedVersion>;
  /** The value of a stored version as UTF-8 text; its plaintext bytes are zeroed before this returns. */
  openText(row: StoredVersion): string | Promise<string>;
}

export interface WriteResult {
  name: string;
  version: number;
  created: boolean;
  created_at: string;
}

/** Concurrent writers to one name race on current_version; the loser re-seals for the next version. */
const MAX_STALE_RETRIES = 8;

export class SecretService {
  /** Writes to one name queue up on this node, so local writers never race each other for a version. */
  private readonly nameLocks = new Map<string, Promise<unknown>>();

  constructor(
    private readonly reader: StateReader,
    private readonly replicator: Replicator,
    private readonly sealer: VersionSealer,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async read(name: string, version: number | undefined): Promise<{ name: string; version: number; value: string; created_at: string }> {
    const row = this.reader.getVersion(name, version);
    if (!row) throw new ApiError('not_found', version === undefined ? 'no such secret' : 'no such secret version');
    const value = await this.sealer.openText(row);
    return { name, version: row.version, value, created_at: row.created_at };
  }

  async put(name: string, value: string, cas: number | null, actor: string): Promise<WriteResult> {
    return this.serialized(name, () => this.putUnlocked(name, value, cas, actor));
  }

  private async serialized<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.nameLocks.get(name) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.nameLocks.set(name, tail);
    void tail.then(() => {
      if (this.nameLocks.get(name) === tail) this.nameLocks.delete(name);
    });
    return run;
  }

  private async putUnlocked(name: string, value: string, cas: number | null, actor: string): Promise<WriteResult> {
    const bytes = new Uint8Array(Buffer.from(value, 'utf8'));
    try {
      for (let attempt = 0; attempt < MAX_STALE_RETRIES; attempt++) {
        const current = this.reader.currentVersion(name);
        if (cas !== null && cas !== current) throw new ApiError('cas_mismatch', `current version is ${current}, not ${cas}`);
        const version = current + 1;
        const sealed = await this.sealer.seal(name, version, bytes);
        const created_at = this.now().toISOString();
        const result = await this.replicator.propose({
          t: 'secret.put',
          v: 1,
          name,
          version,
          expected_current: current,
          cas,
          ciphertext: sealed.ciphertext,
          nonce: sealed.nonce,
          wrapped_dek: sealed.wrappedDek,
          kms_key_id: sealed.kmsKeyId,
          created_at,
          created_by: actor,
        });
        if (result.ok) return { name, version, created: version === 1, created_at };
        if (result.code !== 'stale') throw applyError(result);
      }
      throw new ApiError('conflict', 'too many concurrent writes to this secret; retry');
    } finally {
      bytes.fill(0);
    }
  }

  /** A new version with a server-generated value; the secret must exist. */
  async rotate(name: string, length: number, charset: Charset, actor: string): Promise<WriteResult & { value: string }> {
    if (this.reader.currentVersion(name) === 0) throw new ApiError('not_found', 'no such secret');
    const value = randomValue(length, charset);
    const written = await this.put(name, value, null, actor);
    return { ...written, value };
  }

  async delete(name: string): Promise<void> {
    const result = await this.replicator.propose({ t: 'secret.delete', v: 1, name, at: this.now().toISOString() });
    if (!result.ok) throw applyError(result);
  }
}

export function applyError(result: Extract<ApplyResult, { ok: false }>): ApiError {
  switch (result.code) {
    case 'stale':
      return new ApiError('conflict', result.message);
    default:
      return new ApiError(result.code, result.message);
  }
}
