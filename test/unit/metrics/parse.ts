import { expect } from 'vitest';

// A strict reader for the Prometheus text format, used only to check our output.
export interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
export interface ParsedFamily {
  name: string;
  help: string;
  type: string;
  samples: ParsedSample[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;

export function parseExposition(text: string): Map<string, ParsedFamily> {
  if (text !== '' && !text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const families = new Map<string, ParsedFamily>();
  let current: ParsedFamily | undefined;
  for (const line of text.split('\n').slice(0, -1)) {
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (help) {
      if (families.has(help[1]!)) throw new Error(`duplicate family ${help[1]}`);
      current = { name: help[1]!, help: unescapeHelp(help[2]!), type: '', samples: [] };
      families.set(current.name, current);
      continue;
    }
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      if (!current || current.name !== type[1] || current.type) throw new Error(`TYPE out of place: ${line}`);
      current.type = type[2]!;
      continue;
    }
    const m = SAMPLE.exec(line);
    if (!m || !current || !current.type) throw new Error(`unparseable line: ${JSON.stringify(line)}`);
    const name = m[1]!;
    const allowed = current.type === 'histogram' ? ['_bucket', '_sum', '_count'].map((s) => current!.name + s) : [current.name];
    if (!allowed.includes(name)) throw new Error(`sample ${name} outside its family ${current.name}`);
    current.samples.push({ name, labels: parseLabels(m[2] ?? ''), value: parseValue(m[3]!) });
  }
  return families;
}

function parseLabels(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < s.length) {
    const nm = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(s.slice(i));
    if (!nm) throw new Error(`bad label at ${s.slice(i)}`);
    i += nm[0].length;
    let v = '';
    for (;;) {
      const c = s[i++];
      if (c === undefined) throw new Error('unterminated label value');
      if (c === '"') break;
      if (c === '\n') throw new Error('raw newline in label value');
      if (c === '\\') {
        const e = s[i++];
        if (e === 'n') v += '\n';
        else if (e === '\\' || e === '"') v += e;
        else throw new Error(`bad escape \\${e}`);
      } else v += c;
    }
    if (nm[1]! in out) throw new Error(`duplicate label ${nm[1]}`);
    out[nm[1]!] = v;
    if (s[i] === ',') i++;
    else if (i !== s.length) throw new Error(`expected , at ${s.slice(i)}`);
  }
  return out;
}

function parseValue(s: string): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  if (!/^-?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(s)) throw new Error(`bad value ${s}`);
  return Number(s);
}

function unescapeHelp(s: string): string {
  return s.replace(/\\(n|\\)/g, (_, c: string) => (c === 'n' ? '\n' : '\\'));
}

/** Checks every histogram invariant: cumulative buckets, ascending le, +Inf == _count. */
export function checkHistogram(f: ParsedFamily): void {
  const bySeries = new Map<string, { le: number; v: number }[]>();
  const counts = new Map<string, number>();
  const key = (l: Record<string, string>) => JSON.stringify(Object.entries(l).filter(([k]) => k !== 'le'));
  for (const s of f.samples) {
    if (s.name.endsWith('_bucket')) {
      expect(s.labels.le).toBeDefined();
      const list = bySeries.get(key(s.labels)) ?? [];
      list.push({ le: Number(s.labels.le === '+Inf' ? Infinity : s.labels.le), v: s.value });
      bySeries.set(key(s.labels), list);
    } else if (s.name.endsWith('_count')) counts.set(key(s.labels), s.value);
  }
  expect(bySeries.size).toBe(counts.size);
  for (const [k, buckets] of bySeries) {
    for (let i = 1; i < buckets.length; i++) {
      expect(buckets[i]!.le).toBeGreaterThan(buckets[i - 1]!.le);
      expect(buckets[i]!.v).toBeGreaterThanOrEqual(buckets[i - 1]!.v);
    }
    expect(buckets.at(-1)!.le).toBe(Infinity);
    expect(buckets.at(-1)!.v).toBe(counts.get(k));
  }
}
