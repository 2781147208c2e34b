// A small deterministic network for focused unit tests (in the spirit of
// etcd-io/raft's test network): every node has MemoryStorage, the driver
// persists each Ready before its messages are delivered, and tests decide
// which messages are dropped.

import {
  decodeConfChange,
  MemoryStorage,
  RaftNode,
  SeededRng,
  type Config,
  type Entry,
  type Message,
  type NodeId,
  type ReadState,
} from '../../../server/raft/core/index.js';

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
export const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

export interface TestNode {
  readonly id: NodeId;
  storage: MemoryStorage;
  node: RaftNode;
  applied: Entry[];
  readStates: ReadState[];
}

export type Filter = (m: Message) => boolean;

export class TestNet {
  readonly nodes = new Map<NodeId, TestNode>();
  /** Messages sent (after persistence), in order, for assertions. */
  readonly sent: Message[] = [];
  private queue: Message[] = [];
  private readonly dropFilters: Filter[] = [];
  private readonly rng: SeededRng;

  constructor(
    voters: readonly NodeId[],
    private readonly cfg: Partial<Omit<Config, 'id' | 'storage' | 'rng'>> = {},
    seed = 1,
  ) {
    this.rng = new SeededRng(seed);
    for (const id of voters) this.add(id, MemoryStorage.bootstrap(voters));
  }

  add(id: NodeId, storage: MemoryStorage = new MemoryStorage()): TestNode {
    const t: TestNode = {
      id,
      storage,
      node: new RaftNode({ id, storage, rng: this.rng.fork(), ...this.cfg }),
      applied: [],
      readStates: [],
    };
    this.nodes.set(id, t);
    return t;
  }

  get(id: NodeId): TestNode {
    const t = this.nodes.get(id);
    if (!t) throw new Error(`no node ${id}`);
    return t;
  }

  raft(id: NodeId): RaftNode {
    return this.get(id).node;
  }

  /** Restart a node from its durable storage (in-memory state lost). */
  restart(id: NodeId, cfg: Partial<Config> = {}): void {
    const t = this.get(id);
    t.node = new RaftNode({ id, storage: t.storage, rng: this.rng.fork(), ...this.cfg, ...cfg });
    t.applied = [];
  }

  /** Drop messages matching f until cleared. */
  drop(f: Filter): void {
    this.dropFilters.push(f);
  }

  isolate(id: NodeId): void {
    this.drop((m) => m.from === id || m.to === id);
  }

  cut(a: NodeId, b: NodeId): void {
    this.drop((m) => (m.from === a && m.to === b) || (m.from === b && m.to === a));
  }

  recover(): void {
    this.dropFilters.length = 0;
  }

  /** Handle every pending Ready of every node (persist, queue messages, apply). */
  flushReadies(): boolean {
    let any = false;
    for (const t of this.nodes.values()) {
      while (t.node.hasReady()) {
        any = true;
        const rd = t.node.ready();
        if (rd.snapshot) t.storage.applySnapshot(rd.snapshot);
        t.storage.append(rd.entries);
        if (rd.hardState) t.storage.setHardState(rd.hardState);
        for (const m of rd.messages) {
          this.sent.push(m);
          if (!this.dropFilters.some((f) => f(m))) this.queue.push(m);
        }
        for (const e of rd.committedEntries) {
          t.applied.push(e);
          if (e.type === 'confChange') {
            const cc = decodeConfChange(e.data);
            t.node.applyConfChange(cc);
          }
        }
        for (const rs of rd.readStates) t.readStates.push(rs);
        t.node.advance(rd);
      }
    }
    return any;
  }

  /** Deliver queued messages (and what they cause) until the network is quiet. */
  stabilize(maxRounds = 1000): void {
    for (let round = 0; round < maxRounds; round++) {
      this.flushReadies();
      if (this.queue.length === 0) return;
      const q = this.queue;
      this.queue = [];
      for (const m of q) {
        if (this.dropFilters.some((f) => f(m))) continue;
        this.nodes.get(m.to)?.node.step(m);
      }
    }
    throw new Error('network did not stabilize');
  }

  /** Deliver only the messages queued now (one hop), without processing what they cause. */
  deliverOnce(filter: Filter = () => true): Message[] {
    this.flushReadies();
    const q = this.queue;
    this.queue = [];
    const delivered: Message[] = [];
    for (const m of q) {
      if (!filter(m)) {
        this.queue.push(m);
        continue;
      }
      delivered.push(m);
      this.nodes.get(m.to)?.node.step(m);
    }
    return delivered;
  }

  /** Queued (persisted, not yet delivered) messages. */
  pending(): readonly Message[] {
    this.flushReadies();
    return this.queue;
  }

  clearQueue(): void {
    this.queue = [];
  }

  tick(id: NodeId, n = 1): void {
    for (let i = 0; i < n; i++) this.raft(id).tick();
  }

  tickAll(n = 1): void {
    for (let i = 0; i < n; i++) {
      for (const t of this.nodes.values()) t.node.tick();
      this.stabilize();
    }
  }

  /** Make `id` campaign and deliver everything. */
  elect(id: NodeId): void {
    this.raft(id).campaign();
    this.stabilize();
  }

  propose(id: NodeId, data: string): number {
    const r = this.raft(id).propose(enc(data));
    if (!r.ok) throw new Error(`propose on ${id} failed: ${r.reason}`);
    this.stabilize();
    return r.index;
  }

  appliedData(id: NodeId): string[] {
    return this.get(id)
      .applied.filter((e) => e.type === 'normal')
      .map((e) => dec(e.data));
  }

  leaderId(): NodeId | undefined {
    for (const t of this.nodes.values()) if (t.node.raft.role === 'leader') return t.id;
    return undefined;
  }
}
