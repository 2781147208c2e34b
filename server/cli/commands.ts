// The `coffer` command tree: help text and dispatch for every subcommand.
import fs from 'node:fs';
import { call, encodeName, type ClientOptions } from './client.js';
import { checkFlags, flag, intFlag, UsageError, type ParsedArgs } from './args.js';
import { CHARSETS, DEFAULT_ROTATE_LENGTH, ROTATE_LENGTH_MAX, ROTATE_LENGTH_MIN } from '../secrets/random-value.js';
import { memberListProblem, type DeclaredMember } from '../store/members.js';
import { emit, printJson, printLines, table, wantsJson } from './output.js';

/** One line of the top-level help: a command and every subcommand it takes. */
export interface CommandEntry {
  name: string;
  subcommands: readonly string[];
  summary: string;
}

/**
 * Every command `coffer` runs, in help order. The top-level help is generated
 * from it, and client commands refuse a subcommand not listed here (the CLI
 * test checks each entry has its help and, for client commands, its spec).
 */
export const COMMANDS: readonly CommandEntry[] = [
  { name: 'server', subcommands: [], summary: 'run a vault node (configured by VAULT_* environment variables)' },
  {
    name: 'dev-cluster',
    subcommands: ['run', 'status', 'restart', 'join'],
    summary: 'a local dev cluster (npm run cluster): run it, see it, restart a node, start a joiner',
  },
  { name: 'wg-agent', subcommands: [], summary: 'run the WireGuard sidecar agent (overlay for Raft; see WIREGUARD.md)' },
  { name: 'login', subcommands: [], summary: 'check a token (stdin or a hidden prompt) and keep it in a 0600 file' },
  { name: 'logout', subcommands: [], summary: 'remove the login file (the token stays valid: token revoke ends it)' },
  { name: 'secret', subcommands: ['get', 'put', 'rotate', 'delete', 'meta', 'list'], summary: 'read and manage secrets' },
  { name: 'token', subcommands: ['create', 'lookup', 'self', 'list', 'revoke'], summary: 'manage bearer tokens; show your own' },
  { name: 'role', subcommands: ['put', 'get', 'list', 'delete'], summary: 'manage roles' },
  {
    name: 'cluster',
    subcommands: ['status', 'add-peer', 'remove-peer', 'transfer-leadership', 'members'],
    summary: "this node's view of the cluster; change its membership and leader",
  },
  { name: 'audit', subcommands: ['tail', 'export', 'verify'], summary: "read this node's audit trail, check its hash chain" },
  { name: 'snapshot', subcommands: ['save', 'restore'], summary: 'save the replicated state to a file; restore it' },
  { name: 'operator', subcommands: ['run', 'render'], summary: 'run the VaultCluster controller (run is the default); render its manifests' },
  { name: 'sync', subcommands: ['run'], summary: 'run the CofferSecret sync controller' },
  { name: 'completion', subcommands: ['bash', 'zsh'], summary: 'print a shell completion script' },
  { name: 'version', subcommands: [], summary: "print this build's release (also: coffer --version)" },
];

const COLUMN = 25;

function helpLine(usage: string, summary: string): string {
  const left = `  ${usage}`;
  return left.length < COLUMN - 1 ? left.padEnd(COLUMN) + summary : `${left}\n${' '.repeat(COLUMN)}${summary}`;
}

export const TOP_HELP = `coffer — a small secrets vault for Kubernetes

Usage: coffer <command> [subcommand] [options]
       coffer --help | --version

Commands:
${[...COMMANDS.map((c) => helpLine(c.subcommands.length ? `${c.name} ${c.subcommands.join('|')}` : c.name, c.summary)), helpLine('help [command]', 'show help for a command')].join('\n')}

Client commands (login, logout, secret, token, role, cluster, audit, snapshot)
talk to COFFER_ADDR (default http://127.0.0.1:8200; --addr overrides it). The
token is the first of: --token, COFFER_TOKEN, the login file written by
'coffer login' ($COFFER_TOKEN_FILE, default ~/.config/coffer/token), and
VAULT_BOOTSTRAP_TOKEN (set inside server pods). Each prints human text, or with
--json one JSON document (so do version and dev-cluster status|restart|join).
Unknown subcommands and flags are errors, before the command name too; so is a
value the CLI can check itself (a --charset, a --length, a HOST:PORT).
Run 'coffer <command> --help' for details.

Exit codes:
  0  ok
  1  the server refused the request (a 4xx or 5xx answer; audit verify: the chain breaks)
  2  usage: unknown command, subcommand or flag, a missing argument, an invalid value
  3  the server is unreachable (connection refused, DNS failure, no answer within 60 s)`;

export const SERVER_HELP = `Usage: coffer server [--dev]

Runs one vault node. Configuration comes from the environment (see README):
  VAULT_DATA_DIR, VAULT_API_ADDR, VAULT_RAFT_ADDR, VAULT_RAFT_ADVERTISE, VAULT_NODE_ID,
  VAULT_PEERS, VAULT_KMS_MODE, VAULT_KMS_KEY_ID, VAULT_LOCAL_MASTER_KEY,
  VAULT_DEK_CACHE_TTL_SECS, VAULT_KMS_REWRAP_*, VAULT_BOOTSTRAP_TOKEN,
  VAULT_READ_ALLOWLIST, VAULT_TRUST_PROXY, VAULT_TLS_CERT_FILE, VAULT_TLS_KEY_FILE,
  VAULT_MAX_VALUE_BYTES, and for the WireGuard overlay VAULT_MGMT_ADDR (host:port or
  overlay:PORT) and VAULT_OVERLAY_CIDR (see WIREGUARD.md). Without VAULT_RAFT_ADVERTISE a
  node advertises its own VAULT_PEERS entry. A malformed variable stops the node with a
  message naming it.

Options:
  --dev    development mode: 127.0.0.1:8200, allowlist 127.0.0.1, local KMS with a
           master key generated once into the data folder (DEV-ONLY file), and a
           bootstrap token generated once and printed. Not for real secrets.
  --help   show this help`;

export const SECRET_HELP = `Usage:
  coffer secret get NAME [--version N] [--stale]          print the value (needs an allowlisted address)
  coffer secret put NAME [--cas N] [--allow-empty]        store stdin as the next version
  coffer secret put NAME --value V [--cas N]              (a value on the command line lands in shell history)
  coffer secret rotate NAME [--length N] [--charset ${Object.keys(CHARSETS).join('|')}]
  coffer secret delete NAME                               delete every version
  coffer secret meta NAME                                 versions and key ids, never values
  coffer secret list [PREFIX] [--recursive] [--limit N]   one folder level: the secrets directly under
                                                          PREFIX and its folders (ending in '/'), one per
                                                          line; --recursive: every name below PREFIX

  PREFIX is matched as text: 'app/' lists the folder app, 'app' also matches 'apple'.
  put reads stdin to its end and strips ONE trailing newline (so 'echo v |' stores "v");
  an empty value is refused unless --allow-empty. --version N and --limit N are >= 1;
  --cas 0 means "only if the secret does not exist yet". rotate stores a random value of
  --length ${ROTATE_LENGTH_MIN} to ${ROTATE_LENGTH_MAX} characters (default ${DEFAULT_ROTATE_LENGTH}) from --charset (default alphanumeric).
  Every subcommand takes --json (get --json prints the value with its version and date).`;

export const TOKEN_HELP = `Usage:
  coffer token create NAME --role ROLE [--ttl SECONDS]   prints ONLY the token on stdout (once: store it
                                                         now) and what it is on stderr, so
                                                         'coffer token create ops --role admin | coffer login'
                                                         works; --json prints {name, role, token, expires_at}
  coffer token lookup [NAME]                             NAME's metadata (manage_tokens); without NAME, your own
  coffer token self                                      your own token: name, role, expiry and the role's rules
  coffer token list
  coffer token revoke NAME

  Every subcommand takes --json. No subcommand ever prints a token other than create.`;

export const LOGIN_HELP = `Usage:
  coffer login [--addr URL]          read a token, check it, keep it for the next commands
  echo "$TOKEN" | coffer login       (or: coffer token create ops --role admin | coffer login)

  The token is read from stdin when it is piped (its first line), or typed at a
  prompt that does not echo it; it never appears on a command line. It is checked
  first (GET /v1/auth/self): a refused token writes nothing and exits 1. Then it is
  written to $COFFER_TOKEN_FILE, default \${XDG_CONFIG_HOME:-$HOME/.config}/coffer/token,
  mode 0600 in a 0700 folder, replacing the file in one step (rename).
  Prints 'logged in as NAME (role ROLE, expires …)' on stderr; --json prints
  {name, role, expires_at, token_file} on stdout.

  Client commands use the first token of: --token, COFFER_TOKEN, this file,
  VAULT_BOOTSTRAP_TOKEN. 'coffer logout' removes the file.`;

export const LOGOUT_HELP = `Usage:
  coffer logout [--json]   remove the login file ($COFFER_TOKEN_FILE or ~/.config/coffer/token)

  Exits 0 whether or not there was one, saying which. The token itself stays valid
  until it expires or 'coffer token revoke NAME' revokes it.`;

export const SNAPSHOT_HELP = `Usage:
  coffer snapshot save FILE      the replicated state (ciphertext, wrapped DEKs, token digests;
                                 never a value or a raw token) into FILE, written 0600 as
                                 FILE.tmp and renamed once complete; FILE '-' writes to stdout
  coffer snapshot restore FILE   replace the state with FILE's image ('-' reads stdin); every
                                 token revoked since the image was taken stays revoked

  Needs an admin token. --json prints {file, bytes} (save) or {restored, secrets} (restore);
  'save - --json' is refused (the image goes to stdout).`;

export const COMPLETION_HELP = `Usage:
  coffer completion bash   print a bash completion script
  coffer completion zsh    print a zsh completion script

  Commands, subcommands and flags, generated from coffer's own command table.
  bash, for this shell:    source <(coffer completion bash)
        for every shell:   coffer completion bash > \${XDG_DATA_HOME:-$HOME/.local/share}/bash-completion/completions/coffer
  zsh, for this shell:     source <(coffer completion zsh)      (after compinit)
       for every shell:    mkdir -p ~/.zfunc && coffer completion zsh > ~/.zfunc/_coffer
                           and in ~/.zshrc, before compinit: fpath=(~/.zfunc $fpath)`;

export const ROLE_HELP = `Usage:
  coffer role put NAME --file rules.json   rules.json: {"rules":[{"paths":["app/*"],"actions":["create","update"]}]}
  coffer role get NAME
  coffer role list
  coffer role delete NAME`;

export const CLUSTER_HELP = `Usage:
  coffer cluster status                       node id, leader, term, commit/applied index and peers (admin token)
  coffer cluster add-peer ID HOST:PORT        add a member (learner first, promoted once caught up)
  coffer cluster remove-peer ID
  coffer cluster transfer-leadership [ID]
  coffer cluster members                      the declared members the autopilot keeps membership equal to
  coffer cluster members set ID=HOST:PORT...  declare the members (without VAULT_MEMBERS_FILE); the leader adds,
                                              promotes and removes one member at a time until Raft matches
  coffer cluster members clear                stop declaring (the autopilot then changes nothing)`;

/** What one subcommand takes: its positional arguments (min..max, named for messages) and its flags. */
export interface SubSpec {
  args: readonly string[];
  min: number;
  max: number;
  flags: readonly string[];
}

const sub = (args: readonly string[], flags: readonly string[] = [], min = args.length, max = args.length): SubSpec => ({ args, min, max, flags });

/** Flags every client command takes. */
export const CLIENT_FLAGS = ['addr', 'token', 'json', 'help'] as const;

/** The client commands' subcommands (every one in COMMANDS), each with what it takes. */
export const CLIENT_SPECS: Readonly<Record<string, Readonly<Record<string, SubSpec>>>> = {
  secret: {
    get: sub(['NAME'], ['version', 'stale']),
    put: sub(['NAME'], ['cas', 'value', 'allow-empty']),
    rotate: sub(['NAME'], ['length', 'charset']),
    delete: sub(['NAME']),
    meta: sub(['NAME']),
    list: sub(['PREFIX'], ['recursive', 'limit'], 0, 1),
  },
  token: {
    create: sub(['NAME'], ['role', 'ttl']),
    lookup: sub(['NAME'], [], 0, 1),
    self: sub([]),
    list: sub([]),
    revoke: sub(['NAME']),
  },
  role: {
    put: sub(['NAME'], ['file']),
    get: sub(['NAME']),
    list: sub([]),
    delete: sub(['NAME']),
  },
  cluster: {
    status: sub([]),
    'add-peer': sub(['ID', 'HOST:PORT']),
    'remove-peer': sub(['ID']),
    'transfer-leadership': sub(['ID'], [], 0, 1),
    members: sub(['set|clear', 'ID=HOST:PORT'], [], 0, Infinity),
  },
  snapshot: {
    save: sub(['FILE']),
    restore: sub(['FILE']),
  },
};

/**
 * Client commands without subcommands: what each takes, flags included (login reads its
 * token from stdin or a prompt, so it takes no --token; logout talks to no server).
 */
export const ROOT_SPECS: Readonly<Record<string, SubSpec>> = {
  login: sub([], ['addr', 'json', 'help']),
  logout: sub([], ['json', 'help']),
};

/** `coffer completion SHELL`: runs locally, so none of the client flags. */
export const COMPLETION_SPECS: Readonly<Record<string, SubSpec>> = {
  bash: sub([], []),
  zsh: sub([], []),
};

/**
 * Checks a command line against its spec before anything is sent:
 * a missing or unknown subcommand, an unknown flag, a missing or extra argument.
 */
export function checkClientArgs(args: ParsedArgs, specs: Readonly<Record<string, SubSpec>>, common: readonly string[] = CLIENT_FLAGS): void {
  const verb = args.positionals[1];
  const names = Object.keys(specs);
  if (verb === undefined) throw new UsageError(`missing subcommand (${names.join(', ')})`);
  const spec = Object.hasOwn(specs, verb) ? specs[verb] : undefined;
  if (spec === undefined) throw new UsageError(`unknown subcommand '${verb}' (one of ${names.join(', ')})`);
  checkFlags(args, [...common, ...spec.flags]);
  const given = args.positionals.length - 2;
  if (given < spec.min) throw new UsageError(`${verb}: missing ${spec.args[given]}`);
  if (given > spec.max) throw new UsageError(`${verb}: unexpected argument '${args.positionals[2 + spec.max]}'`);
}

/** The same for a command without subcommands (its spec lists every flag it takes). */
export function checkRootArgs(args: ParsedArgs, spec: SubSpec): void {
  checkFlags(args, spec.flags);
  const given = args.positionals.length - 1;
  if (given < spec.min) throw new UsageError(`missing ${spec.args[given]}`);
  if (given > spec.max) throw new UsageError(`unexpected argument '${args.positionals[1 + spec.max]}'`);
}

/** Members the server would refuse (bad id or HOST:PORT, a duplicate, too many) are a usage error here: its own rule. */
function checkedMembers(members: DeclaredMember[]): DeclaredMember[] {
  const problem = memberListProblem(members);
  if (problem) throw new UsageError(problem);
  return members;
}

async function membersCommand(args: ParsedArgs, client: ClientOptions): Promise<void> {
  const [, , action, ...entries] = args.positionals;
  switch (action) {
    case undefined:
      return emit(args, await call(client, 'GET', '/v1/admin/cluster/members'));
    case 'set': {
      if (entries.length === 0) throw new UsageError('missing ID=HOST:PORT (one per member)');
      const members = checkedMembers(
        entries.map((e) => {
          const eq = e.indexOf('=');
          if (eq <= 0) throw new UsageError(`expected ID=HOST:PORT, got ${JSON.stringify(e)}`);
          return { id: e.slice(0, eq), address: e.slice(eq + 1) };
        }),
      );
      return emit(args, await call(client, 'PUT', '/v1/admin/cluster/members', { members }));
    }
    case 'clear':
      if (entries.length > 0) throw new UsageError(`members clear: unexpected argument '${entries[0]}'`);
      return emit(args, await call(client, 'DELETE', '/v1/admin/cluster/members'));
    default:
      throw new UsageError(`unknown cluster members action '${action}' (set, clear)`);
  }
}

/** A change with no answer body: `human` as text, or {key: name} with --json. */
function done(args: ParsedArgs, key: string, name: string, human: string): void {
  emit(args, { [key]: name }, () => human);
}

function need(args: ParsedArgs, i: number, what: string): string {
  const v = args.positionals[i];
  if (!v) throw new UsageError(`missing ${what}`);
  return v;
}

/** The value on stdin, less ONE trailing newline (documented in SECRET_HELP). */
async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) throw new UsageError('pipe the value on stdin, or pass --value');
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\n$/, '');
}

/** The largest page the server answers (GET /v1/metadata caps limit there). */
const LIST_PAGE = 1000;

interface ListPage {
  names: string[];
  folders?: string[];
  next_cursor: string | null;
}

/** `secret list`: one folder level (delimiter=/) or every name (--recursive), all pages or the first --limit entries. */
async function listSecrets(args: ParsedArgs, client: ClientOptions): Promise<void> {
  const prefix = args.positionals[2] ?? '';
  const recursive = args.flags.has('recursive');
  const limit = intFlag(args, 'limit', 1);
  const names: string[] = [];
  const folders: string[] = [];
  let cursor: string | null = null;
  for (;;) {
    const left = limit === undefined ? LIST_PAGE : limit - names.length - folders.length;
    const q = new URLSearchParams();
    if (prefix) q.set('prefix', prefix);
    if (!recursive) q.set('delimiter', '/');
    q.set('limit', String(Math.min(left, LIST_PAGE)));
    if (cursor) q.set('cursor', cursor);
    const page = (await call(client, 'GET', `/v1/metadata?${q}`)) as ListPage;
    names.push(...page.names);
    folders.push(...(page.folders ?? []));
    cursor = page.next_cursor;
    if (cursor === null || (limit !== undefined && names.length + folders.length >= limit)) break;
  }
  if (wantsJson(args)) return printJson(recursive ? { prefix, names } : { prefix, names, folders });
  printLines([...names, ...folders].sort());
}

export async function secretCommand(args: ParsedArgs, client: ClientOptions): Promise<void> {
  const verb = need(args, 1, 'subcommand (get, put, rotate, delete, meta, list)');
  if (verb === 'list') return listSecrets(args, client);
  const plain = need(args, 2, 'secret NAME');
  const name = encodeName(plain);
  switch (verb) {
    case 'get': {
      const q = new URLSearchParams();
      const version = intFlag(args, 'version', 1);
      if (version !== undefined) q.set('version', String(version));
      if (args.flags.has('stale')) q.set('consistency', 'stale');
      const res = (await call(client, 'GET', `/v1/secrets/${name}?${q}`)) as { value: string };
      return emit(args, res, () => res.value);
    }
    case 'put': {
      const cas = intFlag(args, 'cas', 0);
      const value = flag(args, 'value') ?? (await readStdin());
      if (value === '' && !args.flags.has('allow-empty')) throw new UsageError('refusing to store an empty value (use --allow-empty)');
      return emit(args, await call(client, 'PUT', `/v1/secrets/${name}`, cas === undefined ? { value } : { value, cas }));
    }
    case 'rotate': {
      const body: Record<string, unknown> = {};
      const length = intFlag(args, 'length', ROTATE_LENGTH_MIN, ROTATE_LENGTH_MAX);
      const charset = flag(args, 'charset');
      if (charset !== undefined && !Object.hasOwn(CHARSETS, charset)) {
        throw new UsageError(`--charset must be one of ${Object.keys(CHARSETS).join(', ')}, got ${JSON.stringify(charset)}`);
      }
      if (length !== undefined) body.length = length;
      if (charset !== undefined) body.charset = charset;
      return emit(args, await call(client, 'POST', `/v1/secrets/${name}:rotate`, body));
    }
    case 'delete':
      await call(client, 'DELETE', `/v1/secrets/${name}`);
      return done(args, 'deleted', plain, `deleted ${plain}`);
    case 'meta':
      return emit(args, await call(client, 'GET', `/v1/metadata/${name}`));
    default:
      throw new UsageError(`unknown secret subcommand ${verb}`);
  }
}

interface Created {
  name: string;
  role: string;
  token: string;
  expires_at: string | null;
}

export async function tokenCommand(args: ParsedArgs, client: ClientOptions): Promise<void> {
  const verb = need(args, 1, 'subcommand (create, lookup, self, list, revoke)');
  switch (verb) {
    case 'create': {
      const name = need(args, 2, 'token NAME');
      const role = flag(args, 'role');
      if (!role) throw new UsageError('--role is required');
      const ttl = intFlag(args, 'ttl', 1);
      const res = (await call(client, 'POST', '/v1/tokens', ttl === undefined ? { name, role } : { name, role, ttl_secs: ttl })) as Created;
      if (wantsJson(args)) return printJson(res);
      // Only the token on stdout, so `coffer token create … | coffer login` (or > file) takes exactly it.
      process.stderr.write(`token ${res.name} (role ${res.role}, ${res.expires_at ? `expires ${res.expires_at}` : 'never expires'}): shown once, store it now\n`);
      process.stdout.write(res.token + '\n');
      return;
    }
    case 'lookup':
    case 'self': {
      const target = args.positionals[2];
      return emit(args, await call(client, 'GET', target === undefined ? '/v1/auth/self' : `/v1/tokens/${encodeURIComponent(target)}`));
    }
    case 'list': {
      const res = (await call(client, 'GET', '/v1/tokens')) as { tokens: Record<string, unknown>[] };
      return emit(args, res, () => table(res.tokens));
    }
    case 'revoke': {
      const name = need(args, 2, 'token NAME');
      await call(client, 'DELETE', `/v1/tokens/${encodeURIComponent(name)}`);
      return done(args, 'revoked', name, `revoked ${name}`);
    }
    default:
      throw new UsageError(`unknown token subcommand ${verb}`);
  }
}

export async function roleCommand(args: ParsedArgs, client: ClientOptions): Promise<void> {
  const verb = need(args, 1, 'subcommand (put, get, list, delete)');
  if (verb === 'list') {
    const res = (await call(client, 'GET', '/v1/roles')) as { roles: Array<{ name: string }> };
    return emit(args, res, () => res.roles.map((r) => r.name).join('\n'));
  }
  const plain = need(args, 2, 'role NAME');
  const name = encodeURIComponent(plain);
  switch (verb) {
    case 'put': {
      const file = flag(args, 'file');
      if (!file) throw new UsageError('--file rules.json is required');
      let body: unknown;
      try {
        body = JSON.parse(fs.readFileSync(file, 'utf8'));
      } catch (err) {
        throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
      }
      return emit(args, await call(client, 'PUT', `/v1/roles/${name}`, body));
    }
    case 'get':
      return emit(args, await call(client, 'GET', `/v1/roles/${name}`));
    case 'delete':
      await call(client, 'DELETE', `/v1/roles/${name}`);
      return done(args, 'deleted', plain, `deleted ${plain}`);
    default:
      throw new UsageError(`unknown role subcommand ${verb}`);
  }
}

export async function clusterCommand(args: ParsedArgs, client: ClientOptions): Promise<void> {
  const verb = need(args, 1, 'subcommand (status, add-peer, remove-peer, transfer-leadership, members)');
  switch (verb) {
    case 'status':
      return emit(args, await call(client, 'GET', '/v1/admin/cluster'));
    case 'add-peer': {
      const [member] = checkedMembers([{ id: need(args, 2, 'member ID'), address: need(args, 3, 'HOST:PORT') }]);
      return emit(args, await call(client, 'POST', '/v1/admin/cluster/peers', member));
    }
    case 'remove-peer':
      return emit(args, await call(client, 'DELETE', `/v1/admin/cluster/peers/${encodeURIComponent(need(args, 2, 'member ID'))}`));
    case 'transfer-leadership': {
      const to = args.positionals[2];
      return emit(args, await call(client, 'POST', '/v1/admin/cluster/transfer-leadership', to ? { to } : {}));
    }
    case 'members':
      return membersCommand(args, client);
    default:
      throw new UsageError(`unknown cluster subcommand ${verb}`);
  }
}
