// Replicated commands: the only way state.db changes. Each carries a type and
// a version. One module per family under commands/ (secret, token, role,
// cluster, state, kms) holds its shapes, its builders (proposers never write
// a command literal; the builder decides the version), its validation, its
// forwarding rule and the caches it invalidates; commands/registry.ts joins
// them. This file is the wire codec and what is derived from the table.
//
// Wire form: UTF-8 JSON with binary fields as base64. Two kinds of failure:
// - a type or version this build does not know (UnknownCommandError): version
//   skew, so the node must stop applying, never skip;
// - a known command whose content is invalid (InvalidCommandError): every node
//   reaches the same verdict, so it applies as a deterministic rejection.
import type { CacheScope } from './commands/definition.js';
import { shapeProblem } from './commands/fields.js';
import { COMMANDS, type Command, type CommandType } from './commands/registry.js';

export type { CacheScope } from './commands/definition.js';
export * from './commands/cluster.js';
export * from './commands/kms.js';
export type { Command, CommandType } from './commands/registry.js';
export * from './commands/role.js';
export * from './commands/secret.js';
export * from './commands/state.js';
export * from './commands/token.js';

/** Highest version this build decodes, per type (it decodes every version from 1 up). */
const BUILT_IN_COMMANDS = Object.fromEntries(
  Object.entries(COMMANDS).map(([t, def]) => [t, Math.max(...Object.keys(def.versions).map(Number))]),
) as Record<CommandType, number>;

/**
 * COFFER_UNSUPPORTED_COMMANDS makes this process behave like an older release
 * that lacks some commands: `type` drops the type, `type@N` drops version N and
 * later. Tests use it to exercise rollout gating; never set it in production.
 */
const UNSUPPORTED = (process.env.COFFER_UNSUPPORTED_COMMANDS ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);

function withoutUnsupported(all: Record<CommandType, number>): Record<CommandType, number> {
  const out = { ...all } as Partial<Record<CommandType, number>>;
  for (const item of UNSUPPORTED) {
    const [t, v] = item.split('@') as [CommandType, string | undefined];
    if (!(t in out)) continue;
    const below = v === undefined ? 0 : Number(v) - 1;
    if (below < 1) delete out[t];
    else out[t] = Math.min(out[t]!, below);
  }
  return out as Record<CommandType, number>;
}

export const SUPPORTED_COMMANDS = withoutUnsupported(BUILT_IN_COMMANDS);

/**
 * Raft behaviour a leader relies on in every voter, advertised beside the
 * commands: this voter refuses votes for an election timeout after it
 * starts, which lease-based reads need (server/raft/lease.ts). Dropped like
 * a command by COFFER_UNSUPPORTED_COMMANDS=raft.lease-votes.
 */
export const LEASE_VOTES = 'raft.lease-votes@1';

/**
 * Advertised to peers as `type@version`, one entry per version this build
 * decodes, so a leader can check for exactly the version it means to propose.
 */
export function capabilities(): string[] {
  const commands = Object.entries(SUPPORTED_COMMANDS).flatMap(([t, max]) => Array.from({ length: max }, (_, i) => `${t}@${i + 1}`));
  return UNSUPPORTED.includes(LEASE_VOTES.split('@')[0]!) ? commands : [...commands, LEASE_VOTES];
}

/**
 * The command versions every release that can be a voter decodes: the seven
 * of the first release with Raft (which is also the first that advertised
 * capabilities), and every build decodes each version from 1 up of every
 * type it knows. The leader may propose these without having heard a voter
 * (one down since before this leader's term), so a cluster that lost one
 * voter still takes writes after a leader change. Never add to this list.
 */
export const BASELINE_COMMANDS: ReadonlySet<string> = new Set([
  'secret.put@1',
  'secret.delete@1',
  'token.create@1',
  'token.bootstrap@1',
  'token.revoke@1',
  'role.put@1',
  'role.delete@1',
]);

export function capability(cmd: Pick<Command, 't' | 'v'>): string {
  return `${cmd.t}@${cmd.v}`;
}

/** A type or version this build does not know: the node stops applying rather than skip it. */
export class UnknownCommandError extends Error {
  override readonly name = 'UnknownCommandError';
}

/** A known command whose content is not valid: applied as a rejection, identically on every node. */
export class InvalidCommandError extends Error {
  override readonly name = 'InvalidCommandError';
}

export function encodeCommand(cmd: Command): Uint8Array {
  const bin = COMMANDS[cmd.t].binary;
  const out: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(cmd)) {
    out[k] = bin.includes(k) ? Buffer.from(val as Uint8Array).toString('base64') : val;
  }
  return Buffer.from(JSON.stringify(out), 'utf8');
}

/** Quotes an outside string for a message, bounded (it may end up in /v1/health). */
const quote = (v: unknown): string => JSON.stringify(typeof v === 'string' ? v.slice(0, 64) : typeof v === 'number' ? v : typeof v);

/**
 * Decodes one command: UnknownCommandError when it is not a command this
 * build knows (not JSON, not an object, unknown type or version),
 * InvalidCommandError when its content fails validation.
 */
export function decodeCommand(data: Uint8Array): Command {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch {
    throw new UnknownCommandError('command is not valid JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new UnknownCommandError('command is not a JSON object');
  const fields = raw as Record<string, unknown>;
  const t = fields.t;
  const v = fields.v;
  if (typeof t !== 'string' || !Object.hasOwn(SUPPORTED_COMMANDS, t)) throw new UnknownCommandError(`unknown command type ${quote(t)}`);
  const type = t as CommandType;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > SUPPORTED_COMMANDS[type]) {
    throw new UnknownCommandError(`unsupported version ${quote(v)} of command ${type}`);
  }
  const def = COMMANDS[type];
  for (const k of def.binary) {
    if (typeof fields[k] === 'string') fields[k] = new Uint8Array(Buffer.from(fields[k] as string, 'base64'));
  }
  const problem = shapeProblem(fields, def.versions[v]!) ?? def.refine?.(fields as unknown as Command) ?? null;
  if (problem) throw new InvalidCommandError(`invalid ${type}@${v}: ${problem}`);
  return fields as unknown as Command;
}

/** The reader caches applying `cmd` may make stale. */
export function invalidatedBy(cmd: Command): readonly CacheScope[] {
  return COMMANDS[cmd.t].invalidates;
}

/**
 * What the leader accepts from a follower on /raft/v1/propose: a command it
 * could have built itself (decoded and validated the same way) of a type a
 * follower may forward. Throws UnknownCommandError (answered 400) otherwise.
 */
export function admitForwardedCommand(data: Uint8Array): Command {
  let cmd: Command;
  try {
    cmd = decodeCommand(data);
  } catch (err) {
    if (err instanceof InvalidCommandError) throw new UnknownCommandError(err.message);
    throw err;
  }
  if (!COMMANDS[cmd.t].forwardable) throw new UnknownCommandError(`command ${cmd.t} is not accepted from a follower`);
  return cmd;
}
