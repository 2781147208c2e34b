// `npm run bench`: single-node Coffer value reads and writes under autocannon,
// beside a bare Fastify route returning a constant body, in the same run.
//
// Starts child processes on loopback (a bare Fastify server and a real
// `coffer server` with a temporary data dir and local KMS), seeds secrets
// with 256-byte values, warms up, then runs bare GET / durable GET / Coffer
// GET / Coffer PUT interleaved, `repeats` times per connection count, and
// prints medians as a markdown table. "durable" is the bare route answering
// only after a 512-byte record is fdatasynced (group commit): the floor for a
// server that, like Coffer, makes an audit record durable before answering.
// For writes it also measures the disk's fsync rate and the Coffer process's
// CPU use, to tell fsync-bound from CPU-bound.
//
// Flags (or BENCH_* env): --duration=10 --warmup=3 --connections=1,64
// --repeats=3 --only=bare,durable,read,write --cpu-prof (profile the coffer
// child; the .cpuprofile lands in the kept temp dir) --keep (keep the temp dir)
// --coffer-bin=path/to/coffer.js (another build; default dist/bin/coffer.js)
// --baseline-bin=path/to/other/coffer.js (A/B in one run: a second coffer
// server from that build, seeded alike, whose reads and writes are
// interleaved with the others as read@base / write@base).
// --baseline-env=K=V;K=V (the same A/B with this build and extra environment
// for the second server, e.g. the audit export on:
// --baseline-env='VAULT_AUDIT_STDOUT=true;VAULT_AUDIT_FILE=@/audit.jsonl', `@` = its data dir).
import type { Options } from 'autocannon';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  HERE,
  ROOT,
  cannon,
  cpuSeconds,
  flagReaders,
  fsyncRate,
  killChildrenNow,
  liveChildren,
  loopTimes,
  machineBusySeconds,
  markStopping,
  parseFlags,
  rejectUnknownFlags,
  startChild,
  stopChild,
  runBench,
  threadCpuSeconds,
} from './common.js';

type Scenario = 'bare' | 'durable' | 'read' | 'write' | 'read@base' | 'write@base';
const SELECTABLE = ['bare', 'durable', 'read', 'write'] as const;

interface Settings {
  duration: number;
  warmup: number;
  connections: number[];
  repeats: number;
  /** In run order; read@base / write@base follow read / write when a baseline build is given. */
  only: Scenario[];
  cpuProf: boolean;
  keep: boolean;
  cofferBin: string;
  baselineBin: string | null;
  /** Extra environment of the A/B server (same build unless baselineBin). */
  baselineEnv: Record<string, string> | null;
}

interface Sample {
  scenario: Scenario;
  connections: number;
  rps: number;
  p50: number;
  p99: number;
  bad: number;
  /** CPU of the server process, % of one core. */
  serverCpu: number;
  /** CPU of the server's main (event-loop) thread alone, % of one core. */
  mainCpu: number;
  /** Event-loop utilization of the server's main thread, % (busy in JS or blocked in a synchronous call). */
  serverLoop: number;
  /** CPU of this process (autocannon), % of one core. */
  loadCpu: number;
  /** CPU used by everything else on the machine (other users' jobs, kernel), % of one core. */
  otherCpu: number;
  /** Coffer only: audit batches (one SQLite commit + fsync each) per second. */
  auditBatches?: number;
  /** Coffer only: seconds spent inside audit flushes per wall second (the event loop is blocked meanwhile). */
  auditBusy?: number;
}

const BARE_SERVER = path.join(HERE, 'bare-server.js');

const READ_NAMES = Array.from({ length: 8 }, (_, i) => `bench/r${i}`);
const WRITE_NAMES = Array.from({ length: 256 }, (_, i) => `bench/w${i}`);
const VALUE_BYTES = 256;

let tempDir: string | null = null;

// ---------------------------------------------------------------- settings

function settings(argv: string[]): Settings {
  const flags = parseFlags(argv);
  const { get, num } = flagReaders(flags);
  const connections = get('connections', '1,64')
    .split(',')
    .map((s) => Number(s.trim()));
  if (connections.some((c) => !Number.isInteger(c) || c < 1)) throw new Error('--connections must be a comma list of positive integers');
  const picked = get('only', SELECTABLE.join(',')).split(',').map((s) => s.trim());
  if (picked.some((s) => !(SELECTABLE as readonly string[]).includes(s))) throw new Error(`--only takes ${SELECTABLE.join(', ')}`);
  rejectUnknownFlags(flags, ['duration', 'warmup', 'connections', 'repeats', 'only', 'cpu-prof', 'keep', 'coffer-bin', 'baseline-bin', 'baseline-env']);
  const baseline = get('baseline-bin', '');
  const envText = get('baseline-env', '');
  const baselineEnv = envText === '' ? null : Object.fromEntries(envText.split(';').map((kv) => {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new Error(`--baseline-env takes K=V;K=V, got ${JSON.stringify(kv)}`);
    return [kv.slice(0, eq), kv.slice(eq + 1)];
  }));
  const cofferBin = path.resolve(get('coffer-bin', path.join(ROOT, 'dist', 'bin', 'coffer.js')));
  const baselineBin = baseline !== '' ? path.resolve(baseline) : baselineEnv ? cofferBin : null;
  const only: Scenario[] = [];
  for (const sc of SELECTABLE) {
    if (!picked.includes(sc)) continue;
    only.push(sc);
    if (baselineBin && (sc === 'read' || sc === 'write')) only.push(`${sc}@base`);
  }
  return {
    duration: num('duration', '10', 1),
    warmup: num('warmup', '3', 0),
    connections,
    repeats: Math.floor(num('repeats', '3', 1)),
    only,
    cpuProf: get('cpu-prof', 'false') === 'true',
    keep: get('keep', 'false') === 'true',
    cofferBin,
    baselineBin,
    baselineEnv,
  };
}

// ---------------------------------------------------------------- children

function killAllNow(): void {
  killChildrenNow();
  if (tempDir && !process.env.BENCH_KEEP) fs.rmSync(tempDir, { recursive: true, force: true });
}

// ---------------------------------------------------------------- measuring

async function auditCounters(api: string): Promise<{ count: number; sum: number }> {
  const text = await (await fetch(`${api}/metrics`)).text();
  const pick = (name: string) => Number(/^(\S+) (\S+)$/m.exec(text.split('\n').filter((l) => l.startsWith(name + ' ')).join('\n'))?.[2] ?? NaN);
  return { count: pick('coffer_audit_write_duration_seconds_count'), sum: pick('coffer_audit_write_duration_seconds_sum') };
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const s = settings(process.argv.slice(2));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-bench-'));
  tempDir = dir;
  const token = randomBytes(32).toString('base64url');
  const value = randomBytes((VALUE_BYTES * 3) / 4).toString('base64url'); // 256 ASCII characters
  const writeBody = JSON.stringify({ value });

  const bare = await startChild([BARE_SERVER], { ...process.env, BENCH_DURABLE_DIR: dir }, 'url', 'bare fastify server');
  const masterKey = randomBytes(32).toString('base64');
  const startCoffer = (bin: string, name: string, label: string, extraEnv: Record<string, string> = {}) => {
    const cofferEnv: NodeJS.ProcessEnv = {
      ...process.env,
      // info: the "coffer node ready" line carries the bound API address; requests themselves are not logged.
      LOG_LEVEL: 'info',
      VAULT_DATA_DIR: path.join(dir, name),
      VAULT_API_ADDR: '127.0.0.1:0',
      VAULT_RAFT_ADDR: '127.0.0.1:0',
      VAULT_NODE_ID: 'bench',
      VAULT_KMS_MODE: 'local',
      VAULT_LOCAL_MASTER_KEY: masterKey,
      VAULT_BOOTSTRAP_TOKEN: token,
      VAULT_READ_ALLOWLIST: '127.0.0.1',
      ...Object.fromEntries(Object.entries(extraEnv).map(([k, v]) => [k, v.replace(/^@/, path.join(dir, name))])),
    };
    const profArgs = s.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${path.join(dir, 'profile', name)}`] : [];
    return startChild([...profArgs, bin, 'server'], cofferEnv, 'api', label);
  };
  const coffer = await startCoffer(s.cofferBin, 'data', 'coffer server');
  const base = s.baselineBin ? await startCoffer(s.baselineBin, 'data-base', 'baseline coffer server', s.baselineEnv ?? {}) : null;
  const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };

  // Seed: readable secrets and every write target (so writes are steady-state updates).
  const seed = async (api: string): Promise<string> => {
    const names = [...READ_NAMES, ...WRITE_NAMES];
    for (let i = 0; i < names.length; i += 16) {
      await Promise.all(
        names.slice(i, i + 16).map(async (n) => {
          const r = await fetch(`${api}/v1/secrets/${n}`, { method: 'PUT', headers: auth, body: writeBody });
          if (r.status !== 201 && r.status !== 200) throw new Error(`seeding ${n}: HTTP ${r.status} ${await r.text()}`);
        }),
      );
    }
    const check = await fetch(`${api}/v1/secrets/${READ_NAMES[0]}`);
    const body = await check.text();
    if (check.status !== 200) throw new Error(`read check: HTTP ${check.status} ${body}`);
    return body;
  };
  const checkBody = await seed(coffer.value);
  if (base) await seed(base.value);
  const bareBody = await (await fetch(`${bare.value}/bare`)).text();
  const durableCheck = await fetch(`${bare.value}/durable`);
  if (durableCheck.status !== 200) throw new Error(`durable check: HTTP ${durableCheck.status}`);

  let writeSeq = 0;
  const reads = (api: string) => (c: number, d: number): Options => ({
    url: api,
    connections: c,
    duration: d,
    requests: READ_NAMES.map((n) => ({ method: 'GET', path: `/v1/secrets/${n}` })),
  });
  const writes = (api: string) => (c: number, d: number): Options => ({
    url: api,
    connections: c,
    duration: d,
    requests: [
      {
        method: 'PUT',
        headers: auth,
        body: writeBody,
        // A global round robin: concurrent writes land on different names and never queue on one name's lock.
        setupRequest: (req) => ({ ...req, path: `/v1/secrets/${WRITE_NAMES[writeSeq++ % WRITE_NAMES.length]}` }),
      },
    ],
  });
  type Target = { child: ChildProcess; pid: number | undefined; api: string | null; opts: (c: number, d: number) => Options };
  const target: Partial<Record<Scenario, Target>> = {
    bare: { child: bare.child, pid: bare.child.pid, api: null, opts: (c, d) => ({ url: `${bare.value}/bare`, connections: c, duration: d }) },
    durable: { child: bare.child, pid: bare.child.pid, api: null, opts: (c, d) => ({ url: `${bare.value}/durable`, connections: c, duration: d }) },
    read: { child: coffer.child, pid: coffer.child.pid, api: coffer.value, opts: reads(coffer.value) },
    write: { child: coffer.child, pid: coffer.child.pid, api: coffer.value, opts: writes(coffer.value) },
  };
  if (base) {
    target['read@base'] = { child: base.child, pid: base.child.pid, api: base.value, opts: reads(base.value) };
    target['write@base'] = { child: base.child, pid: base.child.pid, api: base.value, opts: writes(base.value) };
  }

  async function measure(scenario: Scenario, connections: number, duration: number): Promise<Sample> {
    const t = target[scenario]!;
    const api = t.api;
    const audit0 = api === null ? null : await auditCounters(api);
    const loop0 = await loopTimes(t.child);
    const cpu0 = cpuSeconds(t.pid);
    const main0 = threadCpuSeconds(t.pid);
    const load0 = process.cpuUsage();
    const machine0 = machineBusySeconds();
    const wall0 = process.hrtime.bigint();
    const { result: r, p50, p99 } = await cannon(t.opts(connections, duration));
    const wall = Number(process.hrtime.bigint() - wall0) / 1e9;
    const cpu = cpuSeconds(t.pid) - cpu0;
    const mainCpu = threadCpuSeconds(t.pid) - main0;
    const load = process.cpuUsage(load0);
    const machine = machineBusySeconds() - machine0;
    const loop1 = await loopTimes(t.child);
    const serverLoop =
      loop0 && loop1 ? ((loop1.active - loop0.active) / (loop1.active - loop0.active + loop1.idle - loop0.idle)) * 100 : NaN;
    const audit1 = api === null ? null : await auditCounters(api);
    const sample: Sample = {
      scenario,
      connections,
      rps: r['2xx'] / r.duration, // only successful responses count
      p50,
      p99,
      bad: r.non2xx + r.errors + r.timeouts,
      serverCpu: (cpu / wall) * 100,
      mainCpu: (mainCpu / wall) * 100,
      serverLoop,
      loadCpu: ((load.user + load.system) / 1e6 / wall) * 100,
      otherCpu: Math.max(0, ((machine - cpu - (load.user + load.system) / 1e6) / wall) * 100),
    };
    if (audit0 && audit1) {
      sample.auditBatches = (audit1.count - audit0.count) / wall;
      sample.auditBusy = (audit1.sum - audit0.sum) / wall;
    }
    return sample;
  }

  const maxConn = Math.max(...s.connections);
  const info = (msg: string) => process.stderr.write(msg + '\n');
  info(`coffer bench: ${s.repeats} x ${s.connections.join('/')} connections x ${s.only.join('/')}, ${s.duration} s each (warm-up ${s.warmup} s)`);
  info(`  body sizes: coffer read ${Buffer.byteLength(checkBody)} B, bare ${Buffer.byteLength(bareBody)} B${s.baselineBin ? `; baseline build ${s.baselineBin}${s.baselineEnv ? ` with ${Object.keys(s.baselineEnv).join(', ')}` : ''}` : ''}`);
  if (s.warmup > 0) for (const sc of s.only) await measure(sc, maxConn, s.warmup);

  const samples: Sample[] = [];
  for (let rep = 1; rep <= s.repeats; rep++) {
    for (const c of s.connections) {
      for (const sc of s.only) {
        const x = await measure(sc, c, s.duration);
        samples.push(x);
        info(`  [${rep}/${s.repeats}] ${sc.padEnd(10)} c=${String(c).padEnd(3)} ${x.rps.toFixed(0).padStart(6)} req/s  p50 ${x.p50.toFixed(2)} ms  p99 ${x.p99.toFixed(2)} ms  server cpu ${x.serverCpu.toFixed(0)}% (${((x.serverCpu * 1e4) / x.rps).toFixed(1)} µs/req, main thread ${((x.mainCpu * 1e4) / x.rps).toFixed(1)}) loop ${x.serverLoop.toFixed(0)}%  other ${x.otherCpu.toFixed(0)}%${x.bad ? `  NON-2XX/ERRORS ${x.bad}` : ''}`);
      }
    }
  }

  const fsync = fsyncRate(dir, 2);
  const cpuInfo = os.cpus();

  // ------------------------------------------------------------ report
  const median = (xs: number[]) => {
    const v = [...xs].sort((a, b) => a - b);
    const m = Math.floor(v.length / 2);
    return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
  };
  const pick = (sc: Scenario, c: number) => samples.filter((x) => x.scenario === sc && x.connections === c);
  const fmt = (n: number | undefined, digits = 0) => (n === undefined || Number.isNaN(n) ? '–' : n.toFixed(digits));
  const label: Record<Scenario, string> = {
    bare: 'bare Fastify GET (constant)',
    durable: 'bare GET + durable record (fdatasync, group commit)',
    read: 'Coffer GET /v1/secrets/{name}',
    write: 'Coffer PUT /v1/secrets/{name}',
    'read@base': 'Coffer GET, baseline build',
    'write@base': 'Coffer PUT, baseline build',
  };

  const out: string[] = [];
  out.push(`Node ${process.version}, ${cpuInfo.length} CPUs (${cpuInfo[0]?.model.trim() ?? 'unknown'}), ${os.platform()} ${os.release()}`);
  out.push(`${s.duration} s per run, ${s.repeats} interleaved repeats, medians shown; value ${VALUE_BYTES} B; disk fdatasync: ${fsync.perSec.toFixed(0)}/s (${fsync.meanMs.toFixed(2)} ms each)`);
  out.push('');
  out.push('| Scenario | Conns | req/s | p50 ms | p99 ms | server CPU % | server CPU µs/req | main thread CPU µs/req | server loop busy % | load-gen CPU % | other CPU % | audit fsyncs/s | audit busy % | non-2xx/errors |');
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const c of s.connections) {
    for (const sc of s.only) {
      const xs = pick(sc, c);
      const isCoffer = target[sc]!.api !== null;
      out.push(
        `| ${label[sc]} | ${c} | ${fmt(median(xs.map((x) => x.rps)))} | ${fmt(median(xs.map((x) => x.p50)), 2)} | ${fmt(median(xs.map((x) => x.p99)), 2)} | ` +
          `${fmt(median(xs.map((x) => x.serverCpu)))} | ${fmt(median(xs.map((x) => (x.serverCpu * 1e4) / x.rps)), 1)} | ${fmt(median(xs.map((x) => (x.mainCpu * 1e4) / x.rps)), 1)} | ${fmt(median(xs.map((x) => x.serverLoop)))} | ${fmt(median(xs.map((x) => x.loadCpu)))} | ${fmt(median(xs.map((x) => x.otherCpu)))} | ` +
          `${isCoffer ? fmt(median(xs.map((x) => x.auditBatches ?? NaN))) : '–'} | ${isCoffer ? fmt(median(xs.map((x) => (x.auditBusy ?? NaN) * 100))) : '–'} | ` +
          `${xs.reduce((a, x) => a + x.bad, 0)} |`,
      );
    }
  }
  out.push('');
  const rate = (sc: Scenario, c: number) => median(pick(sc, c).map((x) => x.rps));
  const pct = (a: number, b: number) => `${((a / b) * 100).toFixed(0)}%`;
  for (const c of s.connections) {
    const has = (sc: Scenario) => s.only.includes(sc);
    if (has('bare') && has('read')) {
      const r = rate('read', c) / rate('bare', c);
      out.push(`- c=${c}: read/bare = ${pct(rate('read', c), rate('bare', c))} (target ≥ 60%: ${r >= 0.6 ? 'met' : 'NOT met'})`);
    }
    if (has('bare') && has('read@base')) out.push(`- c=${c}: baseline build read/bare = ${pct(rate('read@base', c), rate('bare', c))}`);
    if (has('read') && has('read@base')) out.push(`- c=${c}: reads, this build / baseline build = ${(rate('read', c) / rate('read@base', c)).toFixed(2)}×`);
    if (has('bare') && has('durable')) {
      out.push(`- c=${c}: durable/bare = ${pct(rate('durable', c), rate('bare', c))} (the ceiling for read/bare while every answer waits for a durable record)${has('read') ? `; read/durable = ${pct(rate('read', c), rate('durable', c))}` : ''}`);
    }
    if (has('write') && has('write@base')) out.push(`- c=${c}: writes, this build / baseline build = ${(rate('write', c) / rate('write@base', c)).toFixed(2)}×`);
    if (has('write')) {
      const ws = pick('write', c);
      const wr = median(ws.map((x) => x.rps));
      const cpu = median(ws.map((x) => x.serverCpu));
      const loop = median(ws.map((x) => x.serverLoop));
      const busy = median(ws.map((x) => (x.auditBusy ?? 0) * 100));
      // The audit commit+fsync runs in its own thread, so a busy loop is running code, not waiting on the disk.
      const bound = loop < 85 ? 'fsync-bound: the event loop idles while log fsyncs run' : 'CPU-bound: the event loop is saturated running code';
      out.push(
        `- c=${c}: writes ${wr.toFixed(0)}/s; coffer CPU ${cpu.toFixed(0)}%, loop busy ${loop.toFixed(0)}% (audit writer thread in commit+fsync ${busy.toFixed(0)}% of wall time); disk fdatasync ${fsync.perSec.toFixed(0)}/s → ${bound}`,
      );
    }
  }
  process.stdout.write(out.join('\n') + '\n');

  markStopping();
  for (const c of liveChildren()) await stopChild(c);
  if (s.cpuProf || s.keep) {
    info(`kept ${dir}${s.cpuProf ? ` (CPU profiles in ${path.join(dir, 'profile')})` : ''}`);
  } else {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  tempDir = null;
}

runBench(main, killAllNow);
