// A free TCP port on `host` for a server a test starts, and may stop and start again.
// (bench/common.ts has its own copy: bench is compiled without test/.)
//
// The port is drawn from below the kernel's ephemeral range. Every outgoing
// loopback connection on this machine has source 127.0.0.1 and an ephemeral
// port, and binding a listener to a port such a connection holds fails with
// EADDRINUSE; so a node restarted on an ephemeral port (chaos: SIGKILL, then
// start on the same address) can find it taken by any client's connection.
// Below the range neither connections nor bind(0) ever land, and each vitest
// worker draws from its own slice, so parallel test files do not collide either.
import fs from 'node:fs';
import net from 'node:net';

const LOWEST = 10_000;
const SLICES = 8;

function ephemeralLow(): number {
  try {
    const low = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > LOWEST + SLICES * 100) return low;
  } catch {
    // not Linux: fall through to the IANA dynamic range's start
  }
  return 32_768;
}

const sliceSize = Math.floor((ephemeralLow() - LOWEST) / SLICES);
const slice = (Number(process.env.VITEST_POOL_ID ?? '1') - 1 + SLICES) % SLICES;
const sliceStart = LOWEST + slice * sliceSize;
let cursor = Math.floor(Math.random() * sliceSize);

function bindable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

export async function freePort(host: string): Promise<number> {
  for (let tries = 0; tries < sliceSize; tries++) {
    const port = sliceStart + (cursor++ % sliceSize);
    if (await bindable(host, port)) return port;
  }
  throw new Error(`no free port on ${host} in ${sliceStart}-${sliceStart + sliceSize - 1}`);
}
