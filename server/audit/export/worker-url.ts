// Where the export thread's code comes from: `export-worker.js` beside this
// file in the build; under vitest (this module runs from its TypeScript
// source) the current `export-worker.ts`, transpiled and started from a
// `data:` URL, for the reasons server/audit/worker-url.ts gives.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

let cached: URL | null = null;
export function exportWorkerUrl(): URL {
  if (cached) return cached;
  const here = import.meta.url;
  if (!here.endsWith('.ts')) {
    cached = new URL('./export-worker.js', here);
  } else {
    const source = readFileSync(new URL('./export-worker.ts', here), 'utf8');
    const ts = createRequire(here)('typescript') as typeof import('typescript');
    const js = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
    }).outputText;
    cached = new URL(`data:text/javascript;base64,${Buffer.from(js).toString('base64')}`);
  }
  return cached;
}
