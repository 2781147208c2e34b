// The test:kms harness: a real KMS emulator (moto in server mode, speaking the
// AWS JSON protocol) on 127.0.0.1, plus the env that points a Coffer node at it.
//
// - ensureMoto(): installs moto[server] (pinned) with pip into a venv cached
//   outside the checkout, ${XDG_CACHE_HOME:-$HOME/.cache}/coffer/moto-venv
//   (COFFER_MOTO_VENV overrides). Skipped when the venv already has that
//   version. Throws (the tier fails) when it cannot be installed.
// - MotoServer: one emulator process on a fixed loopback port; stop() and
//   start() again reuse the port, so a node's AWS_ENDPOINT_URL_KMS stays valid
//   across an outage. Keys are derived from a per-server seed (moto_server.py),
//   so createKey() after a restart brings back the same key, as a real KMS
//   would still have it.
import { CreateAliasCommand, CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers/net.js';

export const MOTO_VERSION = '5.2.5';
export const REGION = 'us-east-1';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const SHIM = path.join(HERE, 'moto_server.py');
const PIP_TIMEOUT_MS = 15 * 60_000;

export function motoVenv(): string {
  if (process.env.COFFER_MOTO_VENV) return process.env.COFFER_MOTO_VENV;
  const cache = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(cache, 'coffer', 'moto-venv');
}

export function motoPython(): string {
  return path.join(motoVenv(), 'bin', 'python');
}

/** The moto version importable from the venv (with its server extra), or null. */
function installedVersion(): string | null {
  if (!fs.existsSync(motoPython())) return null;
  const r = spawnSync(motoPython(), ['-c', 'import moto, moto.server, flask; print(moto.__version__)'], { encoding: 'utf8', timeout: 60_000 });
  return r.status === 0 ? r.stdout.trim() : null;
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: PIP_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : `exit ${r.status ?? r.signal}`;
    throw new Error(`test:kms cannot install its KMS emulator: \`${path.basename(cmd)} ${args.join(' ')}\` failed (${why})\n${r.stdout ?? ''}\n${r.stderr ?? ''}`);
  }
}

/** Makes sure moto[server]==MOTO_VERSION is installed in the cached venv; throws otherwise. */
export function ensureMoto(log: (line: string) => void = () => {}): void {
  const have = installedVersion();
  if (have === MOTO_VERSION) {
    log(`moto ${have} already installed in ${motoVenv()}`);
    return;
  }
  const started = Date.now();
  const venv = motoVenv();
  if (!fs.existsSync(motoPython())) {
    fs.mkdirSync(path.dirname(venv), { recursive: true });
    log(`creating venv ${venv}`);
    run(process.env.PYTHON ?? 'python3', ['-m', 'venv', venv]);
  }
  log(`installing moto[server]==${MOTO_VERSION} into ${venv} (found ${have ?? 'none'})`);
  run(motoPython(), ['-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '--quiet', `moto[server]==${MOTO_VERSION}`]);
  const now = installedVersion();
  if (now !== MOTO_VERSION) throw new Error(`test:kms: after pip install, the venv has moto ${now ?? 'none'}, not ${MOTO_VERSION}`);
  log(`moto ${now} installed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

export interface MotoKey {
  keyId: string;
  arn: string;
  alias: string;
}

/** AWS SDK env for a client of this emulator: dummy credentials, no IMDS, no shared config files. */
export function awsEnv(endpoint: string): Record<string, string> {
  return {
    AWS_REGION: REGION,
    AWS_ENDPOINT_URL_KMS: endpoint,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_CONFIG_FILE: os.devNull,
    AWS_SHARED_CREDENTIALS_FILE: os.devNull,
  };
}

/** Env that turns a Coffer node (test/helpers nodeEnv or TestCluster) into an aws-mode node. */
export function cofferAwsEnv(endpoint: string, keyId: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    VAULT_KMS_MODE: 'aws',
    VAULT_KMS_KEY_ID: keyId,
    VAULT_LOCAL_MASTER_KEY: '', // the helpers set one for local mode; aws mode refuses it, and empty counts as unset
    ...awsEnv(endpoint),
    ...extra,
  };
}

export class MotoServer {
  private proc: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private output = '';
  private readonly seed = randomBytes(16).toString('hex');
  private keysCreated: Array<{ alias: string; arn: string }> = [];
  readonly client: KMSClient;

  private constructor(readonly port: number) {
    this.client = new KMSClient({
      region: REGION,
      endpoint: this.endpoint,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      maxAttempts: 1,
      requestHandler: { connectionTimeout: 2_000, requestTimeout: 5_000 },
    });
  }

  /** Starts an emulator on a free loopback port. */
  static async start(): Promise<MotoServer> {
    const m = new MotoServer(await freePort('127.0.0.1'));
    await m.start();
    return m;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.proc !== null;
  }

  /** Last lines the emulator printed (for failure messages). */
  tail(lines = 40): string {
    return this.output.split('\n').slice(-lines).join('\n');
  }

  /** Starts the emulator on this.port and waits until it answers (bounded). */
  async start(timeoutMs = 60_000): Promise<void> {
    if (this.proc) throw new Error('moto is already running');
    this.output = '';
    const proc = spawn(motoPython(), [SHIM, '-H', '127.0.0.1', '-p', String(this.port)], {
      env: {
        PATH: process.env.PATH ?? '',
        HOME: os.tmpdir(),
        PYTHONUNBUFFERED: '1',
        COFFER_MOTO_KEY_SEED: this.seed,
        COFFER_MOTO_PARENT_PID: String(process.pid),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    const append = (d: Buffer) => {
      this.output = (this.output + d.toString()).slice(-20_000);
    };
    proc.stdout!.on('data', append);
    proc.stderr!.on('data', append);
    this.exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    void this.exited.then(() => {
      if (this.proc === proc) this.proc = null;
    });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.proc !== proc) throw new Error(`moto exited before answering on port ${this.port}:\n${this.tail()}`);
      if (await answers(this.port)) return;
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`moto did not answer on port ${this.port} within ${timeoutMs} ms:\n${this.tail()}`);
      }
      await sleep(100);
    }
  }

  /** Stops the emulator (SIGTERM, then SIGKILL after 5 s); waits until the port refuses connections. */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    proc.kill('SIGTERM');
    const killed = await Promise.race([this.exited.then(() => true), sleep(5_000).then(() => false)]);
    if (!killed) {
      proc.kill('SIGKILL');
      await this.exited;
    }
    this.proc = null;
    const deadline = Date.now() + 5_000;
    while ((await answers(this.port)) && Date.now() < deadline) await sleep(50);
  }

  /**
   * CreateKey (symmetric, ENCRYPT_DECRYPT) + CreateAlias. After a restart, call
   * restoreKeys() instead: keys are recreated in the same order and so come back
   * with the same ids and material.
   */
  async createKey(alias = `alias/coffer-test-${this.keysCreated.length + 1}`): Promise<MotoKey> {
    const out = await this.client.send(new CreateKeyCommand({ KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT', Description: 'coffer test:kms' }));
    const meta = out.KeyMetadata;
    if (!meta?.KeyId || !meta.Arn) throw new Error('moto CreateKey returned no key id');
    await this.client.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: meta.KeyId }));
    this.keysCreated.push({ alias, arn: meta.Arn });
    return { keyId: meta.KeyId, arn: meta.Arn, alias };
  }

  /** After stop()/start(): recreates every key created so far (same ARNs) and its alias. */
  async restoreKeys(): Promise<void> {
    const before = this.keysCreated;
    this.keysCreated = [];
    for (const k of before) {
      const again = await this.createKey(k.alias);
      if (again.arn !== k.arn) throw new Error(`moto restart did not restore key ${k.arn} (got ${again.arn})`);
    }
  }

  async close(): Promise<void> {
    await this.stop();
    this.client.destroy();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** True when something answers HTTP on 127.0.0.1:port (any status). */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/moto-api/', agent: false, timeout: 1_000 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}
