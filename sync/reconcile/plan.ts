// The sync controller's decisions as pure functions: which versions a
// CofferSecret wants, whether the target Secret already holds them, the Secret
// to apply, whether a restart target must be stamped, and the status to
// write. No I/O here; ./reconciler.ts does the reads and writes around them.
import { createHash } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import { API_VERSION, KIND } from '../api/schema.js';
import type { CofferSecret, CofferSecretStatus, ReadyReason } from '../api/types.js';

export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'coffer-sync';
export const SYNCED_VERSIONS_ANNOTATION = 'coffer.dev/synced-versions';
export const VERSIONS_HASH_ANNOTATION = 'coffer.dev/versions-hash';
/** The hash the Secret was created with: a restart target is not rolled for the first sync. */
export const FIRST_HASH_ANNOTATION = 'coffer.dev/first-versions-hash';
export const RESTART_ANNOTATION_PREFIX = 'versions.sync.coffer.dev/';
export const FIELD_MANAGER = 'coffer-sync';

/** One key of the target Secret and the exact Coffer version it holds. */
export interface WantedItem {
  key: string;
  name: string;
  version: number;
}

export function targetName(cs: CofferSecret): string {
  return cs.spec.target.name ?? cs.metadata.name;
}

/** Coffer names whose current version the controller follows (pinned ones never move). */
export function followedNames(cs: CofferSecret): string[] {
  return [...new Set(cs.spec.data.filter((d) => d.version === undefined).map((d) => d.name))].sort();
}

/** Every Coffer name the CofferSecret mentions. */
export function allNames(cs: CofferSecret): string[] {
  return [...new Set(cs.spec.data.map((d) => d.name))].sort();
}

export type Wanted = { ok: true; items: WantedItem[] } | { ok: false; missing: string[] };

/** The versions to sync, given the current versions Coffer reported for the followed names. */
export function wantedVersions(cs: CofferSecret, current: Record<string, number>): Wanted {
  const missing = new Set<string>();
  const items: WantedItem[] = [];
  for (const d of cs.spec.data) {
    const version = d.version ?? current[d.name];
    if (version === undefined) missing.add(d.name);
    else items.push({ key: d.key, name: d.name, version });
  }
  return missing.size > 0 ? { ok: false, missing: [...missing].sort() } : { ok: true, items };
}

/** Hash of exactly what the Secret holds (key, name, version triples): 16 hex characters. */
export function versionsHash(items: readonly WantedItem[]): string {
  const text = [...items].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map((i) => `${i.key}\u0000${i.name}\u0000${i.version}`).join('\n');
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** {name: version}, keys sorted (what status.syncedVersions and the Secret's annotation show). */
export function syncedVersions(items: readonly WantedItem[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of [...items].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) out[i.name] = Math.max(out[i.name] ?? 0, i.version);
  return out;
}

/** The annotation a restart target's pod template carries for this CofferSecret (a valid annotation key). */
export function restartAnnotationKey(csName: string): string {
  const name = csName.length <= 63 ? csName : `${csName.slice(0, 46)}-${createHash('sha256').update(csName).digest('hex').slice(0, 16)}`;
  return RESTART_ANNOTATION_PREFIX + name;
}

/** True when `secret` is controlled by this CofferSecret (same uid). */
export function isOwnedBy(secret: V1Secret, cs: CofferSecret): boolean {
  return (secret.metadata?.ownerReferences ?? []).some((r) => r.controller === true && r.kind === KIND && r.uid === cs.metadata.uid);
}

/** Why an owned Secret cannot be brought to the spec by apply, or undefined. */
export function immutableProblem(existing: V1Secret, cs: CofferSecret): string | undefined {
  if ((existing.type ?? 'Opaque') !== cs.spec.target.type) {
    return `Secret ${targetName(cs)} has type ${existing.type ?? 'Opaque'} and the spec asks for ${cs.spec.target.type}; a Secret's type cannot change: delete the Secret and it is recreated`;
  }
  if (existing.immutable === true) return `Secret ${targetName(cs)} is marked immutable: delete it and it is recreated`;
  return undefined;
}

/** True when the owned Secret already holds exactly these versions, keys, labels and annotations (nothing to write). */
export function isCurrent(existing: V1Secret, cs: CofferSecret, items: readonly WantedItem[]): boolean {
  const annotations = existing.metadata?.annotations ?? {};
  if (annotations[VERSIONS_HASH_ANNOTATION] !== versionsHash(items)) return false;
  const keys = Object.keys(existing.data ?? {}).sort();
  const wantKeys = items.map((i) => i.key).sort();
  if (keys.length !== wantKeys.length || keys.some((k, i) => k !== wantKeys[i])) return false;
  const labels = existing.metadata?.labels ?? {};
  for (const [k, v] of Object.entries(cs.spec.target.labels ?? {})) if (labels[k] !== v) return false;
  if (labels[MANAGED_BY_LABEL] !== MANAGED_BY) return false;
  for (const [k, v] of Object.entries(cs.spec.target.annotations ?? {})) if (annotations[k] !== v) return false;
  return true;
}

/**
 * The Secret to server-side apply. `firstHash` is carried over from the
 * Secret being replaced (or this hash for a new one).
 */
export function desiredSecret(cs: CofferSecret, items: readonly WantedItem[], values: ReadonlyMap<string, string>, firstHash: string): V1Secret {
  const data: Record<string, string> = {};
  for (const i of items) {
    const value = values.get(`${i.name}@${i.version}`);
    if (value === undefined) throw new Error(`no value read for ${i.name} version ${i.version}`);
    data[i.key] = Buffer.from(value, 'utf8').toString('base64');
  }
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: targetName(cs),
      namespace: cs.metadata.namespace!,
      labels: { ...(cs.spec.target.labels ?? {}), [MANAGED_BY_LABEL]: MANAGED_BY },
      annotations: {
        ...(cs.spec.target.annotations ?? {}),
        [SYNCED_VERSIONS_ANNOTATION]: JSON.stringify(syncedVersions(items)),
        [VERSIONS_HASH_ANNOTATION]: versionsHash(items),
        [FIRST_HASH_ANNOTATION]: firstHash,
      },
      ownerReferences: [{ apiVersion: API_VERSION, kind: KIND, name: cs.metadata.name, uid: cs.metadata.uid!, controller: true, blockOwnerDeletion: true }],
    },
    type: cs.spec.target.type,
    data,
  };
}

/**
 * Whether a restart target's pod template must get `hash`: when it carries an
 * older one, or when the Secret has changed since it was created (a first sync
 * does not roll pods that were started to read it anyway).
 */
export function mustStamp(templateValue: string | undefined, hash: string, firstHash: string | undefined): boolean {
  if (templateValue === hash) return false;
  return templateValue !== undefined || (firstHash !== undefined && firstHash !== hash);
}

export interface ReadyCondition {
  status: 'True' | 'False';
  reason: ReadyReason;
  message: string;
}

/**
 * The next status. Ready's lastTransitionTime moves only when its status
 * changes; lastSyncTime only when the Secret was written or confirmed after a
 * change of status. Returns undefined when nothing would change.
 */
export function nextStatus(
  cs: CofferSecret,
  ready: ReadyCondition,
  synced: readonly WantedItem[] | undefined,
  now: Date,
  wrote: boolean,
): CofferSecretStatus | undefined {
  const prev = cs.status ?? {};
  const prevReady = prev.conditions?.find((c) => c.type === 'Ready');
  const generation = cs.metadata.generation ?? 0;
  const versions = synced ? syncedVersions(synced) : prev.syncedVersions;
  const hash = synced ? versionsHash(synced) : prev.versionsHash;
  const sameCondition = prevReady !== undefined && prevReady.status === ready.status && prevReady.reason === ready.reason &&
    prevReady.message === ready.message && prevReady.observedGeneration === generation;
  const sameVersions = JSON.stringify(versions ?? null) === JSON.stringify(prev.syncedVersions ?? null) && hash === prev.versionsHash;
  if (!wrote && sameCondition && sameVersions && prev.observedGeneration === generation) return undefined;
  const iso = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  return {
    observedGeneration: generation,
    ...(versions ? { syncedVersions: versions } : {}),
    ...(hash ? { versionsHash: hash } : {}),
    ...(wrote || (ready.status === 'True' && !sameCondition) ? { lastSyncTime: iso } : prev.lastSyncTime ? { lastSyncTime: prev.lastSyncTime } : {}),
    conditions: [{
      type: 'Ready',
      status: ready.status,
      observedGeneration: generation,
      lastTransitionTime: prevReady && prevReady.status === ready.status ? prevReady.lastTransitionTime : iso,
      reason: ready.reason,
      message: ready.message.slice(0, 1_000),
    }],
  };
}
