// The running sync controller: leader election around the controller, one
// Coffer client per address, and the metrics/health listener. Used by
// `coffer sync run` and, in-process, by the benchmark.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { KubeConfig } from '@kubernetes/client-node';
import { PROMETHEUS_CONTENT_TYPE } from '../common/prometheus.js';
import { LeaderElector } from '../operator/leader/election.js';
import { KubeLeaseLock } from '../operator/leader/lease-lock.js';
import { KubeEventRecorder } from '../operator/reconcile/events.js';
import { silentLogger, type Logger } from '../operator/reconcile/logger.js';
import { NotLeaderError } from '../operator/reconcile/pass.js';
import { API_VERSION, KIND } from './api/schema.js';
import { SyncController } from './controller.js';
import { KubeSyncClient, type SyncKube } from './kube.js';
import { createSyncMetrics, type SyncMetrics } from './metrics.js';
import { SyncReconciler } from './reconcile/reconciler.js';
import { SYNC_LEASE_NAME } from './rbac.js';
import { CofferClient } from './vault/client.js';
import { Watchers } from './watch/watchers.js';

export interface SyncConfig {
  namespace?: string;
  leaseNamespace: string;
  leaseName: string;
  identity: string;
  workers: number;
  /** host:port of the metrics/health listener; undefined = none. */
  metricsAddr?: { host: string; port: number };
  /** Extra CA for https Coffer addresses. */
  ca?: Buffer;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  /** How long one blocking query waits (default 300 s, Coffer's maximum). */
  watchWaitMs: number;
}

export const DEFAULT_SYNC_CONFIG = {
  leaseName: SYNC_LEASE_NAME,
  workers: 4,
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
  watchWaitMs: 300_000,
} as const;

export interface RunningSync {
  readonly metrics: SyncMetrics;
  isLeader(): boolean;
  /** The metrics listener's port (0 when none). */
  metricsPort(): number;
  stop(): Promise<void>;
}

/** Refuses writes once the Lease is lost (the elector's renew deadline passed). */
function guarded(kube: SyncKube, isLeader: () => boolean): SyncKube {
  const guard = () => {
    if (!isLeader()) throw new NotLeaderError();
  };
  return {
    ...kube,
    getSecret: kube.getSecret.bind(kube),
    getVaultCluster: kube.getVaultCluster.bind(kube),
    templateAnnotation: kube.templateAnnotation.bind(kube),
    createEvent: kube.createEvent.bind(kube),
    applySecret: async (s) => (guard(), kube.applySecret(s)),
    applyStatus: async (ns, n, st) => (guard(), kube.applyStatus(ns, n, st)),
    stampTemplate: async (ns, t, k, v) => (guard(), kube.stampTemplate(ns, t, k, v)),
  };
}

export async function startSync(kc: KubeConfig, config: SyncConfig, logger: Logger = silentLogger): Promise<RunningSync> {
  const clients = new Map<string, CofferClient>();
  const vault = (address: string) => {
    let c = clients.get(address);
    if (!c) {
      c = new CofferClient(address, config.ca ? { ca: config.ca } : {});
      clients.set(address, c);
    }
    return c;
  };
  let controller: SyncController | undefined;
  let synced = false;
  // eslint-disable-next-line prefer-const
  let elector: LeaderElector;
  const kube = guarded(new KubeSyncClient(kc), () => elector.isLeader());
  const watchers = new Watchers({ waitMs: config.watchWaitMs, minBackoffMs: 1_000, maxBackoffMs: 30_000, onChange: (key) => controller?.queue.add(key) });
  const metrics = createSyncMetrics({
    watchedNames: () => watchers.watchedNames(),
    waitingQueries: () => watchers.waitingQueries(),
    cofferSecrets: () => controller?.size() ?? 0,
    isLeader: () => elector.isLeader(),
  });
  const events = new KubeEventRecorder(kube, { identity: config.identity, logger, involved: { apiVersion: API_VERSION, kind: KIND, component: 'coffer-sync' } });
  const reconciler = new SyncReconciler({ kube, vault, watchers, metrics, events, logger, now: () => new Date() });

  let transition: Promise<void> = Promise.resolve();
  elector = new LeaderElector({
    lock: new KubeLeaseLock(kc, config.leaseNamespace, config.leaseName),
    identity: config.identity,
    leaseDurationMs: config.leaseDurationMs,
    renewDeadlineMs: config.renewDeadlineMs,
    retryPeriodMs: config.retryPeriodMs,
    logger,
    onNewLeader: (id) => logger.info({ leader: id }, 'sync controller leader'),
    onStartedLeading: () => {
      transition = transition.then(async () => {
        controller = new SyncController({
          kubeConfig: kc, reconciler, workers: config.workers, logger,
          ...(config.namespace ? { namespace: config.namespace } : {}),
          onSynced: () => (synced = true),
        });
        await controller.start();
      });
    },
    onStoppedLeading: async () => {
      transition = transition.then(async () => {
        watchers.stopAll();
        await controller?.stop();
        controller = undefined;
        synced = false;
      });
      await transition;
    },
  });

  let server: http.Server | undefined;
  if (config.metricsAddr) {
    server = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET') return void res.writeHead(405).end();
      if (path === '/metrics') return void res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE }).end(metrics.registry.render());
      if (path === '/healthz') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      // Ready: a standby is ready to take over; the leader once its caches are filled.
      if (path === '/readyz') {
        const ready = !elector.isLeader() || synced;
        return void res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ok\n' : 'syncing caches\n');
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(config.metricsAddr!.port, config.metricsAddr!.host, () => resolve());
    });
  }
  elector.start();

  return {
    metrics,
    isLeader: () => elector.isLeader(),
    metricsPort: () => (server ? (server.address() as AddressInfo).port : 0),
    async stop() {
      await elector.stop();
      await transition;
      watchers.stopAll();
      await controller?.stop();
      for (const c of clients.values()) c.close();
      await new Promise((r) => (server ? server.close(r) : r(undefined)));
    },
  };
}
