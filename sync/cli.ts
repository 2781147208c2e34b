// `coffer sync run [flags]`: runs the CofferSecret sync controller.
import fs from 'node:fs';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { pino, type Level } from 'pino';
import { loadKubeConfig } from '../operator/operator.js';
import { parseDuration } from './api/duration.js';
import { SYNC_HELP } from './help.js';
import { DEFAULT_SYNC_CONFIG, startSync, type SyncConfig } from './run.js';


const VALUE_FLAGS = new Set([
  'kubeconfig', 'namespace', 'lease-namespace', 'lease-name', 'identity', 'metrics-addr', 'workers', 'vault-ca-file',
  'watch-wait', 'lease-duration', 'renew-deadline', 'retry-period', 'log-level',
]);
const LEVELS: readonly string[] = ['trace', 'debug', 'info', 'warn', 'error'];

export class SyncUsageError extends Error {
  override readonly name = 'SyncUsageError';
}

function duration(flag: string, text: string): number {
  const ms = /^[0-9]+$/.test(text) ? Number(text) * 1000 : parseDuration(text);
  if (ms === undefined || ms <= 0) throw new SyncUsageError(`--${flag}: '${text}' is not a duration (30s, 5m, 1h)`);
  return ms;
}

export interface ParsedSyncArgs {
  config: SyncConfig;
  kubeconfig?: string;
  logLevel: Level;
  help: boolean;
}

export function parseSyncArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ParsedSyncArgs {
  const rest = argv[0] === 'run' ? argv.slice(1) : argv;
  if (rest.length === argv.length && argv.length > 0 && !argv[0]!.startsWith('-')) {
    throw new SyncUsageError(`unknown subcommand '${argv[0]}' (the only one is run)`);
  }
  const flags = new Map<string, string>();
  let help = false;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--help' || a === '-h') {
      help = true;
      continue;
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/s.exec(a);
    if (!m || !VALUE_FLAGS.has(m[1]!)) throw new SyncUsageError(`unknown option '${a}'`);
    const value = m[2] ?? rest[++i];
    if (value === undefined) throw new SyncUsageError(`--${m[1]} needs a value`);
    flags.set(m[1]!, value);
  }
  const workers = Number(flags.get('workers') ?? DEFAULT_SYNC_CONFIG.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new SyncUsageError('--workers: a whole number from 1 to 64');
  const logLevel = flags.get('log-level') ?? 'info';
  if (!LEVELS.includes(logLevel)) throw new SyncUsageError(`--log-level: one of ${LEVELS.join(', ')}`);
  let metricsAddr: SyncConfig['metricsAddr'];
  const addr = flags.get('metrics-addr') ?? '0.0.0.0:9090';
  if (addr !== '') {
    const am = /^(.+):([0-9]{1,5})$/.exec(addr);
    if (!am || Number(am[2]) > 65535) throw new SyncUsageError(`--metrics-addr: '${addr}' is not HOST:PORT`);
    metricsAddr = { host: am[1]!, port: Number(am[2]) };
  }
  const watchWaitMs = flags.has('watch-wait') ? duration('watch-wait', flags.get('watch-wait')!) : DEFAULT_SYNC_CONFIG.watchWaitMs;
  if (watchWaitMs > 300_000) throw new SyncUsageError('--watch-wait: at most 5m (the server caps a blocking query there)');
  const leaseDurationMs = flags.has('lease-duration') ? duration('lease-duration', flags.get('lease-duration')!) : DEFAULT_SYNC_CONFIG.leaseDurationMs;
  const renewDeadlineMs = flags.has('renew-deadline') ? duration('renew-deadline', flags.get('renew-deadline')!) : DEFAULT_SYNC_CONFIG.renewDeadlineMs;
  const retryPeriodMs = flags.has('retry-period') ? duration('retry-period', flags.get('retry-period')!) : DEFAULT_SYNC_CONFIG.retryPeriodMs;
  if (renewDeadlineMs >= leaseDurationMs) throw new SyncUsageError('--renew-deadline must be shorter than --lease-duration');
  let ca: Buffer | undefined;
  if (flags.has('vault-ca-file')) {
    try {
      ca = fs.readFileSync(flags.get('vault-ca-file')!);
    } catch (err) {
      throw new SyncUsageError(`--vault-ca-file: ${(err as Error).message}`);
    }
  }
  const namespace = flags.get('namespace');
  const kubeconfig = flags.get('kubeconfig');
  return {
    help,
    logLevel: logLevel as Level,
    ...(kubeconfig ? { kubeconfig } : {}),
    config: {
      ...(namespace ? { namespace } : {}),
      leaseNamespace: flags.get('lease-namespace') ?? (env.POD_NAMESPACE || 'default'),
      leaseName: flags.get('lease-name') ?? DEFAULT_SYNC_CONFIG.leaseName,
      identity: flags.get('identity') ?? (env.POD_NAME || `${os.hostname()}_${randomBytes(4).toString('hex')}`),
      workers,
      ...(metricsAddr ? { metricsAddr } : {}),
      ...(ca ? { ca } : {}),
      leaseDurationMs,
      renewDeadlineMs,
      retryPeriodMs,
      watchWaitMs,
    },
  };
}

/** Entry point of `coffer sync …`; resolves with the exit code once stopped. */
export async function runSyncCommand(argv: readonly string[]): Promise<number> {
  let parsed: ParsedSyncArgs;
  try {
    parsed = parseSyncArgs(argv);
  } catch (err) {
    if (!(err instanceof SyncUsageError)) throw err;
    process.stderr.write(`coffer sync: ${err.message}\n\n${SYNC_HELP}\n`);
    return 2;
  }
  if (parsed.help) {
    process.stdout.write(SYNC_HELP + '\n');
    return 0;
  }
  const logger = pino({ level: parsed.logLevel, base: { component: 'coffer-sync' } });
  const running = await startSync(loadKubeConfig(parsed.kubeconfig), parsed.config, logger);
  logger.info({ identity: parsed.config.identity, metricsPort: running.metricsPort(), namespace: parsed.config.namespace ?? '(all)' }, 'coffer sync started');
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'stopping');
      running.stop().then(() => resolve(0), (err: unknown) => {
        logger.error({ err: String(err) }, 'stop failed');
        resolve(1);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
