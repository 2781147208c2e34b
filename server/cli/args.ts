// Tiny argument parser: --flag, --key value, --key=value, -h, -f FILE and positionals.
// Which flags a command takes is checked afterwards (checkFlags), against the
// command's own list: an unknown flag is a usage error, never ignored.
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
        // A value flag takes the next word unless it is another --flag ("--version -1" reaches the range check).
        if (next !== undefined && !next.startsWith('--') && VALUE_FLAGS.has(a.slice(2))) {
          flags.set(a.slice(2), next);
          i++;
        } else flags.set(a.slice(2), true);
      }
    } else if (a === '-h') flags.set('help', true);
    else if (a === '-f') {
      const next = argv[++i];
      flags.set('file', next === undefined ? true : next);
    } else if (a.startsWith('-') && a.length > 1 && !/^-\d/.test(a)) flags.set(a.slice(1), true); // -x: reported as unknown
    else positionals.push(a);
  }
  return { positionals, flags };
}

/** Flags that take a value; any other --flag is boolean. */
export const VALUE_FLAGS: ReadonlySet<string> = new Set([
  'addr', 'token', 'version', 'cas', 'value', 'length', 'charset', 'role', 'ttl', 'file', 'limit',
  'consistency', 'since', 'data-dir', 'nodes', 'dir', 'base-port',
]);

/** A mistake in how the command was typed: exit 2, with a hint where to read the usage. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Every flag given must be in `allowed` (value flags with a value, boolean ones without). */
export function checkFlags(args: ParsedArgs, allowed: readonly string[]): void {
  for (const [name, v] of args.flags) {
    if (!allowed.includes(name)) throw new UsageError(`unknown flag ${name.length === 1 ? '-' : '--'}${name}`);
    if (!VALUE_FLAGS.has(name) && v !== true) throw new UsageError(`--${name} takes no value`);
  }
}

/** A flag's value; a flag given without one is a usage error. */
export function flag(args: ParsedArgs, name: string): string | undefined {
  const v = args.flags.get(name);
  if (v === true) throw new UsageError(`--${name} needs a value`);
  return v;
}

/** A flag's value as a whole number in [min, max], if given. */
export function intFlag(args: ParsedArgs, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = flag(args, name);
  if (v === undefined) return undefined;
  const n = /^-?\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? (min === 1 ? 'a positive whole number' : `a whole number ≥ ${min}`) : `a whole number from ${min} to ${max}`;
    throw new UsageError(`--${name} must be ${range}, got ${JSON.stringify(v)}`);
  }
  return n;
}
