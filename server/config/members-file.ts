// VAULT_MEMBERS_FILE: the members this cluster should have (the operator's
// `<vc>-members` ConfigMap), one `id=host:port` per line, the syntax of one
// VAULT_PEERS entry. The leader's autopilot moves Raft membership toward it.
//
// An empty file (nothing but blank lines and comments) declares nothing: the
// autopilot then changes nothing, never "remove every member". A duplicate id
// or address makes the whole file malformed, and the last good list stays.
import { memberListProblem, type DeclaredMember } from '../store/members.js';
export type { DeclaredMember } from '../store/members.js';
import { FileLineError, meaningfulLines, quoteEntry, readWatchedFile, type WatchedFileRead } from './watched-file.js';

/** Parses the file's text; throws FileLineError naming the first bad line. */
export function parseMembersFile(text: string): DeclaredMember[] {
  const members: DeclaredMember[] = [];
  for (const { line, entry } of meaningfulLines(text)) {
    const eq = entry.indexOf('=');
    if (eq <= 0 || /[\s,]/.test(entry)) throw new FileLineError(line, `expected one id=host:port, got ${quoteEntry(entry)}`);
    members.push({ id: entry.slice(0, eq), address: entry.slice(eq + 1) });
    const problem = memberListProblem(members);
    if (problem) throw new FileLineError(line, problem);
  }
  return members;
}

export type MembersFileRead = WatchedFileRead<DeclaredMember[]>;

export function readMembersFile(file: string): MembersFileRead {
  return readWatchedFile(file, parseMembersFile);
}
