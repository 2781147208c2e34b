// Runs one etcd member for bench/cluster.ts and ties its life to the bench:
// `node --import orphan-guard.js etcd-member.js <log-file> <etcd-binary> [etcd flags…]`.
//
// etcd is a Go binary, so it cannot preload bench/orphan-guard.ts itself.
// This small Node parent does instead: when the bench dies without cleaning
// up, the guard sends this process SIGTERM and it stops etcd before exiting.
// etcd's own output goes to <log-file> (no pipe to drain); this process
// prints one JSON line `{"etcd_pid": N}` so the bench can read etcd's CPU
// time from /proc.
import { spawn } from 'node:child_process';
import fs from 'node:fs';

const [logFile, bin, ...args] = process.argv.slice(2);
if (!logFile || !bin) {
  process.stderr.write('usage: etcd-member.js <log-file> <etcd-binary> [etcd flags…]\n');
  process.exit(2);
}

const log = fs.openSync(logFile, 'a', 0o600);
const etcd = spawn(bin, args, { stdio: ['ignore', log, log] });
fs.closeSync(log);

let stopping = false;
etcd.once('error', (err) => {
  process.stderr.write(`cannot start ${bin}: ${err.message}\n`);
  process.exit(127);
});
etcd.once('spawn', () => process.stdout.write(JSON.stringify({ etcd_pid: String(etcd.pid) }) + '\n'));
etcd.once('exit', (code, signal) => process.exit(stopping ? 0 : (code ?? (signal ? 1 : 0))));

function stop(): void {
  if (stopping) return;
  stopping = true;
  etcd.kill('SIGTERM');
  // etcd stops within a second or two; never wait forever.
  setTimeout(() => {
    etcd.kill('SIGKILL');
    setTimeout(() => process.exit(1), 1000).unref();
  }, 5000).unref();
}
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, stop);
