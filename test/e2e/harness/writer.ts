// A client writing in a loop from inside the cluster (a Job through the
// client Service, as an application would), while a test disturbs the vault:
// deletes the leader pod, rolls a new image. Each write is retried within a
// bounded budget; the Job's log ends with one JSON line saying what was
// acknowledged and what was given up on.
import { api, apiInPod, IMAGE } from './vault.js';
import { apply, getJson, kubectl, waitFor } from './kube.js';

const WRITER_SCRIPT = `
const [base, seconds, budgetMs] = [process.env.VAULT, Number(process.env.SECONDS), Number(process.env.RETRY_BUDGET_MS)];
const token = process.env.TOKEN;
let stopAt = Date.now() + seconds * 1000;
// stopWriter(): SIGTERM ends the loop after the write in flight, and the summary is still printed.
process.on('SIGTERM', () => { stopAt = 0; });
const acked = [], failed = [], errors = {};
let retries = 0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function put(i) {
  const giveUpAt = Date.now() + budgetMs;
  for (let attempt = 0; ; attempt++) {
    let outcome;
    try {
      const res = await fetch(base + '/v1/secrets/loop/' + i, {
        method: 'PUT', headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' },
        body: JSON.stringify({ value: 'v' + i }), signal: AbortSignal.timeout(10000),
      });
      const body = await res.json().catch(() => ({}));
      if (res.status === 200 || res.status === 201) return body.version;
      outcome = String(res.status) + ' ' + ((body.error && body.error.code) || '');
    } catch (e) { outcome = (e && (e.cause && e.cause.code || e.name)) || 'error'; }
    errors[outcome] = (errors[outcome] || 0) + 1;
    if (Date.now() > giveUpAt) return null;
    retries++;
    await sleep(Math.min(2000, 100 * 2 ** attempt));
  }
}
(async () => {
  for (let i = 0; Date.now() < stopAt; i++) {
    const v = await put(i);
    if (v == null) failed.push(i); else acked.push(i);
    if (i % 50 === 0) console.log('progress ' + i);
    await sleep(50);
  }
  console.log(JSON.stringify({ acked, failed, retries, errors }));
})();`;

export interface WriterSummary {
  acked: number[];
  failed: number[];
  retries: number;
  errors: Record<string, number>;
}

/** Mints a token allowed to write loop/* and starts the writer Job against `<vc>-client`. */
export async function startWriter(ns: string, vc: string, adminToken: string, seconds: number, retryBudgetMs = 60_000): Promise<string> {
  const role = await api(ns, `${vc}-0`, {
    method: 'PUT', path: '/v1/roles/e2e-writer', token: adminToken,
    body: { rules: [{ paths: ['loop/*'], actions: ['create', 'update'] }] },
  });
  if (role.status !== 200 && role.status !== 201) throw new Error(`PUT role: ${role.status} ${JSON.stringify(role.body)}`);
  const minted = await api(ns, `${vc}-0`, { method: 'POST', path: '/v1/tokens', token: adminToken, body: { name: `writer-${Date.now()}`, role: 'e2e-writer' } });
  if (minted.status !== 201) throw new Error(`POST token: ${minted.status} ${JSON.stringify(minted.body)}`);
  const secretName = 'e2e-writer-token';
  // Through stdin (apply -f -), never on a command line.
  await apply({ apiVersion: 'v1', kind: 'Secret', metadata: { name: secretName, namespace: ns }, type: 'Opaque', stringData: { token: minted.body.token } });
  const job = 'e2e-writer';
  await kubectl(['delete', 'job', job, '-n', ns, '--ignore-not-found', '--wait=true']);
  await apply({
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name: job, namespace: ns },
    spec: {
      backoffLimit: 0,
      template: {
        metadata: { labels: { app: 'coffer-e2e-writer' } },
        spec: {
          restartPolicy: 'Never',
          automountServiceAccountToken: false,
          securityContext: { runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [{
            name: 'writer',
            image: IMAGE,
            imagePullPolicy: 'Never',
            command: ['node', '-e', WRITER_SCRIPT],
            env: [
              { name: 'VAULT', value: `http://${vc}-client.${ns}.svc:8200` },
              { name: 'SECONDS', value: String(seconds) },
              { name: 'RETRY_BUDGET_MS', value: String(retryBudgetMs) },
              { name: 'TOKEN', valueFrom: { secretKeyRef: { name: secretName, key: 'token' } } },
            ],
            securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
          }],
        },
      },
    },
  });
  // Running and past its first writes, so a disturbance lands mid-loop.
  await waitFor('the writer to make progress', async () => (await kubectl(['logs', `job/${job}`, '-n', ns]).catch(() => '')).includes('progress 0'));
  return job;
}

/** Waits for the writer Job to finish and returns its summary line. */
export async function writerResult(ns: string, job: string): Promise<WriterSummary> {
  await waitFor(`Job ${job} to finish`, async () => {
    const j = await getJson(['get', 'job', job, '-n', ns]);
    return (j.status?.succeeded ?? 0) + (j.status?.failed ?? 0) > 0;
  });
  const logs = await kubectl(['logs', `job/${job}`, '-n', ns]);
  const last = logs.trim().split('\n').at(-1) ?? '';
  return JSON.parse(last) as WriterSummary;
}

/**
 * Ends a writer started with a long `seconds` now (a test whose disturbance takes as long as it takes):
 * its loop stops after the write in flight and prints its summary; then read it with writerResult().
 */
export async function stopWriter(ns: string, job: string): Promise<void> {
  await kubectl(['exec', '-n', ns, `job/${job}`, '--', 'node', '-e', "process.kill(1, 'SIGTERM')"]);
}

/** Reads every acknowledged loop/<i> through one pod and returns the ones missing or wrong. */
export async function unreadable(ns: string, pod: string, adminToken: string, acked: number[]): Promise<string[]> {
  const bad: string[] = [];
  for (let at = 0; at < acked.length; at += 200) {
    const chunk = acked.slice(at, at + 200);
    const answers = await apiInPod(ns, pod, chunk.map((i) => ({ method: 'GET' as const, path: `/v1/secrets/loop/${i}`, token: adminToken })));
    answers.forEach((a, k) => {
      if (a.status !== 200 || a.body.value !== `v${chunk[k]}`) bad.push(`loop/${chunk[k]}: ${a.status}`);
    });
  }
  return bad;
}
