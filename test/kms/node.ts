// aws-mode Coffer nodes for the test:kms tier: real `coffer server` processes
// (the AWS SDK reads its env at start, so in-process nodes would share the
// test worker's env), plus small readers for /metrics (state.db: test/helpers/state-db.ts).
import fs from 'node:fs';
import { request } from '../helpers/http.js';
import { nodeEnv, randomMasterKey, randomToken, spawnNode, tempDir, type SpawnedNode } from '../helpers/node.js';
import { cofferAwsEnv } from './moto.js';

export interface AwsNode {
  url: string;
  token: string;
  dataDir: string;
  env: Record<string, string>;
  proc: SpawnedNode;
  /** Stops the process (SIGTERM); the data dir stays. */
  stop(): Promise<void>;
  /** Starts it again on the same data dir (a new ephemeral API port). */
  restart(): Promise<void>;
  /** Stops it and removes its data dir. */
  destroy(): Promise<void>;
}

export async function spawnAwsNode(endpoint: string, keyId: string, extra: Record<string, string> = {}): Promise<AwsNode> {
  const dataDir = tempDir('coffer-kms-');
  const token = randomToken();
  const env = nodeEnv({ dataDir, masterKey: randomMasterKey(), bootstrapToken: token, env: cofferAwsEnv(endpoint, keyId, extra) });
  const node: AwsNode = {
    url: '',
    token,
    dataDir,
    env,
    proc: null as unknown as SpawnedNode,
    async stop() {
      await node.proc.stop();
    },
    async restart() {
      node.proc = await spawnNode(env);
      node.url = node.proc.url;
    },
    async destroy() {
      await node.proc?.stop('SIGKILL');
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
  try {
    await node.restart();
  } catch (err) {
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  return node;
}

/** Sample values of one metric family from GET /metrics, keyed by the label text (`{a="b"}` or ''). */
export async function metric(url: string, name: string): Promise<Map<string, number>> {
  const res = await request(url, 'GET', '/metrics');
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status} ${res.text}`);
  const out = new Map<string, number>();
  for (const line of res.text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && m[1] === name) out.set(m[2] ?? '', Number(m[3]));
  }
  return out;
}

/** Sum of the samples of `name` whose labels include every `key="value"` given. */
export async function metricSum(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  let sum = 0;
  for (const [l, v] of await metric(url, name)) {
    if (Object.entries(labels).every(([k, val]) => l.includes(`${k}="${val}"`))) sum += v;
  }
  return sum;
}

/** Runs `fn` and returns its result with the elapsed milliseconds. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - t0 };
}
