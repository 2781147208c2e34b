// `coffer server`: parse the environment, start the node, stop cleanly on signals.
import { ConfigError, loadConfig } from '../config/config.js';
import { createLogger } from '../log/logger.js';
import { startNode } from '../node.js';
import type { ParsedArgs } from './args.js';
import { applyDevDefaults } from './dev.js';

export async function runServer(args: ParsedArgs): Promise<number> {
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
  let node;
  try {
    node = await startNode(config, logger);
  } catch (err) {
    // Startup failures (bad master key, unreadable TLS files, busy port) end with one clear line.
    logger.fatal({ err: { name: (err as Error).name, message: (err as Error).message } }, 'could not start');
    process.stderr.write(`coffer server: ${(err as Error).message}\n`);
    return 1;
  }
  if (devToken) {
    process.stdout.write(
      `\n  Coffer dev node listening on ${node.apiUrl} (DEV MODE: not for real secrets)\n` +
        `  Data folder: ${config.dataDir}\n` +
        `  Bootstrap token (role admin):\n\n    export COFFER_ADDR=${node.apiUrl}\n    export COFFER_TOKEN=${devToken}\n\n`,
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
