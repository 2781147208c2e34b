// VAULT_READ_ALLOWLIST_FILE: whether the file last read was good, how many
// entries are in force, and re-reads by outcome, to alert on a bad ConfigMap.
import { RELOAD_OUTCOMES, type ReadAllowlistFile, type ReloadOutcome } from '../config/allowlist-file.js';
import type { Registry } from '../../common/prometheus.js';

export function registerReadAllowlistMetrics(registry: Registry, source: Pick<ReadAllowlistFile, 'valid' | 'current'>): (outcome: ReloadOutcome) => void {
  registry.gauge({
    name: 'coffer_read_allowlist_file_valid',
    help: '1 when VAULT_READ_ALLOWLIST_FILE was last read well-formed; 0 while it is malformed, unreadable or missing (the last good list stays in force).',
    collect: () => (source.valid ? 1 : 0),
  });
  registry.gauge({
    name: 'coffer_read_allowlist_entries',
    help: 'Addresses and CIDRs on the read allowlist in force (VAULT_READ_ALLOWLIST plus the file).',
    collect: () => source.current().entries.length,
  });
  const reloads = registry.counter({
    name: 'coffer_read_allowlist_reloads_total',
    help: 'Re-reads of VAULT_READ_ALLOWLIST_FILE after a change, by outcome (ok, invalid, missing, unreadable).',
    labelNames: ['outcome'],
  });
  for (const outcome of RELOAD_OUTCOMES) reloads.inc({ outcome }, 0);
  return (outcome) => reloads.inc({ outcome });
}
