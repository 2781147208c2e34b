import { describe, expect, it } from 'vitest';
import { Registry, escapeLabelValue, formatValue } from '../../../common/prometheus.js';
import { checkHistogram, parseExposition } from './parse.js';

describe('Registry', () => {
  it('renders counters with HELP/TYPE and sorted families and series', () => {
    const r = new Registry();
    const c = r.counter({ name: 'z_total', help: 'zed', labelNames: ['b', 'a'] });
    const plain = r.counter({ name: 'a_total', help: 'first' });
    c.inc({ b: 'y', a: '1' });
    c.inc({ a: '1', b: 'x' }, 2);
    c.inc({ b: 'y', a: '1' }, 0.5);
    plain.inc();
    expect(r.render()).toBe(
      [
        '# HELP a_total first',
        '# TYPE a_total counter',
        'a_total 1',
        '# HELP z_total zed',
        '# TYPE z_total counter',
        'z_total{b="x",a="1"} 2',
        'z_total{b="y",a="1"} 1.5',
        '',
      ].join('\n'),
    );
    expect(r.render()).toBe(r.render());
  });

  it('shows unlabelled metrics at zero before first use, labelled ones only once used', () => {
    const r = new Registry();
    r.counter({ name: 'n_total', help: 'h' });
    r.counter({ name: 'l_total', help: 'h', labelNames: ['x'] });
    r.histogram({ name: 'h_seconds', help: 'h', buckets: [1] });
    const f = parseExposition(r.render());
    expect(f.get('n_total')?.samples).toEqual([{ name: 'n_total', labels: {}, value: 0 }]);
    expect(f.get('l_total')?.samples).toEqual([]);
    expect(f.get('h_seconds')?.samples.map((s) => [s.name, s.labels.le, s.value])).toEqual([
      ['h_seconds_bucket', '1', 0],
      ['h_seconds_bucket', '+Inf', 0],
      ['h_seconds_sum', undefined, 0],
      ['h_seconds_count', undefined, 0],
    ]);
  });

  it('escapes label values and HELP text', () => {
    const r = new Registry();
    const c = r.counter({ name: 'esc_total', help: 'back\\slash\nnewline "quotes" stay', labelNames: ['v'] });
    const nasty = 'a"b\\c\nd}e,f=g';
    c.inc({ v: nasty });
    const text = r.render();
    expect(text).toContain('esc_total{v="a\\"b\\\\c\\nd}e,f=g"} 1');
    expect(text).toContain('# HELP esc_total back\\\\slash\\nnewline "quotes" stay\n');
    const f = parseExposition(text).get('esc_total');
    expect(f?.help).toBe('back\\slash\nnewline "quotes" stay');
    expect(f?.samples[0]?.labels.v).toBe(nasty);
    expect(escapeLabelValue('\\"\n')).toBe('\\\\\\"\\n');
  });

  it('keeps histogram buckets cumulative with +Inf equal to count', () => {
    const r = new Registry();
    const h = r.histogram({ name: 'lat_seconds', help: 'h', labelNames: ['route'], buckets: [0.1, 0.5, 1] });
    for (const v of [0.05, 0.1, 0.3, 0.7, 3, 0.2]) h.observe({ route: '/a' }, v);
    h.observe({ route: '/b' }, 5);
    const f = parseExposition(r.render()).get('lat_seconds')!;
    expect(f.type).toBe('histogram');
    checkHistogram(f);
    const a = f.samples.filter((s) => s.labels.route === '/a');
    expect(a.map((s) => [s.name, s.labels.le, s.value])).toEqual([
      ['lat_seconds_bucket', '0.1', 2],
      ['lat_seconds_bucket', '0.5', 4],
      ['lat_seconds_bucket', '1', 5],
      ['lat_seconds_bucket', '+Inf', 6],
      ['lat_seconds_sum', undefined, expect.closeTo(4.35, 9)],
      ['lat_seconds_count', undefined, 6],
    ]);
    const b = f.samples.filter((s) => s.labels.route === '/b');
    expect(b.find((s) => s.labels.le === '1')?.value).toBe(0);
    expect(b.find((s) => s.labels.le === '+Inf')?.value).toBe(1);
  });

  it('bound series count into the same series as inc/observe with those labels', () => {
    const r = new Registry();
    const c = r.counter({ name: 'req_total', help: 'h', labelNames: ['route', 'status'] });
    const h = r.histogram({ name: 'lat_seconds', help: 'h', labelNames: ['route'], buckets: [0.1, 1] });
    const plain = r.counter({ name: 'plain_total', help: 'h' });
    const ok = c.bind({ route: '/a', status: 200 });
    const lat = h.bind({ route: '/a' });
    const p = plain.bind();
    ok.inc();
    ok.inc(2);
    c.inc({ route: '/a', status: '200' });
    c.inc({ route: '/a', status: '404' });
    lat.observe(0.05);
    lat.observe(0.5);
    h.observe({ route: '/a' }, 5);
    p.inc();
    const text = r.render();
    expect(text).toContain('req_total{route="/a",status="200"} 4\n');
    expect(text).toContain('req_total{route="/a",status="404"} 1\n');
    expect(text).toContain('plain_total 1\n');
    const f = parseExposition(text).get('lat_seconds')!;
    checkHistogram(f);
    expect(f.samples.map((s) => [s.name, s.labels.le, s.value])).toEqual([
      ['lat_seconds_bucket', '0.1', 1],
      ['lat_seconds_bucket', '1', 2],
      ['lat_seconds_bucket', '+Inf', 3],
      ['lat_seconds_sum', undefined, expect.closeTo(5.55, 9)],
      ['lat_seconds_count', undefined, 3],
    ]);
    expect(() => ok.inc(-1)).toThrow(/only go up/);
    expect(() => c.bind({ route: '/a' } as never)).toThrow(/expected labels/);
  });

  it('gauges: set/inc/dec and collect-time callbacks', () => {
    const r = new Registry();
    const g = r.gauge({ name: 'g', help: 'h' });
    g.set(10);
    g.inc();
    g.dec(3);
    let live = 1;
    r.gauge({ name: 'live', help: 'h', collect: () => live });
    const multi = r.gauge({ name: 'multi', help: 'h', labelNames: ['k'] });
    multi.setCollector(() => [{ labels: { k: 'b' }, value: 2 }, { labels: { k: 'a' }, value: Infinity }]);
    r.gauge({ name: 'broken', help: 'h', collect: () => { throw new Error('boom'); } });
    live = 42;
    const text = r.render();
    expect(text).toContain('\ng 8\n');
    expect(text).toContain('\nlive 42\n');
    expect(text).toContain('\nmulti{k="a"} +Inf\nmulti{k="b"} 2\n');
    expect(parseExposition(text).get('broken')?.samples).toEqual([]);
  });

  it('rejects misuse', () => {
    const r = new Registry();
    const c = r.counter({ name: 'c_total', help: 'h', labelNames: ['a'] });
    expect(() => c.inc({ a: 'x' }, -1)).toThrow(/only go up/);
    expect(() => c.inc({ b: 'x' } as never)).toThrow(/expected labels/);
    expect(() => c.inc({ a: 'x', b: 'y' } as never)).toThrow(/expected labels/);
    expect(() => r.counter({ name: 'c_total', help: 'h' })).toThrow(/already registered/);
    expect(() => r.counter({ name: 'bad-name', help: 'h' })).toThrow(/invalid metric name/);
    expect(() => r.counter({ name: 'x', help: 'h', labelNames: ['__x'] })).toThrow(/invalid label name/);
    expect(() => r.histogram({ name: 'h1', help: 'h', labelNames: ['le'] })).toThrow(/reserved/);
    expect(() => r.histogram({ name: 'h2', help: 'h', buckets: [1, 1] })).toThrow(/ascending/);
  });

  it('types label sets at compile time (checked by tsc over the tests)', () => {
    const r = new Registry();
    const c = r.counter({ name: 't_total', help: 'h', labelNames: ['a'] });
    const p = r.counter({ name: 'p_total', help: 'h' });
    // @ts-expect-error a required label is missing
    expect(() => c.inc({})).toThrow(/expected labels/);
    // @ts-expect-error an unlabelled counter takes no label object
    expect(() => p.inc({ a: 'x' })).toThrow(/must be a number/);
    c.inc({ a: 1 }, 2);
    p.inc(3);
    expect(r.render()).toContain('t_total{a="1"} 2\n');
  });

  it('formats special values the Go way', () => {
    expect([Infinity, -Infinity, NaN, 0, 1.5, 1e21].map(formatValue)).toEqual(['+Inf', '-Inf', 'NaN', '0', '1.5', '1e+21']);
  });
});
