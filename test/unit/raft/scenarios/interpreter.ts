// The scenario commands (etcd-io/raft's rafttest vocabulary, adapted to this
// core) and how each one drives the InteractionEnv. Ids are the node numbers
// given by add-nodes (1, 2, 3, ...). A command prints what happened, or "ok".
//
//   add-nodes <n> [voters=(1,2,3)] [learners=(4)] [index=<i>] [prevote=<bool>]
//             [checkquorum=<bool>] [election=<ticks>] [heartbeat=<ticks>]
//             [promotion-lag=<entries>]
//       n new nodes; with voters, they start from a snapshot at index i
//       (term 1) holding that configuration, else with an empty log.
//       Defaults are the core's: prevote and checkquorum on, election=10,
//       heartbeat=1, index=1, promotion-lag as the core's.
//   campaign <id>                      start an election now
//   propose <id> <data>                propose a normal entry
//   propose-conf-change <id> addLearner=<id> | addVoter=<id> | removeNode=<id>
//   read-index <id> <ctx>              request a linearizable read
//   transfer-leadership from=<id> to=<id>
//   set-election-jitter <id> ticks=<n> randomized timeout = election + n from
//                                      the node's next role or term change (0 by default)
//   tick-election <id>...              tick the nodes together for one election
//                                      interval; tick-heartbeat: one heartbeat interval
//   process-ready <id>...              handle one Ready of each node
//   deliver-msgs <id>... [type=MsgApp] [drop=(<id>,...)]
//                                      deliver (or drop) the queued messages to them
//   stabilize [<id>...]                process Readies and deliver until quiet
//   isolate <id> / heal                cut a node off the network / reconnect all
//   raft-log <id>, raft-state, status <id>
//   log-level none|info                none: print nothing (for setup steps)

import type { ConfChangeType, MessageType, NodeId } from '../../../../server/raft/core/index.js';
import type { CommandArg, ScenarioCase } from './datadriven.js';
import { messageTypeNamed } from './describe.js';
import type { InteractionEnv } from './interaction-env.js';

type Handler = (env: InteractionEnv, args: Args) => void;

/** The arguments of one command line, with accessors that fail on misuse. */
class Args {
  constructor(private readonly args: readonly CommandArg[]) {}

  /** Bare arguments (`campaign 1`, `propose 1 foo`), in order. */
  positional(): string[] {
    return this.args.filter((a) => a.vals.length === 0).map((a) => a.key);
  }

  nth(k: number): string {
    const v = this.positional()[k];
    if (v === undefined) throw new Error(`missing argument ${k + 1}`);
    return v;
  }

  list(key: string): string[] {
    return [...(this.args.find((a) => a.key === key)?.vals ?? [])];
  }

  optional(key: string): string | undefined {
    const vals = this.list(key);
    if (vals.length > 1) throw new Error(`${key} takes one value`);
    return vals[0];
  }

  required(key: string): string {
    const v = this.optional(key);
    if (v === undefined) throw new Error(`missing ${key}=`);
    return v;
  }

  optionalInt(key: string): number | undefined {
    const v = this.optional(key);
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new Error(`${key}=${v} is not a number`);
    return Number(v);
  }

  int(key: string, fallback: number): number {
    return this.optionalInt(key) ?? fallback;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.optional(key);
    if (v === undefined) return fallback;
    if (v !== 'true' && v !== 'false') throw new Error(`${key}=${v} is not true or false`);
    return v === 'true';
  }
}

const CONF_CHANGE_TYPES: readonly ConfChangeType[] = ['addLearner', 'addVoter', 'removeNode'];

function messageType(args: Args): MessageType | undefined {
  const name = args.optional('type');
  if (name === undefined) return undefined;
  const type = messageTypeNamed(name);
  if (type === undefined) throw new Error(`unknown message type ${name}`);
  return type;
}

const HANDLERS: Readonly<Record<string, Handler>> = {
  'add-nodes': (env, a) =>
    env.addNodes(Number(a.nth(0)), {
      voters: a.list('voters'),
      learners: a.list('learners'),
      index: a.int('index', 1),
      preVote: a.bool('prevote', true),
      checkQuorum: a.bool('checkquorum', true),
      electionTick: a.int('election', 10),
      heartbeatTick: a.int('heartbeat', 1),
      promotionLag: a.optionalInt('promotion-lag'),
    }),
  campaign: (env, a) => env.campaign(a.nth(0)),
  propose: (env, a) => env.propose(a.nth(0), a.nth(1)),
  'propose-conf-change': (env, a) => {
    const changes = CONF_CHANGE_TYPES.flatMap((type) => a.list(type).map((nodeId) => ({ type, nodeId })));
    const [cc, ...more] = changes;
    if (cc === undefined || more.length > 0) throw new Error('give exactly one of addLearner=, addVoter=, removeNode=');
    env.proposeConfChange(a.nth(0), cc);
  },
  'read-index': (env, a) => env.readIndex(a.nth(0), a.nth(1)),
  'transfer-leadership': (env, a) => env.transferLeadership(a.required('from'), a.required('to')),
  'set-election-jitter': (env, a) => env.setElectionJitter(a.nth(0), a.int('ticks', 0)),
  'tick-election': (env, a) => env.tick(a.positional(), 'election'),
  'tick-heartbeat': (env, a) => env.tick(a.positional(), 'heartbeat'),
  'process-ready': (env, a) => {
    const ids = a.positional();
    if (ids.length === 1) env.processReady(ids[0] as NodeId);
    else for (const id of ids) env.out.nested(`> ${id} handling Ready`, () => env.processReady(id));
  },
  'deliver-msgs': (env, a) => {
    const type = messageType(a);
    let handled = 0;
    for (const id of a.positional()) handled += env.deliverMsgs(id, false, type);
    for (const id of a.list('drop')) handled += env.deliverMsgs(id, true, type);
    if (handled === 0) env.out.line('no messages');
  },
  stabilize: (env, a) => env.stabilize(a.positional()),
  isolate: (env, a) => env.isolate(a.nth(0)),
  heal: (env) => env.heal(),
  'raft-log': (env, a) => env.raftLog(a.nth(0)),
  'raft-state': (env) => env.raftState(),
  status: (env, a) => env.status(a.nth(0)),
  'log-level': (env, a) => {
    const level = a.nth(0);
    if (level !== 'none' && level !== 'info') throw new Error(`unknown log level ${level}`);
    env.out.quiet = level === 'none';
  },
};

/** Run one case against `env` and return its output. Misuse of a command throws. */
export function runCase(env: InteractionEnv, c: ScenarioCase): string {
  const handler = HANDLERS[c.command];
  if (handler === undefined) throw new Error(`unknown command ${c.command}`);
  if (c.input.length > 0) throw new Error(`${c.command} takes no input lines`);
  handler(env, new Args(c.args));
  return env.out.take() || 'ok';
}
