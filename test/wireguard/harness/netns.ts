// Network namespaces for the overlay tier. One run owns:
//   coffer-wg-<pid>-sw   a "switch" namespace with bridge br0 (the underlay)
//   coffer-wg-<pid>-nN   one namespace per node, eth0 plugged into br0
//   cwg<pid>h            one veth in the host namespace, plugged into br0, so
//                        the test process reaches the nodes' underlay addresses
// and /etc/netns/<ns>/{hosts,resolv.conf} (ip netns exec bind-mounts them over
// /etc), plus its files in <tmpdir>/coffer-wg-<pid>-*. Nothing else on the
// machine is touched. The pid in every name lets a
// later run find and remove what a killed run left behind.
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const PREFIX = 'coffer-wg-';

export function sh(file: string, args: string[], timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(' ')}: ${String(stderr).trim() || err.message}`));
      else resolve(String(stdout));
    });
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function listNetns(): string[] {
  const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return out.split('\n').map((l) => l.split(' ')[0] as string).filter(Boolean);
}

/** Kills every process in a namespace (by pid), then deletes it and its /etc/netns folder. */
function destroyNetns(name: string): void {
  let pids: string[] = [];
  try {
    pids = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8' }).split('\n').filter(Boolean);
  } catch {
    // gone already
  }
  for (const p of pids) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'pipe' });
  } catch {
    // gone already
  }
  fs.rmSync(path.join('/etc/netns', name), { recursive: true, force: true });
}

/** Removes namespaces, links and wireguard-go sockets left by runs whose process is gone. */
export function cleanupStaleRuns(log: (line: string) => void = () => {}): void {
  const stale = new Set<number>();
  for (const ns of listNetns()) {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(ns);
    if (m && !pidAlive(Number(m[1]))) {
      stale.add(Number(m[1]));
      destroyNetns(ns);
    }
  }
  // Host veths named for a dead run (normally removed with the switch namespace).
  const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
  for (const m of links.matchAll(/^\d+: (cwg(\d+)h)[@:]/gm)) {
    if (!pidAlive(Number(m[2]))) {
      stale.add(Number(m[2]));
      try {
        execFileSync('ip', ['link', 'del', m[1] as string], { stdio: 'pipe' });
      } catch {
        // gone already
      }
    }
  }
  // wireguard-go control sockets of interfaces named for a dead run.
  const sockDir = '/var/run/wireguard';
  if (fs.existsSync(sockDir)) {
    for (const f of fs.readdirSync(sockDir)) {
      const m = /^cw(\d+)n\d+\.sock$/.exec(f);
      if (m && !pidAlive(Number(m[1]))) {
        stale.add(Number(m[1]));
        fs.rmSync(path.join(sockDir, f), { force: true });
      }
    }
  }
  // The run's files (keys, data, logs) in the temp folder.
  for (const dir of fs.readdirSync(os.tmpdir())) {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(dir);
    if (m && !pidAlive(Number(m[1]))) {
      stale.add(Number(m[1]));
      fs.rmSync(path.join(os.tmpdir(), dir), { recursive: true, force: true });
    }
  }
  for (const dir of fs.existsSync('/etc/netns') ? fs.readdirSync('/etc/netns') : []) {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(dir);
    if (m && !pidAlive(Number(m[1]))) fs.rmSync(path.join('/etc/netns', dir), { recursive: true, force: true });
  }
  if (stale.size) log(`removed leftovers of earlier runs (pids ${[...stale].join(', ')})`);
}

/** A free 10.231.X.0/24: no address or route of this machine is in it. */
function pickSubnet(): number {
  const taken = execFileSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' }) + execFileSync('ip', ['-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' });
  const start = (process.pid % 200) + 20;
  for (let i = 0; i < 200; i++) {
    const x = ((start + i) % 200) + 20;
    if (!taken.includes(`10.231.${x}.`)) return x;
  }
  throw new Error('no free 10.231.X.0/24 subnet');
}

export interface NodeNet {
  index: number;
  ns: string;
  /** Current underlay address (tests may change it). */
  ip: string;
}

export class Underlay {
  readonly run = process.pid;
  readonly switchNs = `${PREFIX}${process.pid}-sw`;
  readonly hostLink = `cwg${process.pid}h`;
  readonly subnet: number;
  readonly nodes: NodeNet[] = [];
  /** Hostnames every node's /etc/hosts maps (name -> underlay address). */
  private readonly names = new Map<string, string>();

  private constructor() {
    this.subnet = pickSubnet();
  }

  get hostIp(): string {
    return this.addr(254);
  }

  get cidr(): string {
    return `10.231.${this.subnet}.0/24`;
  }

  addr(host: number): string {
    return `10.231.${this.subnet}.${host}`;
  }

  /** The switch namespace with its bridge, and the host's port on it. */
  static async create(): Promise<Underlay> {
    const u = new Underlay();
    try {
      await sh('ip', ['netns', 'add', u.switchNs]);
      await sh('ip', ['-n', u.switchNs, 'link', 'add', 'br0', 'type', 'bridge']);
      await sh('ip', ['-n', u.switchNs, 'link', 'set', 'br0', 'up']);
      await sh('ip', ['link', 'add', u.hostLink, 'type', 'veth', 'peer', 'name', 'host', 'netns', u.switchNs]);
      await sh('ip', ['-n', u.switchNs, 'link', 'set', 'host', 'master', 'br0', 'up']);
      await sh('ip', ['addr', 'add', `${u.hostIp}/24`, 'dev', u.hostLink]);
      await sh('ip', ['link', 'set', u.hostLink, 'up']);
    } catch (err) {
      u.destroy();
      throw err;
    }
    return u;
  }

  /** A node namespace: lo up, eth0 on the bridge with 10.231.X.<index>, hosts and resolv.conf of its own. */
  async addNode(index: number): Promise<NodeNet> {
    const node: NodeNet = { index, ns: `${PREFIX}${this.run}-n${index}`, ip: this.addr(index) };
    this.nodes.push(node);
    const etc = path.join('/etc/netns', node.ns);
    fs.mkdirSync(etc, { recursive: true });
    // Names resolve from the hosts file only; anything else fails at once instead of waiting on DNS.
    fs.writeFileSync(path.join(etc, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
    fs.writeFileSync(path.join(etc, 'hosts'), '');
    await sh('ip', ['netns', 'add', node.ns]);
    await sh('ip', ['-n', node.ns, 'link', 'set', 'lo', 'up']);
    await sh('ip', ['-n', this.switchNs, 'link', 'add', `p${index}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', node.ns]);
    await sh('ip', ['-n', this.switchNs, 'link', 'set', `p${index}`, 'master', 'br0', 'up']);
    await sh('ip', ['-n', node.ns, 'addr', 'add', `${node.ip}/24`, 'dev', 'eth0']);
    await sh('ip', ['-n', node.ns, 'link', 'set', 'eth0', 'up']);
    this.writeHosts();
    return node;
  }

  /** Maps `name` to an address in every node's /etc/hosts. */
  setName(name: string, ip: string): void {
    this.names.set(name, ip);
    this.writeHosts();
  }

  /**
   * Rewrites each node's hosts file in place: the namespaces' processes see
   * the file through a bind mount of this very inode, so it must not be replaced.
   */
  private writeHosts(): void {
    const text = ['127.0.0.1 localhost', ...[...this.names].map(([n, ip]) => `${ip} ${n}`), ''].join('\n');
    for (const n of this.nodes) fs.writeFileSync(path.join('/etc/netns', n.ns, 'hosts'), text);
  }

  /** Moves a node to another underlay address (as a rescheduled pod gets a new IP). */
  async moveNode(node: NodeNet, host: number): Promise<void> {
    const next = this.addr(host);
    // The old one goes first: deleting a primary address also deletes the secondaries in its subnet.
    await sh('ip', ['-n', node.ns, 'addr', 'del', `${node.ip}/24`, 'dev', 'eth0']);
    await sh('ip', ['-n', node.ns, 'addr', 'add', `${next}/24`, 'dev', 'eth0']);
    node.ip = next;
  }

  /** Runs a command inside a node's namespace. */
  exec(node: NodeNet, file: string, args: string[], timeoutMs?: number): Promise<string> {
    return sh('ip', ['netns', 'exec', node.ns, file, ...args], timeoutMs);
  }

  /** Kills everything still running in the namespaces and deletes them. Synchronous, so it also works from an exit hook. */
  destroy(): void {
    for (const n of this.nodes) destroyNetns(n.ns);
    destroyNetns(this.switchNs); // takes the host veth with it
    try {
      execFileSync('ip', ['link', 'del', this.hostLink], { stdio: 'pipe' });
    } catch {
      // gone with the switch namespace
    }
  }
}
