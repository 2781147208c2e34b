// VAULT_READ_ALLOWLIST_FILE: the file format, the start-time rules in
// loadConfig, and the watcher (in-place writes, the kubelet's `..data` symlink
// swap with fs.watch and with the poll alone, bad files keeping the last list).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Allowlist } from '../../../common/ipv4.js';
import {
  AllowlistFileError,
  parseAllowlistFile,
  readAllowlistFile,
  ReadAllowlistFile,
  type ReloadOutcome,
} from '../../../server/config/allowlist-file.js';
import { ConfigError, loadConfig } from '../../../server/config/config.js';

const dirs: string[] = [];
const watchers: ReadAllowlistFile[] = [];
afterEach(() => {
  for (const w of watchers.splice(0)) w.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-allowlist-'));
  dirs.push(d);
  return d;
}

const texts = (text: string) => parseAllowlistFile(text).map((c) => c.text);

function lineOf(text: string): number {
  try {
    parseAllowlistFile(text);
  } catch (err) {
    expect(err).toBeInstanceOf(AllowlistFileError);
    return (err as AllowlistFileError).line;
  }
  throw new Error('parsed');
}

describe('parseAllowlistFile', () => {
  it('takes one entry a line, with blank lines, comments and surrounding whitespace', () => {
    expect(texts('')).toEqual([]);
    expect(texts('\n\n# nobody yet\n')).toEqual([]);
    expect(texts('\uFEFF10.0.0.1\r\n  10.1.0.0/16  \n\t\n# sync pods\n192.168.1.7 # coffer-sync-abc\n127.0.0.2\t')).toEqual([
      '10.0.0.1',
      '10.1.0.0/16',
      '192.168.1.7',
      '127.0.0.2',
    ]);
  });

  it('names the first bad line and does not guess', () => {
    expect(lineOf('10.0.0.1\nbogus\n')).toBe(2);
    expect(lineOf('# c\n\n10.0.0.1 10.0.0.2')).toBe(3);
    expect(lineOf('10.0.0.1,10.0.0.2')).toBe(1);
    expect(lineOf('10.0.0.0/33')).toBe(1);
    expect(lineOf('::1')).toBe(1);
    expect(lineOf('010.0.0.1')).toBe(1);
    expect(lineOf('ok\n')).toBe(1);
    expect(lineOf('10.0.0.1\n10.0.0.256')).toBe(2);
  });

  it('quotes only a short part of a bad line', () => {
    try {
      parseAllowlistFile('x'.repeat(10_000));
    } catch (err) {
      expect((err as Error).message.length).toBeLessThan(120);
    }
  });
});

describe('loadConfig with VAULT_READ_ALLOWLIST_FILE', () => {
  it('reads the file at start and keeps the env list separate', () => {
    const f = path.join(tmp(), 'allow');
    fs.writeFileSync(f, '127.0.0.2\n');
    const c = loadConfig({ VAULT_NODE_ID: 'n1', VAULT_READ_ALLOWLIST: '127.0.0.1', VAULT_READ_ALLOWLIST_FILE: f });
    expect(c.readAllowlist.entries.map((e) => e.text)).toEqual(['127.0.0.1']);
    expect(c.readAllowlistFile?.path).toBe(f);
    expect(c.readAllowlistFile?.initial.kind).toBe('ok');
    expect(loadConfig({ VAULT_NODE_ID: 'n1' }).readAllowlistFile).toBeNull();
  });

  it('refuses a malformed or unreadable file at start, naming the variable and the line', () => {
    const d = tmp();
    const f = path.join(d, 'allow');
    fs.writeFileSync(f, '127.0.0.2\n# fine\nnot-an-ip\n');
    for (const file of [f, d]) {
      let err: unknown;
      try {
        loadConfig({ VAULT_NODE_ID: 'n1', VAULT_READ_ALLOWLIST_FILE: file });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).variable).toBe('VAULT_READ_ALLOWLIST_FILE');
      if (file === f) expect((err as Error).message).toContain('line 3');
    }
  });

  it('starts without the file when it is missing (the kubelet may mount it later)', () => {
    const c = loadConfig({ VAULT_NODE_ID: 'n1', VAULT_READ_ALLOWLIST_FILE: path.join(tmp(), 'later') });
    expect(c.readAllowlistFile?.initial.kind).toBe('missing');
  });
});

/** The kubelet's layout: dir/allow -> ..data/allow, ..data -> ..<timestamp>, swapped by rename. */
function kubeletWrite(dir: string, content: string, n: number): void {
  const ts = path.join(dir, `..2026_12_05_${n}`);
  fs.mkdirSync(ts);
  fs.writeFileSync(path.join(ts, 'allow'), content);
  fs.symlinkSync(path.basename(ts), path.join(dir, '..data_tmp'));
  fs.renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  if (!fs.existsSync(path.join(dir, 'allow'))) fs.symlinkSync('..data/allow', path.join(dir, 'allow'));
}

interface Harness {
  w: ReadAllowlistFile;
  lists: Allowlist[];
  outcomes: ReloadOutcome[];
  warnings: object[];
}

function watch(file: string, opts: { watch: boolean; pollMs: number }): Harness {
  const lists: Allowlist[] = [];
  const outcomes: ReloadOutcome[] = [];
  const warnings: object[] = [];
  const w = new ReadAllowlistFile({
    file,
    base: Allowlist.parse('10.9.9.9'),
    initial: readAllowlistFile(file),
    logger: { info: () => {}, warn: (o) => warnings.push(o) },
    onChange: (l) => lists.push(l),
    onReload: (o) => outcomes.push(o),
    ...opts,
  });
  watchers.push(w);
  w.start();
  return { w, lists, outcomes, warnings };
}

async function until(cond: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.each([
  ['fs.watch', { watch: true, pollMs: 60_000 }],
  ['the poll alone', { watch: false, pollMs: 50 }],
])('ReadAllowlistFile, changes seen through %s', (_name, opts) => {
  it('follows the kubelet ..data swap; a bad file keeps the last list; a good one clears it', async () => {
    const d = tmp();
    kubeletWrite(d, '127.0.0.2\n', 1);
    const h = watch(path.join(d, 'allow'), opts);
    const allows = (ip: string) => h.w.current().allows(ip);
    expect(allows('127.0.0.2')).toBe(true);
    expect(allows('10.9.9.9')).toBe(true);
    expect(h.w.valid).toBe(true);

    kubeletWrite(d, '127.0.0.3\n', 2);
    await until(() => allows('127.0.0.3'));
    expect(allows('127.0.0.2')).toBe(false);
    expect(h.lists.at(-1)).toBe(h.w.current());

    kubeletWrite(d, '127.0.0.4\nnope\n', 3);
    await until(() => !h.w.valid);
    expect(allows('127.0.0.3')).toBe(true);
    expect(allows('127.0.0.4')).toBe(false);
    expect(h.outcomes.at(-1)).toBe('invalid');
    expect(h.warnings.at(-1)).toMatchObject({ line: 2 });
    expect(JSON.stringify(h.warnings)).not.toContain('127.0.0.4');

    kubeletWrite(d, '# empty now\n', 4);
    await until(() => h.w.valid);
    expect(allows('127.0.0.3')).toBe(false);
    expect(allows('10.9.9.9')).toBe(true); // the env list stays in force
    expect(h.outcomes).toEqual(['ok', 'invalid', 'ok']);
  });

  it('follows in-place writes and a file that appears after start', async () => {
    const d = tmp();
    const f = path.join(d, 'allow');
    const h = watch(f, opts);
    expect(h.w.valid).toBe(false);
    expect(h.w.current().entries.map((e) => e.text)).toEqual(['10.9.9.9']);
    fs.writeFileSync(f, '127.0.0.5\n');
    await until(() => h.w.current().allows('127.0.0.5'));
    expect(h.w.valid).toBe(true);
    fs.writeFileSync(f, '127.0.0.6/32\n');
    await until(() => h.w.current().allows('127.0.0.6'));
    expect(h.w.current().allows('127.0.0.5')).toBe(false);
    fs.rmSync(f);
    await until(() => !h.w.valid);
    expect(h.w.current().allows('127.0.0.6')).toBe(true); // kept: a missing file is most often a write in progress
    expect(h.outcomes).toEqual(['ok', 'ok', 'missing']);
  });
});

describe('ReadAllowlistFile quiet paths', () => {
  it('does not re-apply or count a file whose bytes did not change', async () => {
    const d = tmp();
    const f = path.join(d, 'allow');
    fs.writeFileSync(f, '127.0.0.2\n');
    const h = watch(f, { watch: false, pollMs: 20 });
    fs.writeFileSync(f, '127.0.0.2\n'); // touched, same content
    h.w.poll();
    await new Promise((r) => setTimeout(r, 60));
    expect(h.outcomes).toEqual([]);
    expect(h.lists).toEqual([]);
  });
});
