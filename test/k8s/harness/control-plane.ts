// The test:k8s control plane: real etcd, kube-apiserver, kube-controller-manager
// and kube-scheduler (built from their Go modules by test/k8s/tools/build.sh),
// plus kwok, which fakes the kubelets of a few Nodes (node heartbeats, pod
// Running/Ready, pod IPs, graceful deletion). Everything listens on 127.0.0.1
// only, in a fresh temp dir; nothing survives stop().
//
//   const cp = await startControlPlane();
//   await cp.kubectl(['apply', '-f', '-'], manifestYaml);
//   const kc = await cp.userKubeconfig('system:serviceaccount:coffer:operator', []);
//   ...
//   await cp.stop();
//
// What runs:
// - etcd on a temp data dir (--unsafe-no-fsync: a test cluster need not survive power loss);
// - kube-apiserver with a generated CA, serving cert, client-cert auth
//   (--client-ca-file), service-account signing keys, --authorization-mode=Node,RBAC;
// - kube-controller-manager (--controllers=*, --use-service-account-credentials,
//   signs CSRs with the test CA) and kube-scheduler, each with its own
//   client cert (system:kube-controller-manager / system:kube-scheduler), so
//   they run under the bootstrap RBAC roles like in a real cluster;
// - kwok managing Nodes annotated kwok.x-k8s.io/node=fake with its default
//   stages; startControlPlane() creates `nodes` of them (default 3: kwok-node-0..2,
//   zones zone-a..c) and waits until they are Ready;
// - a default StorageClass `standard` (no provisioner) and a pool of
//   pre-created PVs, so StatefulSet volumeClaimTemplates bind (nobody mounts them).
//
// Failure handling: every wait is bounded and its error names the component
// and carries the last lines of its log. Processes are killed by stop(), on
// normal worker exit, and by a detached reaper if the worker is SIGKILLed.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../helpers/net.js';
import { binary, kubectlPath } from './binaries.js';

const HOST = '127.0.0.1';
const SERVICE_CIDR = '10.96.0.0/16';
const SERVICE_FIRST_IP = '10.96.0.1';
const POD_CIDR = '10.244.0.1/16';
const SA_ISSUER = 'https://kubernetes.default.svc.cluster.local';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface KubectlOptions {
  /** Another kubeconfig (e.g. from userKubeconfig()); default: the admin one. */
  kubeconfig?: string;
  /** Kills kubectl after this long (default 60 s); the result then has code 124. */
  timeoutMs?: number;
}

export interface ApiResponse {
  status: number;
  body: string;
  /** The body parsed as JSON, or undefined if it is not JSON. */
  json: any;
}

export interface ControlPlaneOptions {
  /** Number of kwok Nodes to create (default 3). */
  nodes?: number;
  /** Pre-created 10Gi PVs for the default StorageClass (default 24; 0 for none). */
  volumes?: number;
  /** Per-component startup timeout (default 120 s; the 2-core CI machine is slow). */
  startTimeoutMs?: number;
  /** Extra kube-apiserver flags (e.g. ['--feature-gates=…']). */
  apiserverArgs?: string[];
  /**
   * kwok configuration YAML (e.g. Stage objects, kwok.x-k8s.io/v1alpha1) passed
   * with --config. Stages given for Pods (or Nodes) replace kwok's default
   * stages for that kind. Default: kwok's defaults, i.e. a scheduled pod gets a
   * pod IP and turns Running + Ready at once, and a deleted pod goes away.
   */
  kwokConfig?: string;
  /** Prints progress lines (default: nothing). */
  log?: (line: string) => void;
}

export interface ControlPlane {
  /** Path of the admin kubeconfig (client cert in O=system:masters). */
  kubeconfig: string;
  /** https://127.0.0.1:<port> */
  server: string;
  /** PEM file of the cluster CA (serving cert and client certs). */
  caFile: string;
  /** Temp dir holding certs, kubeconfigs, etcd data and component logs (logs/<name>.log). */
  dir: string;
  /** Names of the fake (kwok) Nodes. */
  nodeNames: string[];
  /** Runs kubectl against this cluster (admin unless opts.kubeconfig). Never throws on a non-zero exit. */
  kubectl(args: string[], input?: string, opts?: KubectlOptions): Promise<ExecResult>;
  /** Like kubectl() but throws (with stderr) on a non-zero exit; returns stdout. */
  kubectlOk(args: string[], input?: string, opts?: KubectlOptions): Promise<string>;
  /** One raw API request as admin (path like /api/v1/namespaces). */
  api(method: string, apiPath: string, body?: unknown): Promise<ApiResponse>;
  /**
   * A kubeconfig for a non-admin identity: a client cert with CN=name and one
   * O per group, signed by the cluster CA. Only RBAC bindings grant it anything.
   * (For a ServiceAccount, name = 'system:serviceaccount:<ns>:<name>' and groups
   * ['system:serviceaccounts', 'system:serviceaccounts:<ns>'] match what its token gets.)
   */
  userKubeconfig(name: string, groups?: string[]): Promise<string>;
  /** A token kubeconfig for an existing ServiceAccount, via the TokenRequest API. */
  serviceAccountKubeconfig(namespace: string, name: string, expirationSeconds?: number): Promise<string>;
  /** Env for a child process (e.g. the operator) that should use this cluster: KUBECONFIG=… */
  env(kubeconfig?: string): Record<string, string>;
  /** Last lines a component logged. */
  logs(component: ComponentName, lines?: number): string;
  /** Kills everything (SIGTERM, then SIGKILL after 5 s) and removes the temp dir (kept if COFFER_K8S_KEEP=1). */
  stop(): Promise<void>;
}

export type ComponentName = 'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler' | 'kwok';

// ---------------------------------------------------------------------------
// processes

class Component {
  proc: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private ring = '';
  private readonly logFile: string;

  constructor(
    readonly name: ComponentName,
    private readonly dir: string,
  ) {
    this.logFile = path.join(dir, 'logs', `${name}.log`);
  }

  start(cmd: string, args: string[], env: Record<string, string>): void {
    const out = fs.createWriteStream(this.logFile, { flags: 'a' });
    out.write(`$ ${cmd} ${args.join(' ')}\n`);
    const proc = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'], cwd: this.dir });
    this.proc = proc;
    const onData = (d: Buffer) => {
      out.write(d);
      this.ring = (this.ring + d.toString()).slice(-32_000);
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('error', (err) => onData(Buffer.from(`[harness] spawn error: ${err.message}\n`)));
    this.exited = new Promise<void>((resolve) =>
      proc.once('close', (code, signal) => {
        out.end(`[harness] exited: ${code ?? signal}\n`);
        if (this.proc === proc) this.proc = null;
        this.ring += `[harness] ${this.name} exited: ${code ?? signal}\n`;
        resolve();
      }),
    );
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  tail(lines = 30): string {
    return this.ring.split('\n').slice(-lines - 1).join('\n');
  }

  fail(what: string): Error {
    return new Error(`test:k8s: ${this.name} ${what} (full logs: COFFER_K8S_KEEP=1 keeps ${path.dirname(this.logFile)}). Last log lines:\n${this.tail()}`);
  }

  /** Polls probe until it returns true; throws (with the log tail) if the process exits or time runs out. */
  async waitFor(what: string, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.proc) throw this.fail(`exited before ${what}`);
      if (await probe().catch(() => false)) return;
      if (Date.now() > deadline) throw this.fail(`did not get to ${what} within ${timeoutMs / 1000} s`);
      await sleep(250);
    }
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc) return this.exited;
    proc.kill('SIGTERM');
    const done = await Promise.race([this.exited.then(() => true), sleep(5_000).then(() => false)]);
    if (!done) {
      proc.kill('SIGKILL');
      await this.exited;
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// Kill what is still running if the worker exits without stop() (exceptions,
// process.exit). A SIGKILLed worker is covered by the reaper below.
const live = new Set<Component>();
process.once('exit', () => {
  for (const c of live) {
    try {
      if (c.pid) process.kill(c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

// A detached watchdog: when the test worker (parentPid) is gone, it SIGKILLs
// every pid listed in pidFile and removes the temp dir. It exits by itself
// once pidFile disappears (stop() removes it).
const REAPER = `
const fs = require('node:fs');
const [parentPid, pidFile, dir] = process.argv.slice(1);
const alive = (pid) => { try { process.kill(pid, 0); return true; } catch (e) { return e.code === 'EPERM'; } };
setInterval(() => {
  if (!fs.existsSync(pidFile)) process.exit(0);
  if (alive(Number(parentPid))) return;
  for (const line of fs.readFileSync(pidFile, 'utf8').split('\\n')) {
    const pid = Number(line);
    if (pid > 0) { try { process.kill(pid, 'SIGKILL'); } catch {} }
  }
  if (!process.env.COFFER_K8S_KEEP) fs.rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}, 500);
`;

function startReaper(pidFile: string, dir: string): void {
  const r = spawn(process.execPath, ['-e', REAPER, String(process.pid), pidFile, dir], {
    detached: true,
    stdio: 'ignore',
    env: { PATH: process.env.PATH ?? '', ...(process.env.COFFER_K8S_KEEP ? { COFFER_K8S_KEEP: '1' } : {}) },
  });
  r.unref();
}

// ---------------------------------------------------------------------------
// certificates (openssl CLI; node:crypto cannot issue X.509 certificates)

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.error) throw new Error(`test:k8s needs the openssl CLI to make its test certificates: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`test:k8s: openssl ${args.join(' ')} failed:\n${r.stderr}`);
}

/** Escapes one value for an openssl -subj string. */
function subjValue(v: string): string {
  if (!v) throw new Error('empty certificate subject value');
  return v.replace(/[\\/+=,]/g, (c) => `\\${c}`);
}

interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
}

function makeCa(dir: string, cn = 'coffer-k8s-test-ca'): Pki {
  fs.mkdirSync(dir, { recursive: true });
  openssl(
    [
      'req', '-x509', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
      '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '7', '-subj', `/CN=${cn}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
    ],
    dir,
  );
  return { dir, caCert: path.join(dir, 'ca.crt'), caKey: path.join(dir, 'ca.key') };
}

/** Issues a leaf cert; returns [certFile, keyFile]. */
function issue(pki: Pki, base: string, cn: string, orgs: string[], usage: 'client' | 'server', sans: string[] = []): [string, string] {
  const subj = `/CN=${subjValue(cn)}` + orgs.map((o) => `/O=${subjValue(o)}`).join('');
  const ext = [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${usage === 'client' ? 'clientAuth' : 'serverAuth'}`,
    ...(sans.length ? [`subjectAltName=${sans.join(',')}`] : []),
  ].join('\n');
  fs.writeFileSync(path.join(pki.dir, `${base}.ext`), ext + '\n');
  openssl(['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', subj], pki.dir);
  openssl(
    ['x509', '-req', '-in', `${base}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', `0x${randomBytes(12).toString('hex')}`, '-days', '7', '-extfile', `${base}.ext`, '-out', `${base}.crt`],
    pki.dir,
  );
  return [path.join(pki.dir, `${base}.crt`), path.join(pki.dir, `${base}.key`)];
}

function b64file(p: string): string {
  return fs.readFileSync(p).toString('base64');
}

/** Writes a kubeconfig (JSON, which every YAML kubeconfig loader reads). */
function writeKubeconfig(file: string, server: string, caFile: string, user: string, cred: { certFile: string; keyFile: string } | { token: string }): string {
  const userEntry =
    'token' in cred ? { token: cred.token } : { 'client-certificate-data': b64file(cred.certFile), 'client-key-data': b64file(cred.keyFile) };
  const cfg = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'coffer-test', cluster: { server, 'certificate-authority-data': b64file(caFile) } }],
    users: [{ name: user, user: userEntry }],
    contexts: [{ name: 'coffer-test', context: { cluster: 'coffer-test', user } }],
    'current-context': 'coffer-test',
    preferences: {},
  };
  fs.writeFileSync(file, JSON.stringify(cfg, null, 2) + '\n', { mode: 0o600 });
  return file;
}

// ---------------------------------------------------------------------------
// http probes

function httpGet(url: string, timeoutMs = 3_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

interface TlsClient {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  insecure?: boolean;
}

function httpsRequest(url: string, tls: TlsClient, method = 'GET', body?: string, timeoutMs = 10_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method,
        timeout: timeoutMs,
        ca: tls.ca,
        cert: tls.cert,
        key: tls.key,
        rejectUnauthorized: !tls.insecure,
        headers: body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (data += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

// ---------------------------------------------------------------------------

function baseEnv(home: string): Record<string, string> {
  // A clean env: no KUBECONFIG, ETCD_*, proxies or user config leak in.
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, TMPDIR: home, LANG: 'C.UTF-8' };
}

function fakeNode(name: string, zone: string): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
      labels: {
        'kubernetes.io/hostname': name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        'topology.kubernetes.io/zone': zone,
        type: 'kwok',
      },
    },
    status: {
      allocatable: { cpu: '32', memory: '256Gi', pods: '110', 'ephemeral-storage': '500Gi' },
      capacity: { cpu: '32', memory: '256Gi', pods: '110', 'ephemeral-storage': '500Gi' },
      nodeInfo: { architecture: 'amd64', operatingSystem: 'linux', kubeletVersion: 'fake', kubeProxyVersion: 'fake' },
    },
  };
}

function storageObjects(volumes: number): unknown[] {
  const objs: unknown[] = [
    {
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name: 'standard', annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } },
      provisioner: 'kubernetes.io/no-provisioner',
      volumeBindingMode: 'Immediate',
      reclaimPolicy: 'Retain',
    },
  ];
  for (let i = 0; i < volumes; i++) {
    const name = `coffer-test-pv-${String(i).padStart(3, '0')}`;
    objs.push({
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name, labels: { 'coffer.dev/test-pool': 'true' } },
      spec: {
        capacity: { storage: '10Gi' },
        accessModes: ['ReadWriteOnce'],
        persistentVolumeReclaimPolicy: 'Retain',
        storageClassName: 'standard',
        hostPath: { path: `/nonexistent/coffer-test/${name}` },
      },
    });
  }
  return objs;
}

/** Starts a fresh control plane; on any failure, stops what it started and throws. */
export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = opts.log ?? (() => {});
  const timeout = opts.startTimeoutMs ?? 120_000;
  const nodeCount = opts.nodes ?? 3;
  const started = Date.now();
  const stamp = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-k8s-'));
  fs.mkdirSync(path.join(dir, 'logs'));
  const pidFile = path.join(dir, 'pids');
  fs.writeFileSync(pidFile, '');
  startReaper(pidFile, dir);

  const components: Component[] = [];
  const launch = (name: ComponentName, cmd: string, args: string[], env: Record<string, string> = baseEnv(dir)): Component => {
    const c = new Component(name, dir);
    c.start(cmd, args, env);
    components.push(c);
    live.add(c);
    if (c.pid) fs.appendFileSync(pidFile, `${c.pid}\n`);
    return c;
  };

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    for (const c of [...components].reverse()) {
      await c.stop();
      live.delete(c);
    }
    fs.rmSync(pidFile, { force: true });
    if (process.env.COFFER_K8S_KEEP) log(`kept ${dir} (COFFER_K8S_KEEP)`);
    else fs.rmSync(dir, { recursive: true, force: true });
  };

  try {
    const kubectlBin = kubectlPath(); // fail fast if there is none
    // --- PKI ------------------------------------------------------------------
    const pki = makeCa(path.join(dir, 'pki'));
    const [servingCert, servingKey] = issue(pki, 'apiserver', 'kube-apiserver', [], 'server', [
      `IP:${HOST}`,
      `IP:${SERVICE_FIRST_IP}`,
      'DNS:localhost',
      'DNS:kubernetes',
      'DNS:kubernetes.default',
      'DNS:kubernetes.default.svc',
      'DNS:kubernetes.default.svc.cluster.local',
    ]);
    // Front-proxy (aggregation) CA and client, as in a kubeadm cluster: keeps
    // extension-apiserver-authentication complete and aggregated APIs possible.
    const frontPki = makeCa(path.join(pki.dir, 'front-proxy'), 'coffer-k8s-test-front-proxy-ca');
    const [proxyCert, proxyKey] = issue(frontPki, 'front-proxy-client', 'front-proxy-client', [], 'client');
    const [adminCert, adminKey] = issue(pki, 'admin', 'coffer-test-admin', ['system:masters'], 'client');
    const [kcmCert, kcmKey] = issue(pki, 'kcm', 'system:kube-controller-manager', [], 'client');
    const [schedCert, schedKey] = issue(pki, 'scheduler', 'system:kube-scheduler', [], 'client');
    const sa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const saKey = path.join(pki.dir, 'sa.key');
    const saPub = path.join(pki.dir, 'sa.pub');
    fs.writeFileSync(saKey, sa.privateKey.export({ type: 'pkcs1', format: 'pem' }), { mode: 0o600 });
    fs.writeFileSync(saPub, sa.publicKey.export({ type: 'spki', format: 'pem' }));
    const adminTls: TlsClient = { ca: fs.readFileSync(pki.caCert), cert: fs.readFileSync(adminCert), key: fs.readFileSync(adminKey) };
    log(`${stamp()} certificates in ${pki.dir}`);

    // --- etcd -----------------------------------------------------------------
    const etcdClientPort = await freePort(HOST);
    const etcdPeerPort = await freePort(HOST);
    const etcdUrl = `http://${HOST}:${etcdClientPort}`;
    const peerUrl = `http://${HOST}:${etcdPeerPort}`;
    const etcdBin = binary('etcd');
    // etcd < 3.5 (e.g. a distro etcd via COFFER_K8S_ETCD) has no --unsafe-no-fsync.
    const noFsync = /unsafe-no-fsync/.test(spawnSync(etcdBin, ['--help'], { encoding: 'utf8' }).stdout ?? '');
    const etcd = launch('etcd', etcdBin, [
      '--name=default',
      `--data-dir=${path.join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=default=${peerUrl}`,
      ...(noFsync ? ['--unsafe-no-fsync'] : []),
      '--log-level=warn',
    ]);
    await etcd.waitFor(`answering ${etcdUrl}/health`, async () => {
      const r = await httpGet(`${etcdUrl}/health`);
      return r.status === 200 && /"health":\s*"true"/.test(r.body);
    }, timeout);
    log(`${stamp()} etcd ready on ${etcdUrl}`);

    // --- kube-apiserver -------------------------------------------------------
    const apiPort = await freePort(HOST);
    const server = `https://${HOST}:${apiPort}`;
    const apiserver = launch('kube-apiserver', binary('kube-apiserver'), [
      `--etcd-servers=${etcdUrl}`,
      `--bind-address=${HOST}`,
      `--advertise-address=${HOST}`,
      `--secure-port=${apiPort}`,
      `--cert-dir=${path.join(dir, 'apiserver')}`,
      `--tls-cert-file=${servingCert}`,
      `--tls-private-key-file=${servingKey}`,
      `--client-ca-file=${pki.caCert}`,
      `--service-account-issuer=${SA_ISSUER}`,
      `--service-account-key-file=${saPub}`,
      `--service-account-signing-key-file=${saKey}`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      `--requestheader-client-ca-file=${frontPki.caCert}`,
      '--requestheader-allowed-names=front-proxy-client',
      '--requestheader-username-headers=X-Remote-User',
      '--requestheader-group-headers=X-Remote-Group',
      '--requestheader-extra-headers-prefix=X-Remote-Extra-',
      `--proxy-client-cert-file=${proxyCert}`,
      `--proxy-client-key-file=${proxyKey}`,
      '--authorization-mode=Node,RBAC',
      '--enable-admission-plugins=NodeRestriction',
      '--allow-privileged=true',
      // The `kubernetes` Endpoints cannot hold a loopback address; nothing here needs it.
      '--endpoint-reconciler-type=none',
      '--profiling=false',
      ...(opts.apiserverArgs ?? []),
    ]);
    await apiserver.waitFor(`answering ${server}/readyz`, async () => (await httpsRequest(`${server}/readyz`, adminTls)).status === 200, timeout);
    log(`${stamp()} kube-apiserver ready on ${server}`);

    const kubeconfig = writeKubeconfig(path.join(dir, 'admin.kubeconfig'), server, pki.caCert, 'coffer-test-admin', { certFile: adminCert, keyFile: adminKey });
    const kcmKubeconfig = writeKubeconfig(path.join(dir, 'kcm.kubeconfig'), server, pki.caCert, 'system:kube-controller-manager', { certFile: kcmCert, keyFile: kcmKey });
    const schedKubeconfig = writeKubeconfig(path.join(dir, 'scheduler.kubeconfig'), server, pki.caCert, 'system:kube-scheduler', { certFile: schedCert, keyFile: schedKey });

    const api = async (method: string, apiPath: string, body?: unknown): Promise<ApiResponse> => {
      const r = await httpsRequest(`${server}${apiPath}`, adminTls, method, body === undefined ? undefined : JSON.stringify(body));
      let json: unknown;
      try {
        json = JSON.parse(r.body);
      } catch {
        json = undefined;
      }
      return { status: r.status, body: r.body, json };
    };

    // --- kube-controller-manager, kube-scheduler ------------------------------
    const kcmPort = await freePort(HOST);
    const kcm = launch('kube-controller-manager', binary('kube-controller-manager'), [
      `--kubeconfig=${kcmKubeconfig}`,
      `--authentication-kubeconfig=${kcmKubeconfig}`,
      `--authorization-kubeconfig=${kcmKubeconfig}`,
      `--bind-address=${HOST}`,
      `--secure-port=${kcmPort}`,
      `--cert-dir=${path.join(dir, 'kcm')}`,
      '--controllers=*',
      '--leader-elect=false',
      '--use-service-account-credentials=true',
      `--service-account-private-key-file=${saKey}`,
      `--root-ca-file=${pki.caCert}`,
      `--cluster-signing-cert-file=${pki.caCert}`,
      `--cluster-signing-key-file=${pki.caKey}`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
      '--kube-api-qps=100',
      '--kube-api-burst=200',
      '--profiling=false',
    ]);
    const schedPort = await freePort(HOST);
    const scheduler = launch('kube-scheduler', binary('kube-scheduler'), [
      `--kubeconfig=${schedKubeconfig}`,
      `--authentication-kubeconfig=${schedKubeconfig}`,
      `--authorization-kubeconfig=${schedKubeconfig}`,
      `--bind-address=${HOST}`,
      `--secure-port=${schedPort}`,
      '--leader-elect=false',
      '--profiling=false',
    ]);
    await kcm.waitFor(`answering https://${HOST}:${kcmPort}/healthz`, async () => (await httpsRequest(`https://${HOST}:${kcmPort}/healthz`, { insecure: true })).status === 200, timeout);
    // The ServiceAccount controller (kcm) must be running before pods can be admitted.
    await kcm.waitFor('creating the default ServiceAccount', async () => (await api('GET', '/api/v1/namespaces/default/serviceaccounts/default')).status === 200, timeout);
    log(`${stamp()} kube-controller-manager ready`);
    await scheduler.waitFor(`answering https://${HOST}:${schedPort}/readyz`, async () => (await httpsRequest(`https://${HOST}:${schedPort}/readyz`, { insecure: true })).status === 200, timeout);
    log(`${stamp()} kube-scheduler ready`);

    // --- kwok + fake nodes ----------------------------------------------------
    // kwok also reads $HOME/.kwok/kwok.yaml: HOME is the temp dir, so only kwokConfig applies.
    const kwokConfigArgs: string[] = [];
    if (opts.kwokConfig) {
      fs.writeFileSync(path.join(dir, 'kwok.yaml'), opts.kwokConfig);
      kwokConfigArgs.push(`--config=${path.join(dir, 'kwok.yaml')}`);
    }
    const kwok = launch('kwok', binary('kwok'), [
      ...kwokConfigArgs,
      `--kubeconfig=${kubeconfig}`,
      '--manage-all-nodes=false',
      '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
      `--node-ip=${HOST}`,
      `--cidr=${POD_CIDR}`,
      '--node-lease-duration-seconds=40',
    ]);
    const zones = ['zone-a', 'zone-b', 'zone-c'];
    const nodeNames = Array.from({ length: nodeCount }, (_, i) => `kwok-node-${i}`);
    for (const [i, name] of nodeNames.entries()) {
      const r = await api('POST', '/api/v1/nodes', fakeNode(name, zones[i % zones.length]!));
      if (r.status !== 201 && r.status !== 409) throw new Error(`test:k8s: creating Node ${name} failed: ${r.status} ${r.body}`);
    }
    await kwok.waitFor(`marking ${nodeCount} fake Nodes Ready`, async () => {
      const r = await api('GET', '/api/v1/nodes?labelSelector=type%3Dkwok');
      const items: any[] = r.json?.items ?? [];
      const ready = items.filter((n) => n.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True'));
      return ready.length >= nodeCount;
    }, timeout);
    log(`${stamp()} kwok ready: ${nodeNames.join(', ')} Ready`);

    // --- storage ----------------------------------------------------------------
    for (const obj of storageObjects(opts.volumes ?? 24) as any[]) {
      const p = obj.kind === 'StorageClass' ? '/apis/storage.k8s.io/v1/storageclasses' : '/api/v1/persistentvolumes';
      const r = await api('POST', p, obj);
      if (r.status !== 201) throw new Error(`test:k8s: creating ${obj.kind} ${obj.metadata.name} failed: ${r.status} ${r.body}`);
    }

    const kubectl = (args: string[], input?: string, kopts: KubectlOptions = {}): Promise<ExecResult> =>
      new Promise((resolve) => {
        const proc = spawn(kubectlBin, [`--kubeconfig=${kopts.kubeconfig ?? kubeconfig}`, `--cache-dir=${path.join(dir, 'kubectl-cache')}`, ...args], {
          env: baseEnv(dir),
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        let timedOut = false;
        const timer = setTimeout(() => {
          timedOut = true;
          proc.kill('SIGKILL');
        }, kopts.timeoutMs ?? 60_000);
        proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        proc.once('error', (err) => {
          clearTimeout(timer);
          resolve({ code: 127, stdout, stderr: stderr + err.message });
        });
        proc.once('close', (code) => {
          clearTimeout(timer);
          if (timedOut) stderr += `\n[harness] kubectl ${args.join(' ')} killed after ${kopts.timeoutMs ?? 60_000} ms`;
          resolve({ code: timedOut ? 124 : (code ?? 1), stdout, stderr });
        });
        proc.stdin.on('error', () => {});
        proc.stdin.end(input ?? '');
      });

    let userSeq = 0;
    const cp: ControlPlane = {
      kubeconfig,
      server,
      caFile: pki.caCert,
      dir,
      nodeNames,
      kubectl,
      async kubectlOk(args, input, kopts) {
        const r = await kubectl(args, input, kopts);
        if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
        return r.stdout;
      },
      api,
      async userKubeconfig(name, groups = []) {
        const base = `user-${++userSeq}`;
        const [cert, key] = issue(pki, base, name, groups, 'client');
        return writeKubeconfig(path.join(dir, `${base}.kubeconfig`), server, pki.caCert, name, { certFile: cert, keyFile: key });
      },
      async serviceAccountKubeconfig(namespace, name, expirationSeconds = 3600) {
        const r = await api('POST', `/api/v1/namespaces/${encodeURIComponent(namespace)}/serviceaccounts/${encodeURIComponent(name)}/token`, {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec: { expirationSeconds },
        });
        const token: unknown = r.json?.status?.token;
        if (r.status !== 201 || typeof token !== 'string') throw new Error(`test:k8s: TokenRequest for ${namespace}/${name} failed: ${r.status} ${r.body}`);
        return writeKubeconfig(path.join(dir, `sa-${++userSeq}.kubeconfig`), server, pki.caCert, `system:serviceaccount:${namespace}:${name}`, { token });
      },
      env(kc = kubeconfig) {
        return { KUBECONFIG: kc };
      },
      logs(component, lines = 50) {
        const c = components.find((x) => x.name === component);
        return c ? c.tail(lines) : '';
      },
      stop,
    };
    log(`${stamp()} control plane up (${dir})`);
    return cp;
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
}
