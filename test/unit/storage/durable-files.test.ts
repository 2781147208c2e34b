// writeFileDurably: the file is replaced whole, private from its first byte
// whatever the umask, and a failed write leaves no temporary copy behind.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fsyncFolder, writeFileDurably } from '../../../server/storage/durable-files.js';

const dirs: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-durable-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('writeFileDurably', () => {
  it('writes, then replaces, a 0600 file even under a permissive umask, leaving only that file', () => {
    const dir = tmp();
    const file = path.join(dir, 'cursor');
    const old = process.umask(0);
    try {
      writeFileDurably(file, 'one\n');
      expect(fs.readFileSync(file, 'utf8')).toBe('one\n');
      writeFileDurably(file, Buffer.from('two\n'));
    } finally {
      process.umask(old);
    }
    expect(fs.readFileSync(file, 'utf8')).toBe('two\n');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir)).toEqual(['cursor']);
  });

  it('leaves the old file and no temporary copy when the rename fails', () => {
    const dir = tmp();
    const target = path.join(dir, 'taken');
    fs.mkdirSync(path.join(target, 'inside'), { recursive: true }); // a non-empty folder cannot be renamed over
    expect(() => writeFileDurably(target, 'x')).toThrow();
    expect(fs.readdirSync(dir)).toEqual(['taken']);
    expect(() => writeFileDurably(path.join(dir, 'missing', 'f'), 'x')).toThrow(/ENOENT/);
    expect(() => fsyncFolder(path.join(dir, 'missing'))).toThrow(/ENOENT/);
  });
});
