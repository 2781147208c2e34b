// The audit export (issue 16: VAULT_AUDIT_STDOUT, VAULT_AUDIT_FILE): one
// thread per enabled sink (export-worker.ts) delivers every record durable in
// audit.db as a `"coffer_audit":1` JSON line, from a cursor persisted after
// the lines reached the sink. This side starts and stops those threads,
// reports how far they got (exportedThrough(), for the audit log's pruning:
// nothing above it may be removed) and the metrics.
//
// The threads never share the event loop: a consumer that stops reading
// stdout stalls only its thread (the lag grows; the audit cap then fails the
// node closed, see audit-log.ts), and /v1/health keeps answering.
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Counter, Registry } from '../../../common/prometheus.js';
import type { AuditExportConfig } from '../../config/audit-export.js';
import { AUDIT_FILE_KEEP } from '../../config/audit-export.js';
import type { Logger } from '../../log/logger.js';
import {
  CTL_STOP, CTL_WAKE, EXPORT_WORKER_ROLE, STAT_CURSOR, STAT_NEWEST, STOP_DRAINED, STOP_NOW,
  readCursor, type ExportSinkKind, type ExportWorkerData, type ExportWorkerMessage,
} from './export-worker.js';
import { workerModuleUrl } from '../../storage/worker-url.js';

export interface AuditExportOptions {
  dataDir: string;
  config: AuditExportConfig;
  logger: Logger;
  /** Registers coffer_audit_export_lag_records{sink} and coffer_audit_exported_total{sink}. */
  registry?: Registry;
  /** Idle poll interval of each sink thread (default 50 ms); poke() ends a wait early. */
  pollMs?: number;
  /** Records per batch, i.e. per cursor write (default 500). */
  batch?: number;
}

/** How long close() lets the threads deliver what audit.db holds before it stops them. */
const DRAIN_MS = 3_000;
/** A thread that died unexpectedly is started again after this pause. */
const RESTART_MS = 1_000;

export function cursorFile(dataDir: string, sink: ExportSinkKind): string {
  return path.join(dataDir, `audit-export.${sink}.cursor`);
}

class SinkThread {
  private readonly control = new SharedArrayBuffer(8);
  private readonly stats = new SharedArrayBuffer(16);
  private readonly ctl = new Int32Array(this.control);
  private readonly st = new Float64Array(this.stats);
  private worker: Worker | null = null;
  private exited: Promise<void> = Promise.resolve();
  private closing = false;
  private restartTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly sink: ExportSinkKind,
    private readonly data: Omit<ExportWorkerData, 'control' | 'stats' | 'cursor' | 'sink'>,
    private readonly logger: Logger,
    private readonly exportedTotal: Counter<'sink'> | null,
  ) {
    // Read here, synchronously: exportedThrough() is right before the thread reads anything.
    this.st[STAT_CURSOR] = readCursor(data.cursorPath);
    this.spawn();
  }

  cursor(): number {
    return this.st[STAT_CURSOR]!;
  }

  lag(): number {
    return Math.max(0, this.st[STAT_NEWEST]! - this.st[STAT_CURSOR]!);
  }

  poke(): void {
    Atomics.add(this.ctl, CTL_WAKE, 1);
    Atomics.notify(this.ctl, CTL_WAKE);
  }

  async close(drainMs: number): Promise<void> {
    this.closing = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const w = this.worker;
    if (w === null) return;
    Atomics.store(this.ctl, CTL_STOP, STOP_DRAINED);
    Atomics.notify(this.ctl, CTL_STOP);
    this.poke();
    if (await within(this.exited, drainMs)) return;
    // Still writing (a full pipe, a failing file): stop it where it is; the cursor says what was delivered.
    Atomics.store(this.ctl, CTL_STOP, STOP_NOW);
    Atomics.notify(this.ctl, CTL_STOP);
    if (await within(this.exited, 1_000)) return;
    this.logger.warn({ sink: this.sink }, 'audit export thread did not stop; terminating it');
    await within(w.terminate().then(() => undefined), 1_000);
  }

  private spawn(): void {
    const data: ExportWorkerData = { ...this.data, sink: this.sink, cursor: this.cursor(), control: this.control, stats: this.stats };
    const w = new Worker(workerModuleUrl(import.meta.url, 'export-worker'), { workerData: data, name: `coffer-audit-export-${this.sink}` });
    // A stalled sink must not keep a stopping process alive.
    w.unref();
    this.worker = w;
    let crash: Error | null = null;
    w.on('message', (m: ExportWorkerMessage) => {
      if (m.type === 'exported') this.exportedTotal?.inc({ sink: this.sink }, m.n);
      else this.logger[m.level]({ sink: this.sink, ...(m.problem !== undefined ? { problem: m.problem } : {}) }, m.msg);
    });
    w.on('error', (err) => {
      crash = err;
    });
    this.exited = new Promise<void>((resolve) => {
      w.once('exit', (code) => {
        this.worker = null;
        resolve();
        if (this.closing) return;
        this.logger.error({ sink: this.sink, code, problem: crash?.message }, 'audit export thread stopped; starting it again');
        this.restartTimer = setTimeout(() => {
          this.restartTimer = null;
          if (!this.closing) this.spawn();
        }, RESTART_MS);
        this.restartTimer.unref();
      });
    });
  }
}

export class AuditExport {
  private readonly sinks: SinkThread[] = [];

  constructor(opts: AuditExportOptions) {
    const dbPath = path.join(opts.dataDir, 'audit.db');
    const exportedTotal = opts.registry
      ? opts.registry.counter({
          name: 'coffer_audit_exported_total',
          help: 'Audit records delivered by the export (VAULT_AUDIT_STDOUT, VAULT_AUDIT_FILE), by sink; a record repeated after a crash counts again.',
          labelNames: ['sink'],
        })
      : null;
    const common = {
      role: EXPORT_WORKER_ROLE,
      dbPath,
      file: opts.config.file === null ? null : path.resolve(opts.config.file),
      fileMaxBytes: opts.config.fileMaxBytes,
      fileKeep: AUDIT_FILE_KEEP,
      requireFrom: fileURLToPath(import.meta.url),
      pollMs: opts.pollMs ?? 50,
      batch: opts.batch ?? 500,
    } as const;
    const kinds: ExportSinkKind[] = [];
    if (opts.config.stdout) kinds.push('stdout');
    if (opts.config.file !== null) kinds.push('file');
    try {
      for (const sink of kinds) {
        exportedTotal?.inc({ sink }, 0);
        this.sinks.push(new SinkThread(sink, { ...common, cursorPath: cursorFile(opts.dataDir, sink) }, opts.logger, exportedTotal));
      }
    } catch (err) {
      void this.close(0);
      throw err;
    }
    opts.registry?.gauge<'sink'>({
      name: 'coffer_audit_export_lag_records',
      help: 'Audit records in audit.db not yet delivered by the export, by sink (grows while a consumer stops reading).',
      labelNames: ['sink'],
      collect: () => this.sinks.map((s) => ({ labels: { sink: s.sink }, value: s.lag() })),
    });
    if (kinds.length > 0) {
      opts.logger.info({ sinks: kinds, ...(common.file ? { file: common.file } : {}), from_id: this.exportedThrough() }, 'audit export on');
    }
  }

  /** Whether any sink is enabled. */
  get enabled(): boolean {
    return this.sinks.length > 0;
  }

  /**
   * The id through which every enabled sink delivered its records (the lowest
   * cursor); null when no export is enabled. Pruning must keep every record
   * with a higher id.
   */
  exportedThrough(): number | null {
    if (this.sinks.length === 0) return null;
    return Math.min(...this.sinks.map((s) => s.cursor()));
  }

  /** Records not yet delivered, per sink. */
  lag(): Record<string, number> {
    return Object.fromEntries(this.sinks.map((s) => [s.sink, s.lag()]));
  }

  /** New records are durable: the threads look now instead of at their next poll. */
  poke(): void {
    for (const s of this.sinks) s.poke();
  }

  /** Lets each thread deliver what audit.db holds (at most drainMs), then stops it. Call after the audit log closed. */
  async close(drainMs = DRAIN_MS): Promise<void> {
    await Promise.all(this.sinks.map((s) => s.close(drainMs)));
  }
}

async function within(p: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
