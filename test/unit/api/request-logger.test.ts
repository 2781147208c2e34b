import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { LazyChildLogger, lazyChildLogger } from '../../../server/api/request-logger.js';

function capture(level = 'info') {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level, base: { node_id: 'n1' }, redact: { paths: ['*.token'], censor: '[redacted]' } }, sink);
  return { logger, lines };
}

const flush = () => new Promise((r) => setImmediate(r));

describe('lazy request child logger', () => {
  it('builds the pino child only when something logs, with the request bindings and the parent\'s redaction', async () => {
    const { logger, lines } = capture();
    const child = vi.spyOn(logger, 'child');
    const log = lazyChildLogger(logger, { reqId: 'r-1' }, {});
    expect(log).toBeInstanceOf(LazyChildLogger);
    expect(log.level).toBe('info');
    expect(child).not.toHaveBeenCalled();
    log.debug('below the level');
    log.error({ err: { name: 'IntegrityError' }, body: { token: 'secret-token' } }, 'request failed');
    log.info('second line');
    await flush();
    expect(child).toHaveBeenCalledTimes(1);
    expect(child).toHaveBeenCalledWith({ reqId: 'r-1' }, undefined); // `{}` from Fastify means "no options"
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 50, node_id: 'n1', reqId: 'r-1', msg: 'request failed', body: { token: '[redacted]' } });
    expect(lines[1]).toMatchObject({ level: 30, reqId: 'r-1', msg: 'second line' });
  });

  it('passes real options on, and supports level changes and grandchildren', async () => {
    const { logger, lines } = capture();
    const log = lazyChildLogger(logger, { reqId: 'r-2' }, { level: 'debug' });
    expect(log.level).toBe('debug');
    log.debug('now visible');
    const grandchild = log.child({ step: 'x' });
    grandchild.warn('from the grandchild');
    log.level = 'error';
    log.warn('hidden now');
    await flush();
    expect(lines.map((l) => [l.msg, l.reqId, l.step])).toEqual([
      ['now visible', 'r-2', undefined],
      ['from the grandchild', 'r-2', 'x'],
    ]);
  });

  it('has every method Fastify checks a logger for', () => {
    const { logger } = capture();
    const log = lazyChildLogger(logger, { reqId: 'r-3' }, undefined);
    for (const m of ['info', 'error', 'debug', 'fatal', 'warn', 'trace', 'child', 'silent'] as const) {
      expect(typeof log[m]).toBe('function');
    }
  });
});
