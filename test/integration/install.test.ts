// README's install step, as a new user runs it: `npm link` (into a prefix of
// the test's own, so no real global folder is touched) must leave a `coffer`
// on PATH that runs, and every command README shows is spelled `coffer …`.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/node.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** The shell lines of README's fenced sh blocks. */
function shellLines(md: string): string[] {
  const out: string[] = [];
  for (const m of md.matchAll(/```sh\n([\s\S]*?)```/g)) out.push(...m[1]!.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#')));
  return out;
}

describe('README install step', () => {
  const prefix = tempDir('coffer-prefix-');
  afterAll(() => fs.rmSync(prefix, { recursive: true, force: true }));

  it('names npm link as the step that puts coffer on PATH', () => {
    expect(shellLines(README)).toContain('npm ci && npm run build && npm link');
  });

  it('npm link leaves an executable coffer on PATH that answers --help', () => {
    // The build is already there (the test command builds first); only the link step runs here.
    const link = spawnSync('npm', ['link', '--no-audit', '--no-fund'], {
      cwd: ROOT,
      env: { ...process.env, npm_config_prefix: prefix },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(link.status, link.stderr).toBe(0);
    const bin = path.join(prefix, 'bin', 'coffer');
    expect(fs.statSync(bin).mode & 0o111).not.toBe(0);
    // Only the prefix's bin folder and node's: not the repository's node_modules/.bin.
    const run = spawnSync('coffer', ['--help'], {
      env: { PATH: `${path.join(prefix, 'bin')}:${path.dirname(process.execPath)}:/usr/bin:/bin`, HOME: prefix },
      encoding: 'utf8',
      timeout: 15_000,
    });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^Usage: coffer <command>/m);
  });

  it('spells every command coffer, never npx coffer or node dist/bin/coffer.js', () => {
    const lines = shellLines(README);
    expect(lines.some((l) => /^coffer /.test(l))).toBe(true);
    expect(lines.filter((l) => /\bnpx coffer\b|dist\/bin\/coffer\.js/.test(l))).toEqual([]);
    // In prose only as the documented fallback alias.
    const prose = README.split('\n').filter((l) => /\bnpx coffer\b|dist\/bin\/coffer\.js/.test(l));
    expect(prose.every((l) => /alias coffer=|`dist\/bin\/coffer\.js`/.test(l))).toBe(true);
  });
});
