// One CofferSecret's reconcile: read its token, ask Coffer for the current
// versions (a blocking query with index 0 answers at once), and when the
// target Secret does not already hold them, read the values, apply the
// Secret, roll the restart targets and write status. Then (re)start the
// CofferSecret's blocking query. A failure leaves the Secret as it was and
// says why in the Ready condition.
import type { V1Secret } from '@kubernetes/client-node';
import { describeError } from '../../operator/reconcile/client.js';
import type { EventRecorder } from '../../operator/reconcile/events.js';
import type { Logger } from '../../operator/reconcile/logger.js';
import { parseDuration } from '../api/duration.js';
import type { CofferSecret, ReadyReason } from '../api/types.js';
import { validateCofferSecret } from '../api/validate.js';
import type { SyncKube } from '../kube.js';
import type { SyncMetrics } from '../metrics.js';
import { VaultError, type VaultApi } from '../vault/client.js';
import type { Watchers } from '../watch/watchers.js';
import { resolveVaultAddress } from './address.js';
import {
  FIRST_HASH_ANNOTATION, VERSIONS_HASH_ANNOTATION, desiredSecret, followedNames, allNames, immutableProblem, isCurrent,
  isOwnedBy, mustStamp, nextStatus, restartAnnotationKey, targetName, versionsHash, wantedVersions,
  type ReadyCondition, type WantedItem,
} from './plan.js';

export interface ReconcileDeps {
  kube: SyncKube;
  /** The Coffer API at an address (the controller keeps one client per address). */
  vault(address: string): VaultApi;
  watchers: Watchers;
  metrics: SyncMetrics;
  events: EventRecorder;
  logger: Logger;
  now(): Date;
}

export type ReconcileResult =
  /** Synced: look again after refreshInterval (the safety net). */
  | { outcome: 'synced'; requeueAfterMs: number }
  /** Will not get better by retrying soon (TargetConflict, SecretNotFound, InvalidSpec): the watch or an edit queues it. */
  | { outcome: 'waiting'; requeueAfterMs: number }
  /** Retry with backoff (VaultUnavailable, Forbidden). */
  | { outcome: 'retry' }
  | { outcome: 'gone' };

/** A reconcile that stops with a Ready=False reason. */
class Stop extends Error {
  constructor(readonly reason: ReadyReason, message: string) {
    super(message);
  }
}

const RETRIED: ReadonlySet<ReadyReason> = new Set(['VaultUnavailable', 'Forbidden']);

function decodeToken(secret: V1Secret | null, cs: CofferSecret): string {
  const ref = cs.spec.tokenSecretRef;
  if (!secret) throw new Stop('Forbidden', `token Secret ${ref.name} not found in namespace ${cs.metadata.namespace}`);
  const raw = secret.data?.[ref.key];
  if (!raw) throw new Stop('Forbidden', `token Secret ${ref.name} has no key ${ref.key}`);
  const token = Buffer.from(raw, 'base64').toString('utf8').trim();
  if (!token) throw new Stop('Forbidden', `token Secret ${ref.name} key ${ref.key} is empty`);
  return token;
}

export class SyncReconciler {
  constructor(private readonly deps: ReconcileDeps) {}

  /** `raw` is the CofferSecret as the informer holds it, or undefined when it is gone. */
  async reconcile(key: string, raw: unknown): Promise<ReconcileResult> {
    const { deps } = this;
    if (raw === undefined) {
      // Its Secret goes with it (ownerReferences): nothing to delete here.
      deps.watchers.stop(key);
      return { outcome: 'gone' };
    }
    const checked = validateCofferSecret(raw);
    if (!checked.ok) {
      deps.watchers.stop(key);
      const message = checked.errors.map((e) => `${e.path}: ${e.message}`).join('; ');
      await this.finish(raw as CofferSecret, { status: 'False', reason: 'InvalidSpec', message }, undefined, false);
      return { outcome: 'waiting', requeueAfterMs: 10 * 60_000 };
    }
    const cs = checked.value;
    const refreshMs = parseDuration(cs.spec.refreshInterval) ?? 300_000;
    try {
      const synced = await this.sync(key, cs);
      await this.finish(cs, { status: 'True', reason: 'Synced', message: `${synced.items.length} keys synced` }, synced.items, synced.wrote);
      deps.metrics.syncs.inc({ outcome: synced.wrote ? 'written' : 'unchanged' });
      return { outcome: 'synced', requeueAfterMs: refreshMs };
    } catch (err) {
      const stop = err instanceof Stop ? err : err instanceof VaultError ? new Stop(err.reason, err.message) : undefined;
      if (!stop) throw err; // API server trouble: the controller retries with backoff
      deps.metrics.syncs.inc({ outcome: stop.reason as Exclude<ReadyReason, 'Synced'> });
      deps.logger.info({ coffersecret: key, reason: stop.reason, message: stop.message }, 'not synced');
      await this.finish(cs, { status: 'False', reason: stop.reason, message: stop.message }, undefined, false);
      return RETRIED.has(stop.reason) ? { outcome: 'retry' } : { outcome: 'waiting', requeueAfterMs: refreshMs };
    }
  }

  private async sync(key: string, cs: CofferSecret): Promise<{ items: WantedItem[]; wrote: boolean }> {
    const { deps } = this;
    const ns = cs.metadata.namespace!;
    const existing = await deps.kube.getSecret(ns, targetName(cs));
    if (existing && !isOwnedBy(existing, cs)) {
      deps.watchers.stop(key);
      throw new Stop('TargetConflict', `Secret ${targetName(cs)} exists and is not owned by this CofferSecret: it is left untouched (delete it or choose another target.name)`);
    }
    if (existing) {
      const problem = immutableProblem(existing, cs);
      if (problem) throw new Stop('TargetConflict', problem);
    }
    const address = await resolveVaultAddress(cs, deps.kube);
    const token = decodeToken(await deps.kube.getSecret(ns, cs.spec.tokenSecretRef.name), cs);
    const api = deps.vault(address);

    // Current versions of every name (pinned ones too: a pin on a deleted secret is reported, not hidden).
    const names = allNames(cs);
    const answer = await api.watch({ names, index: 0, waitMs: 0, token });
    const followed = followedNames(cs);
    const current: Record<string, number> = {};
    for (const n of followed) if (answer.versions[n] !== undefined) current[n] = answer.versions[n]!;
    // Watch from here on: a change after this answer queues another reconcile.
    deps.watchers.ensure(key, { api, address, token, names: followed, versions: current, index: answer.index });
    const wanted = wantedVersions(cs, current);
    if (!wanted.ok) {
      throw new Stop('SecretNotFound', `${wanted.missing.join(', ')} ${wanted.missing.length === 1 ? 'does' : 'do'} not exist in Coffer; the Secret is kept as last synced`);
    }
    const items = wanted.items;
    if (existing && isCurrent(existing, cs, items)) {
      await this.stampRestartTargets(cs, items, existing.metadata?.annotations?.[FIRST_HASH_ANNOTATION]);
      return { items, wrote: false };
    }

    const values = new Map<string, string>();
    const createdAt = new Map<string, string>();
    for (const item of items) {
      const id = `${item.name}@${item.version}`;
      if (values.has(id)) continue;
      const read = await api.read(item.name, item.version, token);
      values.set(id, read.value);
      createdAt.set(id, read.createdAt);
    }
    const hash = versionsHash(items);
    const firstHash = existing?.metadata?.annotations?.[FIRST_HASH_ANNOTATION] ?? (existing ? existing.metadata?.annotations?.[VERSIONS_HASH_ANNOTATION] : undefined) ?? hash;
    await deps.kube.applySecret(desiredSecret(cs, items, values, firstHash));
    this.observePropagation(existing, items, createdAt);
    deps.logger.info({ coffersecret: key, secret: targetName(cs), versions: hash }, existing ? 'secret updated' : 'secret created');
    await this.stampRestartTargets(cs, items, firstHash);
    return { items, wrote: true };
  }

  /** Rotations only: versions that differ from what the Secret held before. */
  private observePropagation(existing: V1Secret | null, items: readonly WantedItem[], createdAt: ReadonlyMap<string, string>): void {
    if (!existing) return;
    let before: Record<string, number> = {};
    try {
      before = JSON.parse(existing.metadata?.annotations?.['coffer.dev/synced-versions'] ?? '{}') as Record<string, number>;
    } catch {
      return;
    }
    const now = this.deps.now().getTime();
    for (const item of items) {
      if (before[item.name] === undefined || before[item.name] === item.version) continue;
      const at = Date.parse(createdAt.get(`${item.name}@${item.version}`) ?? '');
      if (Number.isFinite(at)) this.deps.metrics.propagation.observe(Math.max(0, (now - at) / 1000));
    }
  }

  private async stampRestartTargets(cs: CofferSecret, items: readonly WantedItem[], firstHash: string | undefined): Promise<void> {
    const { deps } = this;
    const ns = cs.metadata.namespace!;
    const hash = versionsHash(items);
    const annotation = restartAnnotationKey(cs.metadata.name);
    for (const target of cs.spec.rolloutRestartTargets) {
      const current = await deps.kube.templateAnnotation(ns, target, annotation);
      if (current === null) {
        await deps.events.record(this.eventTarget(cs), { type: 'Warning', reason: 'RestartTargetNotFound', message: `${target.kind} ${target.name} not found` });
        continue;
      }
      if (!mustStamp(current, hash, firstHash)) continue;
      if (await deps.kube.stampTemplate(ns, target, annotation, hash)) {
        await deps.events.record(this.eventTarget(cs), { type: 'Normal', reason: 'RolloutRestarted', message: `${target.kind} ${target.name} rolled for versions ${hash}` });
      }
    }
  }

  private eventTarget(cs: CofferSecret) {
    return { namespace: cs.metadata.namespace!, name: cs.metadata.name, ...(cs.metadata.uid ? { uid: cs.metadata.uid } : {}) };
  }

  private async finish(cs: CofferSecret, ready: ReadyCondition, items: WantedItem[] | undefined, wrote: boolean): Promise<void> {
    const { deps } = this;
    const status = nextStatus(cs, ready, items, deps.now(), wrote);
    if (!status) return;
    const prev = cs.status?.conditions?.find((c) => c.type === 'Ready');
    if (ready.status === 'False' && (prev?.reason !== ready.reason || prev?.status !== 'False')) {
      await deps.events.record(this.eventTarget(cs), { type: 'Warning', reason: ready.reason, message: ready.message });
    } else if (ready.status === 'True' && wrote) {
      await deps.events.record(this.eventTarget(cs), { type: 'Normal', reason: 'Synced', message: `Secret ${targetName(cs)} holds versions ${JSON.stringify(status.syncedVersions ?? {})}` });
    }
    try {
      await deps.kube.applyStatus(cs.metadata.namespace!, cs.metadata.name, status);
    } catch (err) {
      deps.logger.warn({ coffersecret: `${cs.metadata.namespace}/${cs.metadata.name}`, err: describeError(err) }, 'could not write status');
      throw err;
    }
  }
}
