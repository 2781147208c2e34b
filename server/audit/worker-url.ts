// Where the audit writer thread's code comes from.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/**
 * From the compiled build (dist/, what `coffer server` runs) this is simply
 * the `audit-worker.js` next to this file. Under vitest this module runs from
 * its TypeScript source, and a Worker is a plain Node thread that vitest's
 * transform does not reach: Node 20 cannot load `audit-worker.ts` itself, and
 * pointing at dist/ would silently run a stale build when the source changed
 * without `npm run build`. So from a `.ts` module we transpile the current
 * `audit-worker.ts` with the TypeScript compiler (a devDependency, always there
 * when sources run directly) and start it from a `data:` URL. That is why the
 * worker imports only `node:` builtins and loads better-sqlite3 via
 * createRequire(workerData.requireFrom). Computed once per process.
 */
let cachedWorkerUrl: URL | null = null;
export function workerUrl(): URL {
  if (cachedWorkerUrl) return cachedWorkerUrl;
  const here = import.meta.url;
  if (!here.endsWith('.ts')) {
    cachedWorkerUrl = new URL('./audit-worker.js', here);
  } else {
    const source = readFileSync(new URL('./audit-worker.ts', here), 'utf8');
    const ts = createRequire(here)('typescript') as typeof import('typescript');
    const js = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
    }).outputText;
    cachedWorkerUrl = new URL(`data:text/javascript;base64,${Buffer.from(js).toString('base64')}`);
  }
  return cachedWorkerUrl;
}
