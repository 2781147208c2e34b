// Coffer nodes on a real WireGuard overlay: each node is a network namespace
// on the underlay bridge running `coffer wg-agent` (which runs wireguard-go)
// and `coffer server`, both from dist/bin/coffer.js, configured the way the
// operator configures a pod: a projected keys folder holding every pod's
// `<name>.key`, a projected peers.json, and VAULT_* for the overlay.
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { request } from '../../helpers/http.js';
import { COFFER_BIN, randomMasterKey, randomToken, tempDir } from '../../helpers/node.js';
import { sh, Underlay, type NodeNet } from './netns.js';
import { NsHttp } from './ns-http.js';
import { writeProjected } from './projected.js';

export const OVERLAY_CIDR = '10.77.0.0/24';
export const WG_PORT = 51820;
export const API_PORT = 8200;
export const RAFT_PORT = 8201;
export const MGMT_PORT = 8202;
export const AGENT_PORT = 8203;

export function keyPair(): { priv: string; pub: string } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const priv = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(-32).toString('base64');
  const pub = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32).toString('base64');
  return { priv, pub };
}

export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 20_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A process started inside a namespace (`ip netns exec` execs it, so the pid is the process's own). */
export class NsProcess {
  readonly exited: Promise<number | null>;
  private out = '';

  constructor(readonly proc: ChildProcess) {
    proc.stdout?.on('data', (d: Buffer) => (this.out += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (this.out += d.toString()));
    this.exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  }

  static start(ns: string, args: string[], env: Record<string, string>): NsProcess {
    return new NsProcess(spawn('ip', ['netns', 'exec', ns, process.execPath, COFFER_BIN, ...args], {
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }));
  }

  output(): string {
    return this.out;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Signals the process and waits for it; SIGKILL after `graceMs`. Resolves with the exit code (null when killed). */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<number | null> {
    if (!this.running) return this.proc.exitCode;
    this.proc.kill(signal);
    const t = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }
}

export interface OverlayNode {
  id: string;
  index: number;
  net: NodeNet;
  /** WireGuard interface; unique per run because wireguard-go's socket folder is shared. */
  iface: string;
  overlayIp: string;
  /** Key pair listed in peers.json; `agentKey` is what the node's own keys folder holds. */
  key: { priv: string; pub: string };
  agentKey: string;
  keysDir: string;
  dataDir: string;
  tmpDir: string;
  agent: NsProcess | null;
  server: NsProcess | null;
  http: NsHttp;
}

export interface AgentStatus {
  name: string;
  address: string | null;
  publicKey: string | null;
  ready: boolean;
  reason: string | null;
  wireguardGo: { running: boolean; pid: number | null; restarts: number };
  peers: { name: string; publicKey: string; endpoint: string; resolvedEndpoint: string | null; currentEndpoint: string | null; latestHandshakeAgeSecs: number | null }[];
}

export class OverlayCluster {
  readonly token = randomToken();
  readonly masterKey = randomMasterKey();
  readonly clusterKey = randomMasterKey();
  /** Named for this process, so a later run can remove it if this one is killed (netns.ts cleanupStaleRuns). */
  readonly root = tempDir(`coffer-wg-${process.pid}-`);
  readonly peersDir: string;
  readonly nodes: OverlayNode[] = [];

  private constructor(readonly underlay: Underlay) {
    this.peersDir = path.join(this.root, 'peers');
  }

  static async create(): Promise<OverlayCluster> {
    return new OverlayCluster(await Underlay.create());
  }

  get peersFile(): string {
    return path.join(this.peersDir, 'peers.json');
  }

  endpointName(n: OverlayNode): string {
    return `${n.id}.vault-headless.coffer-test.svc`;
  }

  /** A namespace and files for node `index` (n<index>, overlay 10.77.0.<index>); nothing runs yet. */
  async addNode(index: number, opts: { wrongKey?: boolean } = {}): Promise<OverlayNode> {
    const net = await this.underlay.addNode(index);
    const key = keyPair();
    const node: OverlayNode = {
      id: `n${index}`,
      index,
      net,
      iface: `cw${this.underlay.run}n${index}`,
      overlayIp: `10.77.0.${index}`,
      key,
      agentKey: opts.wrongKey ? keyPair().priv : key.priv,
      keysDir: path.join(this.root, `n${index}`, 'keys'),
      dataDir: path.join(this.root, `n${index}`, 'data'),
      tmpDir: path.join(this.root, `n${index}`, 'tmp'),
      agent: null,
      server: null,
      http: new NsHttp(net.ns),
    };
    fs.mkdirSync(node.tmpDir, { recursive: true, mode: 0o700 });
    this.nodes.push(node);
    this.underlay.setName(this.endpointName(node), net.ip);
    this.writeKeys();
    return node;
  }

  node(id: string): OverlayNode {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  /** Each node's keys folder: every pod's key, as the Secret holds them; its own entry is its `agentKey`. */
  private writeKeys(): void {
    for (const n of this.nodes) {
      const files: Record<string, string> = {};
      for (const m of this.nodes) files[`${m.id}.key`] = (m === n ? n.agentKey : m.key.priv) + '\n';
      writeProjected(n.keysDir, files, 0o600);
    }
  }

  /** Writes peers.json listing these nodes (the operator's ConfigMap after a scale to this set). */
  writePeers(ids: string[]): void {
    const doc = {
      version: 1,
      listenPort: WG_PORT,
      cidr: OVERLAY_CIDR,
      peers: ids.map((id) => {
        const n = this.node(id);
        return { name: n.id, publicKey: n.key.pub, address: n.overlayIp, endpoint: `${this.endpointName(n)}:${WG_PORT}` };
      }),
    };
    writeProjected(this.peersDir, { 'peers.json': JSON.stringify(doc, null, 2) });
  }

  /** Writes raw text as peers.json (for a bad ConfigMap). */
  writePeersText(text: string): void {
    writeProjected(this.peersDir, { 'peers.json': text });
  }

  agentUrl(n: OverlayNode): string {
    return `http://${n.net.ip}:${AGENT_PORT}`;
  }

  apiUrl(n: OverlayNode): string {
    return `http://${n.net.ip}:${API_PORT}`;
  }

  mgmtUrl(n: OverlayNode): string {
    return `http://${n.overlayIp}:${MGMT_PORT}`;
  }

  async startAgent(n: OverlayNode): Promise<void> {
    n.agent = NsProcess.start(n.net.ns, [
      'wg-agent',
      '--name', n.id,
      '--interface', n.iface,
      '--keys-dir', n.keysDir,
      '--peers-file', this.peersFile,
      '--listen', `0.0.0.0:${AGENT_PORT}`,
      '--poll-interval-ms', '300',
      '--resolve-interval-ms', '1000',
    ], { LOG_LEVEL: 'info', TMPDIR: n.tmpDir }); // the agent's private folder for key hand-over lives in the run's folder
    const agent = n.agent;
    await waitFor(`${n.id}'s wg-agent /health`, async () => {
      if (!agent.running) throw new Error(`wg-agent exited:\n${agent.output()}`);
      return (await request(this.agentUrl(n), 'GET', '/health', { timeoutMs: 1_000 })).status === 200;
    }, 15_000);
  }

  async agentStatus(n: OverlayNode): Promise<AgentStatus> {
    return (await request(this.agentUrl(n), 'GET', '/status', { timeoutMs: 2_000 })).body as AgentStatus;
  }

  async agentReady(n: OverlayNode): Promise<{ status: number; body: { ready: boolean; reason?: string } }> {
    const r = await request(this.agentUrl(n), 'GET', '/ready', { timeoutMs: 2_000 });
    return { status: r.status, body: r.body };
  }

  async waitAgentReady(n: OverlayNode, timeoutMs = 20_000): Promise<void> {
    await waitFor(`${n.id}'s wg-agent /ready`, async () => (await this.agentReady(n)).status === 200, timeoutMs);
  }

  serverEnv(n: OverlayNode, voters: string[]): Record<string, string> {
    return {
      VAULT_DATA_DIR: n.dataDir,
      VAULT_NODE_ID: n.id,
      VAULT_API_ADDR: `0.0.0.0:${API_PORT}`,
      // Raft listens and advertises on this node's own VAULT_PEERS entry, which is its overlay address.
      VAULT_PEERS: voters.map((id) => `${id}=${this.node(id).overlayIp}:${RAFT_PORT}`).join(','),
      VAULT_OVERLAY_CIDR: OVERLAY_CIDR,
      VAULT_MGMT_ADDR: `overlay:${MGMT_PORT}`,
      VAULT_LOCAL_MASTER_KEY: this.masterKey,
      VAULT_CLUSTER_KEY: this.clusterKey,
      VAULT_BOOTSTRAP_TOKEN: this.token,
      VAULT_READ_ALLOWLIST: `${this.underlay.hostIp},${OVERLAY_CIDR}`,
      LOG_LEVEL: 'info',
    };
  }

  async startServer(n: OverlayNode, voters: string[]): Promise<void> {
    n.server = NsProcess.start(n.net.ns, ['server'], this.serverEnv(n, voters));
    const server = n.server;
    await waitFor(`${n.id}'s coffer server`, async () => {
      if (!server.running) throw new Error(`coffer server exited:\n${server.output()}`);
      return /coffer node ready/.test(server.output());
    }, 20_000);
  }

  async health(n: OverlayNode): Promise<{ role: string; leader_id: string | null } | null> {
    try {
      const r = await request(this.apiUrl(n), 'GET', '/v1/health', { timeoutMs: 2_000 });
      return r.status === 200 ? r.body : null;
    } catch {
      return null;
    }
  }

  /** Waits until every given node reports the same leader, which is one of them. */
  async waitForLeader(ids: string[], timeoutMs = 30_000): Promise<string> {
    return waitFor(`one leader among ${ids.join(', ')}`, async () => {
      const hs = await Promise.all(ids.map((id) => this.health(this.node(id))));
      const leaders = new Set(hs.map((h) => h?.leader_id ?? null));
      const [lead] = [...leaders];
      return leaders.size === 1 && lead && ids.includes(lead) ? lead : null;
    }, timeoutMs, 200);
  }

  /** `wg show <iface> <what>` from the host: the control socket is on the shared filesystem. */
  wgShow(n: OverlayNode, what: string): Promise<string> {
    return sh('wg', ['show', n.iface, what]);
  }

  /** Stops everything, removes the namespaces and the files. */
  async stop(): Promise<void> {
    for (const n of this.nodes) n.http.close();
    await Promise.all(this.nodes.flatMap((n) => [n.server?.stop('SIGKILL', 2_000), n.agent?.stop('SIGTERM', 3_000)]));
    this.underlay.destroy();
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}
