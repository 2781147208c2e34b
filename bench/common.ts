// Shared by bench/run.ts and bench/cluster.ts: flag parsing, guarded child
// processes (and the set of them still running), /proc CPU readings,
// event-loop utilization of a child, the disk's fdatasync rate, an
// autocannon wrapper with float latencies, and a free-port finder.
import autocannon, { type Options, type Result } from 'autocannon';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The compiled bench directory (dist/bench). */
export const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The repository root. */
export const ROOT = path.resolve(HERE, '..', '..');
const ORPHAN_GUARD = pathToFileURL(path.join(HERE, 'orphan-guard.js')).href;
const LOOP_PROBE = pathToFileURL(path.join(HERE, 'loop-probe.js')).href;

// ---------------------------------------------------------------- settings

/** `--name=value`, `--name value` or a bare `--name` (= 'true'); anything else is an error. */
export function parseFlags(argv: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const eq = a.indexOf('=');
    if (eq > 0) flags.set(a.slice(2, eq), a.slice(eq + 1));
    else if (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) flags.set(a.slice(2), argv[++i]!);
    else flags.set(a.slice(2), 'true');
  }
  return flags;
}

/** Throws on the first flag not in `known`. */
export function rejectUnknownFlags(flags: Map<string, string>, known: Iterable<string>): void {
  const ok = new Set(known);
  for (const k of flags.keys()) if (!ok.has(k)) throw new Error(`unknown flag --${k}`);
}

/** Readers for a flag, falling back to its BENCH_* env var (--cpu-prof -> BENCH_CPU_PROF), then to a default. */
export function flagReaders(flags: Map<string, string>): {
  get: (name: string, def: string) => string;
  num: (name: string, def: string, min: number) => number;
} {
  const get = (name: string, def: string) => flags.get(name) ?? process.env[`BENCH_${name.toUpperCase().replace(/-/g, '_')}`] ?? def;
  const num = (name: string, def: string, min: number) => {
    const n = Number(get(name, def));
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min}`);
    return n;
  };
  return { get, num };
}

// ---------------------------------------------------------------- children

const children = new Set<ChildProcess>();
let stopping = false;

/** From now on, children exiting is expected and not reported. */
export function markStopping(): void {
  stopping = true;
}

/** The children started by startChild that have not exited yet. */
export function liveChildren(): ChildProcess[] {
  return [...children];
}

/** Marks stopping and SIGKILLs every live child except those in `except`. */
export function killChildrenNow(except: ReadonlySet<ChildProcess> = new Set()): void {
  stopping = true;
  for (const c of children) {
    if (except.has(c)) continue;
    try {
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Spawns a node child (preloading bench/orphan-guard.ts and bench/loop-probe.ts) and resolves
 * with the first stdout JSON line that has `key`. Every stdout line also goes to `logFile` when given.
 */
export function startChild(
  args: string[],
  env: NodeJS.ProcessEnv,
  key: string,
  label: string,
  logFile?: string,
): Promise<{ child: ChildProcess; value: string }> {
  const child = spawn(process.execPath, ['--import', ORPHAN_GUARD, '--import', LOOP_PROBE, ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  child.channel?.unref();
  children.add(child);
  let stderr = '';
  child.once('exit', (code, signal) => {
    children.delete(child);
    if (!stopping) process.stderr.write(`${label} exited unexpectedly (${code ?? signal})\n${stderr}\n`);
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${label} did not start within 20 s\n${stderr}`)), 20_000);
    const lines = readline.createInterface({ input: child.stdout! });
    const log = logFile ? fs.createWriteStream(logFile, { flags: 'a', mode: 0o600 }) : null;
    let found = false;
    lines.on('line', (line) => {
      log?.write(line + '\n');
      if (found) return; // keep draining so the child never blocks on a full pipe
      try {
        const obj = JSON.parse(line) as Record<string, unknown>;
        if (typeof obj[key] === 'string') {
          found = true;
          clearTimeout(timer);
          resolve({ child, value: obj[key] as string });
        } else if (obj.level !== undefined && Number(obj.level) >= 50) {
          stderr += `\n${line}`;
        }
      } catch {
        // not JSON: ignore
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (!found) reject(new Error(`${label} exited (${code ?? signal}) before it was ready\n${stderr}`));
    });
  });
}

/** SIGTERM, then SIGKILL after 10 s; resolves once the child has exited. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------- measuring

let clockTicks = 100;
try {
  clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {
  // Linux default
}

/** utime + stime of a process in seconds (from /proc; 0 where there is none). */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / clockTicks;
  } catch {
    return 0;
  }
}

/** utime + stime of one thread of a process in seconds (the main thread's id is the pid); 0 where there is none. */
export function threadCpuSeconds(pid: number | undefined, tid: number | undefined = pid): number {
  if (pid === undefined || tid === undefined) return 0;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / clockTicks;
  } catch {
    return 0;
  }
}

/** Busy CPU seconds of the whole machine, all cores (from /proc/stat). */
export function machineBusySeconds(): number {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!;
    return busy / clockTicks;
  } catch {
    return NaN;
  }
}

/** Cumulative event-loop utilization of a child (via bench/loop-probe.ts); null when it does not answer. */
export function loopTimes(child: ChildProcess): Promise<{ idle: number; active: number } | null> {
  return new Promise((resolve) => {
    if (!child.connected) return resolve(null);
    const timer = setTimeout(() => done(null), 2000);
    const onMsg = (m: unknown) => {
      const elu = (m as { elu?: { idle: number; active: number } } | null)?.elu;
      if (elu) done(elu);
    };
    function done(v: { idle: number; active: number } | null) {
      clearTimeout(timer);
      child.off('message', onMsg);
      resolve(v);
    }
    child.on('message', onMsg);
    child.send('elu');
  });
}

/** fdatasync rate of the disk holding `dir`: append 512 B + fdatasync in a loop. */
export function fsyncRate(dir: string, seconds: number): { perSec: number; meanMs: number } {
  const file = path.join(dir, 'fsync-probe');
  const fd = fs.openSync(file, 'w');
  const buf = randomBytes(512);
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(seconds * 1e9));
  let now = start;
  while (now < end) {
    fs.writeSync(fd, buf, 0, buf.length, n * buf.length);
    fs.fdatasyncSync(fd);
    n++;
    now = process.hrtime.bigint();
  }
  fs.closeSync(fd);
  fs.rmSync(file);
  const secs = Number(now - start) / 1e9;
  return { perSec: n / secs, meanMs: (secs * 1000) / n };
}

/** Runs autocannon; also keeps every 2xx latency as a float (autocannon's own histogram has 1 ms resolution). */
export function cannon(opts: Options): Promise<{ result: Result; p50: number; p99: number }> {
  let lat = new Float64Array(1 << 16);
  let n = 0;
  return new Promise((resolve, reject) => {
    const inst = autocannon(opts, (err, result) => {
      if (err) return reject(err);
      const v = lat.subarray(0, n).sort();
      const q = (p: number) => (n === 0 ? NaN : v[Math.min(n - 1, Math.floor(p * n))]!);
      resolve({ result, p50: q(0.5), p99: q(0.99) });
    });
    inst.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      if (status < 200 || status > 299) return;
      if (n === lat.length) {
        const bigger = new Float64Array(lat.length * 2);
        bigger.set(lat);
        lat = bigger;
      }
      lat[n++] = ms;
    });
  });
}

/** One autocannon run with its CPU accounting: the servers' processes, autocannon (this process) and the rest of the machine. */
export interface TimedRun {
  result: Result;
  p50: number;
  p99: number;
  /** Seconds the run took. */
  wall: number;
  /** CPU seconds of each of `pids`, in order. */
  cpus: number[];
  /** Their sum. */
  cpu: number;
  /** This process's CPU seconds (the load generator). */
  loadS: number;
  /** Everything else on the machine, CPU seconds. */
  otherS: number;
}

export async function timedCannon(pids: readonly number[], opts: Options): Promise<TimedRun> {
  const cpu0 = pids.map((p) => cpuSeconds(p));
  const load0 = process.cpuUsage();
  const machine0 = machineBusySeconds();
  const wall0 = process.hrtime.bigint();
  const { result, p50, p99 } = await cannon(opts);
  const wall = Number(process.hrtime.bigint() - wall0) / 1e9;
  const cpus = pids.map((p, i) => cpuSeconds(p) - cpu0[i]!);
  const cpu = cpus.reduce((a, b) => a + b, 0);
  const load = process.cpuUsage(load0);
  const loadS = (load.user + load.system) / 1e6;
  const otherS = Math.max(0, machineBusySeconds() - machine0 - cpu - loadS);
  return { result, p50, p99, wall, cpus, cpu, loadS, otherS };
}

/** The figures every cluster bench reports for a run; `leaderIndex` picks the leader among the pids. */
export function runFigures(t: TimedRun, leaderIndex: number) {
  const ok = t.result['2xx'];
  return {
    rps: ok / t.result.duration,
    p50: t.p50,
    p99: t.p99,
    bad: t.result.non2xx + t.result.errors + t.result.timeouts,
    /** % of one core, all pids. */
    cpu: (t.cpu / t.wall) * 100,
    leaderCpu: (t.cpus[leaderIndex]! / t.wall) * 100,
    /** Microseconds of CPU per 2xx answer, all pids. */
    cpuPerReq: ok > 0 ? (t.cpu / ok) * 1e6 : NaN,
    loadCpu: (t.loadS / t.wall) * 100,
    otherCpu: (t.otherS / t.wall) * 100,
  };
}

/** Runs a bench's main with cleanup on exit, on signals and on failure (children never outlive it). */
export function runBench(main: () => Promise<void>, killAllNow: () => void): void {
  process.on('exit', killAllNow);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      killAllNow();
      process.exit(130);
    });
  }
  main().catch((err: unknown) => {
    const cause = err instanceof Error && err.cause instanceof Error ? ` (${err.cause.message})` : '';
    process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}${cause}
`);
    killAllNow();
    process.exit(1);
  });
}
