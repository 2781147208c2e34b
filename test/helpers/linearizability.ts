// A linearizability checker for a register-per-key history, after Wing & Gong
// with Lowe's memoization ("Testing for linearizability", 2017) as Porcupine
// implements it: the history is split by key (a register per key is
// P-compositional), each key's call/return events form a linked list in time
// order, and a depth-first search linearizes one pending operation at a time,
// backtracking when a return event is reached whose call is not yet
// linearized. A cache of (set of linearized ops, register state) already
// explored keeps the search polynomial on realistic histories.
//
// Operations whose outcome is unknown (a write that timed out or failed with a
// 5xx) have `ret: undefined`: they may take effect at any point after their
// call, or never. They are treated as returning at +infinity, which covers
// "never": linearized after every other operation they change nothing anyone
// observed.

export type OpKind = 'write' | 'read';

export interface Op {
  key: string;
  kind: OpKind;
  /** The value written, or the value a read returned (null: the key did not exist). */
  value: string | null;
  /** Invocation time (any monotonic unit). */
  call: number;
  /** Response time; undefined when the outcome is unknown (indeterminate). */
  ret: number | undefined;
  /** Free-form label carried into explanations (client, node, ...). */
  meta?: string;
}

export interface CheckResult {
  ok: boolean;
  /** The first key whose sub-history is not linearizable. */
  key?: string;
  explanation?: string;
  /** True when the search budget ran out before an answer (treat as a failure). */
  inconclusive?: boolean;
}

export interface CheckOptions {
  /** Initial value of every register (default null: absent). */
  initial?: string | null;
  /** Upper bound on search steps per key (default 5 million). */
  maxSteps?: number;
}

interface Entry {
  id: number; // op index within the key's history
  isCall: boolean;
  time: number;
  match: Entry | null; // call -> its return
  prev: Entry | null;
  next: Entry | null;
}

/** Checks a whole history; keys are checked independently. */
export function checkLinearizable(history: readonly Op[], opts: CheckOptions = {}): CheckResult {
  const byKey = new Map<string, Op[]>();
  for (const op of history) {
    if (op.ret !== undefined && op.ret < op.call) throw new Error(`op returns before its call: ${JSON.stringify(op)}`);
    if (op.kind === 'read' && op.ret === undefined) continue; // an unanswered read constrains nothing
    let list = byKey.get(op.key);
    if (!list) byKey.set(op.key, (list = []));
    list.push(op);
  }
  for (const key of [...byKey.keys()].sort()) {
    const r = checkKey(key, byKey.get(key)!, opts);
    if (!r.ok) return r;
  }
  return { ok: true };
}

function describe(op: Op): string {
  const v = op.value === null ? 'null' : JSON.stringify(op.value);
  const ret = op.ret === undefined ? '?' : op.ret.toFixed(1);
  return `${op.kind}(${v}) [${op.call.toFixed(1)}, ${ret}]${op.meta ? ' ' + op.meta : ''}`;
}

/** Drops indeterminate writes whose value nobody read: linearizing them last is always possible and observes nothing. */
function prune(ops: readonly Op[]): Op[] {
  const read = new Set<string | null>();
  for (const op of ops) if (op.kind === 'read') read.add(op.value);
  return ops.filter((op) => !(op.kind === 'write' && op.ret === undefined && !read.has(op.value)));
}

function checkKey(key: string, all: readonly Op[], opts: CheckOptions): CheckResult {
  const ops = prune(all);
  const n = ops.length;
  if (n === 0) return { ok: true };
  const initial = opts.initial ?? null;
  const maxSteps = opts.maxSteps ?? 5_000_000;

  // Events in time order; at equal times calls come first (the ops overlap: the permissive reading).
  const events: Entry[] = [];
  for (let i = 0; i < n; i++) {
    const op = ops[i]!;
    const ret: Entry = { id: i, isCall: false, time: op.ret ?? Infinity, match: null, prev: null, next: null };
    const call: Entry = { id: i, isCall: true, time: op.call, match: ret, prev: null, next: null };
    events.push(call, ret);
  }
  events.sort((a, b) => (a.time !== b.time ? a.time - b.time : a.isCall === b.isCall ? a.id - b.id : a.isCall ? -1 : 1));
  const head: Entry = { id: -1, isCall: false, time: -Infinity, match: null, prev: null, next: null };
  let last = head;
  for (const e of events) {
    last.next = e;
    e.prev = last;
    last = e;
  }

  const lift = (e: Entry) => {
    e.prev!.next = e.next;
    if (e.next) e.next.prev = e.prev;
    const m = e.match!;
    m.prev!.next = m.next;
    if (m.next) m.next.prev = m.prev;
  };
  const unlift = (e: Entry) => {
    const m = e.match!;
    m.prev!.next = m;
    if (m.next) m.next.prev = m;
    e.prev!.next = e;
    if (e.next) e.next.prev = e;
  };

  const words = Math.ceil(n / 32);
  const linearized = new Uint32Array(words);
  const cache = new Set<string>();
  const cacheKey = (state: string | null) => {
    let s = state === null ? '\u0000' : 's' + state;
    s += '|';
    for (let i = 0; i < words; i++) s += linearized[i]!.toString(36) + ',';
    return s;
  };

  const stack: { entry: Entry; state: string | null }[] = [];
  let state: string | null = initial;
  let entry: Entry | null = head.next;
  let steps = 0;
  // The deepest partial linearization seen, for the explanation.
  let best: number[] = [];

  while (head.next !== null) {
    if (++steps > maxSteps) {
      return { ok: false, key, inconclusive: true, explanation: `search budget of ${maxSteps} steps exhausted on key ${key} (${n} ops)` };
    }
    if (entry === null) throw new Error('unreachable: fell off the event list');
    if (entry.isCall) {
      const op = ops[entry.id]!;
      let okStep: boolean;
      let newState: string | null;
      if (op.kind === 'write') {
        okStep = true;
        newState = op.value;
      } else {
        okStep = op.value === state;
        newState = state;
      }
      if (okStep) {
        const w = entry.id >>> 5;
        const bit = 1 << (entry.id & 31);
        linearized[w]! |= bit;
        const k = cacheKey(newState);
        if (!cache.has(k)) {
          cache.add(k);
          stack.push({ entry, state });
          if (stack.length > best.length) best = stack.map((s) => s.entry.id);
          state = newState;
          lift(entry);
          entry = head.next;
          continue;
        }
        linearized[w]! &= ~bit;
      }
      entry = entry.next;
    } else {
      // A return whose call is still pending: some earlier choice must change.
      if (stack.length === 0) return { ok: false, key, explanation: explain(key, ops, best, initial) };
      const top = stack.pop()!;
      state = top.state;
      linearized[top.entry.id >>> 5]! &= ~(1 << (top.entry.id & 31));
      unlift(top.entry);
      entry = top.entry.next;
    }
  }
  return { ok: true };
}

function explain(key: string, ops: readonly Op[], best: number[], initial: string | null): string {
  const done = new Set(best);
  let state = initial;
  const lines = [`key ${JSON.stringify(key)}: ${ops.length} ops are not linearizable.`, `Longest linearizable prefix (${best.length} ops):`];
  const tail = best.slice(-8);
  if (best.length > tail.length) lines.push(`  ... ${best.length - tail.length} earlier ops`);
  for (const id of best) {
    const op = ops[id]!;
    if (op.kind === 'write') state = op.value;
    if (tail.includes(id)) lines.push(`  ${describe(op)}`);
  }
  lines.push(`Register then holds ${state === null ? 'null' : JSON.stringify(state)}. None of these can come next:`);
  // Pending ops that must be placed before the earliest remaining return, i.e. the ones that block.
  const pending = ops.map((op, id) => ({ op, id })).filter(({ id }) => !done.has(id));
  const firstRet = Math.min(...pending.map(({ op }) => op.ret ?? Infinity));
  const blocking = pending.filter(({ op }) => op.call <= firstRet).slice(0, 12);
  for (const { op } of blocking) lines.push(`  ${describe(op)}`);
  return lines.join('\n');
}
