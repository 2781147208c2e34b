// `coffer operator run` flags and environment.
import { describe, expect, it } from 'vitest';
import { OperatorUsageError, parseRunArgs } from '../../../operator/cli/operator.js';

describe('coffer operator run', () => {
  it('defaults its timings in milliseconds (lease 15 s, renew 10 s, retry 5 s, resync 5 min)', () => {
    const { config } = parseRunArgs(['run'], {});
    expect(config).toMatchObject({ leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 5_000, resyncPeriodMs: 300_000 });
  });

  it('reads seconds from flags and the environment', () => {
    const { config } = parseRunArgs(['run', '--lease-duration=30', '--resync', '60'], { COFFER_OPERATOR_POD_HEALTH_URL: 'http://127.0.0.1:9/{pod}' });
    expect(config).toMatchObject({ leaseDurationMs: 30_000, resyncPeriodMs: 60_000, podHealthUrl: 'http://127.0.0.1:9/{pod}' });
  });

  it('refuses unknown flags and bad numbers', () => {
    expect(() => parseRunArgs(['run', '--frobnicate=1'], {})).toThrow(OperatorUsageError);
    expect(() => parseRunArgs(['run', '--resync=-5'], {})).toThrow(/positive number of seconds/);
  });
});
