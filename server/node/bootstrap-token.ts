// VAULT_BOOTSTRAP_TOKEN: each new leader proposes the first admin token, so
// a fresh cluster can be administered at all. Creating it is idempotent; a
// token of that name that was revoked or holds another value wins.
import { setTimeout as sleep } from 'node:timers/promises';
import { tokenSha256 } from '../auth/tokens.js';
import type { Logger } from '../log/logger.js';
import { NoLeaderError, type Replicator } from '../raft/replicator.js';
import type { ApplyResult } from '../store/results.js';
import { tokenBootstrap } from '../store/commands.js';
import type { StateReader } from '../store/queries.js';
import { BOOTSTRAP_TOKEN_NAME } from '../store/state-machine.js';

export interface BootstrapTokenOptions {
  /** Aborted when the node closes: no retry outlives it. */
  signal: AbortSignal;
  /** First pause between attempts; doubles up to 4x (a cluster that can commit again gets its token within seconds). */
  retryMs?: number;
}

/**
 * Proposes the token, retrying while this node still leads: a first attempt
 * can be refused for a while (no quorum to commit it yet, as when a pod's
 * network comes up late), and a leader that stays leader gets no second call.
 */
export async function proposeBootstrapToken(
  token: string,
  replicator: Replicator,
  reader: StateReader,
  logger: Logger,
  now: () => Date,
  { signal, retryMs = 500 }: BootstrapTokenOptions,
): Promise<void> {
  const digest = tokenSha256(token);
  let result: ApplyResult;
  for (let attempt = 0; ; attempt++) {
    try {
      result = await replicator.propose(tokenBootstrap({ token_sha256: digest, created_at: now().toISOString() }));
      break;
    } catch (err) {
      if (signal.aborted) return;
      // Only a cluster that cannot commit yet is worth waiting for; a storage fault is reported once.
      if (!(err instanceof NoLeaderError) || !replicator.isLeader()) {
        logger.warn({ err: (err as Error).message }, `could not propose ${BOOTSTRAP_TOKEN_NAME}; the next leader will`);
        return;
      }
      if (attempt === 0) logger.warn({ err: (err as Error).message }, `could not propose ${BOOTSTRAP_TOKEN_NAME} yet; retrying while this node leads`);
      try {
        await sleep(retryMs * 2 ** Math.min(attempt, 2), undefined, { signal });
      } catch {
        return; // the node closed
      }
    }
  }
  if (!result.ok) {
    logger.error({ reason: result.message }, `could not create ${BOOTSTRAP_TOKEN_NAME}`);
  } else if (result.note === 'revoked') {
    logger.warn(`${BOOTSTRAP_TOKEN_NAME} was revoked and stays revoked; VAULT_BOOTSTRAP_TOKEN is ignored`);
  } else if (result.note === 'exists' && !reader.tokenByHash(digest)) {
    logger.warn(`${BOOTSTRAP_TOKEN_NAME} exists with a different value; VAULT_BOOTSTRAP_TOKEN is ignored`);
  } else if (result.created) {
    logger.info(`created token ${BOOTSTRAP_TOKEN_NAME} (role admin); mint per-service tokens with it, then revoke it`);
  }
}
