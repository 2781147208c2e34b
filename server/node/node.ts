// Assembles one vault node from its configuration: state machine, commit
// seam, KMS, audit, metrics and the API listener. Returned handle stops it.
// Composition only: the policies it wires in (bootstrap token, cluster key,
// re-wrap admin, listeners) live beside it in this folder.
import fs from 'node:fs';
import path from 'node:path';
import { buildApi } from '../api/app.js';
import { Authorizer } from '../api/authz.js';
import { AuditExport } from '../audit/export/exporter.js';
import { AuditLog } from '../audit/audit-log.js';
import { defaultAuditMaxBytes } from '../audit/options.js';
import type { ServerConfig } from '../config/config.js';
import { XCHACHA_IMPL } from '../crypto/xchacha.js';
import { createKms, type KmsProvider, EPHEMERAL_MASTER_KEY_WARNING, parseLocalMasterKey } from '../kms/index.js';
import { createLogger, type Logger } from '../log/logger.js';
import { registerLogMetrics } from '../log/stdout-destination.js';
import { auditMetricsHooks, createCofferMetrics } from '../metrics/coffer-metrics.js';
import { meteredKms } from '../metrics/metered-kms.js';
import { registerDekCacheMetrics } from '../metrics/dek-cache-metrics.js';
import { registerStorageMetrics } from '../metrics/storage-metrics.js';
import { registerAuditMetrics } from '../metrics/audit-metrics.js';
import { registerReadAllowlistMetrics } from '../metrics/read-allowlist-metrics.js';
import { ReadAllowlistFile, type ReloadOutcome } from '../config/allowlist-file.js';
import { parseMembersFile } from '../config/members-file.js';
import { WatchedFile } from '../config/watched-file.js';
import { registerAutopilotMetrics, registerMembersFileMetrics } from '../metrics/autopilot-metrics.js';
import { openDataId, raftLogIsNew } from '../raft/data-id.js';
import { isFormerMember } from '../raft/driver/join-check.js';
import { registerWatchMetrics } from '../metrics/watch-metrics.js';
import { buildRaftListener } from '../raft/listener.js';
import { RaftReplicator } from '../raft/driver/raft-replicator.js';
import { RewrapWorker } from '../rewrap/worker.js';
import { createVersionSealer } from '../sealing/version-sealer.js';
import { SecretService } from '../secrets/service.js';
import { capabilities } from '../store/commands.js';
import { StateReader } from '../store/queries.js';
import { StateMachine } from '../store/state-machine.js';
import { WatchRegistry } from '../watch/registry.js';
import { RELEASE } from '../release.js';
import { FreeSpaceWatcher } from '../storage/free-space.js';
import { ensurePrivateFile, prepareDataDir } from '../storage/private-files.js';
import { WriteGuard } from '../storage/write-guard.js';
import type { FastifyInstance } from 'fastify';
import { proposeBootstrapToken } from './bootstrap-token.js';
import { listenerUrl, listenOn } from './listen.js';
import { raftAuth } from './raft-auth.js';
import { raftTuning } from './raft-tuning.js';
import { rewrapAdmin } from './rewrap-admin.js';

export interface RunningNode {
  config: ServerConfig;
  api: FastifyInstance;
  /** Bound API address (useful when the configured port was 0). */
  apiUrl: string;
  /** Management listener (VAULT_MGMT_ADDR), when separate. */
  mgmtUrl: string | null;
  logger: Logger;
  /** For tests: the unmetered KMS provider (LocalKms.rotate), the re-wrap worker and the Raft driver (to propose as a member would). */
  internals: { kms: KmsProvider; rewrap: RewrapWorker; replicator: RaftReplicator; audit: AuditLog };
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
  const sealer = createVersionSealer(kms);

  ensurePrivateFile(path.join(config.dataDir, 'state.db')); // SQLite would create it 0644
  const sm = new StateMachine(config.dataDir, { checkpointThread: true });
  sm.onCheckpointThreadFailed = (err) => logger.warn({ err: { message: err.message } }, 'state.db checkpoint thread failed; checkpoints run on the main thread until a new thread starts (30 s, doubling while it keeps failing)');
  // Every node applies the same rejection; one log line per node says which check it failed.
  sm.onRejected = (kind, message) => {
    metrics.applyRejected.inc({ kind });
    logger.warn({ kind, problem: message }, 'committed command applied as a rejection');
  };
  undo.push(() => sm.close());
  const reader = new StateReader(sm);
  // Blocking metadata queries (GET /v1/watch) wake on applied secret changes.
  const watch = new WatchRegistry({ index: sm.appliedIndex().index });
  sm.onSecretsChanged = (c) => ('reset' in c ? watch.reset(c.reset) : watch.publish(c));
  registerWatchMetrics(metrics, watch);
  // VAULT_MIN_FREE_BYTES: refused before proposing (507), re-measured at most every 250 ms as writes come.
  const freeSpace = new FreeSpaceWatcher({ dir: config.dataDir, minFreeBytes: config.minFreeBytes });
  const storageMetrics = registerStorageMetrics(metrics.registry, freeSpace, () => writeGuard, path.join(config.dataDir, 'audit.db'));
  const writeGuard = new WriteGuard(freeSpace, { onRefused: (reason) => storageMetrics.writesRefused.inc({ reason }) });
  const raftListenAddr = { ...config.raftAddr };
  let bootstrapping: Promise<void> = Promise.resolve();
  const stopBootstrap = new AbortController();
  undo.push(() => stopBootstrap.abort());
  const clusterAuth = raftAuth(config, logger);
  undo.push(() => clusterAuth.close());
  const initialPeers = config.peers.map((p) => ({ id: p.id, address: `${p.addr.host}:${p.addr.port}` }));
  const raftDir = path.join(config.dataDir, 'raft');
  fs.mkdirSync(raftDir, { recursive: true, mode: 0o700 });
  const freshLog = raftLogIsNew(raftDir);
  const dataId = openDataId(raftDir);
  // An empty log under a name the cluster knows with other data: this node lost its volume and must rejoin, not bootstrap.
  const declaredAtStart = config.membersFile?.initial.kind === 'ok' ? config.membersFile.initial.value : [];
  const formerMember =
    freshLog && initialPeers.length > 1 && (await isFormerMember({ nodeId: config.nodeId, peers: [...initialPeers, ...declaredAtStart], auth: clusterAuth, capabilities: capabilities() }));
  if (formerMember) logger.warn('the cluster knows this node with data it no longer has: joining as a learner instead of bootstrapping');
  const replicator = new RaftReplicator({
    nodeId: config.nodeId,
    dataDir: config.dataDir,
    initialPeers,
    dataId,
    formerMember,
    autopilotStabilizationMs: config.autopilotStabilizationMs,
    onAutopilotChange: (kind) => autopilotMetrics.changes.inc({ kind }),
    onRead: (path) => metrics.raftReads.inc({ path }),
    sm,
    reader,
    capabilities: capabilities(),
    auth: clusterAuth,
    logger,
    ...raftTuning(),
    writeGuard,
    ...(opts.onFatal ? { onFatal: opts.onFatal } : {}),
    onLeader: () => {
      // Chained: a leader that loses and regains leadership does not run two retry loops at once.
      const token = config.bootstrapToken;
      if (token) bootstrapping = bootstrapping.then(() => proposeBootstrapToken(token, replicator, reader, logger, now, { signal: stopBootstrap.signal }));
    },
  });
  undo.push(() => replicator.close());
  // VAULT_MEMBERS_FILE: the members the autopilot keeps Raft membership equal to (a file, even empty, wins over the API's list).
  let countMembersReload: (outcome: ReloadOutcome) => void = () => {};
  const membersFile = config.membersFile
    ? new WatchedFile({
        file: config.membersFile.path,
        label: 'members file',
        parse: parseMembersFile,
        initial: config.membersFile.initial,
        logger,
        onChange: (members) => replicator.autopilot.setFileMembers(members),
        onReload: (outcome) => countMembersReload(outcome),
        describe: (members) => ({ members: members.length }),
      })
    : null;
  if (membersFile) {
    replicator.autopilot.setFileMembers(membersFile.current() ?? []);
    countMembersReload = registerMembersFileMetrics(metrics.registry, membersFile);
    membersFile.start();
    undo.push(() => membersFile.close());
  }
  const autopilotMetrics = registerAutopilotMetrics(metrics.registry, () => replicator.status());
  const rewrap = new RewrapWorker({
    enabled: config.rewrapEnabled,
    pollSecs: config.rewrapPollSecs,
    maxPerSec: config.rewrapMaxPerSec,
    kms: kms.provider,
    replicator,
    reader,
    logger,
  });
  const raftListener = await buildRaftListener(
    replicator,
    capabilities(),
    logger,
    {
      forceRewrap: () => rewrap.force(),
      onAuthRefused: (reason) => metrics.raftAuthRefused.inc({ reason }),
      streamsInbound: (count) => metrics.raftStreamsInbound.setCollector(count),
    },
    clusterAuth,
  );
  undo.push(() => raftListener.close());
  await listenOn(raftListener, raftListenAddr, 'Raft listener (VAULT_RAFT_ADDR)');
  // VAULT_AUDIT_STDOUT / VAULT_AUDIT_FILE: delivers durable records from persisted cursors in its own threads;
  // started before the audit log so its first prune already keeps what is not delivered (exportedThrough).
  const auditExport = new AuditExport({ dataDir: config.dataDir, config: config.auditExport, logger, registry: metrics.registry });
  undo.push(() => auditExport.close(0));
  registerLogMetrics(metrics.registry);
  // Retention and cap (VAULT_AUDIT_RETENTION, VAULT_AUDIT_MAX_BYTES: default a quarter of the volume as seen now).
  let auditRef: AuditLog | null = null;
  const auditMaxBytes = config.auditMaxBytes ?? defaultAuditMaxBytes(config.dataDir);
  const audit = new AuditLog(config.dataDir, {
    ...auditMetricsHooks(metrics),
    ...registerAuditMetrics(metrics.registry, () => auditRef?.status() ?? null),
    // Records of committed writes waiting for space: refuse writes and report not ready until they are durable.
    onHeld: (held, noSpace) => (held && noSpace ? writeGuard.waitForSpace('audit', 'writing audit records') : writeGuard.resumed('audit')),
    retentionMs: config.auditRetentionMs,
    maxBytes: auditMaxBytes,
    // Never prune a record an enabled export has not delivered (null: no export).
    keepAfterId: () => auditExport.exportedThrough(),
    onFull: (reason) =>
      reason !== null
        ? logger.error({ problem: reason }, 'audit log full: new requests fail closed with 503 audit_unavailable until pruning frees room')
        : logger.warn('audit log no longer full: serving again'),
    onPruneFailure: (err) => logger.warn({ err }, 'audit pruning failed; retrying'),
    onChainKeyCreated: (hadChained) => {
      if (hadChained) logger.error('audit-chain.key was missing and a new one was created: records written before cannot be verified with it');
    },
  });
  auditRef = audit;
  undo.push(() => audit.close());
  const now = () => new Date();
  // VAULT_READ_ALLOWLIST_FILE: entries added to VAULT_READ_ALLOWLIST, followed as the file changes.
  let countReload: (outcome: ReloadOutcome) => void = () => {};
  const allowlistFile = config.readAllowlistFile
    ? new ReadAllowlistFile({
        file: config.readAllowlistFile.path,
        base: config.readAllowlist,
        initial: config.readAllowlistFile.initial,
        logger,
        onChange: (list) => authz.setReadAllowlist(list),
        onReload: (outcome) => countReload(outcome),
      })
    : null;
  if (allowlistFile) countReload = registerReadAllowlistMetrics(metrics.registry, allowlistFile);
  const authz = new Authorizer(reader, allowlistFile?.current() ?? config.readAllowlist, now);
  allowlistFile?.start();
  undo.push(() => allowlistFile?.close());
  const secrets = new SecretService(reader, replicator, sealer, now);

  registerDekCacheMetrics(metrics, kms.cache);

  const https =
    config.tlsCertFile && config.tlsKeyFile
      ? { cert: fs.readFileSync(config.tlsCertFile), key: fs.readFileSync(config.tlsKeyFile) }
      : undefined;
  const apiDeps = { config, reader, replicator, secrets, authz, audit, metrics, logger, release: RELEASE, capabilities: capabilities(), now, rewrap: rewrapAdmin(rewrap, replicator, config.nodeId), writeImage: (file: string) => sm.writeImage(file), watch };
  // With VAULT_MGMT_ADDR, the API address serves value reads only and management gets its own listener.
  const api = await buildApi(apiDeps, https, config.mgmtAddr ? 'reads' : 'all');
  undo.push(() => api.close());
  const mgmt = config.mgmtAddr ? await buildApi(apiDeps, https, 'all') : null;
  if (mgmt) undo.push(() => mgmt.close());

  // A single voter elects itself at once; wait for that so the bootstrap token works as soon as we answer.
  if (config.peers.length === 1) {
    await waitUntil(() => replicator.status().ready, 5_000);
    await bootstrapping;
    await replicator.autopilot.round(); // its storage identity recorded before the first request is answered
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
    internals: { kms: kms.raw, rewrap, replicator, audit },
    async close() {
      stopBootstrap.abort();
      // Hand leadership over first so the cluster does not wait out an election timeout.
      if (replicator.isLeader() && replicator.status().peers.length > 1) await replicator.transferLeadership();
      await rewrap.stop();
      allowlistFile?.close();
      membersFile?.close();
      watch.close();
      await api.close();
      await mgmt?.close();
      await raftListener.close();
      await replicator.close();
      clusterAuth.close();
      await audit.close();
      await auditExport.close(); // after the log: what it wrote last is delivered too (at most 3 s)
      sm.close();
      kms.close();
    },
  };
}

async function waitUntil(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
}
