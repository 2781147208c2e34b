// What client commands print: with --json one JSON document on stdout; without it,
// human text in the Vault manner (key/value lines, a table, or one entry per line).
import type { ParsedArgs } from './args.js';

export function wantsJson(args: ParsedArgs): boolean {
  return args.flags.has('json');
}

export function printJson(v: unknown): void {
  process.stdout.write(JSON.stringify(v, null, 2) + '\n');
}

export function printLines(lines: readonly string[]): void {
  if (lines.length > 0) process.stdout.write(lines.join('\n') + '\n');
}

/** The answer as JSON with --json, otherwise `human(v)` (default: render(v)). */
export function emit(args: ParsedArgs, v: unknown, human: (v: unknown) => string = render): void {
  if (wantsJson(args)) return printJson(v);
  const text = human(v);
  if (text !== '') process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

function scalar(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (Array.isArray(v)) return v.length === 0 ? '-' : v.every((x) => typeof x !== 'object' || x === null) ? v.map(scalar).join(', ') : JSON.stringify(v);
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Rows of objects as an aligned table, column names upper-cased, nested values inline. */
export function table(rows: readonly Record<string, unknown>[]): string {
  if (rows.length === 0) return '';
  const cols: string[] = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!cols.includes(k)) cols.push(k);
  const cells = [cols.map((c) => c.toUpperCase()), ...rows.map((r) => cols.map((c) => scalar(r[c])))];
  const widths = cols.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  return cells.map((row) => row.map((cell, i) => (i === cols.length - 1 ? cell : cell.padEnd(widths[i]! + 2))).join('').trimEnd()).join('\n');
}

/**
 * Any answer as people read it: a string as is; an object as `key  value` lines
 * (nested objects flattened to a.b, lists of scalars comma-separated), each list of
 * objects after them as its own table under `key:`; a list of objects as a table.
 */
export function render(v: unknown): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return v.length === 0 ? '-' : v.every(isRecord) ? table(v) : v.map(scalar).join('\n');
  if (!isRecord(v)) return scalar(v);
  const pairs: Array<[string, string]> = [];
  const tables: Array<[string, Record<string, unknown>[]]> = [];
  const walk = (o: Record<string, unknown>, prefix: string) => {
    for (const [k, x] of Object.entries(o)) {
      const key = prefix + k;
      if (isRecord(x)) walk(x, key + '.');
      else if (Array.isArray(x) && x.length > 0 && x.every(isRecord)) tables.push([key, x]);
      else pairs.push([key, scalar(x)]);
    }
  };
  walk(v, '');
  const width = Math.max(0, ...pairs.map(([k]) => k.length));
  const parts: string[] = [];
  if (pairs.length) parts.push(pairs.map(([k, x]) => `${k.padEnd(width + 2)}${x}`.trimEnd()).join('\n'));
  for (const [k, rows] of tables) parts.push(`${k}:\n${table(rows).replace(/^/gm, '  ')}`);
  return parts.join('\n\n');
}
