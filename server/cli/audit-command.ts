// `coffer audit …`: read a node's audit trail through the admin API (tail,
// export), and check its hash chain, through the API or offline from a data
// folder or an exported file. Records print as the export's JSON lines
// (`"coffer_audit":1` first), so `coffer audit export` output can be checked
// with `coffer audit verify --file` like a VAULT_AUDIT_FILE.
import { call, type ClientOptions } from './client.js';
import { flag, intFlag, UsageError, type ParsedArgs } from './args.js';
import type { SubSpec } from './commands.js';
import { emit, wantsJson } from './output.js';

export const AUDIT_HELP = `Usage:
  coffer audit tail [--limit N] [--follow]       the newest N records (default 20) as JSON lines;
                                                 --follow keeps printing new ones (polls every second;
                                                 each poll is itself an admin.audit.read record)
  coffer audit export [--since ID]               every record after ID (default 0) as JSON lines
  coffer audit verify                            check this node's hash chain (GET /v1/admin/audit/verify)
  coffer audit verify --data-dir DIR [--file F]  offline, on the node's data folder (stopped or not):
                                                 DIR/audit.db, or an exported file F (VAULT_AUDIT_FILE,
                                                 captured stdout, coffer audit export), with the key in
                                                 DIR/audit-chain.key
  Needs an admin token. verify prints ok, checked, first_id, last_id, first_break and exits 1
  when the chain breaks (first_break names the first record missing, altered or out of place).
  --json: tail and export print one document {"records":[…]} instead of JSON lines (not with
  --follow); verify prints its result as one JSON object.`;

/** What each audit subcommand takes (checked by checkClientArgs before it runs). */
export const AUDIT_SPECS: Readonly<Record<string, SubSpec>> = {
  tail: { args: [], min: 0, max: 0, flags: ['limit', 'follow'] },
  export: { args: [], min: 0, max: 0, flags: ['since'] },
  verify: { args: [], min: 0, max: 0, flags: ['data-dir', 'file'] },
};

interface Page {
  records: Array<{ id: number } & Record<string, unknown>>;
  next_since: number | null;
}

const PAGE = 1000;
const FOLLOW_MS = 1000;

/** Where records go: JSON lines, or (--json) the elements of one {"records":[…]} document. */
let asDocument = false;
let printed = 0;

export async function auditCommand(args: ParsedArgs, client: ClientOptions): Promise<void> {
  const verb = args.positionals[1];
  asDocument = wantsJson(args) && verb !== 'verify';
  if (asDocument && args.flags.has('follow')) throw new UsageError('--follow prints JSON lines as they come; --json (one document) cannot follow');
  let failed = false;
  try {
    switch (verb) {
      case 'tail':
        return await tail(client, intFlag(args, 'limit', 1, PAGE) ?? 20, args.flags.has('follow'));
      case 'export':
        return await exportSince(client, intFlag(args, 'since', 0) ?? 0);
      default:
        return await other(args, client, verb);
    }
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    // Opened by the first record; closed even after a refusal, so what is on stdout still parses.
    if (asDocument && printed) process.stdout.write('\n]}\n');
    else if (asDocument && !failed) process.stdout.write('{"records":[]}\n');
  }
}

async function other(args: ParsedArgs, client: ClientOptions, verb: string | undefined): Promise<void> {
  switch (verb) {
    case 'verify':
      return verify(args, client);
    case undefined:
      throw new UsageError('missing subcommand (tail, export, verify)');
    default:
      throw new UsageError(`unknown audit subcommand ${verb}`);
  }
}

function page(client: ClientOptions, since: number, limit: number): Promise<Page> {
  return call(client, 'GET', `/v1/admin/audit?since=${since}&limit=${limit}`) as Promise<Page>;
}

function print(records: Page['records']): void {
  if (records.length === 0) return;
  const lines = records.map((r) => JSON.stringify({ coffer_audit: 1, ...r }));
  if (asDocument) process.stdout.write((printed ? ',\n' : '{"records":[\n') + lines.join(',\n'));
  else process.stdout.write(lines.join('\n') + '\n');
  printed += records.length;
}

async function exportSince(client: ClientOptions, since: number): Promise<void> {
  await drain(client, since);
}

/** Every record after `since`, page by page, until the newest. Returns the last id printed (or `since`). */
async function drain(client: ClientOptions, since: number): Promise<number> {
  let cursor = since;
  for (;;) {
    const p = await page(client, cursor, PAGE);
    print(p.records);
    const last = p.records[p.records.length - 1];
    if (last) cursor = last.id;
    if (p.next_since === null) return cursor;
  }
}

/**
 * The route pages oldest first; the newest id is found with few requests
 * (galloping, then bisecting on "the first record after X"), whatever the
 * size of the log and wherever its pruned prefix ends.
 */
async function newestId(client: ClientOptions): Promise<number> {
  const after = async (x: number): Promise<number | null> => (await page(client, x, 1)).records[0]?.id ?? null;
  let lo = await after(0);
  if (lo === null) return 0;
  let hi: number;
  for (let step = 1024; ; step *= 2) {
    const r = await after(lo + step);
    if (r === null) {
      hi = lo + step;
      break;
    }
    lo = r;
  }
  // A record lo exists; none after hi.
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const r = await after(mid);
    if (r === null) hi = mid;
    else lo = r;
  }
  return lo;
}

async function tail(client: ClientOptions, limit: number, follow: boolean): Promise<void> {
  if (limit < 1 || limit > PAGE) throw new UsageError(`--limit must be between 1 and ${PAGE}`);
  const newest = await newestId(client);
  const p = await page(client, Math.max(0, newest - limit), limit);
  print(p.records);
  if (!follow) return;
  let cursor = p.records[p.records.length - 1]?.id ?? newest;
  for (;;) {
    await new Promise((r) => setTimeout(r, FOLLOW_MS));
    cursor = await drain(client, cursor);
  }
}

interface VerifyResult {
  ok: boolean;
  first_break: { id: number; reason: string } | null;
}

async function verify(args: ParsedArgs, client: ClientOptions): Promise<void> {
  const dataDir = flag(args, 'data-dir');
  const file = flag(args, 'file');
  let result: VerifyResult;
  if (dataDir === undefined) {
    if (file !== undefined) throw new UsageError('--file needs --data-dir DIR (where audit-chain.key is)');
    result = (await call(client, 'GET', '/v1/admin/audit/verify')) as VerifyResult;
  } else {
    result = await verifyOffline(dataDir, file);
  }
  emit(args, result);
  if (!result.ok) {
    const b = result.first_break;
    process.stderr.write(`coffer audit verify: the chain breaks${b ? ` at record ${b.id}: ${b.reason}` : ''}\n`);
    process.exitCode = 1;
  }
}

/** Loaded only here: SQLite is not for the other client commands. */
async function verifyOffline(dataDir: string, file: string | undefined): Promise<VerifyResult> {
  const path = await import('node:path');
  const fs = await import('node:fs');
  const chain = await import('../audit/chain.js');
  const keyFile = path.join(dataDir, chain.CHAIN_KEY_FILE);
  if (!fs.existsSync(keyFile)) throw new UsageError(`no ${chain.CHAIN_KEY_FILE} in ${dataDir}: --data-dir must be the node's VAULT_DATA_DIR`);
  if (file !== undefined) {
    if (!fs.existsSync(file)) throw new UsageError(`no such file: ${file}`);
    return chain.verifyAuditExport(file, chain.readChainKey(keyFile));
  }
  const db = path.join(dataDir, 'audit.db');
  if (!fs.existsSync(db)) throw new UsageError(`no audit.db in ${dataDir}`);
  return chain.verifyAuditChain(db, keyFile);
}

