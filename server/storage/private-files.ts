// The data folder holds ciphertext, wrapped DEKs, token hashes and the audit
// trail: only this node's user may read it. New files are made private by the
// umask `coffer server` sets (077) and by creating the databases 0600 before
// SQLite opens them (SQLite gives -wal and -shm the database's mode); a folder
// from an earlier release, a restore or a careless copy is tightened here on
// start: every folder and file keeps only its owner's bits (0755 → 0700,
// 0644 → 0600).
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';

/** Creates `dir` (0700) if needed and tightens it and everything in it. */
export function prepareDataDir(dir: string, logger: Pick<Logger, 'warn'>): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.statSync(dir);
  // A shared folder such as /tmp (sticky, world-writable) is not ours to lock down or walk.
  if (st.mode & 0o1000) {
    logger.warn({ data_dir: dir }, 'VAULT_DATA_DIR is a shared (sticky) folder: its mode is left alone; give the node a folder of its own');
    return;
  }
  const refused: string[] = [];
  tighten(dir, st, refused);
  walk(dir, refused);
  if (refused.length > 0) {
    // E.g. a volume root owned by root with a group from fsGroup: the files the node writes are still 0600.
    logger.warn({ paths: refused.slice(0, 10).map((p) => path.relative(dir, p) || '.'), count: refused.length }, 'could not tighten the mode of some data paths (not their owner)');
  }
}

/** Creates `file` 0600 if it does not exist, and makes it 0600 if it does. */
export function ensurePrivateFile(file: string): void {
  fs.closeSync(fs.openSync(file, 'a', 0o600));
  fs.chmodSync(file, 0o600);
}

function walk(dir: string, refused: string[]): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    if (e.isSymbolicLink()) continue; // never follow a link out of the data folder
    const p = path.join(dir, e.name);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      continue; // removed meanwhile
    }
    tighten(p, st, refused);
    if (st.isDirectory()) walk(p, refused);
  }
}

function tighten(p: string, st: fs.Stats, refused: string[]): void {
  const mode = st.mode & 0o7777;
  const want = mode & 0o700; // owner bits only: no group, other, setuid, setgid or sticky
  if (mode === want || (!st.isDirectory() && !st.isFile())) return;
  try {
    fs.chmodSync(p, want);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EPERM' || code === 'EACCES') refused.push(p);
    else if (code !== 'ENOENT') throw err;
  }
}
