// One secret operation, three vocabularies. Each is fixed by its own contract
// and keeps its names: the action an audit record names, the role-rule
// actions (RBAC, DESIGN §4) that allow it, and the replicated command it
// proposes. They differ on purpose: a write is one audit action allowed by
// either of two rights (`create` for a new name, `update` for an existing one;
// the one a token holds is the write mode that travels with the command) and
// proposes secret.put, as a rotate does. This table says which is which; the
// routes take their audit action and the rights they check from it.
import type { PathAction } from '../rbac/rules.js';
import type { CommandType } from '../store/commands.js';

export interface SecretOperation {
  /** The audit record's `action`. */
  readonly audit: string;
  /** Role-rule actions that allow it on the name; none for a value read, which goes by the read allowlist instead. */
  readonly rights: readonly PathAction[];
  /** The command it proposes; null for a read. */
  readonly command: CommandType | null;
}

export const SECRET_OPERATIONS = {
  read: { audit: 'secret.read', rights: [], command: null },
  write: { audit: 'secret.write', rights: ['create', 'update'], command: 'secret.put' },
  rotate: { audit: 'secret.rotate', rights: ['rotate'], command: 'secret.put' },
  delete: { audit: 'secret.delete', rights: ['delete'], command: 'secret.delete' },
  readMetadata: { audit: 'secret.read_metadata', rights: ['read_metadata'], command: null },
  list: { audit: 'secret.list', rights: ['list'], command: null },
} as const satisfies Record<string, SecretOperation>;
