// kms.*: the re-wrap worker's bookkeeping.
import type { Definitions, Fields } from './definition.js';
import { kmsStateValues } from './fields.js';

/** Sets re-wrap bookkeeping in kms_state (watermark, last pass). */
export interface KmsStateV1 {
  t: 'kms.state';
  v: 1;
  values: Record<string, string>;
}

export type KmsCommand = KmsStateV1;

export const kmsState = (fields: Fields<KmsStateV1>): KmsStateV1 => ({ t: 'kms.state', v: 1, ...fields });

export const KMS_COMMANDS: Definitions<KmsCommand> = {
  'kms.state': {
    versions: { 1: { values: kmsStateValues } },
    binary: [],
    forwardable: false,
    invalidates: [],
  },
};
