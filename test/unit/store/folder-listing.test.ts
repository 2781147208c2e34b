// One folder level of the name listing, against a brute-force reference:
// every visible entry exactly once, in order, across pages of any size; no
// folder the role cannot list a name in; and the seek really skips folders
// (rows read stay near the entries shown, not the names in the store).
import { describe, expect, it } from 'vitest';
import { rulesAllow, rulesGrantUnder, type RoleRule } from '../../../server/rbac/rules.js';
import { folderEnd, listFolderLevel, prefixEnd, type ReadNames } from '../../../server/store/folder-listing.js';

/** A sorted in-memory name table with SQLite's range semantics (ASCII: JS order = BINARY collation), counting rows read. */
function table(names: string[]): { read: ReadNames; rows: () => number; reads: () => number } {
  const sorted = [...new Set(names)].sort();
  let rows = 0;
  let reads = 0;
  const lowerBound = (key: string, inclusive: boolean): number => {
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const v = sorted[mid]!;
      if (inclusive ? v < key : v <= key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const read: ReadNames = (from, inclusive, below, limit) => {
    reads++;
    const out: string[] = [];
    for (let i = lowerBound(from, inclusive); i < sorted.length && out.length < limit; i++) {
      const v = sorted[i]!;
      if (below !== null && v >= below) break;
      out.push(v);
    }
    rows += out.length;
    return out;
  };
  return { read, rows: () => rows, reads: () => reads };
}

/** What one level under `prefix` should show to this role, by definition. */
function reference(names: string[], prefix: string, rules: RoleRule[]): string[] {
  const out = new Set<string>();
  for (const n of names) {
    if (!n.startsWith(prefix) || !rulesAllow(rules, 'list', n)) continue;
    const slash = n.indexOf('/', prefix.length);
    out.add(slash === -1 ? n : n.slice(0, slash + 1));
  }
  return [...out].sort();
}

/** Every page, following the cursor, as one list of entries. */
function allPages(names: string[], prefix: string, rules: RoleRule[], limit: number): { entries: string[]; pages: number } {
  const t = table(names);
  const entries: string[] = [];
  let after = '';
  for (let pages = 1; ; pages++) {
    const page = listFolderLevel({
      read: t.read,
      prefix,
      after,
      limit,
      listable: (n) => rulesAllow(rules, 'list', n),
      reachable: (f) => rulesGrantUnder(rules, 'list', f),
    });
    expect(page.names.length + page.folders.length).toBeLessThanOrEqual(limit);
    expect(page.folders.every((f) => f.endsWith('/'))).toBe(true);
    expect(page.names.every((n) => !n.slice(prefix.length).includes('/'))).toBe(true);
    entries.push(...[...page.names, ...page.folders].sort());
    if (!page.more) return { entries, pages };
    expect(page.last).toBe(entries[entries.length - 1]);
    after = page.last!;
    if (pages > 10_000) throw new Error('no end');
  }
}

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Characters either side of '/' in byte order ('-' '.' '/' '0'), so folder and name order interleave.
const SEGMENTS = ['a', 'a-', 'a.', 'a0', 'b', '0', '-', '_', 'ab'];

function randomNames(r: () => number, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const depth = 1 + Math.floor(r() * 4);
    out.push(Array.from({ length: depth }, () => SEGMENTS[Math.floor(r() * SEGMENTS.length)]!).join('/'));
  }
  return out;
}

const RULE_SETS: RoleRule[][] = [
  [{ paths: ['*'], actions: ['list'] }],
  [{ paths: ['a/*'], actions: ['list'] }],
  [{ paths: ['a/a-/*'], actions: ['list'] }],
  [{ paths: ['+/b'], actions: ['list'] }],
  [{ paths: ['a/+/0', 'b'], actions: ['list'] }],
  [{ paths: ['a0/*', 'a-'], actions: ['list'] }, { paths: ['*'], actions: ['read_metadata'] }],
  [{ paths: ['+/+/+/ab'], actions: ['list'] }],
];

describe('listFolderLevel', () => {
  it('seek keys: past a folder, past a prefix', () => {
    expect(folderEnd('app/a/')).toBe('app/a0');
    expect('app/a/zzz' < folderEnd('app/a/')).toBe(true);
    expect('app/a0' >= folderEnd('app/a/')).toBe(true);
    expect('app/a-b' < 'app/a/').toBe(true);
    expect(prefixEnd('')).toBeNull();
    expect(prefixEnd('app/')).toBe('app0');
    expect(prefixEnd('app/a')).toBe('app/b');
  });

  it('matches the reference for random stores, rules, prefixes and page sizes, every entry once and in order', () => {
    const r = rng(17);
    for (let round = 0; round < 60; round++) {
      const names = [...new Set(randomNames(r, 5 + Math.floor(r() * 120)))];
      for (const rules of RULE_SETS) {
        for (const prefix of ['', 'a/', 'a', 'a/a-/', 'b/', 'a0/', 'a/a']) {
          const want = reference(names, prefix, rules);
          for (const limit of [1, 2, 3, 7, 1000]) {
            const { entries, pages } = allPages(names, prefix, rules, limit);
            expect(entries, `prefix ${prefix} limit ${limit} rules ${JSON.stringify(rules)}`).toEqual(want);
            // No empty trailing page: a cursor is given only when a visible entry follows.
            expect(pages).toBe(Math.max(1, Math.ceil(want.length / limit)));
          }
        }
      }
    }
  });

  it('shows a folder only when the role may list a name in it', () => {
    const names = ['app/a/x', 'app/b/secret', 'app/c/d/e', 'app/top', 'teams/t1/db', 'teams/t2/other', 'teams/t3/sub/db'];
    const onlyA: RoleRule[] = [{ paths: ['app/a/*'], actions: ['list'] }];
    expect(allPages(names, 'app/', onlyA, 10).entries).toEqual(['app/a/']);
    expect(allPages(names, '', onlyA, 10).entries).toEqual(['app/']);
    expect(allPages(names, '', [{ paths: ['nothing/*'], actions: ['list'] }], 10).entries).toEqual([]);
    const plus: RoleRule[] = [{ paths: ['teams/+/db'], actions: ['list'] }];
    // teams/t2/ and teams/t3/ hold no name the role may list (t3's db is one level too deep).
    expect(allPages(names, 'teams/', plus, 10).entries).toEqual(['teams/t1/']);
    // A rule naming a folder does not reveal it when no listable name is there.
    expect(allPages(names, 'app/', [{ paths: ['app/z/x'], actions: ['list'] }], 10).entries).toEqual([]);
  });

  it('seeks past folders: rows read stay near the entries shown, for a 100k-name store', () => {
    const names: string[] = [];
    for (let i = 0; i < 50_000; i++) names.push(`app/b/${String(i).padStart(6, '0')}`);
    for (let f = 0; f < 100; f++) for (let i = 0; i < 500; i++) names.push(`app/a/f${String(f).padStart(3, '0')}/${i}`);
    names.push('app/a/direct');
    const t = table(names);
    const page = (rules: RoleRule[], prefix: string, limit: number) =>
      listFolderLevel({
        read: t.read,
        prefix,
        after: '',
        limit,
        listable: (n) => rulesAllow(rules, 'list', n),
        reachable: (f) => rulesGrantUnder(rules, 'list', f),
      });
    // A role that may list only app/a/*: app/b/ (50k names) is skipped without being read.
    const onlyA = page([{ paths: ['app/a/*'], actions: ['list'] }], 'app/', 100);
    expect([...onlyA.folders, ...onlyA.names]).toEqual(['app/a/']);
    expect(t.rows()).toBeLessThan(100);
    // Everything visible: 101 entries under app/a/, each folder read about once before the seek.
    const before = t.rows();
    const all = page([{ paths: ['*'], actions: ['list'] }], 'app/a/', 1000);
    expect(all.folders.length).toBe(100);
    expect(all.names).toEqual(['app/a/direct']);
    expect(t.rows() - before).toBeLessThan(101 * 20);
  });
});
