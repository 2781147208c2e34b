// The members' Raft addresses: state.db holds them (replicated with the
// log), the transport dials them. Cached between the applies and snapshot
// installs that may change them.
import type { StateReader } from '../../store/queries.js';
import type { Transport } from '../transport.js';

export class PeerAddresses {
  private cached: Map<string, string> | null = null;

  constructor(
    private readonly reader: Pick<StateReader, 'peerAddresses'>,
    private readonly transport: Pick<Transport, 'setPeer' | 'removePeer'>,
  ) {}

  all(): Map<string, string> {
    return (this.cached ??= this.reader.peerAddresses());
  }

  /** state.db may hold other addresses now: read them again when next asked. */
  invalidate(): void {
    this.cached = null;
  }

  /** Points the transport at every address state.db holds now. */
  sync(): void {
    this.invalidate();
    for (const [id, address] of this.all()) this.transport.setPeer(id, address);
  }

  /** A member left the configuration: stop sending to it. */
  removed(id: string): void {
    this.transport.removePeer(id);
    this.invalidate();
  }
}
