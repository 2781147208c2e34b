// Static types of the CofferSecret API, derived from ./schema.ts. Types only.
import type { Static } from '@sinclair/typebox';
import type {
  CofferSecretSchema, CofferSecretSpecSchema, CofferSecretStatusSchema, DataItemSchema, READY_REASONS,
  RestartTargetSchema, VaultRefSchema,
} from './schema.js';

/** A CofferSecret after validation: every defaulted field is present. */
export type CofferSecret = Static<typeof CofferSecretSchema>;
export type CofferSecretSpec = Static<typeof CofferSecretSpecSchema>;
export type CofferSecretStatus = Static<typeof CofferSecretStatusSchema>;
export type DataItem = Static<typeof DataItemSchema>;
export type RestartTarget = Static<typeof RestartTargetSchema>;
export type VaultRef = Static<typeof VaultRefSchema>;
export type ReadyReason = (typeof READY_REASONS)[number];
