// state.*: the whole state replaced by a saved image.
import { imageProblem } from '../image.js';
import type { Definitions, Fields } from './definition.js';
import { bytes, isoTime, MAX_IMAGE_BYTES } from './fields.js';

/** Replaces the secrets, versions, roles, tokens and KMS state with a saved image (membership is kept). */
export interface StateRestoreV1 {
  t: 'state.restore';
  v: 1;
  image: Uint8Array;
}

/**
 * Like v1, but every revocation in the current state survives: a token
 * revoked now (by name or digest) stays revoked, and a token whose role was
 * deleted is revoked at `at` before its role comes back from the image.
 */
export interface StateRestoreV2 {
  t: 'state.restore';
  v: 2;
  image: Uint8Array;
  at: string;
}

export type StateCommand = StateRestoreV1 | StateRestoreV2;

export const stateRestore = (fields: Fields<StateRestoreV2>): StateRestoreV2 => ({ t: 'state.restore', v: 2, ...fields });

export const STATE_COMMANDS: Definitions<StateCommand> = {
  'state.restore': {
    versions: { 1: { image: bytes(1, MAX_IMAGE_BYTES) }, 2: { image: bytes(1, MAX_IMAGE_BYTES), at: isoTime } },
    // The whole image, again on every node at apply: a restore that cannot be applied completely is refused, never half-done.
    refine: (c) => imageProblem(c.image),
    binary: ['image'],
    forwardable: true,
    invalidates: ['secrets', 'auth'],
  },
};
