// What the netns tier needs from the machine: root, iproute2 with network
// namespaces, wireguard-go, wg, tcpdump and /dev/net/tun. Checked by the
// global setup (which fails the tier under COFFER_REQUIRE_WIREGUARD=1) and by
// the test file (which skips, saying why, otherwise).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

function onPath(bin: string): boolean {
  const dirs = (process.env.PATH ?? '').split(':').filter(Boolean);
  return dirs.some((d) => {
    try {
      fs.accessSync(path.join(d, bin), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

let cached: string[] | null = null;

/** Human-readable list of what is missing; empty when the tier can run. */
export function missingPrerequisites(): string[] {
  if (cached) return cached;
  const missing: string[] = [];
  if (process.platform !== 'linux') missing.push(`Linux (this is ${process.platform})`);
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) missing.push('root (network namespaces, veth pairs and wireguard-go need it)');
  for (const [bin, pkg] of [['ip', 'iproute2'], ['wireguard-go', 'wireguard-go'], ['wg', 'wireguard-tools'], ['tcpdump', 'tcpdump']] as const) {
    if (!onPath(bin)) missing.push(`${bin} (Debian package ${pkg})`);
  }
  if (!fs.existsSync('/dev/net/tun')) missing.push('/dev/net/tun');
  if (missing.length === 0) {
    // Namespaces can still be refused (a container without CAP_SYS_ADMIN): try one.
    const probe = `coffer-wg-probe-${process.pid}`;
    try {
      execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe' });
      execFileSync('ip', ['netns', 'del', probe], { stdio: 'pipe' });
    } catch (err) {
      missing.push(`network namespaces (ip netns add failed: ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()})`);
    }
  }
  cached = missing;
  return missing;
}
