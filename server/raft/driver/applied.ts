// How far the state machine has applied the log, and the waits on it: a
// forwarded write answers once it applied here too (read-your-writes), a
// ReadIndex read once the index it was given has applied.
export class AppliedIndex {
  private waiters: { index: number; resolve: () => void }[] = [];

  constructor(private current: number) {}

  get index(): number {
    return this.current;
  }

  /** Entries up to `index` applied: wakes whoever waited for them. */
  advance(index: number): void {
    this.current = Math.max(this.current, index);
    if (this.waiters.length === 0) return;
    const ready = this.waiters.filter((w) => w.index <= this.current);
    this.waiters = this.waiters.filter((w) => w.index > this.current);
    for (const w of ready) w.resolve();
  }

  /** A snapshot replaced the state machine: its applied index is the truth now, even if lower. */
  reset(index: number): void {
    this.current = index;
  }

  wait(index: number): Promise<void> {
    if (this.current >= index) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ index, resolve }));
  }
}
