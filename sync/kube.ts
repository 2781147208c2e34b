// What the sync controller reads and writes on the API server, as an
// interface (unit tests fake it) and its client-node implementation. Every
// write is a server-side apply or a merge patch under field manager
// coffer-sync; nothing is ever deleted (the garbage collector removes a
// CofferSecret's Secret).
import {
  AppsV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions,
  type CoreV1Event, type KubeConfig, type V1Secret,
} from '@kubernetes/client-node';
import { httpStatusOf } from '../operator/reconcile/client.js';
import { KubeClusterClient } from '../operator/reconcile/kube-client.js';
import { API_VERSION, GROUP, KIND, PLURAL, VERSION } from './api/schema.js';
import type { CofferSecretStatus, RestartTarget } from './api/types.js';
import { FIELD_MANAGER } from './reconcile/plan.js';

export interface SyncKube {
  getSecret(namespace: string, name: string): Promise<V1Secret | null>;
  /** Server-side apply, forced (the Secret is ours: it carries our controller reference). */
  applySecret(secret: V1Secret): Promise<void>;
  applyStatus(namespace: string, name: string, status: CofferSecretStatus): Promise<void>;
  getVaultCluster(namespace: string, name: string): Promise<Record<string, unknown> | null>;
  /** The pod template's annotation `key`: undefined when absent, null when the workload does not exist. */
  templateAnnotation(namespace: string, target: RestartTarget, key: string): Promise<string | undefined | null>;
  /** Sets the pod template's annotation (a merge patch: the workload rolls). False when the workload does not exist. */
  stampTemplate(namespace: string, target: RestartTarget, key: string, value: string): Promise<boolean>;
  createEvent(event: CoreV1Event): Promise<void>;
}

export class KubeSyncClient implements SyncKube {
  private readonly base: KubeClusterClient;
  private readonly custom: CustomObjectsApi;
  private readonly apps: AppsV1Api;

  constructor(kc: KubeConfig) {
    this.base = new KubeClusterClient(kc, FIELD_MANAGER);
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.apps = kc.makeApiClient(AppsV1Api);
  }

  getSecret(namespace: string, name: string): Promise<V1Secret | null> {
    return this.base.getSecret(namespace, name);
  }

  async applySecret(secret: V1Secret): Promise<void> {
    await this.base.apply(secret as Parameters<KubeClusterClient['apply']>[0]);
  }

  async applyStatus(namespace: string, name: string, status: CofferSecretStatus): Promise<void> {
    await this.custom.patchNamespacedCustomObjectStatus(
      {
        group: GROUP, version: VERSION, namespace, plural: PLURAL, name,
        body: { apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace }, status },
        fieldManager: FIELD_MANAGER,
        force: true,
      },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
  }

  getVaultCluster(namespace: string, name: string): Promise<Record<string, unknown> | null> {
    return this.base.getVaultCluster(namespace, name);
  }

  async templateAnnotation(namespace: string, target: RestartTarget, key: string): Promise<string | undefined | null> {
    try {
      const read = {
        Deployment: () => this.apps.readNamespacedDeployment({ namespace, name: target.name }),
        StatefulSet: () => this.apps.readNamespacedStatefulSet({ namespace, name: target.name }),
        DaemonSet: () => this.apps.readNamespacedDaemonSet({ namespace, name: target.name }),
      }[target.kind];
      const obj = await read();
      return obj.spec?.template.metadata?.annotations?.[key];
    } catch (err) {
      if (httpStatusOf(err) === 404) return null;
      throw err;
    }
  }

  async stampTemplate(namespace: string, target: RestartTarget, key: string, value: string): Promise<boolean> {
    const body = { spec: { template: { metadata: { annotations: { [key]: value } } } } };
    const args = { namespace, name: target.name, body, fieldManager: FIELD_MANAGER };
    const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    try {
      if (target.kind === 'Deployment') await this.apps.patchNamespacedDeployment(args, merge);
      else if (target.kind === 'StatefulSet') await this.apps.patchNamespacedStatefulSet(args, merge);
      else await this.apps.patchNamespacedDaemonSet(args, merge);
      return true;
    } catch (err) {
      if (httpStatusOf(err) === 404) return false;
      throw err;
    }
  }

  createEvent(event: CoreV1Event): Promise<void> {
    return this.base.createEvent(event);
  }
}
