// `coffer wg-agent --help`, apart from the agent so `coffer help` does not load it.
import { DEFAULTS } from './options.js';

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
