// `coffer completion bash|zsh` as a shell runs it: the script is sourced and its
// function called the way the shell's completion calls it. zsh must be installed
// (.ci/run installs it): a missing zsh fails here, it is never skipped.
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { AUDIT_SPECS } from '../../server/cli/audit-command.js';
import { CLIENT_FLAGS, CLIENT_SPECS, COMMANDS } from '../../server/cli/commands.js';
import { COFFER_BIN, tempDir } from '../helpers/node.js';

const run = promisify(execFile);
const dir = tempDir('coffer-completion-');
const bashFile = path.join(dir, 'coffer.bash');
const zshFile = path.join(dir, '_coffer');

beforeAll(() => {
  fs.writeFileSync(bashFile, execFileSync(process.execPath, [COFFER_BIN, 'completion', 'bash']));
  fs.writeFileSync(zshFile, execFileSync(process.execPath, [COFFER_BIN, 'completion', 'zsh']));
  fs.writeFileSync(path.join(dir, 'state.db'), 'x');
});

const quote = (w: string) => `'${w.replace(/'/g, `'\\''`)}'`;

/** What bash offers for `words` (the last one being the word under the cursor). */
async function bashComplete(words: string[]): Promise<string[]> {
  const script = `source ${quote(bashFile)}; COMP_WORDS=(${words.map(quote).join(' ')}); COMP_CWORD=${words.length - 1}; _coffer; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const { stdout } = await run('bash', ['-c', script], { cwd: dir });
  return stdout.split('\n').filter(Boolean).sort();
}

/** What the zsh function hands compadd (zsh filters by prefix itself), or "_files". */
async function zshComplete(words: string[]): Promise<string[]> {
  const script = `compdef() { : }; compadd() { [[ $1 == -- ]] && shift; print -rl -- "$@" }; _files() { print -r -- _files }
source ${quote(zshFile)}; words=(${words.map(quote).join(' ')}); CURRENT=${words.length}; _coffer`;
  const { stdout } = await run('zsh', ['-f', '-c', script], { cwd: dir });
  return stdout.split('\n').filter(Boolean).sort();
}

const sorted = (a: readonly string[]) => [...a].sort();
const specsOf = (name: string) => (name === 'audit' ? AUDIT_SPECS : CLIENT_SPECS[name]);

describe('coffer completion bash', () => {
  it('is valid bash', async () => {
    await run('bash', ['-n', bashFile]);
  });

  it('completes every command of the table, and a prefix to its commands', async () => {
    expect(await bashComplete(['coffer', ''])).toEqual(sorted([...COMMANDS.map((c) => c.name), 'help']));
    expect(await bashComplete(['coffer', 'sec'])).toEqual(['secret']);
    expect(await bashComplete(['coffer', 's'])).toEqual(['secret', 'server', 'snapshot', 'sync']);
    expect(await bashComplete(['coffer', '--addr', 'http://x', 'tok'])).toEqual(['token']);
  });

  it.each(COMMANDS.filter((c) => c.subcommands.length).map((c) => c.name))('completes the subcommands of %s', async (name) => {
    const c = COMMANDS.find((x) => x.name === name)!;
    expect(await bashComplete(['coffer', name, ''])).toEqual(sorted(c.subcommands));
  });

  it('completes each client subcommand\'s flags (its own and the common ones)', async () => {
    for (const c of COMMANDS) {
      const specs = specsOf(c.name);
      if (!specs) continue;
      for (const [verb, spec] of Object.entries(specs)) {
        const want = sorted([...CLIENT_FLAGS, ...spec.flags].map((f) => `--${f}`));
        expect(await bashComplete(['coffer', c.name, verb, '--']), `${c.name} ${verb}`).toEqual(want);
      }
    }
    expect(await bashComplete(['coffer', 'secret', 'get', 'app/x', '--st'])).toEqual(['--stale']);
    expect(await bashComplete(['coffer', 'login', '--'])).toEqual(['--addr', '--help', '--json']);
    expect(await bashComplete(['coffer', 'server', '--'])).toEqual(['--dev', '--help']);
  });

  it('completes file names where a FILE goes, and a flag\'s fixed values', async () => {
    expect(await bashComplete(['coffer', 'snapshot', 'restore', 'sta'])).toEqual(['state.db']);
    expect(await bashComplete(['coffer', 'role', 'put', 'r', '--file', 'sta'])).toEqual(['state.db']);
    expect(await bashComplete(['coffer', 'secret', 'rotate', 'x', '--charset', 'h'])).toEqual(['hex']);
    // A value flag's value is not taken for the subcommand.
    expect(await bashComplete(['coffer', 'secret', 'get', '--version', '3', 'app/x', '--j'])).toEqual(['--json']);
  });
});

describe('coffer completion zsh', () => {
  it('zsh is installed (apt-get install zsh; .ci/run installs it)', () => {
    let where = '';
    try {
      where = execFileSync('sh', ['-c', 'command -v zsh']).toString().trim();
    } catch {
      /* not found */
    }
    expect(where, 'zsh is not installed: the zsh completion cannot be checked').not.toBe('');
  });

  it('is valid zsh, and registers _coffer for coffer with compinit', async () => {
    await run('zsh', ['-n', zshFile]);
    const script = `autoload -U compinit && compinit -u -d ${quote(path.join(dir, 'zcompdump'))}; source ${quote(zshFile)}; print -r -- $_comps[coffer]`;
    const { stdout } = await run('zsh', ['-f', '-c', script], { cwd: dir });
    expect(stdout.trim()).toBe('_coffer');
  });

  it('works from fpath as an autoloaded _coffer (the install line in completion --help)', async () => {
    const script = `fpath=(${quote(dir)} $fpath); autoload -U compinit && compinit -u -d ${quote(path.join(dir, 'zcompdump2'))}; print -r -- $_comps[coffer]`;
    const { stdout } = await run('zsh', ['-f', '-c', script], { cwd: dir });
    expect(stdout.trim()).toBe('_coffer');
  });

  it('offers commands, subcommands, flags and files as bash does', async () => {
    expect(await zshComplete(['coffer', ''])).toEqual(sorted([...COMMANDS.map((c) => c.name), 'help']));
    for (const c of COMMANDS.filter((x) => x.subcommands.length)) {
      expect(await zshComplete(['coffer', c.name, '']), c.name).toEqual(sorted(c.subcommands));
    }
    expect(await zshComplete(['coffer', 'secret', 'list', '--'])).toEqual(sorted([...CLIENT_FLAGS, 'recursive', 'limit'].map((f) => `--${f}`)));
    expect(await zshComplete(['coffer', '--token', 'x', 'token', ''])).toEqual(sorted(COMMANDS.find((c) => c.name === 'token')!.subcommands));
    expect(await zshComplete(['coffer', 'snapshot', 'save', ''])).toEqual(['_files']);
    expect(await zshComplete(['coffer', 'secret', 'rotate', 'x', '--charset', ''])).toEqual(['alphanumeric', 'base64url', 'hex', 'printable']);
  });
});
