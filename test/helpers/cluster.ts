// A cluster of real `coffer server` processes on 127.0.0.x for tests.
import fs from 'node:fs';
import path from 'node:path';
import { FaultProxy, type LinkMode } from './fault-proxy.js';
import { request } from './http.js';
import { freePort } from './net.js';
import { randomMasterKey, randomToken, spawnNode, tempDir, type SpawnedNode } from './node.js';

export interface ClusterMember {
  id: string;
  host: string;
  apiPort: number;
  raftPort: number;
  dataDir: string;
  url: string;
  proc: SpawnedNode | null;
}

export interface ClusterOptions {
  /**
   * Route each initial member's traffic to every other initial member through
   * its own FaultProxy (one per directed link), so tests can cut links with
   * partition()/heal()/link(). Each node's VAULT_PEERS names the proxies it
   * dials instead of the peers' real Raft addresses.
   */
  proxies?: boolean;
  /**
   * Declare the members in a VAULT_MEMBERS_FILE (as the operator does), so
   * the leader's autopilot keeps Raft membership equal to it; change it with
   * declare(). Starts out listing the initial members.
   */
  membersFile?: boolean;
  /**
   * Initial voters start() does not start (as pods whose network is not up
   * yet); startMember() starts them later. start() then waits for a leader
   * only: nothing can be committed before every voter has been heard from.
   */
  heldBack?: string[];
  /** Extra environment for some members only (as a member running another release would have). */
  memberEnv?: Record<string, Record<string, string>>;
}

export class TestCluster {
  readonly token = randomToken();
  readonly masterKey = randomMasterKey();
  /** VAULT_CLUSTER_KEY shared by every member (same shape as a master key: base64 of 32 bytes). */
  readonly clusterKey = randomMasterKey();
  readonly members: ClusterMember[] = [];
  readonly root = tempDir('coffer-cluster-');
  /** Members in VAULT_PEERS (the initial voters); joiners are added through the admin API. */
  private initialIds: string[] = [];
  /** Directed links `from->to` when started with `proxies`. */
  private readonly proxies = new Map<string, FaultProxy>();
  /** VAULT_MEMBERS_FILE of every node, when started with `membersFile`. */
  membersFile: string | null = null;

  private constructor(
    private readonly extraEnv: Record<string, string>,
    private readonly memberEnv: Record<string, Record<string, string>> = {},
  ) {}

  static async start(size: number, extraEnv: Record<string, string> = {}, opts: ClusterOptions = {}): Promise<TestCluster> {
    const c = new TestCluster(extraEnv, opts.memberEnv);
    for (let i = 1; i <= size; i++) {
      const host = `127.0.0.${i}`;
      const apiPort = await freePort(host);
      const raftPort = await freePort(host);
      c.members.push({ id: `n${i}`, host, apiPort, raftPort, dataDir: path.join(c.root, `n${i}`), url: `http://${host}:${apiPort}`, proc: null });
    }
    c.initialIds = c.members.map((m) => m.id);
    if (opts.membersFile) {
      c.membersFile = path.join(c.root, 'members');
      c.declare(c.initialIds);
    }
    if (opts.proxies) {
      try {
        for (const from of c.members) {
          for (const to of c.members) {
            if (from === to) continue;
            // Listens on the target's loopback address, so the dialled host stays the peer's own.
            c.proxies.set(`${from.id}->${to.id}`, await FaultProxy.start(to.host, to.host, to.raftPort));
          }
        }
      } catch (err) {
        await c.stop();
        throw err;
      }
    }
    try {
      const heldBack = opts.heldBack ?? [];
      const started = await Promise.allSettled(c.members.filter((m) => !heldBack.includes(m.id)).map((m) => c.startMember(m.id)));
      for (const r of started) if (r.status === 'rejected') throw r.reason;
      await c.waitForLeader();
      if (heldBack.length === 0) await c.waitForBootstrapToken();
    } catch (err) {
      await c.stop(); // the caller never gets the cluster, so nothing else would stop what did start
      throw err;
    }
    return c;
  }

  /** Starts a node that is not an initial voter; it waits until an admin adds it. */
  async startJoiner(): Promise<ClusterMember> {
    const m = await this.addJoiner();
    await this.startMember(m.id);
    return m;
  }

  /** A new member's addresses and data folder, not started (to declare it first, or start it later). */
  async addJoiner(): Promise<ClusterMember> {
    const i = this.members.length + 1;
    const host = `127.0.0.${i}`;
    const m: ClusterMember = {
      id: `n${i}`, host, apiPort: await freePort(host), raftPort: await freePort(host),
      dataDir: path.join(this.root, `n${i}`), url: '', proc: null,
    };
    m.url = `http://${host}:${m.apiPort}`;
    this.members.push(m);
    return m;
  }

  /** Rewrites the members file (atomically, as the kubelet swaps a ConfigMap) to declare exactly `ids`. */
  declare(ids: readonly string[]): void {
    if (!this.membersFile) throw new Error('declare() needs a cluster started with { membersFile: true }');
    const text = ids.map((id) => `${id}=${this.member(id).host}:${this.member(id).raftPort}\n`).join('');
    fs.writeFileSync(`${this.membersFile}.tmp`, text);
    fs.renameSync(`${this.membersFile}.tmp`, this.membersFile);
  }

  /** Removes a stopped member's data folder: the volume is lost, the name stays. */
  wipe(id: string): void {
    const m = this.member(id);
    if (m.proc) throw new Error(`${id} is running; stop it before wiping its data`);
    fs.rmSync(m.dataDir, { recursive: true, force: true });
  }

  member(id: string): ClusterMember {
    const m = this.members.find((x) => x.id === id);
    if (!m) throw new Error(`no member ${id}`);
    return m;
  }

  /** The proxy on the directed link from -> to (clusters started with `proxies`). */
  link(from: string, to: string): FaultProxy {
    const p = this.proxies.get(`${from}->${to}`);
    if (!p) throw new Error(`no proxy on link ${from}->${to} (start the cluster with { proxies: true })`);
    return p;
  }

  /** Cuts `id` off from every other member, both directions. */
  partition(id: string, mode: Exclude<LinkMode, 'pass'> = 'drop'): void {
    if (this.proxies.size === 0) throw new Error('partition() needs a cluster started with { proxies: true }');
    for (const [name, p] of this.proxies) {
      const [from, to] = name.split('->');
      if (from === id || to === id) p.setMode(mode);
    }
  }

  /** Restores every link. */
  heal(): void {
    for (const p of this.proxies.values()) p.setMode('pass');
  }

  /** How `m` reaches peer `x`: through the proxy on that link when there is one. */
  private peerAddress(m: ClusterMember, x: ClusterMember): string {
    return this.proxies.get(`${m.id}->${x.id}`)?.address ?? `${x.host}:${x.raftPort}`;
  }

  env(m: ClusterMember): Record<string, string> {
    return {
      VAULT_DATA_DIR: m.dataDir,
      VAULT_API_ADDR: `${m.host}:${m.apiPort}`,
      VAULT_RAFT_ADDR: `${m.host}:${m.raftPort}`,
      VAULT_NODE_ID: m.id,
      VAULT_PEERS: this.members.filter((x) => this.initialIds.includes(x.id)).map((x) => `${x.id}=${this.peerAddress(m, x)}`).join(','),
      VAULT_LOCAL_MASTER_KEY: this.masterKey,
      VAULT_CLUSTER_KEY: this.clusterKey,
      VAULT_BOOTSTRAP_TOKEN: this.token,
      VAULT_READ_ALLOWLIST: '127.0.0.0/8',
      COFFER_RAFT_TICK_MS: '50',
      ...(this.membersFile ? { VAULT_MEMBERS_FILE: this.membersFile } : {}),
      ...this.extraEnv,
      ...this.memberEnv[m.id],
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

  /**
   * The first leader proposes the bootstrap token once it is elected; until
   * every node has applied it, a test's first authenticated call could get 401.
   */
  async waitForBootstrapToken(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const m of this.running()) {
      for (;;) {
        const r = await request(m.url, 'GET', '/v1/admin/cluster', { token: this.token }).catch(() => null);
        if (r?.status === 200) break;
        if (Date.now() > deadline) throw new Error(`${m.id} does not accept the bootstrap token yet: ${r?.status ?? 'no answer'}`);
        await new Promise((res) => setTimeout(res, 50));
      }
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
    for (const m of this.members) m.proc?.proc.kill('SIGCONT'); // in case a test left one paused
    await Promise.all(this.members.map((m) => m.proc?.stop('SIGKILL')));
    await Promise.all([...this.proxies.values()].map((p) => p.close()));
    this.proxies.clear();
    // Every node's data folder lives under root: nothing is left in the temp dir after a run
    // (COFFER_KEEP_TEST_DATA=1 keeps it, e.g. to read a failed chaos run's nodes).
    if (process.env.COFFER_KEEP_TEST_DATA !== '1') fs.rmSync(this.root, { recursive: true, force: true });
  }
}
