// VAULT_BOOTSTRAP_TOKEN: each new leader proposes the first admin token, so
// a fresh cluster can be administered at all. Creating it is idempotent; a
// token of that name that was revoked or holds another value wins.
import { tokenSha256 } from '../auth/tokens.js';
import type { Logger } from '../log/logger.js';
import type { Replicator } from '../raft/replicator.js';
import { tokenBootstrap } from '../store/commands.js';
import type { StateReader } from '../store/queries.js';
import { BOOTSTRAP_TOKEN_NAME } from '../store/state-machine.js';

export async function proposeBootstrapToken(
  token: string,
  replicator: Replicator,
  reader: StateReader,
  logger: Logger,
  now: () => Date,
): Promise<void> {
  const digest = tokenSha256(token);
  let result;
  try {
    result = await replicator.propose(tokenBootstrap({ token_sha256: digest, created_at: now().toISOString() }));
  } catch (err) {
    logger.warn({ err: (err as Error).message }, `could not propose ${BOOTSTRAP_TOKEN_NAME}; the next leader will`);
    return;
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
