// `coffer dev-cluster` (npm run cluster): three local nodes on 127.0.0.1 with
// distinct ports, sharing one DEV-ONLY master key and bootstrap token, for
// people to try replication, failover and membership. Ctrl-C stops them all.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkFlags, type ParsedArgs, UsageError } from './args.js';
import { applyDevDefaults } from './dev.js';

export const DEV_CLUSTER_HELP = `Usage: coffer dev-cluster [--nodes 3] [--dir ./data-cluster]

Starts a local cluster of dev nodes (DEV MODE: not for real secrets):
  n1  API 127.0.0.1:8200  Raft 127.0.0.1:8201
  n2  API 127.0.0.1:8210  Raft 127.0.0.1:8211
  n3  API 127.0.0.1:8220  Raft 127.0.0.1:8221
Each node keeps its data in <dir>/nN; the master key and bootstrap token are
generated once into <dir>. Logs go to <dir>/nN.log. Ctrl-C stops every node.`;

export async function runDevCluster(args: ParsedArgs): Promise<number> {
  if (args.positionals.length > 1) throw new UsageError(`unexpected argument '${args.positionals[1]}'`);
  checkFlags(args, ['nodes', 'dir', 'help']);
  const countText = (args.flags.get('nodes') as string | undefined) ?? '3';
  if (!['1', '3', '5', '7'].includes(countText)) {
    process.stderr.write('coffer dev-cluster: --nodes must be 1, 3, 5 or 7\n');
    return 2;
  }
  const count = Number(countText);
  const dir = (args.flags.get('dir') as string | undefined) ?? './data-cluster';
  const shared: NodeJS.ProcessEnv = { VAULT_DATA_DIR: dir };
  const { token } = applyDevDefaults(shared); // shared key + token files live in <dir>
  const ids = Array.from({ length: count }, (_, i) => `n${i + 1}`);
  const port = (i: number, raft: boolean) => 8200 + i * 10 + (raft ? 1 : 0);
  const peers = ids.map((id, i) => `${id}=127.0.0.1:${port(i, true)}`).join(',');
  const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/coffer.js');

  const children: ChildProcess[] = ids.map((id, i) => {
    const log = fs.openSync(path.join(dir, `${id}.log`), 'a');
    return spawn(process.execPath, [bin, 'server'], {
      stdio: ['ignore', log, log],
      env: {
        ...process.env,
        VAULT_DATA_DIR: path.join(dir, id),
        VAULT_API_ADDR: `127.0.0.1:${port(i, false)}`,
        VAULT_RAFT_ADDR: `127.0.0.1:${port(i, true)}`,
        VAULT_NODE_ID: id,
        VAULT_PEERS: peers,
        VAULT_LOCAL_MASTER_KEY: shared.VAULT_LOCAL_MASTER_KEY,
        VAULT_CLUSTER_KEY: shared.VAULT_CLUSTER_KEY,
        VAULT_BOOTSTRAP_TOKEN: token,
        VAULT_READ_ALLOWLIST: process.env.VAULT_READ_ALLOWLIST ?? '127.0.0.1',
      },
    });
  });
  process.stdout.write(
    `\n  Coffer dev cluster (DEV MODE: not for real secrets), data in ${dir}\n` +
      ids.map((id, i) => `    ${id}  http://127.0.0.1:${port(i, false)}  (log: ${path.join(dir, `${id}.log`)})\n`).join('') +
      `\n    export COFFER_ADDR=http://127.0.0.1:${port(0, false)}\n    export COFFER_TOKEN=${token}\n` +
      `    node dist/bin/coffer.js cluster status\n\n  Ctrl-C stops every node.\n`,
  );
  let stopping = false;
  const exited = children.map((c) => new Promise<number | null>((r) => c.once('exit', (code) => r(code))));
  const stop = () => {
    if (stopping) return;
    stopping = true;
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const codes = await Promise.all(exited);
  return stopping || codes.every((c) => c === 0) ? 0 : 1;
}
