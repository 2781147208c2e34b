import { defineConfig } from 'vitest/config';

// `npm run test:k8s`: the operator against a real control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, kwok) on 127.0.0.1.
// The global setup builds the binaries from their Go modules on first use
// (test/k8s/tools/build.sh, cached outside the checkout) and fails the tier if
// that build fails.
export default defineConfig({
  test: {
    include: ['test/k8s/**/*.test.ts'],
    globalSetup: ['test/k8s/global-setup.ts'],
    // Starting a control plane takes tens of seconds on the 2-core machine.
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    // Each file starts its own control plane; one at a time.
    fileParallelism: false,
    maxWorkers: 1,
    reporters: ['default', ['json', { outputFile: 'test-results/k8s.json' }]],
  },
});
