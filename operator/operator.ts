// The running operator: leader election around the controller. Used by
// `coffer operator` and, in-process, by tests.
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';
import { LeaderElector } from './leader/election.js';
import { KubeLeaseLock } from './leader/lease-lock.js';
import { DEFAULT_LEASE_NAME } from './rbac.js';
import { Controller } from './reconcile/controller.js';
import { KubeEventRecorder } from './reconcile/events.js';
import { httpHealthProbe, DEFAULT_HEALTH_URL } from './reconcile/health.js';
import { KubeClusterClient } from './reconcile/kube-client.js';
import { silentLogger, type Logger } from './reconcile/logger.js';
import { NotLeaderError } from './reconcile/pass.js';
import { Reconciler } from './reconcile/reconciler.js';

export interface OperatorConfig {
  /** Watch one namespace; undefined = all. */
  namespace?: string;
  leaderElectionNamespace: string;
  leaderElectionName: string;
  identity: string;
  resyncPeriodMs: number;
  workers: number;
  podHealthUrl: string;
  clusterDomain?: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

export function defaultIdentity(): string {
  return process.env.POD_NAME || `${os.hostname()}_${randomBytes(4).toString('hex')}`;
}

export const DEFAULT_CONFIG: Omit<OperatorConfig, 'leaderElectionNamespace' | 'identity'> = {
  leaderElectionName: DEFAULT_LEASE_NAME,
  resyncPeriodMs: 300_000,
  workers: 2,
  podHealthUrl: DEFAULT_HEALTH_URL,
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 5_000,
};

export interface RunningOperator {
  readonly elector: LeaderElector;
  isLeader(): boolean;
  /** Stops the controller and releases the Lease. */
  stop(): Promise<void>;
}

export function startOperator(kc: KubeConfig, config: OperatorConfig, logger: Logger = silentLogger): RunningOperator {
  const client = new KubeClusterClient(kc);
  let controller: Controller | undefined;
  let transition: Promise<void> = Promise.resolve();
  // eslint-disable-next-line prefer-const
  let elector: LeaderElector;
  const guard = () => {
    if (!elector.isLeader()) throw new NotLeaderError();
  };
  const reconciler = new Reconciler({
    client,
    health: httpHealthProbe({ urlTemplate: config.podHealthUrl }),
    events: new KubeEventRecorder(client, { identity: config.identity, logger }),
    logger,
    guard,
    ...(config.clusterDomain ? { clusterDomain: config.clusterDomain } : {}),
  });
  elector = new LeaderElector({
    lock: new KubeLeaseLock(kc, config.leaderElectionNamespace, config.leaderElectionName),
    identity: config.identity,
    leaseDurationMs: config.leaseDurationMs,
    renewDeadlineMs: config.renewDeadlineMs,
    retryPeriodMs: config.retryPeriodMs,
    logger,
    onNewLeader: (id) => logger.info({ leader: id }, 'operator leader'),
    onStartedLeading: () => {
      transition = transition.then(async () => {
        controller = new Controller({
          kubeConfig: kc,
          reconciler,
          ...(config.namespace ? { namespace: config.namespace } : {}),
          resyncPeriodMs: config.resyncPeriodMs,
          workers: config.workers,
          logger,
        });
        await controller.start();
      });
    },
    onStoppedLeading: async () => {
      // The guard already refuses writes; stop watching and working.
      transition = transition.then(async () => {
        await controller?.stop();
        controller = undefined;
      });
      await transition;
    },
  });
  elector.start();
  return {
    elector,
    isLeader: () => elector.isLeader(),
    async stop() {
      await elector.stop();
      await transition;
      await controller?.stop();
    },
  };
}

/** KUBECONFIG / ~/.kube/config / in-cluster, like kubectl. */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  return kc;
}
