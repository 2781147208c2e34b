// Live resize and self-healing membership on real pods (issue 15, kind tier),
// in a VaultCluster and namespace of its own so the other files' `coffer/vault`
// keeps its three PVCs: 3 -> 5 -> 3 by `kubectl patch` under a writer Job
// (the operator declares the members in `<vc>-members`, the leader's autopilot
// moves Raft toward them; the StatefulSet shrinks only once the extra voters
// are gone, their PVCs stay), then one pod's PVC and pod deleted together:
// the StatefulSet brings the pod back on a fresh volume and the autopilot
// removes the wiped member and re-adds it as a learner, promoted once caught
// up, with no one touching the cluster. In order: each step starts from the
// state the previous one left. The namespace is deleted at the end
// (COFFER_E2E_KEEP=1 keeps it).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureNamespace, getJson, kubectl, run, waitFor, KUBECTL, WAIT_MS } from './harness/kube.js';
import { api, bootstrapToken, createVaultCluster, getVaultCluster, podNames, OPERATOR_NS } from './harness/vault.js';
import { startWriter, stopWriter, unreadable, writerResult } from './harness/writer.js';

const NS = 'coffer-e2e-resize';
const VC = 'vault';
const ids = (n: number) => podNames(VC, n);
const sorted = (xs: readonly string[]) => [...xs].sort();

let token = '';
const SECRET = `e2e/resize-${Date.now()}`;
const value = `resize-${Math.random().toString(36).slice(2)}`;

interface RaftView {
  leader: string;
  voters: string[];
  learners: string[];
}

/** The configuration the Raft leader reports in its own /v1/health (asked of any pod that answers, then of the leader). */
async function raftView(n: number): Promise<RaftView | undefined> {
  for (const pod of ids(n)) {
    const h = await api(NS, pod, { method: 'GET', path: '/v1/health' }).catch(() => undefined);
    const leader = h?.status === 200 ? (h.body.leader_id as string | null) : null;
    if (!leader) continue;
    const l = leader === pod ? h! : await api(NS, leader, { method: 'GET', path: '/v1/health' }).catch(() => undefined);
    if (l?.status !== 200 || l.body.role !== 'leader') return undefined;
    return { leader, voters: sorted(l.body.voters), learners: sorted(l.body.learners) };
  }
  return undefined;
}

const cond = (o: any, type: string) => (o.status?.conditions ?? []).find((c: any) => c.type === type);

/** Ready at `n` members: no resize in progress, the StatefulSet at n pods, and the leader's voters exactly the n ids. */
async function settled(n: number, seen?: (vc: any, view: RaftView | undefined) => void): Promise<RaftView> {
  return waitFor(`VaultCluster ${NS}/${VC} Ready with ${n} voters`, async () => {
    const vc = await getVaultCluster(NS, VC);
    const view = await raftView(Math.max(n, vc.spec.replicas, vc.status?.members ?? 0));
    seen?.(vc, view);
    const sts = await getJson(['get', 'statefulset', VC, '-n', NS]);
    const ok = vc.status?.observedGeneration === vc.metadata.generation && cond(vc, 'Ready')?.status === 'True' && vc.status?.members === n &&
      vc.status?.resize === undefined && vc.status?.readyReplicas === n && sts.spec.replicas === n && sts.status?.replicas === n &&
      view !== undefined && JSON.stringify(view.voters) === JSON.stringify(ids(n)) && view.learners.length === 0;
    return ok ? view : undefined;
  }, WAIT_MS, 2000);
}

async function podsNow(): Promise<any[]> {
  return (await getJson(['get', 'pods', '-n', NS, '-l', `app.kubernetes.io/instance=${VC}`])).items;
}
async function claims(): Promise<Map<string, string>> {
  const items = (await getJson(['get', 'pvc', '-n', NS])).items as any[];
  return new Map(items.filter((c) => !c.metadata.deletionTimestamp).map((c) => [c.metadata.name as string, c.metadata.uid as string]));
}
async function declared(): Promise<string[]> {
  const cm = await getJson(['get', 'configmap', `${VC}-members`, '-n', NS]);
  return (cm.data.members as string).split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')).map((l) => l.split('=')[0]!);
}
async function eventReasons(): Promise<string[]> {
  const ev = await getJson(['get', 'events', '-n', NS, '--field-selector', `involvedObject.kind=VaultCluster,involvedObject.name=${VC}`]);
  return (ev.items as any[]).sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion)).map((e) => e.reason as string);
}

/**
 * The autopilot's changes ('<action> <node>') the pods logged since `sinceMs`, oldest first: the leader logs
 * each membership change it makes. A pod that is gone took its log with it.
 */
async function autopilotChanges(pods: string[], sinceMs: number): Promise<string[]> {
  const seen: { at: number; change: string }[] = [];
  for (const pod of pods) {
    const r = await run(KUBECTL, ['logs', '-n', NS, pod, '-c', 'vault', `--since-time=${new Date(sinceMs - 1000).toISOString()}`], { timeoutMs: 60_000 });
    for (const line of r.stdout.split('\n')) {
      if (!line.includes('autopilot membership change')) continue;
      try {
        const j = JSON.parse(line);
        if (Date.parse(j.time) >= sinceMs - 1000) seen.push({ at: Date.parse(j.time), change: `${j.action} ${j.node}` });
      } catch { /* not a JSON log line */ }
    }
  }
  return seen.sort((a, b) => a.at - b.at).map((c) => c.change);
}

/** Whether `want` occurs in `xs` in this order (other items in between allowed). */
function inOrder(xs: readonly string[], want: readonly string[]): boolean {
  let at = 0;
  for (const x of xs) if (x === want[at]) at++;
  return at === want.length;
}

/** What to look at when a step fails: the objects, the operator's and the pods' last lines (no values are logged). */
async function diagnostics(): Promise<string> {
  const parts: string[] = [];
  const add = async (title: string, args: string[]) => {
    const r = await run(KUBECTL, args, { timeoutMs: 30_000 });
    parts.push(`---- ${title}\n${(r.stdout + r.stderr).trim().split('\n').slice(-40).map((l) => l.slice(0, 400)).join('\n')}`);
  };
  await add('objects', ['get', 'vc,sts,pods,pvc,pdb,jobs', '-n', NS, '-o', 'wide']);
  await add('vc status', ['get', 'vc', VC, '-n', NS, '-o', 'jsonpath={.status}']);
  await add('members', ['get', 'configmap', `${VC}-members`, '-n', NS, '-o', 'jsonpath={.data.members}']);
  await add('events', ['get', 'events', '-n', NS, '--sort-by=.lastTimestamp']);
  await add('operator', ['logs', '-n', OPERATOR_NS, '-l', 'app.kubernetes.io/name=coffer-operator', '--tail=40', '--prefix']);
  for (const p of await podsNow().catch(() => [])) await add(`pod ${p.metadata.name}`, ['logs', '-n', NS, p.metadata.name, '-c', 'vault', '--tail=25']);
  return parts.join('\n');
}

/** Runs a step; on failure prints what the cluster looked like. */
async function step<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    console.log(await diagnostics().catch((d) => `diagnostics failed: ${d}`));
    throw e;
  }
}

describe('resizing a VaultCluster on kind, and a pod that lost its volume', () => {
  beforeAll(async () => {
    await ensureNamespace(NS);
    await createVaultCluster(NS, VC);
    const t0 = Date.now();
    await step(() => settled(3));
    console.log(`resize: ${NS}/${VC} formed with 3 voters in ${Math.round((Date.now() - t0) / 1000)} s`);
    token = await bootstrapToken(NS, VC);
    const put = await api(NS, `${VC}-0`, { method: 'PUT', path: `/v1/secrets/${SECRET}`, token, body: { value } });
    expect(put.status).toBe(201);
  }, WAIT_MS + 60_000);

  afterAll(async () => {
    if (process.env.COFFER_E2E_KEEP === '1') return;
    // Its PVCs go with it; the next run waits for a namespace still terminating (ensureNamespace).
    await run(KUBECTL, ['delete', 'vaultcluster', VC, '-n', NS, '--ignore-not-found', '--wait=true', '--timeout=120s'], { timeoutMs: 150_000 });
    await run(KUBECTL, ['delete', 'namespace', NS, '--ignore-not-found', '--wait=false']);
  });

  it('grows 3 -> 5 -> 3 by spec.replicas under a writing client: voters follow, the StatefulSet shrinks only after removal, PVCs stay, no acknowledged write lost', () => step(async () => {
    const before = await claims();
    const job = await startWriter(NS, VC, token, 900, 60_000);

    // Up: the new pods are declared, join as learners and are promoted; Ready when the leader has 5 voters.
    let t0 = Date.now();
    await kubectl(['patch', 'vaultcluster', VC, '-n', NS, '--type', 'merge', '-p', '{"spec":{"replicas":5}}']);
    const phasesUp = new Set<string>();
    const learnersSeen = new Set<string>();
    const up = await settled(5, (vc, view) => {
      if (vc.status?.resize?.phase) phasesUp.add(vc.status.resize.phase);
      for (const l of view?.learners ?? []) learnersSeen.add(l);
    });
    const upSecs = Math.round((Date.now() - t0) / 1000);
    expect(await declared()).toEqual(ids(5));
    expect((await getJson(['get', 'pdb', VC, '-n', NS])).spec.maxUnavailable).toBe(2);
    const sts5 = await getJson(['get', 'statefulset', VC, '-n', NS]);
    const peers5 = sts5.spec.template.spec.containers.find((c: any) => c.name === 'vault').env.find((e: any) => e.name === 'VAULT_PEERS')?.value ?? '';
    // VAULT_PEERS stays the formed set: a resize rolls no pod.
    expect(peers5.split(',').map((p: string) => p.split('=')[0]).sort()).toEqual(ids(3));
    for (const p of await podsNow()) {
      for (const s of p.status.containerStatuses) expect(s.restartCount, `${p.metadata.name}/${s.name} restarts`).toBe(0);
    }
    // Every pod still has its whole log (no restarts): the leader added each new pod as a learner, then promoted it.
    const changesUp = await autopilotChanges(ids(5), t0);
    for (const id of [`${VC}-3`, `${VC}-4`]) expect(inOrder(changesUp, [`addLearner ${id}`, `promote ${id}`]), changesUp.join(', ')).toBe(true);
    expect(changesUp.filter((c) => c.startsWith('remove')), 'nothing removed on the way up').toEqual([]);
    const admin = await api(NS, up.leader, { method: 'GET', path: '/v1/admin/cluster', token });
    expect(admin.status).toBe(200);
    expect(admin.body.autopilot.source).toBe('file');
    expect(sorted(admin.body.autopilot.declared.map((m: any) => m.id))).toEqual(ids(5));
    expect(admin.body.autopilot.state).toBe('converged');
    console.log(`resize: 3 -> 5 in ${upSecs} s (leader ${up.leader}; phases ${[...phasesUp].join(', ')}; learners seen ${[...learnersSeen].join(', ') || 'none'}; autopilot ${changesUp.join(', ')})`);

    // Down: the smaller set is declared first; the StatefulSet keeps 5 pods until the leader removed vault-3 and vault-4.
    t0 = Date.now();
    await kubectl(['patch', 'vaultcluster', VC, '-n', NS, '--type', 'merge', '-p', '{"spec":{"replicas":3}}']);
    const phasesDown = new Set<string>();
    const early: string[] = [];
    const down = await settled(3, (vc, view) => {
      if (vc.status?.resize?.phase) phasesDown.add(vc.status.resize.phase);
      // Scaled down (status.resize ScalingDown or the StatefulSet below 5) while the leader still had an extra member: wrong order.
      if (vc.status?.resize?.phase === 'ScalingDown' && view && [...view.voters, ...view.learners].some((id) => !ids(3).includes(id))) {
        early.push(`${vc.status.resize.phase} with voters ${view.voters.join(',')} learners ${view.learners.join(',')}`);
      }
    });
    const downSecs = Math.round((Date.now() - t0) / 1000);
    expect(early, 'the StatefulSet shrank before the extra voters were removed').toEqual([]);
    expect(phasesDown.has('RemovingMembers') || phasesDown.has('ScalingDown')).toBe(true);
    expect(await declared()).toEqual(ids(3));
    expect((await getJson(['get', 'pdb', VC, '-n', NS])).spec.maxUnavailable).toBe(1);
    await waitFor('pods vault-3 and vault-4 gone', async () => (await podsNow()).every((p) => ids(3).includes(p.metadata.name)));
    // The scaled-down ordinals' PVCs are kept (a later scale-up finds them); the others are the same claims as before.
    const after = await claims();
    expect(after.has(`data-${VC}-3`) && after.has(`data-${VC}-4`), [...after.keys()].join(',')).toBe(true);
    for (const pod of ids(3)) expect(after.get(`data-${pod}`), pod).toBe(before.get(`data-${pod}`));
    const reasons = await eventReasons();
    expect(reasons).toContain('ResizeStarted');
    // Logged by the pods that stay (a removed pod that led on the way down took its lines with it).
    const changesDown = await autopilotChanges(ids(3), t0);
    console.log(`resize: 5 -> 3 in ${downSecs} s (leader ${down.leader}; phases ${[...phasesDown].join(', ')}; autopilot ${changesDown.join(', ') || '(not in these pods\' logs)'}); events ${[...new Set(reasons)].join(', ')}`);

    await stopWriter(NS, job);
    const summary = await writerResult(NS, job);
    console.log(`resize: writes acknowledged ${summary.acked.length}, retried ${summary.retries}, errors seen ${JSON.stringify(summary.errors)}`);
    expect(summary.failed, JSON.stringify(summary.errors)).toEqual([]);
    expect(summary.acked.length).toBeGreaterThan(50);
    for (const pod of ids(3)) expect(await unreadable(NS, pod, token, summary.acked), pod).toEqual([]);
  }));

  it('heals a pod whose PVC was deleted with it: a fresh volume, removed and re-added as a learner, promoted, 3 healthy voters, the data there', () => step(async () => {
    const { leader } = (await raftView(3))!;
    // A follower (the leader's own deletion is lifecycle.test.ts's failover): the first of vault-1, vault-2, vault-0.
    const victim = [`${VC}-1`, `${VC}-2`, `${VC}-0`].find((p) => p !== leader)!;
    const claim = `data-${victim}`;
    const oldClaim = (await claims()).get(claim);
    const oldPod = (await getJson(['get', 'pod', victim, '-n', NS])).metadata.uid;
    const job = await startWriter(NS, VC, token, 900, 60_000);

    const t0 = Date.now();
    await kubectl(['delete', 'pvc', claim, '-n', NS, '--wait=false']);
    await kubectl(['delete', 'pod', victim, '-n', NS, '--wait=false']);

    await waitFor(`${victim} back on a new PVC`, async () => {
      const pod = await getJson(['get', 'pod', victim, '-n', NS]).catch(() => undefined);
      const now = (await claims()).get(claim);
      return pod && pod.metadata.uid !== oldPod && now !== undefined && now !== oldClaim;
    });
    // Nobody touches the cluster from here: the autopilot removes the wiped member, re-adds it as a learner, promotes it.
    const learnerSeen: string[] = [];
    const healed = await settled(3, (_vc, view) => {
      if (!view) return;
      if (view.learners.includes(victim)) learnerSeen.push(view.leader);
    });
    const healSecs = Math.round((Date.now() - t0) / 1000);
    // The writer job may still be running: a follower can be one batch behind its commit index for a
    // moment ('degraded: applying committed entries'), so each pod gets a few seconds to say 'ok'.
    for (const pod of ids(3)) {
      const h = await waitFor(`${pod} healthy`, async () => {
        const r = await api(NS, pod, { method: 'GET', path: '/v1/health' });
        return r.status === 200 && r.body.status === 'ok' ? r : undefined;
      }, 30_000, 500);
      expect(h.body.leader_id, pod).toBe(healed.leader);
    }
    // The leader's log: the wiped member removed, re-added as a learner, then promoted (the same leader throughout
    // unless an election moved it; every pod's log is read).
    const changes = (await autopilotChanges(ids(3), t0)).filter((c) => c.endsWith(` ${victim}`));
    expect(inOrder(changes, [`remove ${victim}`, `addLearner ${victim}`, `promote ${victim}`]), changes.join(', ')).toBe(true);
    const logs = await kubectl(['logs', '-n', NS, victim, '-c', 'vault']);
    const rejoined = logs.includes('joining as a learner instead of bootstrapping');
    const admin = await api(NS, healed.leader, { method: 'GET', path: '/v1/admin/cluster', token });
    console.log(`resize: ${victim} wiped (leader ${leader}), healed in ${healSecs} s (leader ${healed.leader}); seen as learner ${learnerSeen.length > 0}; ` +
      `its log says it rejoins as a learner: ${rejoined}; autopilot ${changes.join(', ')}; last autopilot decision ${JSON.stringify(admin.body.autopilot?.last_decision)}`);
    // Polled every ~2 s; a learner waits the stabilization time (10 s) before promotion, so it is seen.
    expect(learnerSeen.length, `${victim} never seen as a learner`).toBeGreaterThan(0);
    expect(rejoined, `${victim}'s log does not say it rejoins as a learner`).toBe(true);
    expect(admin.body.autopilot.state).toBe('converged');

    await stopWriter(NS, job);
    const summary = await writerResult(NS, job);
    console.log(`resize: writes during the heal acknowledged ${summary.acked.length}, retried ${summary.retries}, errors seen ${JSON.stringify(summary.errors)}`);
    expect(summary.failed, JSON.stringify(summary.errors)).toEqual([]);
    expect(summary.acked.length).toBeGreaterThan(20);
    // The new pod holds everything: the value written at the start and every write acknowledged while it healed.
    const got = await api(NS, victim, { method: 'GET', path: `/v1/secrets/${SECRET}`, token });
    expect(got.status).toBe(200);
    expect(got.body.value).toBe(value);
    for (const pod of ids(3)) expect(await unreadable(NS, pod, token, summary.acked), pod).toEqual([]);
  }));
});
