// Runs once before the netns tier: checks what it needs, removes what an
// earlier, killed run left behind (namespaces, links, sockets named for a pid
// that no longer exists), and checks that the build exists.
import fs from 'node:fs';
import path from 'node:path';
import { COFFER_BIN, ROOT } from '../helpers/node.js';
import { cleanupStaleRuns } from './harness/netns.js';
import { missingPrerequisites } from './harness/prereqs.js';

export default function setup(): void {
  const log = (line: string) => console.log(`[test:wireguard] ${line}`);
  const missing = missingPrerequisites();
  if (missing.length > 0) {
    const what = `missing: ${missing.join('; ')}`;
    if (process.env.COFFER_REQUIRE_WIREGUARD === '1') throw new Error(`COFFER_REQUIRE_WIREGUARD=1 but this machine cannot run the WireGuard tier (${what})`);
    log(`SKIPPED: ${what}. Set COFFER_REQUIRE_WIREGUARD=1 to make this a failure.`);
    return;
  }
  if (!fs.existsSync(COFFER_BIN)) throw new Error(`${path.relative(ROOT, COFFER_BIN)} is missing: run \`npm run build\` first (npm run test:wireguard does)`);
  cleanupStaleRuns(log);
}
