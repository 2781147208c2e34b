// `coffer operator render -f vaultcluster.yaml`: prints, without a cluster,
// every object the operator would create for a VaultCluster, for GitOps users
// and for review. Secrets appear only as references: their values are
// generated inside the cluster, once, and never printed.
import { readFileSync } from 'node:fs';
import { parseAllDocuments, stringify } from 'yaml';
import { overlayAddress } from '../api/overlay.js';
import { KIND } from '../api/schema.js';
import type { VaultCluster } from '../api/types.js';
import { formatIssues, validateVaultCluster } from '../api/validate.js';
import { buildManifests } from '../manifests/build.js';
import { membersConfigMap } from '../manifests/members.js';
import { READ_ALLOWLIST_KEY, namespaceOf, podName, resourceNames } from '../manifests/names.js';
import { secretTemplates } from '../manifests/secrets.js';
import { PEERS_KEY } from '../wireguard/peers.js';
import { keyName } from '../wireguard/secret.js';
import { wireguardPodExtension } from '../wireguard/sidecar.js';
import { OPERATOR_HELP } from './help.js';

export { OPERATOR_HELP };

export const RENDER_HELP = `Usage: coffer operator render -f FILE

Validates the VaultCluster(s) in FILE (YAML or JSON; '-' reads stdin; several
documents allowed) and prints, as multi-document YAML, every object the
operator would create: ServiceAccount, headless and client Services,
StatefulSet and PodDisruptionBudget. No cluster is contacted. Documents of
other kinds (a Namespace, say) are skipped, with one line each on stderr.

Secrets are shown as references only (name, key and who creates them), never
with values: the bootstrap token, the cluster key and the local master key
are generated once by the operator inside the cluster.
VAULT_KMS_REWRAP_ENABLED is rendered from status.rollout.currentRewrap
(false when absent): the operator switches it on through the two-step
rollout, not straight from spec.kms.rewrap.enabled.

With spec.wireguard.enabled the StatefulSet carries the WireGuard sidecar (a
native sidecar, as on Kubernetes 1.29 and newer). Its key Secret holds one
private key per pod, generated inside the cluster, and is shown as a
reference only; the peer ConfigMap is derived from it there, so it is
described (addresses, endpoints) rather than rendered.

Exit status: 0 on success, 2 when the file is not a valid VaultCluster.`;

export interface RenderIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  readFile: (path: string) => string;
  readStdin: () => string;
}

const defaultIO: RenderIO = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  readFile: (p) => readFileSync(p, 'utf8'),
  readStdin: () => readFileSync(0, 'utf8'),
};

export class RenderError extends Error {
  override readonly name = 'RenderError';
}

/**
 * Parses YAML text, validates every VaultCluster in it and returns them with defaults applied.
 * Documents of another kind (the Namespace a manifest file often starts with) are not the
 * operator's input: they are skipped, and `skipped` says which, one line each.
 */
export function parseVaultClusters(text: string, source = 'input', skipped: string[] = []): VaultCluster[] {
  const docs = parseAllDocuments(text);
  const out: VaultCluster[] = [];
  const problems: string[] = [];
  let index = 0;
  for (const doc of docs) {
    index++;
    if (doc.errors.length > 0) {
      problems.push(`${source}: document ${index}: not valid YAML: ${doc.errors[0]?.message ?? 'parse error'}`);
      continue;
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue; // empty document (e.g. a trailing ---)
    // A document without a kind is taken for a VaultCluster, so its validation says what is missing.
    const kind = (value as { kind?: unknown }).kind;
    if (typeof kind === 'string' && kind !== KIND) {
      const name = describeDoc(value).slice(2, -1);
      skipped.push(`${source}: document ${index} (${kind}${name ? ` ${name}` : ''}) is not a ${KIND}; skipped`);
      continue;
    }
    const result = validateVaultCluster(value);
    if (!result.ok) {
      const name = describeDoc(value);
      problems.push(`${source}: document ${index}${name}: invalid VaultCluster:\n${formatIssues(result.errors)}`);
      continue;
    }
    out.push(result.value);
  }
  if (problems.length > 0) throw new RenderError(problems.join('\n'));
  if (out.length === 0) throw new RenderError(`${source}: no ${KIND} found${skipped.length > 0 ? ` (${skipped.length} document(s) of other kinds skipped)` : ''}`);
  return out;
}

function describeDoc(value: unknown): string {
  const meta = (value as { metadata?: { name?: unknown; namespace?: unknown } } | null)?.metadata;
  if (typeof meta?.name !== 'string') return '';
  return ` (${typeof meta.namespace === 'string' ? `${meta.namespace}/` : ''}${meta.name})`;
}

/** The multi-document YAML for some validated VaultClusters. */
export function renderManifests(clusters: readonly VaultCluster[]): string {
  const parts: string[] = [];
  for (const vc of clusters) {
    const ns = namespaceOf(vc);
    const rewrapEnabled = vc.status?.rollout?.currentRewrap ?? false;
    const lines = [
      `# coffer operator render: objects the operator creates for VaultCluster ${ns}/${vc.metadata.name}.`,
      '# Secrets are never rendered with values. The pods read:',
    ];
    for (const t of secretTemplates(vc)) {
      const who = t.generated
        ? 'generated once by the operator when missing, never overwritten'
        : 'supplied by you (the operator only reads it)';
      lines.push(`#   Secret ${t.namespace}/${t.name}, key "${t.key}": ${t.description}; ${who}`);
    }
    if (vc.spec.tls) lines.push(`#   Secret ${ns}/${vc.spec.tls.secretName}, keys "tls.crt" and "tls.key": API certificate; supplied by you`);
    const wg = vc.spec.wireguard;
    if (wg.enabled) {
      const names = resourceNames(vc.metadata.name);
      const pods = Array.from({ length: vc.spec.replicas }, (_, i) => podName(vc.metadata.name, i));
      lines.push(
        `#   Secret ${ns}/${names.wireguardKeysSecret}, keys ${pods.map((p) => `"${keyName(p)}"`).join(', ')}: WireGuard private key of each pod (X25519); generated by the operator, rotated one pod at a time when spec.wireguard.keyGeneration rises (now ${wg.keyGeneration})`,
        `# ConfigMap ${ns}/${names.wireguardPeersConfigMap} ("${PEERS_KEY}") is derived in the cluster from those keys (public keys only): ` +
          pods.map((p, i) => `${p} ${overlayAddress(wg.cidr, i)}`).join(', ') + `; UDP port ${wg.port}, overlay ${wg.cidr}.`,
      );
    }
    if (vc.spec.readAllowlistFrom.length > 0) {
      const from = vc.spec.readAllowlistFrom.map((e) => `${e.namespace}/{${Object.entries(e.podSelector.matchLabels).map(([k, v]) => `${k}=${v}`).join(',')}}`);
      lines.push(
        `# ConfigMap ${ns}/${resourceNames(vc.metadata.name).readAllowlistConfigMap} ("${READ_ALLOWLIST_KEY}") is kept in the cluster: spec.readAllowlist plus the IP of each Running pod of ${from.join(', ')}; mounted as VAULT_READ_ALLOWLIST_FILE.`,
      );
    }
    lines.push(
      `# VAULT_KMS_REWRAP_ENABLED=${rewrapEnabled} (from status.rollout.currentRewrap; spec.kms.rewrap.enabled=${vc.spec.kms.rewrap.enabled} is applied through the rollout).`,
    );
    if (!vc.metadata.uid) lines.push('# ownerReferences omitted: the input has no metadata.uid (the operator sets them on the live objects).');
    const wgExtension = wireguardPodExtension(vc, { image: vc.spec.image });
    const manifests = buildManifests(vc, { rewrapEnabled, ...(wgExtension ? { podExtensions: [wgExtension] } : {}) });
    // The declared Raft members (VAULT_MEMBERS_FILE): every ordinal of spec.replicas; the operator changes it on a resize.
    const objects = [membersConfigMap(vc, vc.spec.replicas), ...manifests.objects];
    parts.push(lines.join('\n') + '\n' + objects.map((o) => `---\n${stringify(o, { lineWidth: 0 })}`).join(''));
  }
  return parts.join('');
}

/** `coffer operator …`; returns the exit status. */
export function operatorCommand(
  positionals: readonly string[],
  flags: ReadonlyMap<string, string | true>,
  io: RenderIO = defaultIO,
): number {
  // A usage mistake is one line naming it and where to read the usage (like every other coffer command).
  const usage = (where: string, message: string): number => {
    io.stderr(`${where}: ${message}; see '${where} --help'\n`);
    return 2;
  };
  const sub = positionals[0];
  if (sub === undefined) {
    if (flags.has('help')) {
      io.stdout(OPERATOR_HELP + '\n');
      return 0;
    }
    return usage('coffer operator', 'missing command');
  }
  if (sub !== 'render') return usage('coffer operator', `unknown command '${sub}'`);
  if (flags.has('help')) {
    io.stdout(RENDER_HELP + '\n');
    return 0;
  }
  const file = flags.get('file');
  if (typeof file !== 'string') return usage('coffer operator render', '-f FILE is required');
  if (positionals.length > 1) return usage('coffer operator render', `unexpected argument '${positionals[1]}'`);
  let text: string;
  try {
    text = file === '-' ? io.readStdin() : io.readFile(file);
  } catch (err) {
    io.stderr(`coffer operator render: cannot read ${file}: ${(err as Error).message}\n`);
    return 1;
  }
  const skipped: string[] = [];
  const saySkipped = () => {
    for (const line of skipped) io.stderr(`coffer operator render: ${line}\n`);
  };
  try {
    const clusters = parseVaultClusters(text, file === '-' ? 'stdin' : file, skipped);
    saySkipped();
    io.stdout(renderManifests(clusters));
    return 0;
  } catch (err) {
    if (err instanceof RenderError) saySkipped();
    if (err instanceof RenderError) {
      io.stderr(`coffer operator render: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}
