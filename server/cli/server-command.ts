// `coffer server`: parse the environment, start the node, stop cleanly on signals.
// Every way it cannot serve ends the process with a non-zero code and one
// clear line, so a supervisor (the kubelet, systemd) restarts or reports it:
// a bad variable (2), a failed start such as a busy port (1), and a storage
// fault after start (EXIT_STORAGE_FAULT).
import { stdoutDestination } from '../log/stdout-destination.js';
import { ConfigError, loadConfig } from '../config/config.js';
import { createLogger } from '../log/logger.js';
import { startNode } from '../node/node.js';
import type { ParsedArgs } from './args.js';
import path from 'node:path';
import { applyDevDefaults, bootstrapTokenLines, bootstrapTokenState, DEV_TOKEN_FILE } from './dev.js';

/** sysexits EX_IOERR: the node stopped on a storage fault and must be restarted. */
export const EXIT_STORAGE_FAULT = 74;

export async function runServer(args: ParsedArgs): Promise<number> {
  // Before anything is created (the dev keys included): every file and folder the node makes is its user's only.
  process.umask(0o077);
  let devToken: string | null = null;
  if (args.flags.has('dev')) devToken = applyDevDefaults(process.env).token;
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`coffer server: invalid configuration: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const logger = createLogger(config.nodeId);
  // A storage fault the node cannot recover from in place: exit at once, before pending writes
  // (whose outcome is unknown) could be answered with an error; the restart recovers from the log.
  const onFatal = (err: Error): void => {
    logger.fatal({ err: { name: err.name, message: err.message } }, 'storage fault: exiting so the node is restarted');
    process.stderr.write(`coffer server: stopped after a storage fault: ${err.message}\n`);
    process.exit(EXIT_STORAGE_FAULT);
  };
  let node;
  try {
    node = await startNode(config, logger, { onFatal });
  } catch (err) {
    // Startup failures (bad master key, unreadable TLS files, busy port) end with one clear line.
    logger.fatal({ err: { name: (err as Error).name, message: (err as Error).message } }, 'could not start');
    process.stderr.write(`coffer server: ${(err as Error).message}\n`);
    // startNode closed what it had opened; exit anyway, so no handle left behind can keep a failed start alive.
    process.exit(1);
  }
  if (devToken) {
    // After startup: the bootstrap token was proposed (and applied, on a lone node), so state.db says whether it still works.
    const tokenFile = path.join(config.dataDir, DEV_TOKEN_FILE);
    const state = await bootstrapTokenState(config.dataDir, devToken);
    // Through the logs' own stdout queue: after the "ready" line, never before it or cut into it.
    stdoutDestination().write(
      `\n  Coffer dev node listening on ${node.apiUrl} (DEV MODE: not for real secrets)\n` +
        `  API ${process.env.VAULT_API_ADDR} (VAULT_API_ADDR), Raft ${process.env.VAULT_RAFT_ADDR} (VAULT_RAFT_ADDR); data folder ${config.dataDir}\n\n` +
        `    export COFFER_ADDR=${node.apiUrl}\n\n` +
        bootstrapTokenLines(tokenFile, devToken, state) +
        '\n',
    );
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutting down');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await node.close();
  return 0;
}
