// The operator as the k8s tier runs it: in-process, under a client-cert
// identity bound to exactly the rules in operator/rbac.ts (not cluster-admin),
// with the CRD applied and each pod's /v1/health served by a local stub.
//
//   const cp = useControlPlane();
//   const ops = useOperator(cp, { namespace: 'vaults', release: (pod) => '1.0.0' });
//   it('…', async () => { const op = ops.start('op-a'); …; await ops.stop(op); });
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect } from 'vitest';
import { loadKubeConfig, startOperator, type OperatorConfig, type RunningOperator } from '../../../operator/operator.js';
import { clusterRoleManifest, leaderElectionRoleManifest } from '../../../operator/rbac.js';
import type { ControlPlane } from './control-plane.js';

export const OPERATOR_NAMESPACE = 'coffer-system';

export interface OperatorFixtureOptions {
  /** Namespace the test's VaultClusters live in (created here). */
  namespace: string;
  /** The release a pod's stubbed /v1/health reports; null answers 503 (unreachable). */
  release: (pod: string) => string | null;
  /** More /v1/health fields for a pod (e.g. `leader_id`, `voters`, `learners`), merged over the defaults. */
  health?: (pod: string) => Record<string, unknown> | undefined;
}

export interface OperatorFixture {
  /** Starts an operator replica with this identity (leader election included). */
  start(identity: string): RunningOperator;
  stop(op: RunningOperator): Promise<void>;
  /** The operator's own kubeconfig (its RBAC only). */
  kubeconfig(): string;
}

/** Call at module top level, after useControlPlane(): registers the beforeAll/afterAll that set it up. */
export function useOperator(cp: () => ControlPlane, opts: OperatorFixtureOptions): OperatorFixture {
  const running: RunningOperator[] = [];
  let stub: http.Server | undefined;
  let stubPort = 0;
  let kubeconfig = '';

  beforeAll(async () => {
    stub = http.createServer((req, res) => {
      const m = /^\/health\/([^/]+)\/([^/]+)$/.exec(req.url ?? '');
      const version = m ? opts.release(m[2]!) : null;
      if (!version) {
        res.writeHead(503).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'ok', node_id: m![2], role: 'follower', leader_id: 'vault-0', version, capabilities: [], ...opts.health?.(m![2]!) }));
    });
    await new Promise<void>((r) => stub!.listen(0, '127.0.0.1', r));
    stubPort = (stub.address() as AddressInfo).port;

    await cp().kubectlOk(['apply', '--server-side', '-f', 'crds/vaultclusters.coffer.dev.yaml']);
    await cp().kubectlOk(['wait', '--for=condition=Established', 'crd/vaultclusters.coffer.dev', '--timeout=60s']);
    const subject = { kind: 'ServiceAccount', name: 'coffer-operator', namespace: OPERATOR_NAMESPACE };
    const rbac = [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: OPERATOR_NAMESPACE } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: opts.namespace } },
      clusterRoleManifest('coffer-operator'),
      {
        apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'coffer-operator' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'coffer-operator' },
        subjects: [subject],
      },
      leaderElectionRoleManifest('coffer-operator-leader-election', OPERATOR_NAMESPACE),
      {
        apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name: 'coffer-operator-leader-election', namespace: OPERATOR_NAMESPACE },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'coffer-operator-leader-election' },
        subjects: [subject],
      },
    ];
    await cp().kubectlOk(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: rbac }));
    kubeconfig = await cp().userKubeconfig(`system:serviceaccount:${OPERATOR_NAMESPACE}:coffer-operator`,
      ['system:serviceaccounts', `system:serviceaccounts:${OPERATOR_NAMESPACE}`]);
    // Not cluster-admin: what the rules leave out is refused (it may evict pods, never delete them or Secrets).
    for (const kind of ['secret', 'pod']) {
      const denied = await cp().kubectl(['-n', opts.namespace, 'delete', kind, 'anything'], undefined, { kubeconfig });
      expect(denied.stderr).toMatch(/forbidden/i);
    }
  });

  afterAll(async () => {
    for (const op of [...running]) await op.stop().catch(() => {});
    await new Promise((r) => (stub ? stub.close(r) : r(undefined)));
  });

  return {
    start(identity) {
      const config: OperatorConfig = {
        leaderElectionNamespace: OPERATOR_NAMESPACE,
        leaderElectionName: 'coffer-operator',
        identity,
        resyncPeriodMs: 10_000,
        workers: 2,
        podHealthUrl: `http://127.0.0.1:${stubPort}/health/{namespace}/{pod}`,
        leaseDurationMs: 6_000,
        renewDeadlineMs: 4_000,
        retryPeriodMs: 1_000,
      };
      const op = startOperator(loadKubeConfig(kubeconfig), config);
      running.push(op);
      return op;
    },
    async stop(op) {
      await op.stop();
      running.splice(running.indexOf(op), 1);
    },
    kubeconfig: () => kubeconfig,
  };
}
