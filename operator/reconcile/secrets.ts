// The secrets phase: generated Secrets are created when absent and never
// overwritten; referenced ones (and the TLS Secret) must exist with their keys.
import type { V1Secret } from '@kubernetes/client-node';
import type { VaultCluster } from '../api/types.js';
import { claimName } from '../manifests/names.js';
import { buildGeneratedSecret, secretTemplates } from '../manifests/secrets.js';
import type { ObservedStatefulSet } from '../rollout/machine.js';
import type { Pass, PassDeps } from './pass.js';

/**
 * Records what is missing as problems. Returns true when the pass must not
 * apply anything: the generated master key is gone while data volumes exist.
 */
export async function ensureSecrets(deps: PassDeps, pass: Pass, vc: VaultCluster, sts: ObservedStatefulSet | null): Promise<boolean> {
  const { client } = deps;
  const { namespace, name, problems } = pass;
  let blocked = false;
  for (const t of secretTemplates(vc)) {
    const existing = await client.getSecret(t.namespace, t.name);
    if (existing) {
      if (!(t.key in secretData(existing))) problems.push({ reason: 'SecretKeyMissing', message: `Secret ${t.name} has no key "${t.key}" (${t.description})` });
      continue;
    }
    if (!t.generated) {
      problems.push({ reason: 'SecretMissing', message: `Secret ${t.name} (key "${t.key}", ${t.description}) does not exist; create it` });
      continue;
    }
    if (t.purpose === 'local-master-key' && (sts !== null || (await client.persistentVolumeClaimExists(namespace, claimName(name, 0))))) {
      // A new key would make every stored secret undecryptable.
      problems.push({
        reason: 'MasterKeyMissing',
        message: `the generated master key Secret ${t.name} is gone but data volumes exist; the operator will not generate a new key (it would make every stored secret undecryptable). Restore the Secret from a backup.`,
      });
      blocked = true;
      continue;
    }
    deps.guard();
    const result = await client.createSecret(buildGeneratedSecret(vc, t));
    if (result === 'created') {
      pass.events.push({ type: 'Normal', reason: 'SecretGenerated', message: `Generated Secret ${t.name} (${t.description}); it is never overwritten` });
    }
  }
  if (vc.spec.tls) {
    const tls = await client.getSecret(namespace, vc.spec.tls.secretName);
    const data = tls ? secretData(tls) : {};
    if (!tls) problems.push({ reason: 'SecretMissing', message: `TLS Secret ${vc.spec.tls.secretName} does not exist` });
    else if (!('tls.crt' in data) || !('tls.key' in data)) {
      problems.push({ reason: 'SecretKeyMissing', message: `TLS Secret ${vc.spec.tls.secretName} needs keys tls.crt and tls.key` });
    }
  }
  return blocked;
}

function secretData(s: V1Secret): Record<string, string> {
  return { ...(s.data ?? {}), ...(s.stringData ?? {}) };
}
