#!/usr/bin/env node
// The one `coffer` executable: server and client subcommands.
// Exit codes (TOP_HELP): 0 ok, 1 the server refused, 2 usage, 3 the server is unreachable.
import { checkFlags, flag, parseArgs, UsageError, type ParsedArgs } from '../server/cli/args.js';
import { AUDIT_HELP, AUDIT_SPECS, auditCommand } from '../server/cli/audit-command.js';
import { ClientError, EXIT_USAGE } from '../server/cli/client.js';
import {
  CLIENT_SPECS, CLUSTER_HELP, COMPLETION_HELP, COMPLETION_SPECS, LOGIN_HELP, LOGOUT_HELP, ROLE_HELP, ROOT_SPECS, SECRET_HELP,
  SERVER_HELP, SNAPSHOT_HELP, TOKEN_HELP, TOP_HELP,
  checkClientArgs, checkRootArgs, clusterCommand, roleCommand, secretCommand, tokenCommand,
} from '../server/cli/commands.js';
import { bashScript, completionModel, zshScript } from '../server/cli/completion.js';
import { loginCommand, logoutCommand } from '../server/cli/login.js';
import { snapshotCommand } from '../server/cli/snapshot-command.js';
import { resolveToken } from '../server/cli/token-file.js';
import { DEV_CLUSTER_HELP, runDevCluster } from '../server/cli/dev-cluster.js';
import { printVersion, VERSION_HELP, versionCommand } from '../server/cli/version-command.js';
import { OPERATOR_HELP } from '../operator/cli/help.js';
import { WG_AGENT_HELP } from '../wg-agent/help.js';
import { SYNC_HELP } from '../sync/help.js';

// The server, the operator, `operator render` and the wg-agent are imported when their command runs: a client
// call or `--help` should not pay for Fastify, the AWS SDK, SQLite, the Kubernetes client and cdk8s.

const HELP: Record<string, string> = {
  server: SERVER_HELP,
  login: LOGIN_HELP,
  logout: LOGOUT_HELP,
  secret: SECRET_HELP,
  token: TOKEN_HELP,
  role: ROLE_HELP,
  cluster: CLUSTER_HELP,
  audit: AUDIT_HELP,
  snapshot: SNAPSHOT_HELP,
  completion: COMPLETION_HELP,
  'dev-cluster': DEV_CLUSTER_HELP,
  version: VERSION_HELP,
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
  snapshot: { run: snapshotCommand, specs: CLIENT_SPECS.snapshot! },
} as const;

const ADDR_DEFAULT = 'http://127.0.0.1:8200';

/** One line naming the mistake, and where to read the usage. */
function usage(command: string | null, message: string): number {
  const where = command === null ? 'coffer' : `coffer ${command}`;
  process.stderr.write(`${where}: ${message}; see '${where} --help'\n`);
  return EXIT_USAGE;
}

/** `coffer` with no command: --help, --version [--json], or nothing (the help, as a usage error). */
function noCommand(args: ParsedArgs): number {
  checkFlags(args, ['help', 'version', 'json']);
  const version = args.flags.get('version');
  // --version takes a value after a command (secret get --version N); here the word it took is an argument.
  if (typeof version === 'string') throw new UsageError(`unexpected argument '${version}'`);
  if (version === true) {
    printVersion(args);
    return 0;
  }
  if (args.flags.has('json')) throw new UsageError("--json goes with a command ('coffer version --json', 'coffer secret get NAME --json')");
  process.stdout.write(TOP_HELP + '\n');
  // Bare `coffer` is a usage error (help on stdout, exit 2); `coffer --help` is not.
  return args.flags.has('help') ? 0 : EXIT_USAGE;
}

/** `coffer help [COMMAND]`: takes no flag but --help. */
function helpCommand(args: ParsedArgs): number {
  checkFlags(args, ['help']);
  const topic = args.positionals[1];
  if (topic !== undefined && !Object.hasOwn(HELP, topic)) throw new UsageError(`unknown command '${topic}'`);
  if (args.positionals.length > 2) throw new UsageError(`unexpected argument '${args.positionals[2]}'`);
  process.stdout.write((topic ? HELP[topic] : TOP_HELP) + '\n');
  return 0;
}

/**
 * The commands that parse their own flags get only the words after their name: anything before
 * it (`coffer --frob wg-agent`) would be dropped silently, so only --help is allowed there.
 */
function beforeSelfParsed(argv: readonly string[], command: string): boolean {
  const before = parseArgs(argv.slice(0, argv.indexOf(command)));
  checkFlags(before, ['help']);
  return before.flags.has('help');
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  const command = args.positionals[0];
  if (command === undefined || command === 'help') {
    try {
      return command === undefined ? noCommand(args) : helpCommand(args);
    } catch (err) {
      if (err instanceof UsageError) return usage(null, command === undefined ? err.message : `help: ${err.message}`);
      throw err;
    }
  }
  const help = Object.hasOwn(HELP, command) ? HELP[command] : undefined;
  if (help === undefined) return usage(null, `unknown command '${command}'`);
  if (command === 'operator' || command === 'sync' || command === 'wg-agent') {
    try {
      if (beforeSelfParsed(argv, command)) {
        process.stdout.write(help + '\n');
        return 0;
      }
    } catch (err) {
      if (err instanceof UsageError) return usage(command, `${err.message} (flags go after '${command}')`);
      throw err;
    }
  }
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
    if (command === 'version') {
      versionCommand(args);
      return 0;
    }
    if (command === 'completion') {
      checkClientArgs(args, COMPLETION_SPECS, ['help']);
      const model = completionModel(HELP);
      process.stdout.write(args.positionals[1] === 'zsh' ? zshScript(model) : bashScript(model));
      return 0;
    }
    const addr = () => flag(args, 'addr') ?? process.env.COFFER_ADDR ?? ADDR_DEFAULT;
    if (command === 'login' || command === 'logout') {
      if (command === 'login' && args.flags.has('token')) {
        throw new UsageError('login reads the token from stdin or a hidden prompt, not --token (echo "$TOKEN" | coffer login)');
      }
      checkRootArgs(args, ROOT_SPECS[command]!);
      if (command === 'login') await loginCommand(args, addr());
      else logoutCommand(args);
      return 0;
    }
    if (client === undefined) {
      // server: no subcommands, its own flags.
      if (args.positionals.length > 1) throw new UsageError(`unexpected argument '${args.positionals[1]}'`);
      checkFlags(args, ['dev', 'help']);
      return (await import('../server/cli/server-command.js')).runServer(args);
    }
    checkClientArgs(args, client.specs);
    // --token, COFFER_TOKEN, the login file, VAULT_BOOTSTRAP_TOKEN (inside server pods).
    const { token, source } = resolveToken(flag(args, 'token'));
    try {
      await client.run(args, { addr: addr(), token });
    } catch (err) {
      if (err instanceof ClientError && err.status === 401 && source === 'none') {
        throw new ClientError(401, err.code, `${err.message.replace(/^unauthorized \(401\): /, '')} (no token: run 'coffer login', or set COFFER_TOKEN)`);
      }
      throw err;
    }
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
