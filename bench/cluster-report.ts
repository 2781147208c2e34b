// What one run measured, the line printed after it, and the final table
// (medians over the repeats) with the throughput ratios.
import os from 'node:os';
import { isCoffer, VALUE_BYTES, type Settings, type System } from './cluster-settings.js';

export interface Sample {
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

type FsyncRate = { perSec: number; meanMs: number } | null;

const median = (xs: number[]) => {
  const v = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
};

/** The progress line for one run, on stderr. */
export function runLine(x: Sample, rep: number, repeats: number): string {
  const sys = x.system;
  const c = x.connections;
  return (
    `  [${rep}/${repeats}] ${sys.padEnd(11)} c=${String(c).padEnd(3)} ${x.rps.toFixed(0).padStart(6)} req/s  p50 ${x.p50.toFixed(2)} ms  p99 ${x.p99.toFixed(2)} ms  ` +
    `cpu ${x.cpu.toFixed(0)}% (leader ${x.leaderCpu.toFixed(0)}%) ${x.cpuPerReq.toFixed(0)} µs/req  load ${x.loadCpu.toFixed(0)}% other ${x.otherCpu.toFixed(0)}%` +
    `${isCoffer(sys) ? `  leader loop ${x.leaderLoop.toFixed(0)}% audit ${x.auditBatches.toFixed(0)}/s` : ''}` +
    `${x.bad ? `  NON-2XX/ERRORS ${x.bad}` : ''}${x.leaderChanged ? '  LEADER CHANGED' : ''}`
  );
}

/** The report on stdout: the machine, the settings, one table row per system and connection count, then the ratios. */
export function report(s: Settings, order: readonly System[], samples: Sample[], etcdVer: string | null, fsyncBefore: FsyncRate, fsyncAfter: FsyncRate): string {
  const cpuInfo = os.cpus();
  const fmt = (n: number, digits = 0) => (Number.isNaN(n) ? '–' : n.toFixed(digits));
  const pick = (sys: System, c: number) => samples.filter((x) => x.system === sys && x.connections === c);
  const med = (sys: System, c: number, f: (x: Sample) => number) => median(pick(sys, c).map(f));
  /** Coffer's throughput over `base`'s, repeat by repeat (runs of one repeat ran back to back). */
  const perRepeat = (base: System, c: number) =>
    Array.from({ length: s.repeats }, (_, i) => {
      const b = pick(base, c)[i];
      const k = pick('coffer', c)[i];
      return b && k ? (k.rps / b.rps).toFixed(2) : 'NaN';
    }).join(', ');
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
  if (order.includes('etcd') && order.includes('coffer')) {
    out.push('');
    for (const c of s.connections) {
      const ratio = med('coffer', c, (x) => x.rps) / med('etcd', c, (x) => x.rps);
      const want = c === 1 ? 0.8 : 1;
      out.push(
        `- c=${c}: coffer/etcd throughput = ${ratio.toFixed(2)}× (per-repeat ${perRepeat('etcd', c)}); ` +
          `p50 ${fmt(med('coffer', c, (x) => x.p50), 2)} vs ${fmt(med('etcd', c, (x) => x.p50), 2)} ms` +
          (c === 1 || c === 64 ? `; target ≥ ${want}×: ${ratio >= want ? 'met' : 'NOT met'}` : ''),
      );
    }
  }
  if (order.includes('coffer@base')) {
    out.push('');
    for (const c of s.connections) {
      out.push(
        `- c=${c}: coffer/baseline throughput = ${(med('coffer', c, (x) => x.rps) / med('coffer@base', c, (x) => x.rps)).toFixed(2)}× ` +
          `(per-repeat ${perRepeat('coffer@base', c)}); p50 ${fmt(med('coffer', c, (x) => x.p50), 2)} vs ${fmt(med('coffer@base', c, (x) => x.p50), 2)} ms; ` +
          `CPU µs/req ${fmt(med('coffer', c, (x) => x.cpuPerReq))} vs ${fmt(med('coffer@base', c, (x) => x.cpuPerReq))}`,
      );
    }
  }
  const changed = samples.filter((x) => x.leaderChanged).length;
  if (changed) out.push(`- WARNING: the leader changed during ${changed} run(s)`);
  return out.join('\n') + '\n';
}
