// `coffer version` and `coffer --version`: the release this build reports (the
// same string as /v1/health's `release`), read locally: no server is asked.
import { RELEASE } from '../release.js';
import { checkFlags, UsageError, type ParsedArgs } from './args.js';
import { emit } from './output.js';

export const VERSION_HELP = `Usage:
  coffer version [--json]   print this build's release: 'coffer X.Y.Z', or {"version": "X.Y.Z"}
  coffer --version          the same

  The release is the one a node built from the same code reports in GET /v1/health
  (its 'release'). Compare it with a server's: curl -s $COFFER_ADDR/v1/health`;

/** `coffer version`: takes no argument, only --json. */
export function versionCommand(args: ParsedArgs): void {
  checkFlags(args, ['json', 'help']);
  if (args.positionals.length > 1) throw new UsageError(`unexpected argument '${args.positionals[1]}'`);
  printVersion(args);
}

/** The release, as text or (--json) one JSON document; `coffer --version` calls this directly. */
export function printVersion(args: ParsedArgs): void {
  emit(args, { version: RELEASE }, () => `coffer ${RELEASE}`);
}
