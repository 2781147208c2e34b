// The sync controller on real pods (issue 14, kind tier): the chart's
// Deployment coffer-sync keeps a Secret equal to a Coffer secret, reading the
// value from its own pod IP (allowlisted through the VaultCluster's
// readAllowlistFrom), and on a rotation stamps the application's pod
// template so that a real rollout brings the new value into the environment
// and the mounted file of a new pod. The application logs only hashes; no
// value is printed here, and the test checks that none leaks into the
// controller's logs, its metrics, the CofferSecret, Events or the Secret's
// metadata. In order: each step starts from the state the previous one left.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { apply, ensureNamespace, getJson, kubectl, run, waitFor, KUBECTL, WAIT_MS } from './harness/kube.js';
import { api, bootstrapToken, podNames, waitReady, OPERATOR_NS, type ApiRequest, type ApiResponse } from './harness/vault.js';
import {
  auditedReads, hashingApp, hashLines, metric, restartAnnotation, shortHash, syncImage, syncLeader, syncMetrics, SYNC_DEPLOYMENT, type HashLine,
} from './harness/sync.js';

const VAULT_NS = process.env.COFFER_E2E_NAMESPACE ?? 'coffer';
const VC = process.env.COFFER_E2E_VAULTCLUSTER ?? 'vault';
const NS = 'e2e-sync';
/** A rotation must reach a new pod of the application within this. */
const ROTATION_BOUND_MS = Number(process.env.COFFER_E2E_SYNC_BOUND_S ?? 120) * 1000;

// Names of this run's own: a cluster that e2e:up left may hold earlier runs' data.
const RUN = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
const SECRET = `e2e/sync-${RUN}/password`;
const ROLE = `e2e-sync-${RUN}`;
const TOKEN_NAME = `e2e-sync-${RUN}`;
const CSEC = 'app-password';
const TARGET = 'app-password';
const KEY = 'PASSWORD';
const APP = 'hash-app';
const TOKEN_SECRET = 'coffer-sync-token';

const value1 = `v1-${randomBytes(18).toString('hex')}`;
const value2 = `v2-${randomBytes(18).toString('hex')}`;
const [h1, h2] = [shortHash(value1), shortHash(value2)];

let admin = '';
let rotation: { createdAt: number; secretSeenMs?: number; podLoggedMs?: number } | undefined;

/** One request to the vault API from inside a vault pod, with the bootstrap token; the next pod when one does not answer. */
async function vault(req: Omit<ApiRequest, 'token'>): Promise<ApiResponse> {
  let last: ApiResponse | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    for (const pod of podNames(VC)) {
      last = await api(VAULT_NS, pod, { ...req, token: admin }).catch((e: Error) => ({ status: 0, body: e.message }));
      if (last.status !== 0 && last.status < 500) return last;
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
  return last!;
}

async function cofferSecret(): Promise<any> {
  return getJson(['get', 'coffersecret', CSEC, '-n', NS]);
}
const readyOf = (cs: any) => (cs.status?.conditions ?? []).find((c: any) => c.type === 'Ready');

async function appPods(): Promise<any[]> {
  return (await getJson(['get', 'pods', '-n', NS, '-l', `app.kubernetes.io/name=${APP}`])).items;
}
async function appReplicaSets(): Promise<any[]> {
  return (await getJson(['get', 'replicasets', '-n', NS, '-l', `app.kubernetes.io/name=${APP}`])).items;
}
const isReady = (p: any) => (p.status?.conditions ?? []).some((c: any) => c.type === 'Ready' && c.status === 'True');

/** What to look at when a step fails: never values (the controller logs none, the app logs hashes). */
async function diagnostics(): Promise<string> {
  const parts: string[] = [];
  const add = async (title: string, args: string[]) => {
    const r = await run(KUBECTL, args, { timeoutMs: 30_000 });
    parts.push(`---- ${title}\n${(r.stdout + r.stderr).trim().split('\n').slice(-60).map((l) => l.slice(0, 400)).join('\n')}`);
  };
  await add('coffersecret status', ['get', 'coffersecret', CSEC, '-n', NS, '-o', 'jsonpath={.status}']);
  await add('pods', ['get', 'deploy,rs,pods', '-n', NS, '-o', 'wide']);
  await add('events', ['get', 'events', '-n', NS, '--sort-by=.lastTimestamp']);
  await add('coffer-sync pods', ['get', 'pods', '-n', OPERATOR_NS, '-l', 'app.kubernetes.io/name=coffer-sync', '-o', 'wide']);
  await add('coffer-sync logs', ['logs', '-n', OPERATOR_NS, '-l', 'app.kubernetes.io/name=coffer-sync', '--tail=40', '--prefix']);
  await add('read allowlist', ['get', 'configmap', `${VC}-read-allowlist`, '-n', VAULT_NS, '-o', 'jsonpath={.data}']);
  return parts.join('\n');
}

describe('the sync controller on kind: a rotation reaches a Deployment through a real rollout', () => {
  beforeAll(async () => {
    await kubectl(['wait', '--for=condition=Available', `deployment/${SYNC_DEPLOYMENT}`, '-n', OPERATOR_NS, `--timeout=${Math.round(WAIT_MS / 1000)}s`], { timeoutMs: WAIT_MS + 30_000 });
    await waitReady(VAULT_NS, VC);
    admin = await bootstrapToken(VAULT_NS, VC);
  });

  beforeEach((ctx) => {
    ctx.onTestFailed(async () => {
      console.log(await diagnostics());
    });
  });

  afterAll(async () => {
    // Best effort: the namespace (CofferSecret, Secrets, app), then the Coffer token, role and secret.
    await run(KUBECTL, ['delete', 'namespace', NS, '--wait=false']);
    if (!admin) return;
    await vault({ method: 'DELETE', path: `/v1/tokens/${TOKEN_NAME}` }).catch(() => undefined);
    await vault({ method: 'DELETE', path: `/v1/roles/${ROLE}` }).catch(() => undefined);
    await vault({ method: 'DELETE', path: `/v1/secrets/${SECRET}` }).catch(() => undefined);
  });

  it('syncs a Coffer secret into a Secret (Ready=True Synced) that a Deployment reads from env and from a mounted file', async () => {
    const put = await vault({ method: 'PUT', path: `/v1/secrets/${SECRET}`, body: { value: value1 } });
    expect(put.status).toBe(201);
    expect(put.body.version).toBe(1);
    const role = await vault({ method: 'PUT', path: `/v1/roles/${ROLE}`, body: { rules: [{ paths: [`e2e/sync-${RUN}/*`], actions: ['read_metadata'] }] } });
    expect(role.status, JSON.stringify(role.body)).toBeLessThan(300);
    const tok = await vault({ method: 'POST', path: '/v1/tokens', body: { name: TOKEN_NAME, role: ROLE } });
    expect(tok.status, tok.status === 201 ? '' : JSON.stringify(tok.body)).toBe(201);
    const syncToken = tok.body.token as string;

    await ensureNamespace(NS);
    await apply(
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: TOKEN_SECRET, namespace: NS }, stringData: { token: syncToken } },
      {
        apiVersion: 'coffer.dev/v1alpha1',
        kind: 'CofferSecret',
        metadata: { name: CSEC, namespace: NS },
        spec: {
          vaultRef: { name: VC, namespace: VAULT_NS },
          tokenSecretRef: { name: TOKEN_SECRET, key: 'token' },
          data: [{ key: KEY, name: SECRET }],
          target: { name: TARGET },
          refreshInterval: '5m',
          rolloutRestartTargets: [{ kind: 'Deployment', name: APP }],
        },
      },
    );
    const t0 = Date.now();
    const cs = await waitFor('CofferSecret Ready=True Synced', async () => {
      const c = await cofferSecret();
      const ready = readyOf(c);
      return ready?.status === 'True' && ready.reason === 'Synced' && c.status?.syncedVersions?.[SECRET] === 1 ? c : undefined;
    }, WAIT_MS, 1000);
    console.log(`[sync] CofferSecret Ready=True Synced ${Date.now() - t0} ms after it was applied`);
    expect(cs.status.observedGeneration).toBe(cs.metadata.generation);

    const secret = await getJson(['get', 'secret', TARGET, '-n', NS]);
    expect(Object.keys(secret.data)).toEqual([KEY]);
    expect(shortHash(Buffer.from(secret.data[KEY], 'base64').toString('utf8')), 'hash of the Secret value').toBe(h1);
    expect(secret.metadata.labels['app.kubernetes.io/managed-by']).toBe('coffer-sync');
    expect(JSON.parse(secret.metadata.annotations['coffer.dev/synced-versions'])).toEqual({ [SECRET]: 1 });
    expect(secret.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: 'CofferSecret', name: CSEC, controller: true })]);

    await apply(hashingApp(NS, APP, TARGET, KEY, await syncImage()));
    await kubectl(['rollout', 'status', `deployment/${APP}`, '-n', NS, `--timeout=${Math.round(WAIT_MS / 1000)}s`], { timeoutMs: WAIT_MS + 30_000 });
    const [pod] = (await appPods()).filter((p) => isReady(p) && !p.metadata.deletionTimestamp);
    expect(pod, 'a ready app pod').toBeDefined();
    const lines = await waitFor(`${pod.metadata.name} to log hashes`, async () => {
      const l = await hashLines(NS, pod.metadata.name);
      return l.length > 0 ? l : undefined;
    }, 60_000, 1000);
    expect(lines.at(-1), 'env and file hashes of the first pod').toMatchObject({ env_sha256: h1, file_sha256: h1 });
    // The first sync of a new Secret does not stamp the workload.
    const d = await getJson(['get', 'deployment', APP, '-n', NS]);
    expect(d.spec.template.metadata.annotations?.[restartAnnotation(CSEC)]).toBeUndefined();
  });

  it(`rotates: the Secret, then a new pod of a new ReplicaSet with the new value in env and file, within ${ROTATION_BOUND_MS / 1000} s`, async () => {
    const oldPods = new Set((await appPods()).map((p) => p.metadata.name as string));
    const oldSets = new Set((await appReplicaSets()).map((r) => r.metadata.name as string));
    expect(oldPods.size).toBe(1);

    const put = await vault({ method: 'PUT', path: `/v1/secrets/${SECRET}`, body: { value: value2 } });
    expect(put.status).toBe(200);
    expect(put.body.version).toBe(2);
    const createdAt = Date.parse(put.body.created_at);
    expect(Number.isFinite(createdAt)).toBe(true);
    rotation = { createdAt };
    const deadline = createdAt + ROTATION_BOUND_MS;

    const secretSeen = (async () => {
      for (;;) {
        const r = await run(KUBECTL, ['get', 'secret', TARGET, '-n', NS, '-o', 'jsonpath={.metadata.annotations.coffer\\.dev/synced-versions}']);
        if (r.code === 0 && r.stdout.trim() && JSON.parse(r.stdout)[SECRET] === 2) return Date.now();
        if (Date.now() > deadline) throw new Error(`the Secret did not hold version 2 within ${ROTATION_BOUND_MS / 1000} s`);
        await new Promise((res) => setTimeout(res, 250));
      }
    })();
    const podSeen = (async () => {
      for (;;) {
        for (const p of await appPods().catch(() => [])) {
          if (oldPods.has(p.metadata.name) || p.status?.phase !== 'Running') continue;
          const lines = await hashLines(NS, p.metadata.name);
          const hit = lines.find((l) => l.env_sha256 === h2 && l.file_sha256 === h2);
          if (hit) return { pod: p.metadata.name as string, line: hit, lines };
        }
        if (Date.now() > deadline) throw new Error(`no new pod logged the new value within ${ROTATION_BOUND_MS / 1000} s`);
        await new Promise((res) => setTimeout(res, 500));
      }
    })();
    const [secretAt, seen] = await Promise.all([secretSeen, podSeen]) as [number, { pod: string; line: HashLine; lines: HashLine[] }];
    rotation.secretSeenMs = secretAt - createdAt;
    rotation.podLoggedMs = Date.parse(seen.line.time) - createdAt;

    // The new pod read the new value from its start: env (fixed at start) and the mounted file alike.
    for (const l of seen.lines) expect(l, `${seen.pod} logged`).toMatchObject({ env_sha256: h2, file_sha256: h2 });

    // Through a rollout: the pod template stamped with the versions hash, a new ReplicaSet, the old pod gone.
    const cs = await cofferSecret();
    expect(cs.status.syncedVersions).toEqual({ [SECRET]: 2 });
    expect(readyOf(cs)).toMatchObject({ status: 'True', reason: 'Synced' });
    const d = await getJson(['get', 'deployment', APP, '-n', NS]);
    expect(d.spec.template.metadata.annotations?.[restartAnnotation(CSEC)]).toBe(cs.status.versionsHash);
    const newPod = await getJson(['get', 'pod', seen.pod, '-n', NS]);
    const rs = newPod.metadata.ownerReferences.find((o: any) => o.kind === 'ReplicaSet')?.name;
    expect(rs).toBeDefined();
    expect(oldSets.has(rs), `pod ${seen.pod} of ReplicaSet ${rs}, not one of before`).toBe(false);
    await kubectl(['rollout', 'status', `deployment/${APP}`, '-n', NS, `--timeout=${Math.max(10, Math.round((deadline - Date.now()) / 1000))}s`], { timeoutMs: ROTATION_BOUND_MS + 30_000 });
    const rolledAt = Date.now();
    await waitFor('the old pod to go', async () => (await appPods()).every((p) => !oldPods.has(p.metadata.name)), 60_000, 1000);
    console.log(
      `[sync] rotation (version 2 created) -> Secret seen with version 2: ${rotation.secretSeenMs} ms (polled every 250 ms); ` +
      `-> new pod ${seen.pod} logged the new hash in env and file: ${rotation.podLoggedMs} ms; -> rollout complete: ${rolledAt - createdAt} ms`,
    );
    expect(rotation.podLoggedMs).toBeLessThan(ROTATION_BOUND_MS);
  });

  it('the leader reads from its pod IP (in the vault\'s read allowlist) and counts the writes: coffer_sync_syncs_total{outcome="written"} >= 2', async () => {
    const leader = await waitFor('the coffer-sync Lease holder', syncLeader, 60_000, 1000);
    const pod = await getJson(['get', 'pod', leader, '-n', OPERATOR_NS]);
    const ip = pod.status.podIP as string;
    expect(ip).toBeTruthy();
    const allowlist = await kubectl(['get', 'configmap', `${VC}-read-allowlist`, '-n', VAULT_NS, '-o', 'jsonpath={.data.allowlist}']);
    expect(allowlist.split('\n').map((l) => l.trim()), 'the read allowlist').toContain(`${ip}/32`);

    // The vault pods' own audit logs: every value read of the name came from a coffer-sync pod's address.
    const syncIps = new Set((await getJson(['get', 'pods', '-n', OPERATOR_NS, '-l', 'app.kubernetes.io/name=coffer-sync'])).items.map((p: any) => p.status.podIP as string));
    const reads = (await Promise.all(podNames(VC).map((p) => auditedReads(VAULT_NS, p, admin, SECRET)))).flat().filter((r) => r.status === 200);
    console.log(`[sync] value reads of the name in the vault audit logs: ${reads.map((r) => `v${r.version} by ${r.actor} from ${r.client_ip} on ${r.node}`).join('; ')}`);
    expect(reads.map((r) => r.version).sort(), 'versions read').toEqual(expect.arrayContaining([1, 2]));
    for (const r of reads) {
      expect(syncIps.has(r.client_ip), `read of v${r.version} from ${r.client_ip}: a coffer-sync pod IP`).toBe(true);
      expect(r.actor).toBe(TOKEN_NAME);
    }
    expect(reads.filter((r) => r.version === 2).map((r) => r.client_ip), 'the rotation read by the leader').toContain(ip);

    const text = await syncMetrics(leader);
    expect(metric(text, 'coffer_sync_leader'), `${leader} leads`).toBe(1);
    const written = metric(text, 'coffer_sync_syncs_total', { outcome: 'written' }) ?? 0;
    expect(written, 'Secrets written by the leader').toBeGreaterThanOrEqual(2);
    expect(metric(text, 'coffer_sync_watched_names') ?? 0).toBeGreaterThanOrEqual(1);
    const count = metric(text, 'coffer_sync_propagation_seconds_count') ?? 0;
    const sum = metric(text, 'coffer_sync_propagation_seconds_sum') ?? 0;
    expect(count, 'rotations measured').toBeGreaterThanOrEqual(1);
    console.log(
      `[sync] leader ${leader} (${ip}): syncs written ${written}, ` +
      `unchanged ${metric(text, 'coffer_sync_syncs_total', { outcome: 'unchanged' }) ?? 0}, ` +
      `propagation (version created -> Secret written) mean ${count ? Math.round((sum / count) * 1000) : '-'} ms over ${count}`,
    );
  });

  it('leaks no value: controller logs and metrics, the CofferSecret, Events, the Secret\'s metadata', async () => {
    const places: [string, string][] = [];
    const sync = (await getJson(['get', 'pods', '-n', OPERATOR_NS, '-l', 'app.kubernetes.io/name=coffer-sync'])).items.map((p: any) => p.metadata.name as string);
    for (const p of sync) {
      places.push([`logs of ${p}`, (await run(KUBECTL, ['logs', '-n', OPERATOR_NS, p, '--all-containers'], { timeoutMs: 60_000 })).stdout]);
      places.push([`metrics of ${p}`, await syncMetrics(p).catch(() => '')]);
    }
    places.push(['the CofferSecret', JSON.stringify(await cofferSecret())]);
    places.push([`Events in ${NS}`, await kubectl(['get', 'events', '-n', NS, '-o', 'json'])]);
    const s = await getJson(['get', 'secret', TARGET, '-n', NS]);
    places.push(['the Secret\'s metadata', JSON.stringify(s.metadata)]);
    for (const p of await appPods()) places.push([`logs of ${p.metadata.name}`, (await run(KUBECTL, ['logs', '-n', NS, p.metadata.name])).stdout]);
    const leaks = places.flatMap(([where, text]) =>
      [['value 1', value1], ['value 2', value2]].flatMap(([label, v]) =>
        [v!, Buffer.from(v!).toString('base64')].some((f) => text.includes(f)) ? [`${where} contains ${label}`] : []));
    expect(leaks).toEqual([]);
  });
});
