// Where the test:k8s control-plane binaries live, and building them.
//
// test/k8s/tools/build.sh owns the pinned versions and the cache location
// (${COFFER_K8S_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/coffer/k8s-<version>}, outside
// the checkout); this module only asks it.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
// Beside this file, or in the source tree when compiled into dist/test/k8s/harness (bench/sync.ts).
export const BUILD_SCRIPT = [path.resolve(HERE, '../tools/build.sh'), path.resolve(HERE, '../../../../test/k8s/tools/build.sh')].find((p) => fs.existsSync(p)) ?? path.resolve(HERE, '../tools/build.sh');

/** Binaries the harness runs from the cache dir. */
export const CACHED_BINARIES = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kwok'] as const;
export type CachedBinary = (typeof CACHED_BINARIES)[number];

let cachedBinDir: string | null = null;

/** The cache dir build.sh builds into (asks the script, so versions live in one place). */
export function binDir(): string {
  if (cachedBinDir) return cachedBinDir;
  const r = spawnSync('bash', [BUILD_SCRIPT, '--print-bin-dir'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`test:k8s: \`${BUILD_SCRIPT} --print-bin-dir\` failed: ${r.error?.message ?? r.stderr}`);
  cachedBinDir = r.stdout.trim();
  return cachedBinDir;
}

/** Pinned versions, as build.sh prints them (for logs and reports). */
export function pinnedVersions(): string {
  const r = spawnSync('bash', [BUILD_SCRIPT, '--print-versions'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

/** Path of a cached binary; COFFER_K8S_ETCD may point etcd elsewhere (e.g. a distro etcd). */
export function binary(name: CachedBinary): string {
  if (name === 'etcd' && process.env.COFFER_K8S_ETCD) return process.env.COFFER_K8S_ETCD;
  const p = path.join(binDir(), name);
  if (!fs.existsSync(p)) throw new Error(`test:k8s: ${p} is missing: run test/k8s/tools/build.sh (npm run test:k8s does)`);
  return p;
}

function onPath(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** kubectl from PATH if there is one, otherwise the one build.sh built into the cache. */
export function kubectlPath(): string {
  const found = process.env.COFFER_K8S_KUBECTL ?? onPath('kubectl');
  if (found) return found;
  const built = path.join(binDir(), 'kubectl');
  if (fs.existsSync(built)) return built;
  throw new Error('test:k8s: no kubectl on PATH and none built: run test/k8s/tools/build.sh');
}

/**
 * Runs build.sh (skips whatever is already built), streaming its progress
 * lines to `log`. Rejects, with the last lines of output, if the build fails.
 */
export function buildBinaries(log: (line: string) => void = () => {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const proc = spawn('bash', [BUILD_SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'] });
    let tail: string[] = [];
    const onData = (d: Buffer) => {
      for (const line of d.toString().split('\n')) {
        if (!line) continue;
        tail = [...tail.slice(-60), line];
        // `go: downloading …` lines are noise; everything else is progress.
        if (!line.startsWith('go: downloading')) log(line);
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.once('error', (err) => reject(new Error(`test:k8s: cannot run ${BUILD_SCRIPT}: ${err.message}`)));
    proc.once('exit', (code, signal) => {
      if (code === 0) return resolve();
      reject(new Error(`test:k8s: building the control-plane binaries failed (${BUILD_SCRIPT} exited ${code ?? signal}):\n${tail.join('\n')}`));
    });
  });
}
