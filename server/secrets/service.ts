// Secret operations on typed, validated input. Values are sealed on the node
// that received the request (leader or follower) before they are proposed, so
// the log and state.db only ever see ciphertext; the version number is fixed at
// seal time because it is the AAD.
import { CasMismatchError, ConflictError, ForbiddenError, NotFoundError } from '../domain-errors.js';
import type { Replicator } from '../raft/replicator.js';
import { SECRET_PUT_WITH_MODE, secretDelete, secretPut, type WriteMode } from '../store/commands.js';
import type { VersionSealer } from '../sealing/version-sealer.js';
import type { StateReader } from '../store/queries.js';
import { refusalError } from '../store/results.js';
import { randomValue, type Charset } from './random-value.js';

export interface WriteResult {
  name: string;
  version: number;
  created: boolean;
  created_at: string;
}

/** Concurrent writers to one name race on current_version; the loser re-seals for the next version. */
const MAX_STALE_RETRIES = 8;

/** A write the token's mode does not allow on the secret as it stands (`needed` is the right it lacks). */
export class WriteModeError extends ForbiddenError {
  constructor(readonly needed: 'create' | 'update') {
    super(`this token may not ${needed} the secret`);
  }
}

/** Which voter, if any, does not advertise a command version (RaftReplicator knows; see DESIGN §5). */
interface CapabilityProbe {
  capabilityHoldout?(capability: string): string | null;
}

export class SecretService {
  /** Writes to one name queue up on this node, so local writers never race each other for a version. */
  private readonly nameLocks = new Map<string, Promise<unknown>>();

  constructor(
    private readonly reader: StateReader,
    private readonly replicator: Replicator & CapabilityProbe,
    private readonly sealer: VersionSealer,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async read(name: string, version: number | undefined): Promise<{ name: string; version: number; value: string; created_at: string }> {
    const row = this.reader.getVersion(name, version);
    if (!row) throw new NotFoundError(version === undefined ? 'no such secret' : 'no such secret version');
    const value = await this.sealer.openText(row);
    return { name, version: row.version, value, created_at: row.created_at };
  }

  /**
   * Writes the next version of `name`. `mode` is what the writer's token may
   * do (create, update or both); it is checked against the state the write is
   * sealed for, again at every retry, and carried in the command so the state
   * machine checks it against the state the write lands on. Throws
   * WriteModeError when the mode does not allow the write.
   */
  async put(name: string, value: string, cas: number | null, actor: string, mode: WriteMode): Promise<WriteResult> {
    return this.serialized(name, () => this.putUnlocked(name, value, cas, actor, mode));
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

  private async putUnlocked(name: string, value: string, cas: number | null, actor: string, mode: WriteMode): Promise<WriteResult> {
    const bytes = new Uint8Array(Buffer.from(value, 'utf8'));
    try {
      for (let attempt = 0; attempt < MAX_STALE_RETRIES; attempt++) {
        const current = this.reader.currentVersion(name);
        // Re-checked on every attempt: a create-only writer that lost the race to create must not write version 2.
        if (mode === 'create' && current > 0) throw new WriteModeError('update');
        if (mode === 'update' && current === 0) throw new WriteModeError('create');
        if (cas !== null && cas !== current) throw new CasMismatchError(`current version is ${current}, not ${cas}`);
        const version = current + 1;
        const sealed = await this.sealer.seal(name, version, bytes);
        const created_at = this.now().toISOString();
        // The mode travels with the write when every voter decodes it; secretPut says why either way is safe.
        const cmd = secretPut(
          {
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
          },
          mode,
          (this.replicator.capabilityHoldout?.(SECRET_PUT_WITH_MODE) ?? null) === null,
        );
        const result = await this.replicator.propose(cmd);
        if (result.ok) return { name, version, created: version === 1, created_at };
        // Refused by the mode or a concurrent write: look again (the check above then answers).
        if (result.code !== 'stale' && result.code !== 'forbidden') throw refusalError(result);
      }
      throw new ConflictError('too many concurrent writes to this secret; retry');
    } finally {
      bytes.fill(0);
    }
  }

  /** A new version with a server-generated value; the secret must exist (checked where the write lands, too). */
  async rotate(name: string, length: number, charset: Charset, actor: string): Promise<WriteResult & { value: string }> {
    const value = randomValue(length, charset);
    try {
      const written = await this.put(name, value, null, actor, 'update');
      return { ...written, value };
    } catch (err) {
      if (err instanceof WriteModeError) throw new NotFoundError('no such secret');
      throw err;
    }
  }

  async delete(name: string): Promise<void> {
    const result = await this.replicator.propose(secretDelete({ name, at: this.now().toISOString() }));
    if (!result.ok) throw refusalError(result);
  }
}
