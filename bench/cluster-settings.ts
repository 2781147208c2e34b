// The cluster bench's flags (see bench/cluster.ts for what each does).
import path from 'node:path';
import { ROOT, flagReaders, parseFlags, rejectUnknownFlags } from './common.js';

/**
 * What one series of runs measures. The write workload has one per cluster (its base build for
 * coffer@base); the read workload two per cluster, on the same cluster: the linearizable read
 * (`etcd`, `coffer`) and the local one (`etcd@serializable`, `coffer@stale`).
 */
export type System = 'etcd' | 'coffer' | 'coffer@base' | 'etcd@serializable' | 'coffer@stale';
export const isCoffer = (sys: System) => sys.startsWith('coffer');
/** The cluster a system's runs go to. */
export const clusterOf = (sys: System): 'etcd' | 'coffer' | 'coffer@base' =>
  sys === 'etcd@serializable' ? 'etcd' : sys === 'coffer@stale' ? 'coffer' : sys;
/** Read workload: served from the member's own state without asking the others. */
export const isLocalRead = (sys: System) => sys === 'etcd@serializable' || sys === 'coffer@stale';
export type Target = 'spread' | 'leader';
export type Workload = 'write' | 'read';

/** Every written value is this long. */
export const VALUE_BYTES = 256;

export interface Settings {
  workload: Workload;
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

export function settings(argv: string[]): Settings {
  const flags = parseFlags(argv);
  rejectUnknownFlags(flags, ['workload', 'duration', 'warmup', 'connections', 'repeats', 'names', 'only', 'target', 'fsync-seconds', 'cpu-prof', 'keep', 'etcd-bin', 'coffer-bin', 'baseline-bin']);
  const { get, num } = flagReaders(flags);
  const connections = get('connections', '1,64').split(',').map((s) => Number(s.trim()));
  if (connections.some((c) => !Number.isInteger(c) || c < 1 || c > 1024)) throw new Error('--connections must be a comma list of integers 1..1024');
  const only = get('only', 'etcd,coffer').split(',').map((s) => s.trim()) as System[];
  if (only.length === 0 || only.some((s) => s !== 'etcd' && s !== 'coffer')) throw new Error('--only takes etcd, coffer');
  const target = get('target', 'spread') as Target;
  if (target !== 'spread' && target !== 'leader') throw new Error('--target is spread or leader');
  const workload = get('workload', 'write') as Workload;
  if (workload !== 'write' && workload !== 'read') throw new Error(`--workload is write or read (got ${JSON.stringify(workload)})`);
  const baselineBin = get('baseline-bin', '') ? path.resolve(get('baseline-bin', '')) : null;
  if (workload === 'read' && baselineBin) throw new Error('--baseline-bin works with --workload=write only');
  return {
    workload,
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
    baselineBin,
  };
}
