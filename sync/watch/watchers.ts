// One blocking query per CofferSecret: it waits on Coffer's /v1/watch for the
// names the CofferSecret follows and queues the CofferSecret when one of their
// versions differs from the last ones reported. The query holds a connection
// and a promise, nothing else: no timer per CofferSecret while it waits.
//
// The reconcile decides versions; a watcher only says "look again". It starts
// from the versions the reconcile saw (so a change between that read and the
// first wait is not lost: the first answer differs and queues it), treats an
// index that went backwards as a reset (another node, a restored cluster), and
// backs off on errors (queuing the CofferSecret once per error streak, so its
// condition says VaultUnavailable/Forbidden, and once on recovery).
import type { VaultApi } from '../vault/client.js';

export interface WatchSpec {
  api: VaultApi;
  /** Identifies the API (its address) for change detection. */
  address: string;
  token: string;
  names: readonly string[];
  /** Versions the reconcile synced for these names (absent = missing). */
  versions: Record<string, number>;
  index: number;
}

export interface WatcherOptions {
  /** How long one blocking query waits (Coffer caps it at 300 s). */
  waitMs: number;
  /** Backoff after errors: first and longest delay. */
  minBackoffMs: number;
  maxBackoffMs: number;
  onChange(key: string): void;
  sleep?(ms: number, signal: AbortSignal): Promise<void>;
}

interface Running {
  spec: WatchSpec;
  abort: AbortController;
  waiting: boolean;
}

function sameVersions(a: Record<string, number>, b: Record<string, number>, names: readonly string[]): boolean {
  return names.every((n) => a[n] === b[n]);
}

function sleepAbortable(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}

export class Watchers {
  private readonly running = new Map<string, Running>();

  constructor(private readonly opts: WatcherOptions) {}

  /** Starts or refreshes the watch of `key`; a watch already on the same address, token and names keeps running. */
  ensure(key: string, spec: WatchSpec): void {
    const current = this.running.get(key);
    if (current && current.spec.address === spec.address && current.spec.token === spec.token &&
      current.spec.names.join('\n') === spec.names.join('\n')) {
      // Same query: only move the baseline forward (the reconcile has synced these versions).
      current.spec = { ...current.spec, versions: spec.versions, api: spec.api };
      return;
    }
    this.stop(key);
    if (spec.names.length === 0) return;
    const run: Running = { spec, abort: new AbortController(), waiting: false };
    this.running.set(key, run);
    void this.loop(key, run);
  }

  stop(key: string): void {
    const run = this.running.get(key);
    if (!run) return;
    this.running.delete(key);
    run.abort.abort();
  }

  stopAll(): void {
    for (const key of [...this.running.keys()]) this.stop(key);
  }

  /** Names watched over all CofferSecrets. */
  watchedNames(): number {
    let n = 0;
    for (const r of this.running.values()) n += r.spec.names.length;
    return n;
  }

  /** Blocking queries waiting now. */
  waitingQueries(): number {
    let n = 0;
    for (const r of this.running.values()) if (r.waiting) n++;
    return n;
  }

  private async loop(key: string, run: Running): Promise<void> {
    const sleep = this.opts.sleep ?? sleepAbortable;
    let index = run.spec.index;
    let failures = 0;
    while (!run.abort.signal.aborted) {
      const { spec } = run;
      try {
        run.waiting = true;
        const answer = await spec.api.watch({ names: spec.names, index, waitMs: this.opts.waitMs, token: spec.token, signal: run.abort.signal });
        run.waiting = false;
        if (run.abort.signal.aborted) return;
        if (failures > 0) this.opts.onChange(key); // recovered: let the reconcile clear its condition
        failures = 0;
        // A smaller index is a reset: start over from it (DESIGN: compare versions, not indexes).
        index = answer.index > 0 ? answer.index : index;
        if (!sameVersions(answer.versions, run.spec.versions, spec.names)) {
          run.spec = { ...run.spec, versions: { ...answer.versions } };
          this.opts.onChange(key);
        }
      } catch {
        run.waiting = false;
        if (run.abort.signal.aborted) return;
        if (failures === 0) this.opts.onChange(key);
        failures++;
        const delay = Math.min(this.opts.maxBackoffMs, this.opts.minBackoffMs * 2 ** Math.min(failures - 1, 16));
        await sleep(delay * (0.5 + Math.random() / 2), run.abort.signal);
        index = 0;
      }
    }
  }
}
