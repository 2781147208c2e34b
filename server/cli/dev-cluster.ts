// `coffer dev-cluster` (npm run cluster): local nodes on 127.0.0.1 with
// distinct ports, sharing one DEV-ONLY master key, cluster key and bootstrap
// token, for people to try replication, failover and membership.
//
// `run` (the default) is a supervisor in the foreground: it starts the nodes,
// says when one exits, and answers one-shot commands on a unix socket in the
// data folder: `status`, `restart ID`, `join [ID]`. Ctrl-C stops every node.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkFlags, flag, type ParsedArgs, UsageError } from './args.js';
import { printJson, wantsJson } from './output.js';
import { applyDevDefaults, bootstrapTokenLines, bootstrapTokenState, DEV_TOKEN_FILE, type BootstrapTokenState } from './dev.js';

export const DEV_CLUSTER_HELP = `Usage: coffer dev-cluster [run] [--nodes 3] [--dir ./data-cluster] [--base-port 8200]
       coffer dev-cluster status [--dir D] [--json]
       coffer dev-cluster restart ID [--dir D] [--json]
       coffer dev-cluster join [ID] [--dir D] [--json]

run (the default) starts a local cluster of dev nodes and supervises them
(DEV MODE: not for real secrets); with the default --base-port 8200:
  n1  API 127.0.0.1:8200  Raft 127.0.0.1:8201
  n2  API 127.0.0.1:8210  Raft 127.0.0.1:8211
  n3  API 127.0.0.1:8220  Raft 127.0.0.1:8221
Each node keeps its data in <dir>/nN and logs to <dir>/nN.log; the master key,
cluster key and bootstrap token are generated once into <dir>. It prints a
line when a node exits. Ctrl-C stops every node.

From another terminal, while it runs (same --dir):
  status       each node: running or how it exited, its role, API and log
  restart ID   stops the node if it runs, and starts it again on its data
  join [ID]    starts the next node (n4, …) outside VAULT_PEERS, waiting to
               be added; prints the coffer cluster command that adds it
With --json, each of these prints one JSON document: status {dir, coffer_addr,
nodes: [{id, state, pid, exit, role, health, api, raft, joined, log}]},
restart {id, pid, api}, join {id, api, raft, log, add_peer, members_set}.
run prints a running log, so it takes no --json.`;

const SOCKET = 'supervisor.sock';
const MAX_REQUEST_BYTES = 4096;

interface DevNode {
  id: string;
  slot: number;
  initial: boolean; // in VAULT_PEERS
  proc: ChildProcess | null;
  exit: string | null; // how the last run ended
  expected: boolean; // the supervisor stopped it (restart, Ctrl-C): no report
}

/** A supervisor's answer: text for people and, when it succeeded, the same as data (--json). */
type Reply = { ok: boolean; text: string; data?: unknown };

function dirOf(args: ParsedArgs): string {
  return flag(args, 'dir') ?? './data-cluster';
}

/** `--dir D` as the user should repeat it in other commands (nothing for the default). */
function dirHint(dir: string): string {
  return dir === './data-cluster' ? '' : ` --dir ${dir}`;
}

export async function runDevCluster(args: ParsedArgs): Promise<number> {
  if (args.flags.get('base-port') === true) throw new UsageError('--base-port needs a value: --base-port PORT');
  const sub = args.positionals[1] ?? 'run';
  switch (sub) {
    case 'run':
      if (args.positionals.length > 2) throw new UsageError(`unexpected argument '${args.positionals[2]}'`);
      if (args.flags.has('json')) throw new UsageError('run prints a running log, not one document: --json goes with status, restart and join');
      checkFlags(args, ['nodes', 'dir', 'base-port', 'help']);
      return supervise(args);
    case 'status':
      if (args.positionals.length > 2) throw new UsageError(`unexpected argument '${args.positionals[2]}'`);
      checkFlags(args, ONE_SHOT_FLAGS);
      return oneShot(args, { cmd: 'status' });
    case 'restart': {
      checkFlags(args, ONE_SHOT_FLAGS);
      const id = args.positionals[2];
      if (id === undefined) throw new UsageError('missing node ID (n1, n2, …)');
      if (args.positionals.length > 3) throw new UsageError(`unexpected argument '${args.positionals[3]}'`);
      return oneShot(args, { cmd: 'restart', id });
    }
    case 'join': {
      checkFlags(args, ONE_SHOT_FLAGS);
      if (args.positionals.length > 3) throw new UsageError(`unexpected argument '${args.positionals[3]}'`);
      return oneShot(args, { cmd: 'join', id: args.positionals[2] });
    }
    default:
      throw new UsageError(`unknown subcommand '${sub}' (run, status, restart, join)`);
  }
}

const ONE_SHOT_FLAGS = ['dir', 'json', 'help'];

/**
 * Sends one request to the running supervisor and prints its answer (its data with --json; a refusal
 * always as text on stderr): 0 done, 1 refused, 3 no supervisor.
 */
async function oneShot(args: ParsedArgs, request: { cmd: string; id?: string }): Promise<number> {
  const dir = dirOf(args);
  const sock = path.join(dir, SOCKET);
  return new Promise<number>((resolve) => {
    const conn = net.createConnection(sock);
    let data = '';
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(JSON.stringify(request) + '\n'));
    conn.on('data', (chunk: string) => (data += chunk));
    conn.on('error', (err: NodeJS.ErrnoException) => {
      process.stderr.write(`coffer dev-cluster: no dev cluster is running in ${dir} (${err.code ?? err.message}); start one with: coffer dev-cluster${dirHint(dir)}\n`);
      resolve(3);
    });
    conn.on('end', () => {
      let reply: Reply;
      try {
        reply = JSON.parse(data) as Reply;
      } catch {
        process.stderr.write(`coffer dev-cluster: the supervisor in ${dir} gave no answer\n`);
        resolve(1);
        return;
      }
      if (reply.ok && wantsJson(args)) printJson(reply.data ?? { text: reply.text });
      else (reply.ok ? process.stdout : process.stderr).write(reply.text.endsWith('\n') ? reply.text : reply.text + '\n');
      resolve(reply.ok ? 0 : 1);
    });
  });
}

async function supervise(args: ParsedArgs): Promise<number> {
  const countText = flag(args, 'nodes') ?? '3';
  if (!['1', '3', '5', '7'].includes(countText)) throw new UsageError('--nodes must be 1, 3, 5 or 7');
  const baseText = args.flags.get('base-port');
  const base = baseText === undefined ? 8200 : typeof baseText === 'string' && /^\d{1,5}$/.test(baseText) ? Number(baseText) : NaN;
  // Room for nine nodes (n1…n9, 10 ports apart) below 65536.
  if (!(base >= 1024 && base + 81 <= 65535)) throw new UsageError(`--base-port must be a port from 1024 to 65454, got ${JSON.stringify(baseText)}`);
  const count = Number(countText);
  const dir = dirOf(args);
  const shared: NodeJS.ProcessEnv = { VAULT_DATA_DIR: dir };
  const { token } = applyDevDefaults(shared); // shared key + token files live in <dir>
  const sockPath = path.join(dir, SOCKET);
  if (await answers(sockPath)) {
    process.stderr.write(`coffer dev-cluster: a dev cluster already runs in ${dir} (coffer dev-cluster status${dirHint(dir)})\n`);
    return 1;
  }
  fs.rmSync(sockPath, { force: true }); // a stale socket from a supervisor that was killed
  const apiPort = (slot: number) => base + slot * 10;
  const raftPort = (slot: number) => base + slot * 10 + 1;
  const apiUrl = (n: DevNode) => `http://127.0.0.1:${apiPort(n.slot)}`;
  const logOf = (n: DevNode) => path.join(dir, `${n.id}.log`);
  const nodes: DevNode[] = Array.from({ length: count }, (_, i) => ({ id: `n${i + 1}`, slot: i, initial: true, proc: null, exit: null, expected: false }));
  const peers = nodes.map((n) => `${n.id}=127.0.0.1:${raftPort(n.slot)}`).join(',');
  const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/coffer.js');
  let stopping = false;
  let printed = nodes[0]!; // the node whose address the banner (or the last report) gave as COFFER_ADDR

  const running = (n: DevNode) => n.proc !== null && n.proc.exitCode === null && n.proc.signalCode === null;

  const start = (n: DevNode): void => {
    const log = fs.openSync(logOf(n), 'a');
    const child = spawn(process.execPath, [bin, 'server'], {
      stdio: ['ignore', log, log],
      env: {
        ...process.env,
        VAULT_DATA_DIR: path.join(dir, n.id),
        VAULT_API_ADDR: `127.0.0.1:${apiPort(n.slot)}`,
        VAULT_RAFT_ADDR: `127.0.0.1:${raftPort(n.slot)}`,
        VAULT_NODE_ID: n.id,
        // A joiner is not in VAULT_PEERS: it starts empty and waits to be added.
        VAULT_PEERS: peers,
        VAULT_LOCAL_MASTER_KEY: shared.VAULT_LOCAL_MASTER_KEY,
        VAULT_CLUSTER_KEY: shared.VAULT_CLUSTER_KEY,
        VAULT_BOOTSTRAP_TOKEN: token,
        VAULT_READ_ALLOWLIST: process.env.VAULT_READ_ALLOWLIST ?? '127.0.0.1',
      },
    });
    fs.closeSync(log);
    n.proc = child;
    n.exit = null;
    n.expected = false;
    child.once('exit', (code, signal) => {
      n.exit = signal ? `killed by ${signal}` : `exited with code ${code}`;
      if (stopping || n.expected) return;
      let line = `  ${n.id} ${n.exit} (log: ${logOf(n)}); start it again with: coffer dev-cluster restart ${n.id}${dirHint(dir)}\n`;
      if (n === printed) {
        const live = nodes.find((m) => m !== n && running(m));
        if (live) {
          printed = live;
          line += `  ${n.id} was your COFFER_ADDR; use a live node meanwhile:\n    export COFFER_ADDR=${apiUrl(live)}\n`;
        } else line += `  no node is running.\n`;
      }
      process.stdout.write(line);
    });
  };

  const stopNode = (n: DevNode): Promise<void> =>
    new Promise((resolve) => {
      if (!n.proc || !running(n)) return resolve();
      n.expected = true;
      const proc = n.proc;
      const kill = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      proc.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      proc.kill('SIGTERM');
    });

  const health = async (n: DevNode): Promise<{ role?: string; leader_id?: string | null; status?: string } | null> => {
    try {
      const res = await fetch(`${apiUrl(n)}/v1/health`, { signal: AbortSignal.timeout(1000) });
      return (await res.json()) as { role?: string; leader_id?: string | null };
    } catch {
      return null;
    }
  };

  /** Waits (up to 20 s) until the node's API answers /v1/health, or it exits. */
  const answering = async (n: DevNode): Promise<boolean> => {
    for (let i = 0; i < 200; i++) {
      if (!running(n)) return false;
      if ((await health(n)) !== null) return true;
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  };

  const status = async (): Promise<Reply> => {
    const rows = await Promise.all(
      nodes.map(async (n) => {
        const up = running(n);
        const h = up ? await health(n) : null;
        return {
          id: n.id,
          state: up ? 'running' : n.proc === null ? 'not started' : 'stopped',
          pid: up ? n.proc!.pid ?? null : null,
          exit: up ? null : n.exit, // 'exited with code N', 'killed by SIGNAL'
          role: h ? h.role ?? null : null, // null: not running, or not answering /v1/health
          health: h ? h.status ?? null : null,
          api: apiUrl(n),
          raft: `127.0.0.1:${raftPort(n.slot)}`,
          joined: !n.initial,
          log: logOf(n),
        };
      }),
    );
    const text = rows.map((r) => {
      const state = r.state === 'running' ? `running (pid ${r.pid})` : r.exit ?? r.state;
      const role = r.role !== null ? `${r.role}${r.health && r.health !== 'ok' ? ` ${r.health}` : ''}` : r.state === 'running' ? 'not answering' : '-';
      return `  ${r.id.padEnd(4)} ${state.padEnd(26)} ${role.padEnd(10)} ${r.api}  raft ${r.raft}${r.joined ? ' (joined)' : ''}  log ${r.log}`;
    });
    return {
      ok: true,
      text: `  dev cluster in ${dir}; COFFER_ADDR=${apiUrl(printed)}\n${text.join('\n')}`,
      data: { dir, coffer_addr: apiUrl(printed), nodes: rows },
    };
  };

  const restart = async (id: string | undefined): Promise<Reply> => {
    const n = nodes.find((m) => m.id === id);
    if (!n) return { ok: false, text: `coffer dev-cluster: no node ${id} (nodes: ${nodes.map((m) => m.id).join(', ')})` };
    await stopNode(n);
    start(n);
    const up = await answering(n);
    return up
      ? { ok: true, text: `  ${n.id} restarted (pid ${n.proc!.pid}), API ${apiUrl(n)}`, data: { id: n.id, pid: n.proc!.pid, api: apiUrl(n) } }
      : { ok: false, text: `coffer dev-cluster: ${n.id} did not come up (${n.exit ?? 'not answering'}); see ${logOf(n)}` };
  };

  const join = async (id: string | undefined): Promise<Reply> => {
    const slot = nodes.length;
    if (slot >= 9) return { ok: false, text: 'coffer dev-cluster: at most 9 nodes' };
    const newId = id ?? `n${slot + 1}`;
    if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(newId)) return { ok: false, text: `coffer dev-cluster: bad node id ${JSON.stringify(newId)}` };
    if (nodes.some((m) => m.id === newId)) return { ok: false, text: `coffer dev-cluster: ${newId} exists (restart it with: coffer dev-cluster restart ${newId}${dirHint(dir)})` };
    const n: DevNode = { id: newId, slot, initial: false, proc: null, exit: null, expected: false };
    nodes.push(n);
    start(n);
    if (!(await answering(n))) return { ok: false, text: `coffer dev-cluster: ${n.id} did not come up (${n.exit ?? 'not answering'}); see ${logOf(n)}` };
    const members = nodes.map((m) => `${m.id}=127.0.0.1:${raftPort(m.slot)}`).join(' ');
    const raft = `127.0.0.1:${raftPort(n.slot)}`;
    const addPeer = `coffer cluster add-peer ${n.id} ${raft}`;
    const membersSet = `coffer cluster members set ${members}`;
    return {
      ok: true,
      text: `  ${n.id} started (API ${apiUrl(n)}, Raft ${raft}, log ${logOf(n)}), waiting to be added. Either:\n    ${addPeer}\n    ${membersSet}`,
      data: { id: n.id, api: apiUrl(n), raft, log: logOf(n), add_peer: addPeer, members_set: membersSet },
    };
  };

  const server = net.createServer((conn) => {
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('error', () => {});
    const onData = (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) {
        if (buf.length > MAX_REQUEST_BYTES) conn.destroy(); // one short JSON line is all a request is
        return;
      }
      // One request per connection: bytes after the first line must not run it again.
      conn.off('data', onData);
      let req: { cmd?: string; id?: string };
      try {
        req = JSON.parse(buf.slice(0, nl)) as { cmd?: string; id?: string };
      } catch {
        req = {};
      }
      const work = req.cmd === 'status' ? status() : req.cmd === 'restart' ? restart(req.id) : req.cmd === 'join' ? join(req.id) : Promise.resolve({ ok: false, text: 'unknown request' });
      work.then(
        (reply) => conn.end(JSON.stringify(reply)),
        (err: unknown) => conn.end(JSON.stringify({ ok: false, text: `coffer dev-cluster: ${(err as Error).message}` })),
      );
    };
    conn.on('data', onData);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(sockPath, () => resolve());
  });
  fs.chmodSync(sockPath, 0o600);

  // What the last run left in state.db: a revoked bootstrap token is not offered as usable.
  let tokenState: BootstrapTokenState = { state: 'unknown' };
  for (const n of nodes) {
    const s = await bootstrapTokenState(path.join(dir, n.id), token);
    if (s.state !== 'unknown') tokenState = s;
    if (s.state !== 'usable' && s.state !== 'unknown') break;
  }
  for (const n of nodes) start(n);
  const d = dirHint(dir);
  process.stdout.write(
    `\n  Coffer dev cluster (DEV MODE: not for real secrets), data in ${dir}\n` +
      nodes.map((n) => `    ${n.id}  API ${apiUrl(n)}  Raft 127.0.0.1:${raftPort(n.slot)}  (log: ${logOf(n)})\n`).join('') +
      `\n    export COFFER_ADDR=${apiUrl(nodes[0]!)}\n\n` +
      bootstrapTokenLines(path.join(dir, DEV_TOKEN_FILE), token, tokenState) +
      `\n  From another terminal:\n` +
      `    coffer cluster status\n` +
      `    coffer dev-cluster status${d}\n` +
      `    coffer dev-cluster restart n2${d}    # start a node again (after a kill, say)\n` +
      `    coffer dev-cluster join${d}          # start n${count + 1}, waiting to be added\n` +
      `\n  Ctrl-C stops every node.\n`,
  );

  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  stopping = true;
  server.close();
  await Promise.all(nodes.map(stopNode));
  fs.rmSync(sockPath, { force: true });
  return 0;
}

/** Whether something accepts connections on the unix socket. */
function answers(sockPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = net.createConnection(sockPath);
    conn.once('connect', () => {
      conn.destroy();
      resolve(true);
    });
    conn.once('error', () => resolve(false));
  });
}
