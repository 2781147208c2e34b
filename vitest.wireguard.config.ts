import { defineConfig } from 'vitest/config';

// `npm run test:wireguard`: a real WireGuard overlay on this machine. Coffer
// nodes in their own network namespaces joined by veth pairs to a bridge, each
// running `coffer wg-agent` (Debian's userspace wireguard-go, wg, ip) and
// `coffer server`, with tcpdump on the underlay. Needs root; the global setup
// fails the tier when something is missing and COFFER_REQUIRE_WIREGUARD=1,
// and otherwise the tests are skipped (never counted as passed) with the reason.
export default defineConfig({
  test: {
    include: ['test/wireguard/**/*.test.ts'],
    globalSetup: ['test/helpers/temp-root.ts', 'test/wireguard/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // One overlay at a time: the tests share the machine's CPU and wireguard-go's socket folder.
    fileParallelism: false,
    maxWorkers: 1,
    reporters: ['default', ['json', { outputFile: 'test-results/wireguard.json' }]],
  },
});
