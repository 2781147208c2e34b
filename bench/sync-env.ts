// The sync benchmark's world (issue 14), built from the k8s tier's harness:
// a real control plane (test/k8s/harness/control-plane.ts), a real 3-node
// Coffer on 127.0.0.1-3 (test/helpers/cluster.ts), the CofferSecret CRD, the
// controller's identity bound to exactly SYNC_RULES + the lease Role, a sync
// token (read_metadata only), and `coffer sync run` as a process of its own.
// It also holds the small clients the bench needs: Coffer admin calls, the
// Coffer nodes' and the controller's /metrics.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { TestCluster } from '../test/helpers/cluster.js';
import { freePort } from '../test/helpers/net.js';
import { COFFER_BIN, ROOT } from '../test/helpers/node.js';
import { startControlPlane, type ControlPlane } from '../test/k8s/harness/control-plane.js';
import { CRD_FILE, SYNC_NAMESPACE, SYNC_SA, TOKEN_SECRET, metric } from '../test/k8s/harness/use-sync.js';
import { leaderElectionRules, SYNC_LEASE_NAME, SYNC_RULES } from '../sync/rbac.js';

export { metric };

export interface SyncWorld {
  cp: ControlPlane;
  coffer: TestCluster;
  /** Namespace of the CofferSecrets, their Secrets and the token Secret. */
  namespace: string;
  /** http://host:port of each Coffer node (n1..n3). */
  addresses: string[];
  controller: ChildProcess;
  controllerMetrics: string;
  logFile: string;
  /** One admin call to Coffer (bootstrap token), retried on 503/no answer; returns the JSON body. */
  admin(method: string, p: string, body?: unknown): Promise<any>;
  /** GET /metrics of every Coffer node (text, in member order). */
  scrapeNodes(): Promise<string[]>;
  scrapeController(): Promise<string>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One keep-alive agent per node: the bench's own calls stay cheap. */
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

export function httpJson(base: string, method: string, p: string, token: string, body?: unknown): Promise<{ status: number; text: string; json: any }> {
  const url = new URL(p, base);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method, agent, timeout: 30_000,
      headers: { authorization: `Bearer ${token}`, ...(payload ? { 'content-type': 'application/json' } : {}) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        let json: any = null;
        try {
          json = text ? JSON.parse(text) : null;
        } catch {
          json = null;
        }
        resolve({ status: res.statusCode ?? 0, text, json });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}

export interface WorldOptions {
  namespace: string;
  /** `coffer sync run --watch-wait` (seconds). */
  watchWaitS: number;
  workers: number;
  log: (line: string) => void;
}

export async function startWorld(opts: WorldOptions): Promise<SyncWorld> {
  const { log } = opts;
  if (!fs.existsSync(COFFER_BIN)) throw new Error('dist/bin/coffer.js is missing: run `npx tsc -p tsconfig.json` first');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-bench-sync-'));
  let cp: ControlPlane | undefined;
  let coffer: TestCluster | undefined;
  let controller: ChildProcess | undefined;
  const stop = async () => {
    if (controller && controller.exitCode === null && controller.signalCode === null) {
      const exited = new Promise((r) => controller!.once('exit', r));
      controller.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
      controller.kill('SIGKILL');
    }
    await coffer?.stop().catch(() => {});
    await cp?.stop().catch(() => {});
    agent.destroy();
    if (process.env.COFFER_BENCH_KEEP !== '1') fs.rmSync(dir, { recursive: true, force: true });
    else log(`controller log kept in ${dir}`);
  };
  process.once('exit', () => controller?.kill('SIGKILL'));
  try {
    log('starting the control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)…');
    cp = await startControlPlane({ nodes: 1, volumes: 0, log: (l) => log(`  ${l}`) });
    log('starting a 3-node Coffer on 127.0.0.1-3 (local KMS)…');
    // Values are read from loopback (TestCluster's VAULT_READ_ALLOWLIST), like a controller pod the allowlist names.
    coffer = await TestCluster.start(3, { VAULT_KMS_MODE: 'local' });
    const c = coffer;
    const addresses = c.members.map((m) => m.url);
    const admin = async (method: string, p: string, body?: unknown): Promise<any> => {
      let last = '';
      for (let i = 0; i < 40; i++) {
        const base = addresses[i % addresses.length]!;
        const r = await httpJson(base, method, p, c.token, body).catch((e: Error) => ({ status: 0, text: e.message, json: null }));
        if (r.status >= 200 && r.status < 300) return r.json;
        last = `${r.status} ${r.text.slice(0, 200)}`;
        if (r.status !== 0 && r.status !== 503 && r.status !== 429) break;
        await sleep(100);
      }
      throw new Error(`Coffer ${method} ${p} failed: ${last}`);
    };

    await cp.kubectlOk(['apply', '--server-side', '-f', path.join(ROOT, CRD_FILE)]);
    await cp.kubectlOk(['wait', '--for=condition=Established', 'crd/coffersecrets.coffer.dev', '--timeout=60s']);
    // The controller's identity: the chart's rules, nothing more (as useSync() binds them).
    const subject = { kind: 'ServiceAccount', name: SYNC_SA, namespace: SYNC_NAMESPACE };
    const rbacApi = 'rbac.authorization.k8s.io/v1';
    const roleRef = (kind: string, name: string) => ({ apiGroup: 'rbac.authorization.k8s.io', kind, name });
    const items = [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: SYNC_NAMESPACE } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: opts.namespace } },
      { apiVersion: rbacApi, kind: 'ClusterRole', metadata: { name: 'coffer-sync' }, rules: SYNC_RULES.map((r) => structuredClone(r)) },
      { apiVersion: rbacApi, kind: 'ClusterRoleBinding', metadata: { name: 'coffer-sync' }, roleRef: roleRef('ClusterRole', 'coffer-sync'), subjects: [subject] },
      { apiVersion: rbacApi, kind: 'Role', metadata: { name: 'coffer-sync-leader-election', namespace: SYNC_NAMESPACE }, rules: leaderElectionRules(SYNC_LEASE_NAME) },
      { apiVersion: rbacApi, kind: 'RoleBinding', metadata: { name: 'coffer-sync-leader-election', namespace: SYNC_NAMESPACE }, roleRef: roleRef('Role', 'coffer-sync-leader-election'), subjects: [subject] },
    ];
    await cp.kubectlOk(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
    const kubeconfig = await cp.userKubeconfig(`system:serviceaccount:${SYNC_NAMESPACE}:${SYNC_SA}`, ['system:serviceaccounts', `system:serviceaccounts:${SYNC_NAMESPACE}`]);

    // The sync token: read_metadata on every name; values come by the allowlist.
    await admin('PUT', '/v1/roles/sync', { rules: [{ paths: ['*'], actions: ['read_metadata'] }] });
    const token = (await admin('POST', '/v1/tokens', { name: 'sync', role: 'sync' })).token as string;
    await cp.kubectlOk(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'v1', kind: 'Secret', metadata: { name: TOKEN_SECRET, namespace: opts.namespace }, stringData: { token },
    }));

    const port = await freePort('127.0.0.1');
    const logFile = path.join(dir, 'sync-controller.log');
    const fd = fs.openSync(logFile, 'a');
    controller = spawn(process.execPath, [
      COFFER_BIN, 'sync', 'run', '--kubeconfig', kubeconfig, '--lease-namespace', SYNC_NAMESPACE, '--identity', 'bench',
      '--metrics-addr', `127.0.0.1:${port}`, '--watch-wait', `${opts.watchWaitS}s`, '--workers', String(opts.workers), '--log-level', 'warn',
    ], { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', fd, fd], cwd: dir });
    fs.closeSync(fd);
    const controllerMetrics = `http://127.0.0.1:${port}`;
    const tail = () => fs.readFileSync(logFile, 'utf8').split('\n').slice(-20).join('\n');
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (controller.exitCode !== null) throw new Error(`coffer sync run exited with ${controller.exitCode}:\n${tail()}`);
      const leader = await fetch(`${controllerMetrics}/metrics`).then((r) => r.text()).then((t) => metric(t, 'coffer_sync_leader') === 1, () => false);
      if (leader) break;
      if (Date.now() > deadline) throw new Error(`coffer sync run did not lead within 60 s:\n${tail()}`);
      await sleep(250);
    }
    log(`controller leading (pid ${controller.pid}, metrics ${controllerMetrics}, --watch-wait ${opts.watchWaitS}s, --workers ${opts.workers})`);

    return {
      cp, coffer: c, namespace: opts.namespace, addresses, controller, controllerMetrics, logFile, admin,
      scrapeNodes: () => Promise.all(addresses.map(async (a) => {
        const r = await httpJson(a, 'GET', '/metrics', c.token);
        if (r.status !== 200) throw new Error(`GET ${a}/metrics: ${r.status}`);
        return r.text;
      })),
      scrapeController: () => fetch(`${controllerMetrics}/metrics`).then((r) => r.text()),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Every sample of `name` as [labels, value] (labels parsed). */
export function samples(text: string, name: string): [Record<string, string>, number][] {
  const out: [Record<string, string>, number][] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push([labels, Number(m[4])]);
  }
  return out;
}

/** coffer_http_requests_total summed over nodes, by "METHOD route" (the bench's own /metrics scrapes left out). */
export function requestsByRoute(texts: string[]): Map<string, number> {
  const by = new Map<string, number>();
  for (const t of texts) {
    for (const [l, v] of samples(t, 'coffer_http_requests_total')) {
      if (l.route === '/metrics') continue;
      const k = `${l.method} ${l.route}`;
      by.set(k, (by.get(k) ?? 0) + v);
    }
  }
  return by;
}
