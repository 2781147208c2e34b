// Starts real Coffer nodes for tests: in-process (startNode on a real port and
// real SQLite files) or as a separate `coffer server` process.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterEach } from 'vitest';
import { loadConfig } from '../../server/config/config.js';
import { startNode, type RunningNode } from '../../server/node/node.js';

// Two levels up, or three when compiled into dist/test/helpers (bench/sync.ts imports this).
const UP = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const ROOT = fs.existsSync(path.join(UP, 'package.json')) ? UP : path.dirname(UP);
export const COFFER_BIN = path.join(ROOT, 'dist/bin/coffer.js');

export function tempDir(prefix = 'coffer-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function randomMasterKey(): string {
  return randomBytes(32).toString('base64');
}

export function randomToken(): string {
  return 'boot_' + randomBytes(32).toString('base64url');
}

export interface TestNodeOptions {
  dataDir?: string;
  env?: Record<string, string>;
  masterKey?: string;
  bootstrapToken?: string;
  host?: string;
}

export interface TestNode {
  url: string;
  dataDir: string;
  token: string;
  masterKey: string;
  env: Record<string, string>;
  node: RunningNode;
  logFile: string;
  close(): Promise<void>;
}

/** Env for a single local-KMS node on an ephemeral loopback port. */
export function nodeEnv(opts: TestNodeOptions & { dataDir: string; masterKey: string; bootstrapToken: string }): Record<string, string> {
  return {
    VAULT_DATA_DIR: opts.dataDir,
    VAULT_API_ADDR: `${opts.host ?? '127.0.0.1'}:0`,
    VAULT_RAFT_ADDR: '127.0.0.1:0',
    VAULT_NODE_ID: 'n1',
    VAULT_KMS_MODE: 'local',
    VAULT_LOCAL_MASTER_KEY: opts.masterKey,
    VAULT_BOOTSTRAP_TOKEN: opts.bootstrapToken,
    VAULT_READ_ALLOWLIST: '127.0.0.1',
    ...opts.env,
  };
}

/** In-process node; logs go to `<dataDir>/node.log` so tests can search them. */
export async function startTestNode(opts: TestNodeOptions = {}): Promise<TestNode> {
  const dataDir = opts.dataDir ?? tempDir();
  const masterKey = opts.masterKey ?? randomMasterKey();
  const token = opts.bootstrapToken ?? randomToken();
  const env = nodeEnv({ ...opts, dataDir, masterKey, bootstrapToken: token });
  const logFile = path.join(dataDir, 'node.log');
  const logger = pino({ level: 'debug' }, pino.destination({ dest: logFile, sync: true, append: true }));
  const node = await startNode(loadConfig(env), logger);
  return { url: node.apiUrl, dataDir, token, masterKey, env, node, logFile, close: () => node.close() };
}

export interface SpawnedNode {
  url: string;
  proc: ChildProcess;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** A real `coffer server` process; resolves once its API answers /v1/health. */
export async function spawnNode(env: Record<string, string>, args: string[] = ['server']): Promise<SpawnedNode> {
  const proc = spawn(process.execPath, [COFFER_BIN, ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node did not start:\n${out}`)), 15_000);
    const check = () => {
      const m = /"api":"(https?:\/\/[^"]+)"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    };
    proc.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      // The CLI's one-line reason first: CI's summary keeps only an error's first line.
      const reason = /^coffer server: .*$/m.exec(out)?.[0];
      reject(new Error(`node exited with ${code}${reason ? ` (${reason})` : ''}:\n${out}`));
    });
  });
  return {
    url,
    proc,
    output: () => out,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** Lists every regular file below a folder (for plaintext searches). */
export function allFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...allFiles(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** Runs `coffer server` expecting it to stop by itself (e.g. bad configuration); resolves with its exit code and output. */
export async function runToExit(env: Record<string, string>, args: string[] = ['server'], timeoutMs = 15_000): Promise<{ code: number | null; output: string }> {
  if (!fs.existsSync(COFFER_BIN)) throw new Error(`${path.relative(ROOT, COFFER_BIN)} is missing: run \`npx tsc -p .\` first`);
  const proc = spawn(process.execPath, [COFFER_BIN, ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`coffer ${args.join(' ')} did not exit within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    proc.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** A startTestNode for one test file: every node it starts is closed after each test. */
export function nodesClosedAfterEach(): (opts?: TestNodeOptions) => Promise<TestNode> {
  let nodes: TestNode[] = [];
  afterEach(async () => {
    await Promise.all(nodes.map((n) => n.close()));
    nodes = [];
  });
  return async (opts = {}) => {
    const n = await startTestNode(opts);
    nodes.push(n);
    return n;
  };
}
