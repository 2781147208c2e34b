// `coffer sync --help`, apart from the controller so printing it loads nothing heavy.
export const SYNC_HELP = `Usage: coffer sync run [options]

Runs the CofferSecret sync controller: keeps each CofferSecret's target
Secret equal to the Coffer secrets it names, and rolls the workloads listed
in rolloutRestartTargets when a version changes. Changes arrive by blocking
query within seconds; refreshInterval is only a safety net. Values are read
from this process's address, which must be in the vault's read allowlist
(VaultCluster spec.readAllowlistFrom). Only the replica holding the Lease acts.

Cluster access: --kubeconfig, else KUBECONFIG, else ~/.kube/config, else the
in-cluster ServiceAccount. Logs are JSON lines on stdout, never a value or a
token. SIGTERM/SIGINT stop the controller and release the Lease.

Options (durations: 30s, 5m, 1h; a bare number is seconds):
  --kubeconfig PATH        kubeconfig file
  --namespace NS           watch only NS; default: all namespaces
  --lease-namespace NS     namespace of the Lease [POD_NAMESPACE]; default: default
  --lease-name NAME        Lease name (default coffer-sync)
  --identity ID            holder identity [POD_NAME]; default <hostname>_<random>
  --metrics-addr HOST:PORT /metrics, /healthz, /readyz (default 0.0.0.0:9090; '' turns it off)
  --workers N              concurrent reconciles (default 4)
  --vault-ca-file PATH     CA bundle for https Coffer addresses
  --watch-wait DURATION    how long one blocking query waits (default 5m, at most 5m)
  --lease-duration D       default 15s
  --renew-deadline D       default 10s
  --retry-period D         renew interval, default 2s
  --log-level LEVEL        trace|debug|info|warn|error (default info)`;
