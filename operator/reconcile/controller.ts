// The controller: watches VaultClusters and the objects they own, feeds a
// per-key work queue, and runs reconcile(key) on a few workers.
//
// Sources of work:
// - VaultCluster add/update/delete -> its key;
// - owned StatefulSets, Services, ServiceAccounts, PodDisruptionBudgets and
//   Secrets and ConfigMaps (watched with the label app.kubernetes.io/managed-by=coffer-operator)
//   -> the owner's key, from the controller ownerReference (kind VaultCluster)
//   or else the app.kubernetes.io/instance label; so deleting an owned object
//   brings it back and StatefulSet status changes drive the rollout;
// - pods a VaultCluster's spec.readAllowlistFrom selects (one pod watch, of
//   all namespaces or the watched one) -> that VaultCluster's key, also when
//   a pod stops matching or goes, so its address leaves the read-allowlist
//   ConfigMap promptly;
// - periodic resync of every known VaultCluster (level-triggered: also
//   catches what no watch reports, e.g. pod health);
// - requeueAfter from reconcile (rollout in progress) and exponential backoff
//   on errors.
import {
  AppsV1Api, CoreV1Api, CustomObjectsApi, PolicyV1Api, makeInformer,
  type Informer, type KubeConfig, type KubernetesListObject, type KubernetesObject, type ObjectCache,
} from '@kubernetes/client-node';
import { GROUP, KIND, PLURAL, VERSION } from '../api/schema.js';
import { LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY } from '../manifests/names.js';
import { realClock, type Clock } from './clock.js';
import { describeError } from './client.js';
import { silentLogger, type Logger } from './logger.js';
import { NotLeaderError } from './pass.js';
import { every, WorkQueue } from './queue.js';
import type { ReconcileResult } from './reconciler.js';

export interface Reconcile {
  reconcile(key: string): Promise<ReconcileResult>;
}

/** The VaultCluster key (`namespace/name`) an owned object belongs to, if any. */
export function ownerKey(obj: KubernetesObject): string | undefined {
  const ns = obj.metadata?.namespace;
  if (!ns) return undefined;
  const ref = obj.metadata?.ownerReferences?.find((r) => r.kind === KIND && r.apiVersion.startsWith(`${GROUP}/`) && r.controller);
  if (ref) return `${ns}/${ref.name}`;
  const labels = obj.metadata?.labels ?? {};
  if (labels[LABEL_MANAGED_BY] === MANAGED_BY && labels[LABEL_INSTANCE]) return `${ns}/${labels[LABEL_INSTANCE]}`;
  return undefined;
}

export function objectKey(obj: KubernetesObject): string | undefined {
  const ns = obj.metadata?.namespace;
  const name = obj.metadata?.name;
  return ns && name ? `${ns}/${name}` : undefined;
}

/** spec.readAllowlistFrom of a raw (unvalidated) VaultCluster, the well-formed entries only. */
function allowlistSources(vc: KubernetesObject): { namespace: string; matchLabels: Record<string, string> }[] {
  const from = (vc as { spec?: { readAllowlistFrom?: unknown } }).spec?.readAllowlistFrom;
  if (!Array.isArray(from)) return [];
  const out: { namespace: string; matchLabels: Record<string, string> }[] = [];
  for (const e of from as { namespace?: unknown; podSelector?: { matchLabels?: unknown } }[]) {
    const labels = e?.podSelector?.matchLabels;
    if (typeof e?.namespace === 'string' && labels && typeof labels === 'object') out.push({ namespace: e.namespace, matchLabels: labels as Record<string, string> });
  }
  return out;
}

/**
 * Which VaultClusters a pod event concerns: those whose readAllowlistFrom
 * selects the pod now, and those that selected it at its previous event (a
 * pod whose labels changed away, or that was deleted, must leave their
 * ConfigMap). Remembers only pods that match something.
 */
export class AllowlistPodMatcher {
  private readonly last = new Map<string, string[]>();

  keysFor(pod: KubernetesObject, vaultClusters: readonly KubernetesObject[], gone: boolean): string[] {
    const podKey = objectKey(pod);
    const ns = pod.metadata?.namespace;
    if (!podKey || !ns) return [];
    const labels = pod.metadata?.labels ?? {};
    const now = new Set<string>();
    if (!gone) {
      for (const vc of vaultClusters) {
        const key = objectKey(vc);
        if (!key) continue;
        const hit = allowlistSources(vc).some((s) => s.namespace === ns && Object.entries(s.matchLabels).every(([k, v]) => labels[k] === v));
        if (hit) now.add(key);
      }
    }
    const before = this.last.get(podKey) ?? [];
    if (now.size > 0) this.last.set(podKey, [...now]);
    else this.last.delete(podKey);
    return [...new Set([...before, ...now])];
  }
}

/** Runs workers over a queue; separated from the watches so it is unit-testable. */
export class WorkerPool {
  private running: Promise<void>[] = [];

  constructor(
    private readonly queue: WorkQueue,
    private readonly reconciler: Reconcile,
    private readonly log: Logger = silentLogger,
  ) {}

  start(workers: number): void {
    for (let i = 0; i < workers; i++) this.running.push(this.work());
  }

  async drain(): Promise<void> {
    await Promise.all(this.running);
    this.running = [];
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      try {
        const result = await this.reconciler.reconcile(key);
        this.queue.forget(key);
        if (result.requeueAfterMs !== undefined) this.queue.addAfter(key, result.requeueAfterMs);
      } catch (err) {
        if (err instanceof NotLeaderError) {
          this.log.warn({ vaultcluster: key }, 'lost leadership; dropping work');
        } else {
          const delay = this.queue.addRateLimited(key);
          this.log.error({ vaultcluster: key, err: describeError(err), retryInMs: delay }, 'reconcile failed');
        }
      } finally {
        this.queue.done(key);
      }
    }
  }
}

export interface ControllerOptions {
  kubeConfig: KubeConfig;
  reconciler: Reconcile;
  /** Watch one namespace; undefined = all namespaces. */
  namespace?: string;
  resyncPeriodMs?: number;
  workers?: number;
  clock?: Clock;
  logger?: Logger;
}

interface Watched {
  what: string;
  informer: Informer<KubernetesObject> & ObjectCache<KubernetesObject>;
  retry?: ReturnType<typeof setTimeout>;
}

export class Controller {
  readonly queue: WorkQueue;
  private readonly log: Logger;
  private readonly clock: Clock;
  private watched: Watched[] = [];
  private vcInformer: (Informer<KubernetesObject> & ObjectCache<KubernetesObject>) | undefined;
  private resync: { stop(): void } | undefined;
  private pool: WorkerPool | undefined;
  private stopped = false;
  private readonly allowlistMatcher = new AllowlistPodMatcher();

  constructor(private readonly opts: ControllerOptions) {
    this.clock = opts.clock ?? realClock;
    this.log = opts.logger ?? silentLogger;
    this.queue = new WorkQueue({ clock: this.clock });
  }

  async start(): Promise<void> {
    const kc = this.opts.kubeConfig;
    const ns = this.opts.namespace;
    const core = kc.makeApiClient(CoreV1Api);
    const apps = kc.makeApiClient(AppsV1Api);
    const policy = kc.makeApiClient(PolicyV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const managed = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;
    const p = (prefix: string, plural: string) => (ns ? `${prefix}/namespaces/${ns}/${plural}` : `${prefix}/${plural}`);
    type List = () => Promise<KubernetesListObject<KubernetesObject>>;

    const vcList: List = () =>
      (ns
        ? custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL })
        : custom.listCustomObjectForAllNamespaces({ group: GROUP, version: VERSION, plural: PLURAL })) as Promise<KubernetesListObject<KubernetesObject>>;
    const vc = this.watch('vaultclusters', p(`/apis/${GROUP}/${VERSION}`, PLURAL), vcList, undefined, objectKey);
    this.vcInformer = vc;

    const owned: [string, string, List][] = [
      ['statefulsets', p('/apis/apps/v1', 'statefulsets'), () => (ns ? apps.listNamespacedStatefulSet({ namespace: ns, labelSelector: managed }) : apps.listStatefulSetForAllNamespaces({ labelSelector: managed }))],
      ['services', p('/api/v1', 'services'), () => (ns ? core.listNamespacedService({ namespace: ns, labelSelector: managed }) : core.listServiceForAllNamespaces({ labelSelector: managed }))],
      ['serviceaccounts', p('/api/v1', 'serviceaccounts'), () => (ns ? core.listNamespacedServiceAccount({ namespace: ns, labelSelector: managed }) : core.listServiceAccountForAllNamespaces({ labelSelector: managed }))],
      ['secrets', p('/api/v1', 'secrets'), () => (ns ? core.listNamespacedSecret({ namespace: ns, labelSelector: managed }) : core.listSecretForAllNamespaces({ labelSelector: managed }))],
      ['configmaps', p('/api/v1', 'configmaps'), () => (ns ? core.listNamespacedConfigMap({ namespace: ns, labelSelector: managed }) : core.listConfigMapForAllNamespaces({ labelSelector: managed }))],
      ['poddisruptionbudgets', p('/apis/policy/v1', 'poddisruptionbudgets'), () => (ns ? policy.listNamespacedPodDisruptionBudget({ namespace: ns, labelSelector: managed }) : policy.listPodDisruptionBudgetForAllNamespaces({ labelSelector: managed }))],
    ];
    for (const [what, path, list] of owned) this.watch(what, path, list, managed, ownerKey);
    const pods = this.watch('pods', p('/api/v1', 'pods'), () => (ns ? core.listNamespacedPod({ namespace: ns }) : core.listPodForAllNamespaces()), undefined, () => undefined);
    const onPod = (obj: KubernetesObject, gone: boolean) => {
      for (const key of this.allowlistMatcher.keysFor(obj, this.vcInformer?.list() ?? [], gone)) this.queue.add(key);
    };
    pods.on('add', (o) => onPod(o, false));
    pods.on('update', (o) => onPod(o, false));
    pods.on('delete', (o) => onPod(o, true));

    await Promise.all(this.watched.map((w) => w.informer.start().catch((err: unknown) => this.onWatchError(w, err))));
    this.pool = new WorkerPool(this.queue, this.opts.reconciler, this.log);
    this.pool.start(this.opts.workers ?? 2);
    this.resync = every(this.clock, this.opts.resyncPeriodMs ?? 5 * 60_000, () => {
      for (const obj of this.vcInformer?.list() ?? []) {
        const key = objectKey(obj);
        if (key) this.queue.add(key);
      }
    });
    this.log.info({ namespace: ns ?? '(all)', watches: this.watched.map((w) => w.what) }, 'controller started');
  }

  private watch(
    what: string,
    path: string,
    list: () => Promise<KubernetesListObject<KubernetesObject>>,
    labelSelector: string | undefined,
    keyOf: (o: KubernetesObject) => string | undefined,
  ) {
    const informer = makeInformer(this.opts.kubeConfig, path, list, labelSelector);
    const w: Watched = { what, informer };
    const enqueue = (obj: KubernetesObject) => {
      const key = keyOf(obj);
      if (key) this.queue.add(key);
    };
    informer.on('add', enqueue);
    informer.on('update', enqueue);
    informer.on('delete', enqueue);
    informer.on('error', (err: unknown) => this.onWatchError(w, err));
    this.watched.push(w);
    return informer;
  }

  /** client-node informers stop on errors; restart after a pause. */
  private onWatchError(w: Watched, err: unknown): void {
    if (this.stopped) return;
    this.log.warn({ watch: w.what, err: describeError(err) }, 'watch failed; restarting in 5 s');
    if (w.retry) return;
    w.retry = setTimeout(() => {
      w.retry = undefined;
      if (!this.stopped) w.informer.start().catch((e: unknown) => this.onWatchError(w, e));
    }, 5_000);
    w.retry.unref?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.resync?.stop();
    this.queue.shutDown();
    for (const w of this.watched) {
      if (w.retry) clearTimeout(w.retry);
      await w.informer.stop().catch(() => {});
    }
    await this.pool?.drain();
    this.log.info({}, 'controller stopped');
  }
}
