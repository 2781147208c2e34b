import { describe, expect, it } from 'vitest';
import type { RolloutStatus } from '../../../operator/api/types.js';
import {
  decideRollout, imageTag, releaseOfImage, type ObservedStatefulSet, type PodTemplateState, type RolloutDecision, type RolloutInput,
} from '../../../operator/rollout/index.js';

const IMG1 = 'registry.example/coffer:1.0.0';
const IMG2 = 'registry.example/coffer:1.1.0';
const NOW = '2025-01-01T00:00:00.000Z';
const LATER = '2025-01-01T00:05:00.000Z';

function spec(image: string, rewrap: boolean, replicas = 3) {
  return { image, replicas, kms: { rewrap: { enabled: rewrap } } };
}

/** A StatefulSet running `t`; rolled = the controller finished rolling it. */
function sts(t: PodTemplateState, rolled = true, replicas = 3, generation = 2): ObservedStatefulSet {
  const rev = `vault-${t.image.split(':')[1]}-${t.rewrapEnabled}`;
  return rolled
    ? { generation, observedGeneration: generation, specReplicas: replicas, replicas, readyReplicas: replicas, updatedReplicas: replicas, currentRevision: rev, updateRevision: rev, template: t }
    : { generation, observedGeneration: generation, specReplicas: replicas, replicas, readyReplicas: replicas - 1, updatedReplicas: 1, currentRevision: 'vault-old', updateRevision: rev, template: t };
}

function pods(version: string | null, replicas = 3): Record<string, string | null> {
  return Object.fromEntries(Array.from({ length: replicas }, (_, i) => [`vault-${i}`, version]));
}

function input(p: Partial<RolloutInput> & Pick<RolloutInput, 'spec'>): RolloutInput {
  return { name: 'vault', statefulSet: null, podReleases: {}, now: NOW, ...p };
}

/** Replays the persisted status against the same observation: same decision (restart safety). */
function expectRestartSafe(inp: RolloutInput, d: RolloutDecision) {
  const again = decideRollout({ ...inp, previous: d.rollout, now: LATER });
  expect(again.template).toEqual(d.template);
  expect(again.rollout.phase).toBe(d.rollout.phase);
  expect(again.rollout.lastTransitionTime).toBe(d.rollout.lastTransitionTime);
  expect(again.events).toEqual([]);
}

describe('release of an image', () => {
  it('is the tag, without a leading v, with or without a digest', () => {
    expect(releaseOfImage('registry.example/coffer:0.1.0')).toBe('0.1.0');
    expect(releaseOfImage('registry.example:5000/team/coffer:v0.2.0-rc.1')).toBe('0.2.0-rc.1');
    expect(releaseOfImage('registry.example/coffer:0.1.0@sha256:abc')).toBe('0.1.0');
    expect(imageTag('registry.example:5000/coffer')).toBeUndefined();
  });
  it('is unknown for a digest only, no tag, or latest', () => {
    expect(releaseOfImage('registry.example/coffer@sha256:abc')).toBeNull();
    expect(releaseOfImage('registry.example:5000/coffer')).toBeNull();
    expect(releaseOfImage('coffer:latest')).toBeNull();
  });
});

describe('rollout state machine', () => {
  it('a new VaultCluster rolls out with the flag off and ends Idle', () => {
    const i0 = input({ spec: spec(IMG1, false) });
    const d0 = decideRollout(i0);
    expect(d0.template).toEqual({ image: IMG1, rewrapEnabled: false });
    expect(d0.rollout).toMatchObject({ phase: 'RollingOutFlagOff', targetImage: IMG1, targetRewrap: false, currentRewrap: false, startedAt: NOW });
    expect(d0.events.map((e) => e.reason)).toEqual(['RolloutStarted']);
    expect(d0.progressing.status).toBe('True');
    expectRestartSafe(i0, d0);

    const i1 = input({ spec: spec(IMG1, false), previous: d0.rollout, statefulSet: sts(d0.template), podReleases: pods('1.0.0'), now: LATER });
    const d1 = decideRollout(i1);
    expect(d1.rollout.phase).toBe('Idle');
    expect(d1.gate.met).toBe(true);
    expect(d1.events.map((e) => e.reason)).toEqual(['RolloutComplete']);
    expect(d1.progressing).toMatchObject({ status: 'False', reason: 'RolloutFinished' });
    expect(d1.rewrapEnabled).toMatchObject({ status: 'False', reason: 'Disabled' });
    expect(d1.rollout.startedAt).toBe(NOW);
    expectRestartSafe(i1, d1);
  });

  it('walks every phase of enabling re-wrap, each step restart-safe', () => {
    const off = { image: IMG1, rewrapEnabled: false };
    const on = { image: IMG1, rewrapEnabled: true };
    const idle: RolloutStatus = { phase: 'Idle', targetImage: IMG1, targetRewrap: false, currentRewrap: false, lastTransitionTime: NOW };

    // Enabling while one pod still reports an older release: the gate holds.
    const iWait = input({ spec: spec(IMG1, true), previous: idle, statefulSet: sts(off), podReleases: { ...pods('1.0.0'), 'vault-2': '0.9.0' } });
    const dWait = decideRollout(iWait);
    expect(dWait.rollout.phase).toBe('WaitingForGate');
    expect(dWait.template).toEqual(off);
    expect(dWait.gate.statefulSetRolled).toBe(true);
    expect(dWait.gate.waitingFor).toEqual(['pod vault-2 reports release 0.9.0, want 1.0.0']);
    expect(dWait.events.map((e) => e.reason)).toEqual(['WaitingForGate']);
    expectRestartSafe(iWait, dWait);

    // An unreachable pod holds the gate too.
    const dUnreach = decideRollout({ ...iWait, previous: dWait.rollout, podReleases: { ...pods('1.0.0'), 'vault-1': null } });
    expect(dUnreach.rollout.phase).toBe('WaitingForGate');
    expect(dUnreach.gate.waitingFor).toEqual(['pod vault-1: /v1/health not reachable']);

    // Gate met: EnablingFlag, template flag on.
    const iGate = input({ spec: spec(IMG1, true), previous: dWait.rollout, statefulSet: sts(off), podReleases: pods('1.0.0') });
    const dGate = decideRollout(iGate);
    expect(dGate.rollout.phase).toBe('EnablingFlag');
    expect(dGate.template).toEqual(on);
    expect(dGate.rollout.currentRewrap).toBe(true);
    expect(dGate.events.map((e) => e.reason)).toEqual(['GatePassed']);

    // Restart at EnablingFlag before the flag reached the template, with a pod
    // flapping meanwhile: the recorded gate decision is finished, not re-checked.
    const iCrash = { ...iGate, previous: dGate.rollout, podReleases: { ...pods('1.0.0'), 'vault-0': null } };
    const dCrash = decideRollout(iCrash);
    expect(dCrash.rollout.phase).toBe('EnablingFlag');
    expect(dCrash.template).toEqual(on);
    expectRestartSafe(iCrash, dCrash);

    // The flag is in the template, the StatefulSet rolls: RollingOutFlagOn.
    const iOn = input({ spec: spec(IMG1, true), previous: dGate.rollout, statefulSet: sts(on, false), podReleases: pods('1.0.0') });
    const dOn = decideRollout(iOn);
    expect(dOn.rollout.phase).toBe('RollingOutFlagOn');
    expect(dOn.template).toEqual(on);
    expect(dOn.rewrapEnabled).toMatchObject({ status: 'False', reason: 'RollingOutFlagOn' });
    expectRestartSafe(iOn, dOn);

    // A restart that lost the EnablingFlag status (status still WaitingForGate)
    // but the flag reached the template: resumes at RollingOutFlagOn.
    const dLost = decideRollout({ ...iOn, previous: dWait.rollout });
    expect(dLost.rollout.phase).toBe('RollingOutFlagOn');
    expect(dLost.template).toEqual(on);

    // Rolled and every pod reports the release: Complete.
    const iDone = input({ spec: spec(IMG1, true), previous: dOn.rollout, statefulSet: sts(on), podReleases: pods('1.0.0') });
    const dDone = decideRollout(iDone);
    expect(dDone.rollout.phase).toBe('Complete');
    expect(dDone.rewrapEnabled).toMatchObject({ status: 'True', reason: 'RewrapActive' });
    expect(dDone.events.map((e) => e.reason)).toEqual(['RewrapEnabled']);
    expect(dDone.active).toBe(false);
    expectRestartSafe(iDone, dDone);

    // Complete is sticky: a pod restarting later is not a rollout.
    const dFlap = decideRollout({ ...iDone, previous: dDone.rollout, statefulSet: sts(on, false) });
    expect(dFlap.rollout.phase).toBe('Complete');
    expect(dFlap.events).toEqual([]);
  });

  it('never enables the flag before the StatefulSet part of the gate holds', () => {
    const off = { image: IMG1, rewrapEnabled: false };
    const base = sts(off);
    const cases: [Partial<ObservedStatefulSet>, string][] = [
      [{ observedGeneration: 1 }, 'has not observed generation 2'],
      [{ currentRevision: 'vault-old' }, '!= updateRevision'],
      [{ updatedReplicas: 2 }, 'updated 2, ready 3'],
      [{ readyReplicas: 2 }, 'ready 2'],
      [{ template: { image: IMG1, rewrapEnabled: true } }, 'template is not yet'],
      [{ specReplicas: 1 }, 'has 1 replicas, want 3'],
    ];
    for (const [patch, why] of cases) {
      const d = decideRollout(input({ spec: spec(IMG1, true), statefulSet: { ...base, ...patch }, podReleases: pods('1.0.0') }));
      if (patch.template) continue; // covered below: a flag-on template means "already enabled"
      expect(d.template.rewrapEnabled, why).toBe(false);
      expect(d.rollout.phase, why).toBe('RollingOutFlagOff');
      expect(d.gate.waitingFor.join('; '), why).toContain(why);
    }
    // Missing pods count as unreachable.
    const d = decideRollout(input({ spec: spec(IMG1, true), statefulSet: base, podReleases: { 'vault-0': '1.0.0' } }));
    expect(d.rollout.phase).toBe('WaitingForGate');
    expect(d.gate.waitingFor).toHaveLength(2);
  });

  it('disabling takes effect at once from every phase', () => {
    const on = { image: IMG1, rewrapEnabled: true };
    const off = { image: IMG1, rewrapEnabled: false };
    const phases: [RolloutStatus['phase'], ObservedStatefulSet][] = [
      ['RollingOutFlagOff', sts(off, false)],
      ['WaitingForGate', sts(off)],
      ['EnablingFlag', sts(off)],
      ['RollingOutFlagOn', sts(on, false)],
      ['Complete', sts(on)],
    ];
    for (const [phase, observed] of phases) {
      const previous: RolloutStatus = { phase, targetImage: IMG1, targetRewrap: true, currentRewrap: observed.template!.rewrapEnabled, lastTransitionTime: NOW };
      const inp = input({ spec: spec(IMG1, false), previous, statefulSet: observed, podReleases: pods('1.0.0') });
      const d = decideRollout(inp);
      expect(d.template, phase).toEqual(off);
      expect(d.rollout.targetRewrap).toBe(false);
      if (observed.template!.rewrapEnabled) {
        expect(d.events.map((e) => e.reason), phase).toContain('RewrapDisabled');
        expect(d.rollout.phase, phase).toBe('RollingOutFlagOff');
      }
      expect(d.rewrapEnabled.status).toBe('False');
      expectRestartSafe(inp, d);
    }
  });

  it('an image upgrade goes through the gate', () => {
    const idle: RolloutStatus = { phase: 'Idle', targetImage: IMG1, targetRewrap: false, currentRewrap: false, lastTransitionTime: NOW };
    const i0 = input({ spec: spec(IMG2, false), previous: idle, statefulSet: sts({ image: IMG1, rewrapEnabled: false }), podReleases: pods('1.0.0') });
    const d0 = decideRollout(i0);
    expect(d0.template).toEqual({ image: IMG2, rewrapEnabled: false });
    expect(d0.rollout.phase).toBe('RollingOutFlagOff');
    expect(d0.events.map((e) => e.reason)).toEqual(['RolloutStarted']);
    // Rolled, but the pods still report the old release (e.g. a wrongly tagged image).
    const i1 = input({ spec: spec(IMG2, false), previous: d0.rollout, statefulSet: sts({ image: IMG2, rewrapEnabled: false }), podReleases: pods('1.0.0') });
    const d1 = decideRollout(i1);
    expect(d1.rollout.phase).toBe('WaitingForGate');
    expect(d1.progressing.status).toBe('True');
    const d2 = decideRollout({ ...i1, previous: d1.rollout, podReleases: pods('1.1.0') });
    expect(d2.rollout.phase).toBe('Idle');
    expect(d2.events.map((e) => e.reason)).toEqual(['RolloutComplete']);
  });

  it('an image upgrade while re-wrap is on rolls with the flag off, then enables it again', () => {
    const complete: RolloutStatus = { phase: 'Complete', targetImage: IMG1, targetRewrap: true, currentRewrap: true, lastTransitionTime: NOW };
    const d0 = decideRollout(input({ spec: spec(IMG2, true), previous: complete, statefulSet: sts({ image: IMG1, rewrapEnabled: true }), podReleases: pods('1.0.0') }));
    expect(d0.template).toEqual({ image: IMG2, rewrapEnabled: false });
    expect(d0.rollout.phase).toBe('RollingOutFlagOff');
    expect(d0.events.map((e) => e.reason)).toEqual(['RewrapPausedForUpgrade', 'RolloutStarted']);
    const d1 = decideRollout(input({ spec: spec(IMG2, true), previous: d0.rollout, statefulSet: sts({ image: IMG2, rewrapEnabled: false }), podReleases: pods('1.1.0') }));
    expect(d1.rollout.phase).toBe('EnablingFlag');
    expect(d1.template).toEqual({ image: IMG2, rewrapEnabled: true });
  });

  it('image and flag changing at once: new image with the flag off first, then the flag', () => {
    const idle: RolloutStatus = { phase: 'Idle', targetImage: IMG1, targetRewrap: false, currentRewrap: false, lastTransitionTime: NOW };
    const i0 = input({ spec: spec(IMG2, true), previous: idle, statefulSet: sts({ image: IMG1, rewrapEnabled: false }), podReleases: pods('1.0.0') });
    const d0 = decideRollout(i0);
    expect(d0.template).toEqual({ image: IMG2, rewrapEnabled: false });
    expect(d0.rollout).toMatchObject({ phase: 'RollingOutFlagOff', targetImage: IMG2, targetRewrap: true, currentRewrap: false });
    expectRestartSafe(i0, d0);
    // The old release being fully rolled out does not count for the new image.
    expect(d0.gate.met).toBe(false);
    const d1 = decideRollout(input({ spec: spec(IMG2, true), previous: d0.rollout, statefulSet: sts({ image: IMG2, rewrapEnabled: false }, false), podReleases: pods('1.1.0') }));
    expect(d1.rollout.phase).toBe('RollingOutFlagOff');
    expect(d1.template.rewrapEnabled).toBe(false);
    const d2 = decideRollout(input({ spec: spec(IMG2, true), previous: d1.rollout, statefulSet: sts({ image: IMG2, rewrapEnabled: false }), podReleases: pods('1.1.0') }));
    expect(d2.rollout.phase).toBe('EnablingFlag');
    expect(d2.template).toEqual({ image: IMG2, rewrapEnabled: true });
    // A new image while EnablingFlag is recorded: the recorded gate was for the old image.
    const d3 = decideRollout(input({ spec: spec(IMG1, true), previous: d2.rollout, statefulSet: sts({ image: IMG2, rewrapEnabled: false }), podReleases: pods('1.1.0') }));
    expect(d3.template).toEqual({ image: IMG1, rewrapEnabled: false });
    expect(d3.rollout.phase).toBe('RollingOutFlagOff');
  });

  it('with an image that names no release, the pods must agree on one', () => {
    const img = 'registry.example/coffer@sha256:0123';
    const off = { image: img, rewrapEnabled: false };
    const split = decideRollout(input({ spec: spec(img, true), statefulSet: sts(off), podReleases: { ...pods('1.0.0'), 'vault-1': '1.1.0' } }));
    expect(split.rollout.phase).toBe('WaitingForGate');
    expect(split.gate.waitingFor[0]).toContain('pods report different releases (1.0.0, 1.1.0)');
    const same = decideRollout(input({ spec: spec(img, true), statefulSet: sts(off), podReleases: pods('1.1.0') }));
    expect(same.rollout.phase).toBe('EnablingFlag');
  });

  it('keeps startedAt during a rollout and lastTransitionTime until the phase changes', () => {
    const i0 = input({ spec: spec(IMG1, false) });
    const d0 = decideRollout(i0);
    const d1 = decideRollout({ ...i0, previous: d0.rollout, statefulSet: sts({ image: IMG1, rewrapEnabled: false }, false), now: LATER });
    expect(d1.rollout.phase).toBe('RollingOutFlagOff');
    expect(d1.rollout.startedAt).toBe(NOW);
    expect(d1.rollout.lastTransitionTime).toBe(NOW);
    expect(d1.phaseChanged).toBe(false);
    expect(d1.rollout.targetRevision).toBe('vault-1.0.0-false');
  });
});
