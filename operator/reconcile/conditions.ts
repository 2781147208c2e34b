// metav1.Condition bookkeeping: lastTransitionTime changes only when status does.
import type { Condition, ConditionType } from '../api/types.js';

export interface ConditionInput {
  type: ConditionType;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

/**
 * Returns `existing` with `next` set: a new condition gets lastTransitionTime
 * = now; an existing one keeps its lastTransitionTime unless the status flips
 * (reason, message and observedGeneration are always refreshed). Order: the
 * known types first, in CONDITION_TYPES order, then any others as they were.
 */
export function setCondition(existing: readonly Condition[], next: ConditionInput, observedGeneration: number, now: string): Condition[] {
  const out = existing.map((c) => ({ ...c }));
  const i = out.findIndex((c) => c.type === next.type);
  const old = i >= 0 ? out[i] : undefined;
  const cond: Condition = {
    type: next.type,
    status: next.status,
    observedGeneration,
    lastTransitionTime: old && old.status === next.status ? old.lastTransitionTime : now,
    reason: next.reason,
    message: truncate(next.message, 32_768),
  };
  if (i >= 0) out[i] = cond;
  else out.push(cond);
  return out;
}

export function getCondition(conditions: readonly Condition[] | undefined, type: ConditionType): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : s.slice(0, max - 1) + '…';
}

/** Best-effort parse of status.conditions as stored (drops malformed entries). */
export function parseConditions(raw: unknown): Condition[] {
  if (!Array.isArray(raw)) return [];
  const out: Condition[] = [];
  for (const c of raw) {
    if (typeof c !== 'object' || c === null) continue;
    const o = c as Record<string, unknown>;
    if (typeof o.type !== 'string' || typeof o.lastTransitionTime !== 'string' || typeof o.reason !== 'string') continue;
    if (o.status !== 'True' && o.status !== 'False' && o.status !== 'Unknown') continue;
    out.push({
      type: o.type,
      status: o.status,
      lastTransitionTime: o.lastTransitionTime,
      reason: o.reason,
      message: typeof o.message === 'string' ? o.message : '',
      ...(typeof o.observedGeneration === 'number' ? { observedGeneration: o.observedGeneration } : {}),
    });
  }
  return out;
}
