// The sync controller's loop: informers on CofferSecrets and on the Secrets
// it manages feed a per-key work queue; workers reconcile. Sources of work:
// - a CofferSecret added, deleted, or changed in spec/labels (not a status-only
//   update: that is the controller's own write);
// - an owned Secret changed or deleted (someone edited it: put it back);
// - a CofferSecret's blocking query seeing a new version (./watch/watchers.ts);
// - refreshInterval after a sync (the safety net), backoff after a failure.
import {
  CoreV1Api, CustomObjectsApi, makeInformer,
  type Informer, type KubeConfig, type KubernetesListObject, type KubernetesObject, type ObjectCache,
} from '@kubernetes/client-node';
import { describeError } from '../operator/reconcile/client.js';
import { silentLogger, type Logger } from '../operator/reconcile/logger.js';
import { NotLeaderError } from '../operator/reconcile/pass.js';
import { WorkQueue } from '../operator/reconcile/queue.js';
import { GROUP, KIND, PLURAL, VERSION } from './api/schema.js';
import { MANAGED_BY, MANAGED_BY_LABEL } from './reconcile/plan.js';
import type { ReconcileResult } from './reconcile/reconciler.js';

export interface SyncReconcile {
  reconcile(key: string, raw: unknown): Promise<ReconcileResult>;
}

type Cached = Informer<KubernetesObject> & ObjectCache<KubernetesObject>;

function keyOf(obj: KubernetesObject): string | undefined {
  const ns = obj.metadata?.namespace;
  return ns && obj.metadata?.name ? `${ns}/${obj.metadata.name}` : undefined;
}

/** The CofferSecret an owned Secret belongs to. */
function ownerKeyOf(obj: KubernetesObject): string | undefined {
  const ref = obj.metadata?.ownerReferences?.find((r) => r.controller && r.kind === KIND && r.apiVersion.startsWith(`${GROUP}/`));
  return ref && obj.metadata?.namespace ? `${obj.metadata.namespace}/${ref.name}` : undefined;
}

export interface SyncControllerOptions {
  kubeConfig: KubeConfig;
  reconciler: SyncReconcile;
  /** Watch one namespace; undefined = all. */
  namespace?: string;
  workers: number;
  logger?: Logger;
  /** Called when the informers have listed everything once. */
  onSynced?(): void;
}

export class SyncController {
  readonly queue = new WorkQueue({ baseDelayMs: 1_000, maxDelayMs: 60_000 });
  private readonly log: Logger;
  private informers: { what: string; informer: Cached; retry?: ReturnType<typeof setTimeout> }[] = [];
  private cofferSecrets: Cached | undefined;
  private workers: Promise<void>[] = [];
  private stopped = false;

  constructor(private readonly opts: SyncControllerOptions) {
    this.log = opts.logger ?? silentLogger;
  }

  /** CofferSecrets in the cache now. */
  size(): number {
    return this.cofferSecrets?.list().length ?? 0;
  }

  async start(): Promise<void> {
    const kc = this.opts.kubeConfig;
    const ns = this.opts.namespace;
    const core = kc.makeApiClient(CoreV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const path = (prefix: string, plural: string) => (ns ? `${prefix}/namespaces/${ns}/${plural}` : `${prefix}/${plural}`);
    const managed = `${MANAGED_BY_LABEL}=${MANAGED_BY}`;
    type List = () => Promise<KubernetesListObject<KubernetesObject>>;

    const listCs: List = () =>
      (ns
        ? custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL })
        : custom.listCustomObjectForAllNamespaces({ group: GROUP, version: VERSION, plural: PLURAL })) as Promise<KubernetesListObject<KubernetesObject>>;
    const cs = this.informer('coffersecrets', path(`/apis/${GROUP}/${VERSION}`, PLURAL), listCs, undefined);
    this.cofferSecrets = cs;
    const add = (key: string | undefined) => key && this.queue.add(key);
    cs.on('add', (o) => add(keyOf(o)));
    cs.on('delete', (o) => add(keyOf(o)));
    // A status-only update (the controller's own write) does not move metadata.generation: skip it.
    const generations = new Map<string, number | undefined>();
    cs.on('update', (o) => {
      const key = keyOf(o);
      if (!key) return;
      const generation = o.metadata?.generation;
      if (generations.has(key) && generations.get(key) === generation && !o.metadata?.deletionTimestamp) return;
      generations.set(key, generation);
      add(key);
    });
    cs.on('add', (o) => {
      const key = keyOf(o);
      if (key) generations.set(key, o.metadata?.generation);
    });
    cs.on('delete', (o) => {
      const key = keyOf(o);
      if (key) generations.delete(key);
    });

    const listSecrets: List = () => (ns ? core.listNamespacedSecret({ namespace: ns, labelSelector: managed }) : core.listSecretForAllNamespaces({ labelSelector: managed }));
    const secrets = this.informer('secrets', path('/api/v1', 'secrets'), listSecrets, managed);
    secrets.on('update', (o) => add(ownerKeyOf(o)));
    secrets.on('delete', (o) => add(ownerKeyOf(o)));

    await Promise.all(this.informers.map((w) => w.informer.start().catch((err: unknown) => this.onWatchError(w, err))));
    for (let i = 0; i < this.opts.workers; i++) this.workers.push(this.work());
    this.opts.onSynced?.();
    this.log.info({ namespace: ns ?? '(all)' }, 'sync controller started');
  }

  private informer(what: string, path: string, list: () => Promise<KubernetesListObject<KubernetesObject>>, labelSelector: string | undefined): Cached {
    const informer = makeInformer(this.opts.kubeConfig, path, list, labelSelector);
    const w = { what, informer } as (typeof this.informers)[number];
    informer.on('error', (err: unknown) => this.onWatchError(w, err));
    this.informers.push(w);
    return informer;
  }

  /** client-node informers stop on errors; restart after a pause. */
  private onWatchError(w: (typeof this.informers)[number], err: unknown): void {
    if (this.stopped) return;
    this.log.warn({ watch: w.what, err: describeError(err) }, 'watch failed; restarting in 5 s');
    if (w.retry) return;
    w.retry = setTimeout(() => {
      w.retry = undefined;
      if (!this.stopped) w.informer.start().catch((e: unknown) => this.onWatchError(w, e));
    }, 5_000);
    w.retry.unref?.();
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      try {
        const [ns, name] = key.split('/') as [string, string];
        const raw = this.cofferSecrets?.get(name, ns);
        const result = await this.opts.reconciler.reconcile(key, raw);
        if (result.outcome === 'retry') {
          this.queue.addRateLimited(key);
        } else {
          this.queue.forget(key);
          if (result.outcome !== 'gone') this.queue.addAfter(key, result.requeueAfterMs);
        }
      } catch (err) {
        if (err instanceof NotLeaderError) {
          this.log.warn({ coffersecret: key }, 'lost leadership; dropping work');
        } else {
          const delay = this.queue.addRateLimited(key);
          this.log.error({ coffersecret: key, err: describeError(err), retryInMs: delay }, 'reconcile failed');
        }
      } finally {
        this.queue.done(key);
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.queue.shutDown();
    for (const w of this.informers) {
      if (w.retry) clearTimeout(w.retry);
      await w.informer.stop().catch(() => {});
    }
    await Promise.all(this.workers);
    this.workers = [];
  }
}
