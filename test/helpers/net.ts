// A free TCP port on `host`, found by binding port 0 and closing again.
// (bench/common.ts has its own copy: bench is compiled without test/.)
import net from 'node:net';

export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}
