// The VaultCluster API (coffer.dev/v1alpha1) as one TypeBox schema.
//
// This file is the single source of truth for the resource: the CRD in crds/
// is generated from it (operator/crd/generate.ts), the static TypeScript types
// are derived from it (operator/api/types.ts), and the operator validates and
// defaults every object it reads with it (operator/api/validate.ts). Field
// names follow DESIGN §6.
//
// Dialect notes: the schema is written for TypeBox's runtime checker. The CRD
// generator translates the few constructs Kubernetes structural schemas do not
// accept (literal unions become `enum`, records become `additionalProperties`,
// `additionalProperties: false` is dropped because the API server prunes
// unknown fields instead). Rules that need more than one field are written
// once below as a CEL rule (for the API server) paired with the same check in
// TypeScript (for the operator and `coffer operator render`).
import { Type, type TSchema } from '@sinclair/typebox';
import { AUDIT_RETENTION_PATTERN } from './audit.js';

export const GROUP = 'coffer.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'VaultCluster';
export const LIST_KIND = 'VaultClusterList';
export const PLURAL = 'vaultclusters';
export const SINGULAR = 'vaultcluster';
export const SHORT_NAMES: readonly string[] = ['vc'];
export const CRD_NAME = `${PLURAL}.${GROUP}`;

/** Odd cluster sizes only: an even count adds a node without adding fault tolerance. */
export const REPLICA_COUNTS = [1, 3, 5, 7] as const;

/**
 * Longest VaultCluster name: `<name>-headless` must stay a 63-character DNS
 * label, and StatefulSet pods get a `controller-revision-hash` label of
 * `<name>-<10 chars>` that must also fit in 63.
 */
export const MAX_NAME_LENGTH = 52;

// ---------------------------------------------------------------- patterns

/** RFC 1035 label (what Service names require). */
export const DNS_LABEL = '^[a-z]([-a-z0-9]*[a-z0-9])?$';
/** RFC 1123 subdomain (what Secret names require). */
export const DNS_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
/** A key in a Secret's data. */
export const SECRET_KEY = '^[-._a-zA-Z0-9]+$';
const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])';
const IPV4 = `(${OCTET}\\.){3}${OCTET}`;
const PREFIX = '(3[0-2]|[12]?[0-9])';
/** An IPv4 address or an IPv4 CIDR (no leading zeros, as the server parses them). */
export const IPV4_OR_CIDR = `^${IPV4}(/${PREFIX})?$`;
/** An IPv4 CIDR with its prefix length. */
export const IPV4_CIDR = `^${IPV4}/${PREFIX}$`;
/** A Kubernetes resource.Quantity. */
export const QUANTITY =
  '^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$';

/**
 * Options that only the runtime validator reads; the CRD generator strips them.
 * `errorMessage` replaces TypeBox's generic message for a failed pattern/enum.
 */
interface Friendly {
  errorMessage?: string;
}
const strict = { additionalProperties: false } as const;

// ---------------------------------------------------------------- cross-field rules

/**
 * A validation rule that needs more than one field. `rule` is CEL for the API
 * server (`x-kubernetes-validations`), `check` is the same rule for the
 * operator's own validator. Keep them saying the same thing.
 */
export interface CrossFieldRule<T> {
  readonly rule: string;
  readonly message: string;
  /** Path of the object the rule is attached to, dotted (`spec.kms`). */
  readonly at: string;
  /**
   * The field a failure is reported on, relative to `at` (`.trustedProxies`):
   * CEL's `fieldPath`, and appended to `at` in the operator's own report.
   * Absent: the failure is reported on `at` itself.
   */
  readonly fieldPath?: string;
  /** CEL's `reason` (the API server's error type); FieldValueInvalid when absent. */
  readonly reason?: 'FieldValueRequired' | 'FieldValueInvalid' | 'FieldValueForbidden';
  readonly check: (self: T) => boolean;
}

/** Rules on `spec.kms`. */
export const KMS_RULES: readonly CrossFieldRule<{ mode: string; keyId?: string; localMasterKeySecretRef?: unknown }>[] = [
  {
    at: 'spec.kms',
    rule: "self.mode != 'aws' || (has(self.keyId) && size(self.keyId) > 0)",
    message: 'kms.keyId is required when kms.mode is aws',
    check: (k) => k.mode !== 'aws' || (typeof k.keyId === 'string' && k.keyId.length > 0),
  },
  {
    at: 'spec.kms',
    rule: "self.mode == 'local' || !has(self.localMasterKeySecretRef)",
    message: 'kms.localMasterKeySecretRef is only used when kms.mode is local',
    check: (k) => k.mode === 'local' || k.localMasterKeySecretRef === undefined,
  },
];

/**
 * Rules on `spec`. A proxy's X-Forwarded-For is believed only from the
 * addresses in trustedProxies; the server refuses to start with
 * VAULT_TRUST_PROXY=true and none, so the API server refuses the object
 * instead of leaving pods in a crash loop.
 */
export const SPEC_RULES: readonly CrossFieldRule<{ trustProxy: boolean; trustedProxies?: readonly string[] }>[] = [
  {
    at: 'spec',
    rule: '!self.trustProxy || (has(self.trustedProxies) && size(self.trustedProxies) > 0)',
    message: 'trustedProxies is required when trustProxy is true: list the addresses or CIDRs of the proxies whose X-Forwarded-For is believed',
    fieldPath: '.trustedProxies',
    reason: 'FieldValueRequired',
    check: (s) => !s.trustProxy || (s.trustedProxies ?? []).length > 0,
  },
];

/**
 * Transition rules on `spec.storage` (API server only: they compare with the
 * stored object). volumeClaimTemplates of a StatefulSet cannot change, so a
 * changed size or class would leave the StatefulSet unpatchable.
 */
export const STORAGE_TRANSITION_RULES: readonly { rule: string; message: string }[] = [
  {
    rule: 'self.size == oldSelf.size',
    message: 'storage.size cannot be changed after creation (StatefulSet volume claim templates are immutable); expand the PVCs directly',
  },
  {
    rule: 'has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)',
    message: 'storage.storageClassName cannot be changed after creation',
  },
];

function celRules(
  rules: readonly { rule: string; message: string; fieldPath?: string; reason?: string }[],
): { rule: string; message: string; fieldPath?: string; reason?: string }[] {
  return rules.map(({ rule, message, fieldPath, reason }) => ({
    rule, message, ...(fieldPath !== undefined ? { fieldPath } : {}), ...(reason !== undefined ? { reason } : {}),
  }));
}

// ---------------------------------------------------------------- building blocks

/** Reference to one key of a Secret in the VaultCluster's namespace. */
export function secretKeyRefSchema(description: string) {
  return Type.Object(
    {
      name: Type.String({
        minLength: 1, maxLength: 253, pattern: DNS_SUBDOMAIN,
        description: 'Name of the Secret, in the namespace of the VaultCluster.',
        errorMessage: 'must be a valid Secret name (lowercase RFC 1123 subdomain)',
      } as Friendly),
      key: Type.String({
        minLength: 1, maxLength: 253, pattern: SECRET_KEY,
        description: 'Key within the Secret.',
        errorMessage: 'must be a valid Secret key (letters, digits, -, _ and .)',
      } as Friendly),
    },
    { ...strict, description },
  );
}

const Quantity = Type.Union([Type.Integer(), Type.String({ pattern: QUANTITY })], {
  errorMessage: 'must be a Kubernetes quantity such as 500m, 1Gi or 2',
} as Friendly);

const ResourceList = Type.Record(Type.String(), Quantity);

/** core/v1 ResourceRequirements (limits and requests). */
export const ResourceRequirementsSchema = Type.Object(
  {
    limits: Type.Optional(ResourceList),
    requests: Type.Optional(ResourceList),
  },
  { ...strict, description: 'Compute resources of the vault container (core/v1 ResourceRequirements).' },
);

// ---------------------------------------------------------------- spec

export const ReplicasSchema = Type.Union(
  REPLICA_COUNTS.map((n) => Type.Literal(n)),
  { default: 3, description: 'Number of vault nodes (Raft voters): 1, 3, 5 or 7. A change on a formed cluster is applied live, one Raft change at a time (progress in status.resize).', errorMessage: 'must be 1, 3, 5 or 7' } as Friendly,
);

export const KmsModeSchema = Type.Union([Type.Literal('aws'), Type.Literal('local')], {
  default: 'local',
  description: 'aws: wrap data keys with an AWS KMS key. local: wrap them with a master key held in a Secret (development and tests).',
  errorMessage: 'must be aws or local',
} as Friendly);

export const RewrapSchema = Type.Object(
  {
    enabled: Type.Boolean({ default: false, description: 'Run the leader-gated re-wrap worker (rolled out in two steps, see status.rollout).' }),
    pollSecs: Type.Integer({ minimum: 1, maximum: 31_536_000, default: 86_400, description: 'How often the worker polls ListKeyRotations.' }),
    maxPerSec: Type.Integer({ minimum: 1, maximum: 10_000, default: 20, description: 'ReEncrypt calls per second at most.' }),
  },
  { ...strict, default: {}, description: 'Re-wrapping of stored data keys after a KMS key rotation.' },
);

export const KmsSchema = Type.Object(
  {
    mode: KmsModeSchema,
    keyId: Type.Optional(Type.String({ minLength: 1, maxLength: 2048, description: 'KMS key id, ARN or alias (aws mode).' })),
    localMasterKeySecretRef: Type.Optional(
      secretKeyRefSchema('Secret key holding the base64 32-byte master key (local mode). When absent the operator generates <name>-master-key once.'),
    ),
    dekCacheTtlSecs: Type.Integer({ minimum: 0, maximum: 86_400, default: 300, description: 'Lifetime of an unwrapped data key in memory; 0 disables the cache.' }),
    rewrap: RewrapSchema,
  },
  { ...strict, default: {}, 'x-kubernetes-validations': celRules(KMS_RULES), description: 'Key management.' },
);

export const BootstrapSchema = Type.Object(
  {
    tokenSecretRef: Type.Optional(
      secretKeyRefSchema('Secret key holding the bootstrap token, the same for every pod. When absent the operator generates <name>-bootstrap-token once.'),
    ),
  },
  { ...strict, default: {}, description: 'The bootstrap admin token (mint real tokens with it, then revoke it).' },
);

/**
 * Transition rule on `spec.wireguard` (API server only): the key generation
 * only counts up. Lowering it would do nothing (a rotation starts when it
 * rises above the generation recorded on the key Secret), so it is refused.
 */
export const WIREGUARD_TRANSITION_RULES: readonly { rule: string; message: string }[] = [
  {
    rule: 'self.keyGeneration >= oldSelf.keyGeneration',
    message: 'wireguard.keyGeneration cannot decrease; raise it to rotate the WireGuard keys',
  },
];

export const WireguardSchema = Type.Object(
  {
    enabled: Type.Boolean({
      default: false,
      description:
        'Carry Raft traffic over a WireGuard mesh between the pods (a wireguard-go sidecar per pod). Decide at creation: switching it on or off on a running cluster changes every node\'s Raft address.',
    }),
    port: Type.Integer({ minimum: 1, maximum: 65_535, default: 51_820, description: 'WireGuard UDP port.' }),
    cidr: Type.String({
      pattern: IPV4_CIDR, default: '10.77.0.0/24',
      description: 'Tunnel address range, one address per pod: ordinal i gets the network address + i + 1. Must be a network address with room for every replica plus the network and broadcast addresses.',
      errorMessage: 'must be an IPv4 CIDR such as 10.77.0.0/24',
    } as Friendly),
    keyGeneration: Type.Integer({
      minimum: 1, maximum: 1_000_000_000, default: 1,
      description: 'Raise to rotate every pod\'s WireGuard key pair, one pod at a time (see status.wireguard). Never decreases.',
    }),
    managementOnOverlay: Type.Boolean({
      default: false,
      description: 'Serve the management routes on port 8202 of each pod\'s overlay address only (VAULT_MGMT_ADDR); value reads and health stay on the API port.',
    }),
  },
  { ...strict, default: {}, 'x-kubernetes-validations': celRules(WIREGUARD_TRANSITION_RULES), description: 'Encrypted node-to-node transport.' },
);

export const StorageSchema = Type.Object(
  {
    size: Type.String({
      pattern: QUANTITY, default: '1Gi', description: 'Size of each node\'s data volume. Immutable.',
      errorMessage: 'must be a Kubernetes quantity such as 1Gi',
    } as Friendly),
    storageClassName: Type.Optional(Type.String({ maxLength: 253, description: 'StorageClass of the data volumes (cluster default when absent). Immutable.' })),
    deleteClaimsOnScaleDown: Type.Boolean({
      default: false,
      description: 'Delete a node\'s PersistentVolumeClaim when the cluster is scaled down. Off by default: claims are kept.',
    }),
    deleteClaimsOnDelete: Type.Boolean({
      default: false,
      description: 'Delete the PersistentVolumeClaims (and the generated key Secrets) when the VaultCluster is deleted. Off by default: data survives.',
    }),
  },
  { ...strict, default: {}, 'x-kubernetes-validations': celRules(STORAGE_TRANSITION_RULES), description: 'Per-node persistent storage.' },
);

/**
 * spec.audit: how long a node keeps its audit records, how large audit.db may
 * grow, and whether each record also goes to stdout. The checks that need
 * more than a pattern (retention range, the cap against storage.size) are in
 * ./audit.ts.
 */
export const AuditSchema = Type.Object(
  {
    retention: Type.String({
      pattern: AUDIT_RETENTION_PATTERN, default: '30d',
      description: 'Audit records older than this are pruned, oldest first (never before an enabled export delivered them): a count and a unit, s, m, h or d (30d, 12h, 90m); 1h to 3650d. VAULT_AUDIT_RETENTION.',
      errorMessage: 'must be a duration such as 30d, 12h or 90m (a whole number and s, m, h or d)',
    } as Friendly),
    maxBytes: Type.Optional(Type.Union([Type.Integer(), Type.String({ pattern: QUANTITY })], {
      description: 'Cap on each node\'s audit.db, a quantity (256Mi): the oldest delivered records go first when it is reached. Default a quarter of storage.size (256Mi on the default 1Gi volume). At least 1Mi and smaller than storage.size. Size it as bytes per request x requests per second x retention (README, Audit log). VAULT_AUDIT_MAX_BYTES, in bytes.',
      errorMessage: 'must be a Kubernetes quantity such as 256Mi',
    } as Friendly)),
    stdout: Type.Boolean({
      default: true,
      description: 'Write each durable audit record as one JSON line (marked "coffer_audit":1) on the vault container\'s stdout, for a log pipeline. VAULT_AUDIT_STDOUT.',
    }),
  },
  { ...strict, default: {}, description: 'Audit log retention, size cap and export (see README, Audit log).' },
);

export const TlsSchema = Type.Object(
  {
    secretName: Type.String({
      minLength: 1, maxLength: 253, pattern: DNS_SUBDOMAIN,
      description: 'kubernetes.io/tls Secret (tls.crt, tls.key) for the API listener.',
      errorMessage: 'must be a valid Secret name (lowercase RFC 1123 subdomain)',
    } as Friendly),
  },
  { ...strict, description: 'Serve the API over TLS.' },
);

export const ServiceAccountSchema = Type.Object(
  {
    annotations: Type.Record(Type.String(), Type.String(), {
      default: {},
      description: 'Annotations of the ServiceAccount, e.g. eks.amazonaws.com/role-arn for IRSA.',
    }),
  },
  { ...strict, default: {}, description: 'The ServiceAccount the vault pods run as.' },
);

/** Longest spec.readAllowlistFrom: each entry costs a pod list per reconcile. */
export const MAX_READ_ALLOWLIST_FROM = 16;
/** Most labels one readAllowlistFrom selector may require. */
export const MAX_SELECTOR_LABELS = 16;
/** A label key: optional DNS-subdomain prefix and `/`, then a name of at most 63 characters. */
export const LABEL_KEY =
  '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$';
/** A label value: empty, or at most 63 characters starting and ending alphanumeric. */
export const LABEL_VALUE = '^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$';

/**
 * One `spec.readAllowlistFrom` entry: the pods in exactly `namespace` whose
 * labels include every `podSelector.matchLabels` pair. Their pod IPs join the
 * read allowlist (the `<name>-read-allowlist` ConfigMap). The namespace is
 * required and never a wildcard: a pod elsewhere with the same labels must
 * not become a reader.
 */
export const ReadAllowlistFromSchema = Type.Object(
  {
    namespace: Type.String({
      minLength: 1, maxLength: 63, pattern: DNS_LABEL.replace('^[a-z]', '^[a-z0-9]'),
      description: 'Namespace of the pods (exact; required).',
      errorMessage: 'must be a namespace name (lowercase RFC 1123 label)',
    } as Friendly),
    podSelector: Type.Object(
      {
        matchLabels: Type.Record(
          Type.String({ maxLength: 317, pattern: LABEL_KEY }),
          Type.String({ maxLength: 63, pattern: LABEL_VALUE, errorMessage: 'must be a label value (at most 63 characters)' } as Friendly),
          {
            // Keys outside the pattern are refused (operator-side: the CRD
            // cannot constrain map keys without CEL).
            additionalProperties: false, minProperties: 1, maxProperties: MAX_SELECTOR_LABELS,
            description: `Labels every selected pod has (1 to ${MAX_SELECTOR_LABELS}).`,
          },
        ),
      },
      { ...strict, description: 'Which pods of the namespace: every label listed must match.' },
    ),
  },
  { ...strict, description: 'Pods whose IPs may read secret values.' },
);

export const VaultClusterSpecSchema = Type.Object(
  {
    replicas: ReplicasSchema,
    image: Type.String({ minLength: 1, pattern: '^\\S+$', description: 'Container image of the coffer server.', errorMessage: 'must be a container image reference without spaces' } as Friendly),
    readAllowlist: Type.Array(
      Type.String({ pattern: IPV4_OR_CIDR, errorMessage: 'must be an IPv4 address or CIDR such as 10.0.0.0/8' } as Friendly),
      { default: [], maxItems: 256, description: 'IPv4 addresses and CIDRs allowed to read secret values. Empty: nobody.' },
    ),
    readAllowlistFrom: Type.Array(ReadAllowlistFromSchema, {
      default: [], maxItems: MAX_READ_ALLOWLIST_FROM,
      description:
        'Pods allowed to read secret values, by namespace and labels: the operator keeps their pod IPs (Running pods only) with readAllowlist in the <name>-read-allowlist ConfigMap, mounted into the vault pods as VAULT_READ_ALLOWLIST_FILE. A pod IP change updates only the ConfigMap, never the pod template.',
    }),
    trustProxy: Type.Boolean({
      default: false,
      description: 'Take the client IP from the right-most X-Forwarded-For entry of a request that comes from one of trustedProxies (required with it).',
    }),
    trustedProxies: Type.Array(
      Type.String({ pattern: IPV4_OR_CIDR, errorMessage: 'must be an IPv4 address or CIDR such as 10.0.0.0/8' } as Friendly),
      {
        default: [], maxItems: 64,
        description: 'IPv4 addresses and CIDRs of the proxies (ingress controllers, load balancers) whose X-Forwarded-For is believed; required when trustProxy is true.',
      },
    ),
    kms: KmsSchema,
    bootstrap: BootstrapSchema,
    wireguard: WireguardSchema,
    storage: StorageSchema,
    tls: Type.Optional(TlsSchema),
    serviceAccount: ServiceAccountSchema,
    audit: AuditSchema,
    resources: Type.Optional(ResourceRequirementsSchema),
  },
  { ...strict, 'x-kubernetes-validations': celRules(SPEC_RULES), description: 'Desired state of a coffer vault cluster.' },
);

// ---------------------------------------------------------------- status

// The status schemas live in status-schema.ts (kept apart so each file stays small); re-exported here.
export * from './status-schema.js';
import { VaultClusterStatusSchema } from './status-schema.js';

/**
 * Object metadata as the operator needs it; other fields pass through
 * untyped (creationTimestamp may be a string or, via client-node models, a
 * Date). The CRD does not carry this schema (the API server owns metadata);
 * it only restricts the name.
 */
export function objectMetaSchema<N extends TSchema>(name: N) {
  return Type.Object(
    {
      name,
      namespace: Type.Optional(Type.String({ minLength: 1 })),
      uid: Type.Optional(Type.String()),
      generation: Type.Optional(Type.Integer()),
      resourceVersion: Type.Optional(Type.String()),
      labels: Type.Optional(Type.Record(Type.String(), Type.String())),
      annotations: Type.Optional(Type.Record(Type.String(), Type.String())),
    },
    { additionalProperties: true },
  );
}

export const ObjectMetaSchema = objectMetaSchema(
  Type.String({
    minLength: 1, maxLength: MAX_NAME_LENGTH, pattern: DNS_LABEL,
    errorMessage: `must be a lowercase RFC 1035 label of at most ${MAX_NAME_LENGTH} characters`,
  } as Friendly),
);

export const VaultClusterSchema = Type.Object(
  {
    apiVersion: Type.Literal(API_VERSION, { errorMessage: `must be ${API_VERSION}` } as Friendly),
    kind: Type.Literal(KIND, { errorMessage: `must be ${KIND}` } as Friendly),
    metadata: ObjectMetaSchema,
    spec: VaultClusterSpecSchema,
    status: Type.Optional(VaultClusterStatusSchema),
  },
  { ...strict, description: 'A coffer vault cluster: a StatefulSet of Raft-replicated vault nodes managed by the coffer operator.' },
);

/** Columns `kubectl get vc` prints. */
export const PRINTER_COLUMNS: readonly { name: string; type: string; jsonPath: string; description?: string; priority?: number }[] = [
  { name: 'Replicas', type: 'integer', jsonPath: '.spec.replicas', description: 'Desired vault nodes' },
  { name: 'Members', type: 'integer', jsonPath: '.status.members', description: 'Raft voters the cluster has (the size a resize started from, while one runs)' },
  { name: 'Ready', type: 'integer', jsonPath: '.status.readyReplicas', description: 'Nodes passing /v1/ready' },
  { name: 'Leader', type: 'string', jsonPath: '.status.leader', description: 'Raft leader' },
  { name: 'Phase', type: 'string', jsonPath: '.status.rollout.phase', description: 'Rollout phase' },
  { name: 'Resize', type: 'string', jsonPath: '.status.resize.phase', description: 'Resize phase, while spec.replicas is being applied', priority: 1 },
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
];

export type { TSchema };
