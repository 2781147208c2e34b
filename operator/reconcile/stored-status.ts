// The status subresource as stored: read back field by field (only what is
// well-formed enough to resume from), and written only when it changes.
import { ROLLOUT_PHASES } from '../api/schema.js';
import type { RolloutStatus, VaultClusterStatus } from '../api/types.js';
import { parseConditions } from './conditions.js';
import type { Pass, PassDeps } from './pass.js';
import { parseResize } from './membership.js';
import { parseWireguardStatus } from './wireguard.js';

/** status.rollout as stored, if it is well-formed enough to resume from. */
export function parseRollout(raw: unknown): RolloutStatus | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const o = raw as Record<string, unknown>;
  if (typeof o.phase !== 'string' || !(ROLLOUT_PHASES as readonly string[]).includes(o.phase)) return undefined;
  const out: RolloutStatus = { phase: o.phase as RolloutStatus['phase'] };
  for (const k of ['targetImage', 'targetRevision', 'startedAt', 'lastTransitionTime', 'message'] as const) {
    if (typeof o[k] === 'string') out[k] = o[k] as string;
  }
  for (const k of ['targetRewrap', 'currentRewrap'] as const) if (typeof o[k] === 'boolean') out[k] = o[k] as boolean;
  return out;
}

/** Fields of the stored status kept as they are when a pass does not recompute them. */
export function carryStatus(raw: Record<string, unknown>): VaultClusterStatus {
  const out: VaultClusterStatus = {};
  if (typeof raw.observedGeneration === 'number') out.observedGeneration = raw.observedGeneration;
  if (typeof raw.readyReplicas === 'number') out.readyReplicas = raw.readyReplicas;
  if (typeof raw.leader === 'string') out.leader = raw.leader;
  const rollout = parseRollout(raw.rollout);
  if (rollout) out.rollout = rollout;
  if (typeof raw.members === 'number') out.members = raw.members;
  const resize = parseResize(raw.resize);
  if (resize) out.resize = resize;
  const wireguard = parseWireguardStatus(raw.wireguard);
  if (wireguard) out.wireguard = wireguard;
  const conditions = parseConditions(raw.conditions);
  if (conditions.length > 0) out.conditions = conditions;
  return out;
}

/** Writes the status only when it differs from what is stored (no update loops through our own watch). */
export async function writeStatus(deps: PassDeps, pass: Pass, status: VaultClusterStatus): Promise<void> {
  if (sameJson(normalizeStatus(pass.stored), normalizeStatus(status as Record<string, unknown>))) return;
  deps.guard();
  await deps.client.applyVaultClusterStatus(pass.namespace, pass.name, status);
}

function normalizeStatus(s: Record<string, unknown>): unknown {
  return JSON.parse(JSON.stringify(s, (_k, v: unknown) => (v === null ? undefined : v)));
}

function sameJson(a: unknown, b: unknown): boolean {
  return stable(a) === stable(b);
}

function stable(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stable).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stable((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}
