// Runs once before the test:kms files: installs the KMS emulator (moto) into
// its cached venv. A failed install throws, so the tier fails instead of skipping.
import fs from 'node:fs';
import { COFFER_BIN } from '../helpers/node.js';
import { ensureMoto } from './moto.js';

export default function setup(): void {
  if (!fs.existsSync(COFFER_BIN)) throw new Error('dist/bin/coffer.js is missing: run `npm run build` first (npm run test:kms does)');
  ensureMoto((line) => console.log(`[test:kms] ${line}`));
}
