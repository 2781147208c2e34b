// The resize steps (operator/resize/machine.ts) as a function of what the
// operator observes: the StatefulSet, the leader's voters and learners, and
// status.resize.
import { describe, expect, it } from 'vitest';
import type { ResizeStatus } from '../../../operator/api/types.js';
import { decideResize, pdbMaxUnavailable, type LeaderView, type ResizeInput } from '../../../operator/resize/machine.js';

const NOW = '2025-01-01T00:00:00.000Z';
const ids = (n: number, from = 0) => Array.from({ length: n - from }, (_, i) => `vault-${i + from}`);
const leader = (voters: string[] | null, learners: string[] | null = voters ? [] : null): LeaderView => ({ id: 'vault-0', answered: true, voters, learners });
const sts = (specReplicas: number, replicas = specReplicas) => ({ generation: 2, observedGeneration: 2, specReplicas, replicas });

function input(over: Partial<ResizeInput>): ResizeInput {
  return { name: 'vault', target: 3, members: 3, statefulSet: sts(3), previous: undefined, leader: leader(ids(3)), otherChange: null, now: NOW, ...over };
}
const prev = (from: number, to: number, phase: ResizeStatus['phase']): ResizeStatus => ({ from, to, phase, startedAt: NOW, lastTransitionTime: NOW });

describe('decideResize', () => {
  it('a new cluster is formed at the spec\'s size; a steady one changes nothing', () => {
    expect(decideResize(input({ target: 5, statefulSet: null }))).toMatchObject({ declared: 5, statefulSetReplicas: 5, members: 5, resize: undefined, active: false });
    const d = decideResize(input({}));
    expect(d).toMatchObject({ declared: 3, statefulSetReplicas: 3, keyReplicas: 3, protectedVoters: 3, members: 3, resize: undefined, active: false, events: [] });
  });

  it('up: scales and declares in the same step, done only when the voters are exactly the declared set', () => {
    const start = decideResize(input({ target: 5 }));
    expect(start).toMatchObject({ declared: 5, statefulSetReplicas: 5, keyReplicas: 5, protectedVoters: 3, members: 3, holdsOtherChanges: true });
    expect(start.resize).toMatchObject({ from: 3, to: 5, phase: 'ScalingUp' });
    expect(start.events.map((e) => e.reason)).toEqual(['ResizeStarted', 'ScalingUp']);
    expect(start.progressing).toMatchObject({ status: 'True', reason: 'ScalingUp' });
    expect(start.notReady).toMatchObject({ status: 'False', reason: 'Resizing' });
    const p = prev(3, 5, 'ScalingUp');
    for (const [l, s] of [
      [leader(ids(3)), sts(5)], // no new voter yet
      [leader(ids(4), ['vault-4']), sts(5)], // vault-4 still a learner
      [leader(ids(5)), sts(5, 4)], // a pod still missing
      [leader(null), sts(5)], // an older server
      [{ id: undefined, answered: false, voters: null, learners: null }, sts(5)],
    ] as const) {
      const d = decideResize(input({ target: 5, statefulSet: s, previous: p, leader: l }));
      expect(d.resize?.phase).toBe('ScalingUp');
      expect(d.statefulSetReplicas).toBe(5);
      expect(d.events).toEqual([]);
      expect(d.resize?.lastTransitionTime).toBe(NOW);
    }
    const done = decideResize(input({ target: 5, statefulSet: sts(5), previous: p, leader: leader(ids(5)) }));
    expect(done).toMatchObject({ members: 5, resize: undefined, active: false, declared: 5, statefulSetReplicas: 5, protectedVoters: 5 });
    expect(done.events.map((e) => e.reason)).toEqual(['ResizeComplete']);
  });

  it('down: declares first, never scales in the same pass, scales once voters and learners are all declared', () => {
    const start = decideResize(input({ members: 5, target: 3, statefulSet: sts(5), leader: leader(ids(3)) }));
    // Even though the leader already has only declared voters: the declaration is written in this very pass.
    expect(start).toMatchObject({ declared: 3, statefulSetReplicas: 5, keyReplicas: 5, protectedVoters: 3 });
    expect(start.resize).toMatchObject({ from: 5, to: 3, phase: 'RemovingMembers' });
    expect(start.progressing?.reason).toBe('ScalingDown');
    const p = prev(5, 3, 'RemovingMembers');
    for (const l of [leader(ids(5)), leader(ids(4)), leader(ids(3), ['vault-3']), leader(null), leader([])]) {
      const d = decideResize(input({ members: 5, target: 3, statefulSet: sts(5), previous: p, leader: l }));
      expect(d.statefulSetReplicas).toBe(5);
      expect(d.resize?.phase).toBe('RemovingMembers');
    }
    const scale = decideResize(input({ members: 5, target: 3, statefulSet: sts(5), previous: p, leader: leader(ids(3)) }));
    expect(scale).toMatchObject({ statefulSetReplicas: 3, keyReplicas: 5, resize: { phase: 'ScalingDown' } });
    expect(scale.events.map((e) => e.reason)).toEqual(['ScalingDown']);
    // Pods still terminating: not done yet; keys now follow the StatefulSet.
    const terminating = decideResize(input({ members: 5, target: 3, statefulSet: sts(3, 5), previous: prev(5, 3, 'ScalingDown'), leader: leader(ids(3)) }));
    expect(terminating).toMatchObject({ statefulSetReplicas: 3, keyReplicas: 3, resize: { phase: 'ScalingDown' } });
    const done = decideResize(input({ members: 5, target: 3, statefulSet: sts(3), previous: prev(5, 3, 'ScalingDown'), leader: leader(ids(3)) }));
    expect(done).toMatchObject({ members: 3, resize: undefined });
  });

  it('a target changed mid-resize starts from the size declared until then', () => {
    // 3 -> 5 in progress, back to 3: a scale-down from 5 (vault-3 may already vote).
    const back = decideResize(input({ members: 3, target: 3, statefulSet: sts(5), previous: prev(3, 5, 'ScalingUp'), leader: leader(ids(4)) }));
    expect(back).toMatchObject({ declared: 3, statefulSetReplicas: 5, resize: { from: 5, to: 3, phase: 'RemovingMembers' } });
    // 5 -> 3 declared, back to 5: voters must be the 5 again.
    const up = decideResize(input({ members: 5, target: 5, statefulSet: sts(5), previous: prev(5, 3, 'RemovingMembers'), leader: leader(ids(4)) }));
    expect(up).toMatchObject({ declared: 5, statefulSetReplicas: 5, resize: { from: 3, to: 5, phase: 'ScalingUp' } });
    expect(decideResize(input({ members: 5, target: 5, statefulSet: sts(5), previous: prev(5, 3, 'RemovingMembers'), leader: leader(ids(5)) })))
      .toMatchObject({ members: 5, resize: undefined });
  });

  it('resumes from the StatefulSet when status.resize was lost', () => {
    // Scaled up, status not written: a resize from status.members.
    expect(decideResize(input({ members: 3, target: 5, statefulSet: sts(5), leader: leader(ids(3)) })).resize).toMatchObject({ from: 3, to: 5, phase: 'ScalingUp' });
    // A StatefulSet bigger than the cluster (changed by hand): its extra pods leave Raft before they go.
    expect(decideResize(input({ members: 3, target: 3, statefulSet: sts(4), leader: leader(ids(4)) }))).toMatchObject({ statefulSetReplicas: 4, declared: 3, resize: { phase: 'RemovingMembers' } });
  });

  it('waits (Pending, nothing changed) while another change runs; once started it holds the others', () => {
    const pending = decideResize(input({ target: 5, otherChange: 'the release rollout in progress (status.rollout)' }));
    expect(pending).toMatchObject({ declared: 3, statefulSetReplicas: 3, keyReplicas: 3, members: 3, active: true, holdsOtherChanges: false, resize: { phase: 'Pending', from: 3, to: 5 } });
    expect(pending.progressing).toMatchObject({ reason: 'ResizePending' });
    expect(pending.notReady).toBeUndefined();
    expect(pending.events.map((e) => e.reason)).toEqual(['ResizePending']);
    expect(decideResize(input({ target: 5, previous: prev(3, 5, 'Pending'), otherChange: 'x' })).events).toEqual([]);
    expect(decideResize(input({ target: 5, previous: prev(3, 5, 'Pending') }))).toMatchObject({ statefulSetReplicas: 5, resize: { phase: 'ScalingUp' } });
    // Started: another change does not stop it.
    expect(decideResize(input({ target: 5, statefulSet: sts(5), previous: prev(3, 5, 'ScalingUp'), otherChange: 'x' })).resize?.phase).toBe('ScalingUp');
    // Set back while pending: nothing to do.
    expect(decideResize(input({ target: 3, previous: prev(3, 5, 'Pending'), otherChange: 'x' }))).toMatchObject({ resize: undefined, active: false });
  });

  it('the PodDisruptionBudget allows the fault tolerance of the smaller voter set in play', () => {
    expect([1, 3, 5, 7].map(pdbMaxUnavailable)).toEqual([1, 1, 2, 3]);
    expect(decideResize(input({ members: 7, target: 5, statefulSet: sts(7) })).protectedVoters).toBe(5);
    expect(decideResize(input({ members: 5, target: 7, statefulSet: sts(5) })).protectedVoters).toBe(5);
  });
});
