// One member of bench/floor.ts's minimal replicated log: the least any
// replicated, durable write must do, in Node, with nothing else (no
// framework, no Raft state, no state machine, no crypto, no auth).
//
//   node --import orphan-guard.js floor-member.js follower <host> <dir>
//   node --import orphan-guard.js floor-member.js leader <host> <dir> <audit:0|1> <follower host:port>…
//
// follower: listens for the leader on <host>:<ephemeral port> (prints
//   {"addr": "host:port"}). Each frame from the leader is [u32 payload
//   length][u32 last sequence][payload]; the follower appends the payloads
//   that arrived to its log file, fdatasyncs (one write + fdatasync in flight,
//   the next batch gathering meanwhile: group commit, off the event loop), and
//   then writes back [u32 highest durable sequence].
// leader: connects to every follower (persistent TCP, setNoDelay), serves
//   `PUT /k/<i>` with node:http on <host>:<ephemeral port> (prints
//   {"url": "http://host:port"}). A request's body is parsed (it must be
//   JSON {"value": string}) and becomes one log record [u32 seq][u16 key
//   length][key][u32 body length][body]. Once per event-loop turn
//   (setImmediate) the records that arrived in that turn go out as one frame
//   to each follower and, at the same time, join the leader's own log write
//   (same group commit as a follower's). A request is committed when the
//   leader's own fdatasync covers it and at least one follower has acked it
//   (a quorum of 3). With <audit> = 1 a committed request then also needs a
//   per-request audit record (~150 B JSON) made durable in a second file
//   (group commit again, one fdatasync in flight) before it is answered; this
//   is what Coffer adds ("every request's audit record is durable before its
//   response"). The answer is 200 {"seq": n}.
//   GET /stats answers {"seq", "committed", "logSyncs", "auditSyncs", "acks"}.
// Files are appended (nothing preallocated) in <dir>; a file that passes
// 64 MiB is truncated to 0 before its next write, so disk use is bounded.
// Exits on SIGTERM/SIGINT, or when the leader's connection closes (follower).
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';

const SEGMENT_CAP = 64 * 1024 * 1024;

/**
 * An append-only file with group commit: `append` queues buffers covering everything up to `seq`;
 * one writev + fdatasync runs at a time (in the thread pool), whatever queued meanwhile goes in the next.
 */
class GroupLog {
  private fd: number;
  private pos = 0;
  private pending: Buffer[] = [];
  private pendingSeq = 0;
  private busy = false;
  syncs = 0;
  constructor(
    file: string,
    private readonly onDurable: (seq: number) => void,
  ) {
    this.fd = fs.openSync(file, 'w', 0o600);
  }
  append(bufs: Buffer[], seq: number): void {
    for (const b of bufs) this.pending.push(b);
    this.pendingSeq = seq;
    if (!this.busy) this.flush();
  }
  private flush(): void {
    this.busy = true;
    const bufs = this.pending;
    const seq = this.pendingSeq;
    this.pending = [];
    const write = () => {
      fs.writev(this.fd, bufs, this.pos, (err, n) => {
        if (err) throw err;
        this.pos += n;
        fs.fdatasync(this.fd, (err2) => {
          if (err2) throw err2;
          this.syncs++;
          this.busy = false;
          this.onDurable(seq);
          if (this.pending.length > 0) this.flush();
        });
      });
    };
    if (this.pos >= SEGMENT_CAP) {
      fs.ftruncate(this.fd, 0, (err) => {
        if (err) throw err;
        this.pos = 0;
        write();
      });
    } else {
      write();
    }
  }
  close(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      // already closed
    }
  }
}

const [role, host, dir, ...rest] = process.argv.slice(2);
if ((role !== 'leader' && role !== 'follower') || !host || !dir) {
  process.stderr.write('usage: floor-member.js follower <host> <dir> | leader <host> <dir> <audit:0|1> <host:port>…\n');
  process.exit(2);
}
fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
const logs: GroupLog[] = [];
const stop = () => {
  for (const l of logs) l.close();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

/** Splits a byte stream into frames of `[u32 length][u32 seq][payload]` (`headerOnly`: 4-byte frames `[u32 seq]`). */
function framer(onFrame: (seq: number, payload: Buffer | null) => void, headerOnly: boolean): (chunk: Buffer) => void {
  let buf: Buffer = Buffer.alloc(0);
  return (chunk) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    let off = 0;
    for (;;) {
      if (headerOnly) {
        if (buf.length - off < 4) break;
        onFrame(buf.readUInt32LE(off), null);
        off += 4;
      } else {
        if (buf.length - off < 8) break;
        const len = buf.readUInt32LE(off);
        if (buf.length - off < 8 + len) break;
        onFrame(buf.readUInt32LE(off + 4), buf.subarray(off + 8, off + 8 + len));
        off += 8 + len;
      }
    }
    buf = off === buf.length ? Buffer.alloc(0) : buf.subarray(off);
  };
}

if (role === 'follower') {
  let conn: net.Socket | null = null;
  const log = new GroupLog(path.join(dir, 'log'), (seq) => {
    const ack = Buffer.allocUnsafe(4);
    ack.writeUInt32LE(seq, 0);
    conn?.write(ack);
  });
  logs.push(log);
  const server = net.createServer((sock) => {
    if (conn) {
      sock.destroy();
      return;
    }
    conn = sock;
    sock.setNoDelay(true);
    sock.on('data', framer((seq, payload) => log.append([payload!], seq), false));
    sock.once('close', stop);
    sock.on('error', () => stop());
  });
  server.listen(0, host, () => {
    const a = server.address() as net.AddressInfo;
    process.stdout.write(JSON.stringify({ addr: `${host}:${a.port}` }) + '\n');
  });
} else {
  const [auditFlag, ...followerAddrs] = rest;
  const audit = auditFlag === '1';
  if ((auditFlag !== '0' && auditFlag !== '1') || followerAddrs.length === 0) {
    process.stderr.write('leader needs <audit:0|1> and at least one follower host:port\n');
    process.exit(2);
  }
  const quorumAcks = Math.floor((followerAddrs.length + 1) / 2); // follower acks needed beside the leader's own
  let seq = 0;
  let ownDurable = 0;
  const acked = followerAddrs.map(() => 0);
  const ackCounts = followerAddrs.map(() => 0);
  let committed = 0;

  // Requests waiting for commit, in sequence order (a queue with a moving head).
  let waitSeq: number[] = [];
  let waitRes: http.ServerResponse[] = [];
  let head = 0;

  // Audit (floor+audit): committed requests waiting for their audit record to be durable.
  let auditSeq = 0;
  let auditWait: http.ServerResponse[] = [];
  let auditWaitSeq: number[] = [];
  let auditHead = 0;

  const answer = (res: http.ServerResponse, n: number) => {
    const body = `{"seq":${n}}`;
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  };

  const auditLog = audit
    ? new GroupLog(path.join(dir, 'audit'), (upTo) => {
        while (auditHead < auditWait.length && auditWaitSeq[auditHead]! <= upTo) {
          answer(auditWait[auditHead]!, auditWaitSeq[auditHead]!);
          auditHead++;
        }
        if (auditHead > 4096 && auditHead * 2 > auditWait.length) {
          auditWait = auditWait.slice(auditHead);
          auditWaitSeq = auditWaitSeq.slice(auditHead);
          auditHead = 0;
        }
      })
    : null;
  if (auditLog) logs.push(auditLog);

  const advance = () => {
    const sorted = [...acked].sort((a, b) => b - a);
    const c = Math.min(ownDurable, sorted[quorumAcks - 1] ?? 0);
    if (c <= committed) return;
    committed = c;
    const recs: Buffer[] = [];
    while (head < waitSeq.length && waitSeq[head]! <= committed) {
      const n = waitSeq[head]!;
      const res = waitRes[head]!;
      head++;
      if (auditLog) {
        const rec = `${JSON.stringify({ t: new Date().toISOString(), seq: n, method: 'PUT', path: (res.req as http.IncomingMessage).url, status: 200, actor: 'bench' })}\n`;
        recs.push(Buffer.from(rec));
        auditSeq = n;
        auditWait.push(res);
        auditWaitSeq.push(n);
      } else {
        answer(res, n);
      }
    }
    if (auditLog && recs.length > 0) auditLog.append(recs, auditSeq);
    if (head > 4096 && head * 2 > waitSeq.length) {
      waitSeq = waitSeq.slice(head);
      waitRes = waitRes.slice(head);
      head = 0;
    }
  };

  const log = new GroupLog(path.join(dir, 'log'), (upTo) => {
    ownDurable = upTo;
    advance();
  });
  logs.push(log);

  const peers = await Promise.all(
    followerAddrs.map(
      (addr, i) =>
        new Promise<net.Socket>((resolve, reject) => {
          const colon = addr.lastIndexOf(':');
          const sock = net.connect({ host: addr.slice(0, colon), port: Number(addr.slice(colon + 1)) }, () => resolve(sock));
          sock.setNoDelay(true);
          sock.once('error', reject);
          sock.on(
            'data',
            framer((n) => {
              acked[i] = n;
              ackCounts[i]!++;
              advance();
            }, true),
          );
          sock.once('close', () => {
            process.stderr.write(`follower ${addr} closed its connection\n`);
            process.exit(1);
          });
        }),
    ),
  );

  // The current event-loop turn's records; flushed once per turn.
  let batch: Buffer[] = [];
  let batchBytes = 0;
  let scheduled = false;
  const flushTurn = () => {
    scheduled = false;
    const recs = batch;
    const bytes = batchBytes;
    batch = [];
    batchBytes = 0;
    const header = Buffer.allocUnsafe(8);
    header.writeUInt32LE(bytes, 0);
    header.writeUInt32LE(seq, 4);
    const frame = Buffer.concat([header, ...recs], 8 + bytes);
    for (const p of peers) p.write(frame);
    log.append(recs, seq);
  };

  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/stats') {
      const body = JSON.stringify({ seq, committed, logSyncs: log.syncs, auditSyncs: auditLog?.syncs ?? 0, acks: ackCounts });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    const url = req.url ?? '';
    if (req.method !== 'PUT' || !url.startsWith('/k/') || url.length > 64) {
      res.writeHead(404, { 'content-length': 0 });
      res.end();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= 65536) chunks.push(c);
    });
    req.on('end', () => {
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      let ok = size <= 65536;
      if (ok) {
        try {
          ok = typeof (JSON.parse(body.toString()) as { value?: unknown }).value === 'string';
        } catch {
          ok = false;
        }
      }
      if (!ok) {
        res.writeHead(400, { 'content-length': 0 });
        res.end();
        return;
      }
      const key = url.slice(3);
      const n = ++seq;
      const rec = Buffer.allocUnsafe(4 + 2 + key.length + 4 + body.length);
      let o = rec.writeUInt32LE(n, 0);
      o = rec.writeUInt16LE(key.length, o);
      o += rec.write(key, o, 'latin1');
      o = rec.writeUInt32LE(body.length, o);
      body.copy(rec, o);
      batch.push(rec);
      batchBytes += rec.length;
      waitSeq.push(n);
      waitRes.push(res);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flushTurn);
      }
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, host, () => {
    const a = server.address() as net.AddressInfo;
    process.stdout.write(JSON.stringify({ url: `http://${host}:${a.port}` }) + '\n');
  });
}
