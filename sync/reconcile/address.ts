// Where a CofferSecret's Coffer answers: vaultRef.address as given, or the
// client Service of the VaultCluster vaultRef names (https when that
// VaultCluster serves TLS).
import { API_PORT, resourceNames } from '../../operator/manifests/names.js';
import type { CofferSecret } from '../api/types.js';
import type { SyncKube } from '../kube.js';
import { VaultError } from '../vault/client.js';

export async function resolveVaultAddress(cs: CofferSecret, kube: Pick<SyncKube, 'getVaultCluster'>): Promise<string> {
  const ref = cs.spec.vaultRef;
  if (ref.address) return ref.address.replace(/\/$/, '');
  const namespace = ref.namespace ?? cs.metadata.namespace!;
  const vc = await kube.getVaultCluster(namespace, ref.name!);
  if (!vc) throw new VaultError('VaultUnavailable', `VaultCluster ${namespace}/${ref.name} not found`);
  const tls = (vc as { spec?: { tls?: { secretName?: unknown } } }).spec?.tls?.secretName;
  const scheme = typeof tls === 'string' && tls.length > 0 ? 'https' : 'http';
  return `${scheme}://${resourceNames(ref.name!).clientService}.${namespace}.svc:${API_PORT}`;
}
