// Issue 18's floor for replicated writes: what the least possible 3-node,
// durable, replicated write costs in Node on this machine, beside a 3-member
// etcd cluster, in the same run: 256-byte writes to the leader under
// autocannon (keep-alive), at the same client concurrency, interleaved
// (etcd, floor, floor+audit, then reversed on every other repeat), medians of
// `repeats` runs.
//
//   npx tsc -p tsconfig.json && node dist/bench/floor.js [--duration=8] [--repeats=3] [--connections=1,64] \
//     [--etcd-bin=etcd] [--only=etcd,floor,floor+audit]
//
// Systems (--only, any non-empty subset, comma separated):
//   etcd         three members exactly as bench/cluster.ts starts them
//                (bench/cluster-etcd.ts: 127.0.0.1, default tuning, no auth,
//                no TLS); every key seeded first so writes are updates;
//                writes are `POST /v3/kv/put` {key, value: base64} to the
//                leader, which is looked up again before every run.
//   floor        three bench/floor-member.ts processes on 127.0.0.1 (leader,
//                fixed), 127.0.0.2 and 127.0.0.3 (followers). The leader
//                serves `PUT /k/<i>` {"value": "<256 chars>"} with node:http
//                (no framework); per event-loop turn the records that arrived
//                are appended to its log file (writev + fdatasync in the
//                thread pool, group commit) and, at the same time, sent as one
//                length-prefixed frame to each follower over a persistent TCP
//                connection (setNoDelay); a follower appends each frame to its
//                own log + fdatasync, then acks the highest durable sequence.
//                The leader answers 200 {"seq": n} once its own fdatasync
//                covers the request and one follower has acked it (quorum of
//                3). No Raft terms, elections, state machine, auth or crypto:
//                only the disk and network work any replicated durable write
//                needs.
//   floor+audit  a second such cluster (own processes and files) that, after
//                the quorum, also makes a per-request audit record durable
//                (group commit into a second file, fdatasync, the next batch
//                gathering while one is in flight) before answering: what
//                Coffer must add ("every request's audit record is durable
//                before its response").
// Both floors append (nothing preallocated) in the run's temp dir; a file past
// 64 MiB is truncated to 0 before its next write (bounded disk use).
//
// Flags (or BENCH_* env, e.g. BENCH_DURATION):
//   --duration=8        seconds per measured run
//   --repeats=3         interleaved repeats; medians reported
//   --connections=1,64  autocannon connections, comma list (1..1024)
//   --warmup=3          seconds per system at the highest connection count, before the runs (0: none)
//   --names=1000        keys written round robin (value 256 B)
//   --only=etcd,floor,floor+audit
//   --etcd-bin=etcd     etcd binary (e.g. $HOME/.cache/coffer/k8s-v1.32.13/etcd)
//   --fsync-seconds=2   fdatasync probe of the temp dir's disk before and after (0: none)
//   --keep              keep the temp dir (logs, etcd data) instead of deleting it
//
// Output: progress lines on stderr; on stdout a markdown table (system,
// conns, median req/s, p50, p99, CPU % of the 3 processes, CPU µs/req, the
// leader's share, the floors' log and audit fdatasyncs/s, the load
// generator's and everything else's CPU as machine noise), the per-repeat
// req/s, and the floor/etcd and floor+audit/etcd throughput ratios per
// connection count.
//
// Everything listens on loopback only. Every child preloads
// bench/orphan-guard.ts (etcd through bench/etcd-member.ts) via startChild,
// so nothing outlives a killed bench, and the whole run has a hard deadline.
import type { Options } from 'autocannon';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  flagReaders,
  fsyncRate,
  HERE,
  killChildrenNow,
  liveChildren,
  markStopping,
  parseFlags,
  rejectUnknownFlags,
  runBench,
  startChild,
  stopChild,
  runFigures,
  timedCannon,
} from './common.js';
import { etcdPutRequests, killEtcdNow, requireEtcd, startEtcd } from './cluster-etcd.js';
import { fetchJson, poll, type Cluster, type Member } from './cluster-members.js';
import { settings as clusterSettings, VALUE_BYTES } from './cluster-settings.js';

type System = 'etcd' | 'floor' | 'floor+audit';
const SYSTEMS: readonly System[] = ['etcd', 'floor', 'floor+audit'];
const FLOOR_MEMBER = path.join(HERE, 'floor-member.js');

interface Settings {
  duration: number;
  warmup: number;
  repeats: number;
  connections: number[];
  names: number;
  only: System[];
  etcdBin: string;
  fsyncSeconds: number;
  keep: boolean;
}

function settings(argv: string[]): Settings {
  const flags = parseFlags(argv);
  rejectUnknownFlags(flags, ['duration', 'warmup', 'repeats', 'connections', 'names', 'only', 'etcd-bin', 'fsync-seconds', 'keep']);
  const { get, num } = flagReaders(flags);
  const connections = get('connections', '1,64').split(',').map((s) => Number(s.trim()));
  if (connections.length === 0 || connections.some((c) => !Number.isInteger(c) || c < 1 || c > 1024)) {
    throw new Error('--connections must be a comma list of integers 1..1024');
  }
  const only = get('only', SYSTEMS.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  const bad = only.filter((s) => !(SYSTEMS as readonly string[]).includes(s));
  if (only.length === 0 || bad.length > 0) throw new Error(`--only takes a comma list of ${SYSTEMS.join(', ')}${bad.length ? ` (not ${bad.join(', ')})` : ''}`);
  const keep = get('keep', 'false');
  if (keep !== 'true' && keep !== 'false') throw new Error('--keep takes no value');
  return {
    duration: num('duration', '8', 1),
    warmup: num('warmup', '3', 0),
    repeats: Math.floor(num('repeats', '3', 1)),
    connections: [...new Set(connections)],
    names: Math.floor(num('names', '1000', 1)),
    // Keep the canonical order whatever order the flag used.
    only: SYSTEMS.filter((s) => only.includes(s)),
    etcdBin: get('etcd-bin', 'etcd'),
    fsyncSeconds: num('fsync-seconds', '2', 0),
    keep: keep === 'true',
  };
}

interface Sample {
  system: System;
  connections: number;
  rps: number;
  p50: number;
  p99: number;
  bad: number;
  /** utime+stime of the three processes, % of one core. */
  cpu: number;
  leaderCpu: number;
  cpuPerReq: number;
  /** Floors: the leader's log / audit fdatasyncs per second. */
  logSyncs: number;
  auditSyncs: number;
  /** autocannon (this process) and everything else on the machine, % of one core. */
  loadCpu: number;
  otherCpu: number;
  leaderChanged: boolean;
}

let tempDir: string | null = null;
let keepTemp = false;

function killAllNow(): void {
  markStopping();
  killChildrenNow(killEtcdNow());
  if (tempDir && !keepTemp) fs.rmSync(tempDir, { recursive: true, force: true });
}

/** Two followers on 127.0.0.2 and .3, then the leader on 127.0.0.1 connected to both. */
async function startFloor(root: string, name: string, audit: boolean): Promise<Cluster> {
  const dir = path.join(root, name.replace('+', '-'));
  const followers = await Promise.all(
    ['127.0.0.2', '127.0.0.3'].map(async (host, i) => {
      const { child, value } = await startChild([FLOOR_MEMBER, 'follower', host, path.join(dir, `f${i + 2}`)], { ...process.env }, 'addr', `${name} follower ${i + 2}`);
      return { id: `f${i + 2}`, url: `tcp://${value}`, pid: child.pid!, child, addr: value } satisfies Member & { addr: string };
    }),
  );
  const { child, value } = await startChild(
    [FLOOR_MEMBER, 'leader', '127.0.0.1', path.join(dir, 'l1'), audit ? '1' : '0', ...followers.map((f) => f.addr)],
    { ...process.env },
    'url',
    `${name} leader`,
  );
  const lead: Member = { id: 'l1', url: value, pid: child.pid!, child };
  return { members: [lead, ...followers], leader: () => Promise.resolve('l1') };
}

interface FloorStats {
  seq: number;
  committed: number;
  logSyncs: number;
  auditSyncs: number;
  acks: number[];
}

async function floorStats(c: Cluster): Promise<FloorStats> {
  const r = await fetchJson(`${c.members[0]!.url}/stats`);
  if (r.status !== 200) throw new Error(`floor stats: HTTP ${r.status}`);
  return r.body as FloorStats;
}

const median = (xs: number[]) => {
  const v = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
};

async function main(): Promise<void> {
  const s = settings(process.argv.slice(2));
  keepTemp = s.keep;
  const info = (msg: string) => process.stderr.write(msg + '\n');

  const etcdVer = s.only.includes('etcd') ? requireEtcd(s.etcdBin) : null;
  if (!fs.existsSync(FLOOR_MEMBER)) {
    process.stderr.write('dist/bench/floor-member.js is missing: run `npx tsc -p tsconfig.json` first\n');
    process.exit(3);
  }

  // Hard deadline: set-up, warm-ups, runs and fsync probes, with generous slack.
  const runs = s.repeats * s.connections.length * s.only.length;
  const budgetS = 180 + 2 * (runs * (s.duration + 5) + s.only.length * (s.warmup + 5) + 2 * s.fsyncSeconds);
  setTimeout(() => {
    process.stderr.write(`bench: hard deadline of ${budgetS.toFixed(0)} s passed; stopping everything\n`);
    killAllNow();
    process.exit(1);
  }, budgetS * 1000).unref();

  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-floor-bench-'));
  const fsyncBefore = s.fsyncSeconds > 0 ? fsyncRate(tempDir, s.fsyncSeconds) : null;

  const value = randomBytes((VALUE_BYTES * 3) / 4).toString('base64url'); // 256 ASCII characters
  const names = Array.from({ length: s.names }, (_, i) => `bench/k${i}`);
  const valueB64 = Buffer.from(value).toString('base64');
  const etcdBodies = names.map((n) => JSON.stringify({ key: Buffer.from(n).toString('base64'), value: valueB64 }));
  const floorBody = JSON.stringify({ value });
  const floorPaths = names.map((_, i) => `/k/${i}`);

  const systems = new Map<System, Cluster>();
  if (s.only.includes('etcd')) {
    // etcd exactly as bench/cluster.ts starts it (its flag parser gives the same defaults).
    systems.set('etcd', await startEtcd(clusterSettings(['--only=etcd', `--etcd-bin=${s.etcdBin}`]), tempDir));
  }
  if (s.only.includes('floor')) systems.set('floor', await startFloor(tempDir, 'floor', false));
  if (s.only.includes('floor+audit')) systems.set('floor+audit', await startFloor(tempDir, 'floor+audit', true));

  if (systems.has('etcd')) {
    // Seed every key (through the leader) so all measured writes are updates, and check a value landed.
    const { members, leader } = systems.get('etcd')!;
    const leadId = await leader();
    const m = members.find((x) => x.id === leadId)!;
    for (let i = 0; i < names.length; i += 16) {
      await Promise.all(
        etcdBodies.slice(i, i + 16).map(async (body, j) => {
          const r = await fetchJson(`${m.url}/v3/kv/put`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
          if (r.status !== 200) throw new Error(`seeding etcd ${names[i + j]}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
        }),
      );
    }
    const r = await fetchJson(`${m.url}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from(names[0]!).toString('base64') }) });
    const kv = (r.body as { kvs?: { value: string }[] }).kvs?.[0];
    if (!kv || Buffer.from(kv.value, 'base64').toString() !== value) throw new Error(`etcd read-back failed: ${JSON.stringify(r.body)}`);
  }
  for (const sys of ['floor', 'floor+audit'] as const) {
    // Check one write end to end: answered 200 after the leader's fsync, a follower's ack and (floor+audit) an audit fsync.
    const c = systems.get(sys);
    if (!c) continue;
    const r = await fetchJson(`${c.members[0]!.url}${floorPaths[0]}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: floorBody });
    const st = await floorStats(c);
    if (r.status !== 200 || st.committed < 1 || st.logSyncs < 1 || Math.max(...st.acks) < 1 || (sys === 'floor+audit') !== st.auditSyncs > 0) {
      throw new Error(`${sys}: a test write did not go through as expected: HTTP ${r.status}, stats ${JSON.stringify(st)}`);
    }
  }

  let seq = 0;
  function options(sys: System, url: string, c: number, d: number): Options {
    const base = { url, connections: c, duration: d, timeout: 10 };
    if (sys === 'etcd') return { ...base, requests: etcdPutRequests(etcdBodies, () => seq++) };
    return {
      ...base,
      requests: [
        {
          method: 'PUT',
          headers: { 'content-type': 'application/json' },
          body: floorBody,
          setupRequest: (req) => ({ ...req, path: floorPaths[seq++ % floorPaths.length]! }),
        },
      ],
    };
  }

  async function measure(sys: System, c: number, d: number): Promise<Sample> {
    const cluster = systems.get(sys)!;
    const { members, leader } = cluster;
    const lead = await poll(`${sys} has no agreed leader before a run`, 30_000, leader);
    const leadMember = members.find((m) => m.id === lead)!;
    const st0 = sys === 'etcd' ? null : await floorStats(cluster);
    const run = await timedCannon(members.map((m) => m.pid), options(sys, leadMember.url, c, d));
    const { wall } = run;
    const st1 = sys === 'etcd' ? null : await floorStats(cluster);
    const leadAfter = await leader().catch(() => '?');
    return {
      system: sys,
      connections: c,
      ...runFigures(run, members.indexOf(leadMember)),
      logSyncs: st0 && st1 ? (st1.logSyncs - st0.logSyncs) / wall : NaN,
      auditSyncs: st0 && st1 && sys === 'floor+audit' ? (st1.auditSyncs - st0.auditSyncs) / wall : NaN,
      leaderChanged: leadAfter !== lead,
    };
  }

  const order = s.only;
  const width = Math.max(...order.map((o) => o.length));
  info(
    `floor bench (writes to the leader): ${order.join(', ')}${etcdVer ? ` (etcd ${etcdVer})` : ''}, 3 members each; ` +
      `${s.repeats} x ${s.connections.join('/')} connections, ${s.duration} s per run (warm-up ${s.warmup} s), ${s.names} keys, value ${VALUE_BYTES} B`,
  );
  if (fsyncBefore) info(`  disk fdatasync before: ${fsyncBefore.perSec.toFixed(0)}/s (${fsyncBefore.meanMs.toFixed(2)} ms each)`);
  if (s.warmup > 0) for (const sys of order) await measure(sys, Math.max(...s.connections), s.warmup);

  const fmt = (n: number, digits = 0) => (Number.isNaN(n) ? '–' : n.toFixed(digits));
  const samples: Sample[] = [];
  for (let rep = 1; rep <= s.repeats; rep++) {
    for (const c of s.connections) {
      // Every other repeat in reverse order, so no system always runs right after another's busiest run.
      for (const sys of rep % 2 === 1 ? order : [...order].reverse()) {
        const x = await measure(sys, c, s.duration);
        samples.push(x);
        info(
          `  [${rep}/${s.repeats}] ${sys.padEnd(width)} c=${String(c).padEnd(3)} ${x.rps.toFixed(0).padStart(6)} req/s  p50 ${x.p50.toFixed(2)} ms  p99 ${x.p99.toFixed(2)} ms  ` +
            `cpu ${x.cpu.toFixed(0)}% (leader ${x.leaderCpu.toFixed(0)}%) ${x.cpuPerReq.toFixed(0)} µs/req  load ${x.loadCpu.toFixed(0)}% other ${x.otherCpu.toFixed(0)}%` +
            `${sys === 'etcd' ? '' : `  log fsyncs ${fmt(x.logSyncs)}/s${sys === 'floor+audit' ? ` audit ${fmt(x.auditSyncs)}/s` : ''}`}` +
            `${x.bad ? `  NON-2XX/ERRORS ${x.bad}` : ''}${x.leaderChanged ? '  LEADER CHANGED' : ''}`,
        );
      }
    }
  }
  const fsyncAfter = s.fsyncSeconds > 0 ? fsyncRate(tempDir, s.fsyncSeconds) : null;

  // ---------------------------------------------------------------- report
  const pick = (sys: System, c: number) => samples.filter((x) => x.system === sys && x.connections === c);
  const med = (sys: System, c: number, f: (x: Sample) => number) => median(pick(sys, c).map(f));
  const label = (sys: System) =>
    sys === 'etcd' ? `etcd ${etcdVer} POST /v3/kv/put` : sys === 'floor' ? 'floor: node:http + log fsync ∥ 1-of-2 follower fsync' : 'floor+audit: floor + durable audit record';
  const cpuInfo = os.cpus();
  const out: string[] = [];
  out.push(`Node ${process.version}, etcd ${etcdVer ?? '-'}, ${cpuInfo.length} CPUs (${cpuInfo[0]?.model.trim() ?? 'unknown'}), ${os.platform()} ${os.release()}`);
  out.push(
    `writes to the leader, ${s.duration} s per run, ${s.repeats} interleaved repeats, medians shown; value ${VALUE_BYTES} B over ${s.names} keys; ` +
      `disk fdatasync ${fsyncBefore ? `${fsyncBefore.perSec.toFixed(0)}/s before` : '–'}${fsyncAfter ? `, ${fsyncAfter.perSec.toFixed(0)}/s after (${fsyncAfter.meanMs.toFixed(2)} ms each)` : ''}`,
  );
  out.push('');
  out.push('| System | Conns | req/s | p50 ms | p99 ms | CPU % (3 procs) | leader CPU % | CPU µs/req | log fsyncs/s | audit fsyncs/s | load-gen CPU % | other CPU % | non-2xx/errors |');
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const c of s.connections) {
    for (const sys of order) {
      out.push(
        `| ${label(sys)} | ${c} | ${fmt(med(sys, c, (x) => x.rps))} | ${fmt(med(sys, c, (x) => x.p50), 2)} | ${fmt(med(sys, c, (x) => x.p99), 2)} | ` +
          `${fmt(med(sys, c, (x) => x.cpu))} | ${fmt(med(sys, c, (x) => x.leaderCpu))} | ${fmt(med(sys, c, (x) => x.cpuPerReq))} | ` +
          `${fmt(med(sys, c, (x) => x.logSyncs))} | ${fmt(med(sys, c, (x) => x.auditSyncs))} | ${fmt(med(sys, c, (x) => x.loadCpu))} | ${fmt(med(sys, c, (x) => x.otherCpu))} | ` +
          `${pick(sys, c).reduce((a, x) => a + x.bad, 0)} |`,
      );
    }
  }
  out.push('');
  out.push(`Per repeat (req/s; repeats 1..${s.repeats}):`);
  out.push('');
  out.push('| System | Conns | req/s per repeat | p50 ms per repeat |');
  out.push('|---|---:|---|---|');
  for (const c of s.connections) {
    for (const sys of order) {
      out.push(`| ${sys} | ${c} | ${pick(sys, c).map((x) => x.rps.toFixed(0)).join(', ')} | ${pick(sys, c).map((x) => x.p50.toFixed(2)).join(', ')} |`);
    }
  }
  if (order.includes('etcd') && order.length > 1) {
    out.push('');
    for (const c of s.connections) {
      // Issue 18: ≥ 1.0× etcd at 1 client, ≥ 1.5× at 64.
      const want = c === 1 ? 1 : c === 64 ? 1.5 : NaN;
      for (const sys of order.filter((o) => o !== 'etcd')) {
        const ratio = med(sys, c, (x) => x.rps) / med('etcd', c, (x) => x.rps);
        const per = Array.from({ length: s.repeats }, (_, i) => {
          const a = pick(sys, c)[i];
          const b = pick('etcd', c)[i];
          return a && b ? (a.rps / b.rps).toFixed(2) : 'NaN';
        }).join(', ');
        out.push(
          `- c=${c}: ${sys}/etcd throughput = ${ratio.toFixed(2)}× (per repeat ${per}); p50 ${fmt(med(sys, c, (x) => x.p50), 2)} vs ${fmt(med('etcd', c, (x) => x.p50), 2)} ms` +
            (Number.isNaN(want) ? '' : `; issue 18's Coffer target at this concurrency is ≥ ${want}× etcd: the ${sys} ${ratio >= want ? 'reaches it' : 'does NOT reach it'}`),
        );
      }
    }
  }
  const changed = samples.filter((x) => x.leaderChanged).length;
  if (changed) out.push(`- WARNING: the leader changed during ${changed} run(s)`);
  process.stdout.write(out.join('\n') + '\n');

  markStopping();
  await Promise.all(liveChildren().map((c) => stopChild(c)));
  if (keepTemp) info(`kept ${tempDir}`);
  else fs.rmSync(tempDir, { recursive: true, force: true });
  tempDir = null;
}

runBench(main, killAllNow);
