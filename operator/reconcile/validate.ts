// The validate phase: an invalid spec gets a Degraded condition and a Warning
// event, and nothing is applied until it is fixed.
import type { VaultCluster, VaultClusterStatus } from '../api/types.js';
import { formatIssues, validateVaultCluster } from '../api/validate.js';
import { setCondition } from './conditions.js';
import { recordEvents, type Pass, type PassDeps } from './pass.js';
import { carryStatus, writeStatus } from './stored-status.js';

/** The VaultCluster with its defaults applied, or null (reported) when its spec is invalid. */
export async function validateSpec(deps: PassDeps, pass: Pass): Promise<VaultCluster | null> {
  const valid = validateVaultCluster(pass.object);
  if (valid.ok) return valid.value;
  const { generation, now } = pass;
  const message = `invalid spec:\n${formatIssues(valid.errors)}`;
  const conditions = setCondition(pass.storedConditions, { type: 'Degraded', status: 'True', reason: 'InvalidSpec', message }, generation, now);
  const status: VaultClusterStatus = {
    ...carryStatus(pass.stored),
    observedGeneration: generation,
    conditions: setCondition(conditions, { type: 'Progressing', status: 'False', reason: 'InvalidSpec', message: 'nothing is applied until the spec is valid' }, generation, now),
  };
  await writeStatus(deps, pass, status);
  await recordEvents(deps, pass, [{ type: 'Warning', reason: 'InvalidSpec', message: message.replace(/\n\s*/g, ' ') }]);
  deps.log.warn({ vaultcluster: pass.key, issues: valid.errors }, 'invalid VaultCluster spec; not applying');
  return null;
}
