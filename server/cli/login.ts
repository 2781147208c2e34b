// `coffer login` / `coffer logout`: keep a checked token in the login file (token-file.ts)
// so it never has to be on a command line or in shell history.
import { call, type ClientOptions } from './client.js';
import { UsageError, type ParsedArgs } from './args.js';
import { printJson, wantsJson } from './output.js';
import { removeTokenFile, writeTokenFile } from './token-file.js';

interface Self {
  name: string;
  role: string;
  expires_at: string | null;
}

/** The first line of stdin, trimmed (a piped token: `… | coffer login`). */
async function tokenFromStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').split('\n')[0]!.trim();
}

/** Asks on the terminal without echoing what is typed (Ctrl-C aborts, exit 130). */
function tokenFromPrompt(): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write('Token (input hidden): ');
  return new Promise((resolve) => {
    let typed = '';
    const finish = () => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      process.stderr.write('\n');
    };
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n' || (ch === '\u0004' && typed === '')) {
          finish();
          return resolve(typed.trim());
        }
        if (ch === '\u0003') {
          finish();
          process.exit(130);
        }
        if (ch === '\u007f' || ch === '\b') typed = typed.slice(0, -1);
        else if (ch >= ' ') typed += ch;
      }
    };
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', onData);
  });
}

export async function loginCommand(args: ParsedArgs, addr: string): Promise<void> {
  const token = process.stdin.isTTY ? await tokenFromPrompt() : await tokenFromStdin();
  if (!token) throw new UsageError(process.stdin.isTTY ? 'no token typed' : 'no token on stdin (pipe it: echo "$TOKEN" | coffer login)');
  // Checked before anything is written: a refused token leaves the old file (or none) as it was.
  const client: ClientOptions = { addr, token };
  const self = (await call(client, 'GET', '/v1/auth/self')) as Self;
  const file = writeTokenFile(token);
  if (wantsJson(args)) return printJson({ name: self.name, role: self.role, expires_at: self.expires_at, token_file: file });
  process.stderr.write(`logged in as ${self.name} (role ${self.role}, ${self.expires_at ? `expires ${self.expires_at}` : 'never expires'}); token kept in ${file}\n`);
}

export function logoutCommand(args: ParsedArgs): void {
  const { file, removed } = removeTokenFile();
  if (wantsJson(args)) return printJson({ removed, token_file: file });
  process.stderr.write(removed ? `logged out: removed ${file} (the token stays valid until it expires or is revoked)\n` : `not logged in: no ${file}\n`);
}
