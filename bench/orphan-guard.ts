// Preloaded (`node --import`) into the benchmark's child processes: when the
// parent benchmark dies without cleaning up (SIGKILL, crash), the child is
// re-parented and sends itself SIGTERM, so no server outlives a run.
const parent = process.ppid;
const timer = setInterval(() => {
  if (process.ppid !== parent) {
    clearInterval(timer);
    process.kill(process.pid, 'SIGTERM');
    setTimeout(() => process.exit(1), 5000).unref();
  }
}, 500);
timer.unref();

export {};
