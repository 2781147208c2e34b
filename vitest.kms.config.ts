import { defineConfig } from 'vitest/config';

// `npm run test:kms`: aws-mode nodes against a KMS emulator (moto in server
// mode on 127.0.0.1), installed and started by the harness in test/kms/.
export default defineConfig({
  test: {
    include: ['test/kms/**/*.test.ts'],
    globalSetup: ['test/helpers/temp-root.ts', 'test/kms/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // The files start their own emulators and nodes; one at a time keeps the 2-core machine's timings honest.
    fileParallelism: false,
    reporters: ['default', ['json', { outputFile: 'test-results/kms.json' }]],
  },
});
