// The wg-agent's control loop. Every poll interval (sooner while not ready) it
// re-reads the mounted key and peers files, and brings the interface to the
// desired state: address/prefix, MTU 1420 and UP through `ip`; private key,
// listen port and peers through one `wg set`, computed as a diff against what
// `wg show dump` reports. Endpoints are re-resolved every resolve interval.
// A bad file keeps the last good configuration applied and makes /ready 503
// with the reason. All I/O (commands, DNS, files, wireguard-go) is injected.
import path from 'node:path';
import type { Logger } from 'pino';
import { KeyFileError, PrivateKey } from '../common/wireguard-key.js';
import { PeersFileError, parsePeersFile, selfEntry, type PeersFile } from './peers.js';
import { describePlan, desiredState, isEmptyPlan, planLink, planWg, wgSetArgs, type Desired } from './plan.js';
import type { EndpointResolver } from './resolver.js';
import type { CommandRunner } from './runner.js';
import { parseDump, parseIpAddrJson, type WgState } from './wg-state.js';

export interface AgentSettings {
  name: string;
  iface: string;
  keysDir: string;
  peersFile: string;
  wgBinary: string;
  ipBinary: string;
  pollIntervalMs: number;
  resolveIntervalMs: number;
}

/** What the agent needs to know about wireguard-go (the supervisor, or a fake in tests). */
export interface WireguardGoHandle {
  readonly running: boolean;
  readonly pid: number | null;
  readonly restarts: number;
  readonly lastExit: string | null;
}

export interface AgentDeps {
  settings: AgentSettings;
  logger: Logger;
  runner: CommandRunner;
  resolver: EndpointResolver;
  wireguardGo: WireguardGoHandle;
  /** Reads a whole file; throws (ENOENT…) when it cannot. */
  readFile: (file: string) => Buffer;
  now?: () => number;
}

export interface PeerStatus {
  name: string;
  publicKey: string;
  address: string;
  /** As configured in peers.json. */
  endpoint: string;
  /** As resolved (`ip:port`), or null. */
  resolvedEndpoint: string | null;
  resolveError: string | null;
  /** What WireGuard currently uses (may differ after roaming). */
  currentEndpoint: string | null;
  /** Seconds since the latest handshake, or null when there was none. */
  latestHandshakeAgeSecs: number | null;
  rxBytes: number;
  txBytes: number;
}

export interface AgentStatus {
  name: string;
  interface: string;
  address: string | null;
  publicKey: string | null;
  listenPort: number | null;
  ready: boolean;
  reason: string | null;
  wireguardGo: { running: boolean; pid: number | null; restarts: number; lastExit: string | null };
  peersFile: { valid: boolean; error: string | null };
  keyFile: { valid: boolean; error: string | null };
  lastApplied: string | null;
  peers: PeerStatus[];
}

export class WgAgent {
  private readonly s: AgentSettings;
  private readonly log: Logger;
  private readonly now: () => number;
  private peersRaw: Buffer | null = null;
  private config: PeersFile | null = null;
  private configError: string | null = 'peers file not read yet';
  /** Why the bytes in `peersRaw` were refused, or null when they were good. */
  private peersParseError: string | null = null;
  private key: PrivateKey | null = null;
  private keyError: string | null = 'key file not read yet';
  /** Endpoints this agent set per peer public key, for the wireguard-go process `appliedPid`. */
  private appliedEndpoints = new Map<string, string>();
  private appliedPid: number | null = null;
  private lastWg: WgState | null = null;
  private lastAppliedAt: number | null = null;
  private readyState = false;
  private reasonText: string | null = 'starting';
  private running = false;
  private wake: (() => void) | null = null;
  private kicked = false;
  private loopDone: Promise<void> = Promise.resolve();
  private resolveTimer: NodeJS.Timeout | null = null;
  private resolving: Promise<void> | null = null;
  private resolveChain: Promise<void> = Promise.resolve();

  constructor(private readonly deps: AgentDeps) {
    this.s = deps.settings;
    this.log = deps.logger;
    this.now = deps.now ?? Date.now;
  }

  get ready(): boolean {
    return this.readyState;
  }

  get reason(): string | null {
    return this.reasonText;
  }

  /** Starts the loop and the resolve timer. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
    const tick = () => {
      this.resolveTimer = setTimeout(() => {
        void this.resolveAll().finally(() => {
          if (this.running) tick();
        });
      }, this.s.resolveIntervalMs);
    };
    tick();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.resolveTimer) clearTimeout(this.resolveTimer);
    this.kick();
    await this.loopDone;
    await this.resolving;
    this.key?.zero();
    this.key = null;
  }

  /** Runs a reconcile pass now (wireguard-go started or exited, an endpoint moved). */
  kick(): void {
    this.kicked = true;
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      this.kicked = false;
      await this.reconcile();
      if (!this.running) break;
      if (this.kicked) continue; // something changed during the pass
      // Not ready: try again soon (wireguard-go's socket appears a moment after it starts).
      const delay = this.readyState ? this.s.pollIntervalMs : Math.min(this.s.pollIntervalMs, 250);
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.wake = null;
          resolve();
        }, delay);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** One pass: read files, apply what differs, and work out readiness. Never throws. */
  async reconcile(): Promise<void> {
    const problems: string[] = [];
    try {
      this.readFiles();
      await this.apply(problems);
    } catch (err) {
      problems.push((err as Error).message);
    }
    const ready = problems.length === 0;
    const reason = ready ? null : (problems[0] as string);
    if (ready !== this.readyState || reason !== this.reasonText) {
      if (ready) this.log.info({ address: this.desiredAddress() }, 'overlay ready');
      else this.log.warn({ reason }, 'overlay not ready');
    }
    this.readyState = ready;
    this.reasonText = reason;
  }

  private readFiles(): void {
    this.readPeersFile();
    this.readKeyFile();
  }

  /** peers.json: parsed only when its bytes change; a bad version keeps the last good one applied. */
  private readPeersFile(): void {
    const kept = this.config ? ' (the last good version stays applied)' : '';
    let raw: Buffer;
    try {
      raw = this.deps.readFile(this.s.peersFile);
    } catch (err) {
      this.setConfigError(`cannot read ${this.s.peersFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}${kept}`);
      return;
    }
    if (this.peersRaw && raw.equals(this.peersRaw)) {
      this.setConfigError(this.peersParseError); // the verdict on these same bytes (after a read error, say)
      return;
    }
    this.peersRaw = raw;
    try {
      const file = parsePeersFile(raw.toString('utf8'));
      selfEntry(file, this.s.name);
      const first = this.config === null;
      this.config = file;
      this.peersParseError = null;
      this.deps.resolver.retain(file.peers.map((p) => p.endpoint));
      this.log.info({ peers: file.peers.map((p) => p.name), cidr: file.cidr, listen_port: file.listenPort }, first ? 'peers file loaded' : 'peers file changed');
    } catch (err) {
      if (!(err instanceof PeersFileError)) throw err;
      this.peersParseError = `invalid ${path.basename(this.s.peersFile)}: ${err.message}${kept}`;
    }
    this.setConfigError(this.peersParseError);
  }

  private readKeyFile(): void {
    const keyFile = path.join(this.s.keysDir, `${this.s.name}.key`);
    let bytes: Buffer | null = null;
    try {
      bytes = this.deps.readFile(keyFile);
      const key = PrivateKey.fromFile(bytes);
      if (this.key && this.key.sameAs(key)) key.zero();
      else {
        if (this.key) this.log.info({ public_key: key.publicKey }, 'private key changed');
        this.key?.zero();
        this.key = key;
      }
      this.keyError = null;
    } catch (err) {
      const msg = err instanceof KeyFileError ? `invalid ${keyFile}: ${err.message}` : `cannot read ${keyFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
      if (msg !== this.keyError) this.log.warn({ reason: msg }, this.key ? 'key file unusable; the last good key stays applied' : 'key file unusable');
      this.keyError = msg;
    } finally {
      bytes?.fill(0);
    }
  }

  private setConfigError(msg: string | null): void {
    if (msg !== null && msg !== this.configError) this.log.warn({ reason: msg }, 'peers file unusable');
    this.configError = msg;
  }

  private desiredAddress(): string | null {
    if (!this.config) return null;
    const self = this.config.peers.find((p) => p.name === this.s.name);
    return self ? `${self.address}/${this.config.prefix}` : null;
  }

  private async apply(problems: string[]): Promise<void> {
    const { runner } = this.deps;
    const wgGo = this.deps.wireguardGo;
    if (!wgGo.running) {
      this.lastWg = null;
      problems.push(`wireguard-go is not running${wgGo.lastExit ? ` (${wgGo.lastExit})` : ''}`);
      return;
    }
    if (!this.config || !this.key) {
      problems.push((!this.config ? this.configError : this.keyError) ?? 'not configured');
      return;
    }
    if (this.appliedPid !== wgGo.pid) {
      // A new wireguard-go starts empty: everything is applied again.
      this.appliedEndpoints.clear();
      this.appliedPid = wgGo.pid;
    }
    const config = this.config;
    const key = this.key;
    const unresolved = this.deps.resolver.unresolved(config.peers.filter((p) => p.name !== this.s.name).map((p) => p.endpoint));
    if (unresolved.length > 0) await this.resolveSome(unresolved);
    const desired = desiredState(config, this.s.name, key.publicKey, (e) => this.deps.resolver.get(e));

    // Link: address, MTU, up.
    const shown = await runner.run(this.s.ipBinary, ['-j', 'addr', 'show', 'dev', this.s.iface]);
    const link = parseIpAddrJson(shown.stdout.toString('utf8'));
    if (!link) throw new Error(`interface ${this.s.iface} does not exist`);
    for (const step of planLink(this.s.iface, desired.address, link)) {
      await runner.run(this.s.ipBinary, step);
      this.log.info({ command: `ip ${step.join(' ')}` }, 'link updated');
    }

    // WireGuard: key, port, peers.
    const before = parseDump((await runner.run(this.s.wgBinary, ['show', this.s.iface, 'dump'])).stdout);
    const plan = planWg(desired, before, this.appliedEndpoints);
    if (!isEmptyPlan(plan)) {
      const stdin = plan.setPrivateKey ? key.stdinBytes() : undefined;
      try {
        await runner.run(this.s.wgBinary, wgSetArgs(this.s.iface, plan), stdin ? { secretStdin: stdin } : {});
      } finally {
        stdin?.fill(0);
      }
      for (const u of plan.upsert) if (u.endpoint !== undefined) this.appliedEndpoints.set(u.publicKey, u.endpoint);
      for (const pk of plan.remove) this.appliedEndpoints.delete(pk);
      const names = new Map(config.peers.map((p) => [p.publicKey, p.name]));
      this.log.info({ changes: describePlan(plan, names) }, 'wireguard configuration applied');
      this.lastWg = parseDump((await runner.run(this.s.wgBinary, ['show', this.s.iface, 'dump'])).stdout);
    } else this.lastWg = before;
    this.lastAppliedAt = this.now();

    // Readiness: every condition, in the order an operator would check them.
    if (this.configError) problems.push(this.configError);
    if (this.keyError) problems.push(this.keyError);
    const self = config.peers.find((p) => p.name === this.s.name);
    if (self && self.publicKey !== key.publicKey) {
      problems.push(`the private key in ${this.s.name}.key does not match the publicKey listed for ${this.s.name} in peers.json (its public key is ${key.publicKey}); the other peers cannot accept this pod`);
    }
    this.checkApplied(desired, problems);
  }

  /** After applying: the interface holds the desired address and every peer. */
  private checkApplied(desired: Desired, problems: string[]): void {
    const wg = this.lastWg;
    if (!wg || wg.publicKey !== desired.publicKey) problems.push('private key not applied yet');
    const missing = desired.peers.filter((p) => !wg?.peers.some((a) => a.publicKey === p.publicKey));
    if (missing.length) problems.push(`peers not applied yet: ${missing.map((p) => p.name).join(', ')}`);
  }

  /** Resolves endpoints, one batch at a time (the timer and a pass may both ask). */
  private resolveSome(endpoints: string[]): Promise<void> {
    const run = this.resolveChain.then(async () => {
      const changes = await this.deps.resolver.resolve(endpoints);
      for (const c of changes) this.log.info({ endpoint: c.endpoint, from: c.from, to: c.to }, c.from ? 'endpoint moved' : 'endpoint resolved');
    });
    this.resolveChain = run.catch(() => {});
    return run;
  }

  /** Re-resolves every configured endpoint; a change triggers a reconcile pass. */
  async resolveAll(): Promise<void> {
    const config = this.config;
    if (!config) return;
    const run = (async () => {
      const before = config.peers.map((p) => this.deps.resolver.get(p.endpoint)).join(',');
      await this.resolveSome(config.peers.filter((p) => p.name !== this.s.name).map((p) => p.endpoint));
      const after = config.peers.map((p) => this.deps.resolver.get(p.endpoint)).join(',');
      if (before !== after) this.kick();
    })();
    this.resolving = run;
    await run;
  }

  status(): AgentStatus {
    const config = this.config;
    const wg = this.lastWg;
    const nowSecs = Math.floor(this.now() / 1000);
    const peers: PeerStatus[] = (config?.peers ?? [])
      .filter((p) => p.name !== this.s.name)
      .map((p) => {
        const res = this.deps.resolver.info(p.endpoint);
        const live = wg?.peers.find((a) => a.publicKey === p.publicKey);
        return {
          name: p.name,
          publicKey: p.publicKey,
          address: p.address,
          endpoint: p.endpoint,
          resolvedEndpoint: res?.address ?? null,
          resolveError: res?.error ?? null,
          currentEndpoint: live?.endpoint ?? null,
          latestHandshakeAgeSecs: live && live.latestHandshake > 0 ? Math.max(0, nowSecs - live.latestHandshake) : null,
          rxBytes: live?.rxBytes ?? 0,
          txBytes: live?.txBytes ?? 0,
        };
      });
    const wgGo = this.deps.wireguardGo;
    return {
      name: this.s.name,
      interface: this.s.iface,
      address: this.desiredAddress(),
      publicKey: this.key?.publicKey ?? null,
      listenPort: config?.listenPort ?? null,
      ready: this.readyState,
      reason: this.reasonText,
      wireguardGo: { running: wgGo.running, pid: wgGo.pid, restarts: wgGo.restarts, lastExit: wgGo.lastExit },
      peersFile: { valid: this.configError === null, error: this.configError },
      keyFile: { valid: this.keyError === null, error: this.keyError },
      lastApplied: this.lastAppliedAt === null ? null : new Date(this.lastAppliedAt).toISOString(),
      peers,
    };
  }
}
