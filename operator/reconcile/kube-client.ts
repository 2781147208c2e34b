// ClusterClient over @kubernetes/client-node 1.x (promise-based, object-param APIs).
import {
  AppsV1Api, CoreV1Api, CustomObjectsApi, KubernetesObjectApi, PatchStrategy, VersionApi, setHeaderOptions,
  type CoreV1Event, type KubeConfig, type KubernetesObject, type V1Pod, type V1Secret, type V1StatefulSet,
} from '@kubernetes/client-node';
import { GROUP, PLURAL, VERSION, API_VERSION, KIND } from '../api/schema.js';
import type { VaultClusterStatus } from '../api/types.js';
import { FIELD_MANAGER, describeError, httpStatusOf, type ClusterClient, type EvictionResult, type ObjectRef } from './client.js';

async function orNull<T>(p: Promise<T>): Promise<T | null> {
  try {
    return await p;
  } catch (err) {
    if (httpStatusOf(err) === 404) return null;
    throw err;
  }
}

export class KubeClusterClient implements ClusterClient {
  private readonly core: CoreV1Api;
  private readonly apps: AppsV1Api;
  private readonly custom: CustomObjectsApi;
  private readonly objects: KubernetesObjectApi;
  private readonly version: VersionApi;

  constructor(kc: KubeConfig, private readonly fieldManager = FIELD_MANAGER) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.apps = kc.makeApiClient(AppsV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.objects = KubernetesObjectApi.makeApiClient(kc);
    this.version = kc.makeApiClient(VersionApi);
  }

  async getVaultCluster(namespace: string, name: string): Promise<Record<string, unknown> | null> {
    return orNull(this.custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL, name }) as Promise<Record<string, unknown>>);
  }

  async getResourceVersion(ref: ObjectRef): Promise<string | null> {
    const obj = await orNull(
      this.objects.read({ apiVersion: ref.apiVersion, kind: ref.kind, metadata: { name: ref.name, namespace: ref.namespace } }),
    );
    return obj ? (obj.metadata?.resourceVersion ?? '') : null;
  }

  async apply(obj: KubernetesObject): Promise<string> {
    const out = await this.objects.patch(obj, undefined, undefined, this.fieldManager, true, PatchStrategy.ServerSideApply);
    return out.metadata?.resourceVersion ?? '';
  }

  getSecret(namespace: string, name: string): Promise<V1Secret | null> {
    return orNull(this.core.readNamespacedSecret({ namespace, name }));
  }

  async createSecret(secret: V1Secret): Promise<'created' | 'exists'> {
    try {
      await this.core.createNamespacedSecret({ namespace: secret.metadata?.namespace ?? 'default', body: secret, fieldManager: this.fieldManager });
      return 'created';
    } catch (err) {
      if (httpStatusOf(err) === 409) return 'exists';
      throw err;
    }
  }

  async updateSecret(secret: V1Secret): Promise<void> {
    await this.core.replaceNamespacedSecret({
      namespace: secret.metadata?.namespace ?? 'default',
      name: secret.metadata?.name ?? '',
      body: secret,
      fieldManager: this.fieldManager,
    });
  }

  async evictPod(namespace: string, name: string, uid: string): Promise<EvictionResult> {
    try {
      await this.core.createNamespacedPodEviction({
        namespace,
        name,
        body: { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name, namespace }, deleteOptions: { preconditions: { uid } } },
      });
      return { outcome: 'evicted' };
    } catch (err) {
      const status = httpStatusOf(err);
      if (status === 429) return { outcome: 'refused', message: describeError(err) };
      // 404: gone; 409: the uid precondition failed, i.e. that instance is gone.
      if (status === 404 || status === 409) return { outcome: 'gone' };
      throw err;
    }
  }

  async serverVersion(): Promise<{ major: number; minor: number } | null> {
    try {
      const v = await this.version.getCode();
      const major = parseInt(v.major, 10);
      const minor = parseInt(v.minor, 10);
      return Number.isFinite(major) && Number.isFinite(minor) ? { major, minor } : null;
    } catch {
      return null;
    }
  }

  async persistentVolumeClaimExists(namespace: string, name: string): Promise<boolean> {
    return (await orNull(this.core.readNamespacedPersistentVolumeClaim({ namespace, name }))) !== null;
  }

  getStatefulSet(namespace: string, name: string): Promise<V1StatefulSet | null> {
    return orNull(this.apps.readNamespacedStatefulSet({ namespace, name }));
  }

  async listPods(namespace: string, labelSelector: string): Promise<V1Pod[]> {
    return (await this.core.listNamespacedPod({ namespace, labelSelector })).items;
  }

  async applyVaultClusterStatus(namespace: string, name: string, status: VaultClusterStatus): Promise<void> {
    await this.custom.patchNamespacedCustomObjectStatus(
      {
        group: GROUP, version: VERSION, namespace, plural: PLURAL, name,
        body: { apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace }, status },
        fieldManager: this.fieldManager,
        force: true,
      },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
  }

  async createEvent(event: CoreV1Event): Promise<void> {
    await this.core.createNamespacedEvent({ namespace: event.metadata.namespace ?? 'default', body: event });
  }
}
