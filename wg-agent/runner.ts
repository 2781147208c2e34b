// Runs `wg` and `ip`: argv only (no shell), bounded in time. Errors carry the
// argv and the tool's stderr, with key-looking words masked.
//
// A secret input (the private key) reaches the tool as its stdin, read through
// `/dev/stdin`. Node's stdio pipes are socketpairs, which /dev/stdin cannot
// reopen, so the secret goes into a 0600 file in a private 0700 directory that
// is unlinked at once, written with pwrite (the shared offset stays at 0), and
// handed over as the child's fd 0; it is overwritten with zeros afterwards.
// The file never has a name for longer than one syscall, never holds the key
// after the command, and is gone with the process if the agent dies.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface RunResult {
  stdout: Buffer;
}

export interface RunOptions {
  /** Secret bytes for the tool's stdin (`/dev/stdin`). The caller zeroes its copy. */
  secretStdin?: Buffer;
  timeoutMs?: number;
}

export interface CommandRunner {
  /** Runs `file args…`; rejects with CommandError on a non-zero exit, a spawn failure or a timeout. */
  run(file: string, args: readonly string[], opts?: RunOptions): Promise<RunResult>;
}

export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(readonly command: string, readonly detail: string, readonly code: number | null) {
    super(`${command}: ${detail}`);
  }
}

const KEYLIKE = /[A-Za-z0-9+/]{43}=/g;

/** Masks anything shaped like a WireGuard key (public ones included) in a tool's message. */
export function maskKeys(text: string): string {
  return text.replace(KEYLIKE, (k) => `${k.slice(0, 4)}…(key)`);
}

function firstLines(text: string): string {
  return text.trim().split('\n').slice(0, 3).join(' | ');
}

/** A private 0700 directory for secret stdin files; removed by close(). */
export class ProcessRunner implements CommandRunner {
  private dir: string | null = null;

  constructor(private readonly tmpRoot: string = os.tmpdir()) {}

  private secretFd(bytes: Buffer): number {
    if (!this.dir) {
      this.dir = fs.mkdtempSync(path.join(this.tmpRoot, 'coffer-wg-agent-'));
      fs.chmodSync(this.dir, 0o700);
    }
    const file = path.join(this.dir, 'stdin');
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    fs.unlinkSync(file);
    try {
      fs.writeSync(fd, bytes, 0, bytes.length, 0);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    return fd;
  }

  private static wipe(fd: number, length: number): void {
    try {
      fs.writeSync(fd, Buffer.alloc(length), 0, length, 0);
      fs.ftruncateSync(fd, 0);
    } finally {
      fs.closeSync(fd);
    }
  }

  run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const shown = maskKeys([file, ...args].join(' '));
    const secretLen = opts.secretStdin?.length ?? 0;
    const fd = opts.secretStdin ? this.secretFd(opts.secretStdin) : null;
    return new Promise<RunResult>((resolve, reject) => {
      const child = spawn(file, args, { stdio: [fd ?? 'ignore', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      let err = '';
      child.stdout!.on('data', (d: Buffer) => out.push(d));
      child.stderr!.on('data', (d: Buffer) => (err += d.toString('utf8')));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new CommandError(shown, `no answer within ${timeoutMs} ms`, null));
      }, timeoutMs);
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(new CommandError(shown, e.message, null));
      });
      child.once('close', (code) => {
        clearTimeout(timer);
        const stdout = Buffer.concat(out);
        for (const b of out) b.fill(0);
        if (code === 0) resolve({ stdout });
        else {
          stdout.fill(0);
          reject(new CommandError(shown, maskKeys(firstLines(err)) || `exit code ${code}`, code));
        }
      });
    }).finally(() => {
      if (fd !== null) ProcessRunner.wipe(fd, secretLen);
    });
  }

  /** Removes the private directory. */
  close(): void {
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
    this.dir = null;
  }
}
