// The baselines for bench/run.ts, in one child process (same Fastify version,
// a response schema like Coffer's routes, no hooks, no logging):
//  - GET /bare: returns a constant body shaped and sized like a secret read
//    response.
//  - GET /durable: the same, but only after a 512-byte record is durable on
//    disk (written, then fdatasync in the thread pool; records that arrive
//    while one fdatasync runs share the next one: group commit). This is the
//    floor for any server that, like Coffer, makes a record durable before it
//    answers: the bare route plus one fsync round trip. Records overwrite a
//    fixed 512 KiB ring in BENCH_DURABLE_DIR (the OS temp dir by default).
// Prints {"url": "..."} on stdout once listening; exits on SIGTERM/SIGINT.
import Fastify from 'fastify';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const BODY = {
  name: 'bench/r0',
  version: 1,
  value: 'x'.repeat(256),
  created_at: '2025-01-01T00:00:00.000Z',
};

const schema = {
  response: {
    200: {
      type: 'object',
      properties: { name: { type: 'string' }, version: { type: 'integer' }, value: { type: 'string' }, created_at: { type: 'string' } },
    },
  },
};

const RECORD = Buffer.alloc(512, 0x61);
const RING_RECORDS = 1024;
const dir = fs.mkdtempSync(path.join(process.env.BENCH_DURABLE_DIR ?? os.tmpdir(), 'bare-durable-'));
const ringFile = path.join(dir, 'ring');
const fd = fs.openSync(ringFile, 'w+');
let slot = 0;
let waiting: (() => void)[] = [];
let syncing = false;

/** Calls `done` once a record written for it is on disk. */
function durable(done: () => void): void {
  fs.writeSync(fd, RECORD, 0, RECORD.length, (slot++ % RING_RECORDS) * RECORD.length);
  waiting.push(done);
  if (!syncing) sync();
}

function sync(): void {
  syncing = true;
  const batch = waiting;
  waiting = [];
  fs.fdatasync(fd, (err) => {
    if (err) throw err;
    syncing = false;
    for (const d of batch) d();
    if (waiting.length > 0) sync();
  });
}

const app = Fastify({ logger: false });
app.get('/bare', { schema }, async () => BODY);
app.get('/durable', { schema }, (_req, reply) => {
  durable(() => void reply.send(BODY));
  return reply;
});

await app.listen({ host: '127.0.0.1', port: 0 });
const addr = app.server.address();
const port = typeof addr === 'object' && addr ? addr.port : 0;
process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${port}` }) + '\n');

const cleanup = () => {
  try {
    fs.closeSync(fd);
  } catch {
    // already closed
  }
  fs.rmSync(dir, { recursive: true, force: true });
};
process.once('exit', cleanup);
const stop = () => {
  void app.close().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
