// Tiny argument parser: --flag, --key value, --key=value and positionals.
export interface ParsedArgs {
  positionals: string[];
  flags: Map<string, string | true>;
}

export function parseArgs(argv: readonly string[]): ParsedArgs {
  const positionals: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      if (eq > 0) flags.set(a.slice(2, eq), a.slice(eq + 1));
      else {
        const next = argv[i + 1];
        if (next !== undefined && !next.startsWith('-') && VALUE_FLAGS.has(a.slice(2))) {
          flags.set(a.slice(2), next);
          i++;
        } else flags.set(a.slice(2), true);
      }
    } else if (a === '-h') flags.set('help', true);
    else if (a === '-f') {
      const next = argv[++i];
      if (next !== undefined) flags.set('file', next);
    } else positionals.push(a);
  }
  return { positionals, flags };
}

/** Flags that take a value; any other --flag is boolean. */
const VALUE_FLAGS = new Set(['addr', 'token', 'version', 'cas', 'value', 'length', 'charset', 'role', 'ttl', 'file', 'prefix', 'limit', 'consistency', 'since', 'data-dir']);

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A flag's value; a flag given without one is a usage error. */
export function flag(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags.get(name);
  if (v === true) throw new UsageError(`--${name} needs a value`);
  return v;
}

/** A flag's value as a whole number, if given. */
export function intFlag(args: ParsedArgs, name: string): number | undefined {
  const v = flag(args, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`--${name} must be a whole number`);
  return Number(v);
}
