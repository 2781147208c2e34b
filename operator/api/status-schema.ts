// The VaultCluster status as TypeBox schemas: part of the one schema in
// schema.ts (which re-exports everything here), kept in a file of its own.
import { Type } from '@sinclair/typebox';

const strict = { additionalProperties: false } as const;
const CONDITION_TYPE =
  '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$';
const CONDITION_REASON = '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$';

/**
 * Phases of the rotation-flag rollout (DESIGN §6). Turning
 * `kms.rewrap.enabled` on first rolls every pod to the current release with
 * the flag off, waits for the gate (StatefulSet fully rolled and ready, every
 * pod's /v1/health reporting the release), then sets the flag and rolls again.
 */
export const ROLLOUT_PHASES = [
  /** Nothing in progress: the StatefulSet matches the spec. */
  'Idle',
  /** Rolling every pod to targetImage with VAULT_KMS_REWRAP_ENABLED=false. */
  'RollingOutFlagOff',
  /** Waiting until the StatefulSet is fully rolled and every pod reports the release. */
  'WaitingForGate',
  /** Writing VAULT_KMS_REWRAP_ENABLED=true into the pod template. */
  'EnablingFlag',
  /** Rolling every pod with the flag on. */
  'RollingOutFlagOn',
  /** The flag is on everywhere; the rollout finished. */
  'Complete',
] as const;

export const RolloutStatusSchema = Type.Object(
  {
    phase: Type.Union(ROLLOUT_PHASES.map((p) => Type.Literal(p)), { default: 'Idle', description: 'Where the rollout is.' }),
    targetImage: Type.Optional(Type.String({ description: 'Image the rollout is moving every pod to.' })),
    targetRewrap: Type.Optional(Type.Boolean({ description: 'Value of VAULT_KMS_REWRAP_ENABLED the rollout ends with.' })),
    currentRewrap: Type.Optional(Type.Boolean({ description: 'Value of VAULT_KMS_REWRAP_ENABLED in the StatefulSet pod template now.' })),
    targetRevision: Type.Optional(Type.String({ description: 'StatefulSet updateRevision the current step waits for.' })),
    startedAt: Type.Optional(Type.String({ format: 'date-time', description: 'When this rollout started.' })),
    lastTransitionTime: Type.Optional(Type.String({ format: 'date-time', description: 'When the phase last changed.' })),
    message: Type.Optional(Type.String({ maxLength: 32_768, description: 'Human-readable progress.' })),
  },
  { ...strict, description: 'Progress of a release or rotation-flag rollout; a restarted operator resumes from here.' },
);

/** Steps of one ordinal's WireGuard key rotation (operator/wireguard/rotation.ts). */
export const WIREGUARD_ROTATION_STEPS = [
  /** The ordinal is next: its new key pair is written once the cluster is fully ready. */
  'ReplacingKey',
  /** The new key is in the Secret and the ConfigMap; the pod is evicted and the operator waits until it is Ready again. */
  'RestartingPod',
] as const;

export const WireguardStatusSchema = Type.Object(
  {
    keyGeneration: Type.Integer({ minimum: 1, description: 'Generation every pod\'s WireGuard key has (also the coffer.dev/wireguard-key-generation annotation of the key Secret).' }),
    targetKeyGeneration: Type.Optional(Type.Integer({ minimum: 1, description: 'Generation a rotation in progress moves every key to.' })),
    rotatingOrdinal: Type.Optional(Type.Integer({ minimum: 0, description: 'Ordinal whose key is being rotated now.' })),
    step: Type.Optional(Type.Union(WIREGUARD_ROTATION_STEPS.map((s) => Type.Literal(s)), { description: 'Where the rotation of rotatingOrdinal is.' })),
    podUID: Type.Optional(Type.String({ description: 'UID of the pod instance that still runs with the old key (the one to restart).' })),
    startedAt: Type.Optional(Type.String({ format: 'date-time', description: 'When this rotation started.' })),
    lastTransitionTime: Type.Optional(Type.String({ format: 'date-time', description: 'When the ordinal or step last changed.' })),
    message: Type.Optional(Type.String({ maxLength: 32_768, description: 'Human-readable progress.' })),
  },
  { ...strict, description: 'WireGuard key state and the progress of a key rotation; a restarted operator resumes from here.' },
);

/**
 * Phases of a live resize (a changed spec.replicas on a formed cluster;
 * operator/resize/machine.ts). The declared members live in the
 * `<name>-members` ConfigMap the leader's autopilot reads.
 */
export const RESIZE_PHASES = [
  /** Requested; waits until a release rollout or a WireGuard key rotation in progress finishes (nothing changed yet). */
  'Pending',
  /** The StatefulSet is scaled up and the new members declared; waiting until the leader's voters are exactly the declared set. */
  'ScalingUp',
  /** The smaller set is declared; the StatefulSet keeps its pods until the leader's voters and learners are all declared. */
  'RemovingMembers',
  /** The extra members are out of Raft and the StatefulSet is scaled down (PVCs kept); waiting until its pods are gone and the voters are the declared set. */
  'ScalingDown',
] as const;

export const ResizeStatusSchema = Type.Object(
  {
    from: Type.Integer({ minimum: 1, description: 'Raft size before this resize (status.members when it started).' }),
    to: Type.Integer({ minimum: 1, description: 'Raft size this resize moves to (spec.replicas).' }),
    phase: Type.Union(RESIZE_PHASES.map((p) => Type.Literal(p)), { description: 'Where the resize is.' }),
    startedAt: Type.Optional(Type.String({ format: 'date-time', description: 'When this resize started.' })),
    lastTransitionTime: Type.Optional(Type.String({ format: 'date-time', description: 'When the phase last changed.' })),
    message: Type.Optional(Type.String({ maxLength: 32_768, description: 'Human-readable progress: what the resize waits for.' })),
  },
  { ...strict, description: 'Progress of a live resize (spec.replicas changed on a formed cluster); absent when none is in progress. A restarted operator resumes from here and from the StatefulSet and members ConfigMap.' },
);

/** metav1.Condition. */
export const ConditionSchema = Type.Object(
  {
    type: Type.String({ maxLength: 316, pattern: CONDITION_TYPE }),
    status: Type.Union([Type.Literal('True'), Type.Literal('False'), Type.Literal('Unknown')]),
    observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
    lastTransitionTime: Type.String({ format: 'date-time' }),
    reason: Type.String({ minLength: 1, maxLength: 1024, pattern: CONDITION_REASON }),
    message: Type.String({ maxLength: 32_768 }),
  },
  strict,
);

export const CONDITION_TYPES = ['Ready', 'Progressing', 'Degraded', 'RewrapEnabled'] as const;

export const VaultClusterStatusSchema = Type.Object(
  {
    observedGeneration: Type.Optional(Type.Integer({ minimum: 0, description: 'metadata.generation the status describes.' })),
    readyReplicas: Type.Optional(Type.Integer({ minimum: 0, description: 'Pods passing /v1/ready.' })),
    members: Type.Optional(
      Type.Integer({
        minimum: 1,
        description:
          'Raft voters the cluster has: the size it was formed with, or the size the last completed resize reached. While status.resize is set, the size the resize started from.',
      }),
    ),
    leader: Type.Optional(Type.String({ description: 'Node id (pod name) of the Raft leader, when known.' })),
    rollout: Type.Optional(RolloutStatusSchema),
    resize: Type.Optional(ResizeStatusSchema),
    wireguard: Type.Optional(WireguardStatusSchema),
    conditions: Type.Optional(
      Type.Array(ConditionSchema, {
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['type'],
        description: 'Ready, Progressing, Degraded and RewrapEnabled.',
      }),
    ),
  },
  { ...strict, description: 'Observed state, written by the operator.' },
);

// ---------------------------------------------------------------- object
