// The Coffer side of the cluster bench: three `coffer server` processes on
// 127.0.0.1, .2 and .3 with the local KMS and default Raft tuning.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, startChild } from './common.js';
import { fetchJson, poll, type Cluster, type Member } from './cluster-members.js';
import type { Settings } from './cluster-settings.js';

export async function startCoffer(s: Settings, root: string, token: string, bin: string, label: string): Promise<Cluster> {
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

/** Audit batches (one SQLite commit + fsync each) written so far, all members together. */
export async function auditBatches(members: Member[]): Promise<number> {
  let total = 0;
  for (const m of members) {
    const text = await (await fetch(`${m.url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const line = text.split('\n').find((l) => l.startsWith('coffer_audit_write_duration_seconds_count '));
    total += Number(line?.split(' ')[1] ?? NaN);
  }
  return total;
}
