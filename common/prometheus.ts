// A minimal Prometheus text-format (0.0.4) registry: counters, gauges and
// fixed-bucket histograms with labels. Written here rather than pulled in as a
// dependency because Coffer needs a dozen metrics and nothing more.

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
export const DEFAULT_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export type LabelValues<L extends string> = { [K in L]: string | number };
/** Metrics without labels take no label argument; labelled ones require every label. */
type WithLabels<L extends string, Rest extends unknown[]> = [L] extends [never] ? Rest : [labels: LabelValues<L>, ...Rest];

export interface MetricOptions<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
}

/** A collect-time reading: one value per label set. */
export interface Sample<L extends string> {
  labels: LabelValues<L>;
  value: number;
}
export type Collector<L extends string> = () => number | Sample<L>[];

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

abstract class Metric<L extends string, S> {
  abstract readonly type: 'counter' | 'gauge' | 'histogram';
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  // Keyed by the label values in labelNames order.
  protected series = new Map<string, { values: string[]; state: S }>();

  constructor(opts: MetricOptions<L>) {
    if (!METRIC_NAME.test(opts.name)) throw new Error(`invalid metric name: ${opts.name}`);
    for (const l of opts.labelNames ?? []) {
      if (!LABEL_NAME.test(l) || l.startsWith('__')) throw new Error(`invalid label name: ${l}`);
    }
    this.name = opts.name;
    this.help = opts.help;
    this.labelNames = [...(opts.labelNames ?? [])];
  }

  protected abstract initial(): S;
  abstract render(): string[];

  // Called on every observation (several per request), so it avoids Object.keys/map/includes:
  // same key count and every label name present as an own key means exactly the expected set.
  protected values(labels: Partial<LabelValues<L>> | undefined): string[] {
    const given = (labels ?? {}) as Record<string, string | number | undefined>;
    const names = this.labelNames;
    let count = 0;
    for (const k in given) if (Object.hasOwn(given, k)) count++;
    const out = new Array<string>(names.length);
    let ok = count === names.length;
    for (let i = 0; ok && i < names.length; i++) {
      const l = names[i]!;
      if (Object.hasOwn(given, l)) out[i] = String(given[l]);
      else ok = false;
    }
    if (!ok) {
      throw new Error(`${this.name}: expected labels {${names.join(',')}}, got {${Object.keys(given).join(',')}}`);
    }
    return out;
  }

  protected get(values: string[]): S {
    const key = JSON.stringify(values);
    let s = this.series.get(key);
    if (!s) {
      s = { values, state: this.initial() };
      this.series.set(key, s);
    }
    return s.state;
  }

  /** Series in a stable order (sorted by label values). */
  protected sorted(): { values: string[]; state: S }[] {
    // An unlabelled series always exists so dashboards see 0, not "no data".
    if (this.labelNames.length === 0) this.get([]);
    return [...this.series.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, s]) => s);
  }

  protected labelText(values: string[], extra?: [string, string]): string {
    const pairs = this.labelNames.map((n, i) => `${n}="${escapeLabelValue(values[i] ?? '')}"`);
    if (extra) pairs.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
    return pairs.length ? `{${pairs.join(',')}}` : '';
  }
}

export class Counter<L extends string = never> extends Metric<L, { v: number }> {
  readonly type = 'counter';
  protected initial() {
    return { v: 0 };
  }
  inc(...args: WithLabels<L, [by?: number]>): void {
    const [labels, by] = split<L>(this.labelNames.length, args);
    const n = by ?? 1;
    if (!(n >= 0)) throw new Error(`${this.name}: counters only go up`);
    this.get(this.values(labels)).v += n;
  }
  /** The series for `labels`, resolved once: for hot paths that count the same label set again and again. */
  bind(...args: WithLabels<L, []>): { inc(by?: number): void } {
    const [labels] = split<L>(this.labelNames.length, args);
    const state = this.get(this.values(labels));
    const name = this.name;
    return {
      inc(by = 1) {
        if (!(by >= 0)) throw new Error(`${name}: counters only go up`);
        state.v += by;
      },
    };
  }
  render(): string[] {
    return this.sorted().map((s) => `${this.name}${this.labelText(s.values)} ${formatValue(s.state.v)}`);
  }
}

export class Gauge<L extends string = never> extends Metric<L, { v: number }> {
  readonly type = 'gauge';
  private collector: Collector<L> | null = null;
  protected initial() {
    return { v: 0 };
  }
  set(...args: WithLabels<L, [value: number]>): void {
    const [labels, v] = split<L>(this.labelNames.length, args);
    this.get(this.values(labels)).v = v ?? 0;
  }
  inc(...args: WithLabels<L, [by?: number]>): void {
    const [labels, by] = split<L>(this.labelNames.length, args);
    this.get(this.values(labels)).v += by ?? 1;
  }
  dec(...args: WithLabels<L, [by?: number]>): void {
    const [labels, by] = split<L>(this.labelNames.length, args);
    this.get(this.values(labels)).v -= by ?? 1;
  }
  /** Read the value(s) at scrape time instead of storing them; null removes the callback. */
  setCollector(fn: Collector<L> | null): void {
    this.collector = fn;
  }
  render(): string[] {
    if (this.collector) {
      this.series.clear();
      try {
        const got = this.collector();
        if (typeof got === 'number') this.get(this.values(undefined)).v = got;
        else for (const s of got) this.get(this.values(s.labels)).v = s.value;
      } catch {
        return []; // a broken reader must not break the whole scrape
      }
    }
    return this.sorted().map((s) => `${this.name}${this.labelText(s.values)} ${formatValue(s.state.v)}`);
  }
}

export interface HistogramOptions<L extends string> extends MetricOptions<L> {
  /** Upper bounds, ascending; +Inf is implied. */
  buckets?: readonly number[];
}

export class Histogram<L extends string = never> extends Metric<L, { counts: number[]; sum: number; count: number }> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];
  constructor(opts: HistogramOptions<L>) {
    super(opts);
    const b = [...(opts.buckets ?? DEFAULT_BUCKETS)];
    if (b.length === 0 || b.some((x, i) => !Number.isFinite(x) || (i > 0 && x <= (b[i - 1] ?? x)))) {
      throw new Error(`${opts.name}: buckets must be finite and strictly ascending`);
    }
    if (this.labelNames.includes('le' as L)) throw new Error(`${opts.name}: "le" is reserved`);
    this.buckets = b;
  }
  protected initial() {
    return { counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0 };
  }
  observe(...args: WithLabels<L, [value: number]>): void {
    const [labels, v] = split<L>(this.labelNames.length, args);
    this.record(this.get(this.values(labels)), v ?? 0);
  }
  /** The series for `labels`, resolved once: for hot paths that observe the same label set again and again. */
  bind(...args: WithLabels<L, []>): { observe(value: number): void } {
    const [labels] = split<L>(this.labelNames.length, args);
    const state = this.get(this.values(labels));
    return {
      observe: (value: number) => {
        if (typeof value !== 'number') throw new TypeError(`metric value must be a number, got ${typeof value}`);
        this.record(state, value);
      },
    };
  }
  private record(s: { counts: number[]; sum: number; count: number }, value: number): void {
    // Per-bucket counts here; made cumulative at render time.
    const b = this.buckets;
    let i = 0;
    while (i < b.length && !(value <= b[i]!)) i++;
    if (i < b.length) s.counts[i] = (s.counts[i] ?? 0) + 1;
    s.sum += value;
    s.count += 1;
  }
  render(): string[] {
    const out: string[] = [];
    for (const s of this.sorted()) {
      let cum = 0;
      this.buckets.forEach((b, i) => {
        cum += s.state.counts[i] ?? 0;
        out.push(`${this.name}_bucket${this.labelText(s.values, ['le', formatValue(b)])} ${cum}`);
      });
      out.push(`${this.name}_bucket${this.labelText(s.values, ['le', '+Inf'])} ${s.state.count}`);
      out.push(`${this.name}_sum${this.labelText(s.values)} ${formatValue(s.state.sum)}`);
      out.push(`${this.name}_count${this.labelText(s.values)} ${s.state.count}`);
    }
    return out;
  }
}

/** What the registry needs from any metric family. */
interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  render(): string[];
}

export class Registry {
  private metrics = new Map<string, Family>();

  counter<L extends string = never>(opts: MetricOptions<L>): Counter<L> {
    return this.add(new Counter<L>(opts));
  }
  gauge<L extends string = never>(opts: MetricOptions<L> & { collect?: Collector<L> }): Gauge<L> {
    const g = new Gauge<L>(opts);
    if (opts.collect) g.setCollector(opts.collect);
    return this.add(g);
  }
  histogram<L extends string = never>(opts: HistogramOptions<L>): Histogram<L> {
    return this.add(new Histogram<L>(opts));
  }

  /** The whole exposition, families sorted by name, ending in a newline. */
  render(): string {
    const lines: string[] = [];
    for (const name of [...this.metrics.keys()].sort()) {
      const m = this.metrics.get(name);
      if (!m) continue;
      lines.push(`# HELP ${name} ${escapeHelp(m.help)}`, `# TYPE ${name} ${m.type}`, ...m.render());
    }
    return lines.length ? `${lines.join('\n')}\n` : '';
  }

  private add<M extends Family>(m: M): M {
    if (this.metrics.has(m.name)) throw new Error(`metric already registered: ${m.name}`);
    this.metrics.set(m.name, m);
    return m;
  }
}

export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

export function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** Go-style float text: +Inf, -Inf, NaN, otherwise JS shortest round-trip form. */
export function formatValue(v: number): string {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  if (Number.isNaN(v)) return 'NaN';
  return String(v);
}

// Splits variadic (labels?, value?) according to whether the metric has labels.
function split<L extends string>(labelCount: number, args: unknown[]): [LabelValues<L> | undefined, number | undefined] {
  const [labels, value] = labelCount === 0 ? [undefined, args[0]] : [args[0], args[1]];
  if (value !== undefined && typeof value !== 'number') throw new TypeError(`metric value must be a number, got ${typeof value}`);
  return [labels as LabelValues<L> | undefined, value];
}
