// A fault-injecting TCP proxy for one directed link (node A -> node B's Raft
// port). Node A is told B lives at the proxy's address; the test then decides
// what happens to A's traffic to B:
//   pass       forward bytes both ways
//   drop       reset every open connection and every new one (a partition
//              the sender notices at once, like an ICMP unreachable)
//   blackhole  accept connections but forward nothing and never answer (a
//              partition the sender only notices by its own timeouts)
// Everything is bounded: sockets are tracked and destroyed on mode changes
// away from `pass` and on close().
import net from 'node:net';

export type LinkMode = 'pass' | 'drop' | 'blackhole';

export class FaultProxy {
  private mode: LinkMode = 'pass';
  private readonly sockets = new Set<net.Socket>();
  private server: net.Server | null = null;
  /** Connections accepted so far (for assertions that traffic really goes through). */
  accepted = 0;

  private constructor(
    readonly listenHost: string,
    public port: number,
    readonly targetHost: string,
    readonly targetPort: number,
  ) {}

  /** Listens on `listenHost` (an ephemeral port unless given) and forwards to target. */
  static async start(listenHost: string, targetHost: string, targetPort: number, port = 0): Promise<FaultProxy> {
    const p = new FaultProxy(listenHost, port, targetHost, targetPort);
    await p.listen();
    return p;
  }

  /** `host:port` to give the sending node in place of the target's address. */
  get address(): string {
    return `${this.listenHost}:${this.port}`;
  }

  get currentMode(): LinkMode {
    return this.mode;
  }

  setMode(mode: LinkMode): void {
    if (mode === this.mode) return;
    this.mode = mode;
    // Whatever was in flight dies with the link; a new mode applies to fresh connections.
    if (mode !== 'pass') this.destroyAll();
  }

  private listen(): Promise<void> {
    const server = net.createServer({ pauseOnConnect: true }, (client) => this.onConnection(client));
    server.maxConnections = 256;
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, this.listenHost, () => {
        server.off('error', reject);
        this.port = (server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  private track(s: net.Socket): void {
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
    s.on('error', () => s.destroy());
  }

  private onConnection(client: net.Socket): void {
    this.accepted++;
    this.track(client);
    if (this.mode === 'drop') {
      client.resetAndDestroy();
      return;
    }
    if (this.mode === 'blackhole') {
      client.setTimeout(60_000, () => client.destroy()); // bounded even if nobody closes it
      return; // paused: bytes are never read, nothing is ever answered
    }
    const upstream = net.connect({ host: this.targetHost, port: this.targetPort });
    this.track(upstream);
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
    };
    client.once('close', closeBoth);
    upstream.once('close', closeBoth);
    upstream.once('connect', () => {
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
  }

  private destroyAll(): void {
    for (const s of this.sockets) s.resetAndDestroy();
    this.sockets.clear();
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.destroyAll();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
