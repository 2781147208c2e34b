// The file format of the Raft scenarios, after cockroachdb/datadriven (used
// by etcd-io/raft's testdata/*.txt): a command line, optional input lines,
// a `----` line, then the expected output up to the next blank line.
// Lines starting with `#` between cases are comments for the reader.

export interface CommandArg {
  readonly key: string;
  /** `key=v` gives ['v'], `key=(a,b)` gives ['a', 'b'], a bare `key` gives []. */
  readonly vals: readonly string[];
}

export interface ScenarioCase {
  /** 1-based line of the command, for error messages. */
  readonly line: number;
  /** The command line as written (kept verbatim by the rewrite mode). */
  readonly commandLine: string;
  readonly command: string;
  readonly args: readonly CommandArg[];
  readonly input: readonly string[];
  readonly expected: string;
}

/** A file is comments and blank lines (kept as written) around cases. */
export type Segment = { readonly text: readonly string[] } | { readonly case: ScenarioCase };

const SEPARATOR = '----';

export function parseScenarioFile(source: string): Segment[] {
  const lines = source.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const segments: Segment[] = [];
  let text: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i] as string;
    if (line.trim() === '' || line.startsWith('#')) {
      text.push(line);
      i++;
      continue;
    }
    if (text.length > 0) segments.push({ text });
    text = [];
    const start = i;
    const input: string[] = [];
    i++;
    while (i < lines.length && lines[i] !== SEPARATOR) input.push(lines[i++] as string);
    if (i === lines.length) throw new Error(`line ${start + 1}: "${line}" has no ${SEPARATOR} line`);
    i++;
    const expected: string[] = [];
    while (i < lines.length && (lines[i] as string).trim() !== '') expected.push(lines[i++] as string);
    i++; // the blank line ending the case belongs to it
    const { command, args } = parseCommandLine(line);
    segments.push({ case: { line: start + 1, commandLine: line, command, args, input, expected: expected.join('\n') } });
  }
  if (text.length > 0) segments.push({ text });
  return segments;
}

export function parseCommandLine(line: string): { command: string; args: CommandArg[] } {
  const [command = '', ...tokens] = line.trim().split(/\s+/);
  const args = tokens.map((token): CommandArg => {
    const eq = token.indexOf('=');
    if (eq < 0) return { key: token, vals: [] };
    const value = token.slice(eq + 1);
    const list = value.startsWith('(') && value.endsWith(')');
    return { key: token.slice(0, eq), vals: list ? value.slice(1, -1).split(',').filter((v) => v !== '') : [value] };
  });
  return { command, args };
}

/** The file again, with each case's expected output replaced by `actual(case)` (the rewrite mode). */
export function renderScenarioFile(segments: readonly Segment[], actual: (c: ScenarioCase) => string): string {
  const lines: string[] = [];
  segments.forEach((segment, k) => {
    if ('text' in segment) {
      lines.push(...segment.text);
      return;
    }
    const c = segment.case;
    lines.push(c.commandLine, ...c.input, SEPARATOR, actual(c));
    if (k < segments.length - 1) lines.push('');
  });
  return lines.join('\n') + '\n';
}
