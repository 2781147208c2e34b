#!/usr/bin/env node
// The one `coffer` executable: server and client subcommands.
import { parseArgs, UsageError } from '../server/cli/args.js';
import { AUDIT_HELP, auditCommand } from '../server/cli/audit-command.js';
import { ClientError } from '../server/cli/client.js';
import {
  CLUSTER_HELP, ROLE_HELP, SECRET_HELP, SERVER_HELP, TOKEN_HELP, TOP_HELP,
  clusterCommand, roleCommand, secretCommand, tokenCommand,
} from '../server/cli/commands.js';
import { DEV_CLUSTER_HELP, runDevCluster } from '../server/cli/dev-cluster.js';
import { OPERATOR_HELP } from '../operator/cli/help.js';
import { WG_AGENT_HELP } from '../wg-agent/help.js';
import { SYNC_HELP } from '../sync/help.js';

const SYNC_HELP_LINE = '\n  sync run                run the CofferSecret sync controller';

// The server, the operator, `operator render` and the wg-agent are imported when their command runs: a client
// call or `--help` should not pay for Fastify, the AWS SDK, SQLite, the Kubernetes client and cdk8s.

// The operator's line in the top-level help (TOP_HELP lists the server-side commands).
const TOP = TOP_HELP.includes('\n  operator ')
  ? TOP_HELP
  : TOP_HELP.replace(
      '\n  help [command]',
      '\n  operator [run]          run the VaultCluster controller\n  operator render -f FILE\n                         print the manifests for a VaultCluster (no cluster needed)' +
        SYNC_HELP_LINE + '\n  help [command]',
    );

const HELP: Record<string, string> = {
  server: SERVER_HELP,
  secret: SECRET_HELP,
  token: TOKEN_HELP,
  role: ROLE_HELP,
  cluster: CLUSTER_HELP,
  audit: AUDIT_HELP,
  'dev-cluster': DEV_CLUSTER_HELP,
  operator: OPERATOR_HELP,
  'wg-agent': WG_AGENT_HELP,
  sync: SYNC_HELP,
};

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const command = args.positionals[0];
  if (command === undefined || command === 'help') {
    const topic = args.positionals[1];
    process.stdout.write((topic && HELP[topic]) || TOP);
    process.stdout.write('\n');
    return command === undefined && !args.flags.has('help') ? 2 : 0;
  }
  const help = HELP[command];
  if (help === undefined) {
    process.stderr.write(`coffer: unknown command '${command}'\n\n${TOP}\n`);
    return 2;
  }
  // The operator has subcommands with their own --help.
  if (command === 'operator') {
    const rest = argv.slice(argv.indexOf('operator') + 1);
    const first = rest[0];
    const isRun = first === 'run' || (first !== undefined && first.startsWith('--') && first !== '--help') || first === undefined;
    if (isRun) return (await import('../operator/cli/operator.js')).runOperatorCommand(rest);
    if (first === '--help') {
      process.stdout.write(OPERATOR_HELP + '\n');
      return 0;
    }
    return (await import('../operator/cli/render.js')).operatorCommand(args.positionals.slice(1), args.flags);
  }
  // The sync controller parses its own flags (strictly).
  if (command === 'sync') return (await import('../sync/cli.js')).runSyncCommand(argv.slice(argv.indexOf('sync') + 1));
  // wg-agent parses its own flags (strictly: an unknown one is an error).
  if (command === 'wg-agent') return (await import('../wg-agent/cli.js')).runWgAgent(argv.slice(argv.indexOf('wg-agent') + 1));
  if (args.flags.has('help')) {
    process.stdout.write(help + '\n');
    return 0;
  }
  if (command === 'server') return (await import('../server/cli/server-command.js')).runServer(args);
  if (command === 'dev-cluster') return runDevCluster(args);
  const client = {
    addr: (args.flags.get('addr') as string | undefined) ?? process.env.COFFER_ADDR ?? 'http://127.0.0.1:8200',
    token: (args.flags.get('token') as string | undefined) ?? process.env.COFFER_TOKEN,
  };
  const run = { secret: secretCommand, token: tokenCommand, role: roleCommand, cluster: clusterCommand, audit: auditCommand }[command];
  try {
    await run!(args, client);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`coffer ${command}: ${err.message}\n\n${help}\n`);
      return 2;
    }
    if (err instanceof ClientError) {
      process.stderr.write(`coffer ${command}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

// A closed pipe (coffer … | head) is not an error worth a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`coffer: ${(err as Error).message}\n`);
    process.exitCode = 1;
  },
);
