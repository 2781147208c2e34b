// Vitest global setup: every temp folder a test makes (os.tmpdir() reads
// TMPDIR) goes under one folder per run, removed when the run ends, so test
// nodes' data folders never pile up. COFFER_KEEP_TEST_DATA=1 keeps it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export default function setup(): () => void {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-run-'));
  const previous = process.env.TMPDIR;
  process.env.TMPDIR = root;
  return () => {
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
    if (process.env.COFFER_KEEP_TEST_DATA === '1') console.log(`test data kept in ${root}`);
    else fs.rmSync(root, { recursive: true, force: true });
  };
}
