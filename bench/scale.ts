// Scale bench (issue 18): a 3-node Coffer filled to N secrets × V versions,
// measured at each checkpoint against a near-empty store (1,000 secrets): data size and RSS per
// node, write and read rates, a follower's and the whole cluster's restart
// to ready, and a snapshot sent to a new member. Costs are also given per
// secret, so growth worse than linear shows as a rising per-secret figure.
//
//   npx tsc -p . && node dist/bench/scale.js [--checkpoints=10000,100000] [--versions=3]
//        [--connections=64] [--rate-seconds=5] [--keep]
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Request } from 'autocannon';
import { cannon, flagReaders, freePort, parseFlags, rejectUnknownFlags, ROOT, runBench } from './common.js';
import { fetchJson, poll } from './cluster-members.js';

const flags = parseFlags(process.argv.slice(2));
rejectUnknownFlags(flags, ['checkpoints', 'versions', 'connections', 'rate-seconds', 'keep']);
const { get, num } = flagReaders(flags);
const CHECKPOINTS = get('checkpoints', '10000,100000').split(',').map(Number);
if (CHECKPOINTS.some((n, i) => !Number.isInteger(n) || n < 1 || (i > 0 && n <= CHECKPOINTS[i - 1]!))) {
  throw new Error('--checkpoints must be increasing whole numbers');
}
const VERSIONS = Math.floor(num('versions', '3', 1));
const CONNECTIONS = Math.floor(num('connections', '64', 1));
const RATE_SECONDS = num('rate-seconds', '5', 1);
const KEEP = get('keep', 'false') === 'true';
const VALUE = randomBytes(192).toString('base64'); // 256 bytes, as the other benches write
const BIN = path.join(ROOT, 'dist', 'bin', 'coffer.js');
const TOKEN = `coffer_${randomBytes(24).toString('base64url')}`;
const ROOT_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-scale-'));
const auth = { authorization: `Bearer ${TOKEN}` };

interface Node {
  id: string;
  host: string;
  api: number;
  raft: number;
  dir: string;
  env: NodeJS.ProcessEnv;
  child: ChildProcess | null;
}

const nodes: Node[] = [];
const url = (n: Node) => `http://${n.host}:${n.api}`;

function nodeEnv(n: Omit<Node, 'env' | 'child'>, peers: string, keys: { master: string; cluster: string }): NodeJS.ProcessEnv {
  return {
    ...process.env,
    LOG_LEVEL: 'warn',
    VAULT_DATA_DIR: n.dir,
    VAULT_API_ADDR: `${n.host}:${n.api}`,
    VAULT_RAFT_ADDR: `${n.host}:${n.raft}`,
    VAULT_NODE_ID: n.id,
    VAULT_PEERS: peers,
    VAULT_KMS_MODE: 'local',
    VAULT_LOCAL_MASTER_KEY: keys.master,
    VAULT_CLUSTER_KEY: keys.cluster,
    VAULT_BOOTSTRAP_TOKEN: TOKEN,
    VAULT_READ_ALLOWLIST: '127.0.0.0/8',
  };
}

function start(n: Node): void {
  const log = fs.openSync(path.join(ROOT_DIR, `${n.id}.log`), 'a');
  n.child = spawn(process.execPath, [BIN, 'server'], { env: n.env, stdio: ['ignore', log, log] });
  fs.closeSync(log);
}

async function stop(n: Node): Promise<void> {
  const c = n.child;
  n.child = null;
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(t);
}

interface ClusterView {
  leader_id: string | null;
  commit_index: number;
  applied_index: number;
}

async function view(n: Node): Promise<ClusterView | null> {
  const r = await fetchJson(`${url(n)}/v1/admin/cluster`, { headers: auth });
  return r.status === 200 ? (r.body as ClusterView) : null;
}

/** Until `n` answers /v1/ready and has applied at least `index`. */
async function readyAt(n: Node, index: number, timeoutMs: number): Promise<void> {
  await poll(`${n.id} not ready`, timeoutMs, async () => {
    if ((await fetchJson(`${url(n)}/v1/ready`)).status !== 200) return null;
    const v = await view(n);
    return v && v.applied_index >= index ? true : null;
  });
}

async function leader(): Promise<Node> {
  return poll('no leader', 60_000, async () => {
    const v = await view(nodes[0]!);
    return nodes.find((n) => n.id === v?.leader_id) ?? null;
  });
}

function duBytes(p: string): number {
  let total = 0;
  const st = fs.statSync(p, { throwIfNoEntry: false });
  if (!st) return 0;
  if (!st.isDirectory()) return st.blocks * 512;
  for (const e of fs.readdirSync(p)) total += duBytes(path.join(p, e));
  return total;
}

function rssMiB(n: Node): number {
  const status = fs.readFileSync(`/proc/${n.child!.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

const name = (i: number) => `scale/${String(i % 100).padStart(2, '0')}/s${i}`;

/** Writes VERSIONS versions of names [from, to) to the leader with CONNECTIONS concurrent writers. */
async function fill(from: number, to: number): Promise<number> {
  const l = await leader();
  let next = from;
  const t0 = performance.now();
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= to) return;
      for (let v = 0; v < VERSIONS; v++) {
        for (let attempt = 0; ; attempt++) {
          const r = await fetch(`${url(l)}/v1/secrets/${name(i)}`, {
            method: 'PUT',
            headers: { ...auth, 'content-type': 'application/json' },
            body: JSON.stringify({ value: VALUE }),
          });
          await r.arrayBuffer();
          if (r.ok) break;
          if (attempt > 5) throw new Error(`PUT ${name(i)}: ${r.status}`);
          await new Promise((res) => setTimeout(res, 200));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  return ((to - from) * VERSIONS) / ((performance.now() - t0) / 1000);
}

/** Requests/s and p99 of writes (new versions of 1,000 existing names) and linearizable reads, on the leader. */
async function rates(count: number): Promise<{ write: number; writeP99: number; read: number; readP99: number }> {
  const l = await leader();
  // 1,000 names spread over the whole store, so a large store's reads do not all hit one corner of it.
  const pick = () => name(Math.floor(Math.random() * 1000) * Math.max(1, Math.floor(count / 1000)));
  const common = { url: url(l), connections: CONNECTIONS, duration: RATE_SECONDS };
  const w = await cannon({
    ...common,
    requests: [{ setupRequest: (req: Request): Request => ({ ...req, method: 'PUT', path: `/v1/secrets/${pick()}`, headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ value: VALUE }) }) }],
  });
  const r = await cannon({
    ...common,
    requests: [{ setupRequest: (req: Request): Request => ({ ...req, method: 'GET', path: `/v1/secrets/${pick()}` }) }],
  });
  if (w.result.non2xx || r.result.non2xx) throw new Error(`rates: ${w.result.non2xx} writes and ${r.result.non2xx} reads failed`);
  return { write: w.result.requests.average, writeP99: w.p99, read: r.result.requests.average, readP99: r.p99 };
}

async function restartFollower(): Promise<number> {
  const l = await leader();
  const f = nodes.find((n) => n !== l)!;
  const commit = (await view(l))!.commit_index;
  await stop(f);
  const t0 = performance.now();
  start(f);
  await readyAt(f, commit, 600_000);
  return (performance.now() - t0) / 1000;
}

async function restartAll(): Promise<number> {
  const commit = (await view(await leader()))!.commit_index;
  await Promise.all(nodes.map(stop));
  const t0 = performance.now();
  nodes.forEach(start);
  await Promise.all(nodes.map((n) => readyAt(n, commit, 600_000)));
  return (performance.now() - t0) / 1000;
}

/** A fresh fourth member added through the API: seconds until it has applied the leader's commit index. */
async function snapshotToNewMember(keys: { master: string; cluster: string }, peers: string): Promise<{ secs: number; bytes: number }> {
  const host = '127.0.0.4';
  const base = { id: 'n4', host, api: await freePort(host), raft: await freePort(host), dir: path.join(ROOT_DIR, 'n4') };
  fs.rmSync(base.dir, { recursive: true, force: true });
  fs.mkdirSync(base.dir, { recursive: true, mode: 0o700 });
  const n4: Node = { ...base, env: nodeEnv(base, peers, keys), child: null };
  start(n4);
  await poll('n4 did not start', 30_000, async () => ((await fetchJson(`${url(n4)}/v1/health`)).status ? true : null));
  const l = await leader();
  const t0 = performance.now();
  const add = await fetchJson(`${url(l)}/v1/admin/cluster/peers`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ id: 'n4', address: `${host}:${base.raft}` }) });
  if (add.status >= 300) throw new Error(`add n4: ${add.status} ${JSON.stringify(add.body)}`);
  const commit = (await view(l))!.commit_index;
  await readyAt(n4, commit, 600_000);
  const secs = (performance.now() - t0) / 1000;
  const bytes = duBytes(base.dir);
  const del = await fetchJson(`${url(await leader())}/v1/admin/cluster/peers/n4`, { method: 'DELETE', headers: auth });
  if (del.status >= 300) throw new Error(`remove n4: ${del.status} ${JSON.stringify(del.body)}`);
  await stop(n4);
  fs.rmSync(base.dir, { recursive: true, force: true });
  return { secs, bytes };
}

interface Row {
  secrets: number;
  fillRate: number | null;
  sizes: { state: number; raft: number; audit: number; total: number }[];
  rss: number[];
  rates: Awaited<ReturnType<typeof rates>>;
  restartFollower: number;
  restartAll: number;
  snapshot: { secs: number; bytes: number };
}

function sizes(n: Node): Row['sizes'][number] {
  const f = (p: string) => duBytes(path.join(n.dir, p));
  const state = f('state.db') + f('state.db-wal') + f('state.db-shm');
  const audit = f('audit.db') + f('audit.db-wal') + f('audit.db-shm');
  const raft = f('raft');
  return { state, raft, audit, total: duBytes(n.dir) };
}

const mib = (b: number) => (b / 1048576).toFixed(1);

function table(rows: Row[]): string {
  const lines = [
    `| secrets (×${VERSIONS} versions) | fill writes/s | state.db MiB | raft/ MiB | audit.db MiB | node total MiB (largest node) | RSS MiB (n1/n2/n3) | writes/s c=${CONNECTIONS} | write p99 ms | reads/s c=${CONNECTIONS} | read p99 ms | follower restart → ready s | all 3 restart → ready s | new member caught up s (MiB) |`,
    '|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    // The largest node: the leader serves the traffic, so its audit.db is the one that grows.
    const s = { state: 0, raft: 0, audit: 0, total: 0 };
    for (const x of r.sizes) for (const k of ['state', 'raft', 'audit', 'total'] as const) s[k] = Math.max(s[k], x[k]);
    lines.push(
      `| ${r.secrets.toLocaleString('en')}${r === rows[0] ? ' (baseline)' : ''} | ${r.fillRate === null ? '–' : r.fillRate.toFixed(0)} | ${mib(s.state)} | ${mib(s.raft)} | ${mib(s.audit)} | ${mib(s.total)} | ${r.rss.map((x) => x.toFixed(0)).join(' / ')} | ${r.rates.write.toFixed(0)} | ${r.rates.writeP99.toFixed(1)} | ${r.rates.read.toFixed(0)} | ${r.rates.readP99.toFixed(1)} | ${r.restartFollower.toFixed(2)} | ${r.restartAll.toFixed(2)} | ${r.snapshot.secs.toFixed(2)} (${mib(r.snapshot.bytes)}) |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const keys = { master: randomBytes(32).toString('base64'), cluster: randomBytes(32).toString('base64') };
  for (let i = 1; i <= 3; i++) {
    const host = `127.0.0.${i}`;
    nodes.push({ id: `n${i}`, host, api: await freePort(host), raft: await freePort(host), dir: path.join(ROOT_DIR, `n${i}`), env: {}, child: null });
  }
  const peers = nodes.map((n) => `${n.id}=${n.host}:${n.raft}`).join(',');
  for (const n of nodes) {
    fs.mkdirSync(n.dir, { recursive: true, mode: 0o700 });
    n.env = nodeEnv(n, peers, keys);
    start(n);
  }
  await leader();
  await Promise.all(nodes.map((n) => readyAt(n, 1, 60_000)));
  process.stderr.write(`scale bench: data in ${ROOT_DIR}\n`);

  const rows: Row[] = [];
  let filled = 0;
  // The baseline is a near-empty store: 1,000 names (reads need something to read).
  const points = [1000, ...CHECKPOINTS.filter((c) => c > 1000)];
  for (const target of points) {
    let fillRate: number | null = null;
    if (target > filled) {
      fillRate = await fill(filled, target);
      filled = target;
    }
    process.stderr.write(`  ${target} secrets: measuring\n`);
    const rs = await rates(filled);
    const row: Row = {
      secrets: target,
      fillRate: rows.length === 0 ? null : fillRate,
      sizes: nodes.map(sizes),
      rss: nodes.map(rssMiB),
      rates: rs,
      restartFollower: await restartFollower(),
      restartAll: await restartAll(),
      snapshot: await snapshotToNewMember(keys, peers),
    };
    rows.push(row);
    process.stderr.write(table(rows) + '\n');
  }
  process.stdout.write(`\n${table(rows)}\n\nPer 1,000 secrets above the baseline row (linear growth keeps these flat):\n`);
  const [empty, ...rest] = rows;
  for (const r of rest) {
    const k = (r.secrets - empty!.secrets) / 1000;
    process.stdout.write(
      `  ${r.secrets.toLocaleString('en')}: node data ${mib((Math.max(...r.sizes.map((x) => x.total)) - Math.max(...empty!.sizes.map((x) => x.total))) / k)} MiB, RSS ${((r.rss[0]! - empty!.rss[0]!) / k).toFixed(2)} MiB, follower restart ${((r.restartFollower - empty!.restartFollower) / k * 1000).toFixed(1)} ms, new member ${((r.snapshot.secs - empty!.snapshot.secs) / k * 1000).toFixed(1)} ms\n`,
    );
  }
  await Promise.all(nodes.map(stop));
  if (!KEEP) fs.rmSync(ROOT_DIR, { recursive: true, force: true });
}

runBench(main, () => {
  for (const n of nodes) n.child?.kill('SIGKILL');
});
