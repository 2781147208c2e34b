// `coffer wg-agent`: the WireGuard sidecar's agent (WIREGUARD.md). Starts and
// supervises wireguard-go, configures the interface from the mounted Secret
// and ConfigMap, and serves /health, /ready and /status.
import fs from 'node:fs';
import os from 'node:os';
import { createLogger } from '../log/logger.js';
import { WgAgent } from '../wireguard/agent.js';
import { createAgentServer, listen } from '../wireguard/http.js';
import { DEFAULTS, OptionsError, parseAgentOptions } from '../wireguard/options.js';
import { EndpointResolver, systemLookup } from '../wireguard/resolver.js';
import { ProcessRunner } from '../wireguard/runner.js';
import { WireguardGoSupervisor } from '../wireguard/supervisor.js';

export const WG_AGENT_HELP = `Usage: coffer wg-agent [options]

The WireGuard sidecar: runs wireguard-go (userspace, needs NET_ADMIN and
/dev/net/tun), gives the interface this pod's overlay address, applies its
private key and one peer per other pod from the mounted files, re-reads them
when the kubelet updates them and re-resolves peer endpoints. The private key
is passed to wg on stdin only, never on a command line or in a log.

Options:
  --name NAME                 this pod's entry in peers.json and its key file NAME.key
                              (default: $COFFER_WG_NAME, then $VAULT_NODE_ID, then the hostname)
  --interface IFACE           WireGuard interface to create (default ${DEFAULTS.interface})
  --keys-dir DIR              mounted Secret <vc>-wireguard-keys (default ${DEFAULTS.keysDir})
  --peers-file FILE           mounted ConfigMap's peers.json (default ${DEFAULTS.peersFile})
  --listen IP:PORT            /health, /ready and /status (default ${DEFAULTS.listen})
  --wireguard-go PATH         wireguard-go binary (default ${DEFAULTS.wireguardGo})
  --wg PATH                   wg binary (default ${DEFAULTS.wg})
  --ip PATH                   ip binary (default ${DEFAULTS.ip})
  --poll-interval-ms MS       how often the files are re-read and the interface checked (default ${DEFAULTS.pollIntervalMs})
  --resolve-interval-ms MS    how often peer endpoints are re-resolved (default ${DEFAULTS.resolveIntervalMs})
  --help                      show this help

HTTP: GET /health (200 while running), GET /ready (200 once wireguard-go runs,
the interface is up with its address and the current files are applied; else
503 {"ready":false,"reason":"…"}), GET /status (interface, address, public key,
peers with resolved endpoints and handshake ages). SIGTERM/SIGINT stop
wireguard-go and exit 0. Logs are JSON on stdout (LOG_LEVEL).`;

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
