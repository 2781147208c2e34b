// A 3-node Coffer cluster beside a 3-node etcd cluster, on this machine, in
// the same run: 256-byte writes through each system's full write path under
// autocannon, at the same client concurrency, interleaved (etcd, coffer,
// etcd, coffer, …), medians of `repeats` runs.
//
//   npx tsc -p . && node dist/bench/cluster.js [--workload=write|read] [--duration=10] [--repeats=3] [--connections=1,64]
//
// --workload=write (default): the writes described below.
// --workload=read: 256-byte reads of the same seeded keys, each cluster
// measured two ways in the same run, interleaved like separate systems:
//   coffer        GET /v1/secrets/bench/k{i}: linearizable (the default; the
//                 leader confirms its leadership with a ReadIndex round to
//                 the followers before it answers);
//   coffer@stale  the same with ?consistency=stale (served from the node's
//                 own state, no round);
//   etcd          POST /v3/kv/range {key}: linearizable (etcd's default);
//   etcd@serializable  the same with "serializable": true.
// Reads carry no token (a value read is allowed by client address; every
// node allowlists 127.0.0.0/8), as a workload reading its secrets does. The
// report adds the linearizable/stale p50 ratio per cluster and connection
// count. Use --target=leader to time the leader's reads alone (with spread,
// the followers' linearizable reads also ask the leader for its read index).
// --baseline-bin is for the write workload only.
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
//
// This file runs the measurement; beside it are its flags
// (cluster-settings.ts), the two systems (cluster-etcd.ts, cluster-coffer.ts)
// and the output (cluster-report.ts).
import type { Options } from 'autocannon';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  fsyncRate,
  killChildrenNow,
  liveChildren,
  loopTimes,
  markStopping,
  ROOT,
  runBench,
  stopChild,
  runFigures,
  timedCannon,
} from './common.js';
import { auditBatches, startCoffer } from './cluster-coffer.js';
import { etcdPutRequests, killEtcdNow, requireEtcd, startEtcd } from './cluster-etcd.js';
import { fetchJson, poll, type Cluster, type Member } from './cluster-members.js';
import { report, runLine, type Sample } from './cluster-report.js';
import { clusterOf, isCoffer, isLocalRead, settings, VALUE_BYTES, type System } from './cluster-settings.js';

let tempDir: string | null = null;
let keepTemp = false;

function killAllNow(): void {
  markStopping();
  killChildrenNow(killEtcdNow());
  if (tempDir && !keepTemp) fs.rmSync(tempDir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const s = settings(process.argv.slice(2));
  keepTemp = s.keep || s.cpuProf;
  const info = (msg: string) => process.stderr.write(msg + '\n');

  const etcdVer = s.only.includes('etcd') ? requireEtcd(s.etcdBin) : null;
  if (s.only.includes('coffer') && !fs.existsSync(s.cofferBin)) {
    process.stderr.write(`${path.relative(ROOT, s.cofferBin)} is missing: run \`npx tsc -p .\` first\n`);
    process.exit(3);
  }
  if (s.baselineBin && (!s.only.includes('coffer') || !fs.existsSync(s.baselineBin))) {
    process.stderr.write(`--baseline-bin needs coffer in --only and an existing file: ${s.baselineBin}\n`);
    process.exit(3);
  }

  // Hard deadline: set-up, warm-ups, runs and fsync probes, with generous slack.
  const systemCount = (s.workload === 'read' ? 2 : 1) * s.only.length + (s.baselineBin ? 1 : 0);
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
  // Read workload: the same keys, each read either way.
  const cofferStalePaths = cofferPaths.map((p) => `${p}?consistency=stale`);
  const etcdKeys = names.map((n) => Buffer.from(n).toString('base64'));
  const etcdRangeBodies = etcdKeys.map((key) => JSON.stringify({ key }));
  const etcdSerializableBodies = etcdKeys.map((key) => JSON.stringify({ key, serializable: true }));

  const systems = new Map<System, Cluster>();
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
  if (s.workload === 'read') {
    // Every read that will be measured answers the seeded value, on the leader, either way, before the clock starts.
    for (const [sys, { members, leader }] of systems) {
      const leadId = await leader();
      const m = members.find((x) => x.id === leadId)!;
      const last = names.length - 1;
      const checks =
        sys === 'etcd'
          ? [etcdRangeBodies[last]!, etcdSerializableBodies[last]!].map(async (body) => {
              const r = await fetchJson(`${m.url}/v3/kv/range`, { method: 'POST', body });
              const kv = (r.body as { kvs?: { value: string }[] }).kvs?.[0];
              return r.status === 200 && kv !== undefined && Buffer.from(kv.value, 'base64').toString() === value;
            })
          : [cofferPaths[last]!, cofferStalePaths[last]!].map(async (p) => {
              const r = await fetchJson(`${m.url}${p}`);
              return r.status === 200 && (r.body as { value?: string }).value === value;
            });
      if (!(await Promise.all(checks)).every(Boolean)) throw new Error(`${sys}: reading a seeded key back on the leader did not answer its value`);
    }
  }

  let seq = 0;
  function options(sys: System, members: Member[], leaderId: string, c: number, d: number): Options {
    const lead = members.find((m) => m.id === leaderId)!;
    const ordered = [lead, ...members.filter((m) => m !== lead)];
    const urls = s.target === 'leader' ? [lead.url] : ordered.map((m) => m.url);
    // autocannon assigns connection i to urls[i % urls.length].
    const base = { url: urls as unknown as string, connections: c, duration: d, timeout: 10 };
    if (s.workload === 'read') {
      if (!isCoffer(sys)) {
        const bodies = isLocalRead(sys) ? etcdSerializableBodies : etcdRangeBodies;
        return {
          ...base,
          requests: [
            {
              method: 'POST',
              path: '/v3/kv/range',
              headers: { 'content-type': 'application/json' },
              setupRequest: (req) => ({ ...req, body: bodies[seq++ % bodies.length]! }),
            },
          ],
        };
      }
      const paths = isLocalRead(sys) ? cofferStalePaths : cofferPaths;
      return { ...base, requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, path: paths[seq++ % paths.length]! }) }] };
    }
    if (sys === 'etcd') return { ...base, requests: etcdPutRequests(etcdBodies, () => seq++) };
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
    const { members, leader } = systems.get(clusterOf(sys))!;
    const lead = await poll(`${sys} has no agreed leader before a run`, 30_000, leader);
    const leadMember = members.find((m) => m.id === lead)!;
    const audit0 = isCoffer(sys) ? await auditBatches(members) : NaN;
    const loop0 = isCoffer(sys) ? await loopTimes(leadMember.child) : null;
    const run = await timedCannon(members.map((m) => m.pid), options(sys, members, lead, c, d));
    const { wall } = run;
    const loop1 = isCoffer(sys) ? await loopTimes(leadMember.child) : null;
    const audit1 = isCoffer(sys) ? await auditBatches(members) : NaN;
    const leadAfter = await leader().catch(() => '?');
    return {
      system: sys,
      connections: c,
      ...runFigures(run, members.indexOf(leadMember)),
      leaderLoop: loop0 && loop1 ? ((loop1.active - loop0.active) / (loop1.active - loop0.active + loop1.idle - loop0.idle)) * 100 : NaN,
      auditBatches: (audit1 - audit0) / wall,
      leader: lead,
      leaderChanged: leadAfter !== lead,
    };
  }

  const order = (
    s.workload === 'read' ? (['etcd', 'etcd@serializable', 'coffer', 'coffer@stale'] as const) : (['etcd', 'coffer', 'coffer@base'] as const)
  ).filter((x) => systems.has(clusterOf(x)));
  const maxConn = Math.max(...s.connections);
  info(
    `cluster bench (${s.workload}s): etcd ${etcdVer ?? '-'} vs coffer, 3 members each; ${s.repeats} x ${s.connections.join('/')} connections, ${s.duration} s per run ` +
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
        info(runLine(x, rep, s.repeats, Math.max(11, ...order.map((o) => o.length))));
      }
    }
  }
  const fsyncAfter = s.fsyncSeconds > 0 ? fsyncRate(tempDir, s.fsyncSeconds) : null;

  process.stdout.write(report(s, order, samples, etcdVer, fsyncBefore, fsyncAfter));

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
