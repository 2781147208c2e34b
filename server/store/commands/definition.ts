// What every command family declares about each of its types. Every field the
// apply step needs (timestamps included) is decided by the proposer, so
// applying the same log yields the same state on every node.
import type { Check } from './fields.js';

/** Reader caches a command may make stale: stored secret rows, token and role rows, the peer address book. */
export type CacheScope = 'secrets' | 'auth' | 'peers';

export interface CommandDefinition<C> {
  /** Fields (besides `t` and `v`) and their checks, per version this build decodes. */
  versions: Readonly<Record<number, Readonly<Record<string, Check>>>>;
  /** Checks across fields, run once every field passed its own. */
  refine?(cmd: C): string | null;
  /** Fields carried as base64 text on the wire. */
  binary: readonly string[];
  /**
   * Whether the leader accepts it from a follower on /raft/v1/propose. Only
   * what API routes build on any node: what the leader builds for itself
   * (bootstrap token, re-wrap worker, membership) is never taken from outside.
   */
  forwardable: boolean;
  invalidates: readonly CacheScope[];
}

/** The definitions of a family, one per type it holds. */
export type Definitions<C extends { t: string }> = { readonly [T in C['t']]: CommandDefinition<Extract<C, { t: T }>> };

/** What a builder takes: the command without its type and version, which the builder decides. */
export type Fields<C> = Omit<C, 't' | 'v'>;
