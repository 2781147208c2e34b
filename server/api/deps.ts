// Everything the API needs, injected so tests can build it over real parts.
import type { FastifyBaseLogger } from 'fastify';
import type { AuditLog } from '../audit/audit-log.js';
import type { ServerConfig } from '../config/config.js';
import type { CofferMetrics } from '../metrics/coffer-metrics.js';
import type { Replicator } from '../raft/replicator.js';
import type { SecretService } from '../secrets/service.js';
import type { StateReader } from '../store/queries.js';
import type { WatchRegistry } from '../watch/registry.js';
import type { Authorizer } from './authz.js';

export interface ApiDeps {
  config: ServerConfig;
  reader: StateReader;
  replicator: Replicator;
  secrets: SecretService;
  authz: Authorizer;
  audit: Pick<AuditLog, 'record' | 'submit' | 'query' | 'probe' | 'verify' | 'problem'>;
  metrics: CofferMetrics;
  logger: FastifyBaseLogger;
  /** Release string reported by /v1/health. */
  release: string;
  capabilities: string[];
  now: () => Date;
  /** The re-wrap worker (status everywhere; passes run on the leader). */
  rewrap: {
    status(): import('../rewrap/worker.js').RewrapStatus;
    /** Starts a pass on the leader (forwarded when this node follows); resolves with the leader's id. */
    forceOnLeader(): Promise<string | null>;
  };
  /** Writes a consistent image of state.db to a file (snapshot save). */
  writeImage: (file: string) => void;
  /** Blocking metadata queries (GET /v1/watch); without it the route answers 404. */
  watch?: WatchRegistry;
}
