// Where a worker thread's code comes from.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const cache = new Map<string, URL>();

/**
 * The worker module `name` beside the module at `besideUrl` (pass its
 * import.meta.url). From the compiled build (dist/, what `coffer server`
 * runs) that is simply `name.js`. Under vitest the caller runs from its
 * TypeScript source, and a Worker is a plain Node thread that vitest's
 * transform does not reach: Node 20 cannot load `name.ts` itself, and
 * pointing at dist/ would silently run a stale build when the source changed
 * without `npm run build`. So from a `.ts` module the current `name.ts` is
 * transpiled with the TypeScript compiler (a devDependency, always there when
 * sources run directly) and started from a `data:` URL. That is why worker
 * modules import only `node:` builtins and load better-sqlite3 via
 * createRequire(workerData.requireFrom). Computed once per module.
 */
export function workerModuleUrl(besideUrl: string, name: string): URL {
  const key = `${besideUrl}#${name}`;
  const hit = cache.get(key);
  if (hit) return hit;
  let url: URL;
  if (!besideUrl.endsWith('.ts')) {
    url = new URL(`./${name}.js`, besideUrl);
  } else {
    const source = readFileSync(new URL(`./${name}.ts`, besideUrl), 'utf8');
    const ts = createRequire(besideUrl)('typescript') as typeof import('typescript');
    const js = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
    }).outputText;
    url = new URL(`data:text/javascript;base64,${Buffer.from(js).toString('base64')}`);
  }
  cache.set(key, url);
  return url;
}
