// The CofferSecret API (coffer.dev/v1alpha1) as one TypeBox schema, the
// single source of truth like operator/api/schema.ts is for VaultCluster:
// the CRD in crds/ is generated from it (sync/crd/generate.ts), the static
// types come from it (./types.ts), and the sync controller validates and
// defaults every object it reads with it (./validate.ts). Field names follow
// DESIGN §6.
//
// A CofferSecret names Coffer secrets; the sync controller keeps one
// Kubernetes Secret equal to them and restarts the workloads that use it
// when a version changes. Values never appear in this object.
import { Type } from '@sinclair/typebox';
import {
  API_VERSION, ConditionSchema, DNS_LABEL, DNS_SUBDOMAIN, GROUP, LABEL_KEY, SECRET_KEY, VERSION, objectMetaSchema,
  type CrossFieldRule,
} from '../../operator/api/schema.js';

export { API_VERSION, GROUP, VERSION };
export const KIND = 'CofferSecret';
export const LIST_KIND = 'CofferSecretList';
export const PLURAL = 'coffersecrets';
export const SINGULAR = 'coffersecret';
export const SHORT_NAMES: readonly string[] = ['csec'];
export const CRD_NAME = `${PLURAL}.${GROUP}`;

/** Most Coffer secrets one CofferSecret may name (one blocking query carries them all). */
export const MAX_DATA_ITEMS = 64;
/** Most workloads one CofferSecret restarts. */
export const MAX_RESTART_TARGETS = 16;
/** Coffer secret names (DESIGN §4): segments of [A-Za-z0-9._-]+ joined by '/', no '.' or '..' segment. */
// RE2 (the API server's regexp) has no lookahead: a segment starts with a non-dot, or a dot and a non-dot, or two dots and more.
const COFFER_SEGMENT = '([A-Za-z0-9_-][A-Za-z0-9._-]*|\\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\\.\\.[A-Za-z0-9._-]+)';
export const COFFER_NAME = `^${COFFER_SEGMENT}(/${COFFER_SEGMENT})*$`;
/** A duration as the sync controller parses it: 30s, 5m, 1h, 1h30m (at least 10s, at most 24h, checked in ./validate.ts). */
export const DURATION = '^([0-9]+h)?([0-9]+m)?([0-9]+s)?$';
export const RESTART_KINDS = ['Deployment', 'StatefulSet', 'DaemonSet'] as const;

interface Friendly {
  errorMessage?: string;
}
const strict = { additionalProperties: false } as const;

// ---------------------------------------------------------------- cross-field rules

/** Rules on `spec.vaultRef`. */
export const VAULT_REF_RULES: readonly CrossFieldRule<{ name?: string; namespace?: string; address?: string }>[] = [
  {
    at: 'spec.vaultRef',
    rule: 'has(self.name) != has(self.address)',
    message: 'vaultRef needs exactly one of name (a VaultCluster) or address (https://… or http://…)',
    check: (r) => (r.name !== undefined) !== (r.address !== undefined),
  },
  {
    at: 'spec.vaultRef',
    rule: '!has(self.address) || !has(self.namespace)',
    message: 'vaultRef.namespace only goes with vaultRef.name',
    fieldPath: '.namespace',
    check: (r) => r.address === undefined || r.namespace === undefined,
  },
];

/** Rules on `spec.data`: each Secret key at most once. */
export const DATA_RULES: readonly CrossFieldRule<readonly { key: string }[]>[] = [
  {
    at: 'spec.data',
    rule: 'self.all(x, self.exists_one(y, y.key == x.key))',
    message: 'each key may appear only once in data',
    check: (items) => new Set(items.map((i) => i.key)).size === items.length,
  },
];

export function celRules(
  rules: readonly { rule: string; message: string; fieldPath?: string; reason?: string }[],
): { rule: string; message: string; fieldPath?: string; reason?: string }[] {
  return rules.map(({ rule, message, fieldPath, reason }) => ({
    rule, message, ...(fieldPath !== undefined ? { fieldPath } : {}), ...(reason !== undefined ? { reason } : {}),
  }));
}

// ---------------------------------------------------------------- spec

const NAMESPACE = DNS_LABEL.replace('^[a-z]', '^[a-z0-9]');

export const VaultRefSchema = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 63, pattern: DNS_LABEL, description: 'A VaultCluster: its client Service is used.' })),
    namespace: Type.Optional(Type.String({
      minLength: 1, maxLength: 63, pattern: NAMESPACE, description: "The VaultCluster's namespace (default: the CofferSecret's).",
    })),
    address: Type.Optional(Type.String({
      minLength: 1, maxLength: 2048, pattern: '^https?://[^\\s/?#]+/?$',
      description: 'Base URL of a Coffer API outside this cluster (instead of name).',
      errorMessage: 'must be http(s)://host[:port]',
    } as Friendly)),
  },
  { ...strict, 'x-kubernetes-validations': celRules(VAULT_REF_RULES), description: 'Which Coffer to read from.' },
);

export const TokenSecretRefSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 253, pattern: DNS_SUBDOMAIN, description: "A Secret in the CofferSecret's namespace." }),
    key: Type.String({ minLength: 1, maxLength: 253, pattern: SECRET_KEY, default: 'token', description: 'Key holding the Coffer token.' }),
  },
  { ...strict, description: 'The Coffer token the controller uses for this CofferSecret (read_metadata on every name in data).' },
);

export const DataItemSchema = Type.Object(
  {
    key: Type.String({ minLength: 1, maxLength: 253, pattern: SECRET_KEY, description: 'Key in the target Secret.' }),
    name: Type.String({
      minLength: 1, maxLength: 256, pattern: COFFER_NAME, description: 'Coffer secret name.',
      errorMessage: 'must be a Coffer secret name (segments of letters, digits, ., _ and - joined by /)',
    } as Friendly),
    version: Type.Optional(Type.Integer({ minimum: 1, description: 'Pin this version; absent = follow the current one.' })),
  },
  { ...strict, description: 'One key of the target Secret and the Coffer secret it holds.' },
);

export const TargetSchema = Type.Object(
  {
    name: Type.Optional(Type.String({
      minLength: 1, maxLength: 253, pattern: DNS_SUBDOMAIN, description: "The Secret's name (default: the CofferSecret's).",
    })),
    type: Type.String({ minLength: 1, maxLength: 253, default: 'Opaque', description: 'Secret type.' }),
    labels: Type.Optional(Type.Record(Type.String({ maxLength: 317, pattern: LABEL_KEY }), Type.String({ maxLength: 63 }), {
      maxProperties: 64, description: 'Labels on the Secret.',
    })),
    annotations: Type.Optional(Type.Record(Type.String({ maxLength: 317 }), Type.String({ maxLength: 4096 }), {
      maxProperties: 64, description: 'Annotations on the Secret.',
    })),
  },
  { ...strict, default: {}, description: 'The Kubernetes Secret the controller writes, in the same namespace (owned by this CofferSecret).' },
);

export const RestartTargetSchema = Type.Object(
  {
    kind: Type.Union(RESTART_KINDS.map((k) => Type.Literal(k)), { description: 'Deployment, StatefulSet or DaemonSet.' }),
    name: Type.String({ minLength: 1, maxLength: 253, pattern: DNS_SUBDOMAIN, description: 'Name, in the same namespace.' }),
  },
  { ...strict, description: 'A workload whose pods are restarted (rolled) when a synced version changes.' },
);

export const CofferSecretSpecSchema = Type.Object(
  {
    vaultRef: VaultRefSchema,
    tokenSecretRef: TokenSecretRefSchema,
    data: Type.Array(DataItemSchema, {
      minItems: 1, maxItems: MAX_DATA_ITEMS,
      'x-kubernetes-validations': celRules(DATA_RULES),
      description: 'The Secret\'s keys and the Coffer secrets they hold.',
    }),
    target: TargetSchema,
    refreshInterval: Type.String({
      pattern: DURATION, minLength: 2, maxLength: 16, default: '5m',
      description: 'A safety net: a full re-check this often. Changes arrive by blocking query within seconds.',
      errorMessage: 'must be a duration such as 30s, 5m or 1h',
    } as Friendly),
    rolloutRestartTargets: Type.Array(RestartTargetSchema, {
      maxItems: MAX_RESTART_TARGETS, default: [],
      description: 'Workloads to roll when a synced version changes (their pod template gets the versions hash).',
    }),
  },
  { ...strict, description: 'Which Coffer secrets to copy into which Secret.' },
);

// ---------------------------------------------------------------- status

export const CONDITION_TYPES = ['Ready'] as const;
export const READY_REASONS = ['Synced', 'SecretNotFound', 'Forbidden', 'VaultUnavailable', 'TargetConflict', 'InvalidSpec'] as const;

export const CofferSecretStatusSchema = Type.Object(
  {
    observedGeneration: Type.Optional(Type.Integer({ minimum: 0, description: 'metadata.generation the status describes.' })),
    syncedVersions: Type.Optional(Type.Record(Type.String(), Type.Integer({ minimum: 1 }), {
      description: 'Coffer secret name -> version now in the target Secret.',
    })),
    versionsHash: Type.Optional(Type.String({ description: 'Hash of syncedVersions: the annotation the restart targets\' pod templates get.' })),
    lastSyncTime: Type.Optional(Type.String({ format: 'date-time', description: 'When the target Secret was last written or confirmed current.' })),
    conditions: Type.Optional(Type.Array(ConditionSchema, {
      'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'],
      description: 'Ready (reasons: Synced, SecretNotFound, Forbidden, VaultUnavailable, TargetConflict, InvalidSpec).',
    })),
  },
  { ...strict, description: 'Observed state, written by the sync controller. Never a value.' },
);

// ---------------------------------------------------------------- object

export const CofferSecretMetaSchema = objectMetaSchema(Type.String({ minLength: 1, maxLength: 253, pattern: DNS_SUBDOMAIN }));

export const CofferSecretSchema = Type.Object(
  {
    apiVersion: Type.Literal(API_VERSION, { errorMessage: `must be ${API_VERSION}` } as Friendly),
    kind: Type.Literal(KIND, { errorMessage: `must be ${KIND}` } as Friendly),
    metadata: CofferSecretMetaSchema,
    spec: CofferSecretSpecSchema,
    status: Type.Optional(CofferSecretStatusSchema),
  },
  { ...strict, description: 'Coffer secrets copied into a Kubernetes Secret by the coffer sync controller, kept current by blocking query.' },
);

/** Columns `kubectl get csec` prints. */
export const PRINTER_COLUMNS: readonly { name: string; type: string; jsonPath: string; description?: string }[] = [
  { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status', description: 'Target Secret equal to Coffer' },
  { name: 'Reason', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].reason', description: 'Why (Synced, SecretNotFound, …)' },
  { name: 'Synced', type: 'string', jsonPath: '.status.syncedVersions', description: 'Coffer secret -> version in the Secret' },
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
];
