// Static types of the VaultCluster API, derived from the one schema in
// ./schema.ts. Types only: the runtime validator is ./validate.ts, so every
// part of the operator can name these without pulling in validation.
import type { Static } from '@sinclair/typebox';
import type {
  AuditSchema,
  CONDITION_TYPES,
  ConditionSchema,
  KmsSchema,
  ROLLOUT_PHASES,
  RESIZE_PHASES,
  ResizeStatusSchema,
  ReadAllowlistFromSchema,
  ResourceRequirementsSchema,
  RolloutStatusSchema,
  VaultClusterSchema,
  VaultClusterSpecSchema,
  VaultClusterStatusSchema,
  WIREGUARD_ROTATION_STEPS,
  WireguardSchema,
  WireguardStatusSchema,
  secretKeyRefSchema,
} from './schema.js';

/** A VaultCluster after validation: every defaulted field is present. */
export type VaultCluster = Static<typeof VaultClusterSchema>;
export type VaultClusterSpec = Static<typeof VaultClusterSpecSchema>;
export type VaultClusterStatus = Static<typeof VaultClusterStatusSchema>;
/** One spec.readAllowlistFrom entry. */
export type ReadAllowlistFrom = Static<typeof ReadAllowlistFromSchema>;
export type KmsSpec = Static<typeof KmsSchema>;
export type SecretKeyRef = Static<ReturnType<typeof secretKeyRefSchema>>;
export type ResourceRequirements = Static<typeof ResourceRequirementsSchema>;
export type WireguardSpec = Static<typeof WireguardSchema>;
/** spec.audit (maxBytes absent: a quarter of spec.storage.size). */
export type AuditSpec = Static<typeof AuditSchema>;
/** `status.wireguard`: key generation and the progress of a key rotation. */
export type WireguardStatus = Static<typeof WireguardStatusSchema>;
export type WireguardRotationStep = (typeof WIREGUARD_ROTATION_STEPS)[number];

/** `status.rollout.phase`. */
export type RolloutPhase = (typeof ROLLOUT_PHASES)[number];
/**
 * `status.rollout`: the rotation-flag rollout state machine persists itself
 * here so a restarted operator resumes where it stopped.
 */
export type RolloutStatus = Static<typeof RolloutStatusSchema>;
/** metav1.Condition. */
export type Condition = Static<typeof ConditionSchema>;
export type ConditionType = (typeof CONDITION_TYPES)[number];
/** `status.resize`: a live resize in progress. */
export type ResizeStatus = Static<typeof ResizeStatusSchema>;
export type ResizePhase = (typeof RESIZE_PHASES)[number];
