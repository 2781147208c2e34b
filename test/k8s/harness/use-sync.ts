// The sync controller as the k8s tier runs it (issue 14): a real 3-node Coffer
// on 127.0.0.x (TestCluster) whose read allowlist is a file the test rewrites
// (VAULT_READ_ALLOWLIST_FILE; VAULT_READ_ALLOWLIST itself allows nobody), the
// CofferSecret CRD from crds/, and `coffer sync run` as real processes under a
// client-cert identity bound to exactly SYNC_RULES + the lease Role of
// sync/rbac.ts (not cluster-admin).
//
//   const cp = useControlPlane();
//   const sync = useSync(cp, { namespace: 'apps', allowlist: ['127.0.0.1'] });
//   it('…', async () => { const c = await sync.startController('sync-a'); …; await sync.stopController(c); });
//
// Each controller's stdout/stderr goes to a file; a failed test prints the
// tail of every controller's log. Processes are killed in afterAll (and on
// worker exit).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, expect } from 'vitest';
import { TestCluster } from '../../helpers/cluster.js';
import { request } from '../../helpers/http.js';
import { freePort } from '../../helpers/net.js';
import { COFFER_BIN, ROOT } from '../../helpers/node.js';
import { leaderElectionRules, SYNC_LEASE_NAME, SYNC_RULES } from '../../../sync/rbac.js';
import type { ControlPlane } from './control-plane.js';

export const SYNC_NAMESPACE = 'coffer-system';
export const SYNC_SA = 'coffer-sync';
export const CRD_FILE = 'crds/coffersecrets.coffer.dev.yaml';
export const MANAGED_BY = { 'app.kubernetes.io/managed-by': 'coffer-sync' };
/** Name of the Secret (in the fixture's namespace) holding the sync token. */
export const TOKEN_SECRET = 'sync-token';

export interface SyncOptions {
  /** Namespace of the test's CofferSecrets, Secrets and workloads (created here, with the token Secret). */
  namespace: string;
  /** Initial content of the read allowlist file (addresses/CIDRs). */
  allowlist: string[];
  /** Coffer paths the sync token may read_metadata on (default ['*']). */
  tokenPaths?: string[];
}

export interface SyncController {
  identity: string;
  /** http://127.0.0.1:<port> (GET /metrics, /healthz, /readyz) */
  metricsUrl: string;
  logFile: string;
  proc: ChildProcess;
  /** null while running */
  exit: { code: number | null; signal: NodeJS.Signals | null } | null;
  log(): string;
}

export interface RoleRule {
  paths: string[];
  actions: string[];
}

export interface SyncFixture {
  coffer(): TestCluster;
  /** vaultRef.address of a Coffer member (default n1). */
  address(member?: string): string;
  /** Writes a value to Coffer (admin); remembered for the leak check. Returns the new version. */
  put(name: string, value: string): Promise<number>;
  /** A fresh random value (hex), unique to this run. */
  value(label: string): string;
  /** Every value written so far. */
  values(): string[];
  /** Creates or replaces a Coffer role. */
  putRole(name: string, rules: RoleRule[]): Promise<void>;
  /** Creates a token for the role; returns the raw token (never logged). */
  createToken(name: string, role: string): Promise<string>;
  /** Rewrites the read allowlist file (the nodes re-read it within ~2 s). */
  setAllowlist(entries: string[]): void;
  /** Starts `coffer sync run` with this identity; resolves once /healthz answers. */
  startController(identity: string): Promise<SyncController>;
  /** SIGTERM (or the signal given) and wait for the exit. */
  stopController(c: SyncController, signal?: NodeJS.Signals): Promise<void>;
  /** The controllers still running. */
  controllers(): SyncController[];
  /** Every controller process of the file, stopped ones included. */
  allControllers(): SyncController[];
  /** The controller's kubeconfig (its RBAC only). */
  kubeconfig(): string;
  /** The tail of every controller's log (for error messages). */
  tails(lines?: number): string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** dist/ must hold a build of the current sources: the controller runs from it. */
function checkBuild(): void {
  const rel = path.relative(ROOT, COFFER_BIN);
  if (!fs.existsSync(COFFER_BIN)) throw new Error(`${rel} is missing: run \`npx tsc -p tsconfig.json\` (or npm run build) first`);
  const stale: string[] = [];
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) {
        const js = path.join(ROOT, 'dist', p.replace(/\.ts$/, '.js'));
        if (!fs.existsSync(js) || fs.statSync(js).mtimeMs < fs.statSync(path.join(ROOT, p)).mtimeMs) stale.push(p);
      }
    }
  };
  for (const dir of ['sync', 'bin']) if (fs.existsSync(path.join(ROOT, dir))) walk(dir);
  if (stale.length > 0) throw new Error(`dist/ is older than ${stale.slice(0, 5).join(', ')}${stale.length > 5 ? ', …' : ''}: run \`npx tsc -p tsconfig.json\` first`);
}

/** Call at module top level, after useControlPlane(). */
export function useSync(cp: () => ControlPlane, opts: SyncOptions): SyncFixture {
  let cluster: TestCluster | undefined;
  let kubeconfig = '';
  let dir = '';
  let allowlistFile = '';
  const written: string[] = [];
  const running: SyncController[] = [];
  const all: SyncController[] = [];
  const killAll = () => {
    for (const c of running) c.proc.kill('SIGKILL');
  };

  const coffer = (): TestCluster => {
    if (!cluster) throw new Error('the Coffer cluster is not running (useSync() beforeAll failed?)');
    return cluster;
  };
  /** An admin call to a running member; retried while the cluster elects a leader. */
  const admin = async (method: string, p: string, body?: unknown) => {
    let last = '';
    for (let i = 0; i < 40; i++) {
      const m = coffer().running()[i % Math.max(1, coffer().running().length)];
      if (!m) throw new Error('no Coffer member running');
      const r = await request(m.url, method, p, { token: coffer().token, body, timeoutMs: 10_000 }).catch((e: Error) => ({ status: 0, text: e.message, body: null }));
      if (r.status >= 200 && r.status < 300) return r.body;
      last = `${r.status} ${r.text}`;
      if (r.status !== 0 && r.status !== 503) break;
      await sleep(250);
    }
    throw new Error(`Coffer ${method} ${p} failed: ${last}`);
  };

  const tails = (lines = 40) =>
    all.map((c) => `--- sync controller ${c.identity} (${c.exit ? `exited ${c.exit.code ?? c.exit.signal}` : 'running'}), last ${lines} lines of ${c.logFile}:\n${c.log().split('\n').slice(-lines - 1).join('\n')}`).join('\n');

  beforeAll(async () => {
    checkBuild();
    if (!fs.existsSync(path.join(ROOT, CRD_FILE))) throw new Error(`${CRD_FILE} is missing (generated by sync/crd/generate.ts)`);
    process.once('exit', killAll);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-sync-k8s-'));
    allowlistFile = path.join(dir, 'read-allowlist');
    fs.writeFileSync(allowlistFile, opts.allowlist.map((e) => `${e}\n`).join(''));
    // VAULT_READ_ALLOWLIST allows nobody: the file alone decides who reads values.
    cluster = await TestCluster.start(3, { VAULT_READ_ALLOWLIST: '', VAULT_READ_ALLOWLIST_FILE: allowlistFile, VAULT_KMS_MODE: 'local' });

    // The CRD, applied the way the chart ships it.
    await cp().kubectlOk(['apply', '--server-side', '-f', path.join(ROOT, CRD_FILE)]);
    await cp().kubectlOk(['wait', '--for=condition=Established', 'crd/coffersecrets.coffer.dev', '--timeout=60s']);

    // The controller's identity: exactly the chart's rules.
    const subject = { kind: 'ServiceAccount', name: SYNC_SA, namespace: SYNC_NAMESPACE };
    const rbac = [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: SYNC_NAMESPACE } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: opts.namespace } },
      { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'coffer-sync' }, rules: SYNC_RULES.map((r) => structuredClone(r)) },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'coffer-sync' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'coffer-sync' }, subjects: [subject],
      },
      { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'coffer-sync-leader-election', namespace: SYNC_NAMESPACE }, rules: leaderElectionRules(SYNC_LEASE_NAME) },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'coffer-sync-leader-election', namespace: SYNC_NAMESPACE },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'coffer-sync-leader-election' }, subjects: [subject],
      },
    ];
    await cp().kubectlOk(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: rbac }));
    kubeconfig = await cp().userKubeconfig(`system:serviceaccount:${SYNC_NAMESPACE}:${SYNC_SA}`, ['system:serviceaccounts', `system:serviceaccounts:${SYNC_NAMESPACE}`]);
    // Not cluster-admin: it can never delete a Secret (garbage collection does that), nor read pods.
    const del = await cp().kubectl(['-n', opts.namespace, 'delete', 'secret', 'anything'], undefined, { kubeconfig });
    expect(del.stderr).toMatch(/forbidden/i);
    const pods = await cp().kubectl(['-n', opts.namespace, 'get', 'pods'], undefined, { kubeconfig });
    expect(pods.stderr).toMatch(/forbidden/i);

    // The sync token: read_metadata on the test's names, in the namespace's token Secret.
    await fx.putRole('sync', [{ paths: opts.tokenPaths ?? ['*'], actions: ['read_metadata'] }]);
    const token = await fx.createToken('sync', 'sync');
    await cp().kubectlOk(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'v1', kind: 'Secret', metadata: { name: TOKEN_SECRET, namespace: opts.namespace }, stringData: { token },
    }));
  });

  beforeEach((ctx) => {
    ctx.onTestFailed(() => {
      if (all.length > 0) console.log(tails());
    });
  });

  afterAll(async () => {
    await Promise.all([...running].map((c) => fx.stopController(c, 'SIGKILL').catch(() => {})));
    process.off('exit', killAll);
    await cluster?.stop();
    if (dir && process.env.COFFER_K8S_KEEP !== '1') fs.rmSync(dir, { recursive: true, force: true });
    else if (dir) console.log(`[sync] controller logs kept in ${dir}`);
  });

  const fx: SyncFixture = {
    coffer,
    address: (member = 'n1') => `http://${coffer().member(member).host}:${coffer().member(member).apiPort}`,
    async put(name, value) {
      written.push(value);
      const body = await admin('PUT', `/v1/secrets/${name}`, { value });
      return body.version as number;
    },
    value: (label) => `${label}-${randomBytes(12).toString('hex')}`,
    values: () => [...written],
    async putRole(name, rules) {
      await admin('PUT', `/v1/roles/${name}`, { rules });
    },
    async createToken(name, role) {
      const body = await admin('POST', '/v1/tokens', { name, role });
      return body.token as string;
    },
    setAllowlist(entries) {
      // Write a new file and rename it over the old one, as an atomic swap.
      const tmp = `${allowlistFile}.tmp`;
      fs.writeFileSync(tmp, entries.map((e) => `${e}\n`).join(''));
      fs.renameSync(tmp, allowlistFile);
    },
    async startController(identity) {
      const port = await freePort('127.0.0.1');
      const logFile = path.join(dir, `sync-${identity}-${all.filter((c) => c.identity === identity).length}.log`);
      const fd = fs.openSync(logFile, 'a');
      const args = [
        COFFER_BIN, 'sync', 'run', '--kubeconfig', kubeconfig, '--lease-namespace', SYNC_NAMESPACE,
        '--metrics-addr', `127.0.0.1:${port}`, '--identity', identity,
        '--lease-duration', '4s', '--renew-deadline', '3s', '--retry-period', '1s',
      ];
      // Only PATH: no KUBECONFIG or POD_* from the test's environment.
      const proc = spawn(process.execPath, args, { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', fd, fd], cwd: dir });
      fs.closeSync(fd);
      const c: SyncController = {
        identity, metricsUrl: `http://127.0.0.1:${port}`, logFile, proc, exit: null,
        log: () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''),
      };
      proc.once('exit', (code, signal) => {
        c.exit = { code, signal };
        const i = running.indexOf(c);
        if (i >= 0) running.splice(i, 1);
      });
      running.push(c);
      all.push(c);
      const deadline = Date.now() + 30_000;
      for (;;) {
        if (c.exit) throw new Error(`coffer sync run (${identity}) exited with ${c.exit.code ?? c.exit.signal} before /healthz answered:\n${tails()}`);
        const ok = await fetch(`${c.metricsUrl}/healthz`).then((r) => r.status === 200, () => false);
        if (ok) return c;
        if (Date.now() > deadline) throw new Error(`coffer sync run (${identity}): /healthz did not answer within 30 s:\n${tails()}`);
        await sleep(200);
      }
    },
    async stopController(c, signal = 'SIGTERM') {
      if (c.exit) return;
      const exited = new Promise<void>((r) => c.proc.once('exit', () => r()));
      c.proc.kill(signal);
      const done = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
      if (!done) {
        c.proc.kill('SIGKILL');
        await exited;
      }
    },
    controllers: () => [...running],
    allControllers: () => [...all],
    kubeconfig: () => kubeconfig,
    tails,
  };
  return fx;
}

// ---------------------------------------------------------------- objects and waits

export interface DataItem {
  key: string;
  name: string;
  version?: number;
}

/** A CofferSecret reading from `address` with the fixture's token Secret. */
export function cofferSecret(namespace: string, name: string, address: string, data: DataItem[], spec: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'coffer.dev/v1alpha1', kind: 'CofferSecret', metadata: { name, namespace },
    spec: { vaultRef: { address }, tokenSecretRef: { name: TOKEN_SECRET, key: 'token' }, data, ...spec },
  };
}

/** A Deployment object (kwok runs its pods, nothing listens). */
export function deployment(namespace: string, name: string): Record<string, unknown> {
  const labels = { app: name };
  return {
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name, namespace },
    spec: {
      replicas: 1, selector: { matchLabels: labels },
      template: { metadata: { labels }, spec: { containers: [{ name: 'app', image: 'registry.invalid/app:1' }], terminationGracePeriodSeconds: 0 } },
    },
  };
}

export async function apply(cp: ControlPlane, ...objs: unknown[]): Promise<void> {
  await cp.kubectlOk(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objs }));
}

/** GET as admin; null on 404. */
export async function getObject(cp: ControlPlane, apiPath: string): Promise<any | null> {
  const r = await cp.api('GET', apiPath);
  if (r.status === 404) return null;
  if (r.status !== 200) throw new Error(`GET ${apiPath}: ${r.status} ${r.body}`);
  return r.json;
}

export const secretPath = (ns: string, name: string) => `/api/v1/namespaces/${ns}/secrets/${name}`;
export const csecPath = (ns: string, name: string) => `/apis/coffer.dev/v1alpha1/namespaces/${ns}/coffersecrets/${name}`;
export const deploymentPath = (ns: string, name: string) => `/apis/apps/v1/namespaces/${ns}/deployments/${name}`;

export async function getSecret(cp: ControlPlane, ns: string, name: string): Promise<any | null> {
  return getObject(cp, secretPath(ns, name));
}

/** A Secret's data, base64-decoded. */
export function decoded(secret: any): Record<string, string> {
  return Object.fromEntries(Object.entries((secret?.data ?? {}) as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
}

export function readyCondition(obj: any): { status: string; reason: string; message?: string; observedGeneration?: number } | undefined {
  return (obj?.status?.conditions ?? []).find((c: any) => c.type === 'Ready');
}

/**
 * Polls (every 200 ms) until the CofferSecret's Ready condition has this
 * reason (and `extra` holds); returns the object. The error names what was
 * last seen, and the controllers' log tails when a fixture is given.
 */
export async function waitForReason(cp: ControlPlane, ns: string, name: string, reason: string, timeoutMs = 30_000, extra: (obj: any) => boolean = () => true, sync?: SyncFixture): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  let last: any = null;
  for (;;) {
    last = await getObject(cp, csecPath(ns, name)).catch(() => last);
    const c = readyCondition(last);
    const want = reason === 'Synced' ? 'True' : 'False';
    if (c?.reason === reason && c.status === want && (last.status?.observedGeneration ?? c.observedGeneration) === last.metadata.generation && extra(last)) return last;
    if (Date.now() > deadline) {
      throw new Error(`CofferSecret ${ns}/${name}: Ready reason ${reason} not seen within ${timeoutMs} ms; last status: ${JSON.stringify(last?.status ?? null)}${sync ? `\n${sync.tails(25)}` : ''}`);
    }
    await sleep(200);
  }
}

/** Polls fn every `everyMs` until it returns something other than undefined/false; returns [value, elapsed ms]. */
export async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 100): Promise<[T, number]> {
  const t0 = Date.now();
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return [v, Date.now() - t0];
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------- metrics and lease

export async function scrape(c: SyncController): Promise<string> {
  const r = await fetch(`${c.metricsUrl}/metrics`);
  if (r.status !== 200) throw new Error(`GET ${c.metricsUrl}/metrics: ${r.status}`);
  return r.text();
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

export async function leaseHolder(cp: ControlPlane): Promise<string | undefined> {
  const lease = await getObject(cp, `/apis/coordination.k8s.io/v1/namespaces/${SYNC_NAMESPACE}/leases/${SYNC_LEASE_NAME}`);
  return lease?.spec?.holderIdentity || undefined;
}

// ---------------------------------------------------------------- leak check

/**
 * Every place a value must never be: the controllers' logs and metrics, every
 * CofferSecret (status included), every Event, and the metadata (labels,
 * annotations) of every Secret the controller manages. Looks for each value
 * as written and base64-encoded; returns the places it was found.
 */
export async function findLeaks(cp: ControlPlane, sync: SyncFixture, namespaces: string[]): Promise<string[]> {
  const places: [string, string][] = [];
  for (const c of sync.allControllers()) places.push([`log of ${c.identity} (${path.basename(c.logFile)})`, c.log()]);
  for (const c of sync.controllers()) places.push([`metrics of ${c.identity}`, await scrape(c).catch(() => '')]);
  places.push(['CofferSecrets', await cp.kubectlOk(['get', 'coffersecrets', '-A', '-o', 'json'])]);
  for (const ns of namespaces) places.push([`Events in ${ns}`, await cp.kubectlOk(['-n', ns, 'get', 'events', '-o', 'json'])]);
  const secrets = JSON.parse(await cp.kubectlOk(['get', 'secrets', '-A', '-l', 'app.kubernetes.io/managed-by=coffer-sync', '-o', 'json']));
  for (const s of secrets.items) places.push([`metadata of Secret ${s.metadata.namespace}/${s.metadata.name}`, JSON.stringify({ labels: s.metadata.labels, annotations: s.metadata.annotations })]);
  return places.flatMap(([where, text]) => sync.values().flatMap((v) => {
    const forms = [v, Buffer.from(v).toString('base64')];
    return forms.some((f) => text.includes(f)) ? [`${where} contains the value labelled ${v.split('-')[0]}`] : [];
  }));
}
