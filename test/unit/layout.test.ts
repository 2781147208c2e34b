// The layout rules ARCHITECTURE.md states, checked on the import graph as
// written in the source: no folder-level cycle, the operator and the
// WireGuard agent stay out of server/, common/ is a leaf, the Raft core stays
// pure, and no source file grows past 500 lines (the Raft core excepted).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SOURCE_ROOTS = ['bin', 'common', 'server', 'operator', 'sync', 'wg-agent', 'bench'];

interface SourceFile {
  path: string; // repo-relative, e.g. server/raft/core/raft.ts
  lines: number;
  imports: string[]; // resolved repo-relative paths of project imports
  packages: string[]; // bare specifiers (node:fs, fastify, …)
}

function listTs(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = join(dir, name);
    if (statSync(join(ROOT, rel)).isDirectory()) out.push(...listTs(rel));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

// Static imports, re-exports and dynamic import() of string literals.
const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|(?:^|\n)\s*import\s*['"]([^'"]+)['"]/g;

function parse(path: string): SourceFile {
  const text = readFileSync(join(ROOT, path), 'utf8');
  const imports: string[] = [];
  const packages: string[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2] ?? m[3] ?? '';
    if (spec.startsWith('.')) imports.push(relative(ROOT, resolve(ROOT, dirname(path), spec)).replace(/\.js$/, '.ts'));
    else packages.push(spec);
  }
  return { path, lines: text.split('\n').length, imports, packages };
}

const files = SOURCE_ROOTS.flatMap(listTs).map(parse);
// A part of the system is a folder directly under server/ or operator/ (or a
// top-level folder): its subfolders belong to it (api/routes is the API,
// raft/driver and raft/core are Raft), so a route importing ../schemas.js is
// not a cycle, while server/api <-> server/secrets is.
const folderOf = (path: string) => {
  const parts = dirname(path).split('/');
  return parts[0] === 'server' || parts[0] === 'operator' ? parts.slice(0, 2).join('/') : (parts[0] ?? '');
};
const withoutComments = (text: string) => text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:])\/\/.*$/gm, '$1');

/** Strongly connected parts (Tarjan) with more than one member. */
function folderCycles(): string[][] {
  const edges = new Map<string, Set<string>>();
  for (const f of files) {
    const from = folderOf(f.path);
    if (!edges.has(from)) edges.set(from, new Set());
    for (const target of f.imports) {
      const to = folderOf(target);
      if (to !== from) edges.get(from)!.add(to);
    }
  }
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) cycles.push(scc.sort());
    }
  };
  for (const v of edges.keys()) if (!index.has(v)) visit(v);
  return cycles;
}

const importsUnder = (prefix: string, target: string) =>
  files
    .filter((f) => f.path.startsWith(prefix))
    .flatMap((f) => f.imports.filter((i) => i.startsWith(target)).map((i) => `${f.path} -> ${i}`));

describe('source layout', () => {
  it('reads a plausible tree (the checks below are not vacuous)', () => {
    expect(files.length).toBeGreaterThan(150);
    expect(files.some((f) => f.path === 'server/raft/core/raft.ts')).toBe(true);
    expect(files.reduce((n, f) => n + f.imports.length, 0)).toBeGreaterThan(500);
  });

  it('has no folder-level import cycle', () => {
    expect(folderCycles()).toEqual([]);
  });

  it('keeps the operator, the sync controller and the WireGuard agent out of server/', () => {
    expect(importsUnder('operator/', 'server/')).toEqual([]);
    // The sync controller talks to Coffer over HTTP only, like any client; the operator never needs it.
    expect(files.some((f) => f.path.startsWith('sync/'))).toBe(true);
    expect(importsUnder('sync/', 'server/')).toEqual([]);
    expect(importsUnder('operator/', 'sync/')).toEqual([]);
    // The agent shares only the logger with the vault node (one way).
    expect(importsUnder('wg-agent/', 'server/').filter((e) => !e.endsWith('-> server/log/logger.ts'))).toEqual([]);
  });

  it('keeps common/ a leaf', () => {
    const outward = files
      .filter((f) => f.path.startsWith('common/'))
      .flatMap((f) => f.imports.filter((i) => !i.startsWith('common/')));
    expect(outward).toEqual([]);
  });

  it('keeps nothing below the API importing it', () => {
    const below = ['server/secrets/', 'server/store/', 'server/sealing/', 'server/crypto/', 'server/kms/', 'server/raft/', 'server/audit/', 'server/rbac/'];
    expect(below.flatMap((b) => importsUnder(b, 'server/api/'))).toEqual([]);
  });

  it('keeps the Raft core and the autopilot decision pure: no I/O, clock, randomness or project code outside them', () => {
    const pure = ['server/raft/core/', 'server/raft/autopilot/'];
    const core = files.filter((f) => pure.some((p) => f.path.startsWith(p)));
    expect(core.length).toBeGreaterThan(4);
    for (const f of core) {
      expect(f.packages, f.path).toEqual([]);
      expect(f.imports.filter((i) => !pure.some((p) => i.startsWith(p))), f.path).toEqual([]);
      const code = withoutComments(readFileSync(join(ROOT, f.path), 'utf8'));
      expect(code, f.path).not.toMatch(/\b(Date\.now|new Date\(|Math\.random|setTimeout|setInterval|process\.|performance\.now)/);
    }
  });

  it('has no source file over 500 lines outside the Raft core', () => {
    const long = files.filter((f) => f.lines > 500 && !f.path.startsWith('server/raft/core/')).map((f) => `${f.path}: ${f.lines}`);
    expect(long).toEqual([]);
  });
});
