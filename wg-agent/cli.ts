// `coffer wg-agent`: the WireGuard sidecar's agent (WIREGUARD.md). Starts and
// supervises wireguard-go, configures the interface from the mounted Secret
// and ConfigMap, and serves /health, /ready and /status.
import fs from 'node:fs';
import os from 'node:os';
import { createLogger } from '../server/log/logger.js';
import { WgAgent } from './agent.js';
import { createAgentServer, listen } from './http.js';
import { WG_AGENT_HELP } from './help.js';
import { OptionsError, parseAgentOptions } from './options.js';
import { EndpointResolver, systemLookup } from './resolver.js';
import { ProcessRunner } from './runner.js';
import { WireguardGoSupervisor } from './supervisor.js';

export async function runWgAgent(argv: readonly string[]): Promise<number> {
  let opts;
  try {
    const parsed = parseAgentOptions(argv, process.env, os.hostname());
    if (parsed === 'help') {
      process.stdout.write(WG_AGENT_HELP + '\n');
      return 0;
    }
    opts = parsed;
  } catch (err) {
    if (!(err instanceof OptionsError)) throw err;
    process.stderr.write(`coffer wg-agent: ${err.message}\n\n${WG_AGENT_HELP}\n`);
    return 2;
  }

  const logger = createLogger(opts.name).child({ component: 'wg-agent' });
  const runner = new ProcessRunner();
  let agent: WgAgent | null = null;
  const supervisor = new WireguardGoSupervisor({
    binary: opts.wireguardGoBinary,
    iface: opts.iface,
    logger,
    onChange: () => agent?.kick(),
  });
  agent = new WgAgent({
    settings: opts,
    logger,
    runner,
    resolver: new EndpointResolver(systemLookup),
    wireguardGo: supervisor,
    readFile: (file) => fs.readFileSync(file),
  });

  // Listen for signals before anything starts, so an early SIGTERM still stops cleanly.
  const stopSignal = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  const server = createAgentServer(agent);
  try {
    const addr = await listen(server, opts.listenHost, opts.listenPort);
    logger.info({ listen: `${addr.address}:${addr.port}`, interface: opts.iface, peers_file: opts.peersFile, keys_dir: opts.keysDir }, 'wg-agent listening');
  } catch (err) {
    process.stderr.write(`coffer wg-agent: cannot listen on ${opts.listenHost}:${opts.listenPort}: ${(err as Error).message}\n`);
    return 1;
  }

  supervisor.start();
  agent.start();

  const signal = await stopSignal;
  logger.info({ signal }, 'stopping: wireguard-go and its interface go away');
  await agent.stop();
  await supervisor.stop();
  runner.close();
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
  logger.info('stopped');
  return 0;
}
