// Where the server's own log lines go: stdout, without ever blocking the event
// loop. pino's default destination (sonic-boom on fd 1) either blocks (sync
// mode sleeps and retries while a pipe is full) or buffers without bound and
// then hangs the exit flushing it (async mode), and its async writes are
// chunks of many lines that a full pipe can cut mid-line.
//
// Here each line is one write(2) to fd 1, which Node opens non-blocking when
// it is a pipe. A pipe write of at most PIPE_BUF (4096) bytes is atomic, so
// these lines never interleave with the audit export's lines (written the same
// way from its own thread, server/audit/export/). When the pipe is full
// (EAGAIN) lines wait in a bounded queue and are retried on a timer; past the
// bound new lines are dropped and counted, and a line saying how many is
// written once the pipe drains. A closed pipe (EPIPE) ends logging.
import fs from 'node:fs';
import type { Registry } from '../../common/prometheus.js';

/** Bytes of log lines kept while stdout is full; beyond, lines are dropped (counted). */
const QUEUE_MAX_BYTES = 4 * 1024 * 1024;
const RETRY_MS = 25;

export class StdoutDestination {
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Lines dropped since the last notice / in total. */
  private droppedSinceNotice = 0;
  dropped = 0;

  constructor(
    private readonly fd = 1,
    private readonly maxBytes = QUEUE_MAX_BYTES,
  ) {
    // For a pipe, opening process.stdout makes Node set fd 1 non-blocking (libuv's uv_pipe_open):
    // without it a write to a full pipe would block right here.
    if (fd === 1) void process.stdout;
    process.once('exit', () => this.flushOnce());
  }

  /** pino's destination interface. */
  write(line: string): void {
    if (this.closed) return;
    let buf = Buffer.from(line, 'utf8');
    if (this.queue.length === 0) {
      const n = this.tryWrite(buf);
      if (n === buf.length) return;
      // A line longer than PIPE_BUF may have gone out in part: its rest must follow, bound or not.
      if (n > 0) {
        this.enqueue(buf.subarray(n));
        return;
      }
    }
    if (this.queuedBytes + buf.length > this.maxBytes) {
      this.dropped += 1;
      this.droppedSinceNotice += 1;
      return;
    }
    this.enqueue(buf);
  }

  /** Lines waiting for the pipe. */
  get queued(): number {
    return this.queue.length;
  }

  /** Writes what it can without waiting (at exit: what is left is lost rather than hanging the exit). */
  flushOnce(): void {
    while (this.queue.length > 0 && !this.closed) {
      const head = this.queue[0]!;
      const n = this.tryWrite(head);
      this.queuedBytes -= n;
      if (n < head.length) {
        this.queue[0] = head.subarray(n);
        return;
      }
      this.queue.shift();
    }
    if (this.queue.length === 0 && this.droppedSinceNotice > 0 && !this.closed) {
      const notice = Buffer.from(
        JSON.stringify({ level: 40, time: new Date().toISOString(), dropped: this.droppedSinceNotice, msg: 'log lines dropped while stdout was not read' }) + '\n',
      );
      const n = this.tryWrite(notice);
      if (n === notice.length) this.droppedSinceNotice = 0;
      else if (n > 0) this.enqueue(notice.subarray(n));
    }
  }

  private enqueue(buf: Buffer): void {
    this.queue.push(buf);
    this.queuedBytes += buf.length;
    this.schedule();
  }

  /** Writes without waiting; returns the bytes written (0 when the pipe has no room now: EAGAIN). */
  private tryWrite(buf: Buffer): number {
    let off = 0;
    try {
      while (off < buf.length) off += fs.writeSync(this.fd, buf, off, buf.length - off);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EPIPE' || code === 'EBADF') {
        // Nobody will ever read it: stop logging to it.
        this.closed = true;
        this.queue = [];
        this.queuedBytes = 0;
        return buf.length;
      }
      if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK') throw err;
    }
    return off;
  }

  private schedule(): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flushOnce();
      if (this.queue.length > 0 || this.droppedSinceNotice > 0) this.schedule();
    }, RETRY_MS);
    this.timer.unref();
  }
}

let shared: StdoutDestination | null = null;

/** The process's one stdout destination (every logger on fd 1 shares its queue, so lines keep their order). */
export function stdoutDestination(): StdoutDestination {
  shared ??= new StdoutDestination();
  return shared;
}

/** coffer_log_lines_dropped_total: server log lines dropped because stdout was not read. */
export function registerLogMetrics(registry: Pick<Registry, 'gauge' | 'counter'>): void {
  let seen = 0;
  // Registered (so rendered) before the counter: its collection brings the counter up to date first.
  registry.gauge({
    name: 'coffer_log_lines_queued',
    help: 'Server log lines waiting for stdout to be read.',
    collect: () => {
      const d = shared?.dropped ?? 0;
      if (d > seen) dropped.inc(d - seen);
      seen = d;
      return shared?.queued ?? 0;
    },
  });
  const dropped = registry.counter({
    name: 'coffer_log_lines_dropped_total',
    help: 'Server log lines dropped because stdout was not read (the queue for it holds 4 MiB).',
  });
}
