// Adds up the vitest JSON reports of every tier into the closing line CI reads.
import fs from 'node:fs';
import path from 'node:path';

const dir = process.argv[2] ?? 'test-results';
let passed = 0;
let failed = 0;
let skipped = 0;
let reports = 0;
// Failed tests by name, printed just above the totals: the end of the log is what a CI record keeps.
const failures = [];
for (const f of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
  if (!f.endsWith('.json')) continue;
  const r = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
  reports++;
  passed += r.numPassedTests ?? 0;
  failed += (r.numFailedTests ?? 0) + (r.numRuntimeErrorTestSuites ?? 0) + (r.numFailedTestSuites && !r.numFailedTests ? r.numFailedTestSuites : 0);
  skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  for (const file of r.testResults ?? []) {
    const rel = path.relative(process.cwd(), file.name ?? '') || file.name;
    const failedTests = (file.assertionResults ?? []).filter((a) => a.status === 'failed');
    for (const a of failedTests) failures.push(`${f} ${rel}: ${a.fullName ?? a.title} -- ${firstLine(a.failureMessages?.[0])}`);
    if (file.status === 'failed' && failedTests.length === 0) failures.push(`${f} ${rel}: ${firstLine(file.message)}`);
  }
  console.log(`${f}: ${r.numPassedTests ?? 0} passed, ${r.numFailedTests ?? 0} failed, ${r.numPendingTests ?? 0} skipped`);
}
if (reports === 0) failed++;
for (const line of failures.slice(0, 30)) console.log(`FAILED ${line}`);
if (failures.length > 30) console.log(`FAILED ... and ${failures.length - 30} more`);
if (skipped) console.log(`${skipped} skipped (not counted as passed)`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);

function firstLine(text) {
  const line = String(text ?? '').split('\n').find((l) => l.trim()) ?? '';
  // eslint-disable-next-line no-control-regex
  return line.replace(/\x1b\[[0-9;]*m/g, '').trim().slice(0, 200);
}
