import { defineConfig } from 'vitest/config';

// Tiers: `npm test` runs unit + integration; test:kms, test:k8s and test:e2e
// have their own configs because they need external tools.
export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    globalSetup: ['test/helpers/temp-root.ts'],
    reporters: ['default', ['json', { outputFile: 'test-results/main.json' }]],
  },
});
