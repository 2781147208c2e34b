// Keeps one `wireguard-go -f <iface>` running: restarts it with exponential
// backoff when it exits or is killed, and stops it (SIGTERM, then SIGKILL)
// when the agent stops. Its log lines are passed on to the agent's log.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';

export interface SupervisorOptions {
  binary: string;
  iface: string;
  logger: Logger;
  /** First restart delay; doubles per quick failure up to maxBackoffMs. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** A run at least this long resets the backoff. */
  stableMs?: number;
  /** Called when a new process has spawned, and when one has exited. */
  onChange?: () => void;
}

export type SupervisorState = 'starting' | 'running' | 'backoff' | 'stopped';

// The banner wireguard-go prints on kernels with WireGuard support, box-drawn.
const BANNER_LINE = /^[\s│┌┐└┘─]*$|^│/;

export class WireguardGoSupervisor {
  private child: ChildProcess | null = null;
  private timer: NodeJS.Timeout | null = null;
  private quickFailures = 0;
  private startedAt = 0;
  private lastLines: string[] = [];
  private exited: Promise<void> = Promise.resolve();
  state: SupervisorState = 'stopped';
  /** Process id of the running wireguard-go, or null. */
  pid: number | null = null;
  /** Processes started after the first. */
  restarts = 0;
  /** Why the previous process ended, for /ready and /status. */
  lastExit: string | null = null;
  private spawned = 0;

  constructor(private readonly opts: SupervisorOptions) {}

  get running(): boolean {
    return this.state === 'running';
  }

  start(): void {
    if (this.state !== 'stopped' && this.state !== 'backoff') return;
    this.state = 'starting';
    const { binary, iface, logger } = this.opts;
    if (this.spawned > 0) this.restarts++;
    this.spawned++;
    this.lastLines = [];
    const level = logger.isLevelEnabled('debug') ? 'verbose' : 'error';
    const child = spawn(binary, ['-f', iface], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LOG_LEVEL: level, WG_PROCESS_FOREGROUND: '1' },
    });
    this.child = child;
    const onLines = (d: Buffer) => {
      for (const line of d.toString('utf8').split('\n')) {
        if (BANNER_LINE.test(line)) continue;
        this.lastLines = [...this.lastLines.slice(-4), line.trim()];
        logger.info({ component: 'wireguard-go', pid: child.pid }, line.trim());
      }
    };
    child.stdout!.on('data', onLines);
    child.stderr!.on('data', onLines);
    let resolveExit!: () => void;
    this.exited = new Promise<void>((r) => (resolveExit = r));
    child.once('spawn', () => {
      this.state = 'running';
      this.pid = child.pid ?? null;
      this.startedAt = Date.now();
      logger.info({ pid: this.pid, interface: iface, restarts: this.restarts }, 'wireguard-go started');
      this.opts.onChange?.();
    });
    child.once('error', (err) => {
      // Spawn failed (binary missing, not executable): no 'exit' follows.
      if (this.child !== child) return;
      this.onExit(child, `cannot start ${binary}: ${err.message}`);
      resolveExit();
    });
    child.once('exit', (code, signal) => {
      const why = signal ? `killed by ${signal}` : `exited with code ${code}`;
      const last = this.lastLines.filter(Boolean).slice(-2).join(' | ');
      this.onExit(child, last ? `${why}: ${last}` : why);
      resolveExit();
    });
  }

  private onExit(child: ChildProcess, reason: string): void {
    if (this.child !== child) return;
    this.child = null;
    this.pid = null;
    const stopping = this.state === 'stopped';
    this.lastExit = `wireguard-go ${reason}`;
    if (stopping) return;
    const ran = this.startedAt ? Date.now() - this.startedAt : 0;
    this.startedAt = 0;
    this.quickFailures = ran >= (this.opts.stableMs ?? 10_000) ? 0 : this.quickFailures + 1;
    const min = this.opts.minBackoffMs ?? 250;
    const delay = Math.min(this.opts.maxBackoffMs ?? 10_000, min * 2 ** Math.max(0, this.quickFailures - 1));
    this.state = 'backoff';
    this.opts.logger.warn({ reason: this.lastExit, restart_in_ms: delay }, 'wireguard-go is not running; restarting');
    this.timer = setTimeout(() => {
      this.timer = null;
      this.start();
    }, delay);
    this.opts.onChange?.();
  }

  /** Stops wireguard-go (it removes its interface) and does not restart it. */
  async stop(graceMs = 5_000): Promise<void> {
    this.state = 'stopped';
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(killer);
  }
}
