// Smoke test of the test:k8s harness itself: a real API server behind RBAC,
// controllers that act (StatefulSet, garbage collection), a scheduler that
// binds pods to kwok's fake nodes, and kwok marking those pods Ready.
import { describe, expect, it } from 'vitest';
import { eventually as eventuallyWithin, kubectlJson, useControlPlane } from './harness/use-control-plane.js';

const cp = useControlPlane();

/** The smoke checks wait at most 90 s unless told otherwise. */
const eventually = <T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 90_000) => eventuallyWithin(what, fn, timeoutMs);

const getJson = (args: string[]) => kubectlJson(cp(), args);

const NS = 'smoke';
const MANIFEST = `
apiVersion: v1
kind: Namespace
metadata:
  name: ${NS}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: ${NS}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
  namespace: ${NS}
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: registry.invalid/coffer-smoke:0.0.0
          ports: [{containerPort: 80}]
          readinessProbe:
            httpGet: {path: /ready, port: 80}
  volumeClaimTemplates:
    - metadata: {name: data}
      spec:
        accessModes: [ReadWriteOnce]
        resources: {requests: {storage: 1Gi}}
`;

describe('test:k8s control plane', () => {
  it('serves the pinned Kubernetes API on loopback, with fake Ready nodes', async () => {
    expect(cp().server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const version = await getJson(['version']);
    expect(version.serverVersion.gitVersion).toMatch(/^v1\.32\./);
    expect((await cp().kubectlOk(['get', '--raw', '/readyz'])).trim()).toBe('ok');
    const nodes = await getJson(['get', 'nodes']);
    expect(nodes.items.map((n: any) => n.metadata.name).sort()).toEqual([...cp().nodeNames].sort());
    for (const n of nodes.items) {
      expect(n.status.conditions.find((c: any) => c.type === 'Ready')?.status).toBe('True');
    }
  });

  it('runs a StatefulSet to 3 ready replicas on the fake nodes', async () => {
    await cp().kubectlOk(['apply', '-f', '-'], MANIFEST);
    const sts = await eventually('StatefulSet web to have 3 ready replicas', async () => {
      const s = await getJson(['-n', NS, 'get', 'statefulset', 'web']);
      return s.status?.readyReplicas === 3 ? s : undefined;
    });
    expect(sts.status.replicas).toBe(3);

    const pods = await getJson(['-n', NS, 'get', 'pods', '-l', 'app=web']);
    expect(pods.items.map((p: any) => p.metadata.name).sort()).toEqual(['web-0', 'web-1', 'web-2']);
    for (const p of pods.items) {
      expect(cp().nodeNames).toContain(p.spec.nodeName); // bound by kube-scheduler
      expect(p.status.phase).toBe('Running'); // kwok
      expect(p.status.conditions.find((c: any) => c.type === 'Ready')?.status).toBe('True');
      expect(p.status.podIP).toMatch(/^10\.244\./);
    }
    // volumeClaimTemplates bind to the harness's PV pool.
    const pvcs = await getJson(['-n', NS, 'get', 'pvc']);
    expect(pvcs.items).toHaveLength(3);
    for (const pvc of pvcs.items) expect(pvc.status.phase).toBe('Bound');
  });

  it('recreates a deleted pod (StatefulSet controller) and kwok makes it Ready again', async () => {
    const before = await getJson(['-n', NS, 'get', 'pod', 'web-1']);
    await cp().kubectlOk(['-n', NS, 'delete', 'pod', 'web-1', '--wait=false']);
    const after = await eventually('web-1 to come back Ready with a new uid', async () => {
      const r = await cp().kubectl(['-n', NS, 'get', 'pod', 'web-1', '-o', 'json']);
      if (r.code !== 0) return undefined;
      const p = JSON.parse(r.stdout);
      const ready = p.status?.conditions?.find((c: any) => c.type === 'Ready')?.status === 'True';
      return p.metadata.uid !== before.metadata.uid && ready ? p : undefined;
    });
    expect(after.metadata.uid).not.toBe(before.metadata.uid);
    await eventually('readyReplicas back to 3', async () => (await getJson(['-n', NS, 'get', 'statefulset', 'web'])).status?.readyReplicas === 3);
  });

  it('lets a test flip a pod to NotReady and back (kwok leaves it alone)', async () => {
    const setReady = (status: 'True' | 'False') =>
      cp().kubectlOk(['-n', NS, 'patch', 'pod', 'web-0', '--subresource=status', '-p', JSON.stringify({ status: { conditions: [{ type: 'Ready', status }] } })]);
    await setReady('False');
    await eventually('readyReplicas to drop to 2', async () => (await getJson(['-n', NS, 'get', 'statefulset', 'web'])).status?.readyReplicas === 2);
    await new Promise((r) => setTimeout(r, 2_000));
    const pod = await getJson(['-n', NS, 'get', 'pod', 'web-0']);
    expect(pod.status.conditions.find((c: any) => c.type === 'Ready')?.status).toBe('False');
    await setReady('True');
    await eventually('readyReplicas back to 3', async () => (await getJson(['-n', NS, 'get', 'statefulset', 'web'])).status?.readyReplicas === 3);
  });

  it('enforces RBAC for a non-admin client-cert user', async () => {
    const kc = await cp().userKubeconfig('jane', ['coffer-test-users']);
    const denied = await cp().kubectl(['get', 'secrets', '--all-namespaces'], undefined, { kubeconfig: kc });
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/forbidden/i);
    expect(denied.stderr).toContain('User "jane"');

    // A namespaced grant (to the group) opens exactly that namespace.
    await cp().kubectlOk(['-n', NS, 'create', 'role', 'secret-reader', '--verb=list,get', '--resource=secrets']);
    await cp().kubectlOk(['-n', NS, 'create', 'rolebinding', 'users-read-secrets', '--role=secret-reader', '--group=coffer-test-users']);
    await eventually('the RoleBinding to take effect', async () => (await cp().kubectl(['-n', NS, 'get', 'secrets'], undefined, { kubeconfig: kc })).code === 0, 30_000);
    expect((await cp().kubectl(['get', 'secrets', '--all-namespaces'], undefined, { kubeconfig: kc })).code).not.toBe(0);
    expect((await cp().kubectl(['-n', 'kube-system', 'get', 'secrets'], undefined, { kubeconfig: kc })).code).not.toBe(0);
  });

  it('issues ServiceAccount token kubeconfigs through the TokenRequest API', async () => {
    await cp().kubectlOk(['-n', NS, 'create', 'serviceaccount', 'robot']);
    const kc = await cp().serviceAccountKubeconfig(NS, 'robot');
    const who = JSON.parse(await cp().kubectlOk(['auth', 'whoami', '-o', 'json'], undefined, { kubeconfig: kc }));
    expect(who.status.userInfo.username).toBe(`system:serviceaccount:${NS}:robot`);
    const denied = await cp().kubectl(['get', 'secrets', '--all-namespaces'], undefined, { kubeconfig: kc });
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/forbidden/i);
  });
});
