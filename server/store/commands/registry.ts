// Every command type, joined from its family module: the union of their
// shapes and one table of their definitions.
import { CLUSTER_COMMANDS, type ClusterCommand } from './cluster.js';
import type { CommandDefinition } from './definition.js';
import { KMS_COMMANDS, type KmsCommand } from './kms.js';
import { ROLE_COMMANDS, type RoleCommand } from './role.js';
import { SECRET_COMMANDS, type SecretCommand } from './secret.js';
import { STATE_COMMANDS, type StateCommand } from './state.js';
import { TOKEN_COMMANDS, type TokenCommand } from './token.js';

export type Command = SecretCommand | TokenCommand | RoleCommand | ClusterCommand | StateCommand | KmsCommand;

export type CommandType = Command['t'];

export const COMMANDS: Readonly<Record<CommandType, CommandDefinition<Command>>> = {
  ...SECRET_COMMANDS,
  ...TOKEN_COMMANDS,
  ...ROLE_COMMANDS,
  ...CLUSTER_COMMANDS,
  ...STATE_COMMANDS,
  ...KMS_COMMANDS,
};
