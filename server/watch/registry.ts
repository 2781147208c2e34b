// Blocking metadata queries (GET /v1/watch): the requests waiting for a
// secret name to change, and the recent changes they are answered from.
//
// The change index is this node's own, taken from applied state: the Raft
// index of the last applied change to any secret, or, after a start or a
// snapshot install, the applied index at that moment (everything up to it
// may have changed). It never goes backwards on a node: the applied index
// never does, state.db keeps it across restarts, and a snapshot is installed
// only ahead of it. Other nodes may report other numbers for the same data;
// a client that sees a smaller index than it sent treats it as a reset (as
// with Consul's X-Consul-Index) and simply continues with the new one.
//
// Waiting costs memory only: a waiter is an object in three maps (exact
// name or prefix, and its deadline's one-second bucket). One shared interval
// sweeps the expired buckets, and runs only while someone waits. A change
// looks up its exact name and its ancestor prefixes (`''`, `a/`, `a/b/`):
// O(depth + woken), whatever the number of waiters.

export interface WatchChange {
  name: string;
  index: number;
}

export type WakeReason = 'changed' | 'timeout' | 'closed';

export interface WaitSpec {
  /** Exact names to wait on (with `prefix`, either may be given). */
  names?: readonly string[];
  /** '' (every name) or a prefix ending in '/'. */
  prefix?: string;
  /** Whether the waiting token may see this name; a change it may not see never wakes it. */
  visible: (name: string) => boolean;
  /** How long to wait at most, in milliseconds (answered by the first sweep after that). */
  waitMs: number;
}

export interface Waiter {
  readonly spec: WaitSpec;
  /** Set once; the waiter is out of every map by then. */
  done: boolean;
  readonly bucket: number;
  readonly onDone: (reason: WakeReason) => void;
}

export interface WatchRegistryOptions {
  /** The applied index at start: the first floor. */
  index: number;
  /** At most this many waiting requests; `wait` returns null beyond it. */
  maxWaiters?: number;
  /** Changes kept for answering "changed after N?"; older ones raise the floor. */
  maxLog?: number;
  now?: () => number;
  sweepMs?: number;
}

/** Every prefix a watch may name that covers `name`: '' and each `seg/…/` above it. */
export function ancestorPrefixes(name: string): string[] {
  const out = [''];
  for (let i = name.indexOf('/'); i !== -1; i = name.indexOf('/', i + 1)) out.push(name.slice(0, i + 1));
  return out;
}

export class WatchRegistry {
  readonly maxWaiters: number;
  private readonly maxLog: number;
  private readonly now: () => number;
  private readonly sweepMs: number;
  private cur: number;
  /** Every change above the floor is in the log; at or below it, anything may have changed. */
  private low: number;
  private logIndex: number[] = [];
  private logName: string[] = [];
  private readonly byName = new Map<string, Set<Waiter>>();
  private readonly byPrefix = new Map<string, Set<Waiter>>();
  private readonly byBucket = new Map<number, Set<Waiter>>();
  private count = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(opts: WatchRegistryOptions) {
    this.cur = opts.index;
    this.low = opts.index;
    this.maxWaiters = opts.maxWaiters ?? 10_000;
    this.maxLog = opts.maxLog ?? 100_000;
    this.now = opts.now ?? Date.now;
    this.sweepMs = opts.sweepMs ?? 1000;
  }

  /** The change index this node answers with now. */
  get index(): number {
    return this.cur;
  }

  /** Changes at or below this index are not known one by one. */
  get floor(): number {
    return this.low;
  }

  get waiting(): number {
    return this.count;
  }

  /** Whether the shared sweep timer is running (it runs only while someone waits). */
  get sweeping(): boolean {
    return this.timer !== null;
  }

  /** Has a name that `matches` changed after `after`? True when `after` is below what the log covers. */
  changedSince(after: number, matches: (name: string) => boolean): boolean {
    if (after < this.low) return true;
    // First log entry above `after` (the log is in index order).
    let lo = 0;
    let hi = this.logIndex.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.logIndex[mid]! <= after) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.logName.length; i++) if (matches(this.logName[i]!)) return true;
    return false;
  }

  /** Committed changes, in index order, after their transaction committed. */
  publish(changes: readonly WatchChange[]): void {
    for (const c of changes) {
      if (c.index <= this.cur) continue; // replayed
      this.cur = c.index;
      this.logIndex.push(c.index);
      this.logName.push(c.name);
      this.wakeFor(c.name);
    }
    if (this.logIndex.length > this.maxLog) {
      const drop = this.logIndex.length - Math.floor(this.maxLog / 2);
      this.low = this.logIndex[drop - 1]!;
      this.logIndex = this.logIndex.slice(drop);
      this.logName = this.logName.slice(drop);
    }
  }

  /** The whole state was replaced (snapshot install or restore) at `index`: everything may have changed. */
  reset(index: number): void {
    this.cur = Math.max(this.cur, index);
    this.low = this.cur;
    this.logIndex = [];
    this.logName = [];
    for (const set of [...this.byBucket.values()]) for (const w of [...set]) this.finish(w, 'changed');
  }

  /** Registers a waiter; null when maxWaiters wait already. `onDone` is called once, synchronously from publish/sweep/cancel. */
  wait(spec: WaitSpec, onDone: (reason: WakeReason) => void): Waiter | null {
    if (this.closed || this.count >= this.maxWaiters) return null;
    const bucket = Math.ceil((this.now() + spec.waitMs) / this.sweepMs);
    const w: Waiter = { spec, done: false, bucket, onDone };
    for (const n of spec.names ?? []) add(this.byName, n, w);
    if (spec.prefix !== undefined) add(this.byPrefix, spec.prefix, w);
    add(this.byBucket, bucket, w);
    this.count++;
    if (this.timer === null) {
      this.timer = setInterval(() => this.sweep(), this.sweepMs);
      this.timer.unref();
    }
    return w;
  }

  /** Removes a waiter (its client went away); `onDone('closed')` runs if it was still waiting. */
  cancel(w: Waiter): void {
    if (!w.done) this.finish(w, 'closed');
  }

  /** Answers every waiter whose deadline has passed. Called by the shared timer; public for tests. */
  sweep(): void {
    const nowBucket = Math.floor(this.now() / this.sweepMs);
    for (const [b, set] of this.byBucket) {
      if (b > nowBucket) continue;
      for (const w of [...set]) this.finish(w, 'timeout');
    }
  }

  /** Wakes every waiter (shutdown) and refuses new ones. */
  close(): void {
    this.closed = true;
    for (const set of [...this.byBucket.values()]) for (const w of [...set]) this.finish(w, 'closed');
    this.stopTimer();
  }

  private wakeFor(name: string): void {
    const woken: Waiter[] = [];
    const exact = this.byName.get(name);
    if (exact) for (const w of exact) woken.push(w);
    if (this.byPrefix.size > 0) {
      for (const p of ancestorPrefixes(name)) {
        const set = this.byPrefix.get(p);
        if (set) for (const w of set) woken.push(w);
      }
    }
    for (const w of woken) if (!w.done && w.spec.visible(name)) this.finish(w, 'changed');
  }

  private finish(w: Waiter, reason: WakeReason): void {
    if (w.done) return;
    w.done = true;
    for (const n of w.spec.names ?? []) remove(this.byName, n, w);
    if (w.spec.prefix !== undefined) remove(this.byPrefix, w.spec.prefix, w);
    remove(this.byBucket, w.bucket, w);
    this.count--;
    if (this.count === 0) this.stopTimer();
    w.onDone(reason);
  }

  private stopTimer(): void {
    if (this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }
}

function add<K>(map: Map<K, Set<Waiter>>, key: K, w: Waiter): void {
  let set = map.get(key);
  if (set === undefined) map.set(key, (set = new Set()));
  set.add(w);
}

function remove<K>(map: Map<K, Set<Waiter>>, key: K, w: Waiter): void {
  const set = map.get(key);
  if (set === undefined) return;
  set.delete(w);
  if (set.size === 0) map.delete(key);
}
