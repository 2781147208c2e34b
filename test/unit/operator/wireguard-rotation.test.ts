import { describe, expect, it } from 'vitest';
import type { WireguardStatus } from '../../../operator/api/types.js';
import type { ObservedStatefulSet } from '../../../operator/rollout/machine.js';
import { decideRotation, statefulSetWaits, type ObservedPod, type RotationDecision, type RotationInput } from '../../../operator/wireguard/rotation.js';

const NOW = '2025-01-01T00:00:00.000Z';
const LATER = '2025-01-01T00:05:00.000Z';

/**
 * A tiny world for the rotation: the key Secret (per-ordinal generations and
 * a key id per ordinal), the pods, the recorded generation and status.
 * Evicted pods vanish; kubelet() brings them back as new, Ready instances.
 */
class World {
  gens: number[];
  keyIds: number[];
  pods: Record<string, ObservedPod | undefined> = {};
  status: WireguardStatus | undefined;
  recorded: number;
  rolloutActive = false;
  log: string[] = [];
  /** uid of each pod when its key was last replaced. */
  uidAtKeyWrite = new Map<number, string | undefined>();
  maxDown = 0;
  private nextUid = 1;
  private nextKey = 100;

  constructor(public replicas = 3, public target = 2, recorded = 1) {
    this.recorded = recorded;
    this.gens = Array.from({ length: replicas }, () => recorded);
    this.keyIds = Array.from({ length: replicas }, () => this.nextKey++);
    for (let i = 0; i < replicas; i++) this.pods[`vault-${i}`] = this.newPod();
  }

  newPod(ready = true): ObservedPod {
    return { uid: `uid-${this.nextUid++}`, ready, terminating: false };
  }

  down(): number {
    return Array.from({ length: this.replicas }, (_, i) => this.pods[`vault-${i}`]).filter((p) => !p || !p.ready || p.terminating).length;
  }

  input(now = NOW): RotationInput {
    return {
      name: 'vault', replicas: this.replicas, target: this.target, recorded: this.recorded, keyGenerations: [...this.gens],
      previous: this.status, pods: { ...this.pods },
      // The StatefulSet's own counts follow the pods.
      statefulSetWaits: this.down() > 0 ? [`ready ${this.replicas - this.down()} of ${this.replicas}`] : [],
      rolloutActive: this.rolloutActive, now,
    };
  }

  decide(now = NOW): RotationDecision {
    return decideRotation(this.input(now));
  }

  /** Performs a decision's actions like the reconciler: key (Secret + ConfigMap), eviction, annotation, then status. */
  act(d: RotationDecision, opts: { key?: boolean; evict?: boolean; record?: boolean; status?: boolean } = {}): void {
    const { key = true, evict = true, record = true, status = true } = opts;
    if (key && d.replaceKey !== undefined) {
      const k = d.replaceKey;
      this.gens[k] = this.target;
      this.keyIds[k] = this.nextKey++;
      this.uidAtKeyWrite.set(k, this.pods[`vault-${k}`]?.uid);
      this.log.push(`key ${k}`);
    }
    if (key && evict && d.evict) {
      const p = this.pods[d.evict.pod];
      if (p && p.uid === d.evict.uid) {
        this.pods[d.evict.pod] = undefined;
        this.log.push(`evict ${d.evict.pod}`);
      } else this.log.push(`evict ${d.evict.pod} (gone)`);
    }
    if (key && evict && record && d.recordGeneration !== undefined) {
      this.recorded = d.recordGeneration;
      this.log.push(`record ${d.recordGeneration}`);
    }
    if (key && evict && record && status) this.status = d.status;
    this.maxDown = Math.max(this.maxDown, this.down());
  }

  /** The StatefulSet controller and the kubelet: missing pods come back, new and Ready. */
  kubelet(): void {
    for (let i = 0; i < this.replicas; i++) if (!this.pods[`vault-${i}`]) this.pods[`vault-${i}`] = this.newPod();
  }

  /** Runs passes (each followed by the kubelet) until the rotation is idle. */
  run(limit = 50, crashAt?: { pass: number; after: 'key' | 'evict' | 'record' }): number {
    for (let pass = 0; pass < limit; pass++) {
      const d = this.decide();
      if (crashAt?.pass === pass) {
        // The operator dies part-way through this pass: later writes and the status are lost.
        this.act(d, { key: true, evict: crashAt.after !== 'key', record: crashAt.after === 'record', status: false });
      } else {
        this.act(d);
      }
      this.kubelet();
      if (!d.active && d.recordGeneration === undefined && this.status?.rotatingOrdinal === undefined && this.recorded >= this.target) return pass;
    }
    throw new Error(`no end after ${limit} passes: ${this.log.join(', ')}`);
  }

  /** Every ordinal got exactly one new key at the target, and was restarted after it. */
  expectRotated(): void {
    expect(this.gens).toEqual(Array(this.replicas).fill(this.target));
    expect(this.recorded).toBe(this.target);
    for (let k = 0; k < this.replicas; k++) {
      expect(this.log.filter((l) => l === `key ${k}`), `key writes of ${k}`).toHaveLength(1);
      expect(this.pods[`vault-${k}`]?.uid, `vault-${k} restarted after its key`).not.toBe(this.uidAtKeyWrite.get(k));
    }
    expect(this.maxDown).toBeLessThanOrEqual(1);
    expect(this.status).toMatchObject({ keyGeneration: this.target });
    expect(this.status?.rotatingOrdinal).toBeUndefined();
  }
}

describe('WireGuard key rotation', () => {
  it('is idle when the spec generation is the recorded one', () => {
    const w = new World(3, 1, 1);
    const d = w.decide();
    expect(d).toMatchObject({ active: false, status: { keyGeneration: 1, message: "every pod's WireGuard key is at generation 1" }, events: [] });
    expect(d.replaceKey).toBeUndefined();
    expect(d.evict).toBeUndefined();
    expect(d.recordGeneration).toBeUndefined();
    expect(d.progressing).toBeUndefined();
  });

  it('rotates one ordinal at a time through every step, with events and status', () => {
    const w = new World(3, 2, 1);
    // Pass 1: pick vault-0, record where we are, touch nothing.
    let d = w.decide();
    expect(d).toMatchObject({ active: true, status: { keyGeneration: 1, targetKeyGeneration: 2, rotatingOrdinal: 0, step: 'ReplacingKey', podUID: 'uid-1', startedAt: NOW } });
    expect(d.replaceKey).toBeUndefined();
    expect(d.evict).toBeUndefined();
    expect(d.events.map((e) => e.reason)).toEqual(['WireGuardKeyRotationStarted']);
    expect(d.progressing).toMatchObject({ status: 'True', reason: 'RotatingWireGuardKeys' });
    w.act(d);

    // Pass 2: new key for vault-0, then evict it.
    d = w.decide();
    expect(d.replaceKey).toBe(0);
    expect(d.evict).toEqual({ pod: 'vault-0', uid: 'uid-1' });
    expect(d.status).toMatchObject({ rotatingOrdinal: 0, step: 'RestartingPod', podUID: 'uid-1' });
    expect(d.events.map((e) => e.reason)).toEqual(['WireGuardKeyReplaced']);
    w.act(d);
    expect(w.log).toEqual(['key 0', 'evict vault-0']);

    // Pass 3: vault-0 is gone: wait, nothing else.
    d = w.decide();
    expect(d).toMatchObject({ active: true, status: { rotatingOrdinal: 0, step: 'RestartingPod' }, events: [] });
    expect(d.evict).toBeUndefined();
    expect(d.status.message).toContain('vault-0 does not exist');
    w.act(d);

    // It comes back but is not Ready yet: still waiting.
    w.pods['vault-0'] = w.newPod(false);
    d = w.decide();
    expect(d.status.message).toContain('pod vault-0 is not Ready');
    expect(d.evict).toBeUndefined();
    w.act(d);

    // Ready: on to vault-1.
    w.pods['vault-0']!.ready = true;
    d = w.decide();
    expect(d.events.map((e) => e.reason)).toEqual(['WireGuardPodRestarted']);
    expect(d.events[0]!.message).toContain('next: vault-1');
    expect(d.status).toMatchObject({ rotatingOrdinal: 1, step: 'ReplacingKey', podUID: 'uid-2', startedAt: NOW });
    w.act(d);

    const end = w.run();
    expect(end).toBeGreaterThan(0);
    expect(w.log).toEqual(['key 0', 'evict vault-0', 'key 1', 'evict vault-1', 'key 2', 'evict vault-2', 'record 2']);
    w.expectRotated();
    expect(w.status?.message).toBe("every pod's WireGuard key is at generation 2");
  });

  it('completes with an annotation write and a final event, then stays idle', () => {
    const w = new World(3, 2, 1);
    const events: string[] = [];
    for (let i = 0; i < 20 && !(w.recorded === 2 && !w.status?.rotatingOrdinal && w.status?.targetKeyGeneration === undefined); i++) {
      const d = w.decide();
      events.push(...d.events.map((e) => e.reason));
      w.act(d);
      w.kubelet();
    }
    expect(events).toEqual([
      'WireGuardKeyRotationStarted', 'WireGuardKeyReplaced', 'WireGuardPodRestarted', 'WireGuardKeyReplaced', 'WireGuardPodRestarted',
      'WireGuardKeyReplaced', 'WireGuardPodRestarted', 'WireGuardKeyRotationComplete',
    ]);
    const idle = w.decide(LATER);
    expect(idle).toMatchObject({ active: false, events: [] });
    expect(idle.status.lastTransitionTime).toBe(w.status?.lastTransitionTime);
  });

  it('waits for a fully ready cluster before replacing a key, and for a release rollout', () => {
    const w = new World(3, 2, 1);
    w.act(w.decide());
    w.pods['vault-2']!.ready = false;
    let d = w.decide();
    expect(d.replaceKey).toBeUndefined();
    expect(d.evict).toBeUndefined();
    expect(d.status).toMatchObject({ rotatingOrdinal: 0, step: 'ReplacingKey' });
    expect(d.status.message).toContain('pod vault-2 is not Ready');
    expect(d.status.message).toContain('ready 2 of 3');
    w.pods['vault-2']!.ready = true;
    w.rolloutActive = true;
    d = w.decide();
    expect(d.replaceKey).toBeUndefined();
    expect(d.status.message).toContain('a release rollout is in progress');
    w.rolloutActive = false;
    expect(w.decide().replaceKey).toBe(0);
    // A waiting pass replayed against its own status says the same, with no events.
    w.rolloutActive = true;
    const first = w.decide();
    w.act(first);
    const again = w.decide(LATER);
    expect(again.status).toEqual(first.status);
    expect(again.events).toEqual([]);
  });

  it.each([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])('survives an operator restart before the status write of pass %i', (pass) => {
    const w = new World(3, 2, 1);
    w.run(50, { pass, after: 'record' });
    w.expectRotated();
  });

  it('reports completion once when the operator stopped after recording the generation', () => {
    const w = new World(3, 2, 1);
    const reasons: string[] = [];
    for (let i = 0; i < 30 && w.recorded < 2; i++) {
      const d = w.decide();
      if (d.recordGeneration !== undefined) {
        w.act(d, { status: false });
        break;
      }
      w.act(d);
      w.kubelet();
    }
    expect(w.status?.rotatingOrdinal).toBe(2);
    const d = w.decide();
    reasons.push(...d.events.map((e) => e.reason));
    expect(reasons).toEqual(['WireGuardKeyRotationComplete']);
    expect(d.status).toEqual({ keyGeneration: 2, lastTransitionTime: NOW, message: "every pod's WireGuard key is at generation 2" });
  });

  it.each([1, 2, 4, 5, 7])('survives a restart between the key write and the eviction (pass %i)', (pass) => {
    const w = new World(3, 2, 1);
    w.run(50, { pass, after: 'key' });
    w.expectRotated();
    // The lost eviction was done by the next operator: still one key per ordinal.
  });

  it.each([1, 4, 7])('survives a restart between the eviction and the status write (pass %i)', (pass) => {
    const w = new World(3, 2, 1);
    w.run(50, { pass, after: 'evict' });
    w.expectRotated();
    // No instance was evicted twice.
    const evictions = w.log.filter((l) => l.startsWith('evict'));
    expect(evictions).toEqual(['evict vault-0', 'evict vault-1', 'evict vault-2']);
  });

  it('evicts again when the PodDisruptionBudget refused, and never a replaced instance', () => {
    const w = new World(3, 2, 1);
    w.act(w.decide());
    const d = w.decide();
    expect(d.evict).toEqual({ pod: 'vault-0', uid: 'uid-1' });
    w.act(d, { evict: false }); // key written, eviction refused (429), status written
    w.act({ ...d, replaceKey: undefined, evict: undefined });
    expect(w.status).toMatchObject({ step: 'RestartingPod', podUID: 'uid-1' });
    const retry = w.decide();
    expect(retry.replaceKey).toBeUndefined();
    expect(retry.evict).toEqual({ pod: 'vault-0', uid: 'uid-1' });
    // Someone else restarted it meanwhile: not evicted again.
    w.pods['vault-0'] = w.newPod();
    const after = w.decide();
    expect(after.evict).toBeUndefined();
    expect(after.status).toMatchObject({ rotatingOrdinal: 1, step: 'ReplacingKey' });
    // And a terminating old instance is waited for, not evicted.
    const t = new World(3, 2, 1);
    t.act(t.decide());
    t.act(t.decide(), { evict: false });
    t.status = { ...t.decide().status, step: 'RestartingPod', podUID: 'uid-1' };
    t.pods['vault-0']!.terminating = true;
    const wait = t.decide();
    expect(wait.evict).toBeUndefined();
    expect(wait.status.message).toContain('to terminate');
  });

  it('skips a rotating ordinal that was scaled away, and new ordinals start with current keys', () => {
    const w = new World(5, 2, 1);
    for (let i = 0; i < 30 && w.status?.rotatingOrdinal !== 4; i++) {
      w.act(w.decide());
      w.kubelet();
    }
    expect(w.status).toMatchObject({ rotatingOrdinal: 4, step: 'ReplacingKey' });
    // Scale down to 3 while ordinal 4 is next.
    w.replicas = 3;
    w.gens = w.gens.slice(0, 3);
    delete w.pods['vault-3'];
    delete w.pods['vault-4'];
    const d = w.decide();
    expect(d.recordGeneration).toBe(2);
    expect(d.events.map((e) => e.reason)).toEqual(['WireGuardKeyRotationComplete']);

    // Scale up during a rotation: the new ordinals' keys are already at the target.
    const u = new World(3, 2, 1);
    u.act(u.decide());
    u.replicas = 5;
    u.gens.push(2, 2);
    u.pods['vault-3'] = u.newPod();
    u.pods['vault-4'] = u.newPod();
    u.run();
    expect(u.log.filter((l) => l.startsWith('key'))).toEqual(['key 0', 'key 1', 'key 2']);
  });

  it('restarts from the lowest old key when the target rises again mid-way; ignores a lower target', () => {
    const w = new World(3, 2, 1);
    for (let i = 0; i < 30 && w.status?.rotatingOrdinal !== 1; i++) {
      w.act(w.decide());
      w.kubelet();
    }
    w.target = 3;
    w.run();
    expect(w.gens).toEqual([3, 3, 3]);
    expect(w.recorded).toBe(3);
    // vault-1 was next (generation 3 now), then the lowest old key again: vault-0 (2), vault-2 (1).
    expect(w.log.filter((l) => l.startsWith('key'))).toEqual(['key 0', 'key 1', 'key 0', 'key 2']);
    expect(w.maxDown).toBeLessThanOrEqual(1);

    const low = new World(3, 1, 4);
    const d = low.decide();
    expect(d.active).toBe(false);
    expect(d.status.message).toContain('below 4');
    low.status = { keyGeneration: 4, targetKeyGeneration: 5, rotatingOrdinal: 1, step: 'RestartingPod', podUID: 'x' };
    expect(low.decide().events.map((e) => e.reason)).toEqual(['WireGuardKeyRotationStopped']);
  });

  it('a single-node cluster rotates too (its one pod restarts)', () => {
    const w = new World(1, 5, 1);
    w.run();
    w.expectRotated();
  });
});

describe('StatefulSet readiness for the rotation', () => {
  const base: ObservedStatefulSet = {
    generation: 3, observedGeneration: 3, specReplicas: 3, replicas: 3, readyReplicas: 3, updatedReplicas: 3,
    currentRevision: 'r1', updateRevision: 'r1', template: { image: 'i', rewrapEnabled: false },
  };
  it('is settled only when observed, rolled, and every replica ready', () => {
    expect(statefulSetWaits(base, 3)).toEqual([]);
    expect(statefulSetWaits(null, 3)).toEqual(['the StatefulSet does not exist yet']);
    expect(statefulSetWaits({ ...base, observedGeneration: 2 }, 3)[0]).toContain('has not observed generation 3');
    expect(statefulSetWaits({ ...base, updateRevision: 'r2' }, 3)[0]).toContain('currentRevision r1 != updateRevision r2');
    expect(statefulSetWaits({ ...base, readyReplicas: 2 }, 3)[0]).toContain('ready 2');
    expect(statefulSetWaits(base, 5)).toContain('the StatefulSet has 3 replicas, want 5');
  });
});
