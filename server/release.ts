// Release string reported by /v1/health, read once from package.json.
import fs from 'node:fs';

function readRelease(): string {
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      const pkg = JSON.parse(fs.readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'coffer' && pkg.version) return pkg.version;
    } catch {
      // try the next location (source tree vs dist/)
    }
  }
  return '0.0.0-unknown';
}

export const RELEASE = process.env.COFFER_RELEASE ?? readRelease();
