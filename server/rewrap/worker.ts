// The re-wrap worker: after the KMS key rotates, moves every live version's
// wrapped DEK onto the current key material (KMS ReEncrypt; the DEK never
// leaves KMS) and commits the new wrap through Raft. Ciphertext, nonce and AAD
// are untouched. It runs on the leader only and moves with leadership.
//
// Bookkeeping (kms_state, replicated): `rewrap.watermark` is the newest
// rotation every live version has been moved onto (or `none`); progress is
// per version (`wrapped_rotation_at`), so a pass cut short resumes where it
// stopped, on whichever node leads next. Enabling the worker adopts the
// current rotation as the baseline without a sweep.
import type { Logger } from 'pino';
import { KmsUnavailableError, type KmsProvider } from '../kms/provider.js';
import type { Replicator } from '../raft/replicator.js';
import { kmsState, secretRewrap } from '../store/commands.js';
import type { StateReader } from '../store/queries.js';

export const WATERMARK_KEY = 'rewrap.watermark';
export const LAST_PASS_KEY = 'rewrap.last_pass';
export const NO_ROTATION = 'none';
const REQUIRED_CAPABILITIES = ['secret.rewrap@1', 'kms.state@1'];
const PAGE = 100;

export interface PassReport {
  started: string;
  finished: string | null;
  rotation: string | null;
  rewrapped: number;
  failed: number;
  outcome: 'baseline' | 'complete' | 'incomplete' | 'nothing_to_do' | 'running';
}

export interface RewrapStatus {
  enabled: boolean;
  watermark: string | null;
  pending_versions: number;
  last_pass: PassReport | null;
  /** Voter that does not advertise the worker's commands yet (rollout in progress), if any. */
  blocked_by: string | null;
  running: boolean;
}

export interface RewrapOptions {
  enabled: boolean;
  pollSecs: number;
  maxPerSec: number;
  kms: KmsProvider;
  replicator: Replicator & { capabilityHoldout?(cap: string): string | null };
  reader: StateReader;
  logger: Logger;
  now?: () => Date;
  /** How often the worker checks whether it leads and whether a pass is due (ms). */
  checkMs?: number;
}

export class RewrapWorker {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private forced = false;
  private lastPoll = 0;
  private latestRotation: string | null = null;
  private blockedBy: string | null = null;
  private current: PassReport | null = null;
  private readonly now: () => Date;

  constructor(private readonly o: RewrapOptions) {
    this.now = o.now ?? (() => new Date());
  }

  start(): void {
    if (!this.o.enabled || this.timer) return;
    this.timer = setInterval(() => this.tick(), this.o.checkMs ?? 1000);
    this.tick();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  /** Runs a pass as soon as this node leads (POST /v1/admin/kms/rewrap). */
  force(): void {
    this.forced = true;
    this.tick();
  }

  status(): RewrapStatus {
    const watermark = this.o.reader.kmsState(WATERMARK_KEY) ?? null;
    const stored = this.o.reader.kmsState(LAST_PASS_KEY);
    const target = this.latestRotation && (watermark === null || watermark === NO_ROTATION || this.latestRotation > watermark) ? this.latestRotation : null;
    return {
      enabled: this.o.enabled,
      watermark,
      pending_versions: target ? this.o.reader.rewrapPendingCount(target) : 0,
      last_pass: this.current ?? (stored ? (JSON.parse(stored) as PassReport) : null),
      // The leader knows every voter's capabilities; a follower reports what it saw when it last led.
      blocked_by: this.o.enabled && this.o.replicator.isLeader() ? this.holdout() : this.blockedBy,
      running: this.running !== null,
    };
  }

  private tick(): void {
    if (!this.o.replicator.isLeader()) {
      this.lastPoll = 0; // leading again later polls at once, resuming any unfinished pass
      return;
    }
    if (this.running) return;
    const due = this.forced || Date.now() - this.lastPoll >= this.o.pollSecs * 1000;
    if (!due) return;
    this.forced = false;
    this.running = this.pass()
      .catch((err: Error) => this.o.logger.warn({ err: err.message }, 're-wrap pass stopped'))
      .finally(() => {
        this.running = null;
      });
  }

  private holdout(): string | null {
    const check = this.o.replicator.capabilityHoldout?.bind(this.o.replicator);
    if (!check) return null;
    for (const cap of REQUIRED_CAPABILITIES) {
      const who = check(cap);
      if (who) return who;
    }
    return null;
  }

  private async pass(): Promise<void> {
    this.blockedBy = this.holdout();
    if (this.blockedBy) {
      this.o.logger.info({ node: this.blockedBy }, 're-wrap worker waits: a voter does not advertise its commands yet');
      return;
    }
    this.lastPoll = Date.now();
    const rotations = await this.o.kms.listRotations();
    const latest = rotations.reduce<string | null>((max, r) => (max === null || r.rotatedAt > max ? r.rotatedAt : max), null);
    this.latestRotation = latest;
    const watermark = this.o.reader.kmsState(WATERMARK_KEY);
    const started = this.now().toISOString();

    if (watermark === undefined) {
      const report: PassReport = { started, finished: started, rotation: latest, rewrapped: 0, failed: 0, outcome: 'baseline' };
      await this.commitState({ [WATERMARK_KEY]: latest ?? NO_ROTATION, [LAST_PASS_KEY]: JSON.stringify(report) });
      this.o.logger.info({ watermark: latest ?? NO_ROTATION }, 're-wrap worker adopted the current rotation as its baseline');
      return;
    }
    if (latest === null || (watermark !== NO_ROTATION && latest <= watermark)) {
      const report: PassReport = { started, finished: started, rotation: latest, rewrapped: 0, failed: 0, outcome: 'nothing_to_do' };
      this.current = report;
      return;
    }

    const report: PassReport = { started, finished: null, rotation: latest, rewrapped: 0, failed: 0, outcome: 'running' };
    this.current = report;
    await this.commitState({ [LAST_PASS_KEY]: JSON.stringify(report) });
    const spacingMs = 1000 / this.o.maxPerSec;
    let nextSlot = Date.now();
    let after = { name: '', version: 0 };
    let unavailable = false;
    sweep: for (;;) {
      const page = this.o.reader.rewrapPending(latest, after, PAGE);
      if (page.length === 0) break;
      for (const v of page) {
        after = { name: v.name, version: v.version };
        if (!this.o.replicator.isLeader() || !this.timer) break sweep; // leadership moved: the next leader resumes
        // Pacing: ReEncrypt calls start at least 1/maxPerSec apart.
        const wait = nextSlot - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        nextSlot = Math.max(nextSlot, Date.now()) + spacingMs;
        try {
          const re = await this.o.kms.reEncrypt(v.wrapped_dek, v.kms_key_id, { secret: v.name, version: v.version });
          const res = await this.o.replicator.propose(secretRewrap({
            name: v.name,
            version: v.version,
            expected_wrapped_dek: v.wrapped_dek,
            wrapped_dek: re.wrapped,
            kms_key_id: re.keyId,
            wrapped_rotation_at: latest,
          }));
          if (res.ok) report.rewrapped++;
        } catch (err) {
          report.failed++;
          if (err instanceof KmsUnavailableError) {
            unavailable = true;
            break sweep; // try again at the next poll rather than failing every version
          }
          this.o.logger.warn({ secret: v.name, version: v.version, err: (err as Error).message }, 're-wrap of a version failed');
        }
      }
    }
    report.finished = this.now().toISOString();
    const complete = !unavailable && report.failed === 0 && this.o.replicator.isLeader() && this.o.reader.rewrapPendingCount(latest) === 0;
    report.outcome = complete ? 'complete' : 'incomplete';
    const values: Record<string, string> = { [LAST_PASS_KEY]: JSON.stringify(report) };
    if (complete) values[WATERMARK_KEY] = latest;
    if (this.o.replicator.isLeader()) await this.commitState(values);
    this.o.logger.info({ rotation: latest, rewrapped: report.rewrapped, failed: report.failed, outcome: report.outcome }, 're-wrap pass ended');
  }

  private async commitState(values: Record<string, string>): Promise<void> {
    const res = await this.o.replicator.propose(kmsState({ values }));
    if (!res.ok) throw new Error(`could not record re-wrap state: ${res.message}`);
  }
}
