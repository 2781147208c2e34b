// The rotation-flag and release rollout (DESIGN §6) as a pure function.
//
// No I/O, no clock: the reconciler observes the StatefulSet and the pods'
// /v1/health, calls decideRollout(), applies `template`, and persists
// `rollout` in status.rollout. The same inputs always give the same decision,
// so a restarted operator that replays the persisted status against what it
// observes resumes where the previous one stopped.
//
// Invariants:
// - VAULT_KMS_REWRAP_ENABLED=true is written into the pod template only after
//   the gate passed for that very image with the flag off: the StatefulSet
//   fully rolled (observedGeneration, updateRevision == currentRevision,
//   updated == ready == replicas) and every pod's /v1/health reporting the
//   image's release. Once the gate passed, status.rollout records
//   EnablingFlag, and the flag is written even if a pod flaps afterwards.
// - Disabling takes effect at once: spec.kms.rewrap.enabled=false writes the
//   flag off in the same reconcile, whatever phase the rollout was in.
// - Image upgrades go through the same gate. While the flag is on, a new
//   image is rolled out with the flag OFF, gated, and the flag switched on
//   again: the re-wrap worker only ever runs on a cluster verified to run one
//   release. (This costs a second rolling restart per upgrade when re-wrap is
//   on; a mixed-release cluster never runs the worker.)
// - Other spec changes (allowlist, replicas, …) are applied directly by the
//   reconciler; they are not gated.
import type { RolloutPhase, RolloutStatus } from '../api/types.js';
import { normalizeRelease, releaseOfImage } from './release.js';

/** What the rollout controls in the pod template. */
export interface PodTemplateState {
  image: string;
  rewrapEnabled: boolean;
}

/** The StatefulSet as observed (metadata.generation, spec and status). */
export interface ObservedStatefulSet {
  generation: number;
  observedGeneration?: number;
  /** spec.replicas */
  specReplicas: number;
  /** status.replicas */
  replicas: number;
  readyReplicas: number;
  updatedReplicas: number;
  currentRevision?: string;
  updateRevision?: string;
  /** Image and VAULT_KMS_REWRAP_ENABLED of the vault container in spec.template; null when absent. */
  template: PodTemplateState | null;
  /** Entries of VAULT_PEERS in spec.template (the Raft size the cluster was formed with); absent when it has none. */
  peerCount?: number;
}

export interface RolloutInput {
  /** VaultCluster name (pods are `<name>-<ordinal>`). */
  name: string;
  /** The validated spec; reads image, replicas and kms.rewrap.enabled. */
  spec: { image: string; replicas: number; kms: { rewrap: { enabled: boolean } } };
  /** status.rollout as persisted (undefined on a new VaultCluster). */
  previous?: RolloutStatus | undefined;
  /** null when the StatefulSet does not exist yet. */
  statefulSet: ObservedStatefulSet | null;
  /** Pod name -> `version` from its /v1/health, or null when unreachable. Missing pods count as unreachable. */
  podReleases: Readonly<Record<string, string | null>>;
  /** RFC 3339 timestamp of this decision. */
  now: string;
}

export interface GateResult {
  /** The whole gate: StatefulSet rolled and every pod reporting the release. */
  met: boolean;
  /** The StatefulSet part alone (template applied and observed, revisions equal, counts equal). */
  statefulSetRolled: boolean;
  /** The release the pods must report; null when the image does not say (then they must agree). */
  release: string | null;
  /** Why the gate is not met yet, one short sentence each; empty when met. */
  waitingFor: string[];
}

export interface RolloutEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface ConditionHint {
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

export interface RolloutDecision {
  /** Image and flag to write into the StatefulSet's pod template now. */
  template: PodTemplateState;
  /** The next status.rollout. */
  rollout: RolloutStatus;
  /** The gate for the template the current step rolls out. */
  gate: GateResult;
  phaseChanged: boolean;
  /** Events to record for this step (empty when nothing changed). */
  events: RolloutEvent[];
  progressing: ConditionHint;
  rewrapEnabled: ConditionHint;
  /** True while a rollout is in progress: the reconciler polls pod health again soon. */
  active: boolean;
}

const ACTIVE: ReadonlySet<RolloutPhase> = new Set(['RollingOutFlagOff', 'WaitingForGate', 'EnablingFlag', 'RollingOutFlagOn']);

export function isActivePhase(phase: RolloutPhase): boolean {
  return ACTIVE.has(phase);
}

function sameTemplate(a: PodTemplateState | null | undefined, b: PodTemplateState): boolean {
  return !!a && a.image === b.image && a.rewrapEnabled === b.rewrapEnabled;
}

/** Pod names of a VaultCluster with `replicas` nodes. */
function podNames(name: string, replicas: number): string[] {
  return Array.from({ length: replicas }, (_, i) => `${name}-${i}`);
}

/** The full gate of DESIGN §6 for one target template. */
export function evaluateGate(
  target: PodTemplateState,
  name: string,
  replicas: number,
  sts: ObservedStatefulSet | null,
  podReleases: Readonly<Record<string, string | null>>,
): GateResult {
  const release = releaseOfImage(target.image);
  const waitingFor: string[] = [];
  if (!sts) {
    waitingFor.push('the StatefulSet does not exist yet');
  } else {
    if (!sameTemplate(sts.template, target)) {
      waitingFor.push(
        `the StatefulSet template is not yet ${target.image} with VAULT_KMS_REWRAP_ENABLED=${target.rewrapEnabled}`,
      );
    } else if ((sts.observedGeneration ?? 0) < sts.generation) {
      waitingFor.push(`the StatefulSet controller has not observed generation ${sts.generation} yet (at ${sts.observedGeneration ?? 0})`);
    } else {
      if (sts.specReplicas !== replicas) waitingFor.push(`the StatefulSet has ${sts.specReplicas} replicas, want ${replicas}`);
      if (!sts.updateRevision || sts.updateRevision !== sts.currentRevision) {
        waitingFor.push(`currentRevision ${sts.currentRevision ?? '(none)'} != updateRevision ${sts.updateRevision ?? '(none)'}`);
      }
      if (sts.updatedReplicas !== replicas || sts.readyReplicas !== replicas || sts.replicas !== replicas) {
        waitingFor.push(`updated ${sts.updatedReplicas}, ready ${sts.readyReplicas}, current ${sts.replicas} of ${replicas} replicas`);
      }
    }
  }
  const statefulSetRolled = waitingFor.length === 0;
  if (statefulSetRolled) {
    const seen = new Set<string>();
    for (const pod of podNames(name, replicas)) {
      const v = podReleases[pod];
      if (v === undefined || v === null) {
        waitingFor.push(`pod ${pod}: /v1/health not reachable`);
        continue;
      }
      const got = normalizeRelease(v);
      seen.add(got);
      if (release !== null && got !== release) waitingFor.push(`pod ${pod} reports release ${v}, want ${release}`);
    }
    if (release === null && seen.size > 1) {
      waitingFor.push(`pods report different releases (${[...seen].sort().join(', ')}) and ${target.image} names none`);
    }
  }
  return { met: waitingFor.length === 0, statefulSetRolled, release, waitingFor };
}

function describeRelease(image: string, release: string | null): string {
  return release === null ? image : `${image} (release ${release})`;
}

/** The next step of the rollout. Pure: same input, same decision. */
export function decideRollout(input: RolloutInput): RolloutDecision {
  const { spec, name, statefulSet: sts, podReleases, now } = input;
  const prev = input.previous;
  const prevPhase: RolloutPhase = prev?.phase ?? 'Idle';
  const image = spec.image;
  const wantRewrap = spec.kms.rewrap.enabled;
  const applied = sts?.template ?? null;
  const gateFor = (t: PodTemplateState) => evaluateGate(t, name, spec.replicas, sts, podReleases);
  // Steady states stick: once Idle/Complete for this exact template, a pod
  // that restarts later is a readiness matter (condition Ready), not a rollout.
  const steady = (phase: RolloutPhase, t: PodTemplateState) =>
    prevPhase === phase && prev?.targetImage === t.image && prev?.currentRewrap === t.rewrapEnabled && sameTemplate(applied, t);

  const flagOff: PodTemplateState = { image, rewrapEnabled: false };
  const flagOn: PodTemplateState = { image, rewrapEnabled: true };
  let template: PodTemplateState;
  let phase: RolloutPhase;
  let gate: GateResult;

  if (!wantRewrap) {
    // Also the whole story of a plain create or image upgrade with re-wrap off.
    template = flagOff;
    gate = gateFor(flagOff);
    phase = gate.met || steady('Idle', flagOff) ? 'Idle' : gate.statefulSetRolled ? 'WaitingForGate' : 'RollingOutFlagOff';
  } else if (sameTemplate(applied, flagOn)) {
    template = flagOn;
    gate = gateFor(flagOn);
    phase = gate.met || steady('Complete', flagOn) ? 'Complete' : 'RollingOutFlagOn';
  } else if (prevPhase === 'EnablingFlag' && prev?.targetImage === image && prev.targetRewrap === true) {
    // The gate passed (recorded) but the flag has not reached the template
    // yet (failed apply, or a restart in between): finish the step.
    template = flagOn;
    gate = gateFor(flagOff);
    phase = 'EnablingFlag';
  } else {
    gate = gateFor(flagOff);
    if (gate.met) {
      template = flagOn;
      phase = 'EnablingFlag';
    } else {
      template = flagOff;
      phase = gate.statefulSetRolled ? 'WaitingForGate' : 'RollingOutFlagOff';
    }
  }

  const release = releaseOfImage(image);
  const targetChanged = prev?.targetImage !== image || prev?.targetRewrap !== wantRewrap;
  const phaseChanged = phase !== prevPhase;
  const active = isActivePhase(phase);
  const wasActive = isActivePhase(prevPhase);

  const rolled = sts !== null && sameTemplate(applied, template) && (sts.observedGeneration ?? 0) >= sts.generation;
  const message = progressMessage(phase, template, release, wantRewrap, gate);
  const rollout: RolloutStatus = {
    phase,
    targetImage: image,
    targetRewrap: wantRewrap,
    currentRewrap: template.rewrapEnabled,
    ...(rolled && sts?.updateRevision ? { targetRevision: sts.updateRevision } : {}),
    ...(active
      ? { startedAt: wasActive && !targetChanged && prev?.startedAt ? prev.startedAt : now }
      : prev?.startedAt
        ? { startedAt: prev.startedAt }
        : {}),
    lastTransitionTime: phaseChanged || !prev?.lastTransitionTime ? now : prev.lastTransitionTime,
    message,
  };

  const events: RolloutEvent[] = [];
  const what = describeRelease(image, release);
  if (targetChanged && !wantRewrap && applied?.rewrapEnabled === true) {
    events.push({ type: 'Normal', reason: 'RewrapDisabled', message: `Set VAULT_KMS_REWRAP_ENABLED=false at once (spec.kms.rewrap.enabled is false)` });
  }
  if (targetChanged && wantRewrap && applied?.rewrapEnabled === true && applied.image !== image) {
    events.push({
      type: 'Normal',
      reason: 'RewrapPausedForUpgrade',
      message: `Image changed to ${image}: rolling it out with VAULT_KMS_REWRAP_ENABLED=false, re-wrap is switched on again after the gate`,
    });
  }
  if (phaseChanged || (active && targetChanged)) {
    const ev = phaseEvent(phase, what, wantRewrap, gate, phaseChanged ? prevPhase : undefined);
    if (ev) events.push(ev);
  }

  return {
    template,
    rollout,
    gate,
    phaseChanged,
    events,
    progressing: active
      ? { status: 'True', reason: phase, message }
      : { status: 'False', reason: 'RolloutFinished', message },
    rewrapEnabled:
      phase === 'Complete'
        ? { status: 'True', reason: 'RewrapActive', message: `VAULT_KMS_REWRAP_ENABLED=true on every pod, all running ${what}` }
        : !wantRewrap
          ? { status: 'False', reason: 'Disabled', message: 'spec.kms.rewrap.enabled is false' }
          : { status: 'False', reason: phase, message },
    active,
  };
}

function progressMessage(
  phase: RolloutPhase,
  t: PodTemplateState,
  release: string | null,
  wantRewrap: boolean,
  gate: GateResult,
): string {
  const what = describeRelease(t.image, release);
  const waiting = gate.waitingFor.length > 0 ? `; waiting for: ${gate.waitingFor.join('; ')}` : '';
  switch (phase) {
    case 'Idle':
      return `every pod runs ${what} with VAULT_KMS_REWRAP_ENABLED=false`;
    case 'Complete':
      return `every pod runs ${what} with VAULT_KMS_REWRAP_ENABLED=true`;
    case 'RollingOutFlagOff':
      return `rolling every pod to ${what} with VAULT_KMS_REWRAP_ENABLED=false${wantRewrap ? ' (re-wrap is switched on after the gate)' : ''}${waiting}`;
    case 'WaitingForGate':
      return `StatefulSet rolled out to ${what}${waiting}`;
    case 'EnablingFlag':
      return `gate passed: every pod runs ${what}; setting VAULT_KMS_REWRAP_ENABLED=true`;
    case 'RollingOutFlagOn':
      return `rolling every pod to ${what} with VAULT_KMS_REWRAP_ENABLED=true${waiting}`;
  }
}

function phaseEvent(
  phase: RolloutPhase,
  what: string,
  wantRewrap: boolean,
  gate: GateResult,
  from: RolloutPhase | undefined,
): RolloutEvent | undefined {
  switch (phase) {
    case 'RollingOutFlagOff':
      if (from === 'WaitingForGate') {
        return { type: 'Normal', reason: 'RollingOut', message: `StatefulSet not fully rolled out to ${what} any more; waiting again` };
      }
      return {
        type: 'Normal',
        reason: 'RolloutStarted',
        message: `Rolling every pod to ${what} with VAULT_KMS_REWRAP_ENABLED=false${wantRewrap ? '; re-wrap is enabled after the gate' : ''}`,
      };
    case 'WaitingForGate':
      return {
        type: 'Normal',
        reason: 'WaitingForGate',
        message: `StatefulSet rolled out to ${what}; waiting for every pod's /v1/health to report ${gate.release ?? 'one release'}`,
      };
    case 'EnablingFlag':
      return { type: 'Normal', reason: 'GatePassed', message: `Every pod runs ${what} with the flag off; setting VAULT_KMS_REWRAP_ENABLED=true` };
    case 'RollingOutFlagOn':
      return { type: 'Normal', reason: 'RollingOutFlagOn', message: `Rolling every pod to VAULT_KMS_REWRAP_ENABLED=true on ${what}` };
    case 'Complete':
      return { type: 'Normal', reason: 'RewrapEnabled', message: `Re-wrap enabled: every pod runs ${what} with VAULT_KMS_REWRAP_ENABLED=true` };
    case 'Idle':
      return from && isActivePhase(from)
        ? { type: 'Normal', reason: 'RolloutComplete', message: `Every pod runs ${what}` }
        : undefined;
  }
}
