// Readable Raft scenarios (testdata/*.txt), beside the randomized simulation
// in ../sim: each file is a script of commands with the output expected from
// the core; see interpreter.ts for the commands. To regenerate the expected
// outputs after an intended change, run with COFFER_REWRITE_SCENARIOS=1 and
// read the diff.

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { parseScenarioFile, renderScenarioFile, type ScenarioCase } from './datadriven.js';
import { InteractionEnv } from './interaction-env.js';
import { runCase } from './interpreter.js';

const TESTDATA = fileURLToPath(new URL('./testdata/', import.meta.url));
const REWRITE = process.env.COFFER_REWRITE_SCENARIOS === '1';
const REWRITE_HINT = 'if the change is intended, rerun with COFFER_REWRITE_SCENARIOS=1 and read the diff';

describe('raft scenarios', () => {
  const files = readdirSync(TESTDATA).filter((f) => f.endsWith('.txt')).sort();

  test('there are scenarios', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  for (const file of files) {
    test(file, () => {
      const path = join(TESTDATA, file);
      const segments = parseScenarioFile(readFileSync(path, 'utf8'));
      const env = new InteractionEnv();
      const outputs = new Map<ScenarioCase, string>();
      for (const segment of segments) {
        if (!('case' in segment)) continue;
        const c = segment.case;
        const where = `${file}:${c.line}: ${c.commandLine}`;
        let actual: string;
        try {
          actual = runCase(env, c);
        } catch (err) {
          throw new Error(`${where}: ${(err as Error).message}`, { cause: err });
        }
        if (REWRITE) outputs.set(c, actual);
        // The first case that differs fails the file: later outputs follow from it.
        else expect(actual, `${where} (${REWRITE_HINT})`).toBe(c.expected);
      }
      if (REWRITE) writeFileSync(path, renderScenarioFile(segments, (c) => outputs.get(c) ?? c.expected));
    });
  }
});
