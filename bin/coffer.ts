#!/usr/bin/env node
// The one `coffer` executable: server and client subcommands.
// Exit codes (TOP_HELP): 0 ok, 1 the server refused, 2 usage, 3 the server is unreachable.
import { checkFlags, flag, parseArgs, UsageError } from '../server/cli/args.js';
import { AUDIT_HELP, AUDIT_SPECS, auditCommand } from '../server/cli/audit-command.js';
import { ClientError, EXIT_USAGE } from '../server/cli/client.js';
import {
  CLIENT_SPECS, CLUSTER_HELP, ROLE_HELP, SECRET_HELP, SERVER_HELP, TOKEN_HELP, TOP_HELP,
  checkClientArgs, clusterCommand, roleCommand, secretCommand, tokenCommand,
} from '../server/cli/commands.js';
import { DEV_CLUSTER_HELP, runDevCluster } from '../server/cli/dev-cluster.js';
import { OPERATOR_HELP } from '../operator/cli/help.js';
import { WG_AGENT_HELP } from '../wg-agent/help.js';
import { SYNC_HELP } from '../sync/help.js';

// The server, the operator, `operator render` and the wg-agent are imported when their command runs: a client
// call or `--help` should not pay for Fastify, the AWS SDK, SQLite, the Kubernetes client and cdk8s.

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

const CLIENT = {
  secret: { run: secretCommand, specs: CLIENT_SPECS.secret! },
  token: { run: tokenCommand, specs: CLIENT_SPECS.token! },
  role: { run: roleCommand, specs: CLIENT_SPECS.role! },
  cluster: { run: clusterCommand, specs: CLIENT_SPECS.cluster! },
  audit: { run: auditCommand, specs: AUDIT_SPECS },
} as const;

/** One line naming the mistake, and where to read the usage. */
function usage(command: string | null, message: string): number {
  const where = command === null ? 'coffer' : `coffer ${command}`;
  process.stderr.write(`${where}: ${message}; see '${where} --help'\n`);
  return EXIT_USAGE;
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const command = args.positionals[0];
  if (command === undefined || command === 'help') {
    const topic = args.positionals[1];
    if (topic !== undefined && !Object.hasOwn(HELP, topic)) return usage(null, `unknown command '${topic}'`);
    if (args.positionals.length > 2) return usage(null, `help: unexpected argument '${args.positionals[2]}'`);
    process.stdout.write((topic ? HELP[topic] : TOP_HELP) + '\n');
    // Bare `coffer` is a usage error (help on stdout, exit 2); `coffer --help` and `coffer help` are not.
    return command === undefined && !args.flags.has('help') ? EXIT_USAGE : 0;
  }
  const help = Object.hasOwn(HELP, command) ? HELP[command] : undefined;
  if (help === undefined) return usage(null, `unknown command '${command}'`);
  // The operator has subcommands with their own --help.
  if (command === 'operator') {
    const rest = argv.slice(argv.indexOf('operator') + 1);
    const first = rest[0];
    const isRun = first === 'run' || (first !== undefined && first.startsWith('--') && first !== '--help') || first === undefined;
    if (isRun) return (await import('../operator/cli/operator.js')).runOperatorCommand(rest);
    if (first === '--help' || first === '-h') {
      process.stdout.write(OPERATOR_HELP + '\n');
      return 0;
    }
    if (first === 'render') {
      try {
        checkFlags(args, ['file', 'help']);
      } catch (err) {
        if (err instanceof UsageError) return usage('operator render', err.message);
        throw err;
      }
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
  const client = Object.hasOwn(CLIENT, command) ? CLIENT[command as keyof typeof CLIENT] : undefined;
  try {
    // dev-cluster checks its own subcommands and flags (UsageError → exit 2 here).
    if (command === 'dev-cluster') return await runDevCluster(args);
    if (client === undefined) {
      // server: no subcommands, its own flags.
      if (args.positionals.length > 1) throw new UsageError(`unexpected argument '${args.positionals[1]}'`);
      checkFlags(args, ['dev', 'help']);
      return (await import('../server/cli/server-command.js')).runServer(args);
    }
    checkClientArgs(args, client.specs);
    const options = {
      addr: flag(args, 'addr') ?? process.env.COFFER_ADDR ?? 'http://127.0.0.1:8200',
      token: flag(args, 'token') ?? process.env.COFFER_TOKEN,
    };
    await client.run(args, options);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) return usage(command, err.message);
    if (err instanceof ClientError) {
      process.stderr.write(`coffer ${command}: ${err.message}\n`);
      return err.exitCode;
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
