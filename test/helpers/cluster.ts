// A cluster of real `coffer server` processes on 127.0.0.x for tests.
import net from 'node:net';
import path from 'node:path';
import { request } from './http.js';
import { randomMasterKey, randomToken, spawnNode, tempDir, type SpawnedNode } from './node.js';

export async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface ClusterMember {
  id: string;
  host: string;
  apiPort: number;
  raftPort: number;
  dataDir: string;
  url: string;
  proc: SpawnedNode | null;
}

export class TestCluster {
  readonly token = randomToken();
  readonly masterKey = randomMasterKey();
  readonly members: ClusterMember[] = [];
  readonly root = tempDir('coffer-cluster-');
  /** Members in VAULT_PEERS (the initial voters); joiners are added through the admin API. */
  private initialIds: string[] = [];

  private constructor(private readonly extraEnv: Record<string, string>) {}

  static async start(size: number, extraEnv: Record<string, string> = {}): Promise<TestCluster> {
    const c = new TestCluster(extraEnv);
    for (let i = 1; i <= size; i++) {
      const host = `127.0.0.${i}`;
      const apiPort = await freePort(host);
      const raftPort = await freePort(host);
      c.members.push({ id: `n${i}`, host, apiPort, raftPort, dataDir: path.join(c.root, `n${i}`), url: `http://${host}:${apiPort}`, proc: null });
    }
    c.initialIds = c.members.map((m) => m.id);
    await Promise.all(c.members.map((m) => c.startMember(m.id)));
    await c.waitForLeader();
    return c;
  }

  /** Starts a node that is not an initial voter; it waits until an admin adds it. */
  async startJoiner(): Promise<ClusterMember> {
    const i = this.members.length + 1;
    const host = `127.0.0.${i}`;
    const m: ClusterMember = {
      id: `n${i}`, host, apiPort: await freePort(host), raftPort: await freePort(host),
      dataDir: path.join(this.root, `n${i}`), url: '', proc: null,
    };
    m.url = `http://${host}:${m.apiPort}`;
    this.members.push(m);
    await this.startMember(m.id);
    return m;
  }

  member(id: string): ClusterMember {
    const m = this.members.find((x) => x.id === id);
    if (!m) throw new Error(`no member ${id}`);
    return m;
  }

  env(m: ClusterMember): Record<string, string> {
    return {
      VAULT_DATA_DIR: m.dataDir,
      VAULT_API_ADDR: `${m.host}:${m.apiPort}`,
      VAULT_RAFT_ADDR: `${m.host}:${m.raftPort}`,
      VAULT_NODE_ID: m.id,
      VAULT_PEERS: this.members.filter((x) => this.initialIds.includes(x.id)).map((x) => `${x.id}=${x.host}:${x.raftPort}`).join(','),
      VAULT_LOCAL_MASTER_KEY: this.masterKey,
      VAULT_BOOTSTRAP_TOKEN: this.token,
      VAULT_READ_ALLOWLIST: '127.0.0.0/8',
      COFFER_RAFT_TICK_MS: '50',
      ...this.extraEnv,
    };
  }

  async startMember(id: string): Promise<void> {
    const m = this.member(id);
    m.proc = await spawnNode(this.env(m));
  }

  async stopMember(id: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const m = this.member(id);
    const code = await m.proc?.stop(signal);
    m.proc = null;
    return code ?? null;
  }

  signal(id: string, signal: NodeJS.Signals): void {
    this.member(id).proc?.proc.kill(signal);
  }

  running(): ClusterMember[] {
    return this.members.filter((m) => m.proc !== null);
  }

  async health(m: ClusterMember): Promise<{ role: string; leader_id: string | null } | null> {
    try {
      const r = await request(m.url, 'GET', '/v1/health');
      return r.status === 200 ? r.body : null;
    } catch {
      return null;
    }
  }

  /** Waits until every running member agrees on one leader; returns its id. */
  async waitForLeader(timeoutMs = 15_000, exclude: string[] = []): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hs = await Promise.all(this.running().map((m) => this.health(m)));
      const leaders = new Set(hs.map((h) => h?.leader_id));
      const [lead] = [...leaders];
      if (leaders.size === 1 && lead && !exclude.includes(lead) && hs.some((h) => h?.role === 'leader')) return lead;
      if (Date.now() > deadline) throw new Error(`no agreed leader: ${JSON.stringify(hs)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => m.proc?.stop('SIGKILL')));
  }
}
