// `coffer operator [run] [flags]`: runs the VaultCluster controller.
import fs from 'node:fs';
import { pino, type Level } from 'pino';
import { DEFAULT_CONFIG, defaultIdentity, loadKubeConfig, startOperator, type OperatorConfig } from '../operator.js';

export const RUN_HELP = `Usage: coffer operator [run] [options]

Runs the VaultCluster controller: watches VaultClusters and the objects they
own, applies them with server-side apply (field manager coffer-operator),
rolls out releases and the re-wrap flag through the health gate, and writes
status. Only the replica holding the leader election Lease acts.

Cluster access: --kubeconfig, else KUBECONFIG, else ~/.kube/config, else the
in-cluster ServiceAccount. Logs are JSON lines on stdout. SIGTERM/SIGINT stop
the controller and release the Lease.

Options (environment variable in brackets):
  --kubeconfig PATH                  kubeconfig file
  --namespace NS                     watch only NS [COFFER_OPERATOR_NAMESPACE]; default: all namespaces
  --leader-election-namespace NS     namespace of the Lease [COFFER_OPERATOR_LEADER_ELECTION_NAMESPACE,
                                     else POD_NAMESPACE, else the in-cluster namespace, else default]
  --leader-election-name NAME        Lease name (default coffer-operator)
  --identity ID                      holder identity [POD_NAME]; default <hostname>_<random>
  --lease-duration SECS              default 15
  --renew-deadline SECS              default 10
  --retry-period SECS                renew interval, default 5
  --resync SECS                      resync every VaultCluster this often [COFFER_OPERATOR_RESYNC_SECS], default 300
  --workers N                        concurrent reconciles, default 2
  --pod-health-url TEMPLATE          pod health URL [COFFER_OPERATOR_POD_HEALTH_URL],
                                     default {scheme}://{podIP}:{port}/v1/health;
                                     placeholders {scheme} {podIP} {pod} {namespace} {port}
  --cluster-domain DOMAIN            append .svc.DOMAIN to Raft peer hostnames; also the domain of
                                     the API's fully qualified Host names (default cluster.local)
  --log-level LEVEL                  trace|debug|info|warn|error [COFFER_OPERATOR_LOG_LEVEL], default info`;

const VALUE_FLAGS = new Set([
  'kubeconfig', 'namespace', 'leader-election-namespace', 'leader-election-name', 'identity', 'lease-duration',
  'renew-deadline', 'retry-period', 'resync', 'workers', 'pod-health-url', 'cluster-domain', 'log-level',
]);

export class OperatorUsageError extends Error {
  override readonly name = 'OperatorUsageError';
}

export interface ParsedRunArgs {
  config: OperatorConfig;
  kubeconfig?: string;
  logLevel: Level;
  help: boolean;
}

/** Parses `[run] [--flag value | --flag=value]…` with the environment as fallback. */
export function parseRunArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ParsedRunArgs {
  const flags = new Map<string, string>();
  let help = false;
  const rest = argv[0] === 'run' ? argv.slice(1) : argv;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i] as string;
    if (a === '--help' || a === '-h') {
      help = true;
      continue;
    }
    if (!a.startsWith('--')) throw new OperatorUsageError(`unexpected argument '${a}'`);
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    if (!VALUE_FLAGS.has(name)) throw new OperatorUsageError(`unknown option --${name}`);
    const value = eq > 0 ? a.slice(eq + 1) : rest[++i];
    if (value === undefined) throw new OperatorUsageError(`--${name} needs a value`);
    flags.set(name, value);
  }
  const get = (flag: string, ...vars: string[]) => flags.get(flag) ?? vars.map((v) => env[v]).find((v) => v !== undefined && v !== '');
  const secs = (flag: string, def: number, ...vars: string[]) => {
    const v = get(flag, ...vars);
    if (v === undefined) return Math.round(def * 1000);
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new OperatorUsageError(`--${flag} must be a positive number of seconds, got '${v}'`);
    return Math.round(n * 1000);
  };
  const workers = Number(get('workers') ?? DEFAULT_CONFIG.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new OperatorUsageError('--workers must be an integer from 1 to 64');
  const logLevel = (get('log-level', 'COFFER_OPERATOR_LOG_LEVEL') ?? 'info') as Level;
  if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal'].includes(logLevel)) throw new OperatorUsageError(`--log-level: unknown level '${logLevel}'`);
  const config: OperatorConfig = {
    ...DEFAULT_CONFIG,
    leaderElectionNamespace: get('leader-election-namespace', 'COFFER_OPERATOR_LEADER_ELECTION_NAMESPACE', 'POD_NAMESPACE') ?? inClusterNamespace() ?? 'default',
    leaderElectionName: get('leader-election-name') ?? DEFAULT_CONFIG.leaderElectionName,
    identity: get('identity') ?? defaultIdentity(),
    resyncPeriodMs: secs('resync', DEFAULT_CONFIG.resyncPeriodMs / 1000, 'COFFER_OPERATOR_RESYNC_SECS'),
    workers,
    podHealthUrl: get('pod-health-url', 'COFFER_OPERATOR_POD_HEALTH_URL') ?? DEFAULT_CONFIG.podHealthUrl,
    leaseDurationMs: secs('lease-duration', DEFAULT_CONFIG.leaseDurationMs / 1000),
    renewDeadlineMs: secs('renew-deadline', DEFAULT_CONFIG.renewDeadlineMs / 1000),
    retryPeriodMs: secs('retry-period', DEFAULT_CONFIG.retryPeriodMs / 1000),
  };
  const ns = get('namespace', 'COFFER_OPERATOR_NAMESPACE');
  if (ns) config.namespace = ns;
  const domain = get('cluster-domain');
  if (domain) config.clusterDomain = domain;
  if (config.renewDeadlineMs >= config.leaseDurationMs) throw new OperatorUsageError('--renew-deadline must be shorter than --lease-duration');
  const kubeconfig = get('kubeconfig');
  return { config, logLevel, help, ...(kubeconfig ? { kubeconfig } : {}) };
}

function inClusterNamespace(): string | undefined {
  try {
    return fs.readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/namespace', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Runs until SIGTERM/SIGINT; returns the exit status. */
export async function runOperatorCommand(argv: readonly string[]): Promise<number> {
  let parsed: ParsedRunArgs;
  try {
    parsed = parseRunArgs(argv);
  } catch (err) {
    if (err instanceof OperatorUsageError) {
      process.stderr.write(`coffer operator: ${err.message}\n\n${RUN_HELP}\n`);
      return 2;
    }
    throw err;
  }
  if (parsed.help) {
    process.stdout.write(RUN_HELP + '\n');
    return 0;
  }
  const logger = pino({ level: parsed.logLevel, base: { component: 'coffer-operator', identity: parsed.config.identity } });
  let kc;
  try {
    kc = loadKubeConfig(parsed.kubeconfig);
    if (!kc.getCurrentCluster()) throw new Error('no cluster in the kubeconfig and not running in a cluster');
  } catch (err) {
    process.stderr.write(`coffer operator: cannot load cluster credentials: ${(err as Error).message}\n`);
    return 1;
  }
  logger.info({ config: parsed.config }, 'starting');
  const op = startOperator(kc, parsed.config, logger);
  // The controller's own timers may all be idle (e.g. a standby waiting on an unreachable API server); stay up until a signal.
  const keepAlive = setInterval(() => undefined, 60_000);
  await new Promise<void>((resolve) => {
    const onSignal = (signal: string) => {
      clearInterval(keepAlive);
      logger.info({ signal }, 'shutting down');
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      resolve();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  await op.stop();
  logger.info({}, 'stopped');
  return 0;
}
