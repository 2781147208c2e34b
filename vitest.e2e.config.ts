import { defineConfig } from 'vitest/config';

// `npm run test:e2e` (test/e2e/run.sh): Coffer on real pods in the kind
// cluster that `npm run e2e:up` made. Files run one at a time and the tests
// of a file in order: each step of lifecycle.test.ts starts from the state
// the previous one left.
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.test.ts'],
    testTimeout: 1_200_000,
    hookTimeout: 600_000,
    pool: 'forks',
    fileParallelism: false,
    maxWorkers: 1,
    // The VaultCluster of lifecycle.test.ts is deleted at its end; wireguard runs on its own cluster first.
    sequence: { shuffle: false },
    // verbose: each step is printed as it ends (a file here runs for many minutes).
    reporters: ['verbose', ['json', { outputFile: 'test-results/e2e.json' }]],
  },
});
