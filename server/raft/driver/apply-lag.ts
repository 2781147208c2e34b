// When apply lag makes a node unready. Every follower is briefly behind the
// commit index it has just learned (an append, then its apply a moment
// later); reporting that moment as 'degraded' made readiness flap under
// load. A lag counts once one committed entry stays unapplied for longer
// than the grace, and at once until the node has caught up after it
// started, so a restarting node replays its log before it says ready.

export const APPLY_LAG_GRACE_MS = 1_000;

export class ApplyLag {
  private caughtUpOnce = false;
  /** The commit index seen when the current lag was first noticed, and when. */
  private watched: { index: number; since: number } | null = null;

  constructor(
    private readonly now: () => number = Date.now,
    private readonly graceMs = APPLY_LAG_GRACE_MS,
  ) {}

  /** True when the lag between `applied` and `commit` is worth reporting. */
  problem(applied: number, commit: number): boolean {
    if (applied >= commit) {
      this.caughtUpOnce = true;
      this.watched = null;
      return false;
    }
    if (!this.caughtUpOnce) return true;
    const t = this.now();
    // The entry watched so far got applied: watch the newest commit from here on.
    if (!this.watched || applied >= this.watched.index) this.watched = { index: commit, since: t };
    return t - this.watched.since > this.graceMs;
  }
}
