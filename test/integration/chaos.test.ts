// Chaos: three real `coffer server` processes under a bounded concurrent
// read/write load while the leader is SIGKILLed and restarted, a follower is
// paused with SIGSTOP and resumed, and the leader is cut off from the others by
// the fault-injecting proxies on every Raft link. Afterwards every
// acknowledged write must still be readable on every node, all nodes must
// agree, and the whole client history must be linearizable.
//
// On failure (or with CHAOS_DUMP=1) the history, the checker's verdict, a
// timeline of each node's view of the cluster and the node logs are written to
// a coffer-chaos-* folder under the OS temp dir; the path is printed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TestCluster, type ClusterMember } from '../helpers/cluster.js';
import { request } from '../helpers/http.js';
import { checkLinearizable, type CheckResult, type Op } from '../helpers/linearizability.js';

const CLIENTS = 8;
const KEYS = 8;
const LOAD_MS = 17_000;
const HTTP_TIMEOUT_MS = 3_000;
// How long a client waits for an answer before moving on (the request stays open in the
// background, bounded by HTTP_TIMEOUT_MS). By default it waits for every answer;
// CHAOS_PATIENCE_MS=400 keeps up to MAX_OUTSTANDING requests open, a harsher load.
const PATIENCE_MS = Number(process.env.CHAOS_PATIENCE_MS ?? HTTP_TIMEOUT_MS);
const MAX_OUTSTANDING = 48;

let cluster: TestCluster | null = null;
afterEach(async () => {
  await cluster?.stop();
  cluster = null;
});

const hrMs = (): number => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const randInt = (n: number) => Math.floor(Math.random() * n);

interface Reply {
  status: number;
  body: any;
}

/** One request on a fresh connection, abandoned (rejected) after `timeoutMs`. */
function call(base: string, method: 'GET' | 'PUT', p: string, opts: { token?: string; body?: unknown; timeoutMs?: number } = {}): Promise<Reply> {
  return request(base, method, p, { ...opts, timeoutMs: opts.timeoutMs ?? HTTP_TIMEOUT_MS });
}

interface NemesisEvent {
  at: number;
  what: string;
}

interface Ack {
  key: string;
  value: string;
  version: number;
  node: string;
}

describe('chaos', () => {
  it('stays linearizable and loses no acknowledged write through SIGKILL, SIGSTOP and a partition', { timeout: 90_000 }, async () => {
    const c = (cluster = await TestCluster.start(3, { COFFER_RAFT_TICK_MS: '50' }, { proxies: true }));
    // The leader creates the bootstrap token once elected; followers authenticate from their
    // own applied state, so wait until every node knows the token before loading them.
    for (const m of c.members) {
      const deadline = Date.now() + 10_000;
      while ((await call(m.url, 'GET', '/v1/admin/cluster', { token: c.token }).catch(() => null))?.status !== 200) {
        if (Date.now() > deadline) throw new Error(`${m.id} never accepted the bootstrap token`);
        await sleep(50);
      }
    }
    // All times are milliseconds since the cluster came up (monotonic clock).
    const t0 = hrMs();
    const now = () => hrMs() - t0;
    const history: Op[] = [];
    const acks: Ack[] = [];
    const events: NemesisEvent[] = [];
    const unexpected: string[] = [];
    const counts = { writes: 0, acked: 0, indeterminate: 0, reads: 0, readsOk: 0, readsFailed: 0 };
    const oldOutputs: string[] = [];
    const note = (what: string) => events.push({ at: Math.round(now()), what });
    // What each node thinks of the cluster, sampled while the test runs (kept only when it changes).
    const views: { at: number; node: string; view: string }[] = [];
    let monitoring = true;
    const monitor = async () => {
      const last = new Map<string, string>();
      while (monitoring) {
        await Promise.all(
          c.members.map(async (m) => {
            let view = 'down';
            if (m.proc) {
              const [h, r] = await Promise.all([
                call(m.url, 'GET', '/v1/health', { timeoutMs: 500 }).catch(() => null),
                call(m.url, 'GET', '/v1/admin/cluster', { token: c.token, timeoutMs: 500 }).catch(() => null),
              ]);
              view = !r || !h ? 'no answer' : r.status !== 200 ? `${r.status}` : `${h.body.role} term=${r.body.term} leader=${r.body.leader_id} commit=${r.body.commit_index} applied=${r.body.applied_index}`;
            }
            const short = view.replace(/ commit=.*/, '');
            if (last.get(m.id) !== short) views.push({ at: Math.round(now()), node: m.id, view });
            last.set(m.id, short);
          }),
        );
        await sleep(200);
      }
    };
    const monitored = monitor();

    /** Writes everything needed to analyse a run; returns the folder. */
    const dump = (extra: Record<string, unknown>): string => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-chaos-'));
      const t = (x: number | undefined) => (x === undefined ? null : Math.round(x * 10) / 10);
      const body = { ...extra, events, views, unexpected, acks, clusterRoot: c.root, history: history.map((o) => ({ ...o, call: t(o.call), ret: t(o.ret) })) };
      fs.writeFileSync(path.join(dir, 'history.json'), JSON.stringify(body, null, 1));
      fs.writeFileSync(path.join(dir, 'nodes.log'), [...oldOutputs, ...c.members.map((m) => `==== ${m.id} ====\n${m.proc?.output() ?? ''}`)].join('\n'));
      console.log(`chaos: history, cluster views and node logs written to ${dir}`);
      return dir;
    };

    // ---- the load -------------------------------------------------------------
    // Each client issues one operation at a time and waits up to PATIENCE_MS for it;
    // a request it stops waiting for carries on in the background (its real return
    // time, if any, still goes into the history). At most MAX_OUTSTANDING requests
    // are open at once, each bounded by HTTP_TIMEOUT_MS.
    const loadEnd = now() + LOAD_MS;
    const outstanding = new Set<Promise<void>>();
    const operate = async (ci: number, seq: number, m: ClusterMember, key: string, write: boolean): Promise<void> => {
      const start = now();
      let r: Reply | null = null;
      if (write) {
        const value = `c${ci}-${seq}`;
        counts.writes++;
        try {
          r = await call(m.url, 'PUT', `/v1/secrets/${key}`, { token: c.token, body: { value } });
        } catch {
          r = null; // connection refused/reset or timed out: the write may or may not have happened
        }
        const end = now();
        if (r && (r.status === 200 || r.status === 201)) {
          counts.acked++;
          history.push({ key, kind: 'write', value, call: start, ret: end, meta: `c${ci}@${m.id} ${r.status} v${r.body?.version}` });
          acks.push({ key, value, version: r.body?.version, node: m.id });
        } else {
          if (r && r.status < 500) unexpected.push(`write ${key} on ${m.id}: ${r.status} ${JSON.stringify(r.body)}`);
          counts.indeterminate++;
          history.push({ key, kind: 'write', value, call: start, ret: undefined, meta: `c${ci}@${m.id} ${r ? r.status : 'neterr'}` });
        }
      } else {
        counts.reads++;
        try {
          r = await call(m.url, 'GET', `/v1/secrets/${key}`);
        } catch {
          r = null;
        }
        const end = now();
        if (r && r.status === 200) {
          counts.readsOk++;
          history.push({ key, kind: 'read', value: r.body.value, call: start, ret: end, meta: `c${ci}@${m.id} v${r.body.version}` });
        } else if (r && r.status === 404 && r.body?.error?.code === 'not_found') {
          counts.readsOk++;
          history.push({ key, kind: 'read', value: null, call: start, ret: end, meta: `c${ci}@${m.id} 404` });
        } else {
          // A read without an answer constrains nothing.
          if (r && r.status < 500) unexpected.push(`read ${key} on ${m.id}: ${r.status} ${JSON.stringify(r.body)}`);
          counts.readsFailed++;
        }
      }
      if (!r || r.status >= 500) await sleep(20); // do not spin against a dead or leaderless node
    };
    const runClient = async (ci: number) => {
      let seq = 0;
      while (now() < loadEnd) {
        const m = c.members[randInt(c.members.length)]!;
        const op = operate(ci, seq++, m, `chaos/k${randInt(KEYS)}`, Math.random() < 0.5);
        outstanding.add(op);
        void op.finally(() => outstanding.delete(op));
        if (outstanding.size >= MAX_OUTSTANDING || PATIENCE_MS >= HTTP_TIMEOUT_MS) await op;
        else await Promise.race([op, sleep(PATIENCE_MS)]);
      }
    };

    // ---- the faults, one after another while the load runs -----------------------
    const leaderNow = async (): Promise<string> => {
      const deadline = now() + 5_000;
      while (now() < deadline) {
        const hs = await Promise.all(c.running().map(async (m) => ({ m, h: await c.health(m) })));
        const lead = hs.find((x) => x.h?.role === 'leader');
        if (lead) return lead.m.id;
        await sleep(50);
      }
      return c.running()[0]!.id;
    };
    const nemesis = async () => {
      await sleep(2_000);
      const killed = await leaderNow();
      note(`SIGKILL leader ${killed}`);
      oldOutputs.push(`==== ${killed} before SIGKILL ====\n${c.member(killed).proc?.output() ?? ''}`);
      await c.stopMember(killed, 'SIGKILL');
      await sleep(3_000);
      await c.startMember(killed);
      note(`restarted ${killed}`);

      await sleep(2_000);
      const lead = await leaderNow();
      const paused = c.members.find((m) => m.id !== lead)!.id;
      note(`SIGSTOP follower ${paused} (leader ${lead})`);
      c.signal(paused, 'SIGSTOP');
      await sleep(2_000);
      c.signal(paused, 'SIGCONT');
      note(`SIGCONT ${paused}`);

      await sleep(2_000);
      const cut = await leaderNow();
      note(`partition leader ${cut}`);
      c.partition(cut);
      await sleep(3_000);
      c.heal();
      note('heal');
    };

    // ---- afterwards ----------------------------------------------------------------
    let dumped = false;
    const verify = async () => {
      expect(c.running()).toHaveLength(3);
      // Generous: requests stuck inside the nodes when the faults ended can delay convergence.
      const finalLeader = await c.waitForLeader(30_000);
      note(`leader ${finalLeader}`);
      const keys = Array.from({ length: KEYS }, (_, i) => `chaos/k${i}`);

      /** A linearizable read, retried until it is answered; recorded in the history. */
      const finalRead = async (m: ClusterMember, key: string): Promise<string | null> => {
        const deadline = now() + 10_000;
        for (;;) {
          const start = now();
          try {
            const r = await call(m.url, 'GET', `/v1/secrets/${key}`, { timeoutMs: 5_000 });
            const end = now();
            if (r.status === 200 || r.status === 404) {
              const value = r.status === 200 ? (r.body.value as string) : null;
              history.push({ key, kind: 'read', value, call: start, ret: end, meta: `final@${m.id}` });
              return value;
            }
          } catch {
            // retry
          }
          if (now() > deadline) throw new Error(`final read of ${key} on ${m.id} never succeeded`);
          await sleep(100);
        }
      };
      // Writes left in flight by the faults may still land (e.g. one queued in a paused
      // process): read until every node agrees, each attempt going into the history.
      let finals: Map<string, (string | null)[]> = new Map();
      for (let round = 0; round < 10; round++) {
        finals = new Map(await Promise.all(keys.map(async (k) => [k, await Promise.all(c.members.map((m) => finalRead(m, k)))] as const)));
        if ([...finals.values()].every((vs) => vs.every((v) => v === vs[0]))) break;
        note(`final reads disagree (round ${round}): ${JSON.stringify(Object.fromEntries(finals))}`);
        await sleep(500);
      }

      // Every acknowledged write is still stored, at the version it was acknowledged with, on every node.
      const lost: string[] = [];
      const versionClash: string[] = [];
      const seen = new Map<string, string>();
      for (const a of acks) {
        const other = seen.get(`${a.key}@${a.version}`);
        if (other !== undefined) versionClash.push(`${a.key} version ${a.version} acknowledged for both ${other} and ${a.value}`);
        seen.set(`${a.key}@${a.version}`, a.value);
      }
      for (let i = 0; i < acks.length; i += 64) {
        await Promise.all(
          acks.slice(i, i + 64).flatMap((a) =>
            c.members.map(async (m) => {
              const r = await call(m.url, 'GET', `/v1/secrets/${a.key}?version=${a.version}&consistency=stale`, { timeoutMs: 10_000 }).catch((e: Error) => ({ status: 0, body: e.message }));
              if (r.status !== 200 || r.body.value !== a.value) lost.push(`${a.key} v${a.version}=${a.value} (acked by ${a.node}) on ${m.id}: ${r.status} ${JSON.stringify(r.body)}`);
            }),
          ),
        );
      }

      const checkStarted = now();
      const verdict: CheckResult = checkLinearizable(history);
      const checkMs = Math.round(now() - checkStarted);
      const written = new Set(history.filter((o) => o.kind === 'write').map((o) => o.value));
      // Acknowledged writes per second of the run: shows how long each fault kept the cluster unavailable.
      const ackedPerSecond: number[] = [];
      for (const o of history) if (o.kind === 'write' && o.ret !== undefined && o.ret < LOAD_MS) ackedPerSecond[Math.floor(o.ret / 1000)] = (ackedPerSecond[Math.floor(o.ret / 1000)] ?? 0) + 1;
      const summary = { ...counts, historyOps: history.length, checkMs, totalMs: Math.round(now()), ackedPerSecond: Array.from(ackedPerSecond, (x) => x ?? 0), events };
      console.log(`chaos: ${JSON.stringify(summary)}`);

      const disagree = [...finals].filter(([, vs]) => !vs.every((v) => v === vs[0]));
      const unwritten = [...finals].filter(([, vs]) => vs.some((v) => v === null || !written.has(v)));
      const failed = !verdict.ok || lost.length > 0 || versionClash.length > 0 || disagree.length > 0 || unwritten.length > 0 || unexpected.length > 0;
      if (failed || process.env.CHAOS_DUMP === '1') {
        dump({ summary, verdict, lost, versionClash, disagree, unwritten, finals: Object.fromEntries(finals) });
        dumped = true;
      }

      expect(unexpected).toEqual([]);
      expect(lost).toEqual([]);
      expect(versionClash).toEqual([]);
      expect(disagree).toEqual([]);
      expect(unwritten).toEqual([]);
      expect(verdict.explanation ?? '').toBe('');
      expect(verdict.ok).toBe(true);
      // The faults really happened and the load really ran through them.
      expect(events.map((e) => e.what.split(' ')[0])).toEqual(expect.arrayContaining(['SIGKILL', 'restarted', 'SIGSTOP', 'SIGCONT', 'partition', 'heal']));
      expect(counts.acked).toBeGreaterThan(200);
      const firstFault = events.find((e) => e.what.startsWith('SIGKILL'))!.at;
      const healed = events.find((e) => e.what === 'heal')!.at;
      const ackedAt = history.filter((o) => o.kind === 'write' && o.ret !== undefined && !o.meta?.startsWith('final')).map((o) => o.ret!);
      expect(ackedAt.filter((t) => t < firstFault).length).toBeGreaterThan(0);
      expect(ackedAt.filter((t) => t > firstFault && t < healed).length).toBeGreaterThan(0);
      expect(ackedAt.filter((t) => t > healed).length).toBeGreaterThan(0);
      expect(counts.readsOk).toBeGreaterThan(200);
      expect(c.link('n1', 'n2').accepted).toBeGreaterThan(0);
    };

    try {
      await Promise.all([...Array.from({ length: CLIENTS }, (_, i) => runClient(i)), nemesis()]);
      await Promise.all([...outstanding]);
    } finally {
      c.heal();
      for (const m of c.running()) c.signal(m.id, 'SIGCONT');
      monitoring = false;
      await monitored;
    }
    note('load done');
    try {
      await verify();
    } catch (err) {
      if (!dumped) dump({ error: (err as Error).message });
      throw err;
    }
  });
});
