// Instructions per request, counted by valgrind's callgrind: a measure of CPU
// work that does not move with the machine's noise (bench/run.ts gives
// req/s, which on a shared 2-core machine varies by ±30 % between runs).
//
//   npx tsc -p . && node dist/bench/icount.js [--requests=10000] [--warmup=10000]
//       [--connections=16] [--only=bare,read] [--coffer-bin=dist/bin/coffer.js]
//       [--baseline-bin=other/dist/bin/coffer.js]
//
// Each server (the bare Fastify route of bench/bare-server.ts, a `coffer
// server` with local KMS and 8 seeded 256-byte secrets, and optionally a
// second Coffer build) runs alone under `valgrind --tool=callgrind
// --separate-threads=yes`. After `--warmup` requests (JIT tiers, caches),
// callgrind's counters are dumped and zeroed; then exactly `--requests`
// allowlisted GETs are sent with autocannon and the counters dumped again.
// The second dump, divided by the number of requests, is the report: the
// main (event-loop) thread, every other thread (V8's GC and compiler
// helpers, libuv's pool, Coffer's audit writer), and the total.
//
// Callgrind counts user-space instructions only: time in the kernel (the
// socket writes, fsync) and waiting for a wake-up are not in these figures.
// Under valgrind threads run one at a time and about 50× slower, so the
// background threads' share (GC helpers above all) varies more than the main
// thread's between runs. Needs valgrind (Debian package `valgrind`).
import autocannon, { type Result } from 'autocannon';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { HERE, ROOT, flagReaders, parseFlags, rejectUnknownFlags, runBench } from './common.js';

type Target = 'bare' | 'read' | 'read@base';

interface Count {
  target: Target;
  requests: number;
  main: number;
  others: number;
  /** Per other thread, largest first (instructions per request). */
  threads: number[];
}

const READ_NAMES = Array.from({ length: 8 }, (_, i) => `bench/r${i}`);
const running = new Set<ChildProcess>();
const tempDirs = new Set<string>();

function cleanup(): void {
  for (const c of running) {
    try {
      c.kill('SIGKILL');
    } catch {
      // gone already
    }
  }
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
}

async function count(target: Target, bin: string, s: { requests: number; warmup: number; connections: number }): Promise<Count> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-icount-'));
  tempDirs.add(dir);
  const out = path.join(dir, 'callgrind.out');
  const token = randomBytes(32).toString('base64url');
  const bare = target === 'bare';
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    LOG_LEVEL: 'info',
    VAULT_DATA_DIR: path.join(dir, 'data'),
    VAULT_API_ADDR: '127.0.0.1:0',
    VAULT_RAFT_ADDR: '127.0.0.1:0',
    VAULT_NODE_ID: 'bench',
    VAULT_KMS_MODE: 'local',
    VAULT_LOCAL_MASTER_KEY: randomBytes(32).toString('base64'),
    VAULT_BOOTSTRAP_TOKEN: token,
    VAULT_READ_ALLOWLIST: '127.0.0.1',
    BENCH_DURABLE_DIR: dir,
  };
  const args = ['--tool=callgrind', '--separate-threads=yes', `--callgrind-out-file=${out}`, process.execPath, bin, ...(bare ? [] : ['server'])];
  const child = spawn('valgrind', args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${target} did not start within 180 s\n${stderr}`)), 180_000);
      readline.createInterface({ input: child.stdout! }).on('line', (line) => {
        try {
          const o = JSON.parse(line) as { api?: string; url?: string };
          const u = o.api ?? o.url;
          if (u) {
            clearTimeout(timer);
            resolve(u);
          }
        } catch {
          // not JSON
        }
      });
      child.once('exit', (code) => reject(new Error(`${target} exited (${code}) before it was ready\n${stderr}`)));
    });
    if (!bare) {
      const value = randomBytes(192).toString('base64url');
      for (const n of READ_NAMES) {
        const r = await fetch(`${url}/v1/secrets/${n}`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ value }),
        });
        if (r.status !== 201) throw new Error(`seeding ${n}: HTTP ${r.status}`);
      }
    }
    const requests = bare ? [{ method: 'GET' as const, path: '/bare' }] : READ_NAMES.map((n) => ({ method: 'GET' as const, path: `/v1/secrets/${n}` }));
    const load = (amount: number) =>
      new Promise<Result>((resolve, reject) => {
        autocannon({ url, connections: s.connections, amount, requests }, (err, res) => (err ? reject(err) : resolve(res)));
      });
    const dump = () => execFileSync('callgrind_control', ['--dump', String(child.pid)], { stdio: 'ignore' });
    if (s.warmup > 0) await load(s.warmup);
    dump(); // zeroes the counters: start-up and warm-up end here
    const res = await load(s.requests);
    if (res.non2xx + res.errors + res.timeouts > 0) throw new Error(`${target}: ${res.non2xx} non-2xx, ${res.errors} errors, ${res.timeouts} timeouts`);
    dump();
    // Files are callgrind.out.<dump>-<thread>; the last dump holds the measured requests only.
    const files = fs.readdirSync(dir).filter((f) => /^callgrind\.out\.\d+-\d+$/.test(f));
    const last = Math.max(...files.map((f) => Number(/\.(\d+)-/.exec(f)![1])));
    const perThread = files
      .filter((f) => Number(/\.(\d+)-/.exec(f)![1]) === last)
      .map((f) => ({
        thread: Number(/-(\d+)$/.exec(f)![1]),
        ir: Number(/^(?:summary|totals): (\d+)/m.exec(fs.readFileSync(path.join(dir, f), 'utf8'))?.[1] ?? 0),
      }))
      .sort((a, b) => a.thread - b.thread);
    const n = res['2xx'];
    const main = perThread[0]?.ir ?? 0;
    const threads = perThread.slice(1).map((t) => t.ir / n).filter((x) => x >= 1).sort((a, b) => b - a);
    return { target, requests: n, main: main / n, others: threads.reduce((a, b) => a + b, 0), threads };
  } finally {
    child.kill('SIGKILL');
    running.delete(child);
    fs.rmSync(dir, { recursive: true, force: true });
    tempDirs.delete(dir);
  }
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const { get, num } = flagReaders(flags);
  rejectUnknownFlags(flags, ['requests', 'warmup', 'connections', 'only', 'coffer-bin', 'baseline-bin']);
  const s = { requests: Math.floor(num('requests', '10000', 100)), warmup: Math.floor(num('warmup', '10000', 0)), connections: Math.floor(num('connections', '16', 1)) };
  const only = get('only', 'bare,read').split(',').map((x) => x.trim());
  const cofferBin = path.resolve(get('coffer-bin', path.join(ROOT, 'dist', 'bin', 'coffer.js')));
  const baseline = get('baseline-bin', '');
  const plan: [Target, string][] = [];
  if (only.includes('bare')) plan.push(['bare', path.join(HERE, 'bare-server.js')]);
  if (only.includes('read')) plan.push(['read', cofferBin]);
  if (baseline !== '') plan.push(['read@base', path.resolve(baseline)]);
  const results: Count[] = [];
  for (const [target, bin] of plan) {
    process.stderr.write(`callgrind: ${target} (${bin}), ${s.warmup} warm-up + ${s.requests} requests at ${s.connections} connections…\n`);
    results.push(await count(target, bin, s));
  }
  const k = (x: number) => `${(x / 1000).toFixed(1)}k`;
  const label: Record<Target, string> = { bare: 'bare Fastify GET (constant)', read: 'Coffer GET /v1/secrets/{name}', 'read@base': 'Coffer GET, baseline build' };
  const lines = [
    `Node ${process.version}; callgrind instructions per request (${s.requests} requests after ${s.warmup} warm-up, ${s.connections} connections)`,
    '',
    '| Scenario | main thread | other threads (largest first) | total |',
    '|---|---:|---|---:|',
    ...results.map((r) => `| ${label[r.target]} | ${k(r.main)} | ${k(r.others)} (${r.threads.slice(0, 6).map(k).join(', ')}) | ${k(r.main + r.others)} |`),
  ];
  const bareR = results.find((r) => r.target === 'bare');
  for (const r of results) {
    if (r !== bareR && bareR) lines.push(`- ${r.target}: main thread ${(r.main / bareR.main).toFixed(2)}× bare, total ${((r.main + r.others) / (bareR.main + bareR.others)).toFixed(2)}× bare`);
  }
  const read = results.find((r) => r.target === 'read');
  const base = results.find((r) => r.target === 'read@base');
  if (read && base) lines.push(`- this build / baseline build: main thread ${(read.main / base.main).toFixed(2)}×, total ${((read.main + read.others) / (base.main + base.others)).toFixed(2)}×`);
  process.stdout.write(lines.join('\n') + '\n');
}

runBench(main, cleanup);
