// Assembles one vault node from its configuration: state machine, commit
// seam, KMS, audit, metrics and the API listener. Returned handle stops it.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { buildApi } from './api/app.js';
import { Authorizer } from './api/authz.js';
import { AuditLog } from './audit/audit-log.js';
import { tokenSha256 } from './auth/tokens.js';
import type { ServerConfig } from './config/config.js';
import { XCHACHA_IMPL } from './crypto/xchacha.js';
import { createKms, type KmsProvider, EPHEMERAL_MASTER_KEY_WARNING, parseLocalMasterKey } from './kms/index.js';
import { createLogger, type Logger } from './log/logger.js';
import { auditMetricsHooks, createCofferMetrics } from './metrics/coffer-metrics.js';
import { meteredKms } from './metrics/metered-kms.js';
import { registerStorageMetrics } from './metrics/storage-metrics.js';
import { ClusterAuth, KEY_BYTES, REFUSAL_REASONS } from './raft/cluster-auth.js';
import { buildRaftListener } from './raft/listener.js';
import { RaftReplicator } from './raft/driver/raft-replicator.js';
import { NoLeaderError, type Replicator } from './raft/replicator.js';
import { RAFT_PATHS } from './raft/transport.js';
import { RewrapWorker } from './rewrap/worker.js';
import { createVersionSealer } from './sealing/version-sealer.js';
import { SecretService } from './secrets/service.js';
import { capabilities, tokenBootstrap } from './store/commands.js';
import { StateReader } from './store/queries.js';
import { BOOTSTRAP_TOKEN_NAME, StateMachine } from './store/state-machine.js';
import { RELEASE } from './release.js';
import { FreeSpaceWatcher } from './storage/free-space.js';
import { ensurePrivateFile, prepareDataDir } from './storage/private-files.js';
import { WriteGuard } from './storage/write-guard.js';
import type { FastifyInstance } from 'fastify';

export interface RunningNode {
  config: ServerConfig;
  api: FastifyInstance;
  /** Bound API address (useful when the configured port was 0). */
  apiUrl: string;
  /** Management listener (VAULT_MGMT_ADDR), when separate. */
  mgmtUrl: string | null;
  logger: Logger;
  /** For tests: the unmetered KMS provider (LocalKms.rotate), the re-wrap worker and the Raft driver (to propose as a member would). */
  internals: { kms: KmsProvider; rewrap: RewrapWorker; replicator: RaftReplicator };
  close(): Promise<void>;
}

export interface NodeOptions {
  /**
   * Called once when the node stops on a storage fault it cannot recover
   * from in place (a failed fsync, a state.db I/O error; a full volume is
   * waited out instead): `coffer server` logs and exits there so it is
   * restarted, before the writes that were pending (outcome unknown) could
   * be answered. Without it the node stays up, reports `stopped` and fails
   * them with 503.
   */
  onFatal?: (err: Error) => void;
}

/**
 * Starts a node. If any step fails (a busy port, an unreadable TLS file, a
 * bad key), what was already started is closed again before the error is
 * thrown, so a failed start leaves nothing running behind it.
 */
export async function startNode(config: ServerConfig, logger: Logger = createLogger(config.nodeId), opts: NodeOptions = {}): Promise<RunningNode> {
  const undo: Array<() => unknown> = [];
  try {
    return await assemble(config, logger, opts, undo);
  } catch (err) {
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch {
        // keep closing the rest; the start error is the one worth reporting
      }
    }
    throw err;
  }
}

async function assemble(config: ServerConfig, logger: Logger, opts: NodeOptions, undo: Array<() => unknown>): Promise<RunningNode> {
  prepareDataDir(config.dataDir, logger);
  const metrics = createCofferMetrics();

  const masterKey = config.kmsMode === 'local' && config.localMasterKeyB64 ? parseLocalMasterKey(config.localMasterKeyB64) : undefined;
  const kms = createKms({
    mode: config.kmsMode,
    ...(config.kmsKeyId ? { keyId: config.kmsKeyId } : {}),
    ...(masterKey ? { localMasterKey: masterKey } : {}),
    dekCacheTtlSecs: config.dekCacheTtlSecs,
  }, { wrap: (inner) => meteredKms(inner, metrics) });
  masterKey?.fill(0);
  undo.push(() => kms.close());
  if (kms.ephemeralMasterKey) logger.warn(`!!! ${EPHEMERAL_MASTER_KEY_WARNING} !!!`);
  const { provider, cache } = kms;
  const sealer = createVersionSealer(kms);

  ensurePrivateFile(path.join(config.dataDir, 'state.db')); // SQLite would create it 0644
  const sm = new StateMachine(config.dataDir);
  // Every node applies the same rejection; one log line per node says which check it failed.
  sm.onRejected = (kind, message) => {
    metrics.applyRejected.inc({ kind });
    logger.warn({ kind, problem: message }, 'committed command applied as a rejection');
  };
  undo.push(() => sm.close());
  const reader = new StateReader(sm);
  // VAULT_MIN_FREE_BYTES: refused before proposing (507), re-measured at most every 250 ms as writes come.
  const freeSpace = new FreeSpaceWatcher({ dir: config.dataDir, minFreeBytes: config.minFreeBytes });
  const storageMetrics = registerStorageMetrics(metrics.registry, freeSpace, () => writeGuard, path.join(config.dataDir, 'audit.db'));
  const writeGuard = new WriteGuard(freeSpace, { onRefused: (reason) => storageMetrics.writesRefused.inc({ reason }) });
  const raftListenAddr = { ...config.raftAddr };
  let bootstrapping: Promise<void> = Promise.resolve();
  const clusterAuth = raftAuth(config, logger);
  undo.push(() => clusterAuth.close());
  const replicator = new RaftReplicator({
    nodeId: config.nodeId,
    dataDir: config.dataDir,
    initialPeers: config.peers.map((p) => ({ id: p.id, address: `${p.addr.host}:${p.addr.port}` })),
    sm,
    reader,
    capabilities: capabilities(),
    auth: clusterAuth,
    logger,
    ...tuning(),
    writeGuard,
    ...(opts.onFatal ? { onFatal: opts.onFatal } : {}),
    onLeader: () => {
      if (config.bootstrapToken) bootstrapping = bootstrap(config.bootstrapToken, replicator, reader, logger, now);
    },
  });
  undo.push(() => replicator.close());
  for (const reason of REFUSAL_REASONS) metrics.raftAuthRefused.inc({ reason }, 0);
  for (const kind of ['invalid', 'fault'] as const) metrics.applyRejected.inc({ kind }, 0);
  const rewrap = new RewrapWorker({
    enabled: config.rewrapEnabled,
    pollSecs: config.rewrapPollSecs,
    maxPerSec: config.rewrapMaxPerSec,
    kms: provider,
    replicator,
    reader,
    logger,
  });
  const rewrapApi = {
    status: () => rewrap.status(),
    async forceOnLeader(): Promise<string | null> {
      if (replicator.isLeader()) {
        rewrap.force();
        return config.nodeId;
      }
      const leader = replicator.status().leader_id;
      if (!leader) throw new NoLeaderError('no leader to run the pass');
      try {
        await replicator.transport.forward(leader, RAFT_PATHS.rewrap, {});
      } catch {
        throw new NoLeaderError('the leader could not be reached');
      }
      return leader;
    },
  };
  const raftListener = await buildRaftListener(
    replicator,
    capabilities(),
    logger,
    { forceRewrap: () => rewrap.force(), onAuthRefused: (reason) => metrics.raftAuthRefused.inc({ reason }) },
    clusterAuth,
  );
  undo.push(() => raftListener.close());
  await listenOn(raftListener, raftListenAddr, 'Raft listener (VAULT_RAFT_ADDR)');
  const audit = new AuditLog(config.dataDir, {
    ...auditMetricsHooks(metrics),
    // Records of committed writes waiting for space: refuse writes and report not ready until they are durable.
    onHeld: (held, noSpace) => (held && noSpace ? writeGuard.waitForSpace('audit', 'writing audit records') : writeGuard.resumed('audit')),
  });
  undo.push(() => audit.close());
  const now = () => new Date();
  const authz = new Authorizer(reader, config.readAllowlist, now);
  const secrets = new SecretService(reader, replicator, sealer, now);

  // Cache counters live in the cache; fold their growth into the metric counters at scrape time.
  let seen = { hits: 0, misses: 0 };
  metrics.registry.gauge({
    name: 'coffer_dek_cache_entries',
    help: 'Unwrapped DEKs held in memory.',
    collect: () => {
      const s = cache.stats();
      metrics.dekCacheHits.inc(s.hits - seen.hits);
      metrics.dekCacheMisses.inc(s.misses - seen.misses);
      seen = { hits: s.hits, misses: s.misses };
      return s.size;
    },
  });

  const https =
    config.tlsCertFile && config.tlsKeyFile
      ? { cert: fs.readFileSync(config.tlsCertFile), key: fs.readFileSync(config.tlsKeyFile) }
      : undefined;
  const apiDeps = { config, reader, replicator, secrets, authz, audit, metrics, logger, release: RELEASE, capabilities: capabilities(), now, rewrap: rewrapApi, writeImage: (file: string) => sm.writeImage(file) };
  // With VAULT_MGMT_ADDR, the API address serves value reads only and management gets its own listener.
  const api = await buildApi(apiDeps, https, config.mgmtAddr ? 'reads' : 'all');
  undo.push(() => api.close());
  const mgmt = config.mgmtAddr ? await buildApi(apiDeps, https, 'all') : null;
  if (mgmt) undo.push(() => mgmt.close());

  // A single voter elects itself at once; wait for that so the bootstrap token works as soon as we answer.
  if (config.peers.length === 1) {
    await waitUntil(() => replicator.status().ready, 5_000);
    await bootstrapping;
  }

  await listenOn(api, config.apiAddr, 'API listener (VAULT_API_ADDR)');
  if (mgmt && config.mgmtAddr) await listenOn(mgmt, config.mgmtAddr, 'management listener (VAULT_MGMT_ADDR)');
  const mgmtUrl = mgmt ? listenerUrl(mgmt, config.mgmtAddr!, Boolean(https)) : null;
  const apiUrl = listenerUrl(api, config.apiAddr, Boolean(https));
  rewrap.start();
  logger.info({ api: apiUrl, ...(mgmtUrl ? { mgmt: mgmtUrl } : {}), data_dir: path.resolve(config.dataDir), kms_mode: config.kmsMode, cipher: XCHACHA_IMPL, release: RELEASE }, 'coffer node ready');

  return {
    config,
    api,
    apiUrl,
    mgmtUrl,
    logger,
    internals: { kms: kms.raw, rewrap, replicator },
    async close() {
      // Hand leadership over first so the cluster does not wait out an election timeout.
      if (replicator.isLeader() && replicator.status().peers.length > 1) await replicator.transferLeadership();
      await rewrap.stop();
      await api.close();
      await mgmt?.close();
      await raftListener.close();
      await replicator.close();
      clusterAuth.close();
      await audit.close();
      sm.close();
      kms.close();
    },
  };
}

/**
 * Signs and checks Raft traffic with VAULT_CLUSTER_KEY (and accepts
 * VAULT_CLUSTER_KEY_PREVIOUS). A lone node without one gets a random key for
 * this run: its Raft listener then refuses everyone, which is right for a
 * node nobody may join (config refuses a missing key when VAULT_PEERS lists others).
 */
function raftAuth(config: ServerConfig, logger: Logger): ClusterAuth {
  if (config.clusterKey) return new ClusterAuth({ nodeId: config.nodeId, key: config.clusterKey, previous: config.clusterKeyPrevious });
  const ephemeral = randomBytes(KEY_BYTES);
  const auth = new ClusterAuth({ nodeId: config.nodeId, key: ephemeral });
  ephemeral.fill(0); // ClusterAuth keeps its own copy, zeroed on close
  logger.warn('Raft traffic is authenticated with an ephemeral cluster key: no other node can join this one until VAULT_CLUSTER_KEY is set (base64 of 32 bytes, the same on every node)');
  return auth;
}

/** Listens, or fails with a message that names the listener and the address (a busy port, a foreign address). */
async function listenOn(app: FastifyInstance, addr: { host: string; port: number }, what: string): Promise<void> {
  try {
    await app.listen({ host: addr.host, port: addr.port });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EADDRINUSE' ? 'the address is already in use' : code === 'EADDRNOTAVAIL' ? 'no such local address' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new Error(`${what} cannot listen on ${addr.host}:${addr.port}: ${why}`, { cause: err });
  }
}

function listenerUrl(app: FastifyInstance, configured: { host: string; port: number }, tls: boolean): string {
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : configured.port;
  return `${tls ? 'https' : 'http'}://${configured.host === '0.0.0.0' ? '127.0.0.1' : configured.host}:${port}`;
}

/** Test and benchmark knobs for Raft timing; not part of the VAULT_* contract. */
function tuning(): { tickMs?: number; electionTicks?: number; snapshotEntries?: number } {
  const num = (name: string) => {
    const v = process.env[name];
    return v && /^\d+$/.test(v) ? Number(v) : undefined;
  };
  const out: { tickMs?: number; electionTicks?: number; snapshotEntries?: number } = {};
  const tick = num('COFFER_RAFT_TICK_MS');
  const election = num('COFFER_RAFT_ELECTION_TICKS');
  const snap = num('COFFER_RAFT_SNAPSHOT_ENTRIES');
  if (tick) out.tickMs = tick;
  if (election) out.electionTicks = election;
  if (snap) out.snapshotEntries = snap;
  return out;
}

async function waitUntil(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

async function bootstrap(
  token: string,
  replicator: Replicator,
  reader: StateReader,
  logger: Logger,
  now: () => Date,
): Promise<void> {
  const digest = tokenSha256(token);
  let result;
  try {
    result = await replicator.propose(tokenBootstrap({ token_sha256: digest, created_at: now().toISOString() }));
  } catch (err) {
    logger.warn({ err: (err as Error).message }, `could not propose ${BOOTSTRAP_TOKEN_NAME}; the next leader will`);
    return;
  }
  if (!result.ok) {
    logger.error({ reason: result.message }, `could not create ${BOOTSTRAP_TOKEN_NAME}`);
  } else if (result.note === 'revoked') {
    logger.warn(`${BOOTSTRAP_TOKEN_NAME} was revoked and stays revoked; VAULT_BOOTSTRAP_TOKEN is ignored`);
  } else if (result.note === 'exists' && !reader.tokenByHash(digest)) {
    logger.warn(`${BOOTSTRAP_TOKEN_NAME} exists with a different value; VAULT_BOOTSTRAP_TOKEN is ignored`);
  } else if (result.created) {
    logger.info(`created token ${BOOTSTRAP_TOKEN_NAME} (role admin); mint per-service tokens with it, then revoke it`);
  }
}
