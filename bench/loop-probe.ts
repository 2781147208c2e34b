// Preloaded (`node --import`) into the benchmark's server children: answers
// the parent's IPC message 'elu' with the process's cumulative event-loop
// utilization, so bench/run.ts can tell a saturated main thread (CPU, or a
// synchronous fsync blocking the loop) from one that waits on I/O. The
// channel is unref'd so it never keeps the server alive.
import { performance } from 'node:perf_hooks';

if (process.send) {
  process.on('message', (msg) => {
    if (msg !== 'elu') return;
    const { idle, active } = performance.eventLoopUtilization();
    process.send?.({ elu: { idle, active } });
  });
  process.channel?.unref();
}

export {};
