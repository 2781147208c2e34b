// The cluster bench's flags (see bench/cluster.ts for what each does).
import path from 'node:path';
import { ROOT, flagReaders, parseFlags, rejectUnknownFlags } from './common.js';

export type System = 'etcd' | 'coffer' | 'coffer@base';
export const isCoffer = (sys: System) => sys !== 'etcd';
export type Target = 'spread' | 'leader';

/** Every written value is this long. */
export const VALUE_BYTES = 256;

export interface Settings {
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
