// What the reconciler needs from the API server, as an interface: the real
// implementation (./kube-client.ts) uses @kubernetes/client-node; unit tests
// use an in-memory fake.
import type { CoreV1Event, KubernetesObject, V1Pod, V1Secret, V1StatefulSet } from '@kubernetes/client-node';
import type { VaultClusterStatus } from '../api/types.js';

/** The field manager of every write the operator makes (server-side apply). */
export const FIELD_MANAGER = 'coffer-operator';

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
}

export interface ClusterClient {
  /** The VaultCluster as stored (raw JSON), or null when it does not exist. */
  getVaultCluster(namespace: string, name: string): Promise<Record<string, unknown> | null>;
  /** metadata.resourceVersion of an object, or null when it does not exist. */
  getResourceVersion(ref: ObjectRef): Promise<string | null>;
  /** Server-side apply (field manager FIELD_MANAGER, force). Returns the resourceVersion afterwards. */
  apply(obj: KubernetesObject): Promise<string>;
  getSecret(namespace: string, name: string): Promise<V1Secret | null>;
  /** Creates a Secret; 'exists' when one of that name is already there (never touches it). */
  createSecret(secret: V1Secret): Promise<'created' | 'exists'>;
  /**
   * Replaces a Secret (PUT with metadata.resourceVersion: fails with 409 when
   * it changed since it was read). Only for the WireGuard key Secret; the
   * other generated Secrets are immutable.
   */
  updateSecret(secret: V1Secret): Promise<void>;
  /**
   * Evicts one pod instance through the Eviction API (policy/v1), so
   * PodDisruptionBudgets apply; `uid` is a precondition.
   */
  evictPod(namespace: string, name: string, uid: string): Promise<EvictionResult>;
  /** The API server's Kubernetes version, or null when unknown. Optional. */
  serverVersion?(): Promise<{ major: number; minor: number } | null>;
  persistentVolumeClaimExists(namespace: string, name: string): Promise<boolean>;
  getStatefulSet(namespace: string, name: string): Promise<V1StatefulSet | null>;
  listPods(namespace: string, labelSelector: string): Promise<V1Pod[]>;
  /** Server-side apply of the status subresource. */
  applyVaultClusterStatus(namespace: string, name: string, status: VaultClusterStatus): Promise<void>;
  createEvent(event: CoreV1Event): Promise<void>;
}

export type EvictionResult =
  | { outcome: 'evicted' }
  /** 429: a PodDisruptionBudget does not allow it now. */
  | { outcome: 'refused'; message: string }
  /** The pod (that instance) does not exist any more. */
  | { outcome: 'gone' };

/** An API error with its HTTP status (client-node's ApiException has `code`). */
export function httpStatusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown; statusCode?: unknown } | null)?.code ?? (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

/** A short, single-line description of an API error (client-node's messages embed headers). */
export function describeError(err: unknown): string {
  const status = httpStatusOf(err);
  const body = (err as { body?: unknown } | null)?.body;
  let message: string | undefined;
  if (typeof body === 'string') {
    try {
      message = (JSON.parse(body) as { message?: string }).message;
    } catch {
      message = body.slice(0, 300);
    }
  } else if (body && typeof body === 'object') {
    message = (body as { message?: string }).message;
  }
  if (status !== undefined) return `HTTP ${status}${message ? `: ${message}` : ''}`;
  return err instanceof Error ? err.message.split('\n')[0] ?? err.message : String(err);
}
