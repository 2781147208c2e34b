// A 3-node Coffer cluster beside a 3-node etcd cluster, on this machine, in
// the same run: 256-byte writes through each system's full write path under
// autocannon, at the same client concurrency, interleaved (etcd, coffer,
// etcd, coffer, …), medians of `repeats` runs.
//
//   npx tsc -p . && node dist/bench/cluster.js [--duration=10] [--repeats=3] [--connections=1,64]
//
// etcd: Debian's etcd-server (3.4), three members on 127.0.0.1 with distinct
// ports and data dirs in a temp dir, default tuning. Writes are
// `POST /v3/kv/put` through its HTTP/JSON gRPC gateway (no auth, no TLS:
// etcd as it ships).
// Coffer: three `coffer server` processes on 127.0.0.1, .2, .3, local KMS,
// default Raft tuning. Writes are `PUT /v1/secrets/bench/k{i}` with the
// bootstrap token: auth, RBAC, sealing with a fresh DEK from the local KMS,
// Raft, SQLite state machine, audit record, as in production.
//
// Both systems get the same load: a global round robin over `--names` keys
// (default 1000, seeded first so every write is an update), and the same
// placement of client connections (`--target`):
//   spread (default): connections round-robin over the members with the
//     leader first, so 1 client talks to the leader and 64 clients are split
//     22/21/21 (followers forward to the leader in both systems);
//   leader: every connection talks to the leader.
// The leader is looked up again before every run.
//
// Other flags (or BENCH_* env): --warmup=3 (seconds per system, at the highest
// connection count) --names=1000 --only=etcd,coffer --fsync-seconds=2
// --cpu-prof (profile every coffer node; kept in the temp dir) --keep (keep
// the temp dir) --etcd-bin=etcd --coffer-bin=dist/bin/coffer.js
// --baseline-bin=<other build>/dist/bin/coffer.js (a second Coffer cluster
// from that build runs beside the first, on its own ports, and its runs,
// `coffer@base`, are interleaved with the others: a before/after comparison
// under the same machine noise).
//
// Everything listens on loopback only. Every child preloads
// bench/orphan-guard.ts (etcd through bench/etcd-member.ts), so nothing
// outlives a killed bench, and the whole run has a hard deadline.
import type { Options } from 'autocannon';
import { execFileSync, type ChildProcess } from 'node:child_process';
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
  freePort,
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
} from './common.js';

type System = 'etcd' | 'coffer' | 'coffer@base';
const isCoffer = (sys: System) => sys !== 'etcd';
type Target = 'spread' | 'leader';

interface Settings {
  duration: number;
  warmup: number;
  connections: number[];
  repeats: number;
  names: number;
  only: System[];
  target: Target;
  fsyncSeconds: number;
  cpuProf: boolean;
  keep: boolean;
  etcdBin: string;
  cofferBin: string;
  baselineBin: string | null;
}

interface Member {
  id: string;
  /** Base URL of the client API. */
  url: string;
  /** The process whose CPU counts (etcd itself, not its wrapper). */
  pid: number;
  child: ChildProcess;
}

interface Sample {
  system: System;
  connections: number;
  rps: number;
  p50: number;
  p99: number;
  bad: number;
  /** utime+stime of the system's three processes, % of one core. */
  cpu: number;
  /** The leader's share of that. */
  leaderCpu: number;
  /** CPU per request, microseconds (all three members). */
  cpuPerReq: number;
  /** Coffer: event-loop utilization of the leader's main thread, %. */
  leaderLoop: number;
  /** autocannon (this process), % of one core. */
  loadCpu: number;
  /** Everything else on the machine, % of one core. */
  otherCpu: number;
  /** Coffer: audit batches (one SQLite commit + fsync) per second, all nodes. */
  auditBatches: number;
  leader: string;
  leaderChanged: boolean;
}

const ETCD_MEMBER = path.join(HERE, 'etcd-member.js');
const VALUE_BYTES = 256;
const INSTALL_HINT = 'etcd is not installed. On Debian/Ubuntu: apt-get update && apt-get install -y etcd-server (or pass --etcd-bin=/path/to/etcd)';

/** etcd pid -> its wrapper (bench/etcd-member.ts). */
const etcdPids = new Map<number, ChildProcess>();
let tempDir: string | null = null;
let keepTemp = false;

// ---------------------------------------------------------------- settings

function settings(argv: string[]): Settings {
  const flags = parseFlags(argv);
  rejectUnknownFlags(flags, ['duration', 'warmup', 'connections', 'repeats', 'names', 'only', 'target', 'fsync-seconds', 'cpu-prof', 'keep', 'etcd-bin', 'coffer-bin', 'baseline-bin']);
  const { get, num } = flagReaders(flags);
  const connections = get('connections', '1,64').split(',').map((s) => Number(s.trim()));
  if (connections.some((c) => !Number.isInteger(c) || c < 1 || c > 1024)) throw new Error('--connections must be a comma list of integers 1..1024');
  const only = get('only', 'etcd,coffer').split(',').map((s) => s.trim()) as System[];
  if (only.length === 0 || only.some((s) => s !== 'etcd' && s !== 'coffer')) throw new Error('--only takes etcd, coffer');
  const target = get('target', 'spread') as Target;
  if (target !== 'spread' && target !== 'leader') throw new Error('--target is spread or leader');
  return {
    duration: num('duration', '10', 1),
    warmup: num('warmup', '3', 0),
    connections,
    repeats: Math.floor(num('repeats', '3', 1)),
    names: Math.floor(num('names', '1000', 1)),
    only,
    target,
    fsyncSeconds: num('fsync-seconds', '2', 0),
    cpuProf: get('cpu-prof', 'false') === 'true',
    keep: get('keep', 'false') === 'true',
    etcdBin: get('etcd-bin', 'etcd'),
    cofferBin: path.resolve(get('coffer-bin', path.join(ROOT, 'dist', 'bin', 'coffer.js'))),
    baselineBin: get('baseline-bin', '') ? path.resolve(get('baseline-bin', '')) : null,
  };
}

// ---------------------------------------------------------------- children

function killAllNow(): void {
  markStopping();
  const wrappers = new Set(etcdPids.values());
  // etcd itself gets SIGKILL; its wrapper gets SIGTERM so that it lives to reap etcd and then exits.
  for (const [pid, wrapper] of etcdPids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
    wrapper.kill('SIGTERM');
  }
  killChildrenNow(wrappers);
  if (tempDir && !keepTemp) fs.rmSync(tempDir, { recursive: true, force: true });
}

async function poll<T>(what: string, timeoutMs: number, fn: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await fn();
      if (v !== null) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs / 1000} s${last ? ` (${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function fetchJson(url: string, init: RequestInit = {}): Promise<{ status: number; body: unknown }> {
  let r: Response;
  let text: string;
  try {
    r = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
    text = await r.text();
  } catch (err) {
    throw new Error(`${init.method ?? 'GET'} ${url}: ${(err as Error).message}`);
  }
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: r.status, body };
}

// ---------------------------------------------------------------- etcd

function etcdVersion(bin: string): string | null {
  try {
    const out = execFileSync(bin, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
    return /etcd Version:\s*(\S+)/.exec(out)?.[1] ?? out.split('\n')[0]!.trim();
  } catch {
    return null;
  }
}

async function startEtcd(s: Settings, root: string): Promise<{ members: Member[]; leader: () => Promise<string> }> {
  const host = '127.0.0.1';
  const spec: { id: string; client: number; peer: number }[] = [];
  for (let i = 1; i <= 3; i++) spec.push({ id: `e${i}`, client: await freePort(host), peer: await freePort(host) });
  const initialCluster = spec.map((m) => `${m.id}=http://${host}:${m.peer}`).join(',');
  const clusterToken = `bench-${randomBytes(4).toString('hex')}`;
  const members = await Promise.all(
    spec.map(async (m) => {
      const dir = path.join(root, 'etcd', m.id);
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      const args = [
        `--name=${m.id}`,
        `--data-dir=${path.join(dir, 'data')}`,
        `--listen-client-urls=http://${host}:${m.client}`,
        `--advertise-client-urls=http://${host}:${m.client}`,
        `--listen-peer-urls=http://${host}:${m.peer}`,
        `--initial-advertise-peer-urls=http://${host}:${m.peer}`,
        `--initial-cluster=${initialCluster}`,
        '--initial-cluster-state=new',
        `--initial-cluster-token=${clusterToken}`,
        '--logger=zap',
        '--log-level=warn',
      ];
      const { child, value } = await startChild([ETCD_MEMBER, path.join(dir, 'etcd.log'), s.etcdBin, ...args], { ...process.env }, 'etcd_pid', `etcd ${m.id}`);
      const pid = Number(value);
      etcdPids.set(pid, child);
      // The wrapper exits only after etcd has; forget the pid then so a reused number is never signalled.
      child.once('exit', () => etcdPids.delete(pid));
      return { id: m.id, url: `http://${host}:${m.client}`, pid, child } satisfies Member;
    }),
  );
  // member_id (uint64, a string in the JSON gateway) -> our name
  const idOf = new Map<string, string>();
  const leader = async () => {
    const st = await Promise.all(members.map((m) => fetchJson(`${m.url}/v3/maintenance/status`, { method: 'POST', body: '{}' })));
    const leaders = new Set<string>();
    st.forEach((r, i) => {
      const b = r.body as { header?: { member_id?: string }; leader?: string };
      if (r.status !== 200 || !b.header?.member_id) throw new Error(`etcd ${members[i]!.id} status: HTTP ${r.status}`);
      idOf.set(b.header.member_id, members[i]!.id);
      leaders.add(b.leader ?? '0');
    });
    const [l] = [...leaders];
    if (leaders.size !== 1 || !l || l === '0' || !idOf.has(l)) throw new Error('etcd members do not agree on a leader yet');
    return idOf.get(l)!;
  };
  await poll('etcd cluster did not elect a leader', 30_000, leader);
  return { members, leader };
}

// ---------------------------------------------------------------- coffer

async function startCoffer(s: Settings, root: string, token: string, bin: string, label: string): Promise<{ members: Member[]; leader: () => Promise<string> }> {
  const spec: { id: string; host: string; api: number; raft: number }[] = [];
  for (let i = 1; i <= 3; i++) {
    const host = `127.0.0.${i}`;
    spec.push({ id: `n${i}`, host, api: await freePort(host), raft: await freePort(host) });
  }
  const masterKey = randomBytes(32).toString('base64');
  const clusterKey = randomBytes(32).toString('base64');
  const peers = spec.map((m) => `${m.id}=${m.host}:${m.raft}`).join(',');
  const members = await Promise.all(
    spec.map(async (m) => {
      const dir = path.join(root, label, m.id);
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        LOG_LEVEL: 'info', // the "ready" line carries the API address; requests are not logged
        VAULT_DATA_DIR: dir,
        VAULT_API_ADDR: `${m.host}:${m.api}`,
        VAULT_RAFT_ADDR: `${m.host}:${m.raft}`,
        VAULT_NODE_ID: m.id,
        VAULT_PEERS: peers,
        VAULT_KMS_MODE: 'local',
        VAULT_LOCAL_MASTER_KEY: masterKey,
        VAULT_CLUSTER_KEY: clusterKey,
        VAULT_BOOTSTRAP_TOKEN: token,
        VAULT_READ_ALLOWLIST: '127.0.0.0/8',
      };
      const prof = s.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${path.join(root, 'profile', label, m.id)}`] : [];
      const { child } = await startChild([...prof, bin, 'server'], env, 'api', `${label} ${m.id}`, path.join(dir, 'node.log'));
      return { id: m.id, url: `http://${m.host}:${m.api}`, pid: child.pid!, child } satisfies Member;
    }),
  );
  const leader = async () => {
    const hs = await Promise.all(members.map((m) => fetchJson(`${m.url}/v1/health`)));
    const leaders = new Set(hs.map((h) => (h.body as { leader_id?: string | null }).leader_id ?? null));
    const [l] = [...leaders];
    const someoneLeads = hs.some((h) => (h.body as { role?: string }).role === 'leader');
    if (leaders.size !== 1 || !l || !someoneLeads) throw new Error('coffer nodes do not agree on a leader yet');
    return l;
  };
  await poll('coffer cluster did not elect a leader', 30_000, leader);
  // The bootstrap token is proposed by the first leader; wait until every node has applied it.
  for (const m of members) {
    await poll(`bootstrap token does not work on ${m.id}`, 30_000, async () => {
      const r = await fetchJson(`${m.url}/v1/tokens`, { headers: { authorization: `Bearer ${token}` } });
      return r.status === 200 ? true : null;
    });
  }
  return { members, leader };
}

// ---------------------------------------------------------------- measuring

async function auditBatches(members: Member[]): Promise<number> {
  let total = 0;
  for (const m of members) {
    const text = await (await fetch(`${m.url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const line = text.split('\n').find((l) => l.startsWith('coffer_audit_write_duration_seconds_count '));
    total += Number(line?.split(' ')[1] ?? NaN);
  }
  return total;
}

const median = (xs: number[]) => {
  const v = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
};

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const s = settings(process.argv.slice(2));
  keepTemp = s.keep || s.cpuProf;
  const info = (msg: string) => process.stderr.write(msg + '\n');

  let etcdVer: string | null = null;
  if (s.only.includes('etcd')) {
    etcdVer = etcdVersion(s.etcdBin);
    if (!etcdVer) {
      process.stderr.write(`${INSTALL_HINT}\n`);
      process.exit(3);
    }
  }
  if (s.only.includes('coffer') && !fs.existsSync(s.cofferBin)) {
    process.stderr.write(`${path.relative(ROOT, s.cofferBin)} is missing: run \`npx tsc -p .\` first\n`);
    process.exit(3);
  }
  if (s.baselineBin && (!s.only.includes('coffer') || !fs.existsSync(s.baselineBin))) {
    process.stderr.write(`--baseline-bin needs coffer in --only and an existing file: ${s.baselineBin}\n`);
    process.exit(3);
  }

  // Hard deadline: set-up, warm-ups, runs and fsync probes, with generous slack.
  const systemCount = s.only.length + (s.baselineBin ? 1 : 0);
  const runs = s.repeats * s.connections.length * systemCount;
  const budgetS = 180 + 2 * (runs * (s.duration + 5) + systemCount * (s.warmup + 5) + 2 * s.fsyncSeconds);
  setTimeout(() => {
    process.stderr.write(`bench: hard deadline of ${budgetS.toFixed(0)} s passed; stopping everything\n`);
    killAllNow();
    process.exit(1);
  }, budgetS * 1000).unref();

  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-cluster-bench-'));
  const fsyncBefore = s.fsyncSeconds > 0 ? fsyncRate(tempDir, s.fsyncSeconds) : null;

  const token = randomBytes(32).toString('base64url');
  const value = randomBytes((VALUE_BYTES * 3) / 4).toString('base64url'); // 256 ASCII characters
  const names = Array.from({ length: s.names }, (_, i) => `bench/k${i}`);
  const cofferBodies = JSON.stringify({ value });
  const cofferPaths = names.map((n) => `/v1/secrets/${n}`);
  const valueB64 = Buffer.from(value).toString('base64');
  const etcdBodies = names.map((n) => JSON.stringify({ key: Buffer.from(n).toString('base64'), value: valueB64 }));
  const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };

  const systems = new Map<System, { members: Member[]; leader: () => Promise<string> }>();
  if (s.only.includes('etcd')) systems.set('etcd', await startEtcd(s, tempDir));
  if (s.only.includes('coffer')) systems.set('coffer', await startCoffer(s, tempDir, token, s.cofferBin, 'coffer'));
  if (s.baselineBin) systems.set('coffer@base', await startCoffer(s, tempDir, token, s.baselineBin, 'coffer-base'));

  // Seed every key in both systems so all measured writes are updates.
  // (Through the leader: a Coffer follower forwarding many writes at once can stall its own Raft traffic; see bench/RESULTS.md.)
  for (const [sys, { members, leader }] of systems) {
    const leadId = await leader();
    const m = members.find((x) => x.id === leadId)!;
    for (let i = 0; i < names.length; i += 16) {
      await Promise.all(
        names.slice(i, i + 16).map(async (n, j) => {
          const r =
            sys === 'etcd'
              ? await fetchJson(`${m.url}/v3/kv/put`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: etcdBodies[i + j] })
              : await fetchJson(`${m.url}${cofferPaths[i + j]}`, { method: 'PUT', headers: auth, body: cofferBodies });
          if (r.status < 200 || r.status > 299) throw new Error(`seeding ${sys} ${n}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
        }),
      );
    }
  }
  if (systems.has('etcd')) {
    // Check the value really landed (the gateway answers 200 with an error body on some mistakes).
    const { members } = systems.get('etcd')!;
    const r = await fetchJson(`${members[0]!.url}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from(names[0]!).toString('base64') }) });
    const kv = (r.body as { kvs?: { value: string }[] }).kvs?.[0];
    if (!kv || Buffer.from(kv.value, 'base64').length !== VALUE_BYTES) throw new Error(`etcd read-back failed: ${JSON.stringify(r.body)}`);
  }

  let seq = 0;
  function options(sys: System, members: Member[], leaderId: string, c: number, d: number): Options {
    const lead = members.find((m) => m.id === leaderId)!;
    const ordered = [lead, ...members.filter((m) => m !== lead)];
    const urls = s.target === 'leader' ? [lead.url] : ordered.map((m) => m.url);
    // autocannon assigns connection i to urls[i % urls.length].
    const base = { url: urls as unknown as string, connections: c, duration: d, timeout: 10 };
    if (sys === 'etcd') {
      return {
        ...base,
        requests: [
          {
            method: 'POST',
            path: '/v3/kv/put',
            headers: { 'content-type': 'application/json' },
            setupRequest: (req) => ({ ...req, body: etcdBodies[seq++ % etcdBodies.length]! }),
          },
        ],
      };
    }
    return {
      ...base,
      requests: [
        {
          method: 'PUT',
          headers: auth,
          body: cofferBodies,
          setupRequest: (req) => ({ ...req, path: cofferPaths[seq++ % cofferPaths.length]! }),
        },
      ],
    };
  }

  async function measure(sys: System, c: number, d: number): Promise<Sample> {
    const { members, leader } = systems.get(sys)!;
    const lead = await poll(`${sys} has no agreed leader before a run`, 30_000, leader);
    const leadMember = members.find((m) => m.id === lead)!;
    const audit0 = isCoffer(sys) ? await auditBatches(members) : NaN;
    const loop0 = isCoffer(sys) ? await loopTimes(leadMember.child) : null;
    const cpu0 = members.map((m) => cpuSeconds(m.pid));
    const load0 = process.cpuUsage();
    const machine0 = machineBusySeconds();
    const wall0 = process.hrtime.bigint();
    const { result: r, p50, p99 } = await cannon(options(sys, members, lead, c, d));
    const wall = Number(process.hrtime.bigint() - wall0) / 1e9;
    const cpus = members.map((m, i) => cpuSeconds(m.pid) - cpu0[i]!);
    const cpu = cpus.reduce((a, b) => a + b, 0);
    const load = process.cpuUsage(load0);
    const loadS = (load.user + load.system) / 1e6;
    const machine = machineBusySeconds() - machine0;
    const loop1 = isCoffer(sys) ? await loopTimes(leadMember.child) : null;
    const audit1 = isCoffer(sys) ? await auditBatches(members) : NaN;
    const leadAfter = await leader().catch(() => '?');
    const ok = r['2xx'];
    return {
      system: sys,
      connections: c,
      rps: ok / r.duration,
      p50,
      p99,
      bad: r.non2xx + r.errors + r.timeouts,
      cpu: (cpu / wall) * 100,
      leaderCpu: (cpus[members.indexOf(leadMember)]! / wall) * 100,
      cpuPerReq: ok > 0 ? (cpu / ok) * 1e6 : NaN,
      leaderLoop: loop0 && loop1 ? ((loop1.active - loop0.active) / (loop1.active - loop0.active + loop1.idle - loop0.idle)) * 100 : NaN,
      loadCpu: (loadS / wall) * 100,
      otherCpu: Math.max(0, ((machine - cpu - loadS) / wall) * 100),
      auditBatches: (audit1 - audit0) / wall,
      leader: lead,
      leaderChanged: leadAfter !== lead,
    };
  }

  const order = (['etcd', 'coffer', 'coffer@base'] as const).filter((x) => systems.has(x));
  const maxConn = Math.max(...s.connections);
  info(
    `cluster bench: etcd ${etcdVer ?? '-'} vs coffer, 3 members each; ${s.repeats} x ${s.connections.join('/')} connections, ${s.duration} s per run ` +
      `(warm-up ${s.warmup} s), target ${s.target}, ${s.names} keys, value ${VALUE_BYTES} B`,
  );
  if (fsyncBefore) info(`  disk fdatasync before: ${fsyncBefore.perSec.toFixed(0)}/s (${fsyncBefore.meanMs.toFixed(2)} ms each)`);
  if (s.warmup > 0) for (const sys of order) await measure(sys, maxConn, s.warmup);

  const samples: Sample[] = [];
  for (let rep = 1; rep <= s.repeats; rep++) {
    for (const c of s.connections) {
      // Every other repeat in reverse order: a run right after another system's busiest run pays for its aftermath
      // (apply, audit flush, compaction), so a fixed order would favour whoever goes second.
      for (const sys of rep % 2 === 1 ? order : [...order].reverse()) {
        const x = await measure(sys, c, s.duration);
        samples.push(x);
        info(
          `  [${rep}/${s.repeats}] ${sys.padEnd(11)} c=${String(c).padEnd(3)} ${x.rps.toFixed(0).padStart(6)} req/s  p50 ${x.p50.toFixed(2)} ms  p99 ${x.p99.toFixed(2)} ms  ` +
            `cpu ${x.cpu.toFixed(0)}% (leader ${x.leaderCpu.toFixed(0)}%) ${x.cpuPerReq.toFixed(0)} µs/req  load ${x.loadCpu.toFixed(0)}% other ${x.otherCpu.toFixed(0)}%` +
            `${isCoffer(sys) ? `  leader loop ${x.leaderLoop.toFixed(0)}% audit ${x.auditBatches.toFixed(0)}/s` : ''}` +
            `${x.bad ? `  NON-2XX/ERRORS ${x.bad}` : ''}${x.leaderChanged ? '  LEADER CHANGED' : ''}`,
        );
      }
    }
  }
  const fsyncAfter = s.fsyncSeconds > 0 ? fsyncRate(tempDir, s.fsyncSeconds) : null;

  // ------------------------------------------------------------ report
  const cpuInfo = os.cpus();
  const fmt = (n: number, digits = 0) => (Number.isNaN(n) ? '–' : n.toFixed(digits));
  const pick = (sys: System, c: number) => samples.filter((x) => x.system === sys && x.connections === c);
  const med = (sys: System, c: number, f: (x: Sample) => number) => median(pick(sys, c).map(f));
  const out: string[] = [];
  out.push(`Node ${process.version}, etcd ${etcdVer ?? '-'}, ${cpuInfo.length} CPUs (${cpuInfo[0]?.model.trim() ?? 'unknown'}), ${os.platform()} ${os.release()}`);
  out.push(
    `${s.duration} s per run, ${s.repeats} interleaved repeats, medians shown; value ${VALUE_BYTES} B over ${s.names} keys; target ${s.target}; ` +
      `disk fdatasync ${fsyncBefore ? `${fsyncBefore.perSec.toFixed(0)}/s before` : ''}${fsyncAfter ? `, ${fsyncAfter.perSec.toFixed(0)}/s after (${fsyncAfter.meanMs.toFixed(2)} ms each)` : ''}`,
  );
  out.push('');
  out.push('| System | Conns | req/s | p50 ms | p99 ms | CPU % (3 procs) | leader CPU % | CPU µs/req | leader loop busy % | audit fsyncs/s | load-gen CPU % | other CPU % | non-2xx/errors |');
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const c of s.connections) {
    for (const sys of order) {
      out.push(
        `| ${sys === 'etcd' ? `etcd ${etcdVer} PUT /v3/kv/put` : `Coffer${sys === 'coffer@base' ? ' (baseline build)' : ''} PUT /v1/secrets/{name}`} | ${c} | ${fmt(med(sys, c, (x) => x.rps))} | ` +
          `${fmt(med(sys, c, (x) => x.p50), 2)} | ${fmt(med(sys, c, (x) => x.p99), 2)} | ${fmt(med(sys, c, (x) => x.cpu))} | ${fmt(med(sys, c, (x) => x.leaderCpu))} | ` +
          `${fmt(med(sys, c, (x) => x.cpuPerReq))} | ${isCoffer(sys) ? fmt(med(sys, c, (x) => x.leaderLoop)) : '–'} | ${isCoffer(sys) ? fmt(med(sys, c, (x) => x.auditBatches)) : '–'} | ` +
          `${fmt(med(sys, c, (x) => x.loadCpu))} | ${fmt(med(sys, c, (x) => x.otherCpu))} | ${pick(sys, c).reduce((a, x) => a + x.bad, 0)} |`,
      );
    }
  }
  if (systems.has('etcd') && systems.has('coffer')) {
    out.push('');
    for (const c of s.connections) {
      const ratios = Array.from({ length: s.repeats }, (_, i) => {
        const e = pick('etcd', c)[i];
        const k = pick('coffer', c)[i];
        return e && k ? k.rps / e.rps : NaN;
      });
      const ratio = med('coffer', c, (x) => x.rps) / med('etcd', c, (x) => x.rps);
      const want = c === 1 ? 0.8 : 1;
      out.push(
        `- c=${c}: coffer/etcd throughput = ${ratio.toFixed(2)}× (per-repeat ${ratios.map((r) => r.toFixed(2)).join(', ')}); ` +
          `p50 ${fmt(med('coffer', c, (x) => x.p50), 2)} vs ${fmt(med('etcd', c, (x) => x.p50), 2)} ms` +
          (c === 1 || c === 64 ? `; target ≥ ${want}×: ${ratio >= want ? 'met' : 'NOT met'}` : ''),
      );
    }
  }
  if (systems.has('coffer@base')) {
    out.push('');
    for (const c of s.connections) {
      const ratios = Array.from({ length: s.repeats }, (_, i) => {
        const b = pick('coffer@base', c)[i];
        const k = pick('coffer', c)[i];
        return b && k ? k.rps / b.rps : NaN;
      });
      out.push(
        `- c=${c}: coffer/baseline throughput = ${(med('coffer', c, (x) => x.rps) / med('coffer@base', c, (x) => x.rps)).toFixed(2)}× ` +
          `(per-repeat ${ratios.map((r) => r.toFixed(2)).join(', ')}); p50 ${fmt(med('coffer', c, (x) => x.p50), 2)} vs ${fmt(med('coffer@base', c, (x) => x.p50), 2)} ms; ` +
          `CPU µs/req ${fmt(med('coffer', c, (x) => x.cpuPerReq))} vs ${fmt(med('coffer@base', c, (x) => x.cpuPerReq))}`,
      );
    }
  }
  const changed = samples.filter((x) => x.leaderChanged).length;
  if (changed) out.push(`- WARNING: the leader changed during ${changed} run(s)`);
  process.stdout.write(out.join('\n') + '\n');

  markStopping();
  await Promise.all(liveChildren().map((c) => stopChild(c)));
  if (keepTemp) {
    info(`kept ${tempDir}${s.cpuProf ? ` (CPU profiles in ${path.join(tempDir, 'profile')}/<node>)` : ''}`);
  } else {
    fs.rmSync(tempDir, { recursive: true, force: true });
  }
  tempDir = null;
}

runBench(main, killAllNow);
