// The sync controller (Deployment coffer-sync of the operator chart) on the
// kind cluster: its leader, its metrics through the API server's pod proxy,
// and an application Deployment that reads a synced Secret from its
// environment and from a mounted file and logs only hashes of what it read.
import { createHash } from 'node:crypto';
import { getJson, kubectl, run, KUBECTL } from './kube.js';
import { OPERATOR_NS } from './vault.js';

export const SYNC_DEPLOYMENT = 'coffer-sync';
export const SYNC_LEASE = 'coffer-sync';
export const SYNC_METRICS_PORT = 9090;
export const restartAnnotation = (cofferSecret: string): string => `versions.sync.coffer.dev/${cofferSecret}`;

/** What the app logs for a value: the first 12 hex digits of its SHA-256 (as examples/demo-app.yaml). */
export function shortHash(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 12);
}

/** The image of the coffer-sync Deployment: the Coffer image loaded into this cluster. */
export async function syncImage(): Promise<string> {
  const d = await getJson(['get', 'deployment', SYNC_DEPLOYMENT, '-n', OPERATOR_NS]);
  return d.spec.template.spec.containers[0].image as string;
}

/** The pod holding the sync Lease (its holderIdentity is the pod name), or undefined. */
export async function syncLeader(): Promise<string | undefined> {
  const r = await run(KUBECTL, ['get', 'lease', SYNC_LEASE, '-n', OPERATOR_NS, '-o', 'jsonpath={.spec.holderIdentity}']);
  return r.code === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
}

/** GET /metrics of a coffer-sync pod, through the API server's pod proxy (no port-forward, no curl in the pod). */
export async function syncMetrics(pod: string): Promise<string> {
  return kubectl(['get', '--raw', `/api/v1/namespaces/${OPERATOR_NS}/pods/${pod}:${SYNC_METRICS_PORT}/proxy/metrics`]);
}

/** Sum of the samples of `name` whose labels include `labels` (undefined when there is none). */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const l of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have.set(l[1]!, l[2]!);
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum = (sum ?? 0) + Number(m[4]);
  }
  return sum;
}

export interface HashLine {
  time: string;
  env_sha256: string;
  file_sha256: string;
}

// Runs in the app container: prints, at start and every 2 s, the time and a
// short SHA-256 of the env variable and of the mounted file. Never the value.
const APP_SCRIPT = `
const { createHash } = require('node:crypto');
const { readFileSync } = require('node:fs');
const h = (v) => (v === undefined ? 'absent' : createHash('sha256').update(v).digest('hex').slice(0, 12));
const file = () => { try { return readFileSync(process.env.VALUE_FILE, 'utf8'); } catch { return undefined; } };
const tick = () => console.log(JSON.stringify({ time: new Date().toISOString(), env_sha256: h(process.env.APP_VALUE), file_sha256: h(file()) }));
tick();
setInterval(tick, 2000);
process.on('SIGTERM', () => process.exit(0));
`;

/** A Deployment like examples/demo-app.yaml: `secret`'s `key` as env APP_VALUE and as a file under /etc/app. */
export function hashingApp(ns: string, name: string, secret: string, key: string, image: string): object {
  const labels = { 'app.kubernetes.io/name': name };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: ns, labels },
    spec: {
      replicas: 1,
      selector: { matchLabels: labels },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: 5,
          securityContext: { runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [{
            name: 'app',
            image,
            imagePullPolicy: 'Never',
            command: ['node', '-e', APP_SCRIPT],
            env: [
              { name: 'APP_VALUE', valueFrom: { secretKeyRef: { name: secret, key } } },
              { name: 'VALUE_FILE', value: `/etc/app/${key}` },
            ],
            volumeMounts: [{ name: 'synced', mountPath: '/etc/app', readOnly: true }],
            securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
            resources: { requests: { cpu: '5m', memory: '32Mi' }, limits: { memory: '96Mi' } },
          }],
          volumes: [{ name: 'synced', secret: { secretName: secret } }],
        },
      },
    },
  };
}

/** The hash lines a pod of the app has logged so far ([] when it has not started). */
export async function hashLines(ns: string, pod: string): Promise<HashLine[]> {
  const r = await run(KUBECTL, ['logs', '-n', ns, pod, '-c', 'app'], { timeoutMs: 30_000 });
  if (r.code !== 0) return [];
  const out: HashLine[] = [];
  for (const line of r.stdout.split('\n')) {
    try {
      const j = JSON.parse(line);
      if (j && typeof j.env_sha256 === 'string' && typeof j.file_sha256 === 'string') out.push(j as HashLine);
    } catch {
      // not a hash line
    }
  }
  return out;
}

export interface AuditRead {
  node: string;
  client_ip: string;
  peer_ip: string | null;
  actor: string;
  version: number | null;
  outcome: string;
  status: number;
}

// Runs in a vault container: pages through that node's audit log
// (GET /v1/admin/audit) and prints the value reads (secret.read) of one name.
// The admin token comes on stdin, never on a command line; no value is read.
const AUDIT_SCRIPT = `
let input = '';
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', async () => {
  const { token, target } = JSON.parse(input);
  const out = [];
  let since = 0;
  for (let page = 0; page < 200 && since !== null; page++) {
    const res = await fetch('http://127.0.0.1:8200/v1/admin/audit?limit=1000&since=' + since, { headers: { authorization: 'Bearer ' + token } });
    if (res.status !== 200) { process.stdout.write(JSON.stringify({ error: res.status })); return; }
    const body = await res.json();
    for (const r of body.records) {
      if (r.action === 'secret.read' && r.target === target) out.push({ node: r.node_id, client_ip: r.client_ip, peer_ip: r.peer_ip ?? null, actor: r.actor, version: r.version ?? null, outcome: r.outcome, status: r.status });
    }
    since = body.next_since;
  }
  process.stdout.write(JSON.stringify({ reads: out }));
});`;

/** The value reads (audit action secret.read) of `target` that vault pod `pod` served, from its own audit log. */
export async function auditedReads(ns: string, pod: string, token: string, target: string): Promise<AuditRead[]> {
  const r = await run(KUBECTL, ['exec', '-i', '-n', ns, pod, '-c', 'vault', '--', 'node', '-e', AUDIT_SCRIPT], {
    input: JSON.stringify({ token, target }),
    timeoutMs: 180_000,
  });
  if (r.code !== 0) throw new Error(`audit query in ${ns}/${pod} exited ${r.code}: ${r.stderr.trim()}`);
  const body = JSON.parse(r.stdout) as { reads?: AuditRead[]; error?: number };
  if (!body.reads) throw new Error(`GET /v1/admin/audit on ${pod} answered ${body.error}`);
  return body.reads;
}
