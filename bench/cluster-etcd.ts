// The etcd side of the cluster bench: three members of Debian's etcd-server
// on 127.0.0.1, each run through bench/etcd-member.ts so it cannot outlive
// the bench.
import type { Options } from 'autocannon';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { HERE, freePort, startChild } from './common.js';
import { fetchJson, poll, type Cluster, type Member } from './cluster-members.js';
import type { Settings } from './cluster-settings.js';

const ETCD_MEMBER = path.join(HERE, 'etcd-member.js');
/** autocannon requests for etcd writes: POST /v3/kv/put with the bodies in turn (`next` hands out the running index). */
export function etcdPutRequests(bodies: readonly string[], next: () => number): Options['requests'] {
  return [
    {
      method: 'POST',
      path: '/v3/kv/put',
      headers: { 'content-type': 'application/json' },
      setupRequest: (req) => ({ ...req, body: bodies[next() % bodies.length]! }),
    },
  ];
}

/** etcd's version, or exits 3 with how to install it (every bench that runs etcd starts so). */
export function requireEtcd(bin: string): string {
  const version = etcdVersion(bin);
  if (version) return version;
  process.stderr.write(`${INSTALL_HINT}\n`);
  process.exit(3);
}

export const INSTALL_HINT = 'etcd is not installed. On Debian/Ubuntu: apt-get update && apt-get install -y etcd-server (or pass --etcd-bin=/path/to/etcd)';

/** etcd pid -> its wrapper (bench/etcd-member.ts). */
const etcdPids = new Map<number, ChildProcess>();

/** Kills every etcd at once; returns their wrappers, which get SIGTERM so they live to reap etcd and then exit. */
export function killEtcdNow(): Set<ChildProcess> {
  const wrappers = new Set(etcdPids.values());
  for (const [pid, wrapper] of etcdPids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
    wrapper.kill('SIGTERM');
  }
  return wrappers;
}

/** The installed etcd's version, or null when there is none. */
export function etcdVersion(bin: string): string | null {
  try {
    const out = execFileSync(bin, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
    return /etcd Version:\s*(\S+)/.exec(out)?.[1] ?? out.split('\n')[0]!.trim();
  } catch {
    return null;
  }
}

export async function startEtcd(s: Settings, root: string): Promise<Cluster> {
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
