// VaultClusters on the kind cluster: create, wait for Ready, and talk to a
// vault pod's API from inside the pod (127.0.0.1 is in every e2e cluster's
// read allowlist, so this is how a person with `kubectl exec` reads too).
import { apply, getJson, kubectl, run, waitFor } from './kube.js';

export const IMAGE = process.env.COFFER_E2E_IMAGE ?? 'coffer:0.1.0';
export const OPERATOR_NS = process.env.COFFER_E2E_OPERATOR_NS ?? 'coffer-system';

export interface ApiResponse {
  status: number;
  body: any;
}

// Runs in the vault container: one request to the local API. The token comes
// on stdin with the request, never on a command line.
const REQUEST_SCRIPT = `
let input = '';
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', async () => {
  const reqs = JSON.parse(input);
  const out = [];
  for (const r of reqs) {
    const headers = {};
    if (r.token) headers.authorization = 'Bearer ' + r.token;
    if (r.body !== undefined) headers['content-type'] = 'application/json';
    try {
      const res = await fetch((r.base || 'http://127.0.0.1:8200') + r.path, { method: r.method, headers, body: r.body === undefined ? undefined : JSON.stringify(r.body) });
      const text = await res.text();
      let body; try { body = JSON.parse(text); } catch { body = text; }
      out.push({ status: res.status, body });
    } catch (e) { out.push({ status: 0, body: String(e && e.message) }); }
  }
  process.stdout.write(JSON.stringify(out));
});`;

export interface ApiRequest {
  method: 'GET' | 'PUT' | 'POST' | 'DELETE';
  path: string;
  body?: unknown;
  token?: string;
  /** Another listener of the pod, e.g. the management listener on the overlay (default the API on 127.0.0.1:8200). */
  base?: string;
}

/** Sends requests, in order, from inside `pod`'s vault container to its own API. */
export async function apiInPod(ns: string, pod: string, reqs: ApiRequest[]): Promise<ApiResponse[]> {
  const r = await run('kubectl', ['exec', '-i', '-n', ns, pod, '-c', 'vault', '--', 'node', '-e', REQUEST_SCRIPT], {
    input: JSON.stringify(reqs),
    timeoutMs: 180_000,
  });
  if (r.code !== 0) throw new Error(`exec in ${ns}/${pod} exited ${r.code}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as ApiResponse[];
}

export async function api(ns: string, pod: string, req: ApiRequest): Promise<ApiResponse> {
  return (await apiInPod(ns, pod, [req]))[0]!;
}

export function vaultCluster(ns: string, name: string, spec: Record<string, unknown>): object {
  return {
    apiVersion: 'coffer.dev/v1alpha1',
    kind: 'VaultCluster',
    metadata: { name, namespace: ns },
    spec: { replicas: 3, image: IMAGE, readAllowlist: ['127.0.0.1/32'], kms: { mode: 'local' }, storage: { size: '256Mi' }, ...spec },
  };
}

export async function createVaultCluster(ns: string, name: string, spec: Record<string, unknown> = {}): Promise<void> {
  await apply(vaultCluster(ns, name, spec));
}

export async function getVaultCluster(ns: string, name: string): Promise<any> {
  return getJson(['get', 'vaultcluster', name, '-n', ns]);
}

/** Waits until the VaultCluster's Ready condition is True with every replica ready; returns it. */
export async function waitReady(ns: string, name: string): Promise<any> {
  return waitFor(`VaultCluster ${ns}/${name} Ready`, async () => {
    const vc = await getVaultCluster(ns, name);
    const ready = (vc.status?.conditions ?? []).find((c: any) => c.type === 'Ready');
    return ready?.status === 'True' && vc.status?.readyReplicas === vc.spec.replicas ? vc : undefined;
  });
}

export async function bootstrapToken(ns: string, name: string): Promise<string> {
  const b64 = await kubectl(['get', 'secret', `${name}-bootstrap-token`, '-n', ns, '-o', 'jsonpath={.data.token}']);
  return Buffer.from(b64, 'base64').toString('utf8');
}

export function podNames(name: string, replicas = 3): string[] {
  return Array.from({ length: replicas }, (_, i) => `${name}-${i}`);
}

/** The Raft leader as the pods see it: a pod name every answering pod agrees on. */
export async function leaderPod(ns: string, name: string, replicas = 3): Promise<string> {
  return waitFor(`a leader all pods of ${ns}/${name} agree on`, async () => {
    const seen = new Set<string | null>();
    for (const pod of podNames(name, replicas)) {
      const h = await api(ns, pod, { method: 'GET', path: '/v1/health' }).catch(() => undefined);
      if (!h || h.status !== 200) return undefined;
      seen.add(h.body.leader_id);
    }
    const [only] = [...seen];
    return seen.size === 1 && typeof only === 'string' ? only : undefined;
  });
}

export async function deleteVaultCluster(ns: string, name: string): Promise<void> {
  await kubectl(['delete', 'vaultcluster', name, '-n', ns, '--wait=true', '--timeout=300s']);
}

export async function operatorPods(): Promise<string[]> {
  const pods = await getJson(['get', 'pods', '-n', OPERATOR_NS, '-l', 'app.kubernetes.io/name=coffer-operator']);
  return pods.items.map((p: any) => p.metadata.name);
}
