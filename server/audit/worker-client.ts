// The owner's side of the audit writer thread (audit-worker.ts): one request
// at a time per call, each settled by the reply that carries its id. A worker
// that crashed or was terminated fails what it held; the next call starts a
// new one.
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { AUDIT_WORKER_ROLE, type AuditWorkerData, type AuditWorkerReply, type AuditWorkerRequest, type PruneResult } from './audit-worker.js';
import { workerModuleUrl } from '../storage/worker-url.js';

/** What a request did in the worker: how long it took, the newest record's id, and a prune's outcome. */
export interface WorkerDone {
  seconds: number;
  lastId: number;
  prune?: PruneResult;
  /** A prune run after a committed batch failed (the batch itself is durable). */
  pruneError?: string;
}

interface Call {
  resolve: (done: WorkerDone) => void;
  reject: (err: Error) => void;
}

/** A request without its id (the client numbers them). */
type WorkerRequest = AuditWorkerRequest extends infer R ? (R extends unknown ? Omit<R, 'id'> : never) : never;

export class AuditWorkerClient {
  private worker: Worker | null = null;
  private readonly calls = new Map<number, Call>();
  private nextId = 1;

  constructor(
    private readonly path: string,
    private readonly busyTimeoutMs: number,
    private readonly chainKey: Uint8Array,
    private readonly maxBytes: number,
  ) {
    this.spawn();
  }

  /** Sends a request (starting a worker if needed); resolves with what it did there. */
  call(req: WorkerRequest): Promise<WorkerDone> {
    return new Promise<WorkerDone>((resolve, reject) => {
      let w: Worker;
      try {
        w = this.worker ?? this.spawn();
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      const id = this.nextId++;
      if (this.calls.size === 0) w.ref();
      this.calls.set(id, { resolve, reject });
      w.postMessage({ ...req, id });
    });
  }

  /** Lets the worker close its connection, then ends it. */
  async close(): Promise<void> {
    const w = this.worker;
    if (w === null) return;
    try {
      await this.call({ op: 'close' });
    } catch {
      // The worker is gone already; terminating is all that is left.
    }
    this.worker = null;
    await w.terminate();
  }

  private spawn(): Worker {
    const data: AuditWorkerData = {
      role: AUDIT_WORKER_ROLE,
      path: this.path,
      busyTimeoutMs: this.busyTimeoutMs,
      chainKey: this.chainKey,
      maxBytes: this.maxBytes,
      requireFrom: fileURLToPath(import.meta.url),
    };
    const w = new Worker(workerModuleUrl(import.meta.url, 'audit-worker'), { workerData: data });
    // Idle, the worker must not keep the process alive; call() refs it while a request is out.
    w.unref();
    let crash: Error | null = null;
    w.on('message', (reply: AuditWorkerReply) => {
      const c = this.calls.get(reply.id);
      if (!c) return;
      this.calls.delete(reply.id);
      if (this.calls.size === 0) w.unref();
      if (reply.ok) c.resolve({ seconds: reply.seconds, lastId: reply.lastId, ...(reply.prune ? { prune: reply.prune } : {}), ...(reply.pruneError !== undefined ? { pruneError: reply.pruneError } : {}) });
      else c.reject(Object.assign(new Error(reply.message), { code: reply.code }));
    });
    w.on('error', (err) => {
      crash = err;
    });
    w.on('exit', (code) => {
      if (this.worker === w) this.worker = null;
      const pending = [...this.calls.values()];
      this.calls.clear();
      const err = crash ?? new Error(`audit worker exited with code ${code}`);
      for (const c of pending) c.reject(err);
    });
    this.worker = w;
    return w;
  }
}
