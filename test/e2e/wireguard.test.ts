// WireGuard on real pods: a VaultCluster with spec.wireguard forms over the
// overlay between real wireguard-go sidecars; Raft and management listen on
// overlay addresses only; a capture in each kind node's network namespace
// sees nothing but WireGuard's UDP between the vault pods while they
// replicate writes. Its read allowlist names one client pod: that pod reads
// values through the client Service, another pod is refused.
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { apply, docker, ensureNamespace, getJson, kubectl, run, waitFor } from './harness/kube.js';
import { api, apiInPod, bootstrapToken, createVaultCluster, deleteVaultCluster, IMAGE, podNames, waitReady } from './harness/vault.js';

const NS = 'coffer-e2e-wg';
const VC = 'wg';
const WG_PORT = 51820;
const PODS = podNames(VC);
const overlayIp = (ordinal: number) => `10.77.0.${ordinal + 1}`;

/** Listening TCP sockets (address:port) of a pod, read from /proc/net/tcp inside its vault container. */
async function listeners(pod: string): Promise<string[]> {
  const out = await kubectl(['exec', '-n', NS, pod, '-c', 'vault', '--', 'node', '-e', `
    const rows = require('fs').readFileSync('/proc/net/tcp', 'utf8').trim().split('\\n').slice(1);
    const ip = (h) => h.match(/../g).reverse().map((b) => parseInt(b, 16)).join('.');
    console.log(JSON.stringify(rows.map((r) => r.trim().split(/\\s+/)).filter((f) => f[3] === '0A')
      .map((f) => { const [a, p] = f[1].split(':'); return ip(a) + ':' + parseInt(p, 16); })));`]);
  return JSON.parse(out) as string[];
}

/** Runs tcpdump in a kind node's network namespace for `seconds`; returns the packet lines. */
async function captureOnNode(node: string, filter: string, seconds: number): Promise<string[]> {
  const pid = (await docker(['inspect', '-f', '{{.State.Pid}}', node])).stdout.trim();
  expect(pid).toMatch(/^\d+$/);
  return new Promise((resolve, reject) => {
    const p = spawn('timeout', [String(seconds), 'nsenter', '-t', pid, '-n', 'tcpdump', '-i', 'any', '-nn', '-l', '-q', filter]);
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', reject);
    p.on('close', () => (/listening on/.test(err) ? resolve(out.split('\n').filter(Boolean)) : reject(new Error(`tcpdump: ${err}`))));
  });
}

function clientPod(name: string): object {
  return {
    apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: NS, labels: { app: 'coffer-e2e-client' } },
    spec: {
      automountServiceAccountToken: false,
      securityContext: { runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [{
        name: 'client', image: IMAGE, imagePullPolicy: 'Never', command: ['node', '-e', 'setInterval(() => {}, 1 << 30)'],
        securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
      }],
    },
  };
}

/** A value read from a client pod through the VaultCluster's client Service, as an application would. */
async function readFrom(pod: string, name: string): Promise<Record<string, unknown>> {
  const r = await run('kubectl', ['exec', '-n', NS, pod, '--', 'node', '-e', `
    fetch('http://${VC}-client.${NS}.svc:8200/v1/secrets/${name}').then(async (res) => {
      const b = await res.json();
      console.log(JSON.stringify(res.ok ? { status: res.status, value: b.value } : { status: res.status, code: b.error && b.error.code }));
    }, (e) => console.log(JSON.stringify({ status: 0, error: String(e.message) })));`]);
  if (r.code !== 0) throw new Error(`exec in ${pod}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

describe('WireGuard between real pods', () => {
  afterAll(async () => {
    await deleteVaultCluster(NS, VC).catch(() => undefined);
    await kubectl(['delete', 'namespace', NS, '--wait=false']).catch(() => undefined);
  });

  it('forms the cluster over the overlay between wireguard-go sidecars', async () => {
    await ensureNamespace(NS);
    for (const name of ['reader', 'outsider']) await apply(clientPod(name));
    await kubectl(['wait', '-n', NS, '--for=condition=Ready', 'pod/reader', 'pod/outsider', '--timeout=300s']);
    const readerIp = (await getJson(['get', 'pod', 'reader', '-n', NS])).status.podIP;
    await createVaultCluster(NS, VC, { wireguard: { enabled: true, managementOnOverlay: true }, readAllowlist: ['127.0.0.1/32', `${readerIp}/32`] });
    const vc = await waitReady(NS, VC);
    expect(vc.status.readyReplicas).toBe(3);
    for (const pod of (await getJson(['get', 'pods', '-n', NS, '-l', `app.kubernetes.io/instance=${VC}`])).items) {
      // The agent is a native sidecar: an init container that keeps running (restartPolicy Always).
      expect(pod.spec.containers.map((c: any) => c.name)).toEqual(['vault']);
      expect(pod.spec.initContainers.map((c: any) => [c.name, c.restartPolicy])).toEqual([['wireguard', 'Always']]);
      for (const s of [...pod.status.initContainerStatuses, ...pod.status.containerStatuses]) {
        expect({ container: `${pod.metadata.name}/${s.name}`, ready: s.ready, running: !!s.state.running }).toEqual({ container: `${pod.metadata.name}/${s.name}`, ready: true, running: true });
      }
    }
    // Administrable: the bootstrap token works, even when a peer's overlay endpoint resolved after the first
    // election (the leader proposes it again until every voter has been heard from).
    const token = await bootstrapToken(NS, VC);
    await waitFor('the bootstrap token accepted on the overlay management listener', async () =>
      (await api(NS, PODS[0]!, { method: 'GET', path: '/v1/tokens', token, base: `http://${overlayIp(0)}:8202` })).status === 200, 60_000, 1_000);
  });

  it('listens for Raft and management on overlay addresses only', async () => {
    for (const [i, pod] of PODS.entries()) {
      const l = await listeners(pod);
      const raft = l.filter((a) => a.endsWith(':8201'));
      const mgmt = l.filter((a) => a.endsWith(':8202'));
      expect(raft, pod).toEqual([`${overlayIp(i)}:8201`]);
      expect(mgmt, pod).toEqual([`${overlayIp(i)}:8202`]);
    }
    // Management is not answered on the API port.
    const token = await bootstrapToken(NS, VC);
    expect((await api(NS, PODS[0]!, { method: 'GET', path: '/v1/tokens', token })).status).toBe(404);
    expect((await api(NS, PODS[0]!, { method: 'GET', path: '/v1/tokens', token, base: `http://${overlayIp(0)}:8202` })).status).toBe(200);
  });

  it('sees TCP between two vault pods when there is some (the capture below can fail)', async () => {
    const pods = (await getJson(['get', 'pods', '-n', NS, '-l', `app.kubernetes.io/instance=${VC}`])).items;
    const ip = (name: string) => pods.find((p: any) => p.metadata.name === name).status.podIP as string;
    const node = pods.find((p: any) => p.metadata.name === PODS[0]).spec.nodeName as string;
    const capture = captureOnNode(node, `tcp port 8200 and host ${ip(PODS[0]!)} and host ${ip(PODS[1]!)}`, 12);
    await new Promise((r) => setTimeout(r, 3000));
    // A health check from one vault pod to another's API port: plain TCP between pod addresses.
    await api(NS, PODS[0]!, { method: 'GET', path: '/v1/health', base: `http://${ip(PODS[1]!)}:8200` });
    const lines = await capture;
    expect(lines.some((l) => /\.8200[ :]/.test(l) && / tcp /i.test(l)), lines.join('\n')).toBe(true);
  });

  it('carries nothing but WireGuard UDP between the vault pods', async () => {
    const token = await bootstrapToken(NS, VC);
    const pods = (await getJson(['get', 'pods', '-n', NS, '-l', `app.kubernetes.io/instance=${VC}`])).items;
    const ips: string[] = pods.map((p: any) => p.status.podIP);
    const nodes = [...new Set<string>(pods.map((p: any) => p.spec.nodeName))];
    const pairs = ips.flatMap((a, i) => ips.slice(i + 1).map((b) => `(host ${a} and host ${b})`));
    const filter = pairs.join(' or ');
    // Writes through every pod's management listener, so followers forward and the leader replicates.
    const load = (async () => {
      await new Promise((r) => setTimeout(r, 2000));
      for (let round = 0; round < 5; round++) {
        for (const [i, pod] of PODS.entries()) {
          const r = await apiInPod(NS, pod, [{ method: 'PUT', path: `/v1/secrets/wg/${round}-${i}`, token, body: { value: `x${round}` }, base: `http://${overlayIp(i)}:8202` }]);
          expect(r[0]!.status, `${pod} PUT`).toBeLessThan(300);
        }
      }
    })();
    const captures = await Promise.all(nodes.map((n) => captureOnNode(n, filter, 25)));
    await load;
    const lines = captures.flat();
    const wireguard = new RegExp(`\\.${WG_PORT} > [0-9.]+\\.${WG_PORT}: UDP`);
    expect(lines.length, 'packets between vault pods').toBeGreaterThan(10);
    expect(lines.filter((l) => !wireguard.test(l))).toEqual([]);
  });

  it('serves values through the client Service to the allowlisted pod only, seeing its real address', async () => {
    const got = await readFrom('reader', 'wg/4-0');
    expect(got).toEqual({ status: 200, value: 'x4' });
    const refused = await readFrom('outsider', 'wg/4-0');
    expect(refused).toEqual({ status: 403, code: 'ip_not_allowed' });
  });
});
