// One folder level of the name listing (GET /v1/metadata?delimiter=/): the
// names directly under a prefix and the folders below it, as one sorted
// sequence. A folder is shown only when the caller may list at least one
// name in it, so a role never learns a folder name it could not list. Once a
// folder is known to be visible (or no rule can reach into it) the scan
// seeks past it instead of reading every name inside: listing a level of a
// 100k-name store reads about one name per entry shown.
//
// Pure: names come from `read` (StateReader.namesFrom), rights from two predicates.

/** Names from `from` (included when `inclusive`) up to, not including, `below` (null: no bound), in order; at most `limit`. */
export type ReadNames = (from: string, inclusive: boolean, below: string | null, limit: number) => string[];

export interface FolderListingInput {
  read: ReadNames;
  /** Any prefix; an entry is what follows it up to and including the next '/' (a folder), or the whole rest (a name). */
  prefix: string;
  /** The last entry of the previous page (a name, or a folder ending in '/'); '' to start. */
  after: string;
  /** Entries (names and folders together) per page, at least 1. */
  limit: number;
  /** May the caller list this name? */
  listable: (name: string) => boolean;
  /** Could the caller list some name below this folder (which ends in '/')? When not, the folder is skipped unread. */
  reachable: (folder: string) => boolean;
}

export interface FolderListing {
  names: string[];
  folders: string[];
  /** The page's last entry (what the next page resumes after), or null for an empty page. */
  last: string | null;
  /** Whether another visible entry follows this page. */
  more: boolean;
}

/** The first string after every string that starts with `folder` ('0' is the character after '/'). */
export function folderEnd(folder: string): string {
  return folder.slice(0, -1) + '0';
}

/** The first string after every string that starts with `prefix`, or null when `prefix` is '' (no bound). */
export function prefixEnd(prefix: string): string | null {
  if (prefix === '') return null;
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

/** Reads before a seek are small (the folder after a seek is usually skipped soon); sequential reads grow. */
const FIRST_BATCH = 2;
const MAX_BATCH = 512;

/** A forward cursor over the names in a range, able to skip a whole folder in one step. */
class NameScanner {
  private buf: string[] = [];
  private i = 0;
  private exhausted = false;
  private batch = FIRST_BATCH;

  constructor(
    private readonly read: ReadNames,
    private from: string,
    private inclusive: boolean,
    private readonly below: string | null,
  ) {}

  /** The next name, not consumed; undefined at the end. */
  peek(): string | undefined {
    if (this.i >= this.buf.length) {
      if (this.exhausted) return undefined;
      this.buf = this.read(this.from, this.inclusive, this.below, this.batch);
      this.i = 0;
      if (this.buf.length < this.batch) this.exhausted = true;
      this.batch = Math.min(this.batch * 2, MAX_BATCH);
    }
    return this.buf[this.i];
  }

  /** Consumes the name peek() returned. */
  take(): void {
    const name = this.buf[this.i++];
    if (name !== undefined) {
      this.from = name;
      this.inclusive = false;
    }
  }

  /** Skips every remaining name that starts with `folder` (ends in '/'). */
  seekPast(folder: string): void {
    const key = folderEnd(folder);
    while (this.i < this.buf.length && this.buf[this.i]! < key) this.i++;
    if (this.i >= this.buf.length && key > this.from) {
      this.from = key;
      this.inclusive = true;
      // The next read starts past a folder: its size starts small again.
      this.batch = FIRST_BATCH;
    }
  }
}

export function listFolderLevel(input: FolderListingInput): FolderListing {
  const { prefix, limit, listable } = input;
  const memo = new Map<string, boolean>();
  const reachable = (folder: string): boolean => {
    let r = memo.get(folder);
    if (r === undefined) memo.set(folder, (r = input.reachable(folder)));
    return r;
  };

  // Resume after the cursor: past the whole of a folder, or just after a name; never before the prefix.
  let from = prefix;
  let inclusive = true;
  if (input.after !== '') {
    const key = input.after.endsWith('/') ? folderEnd(input.after) : input.after;
    const keyInclusive = input.after.endsWith('/');
    if (key > from || (key === from && !keyInclusive)) {
      from = key;
      inclusive = keyInclusive;
    }
  }
  const scan = new NameScanner(input.read, from, inclusive, prefixEnd(prefix));

  /** Whether some name in `folder` (the next name starts with it) is listable; consumes the folder when not. */
  const folderVisible = (folder: string): boolean => {
    for (let m = scan.peek(); m !== undefined && m.startsWith(folder); m = scan.peek()) {
      // The shallowest folder on m's path (starting with `folder` itself) that no rule reaches into is skipped unread.
      let pruned = false;
      for (let s = folder.length - 1; s !== -1; s = m.indexOf('/', s + 1)) {
        const g = m.slice(0, s + 1);
        if (!reachable(g)) {
          scan.seekPast(g);
          pruned = true;
          break;
        }
      }
      if (pruned) continue;
      if (listable(m)) return true;
      scan.take();
    }
    return false;
  };

  const names: string[] = [];
  const folders: string[] = [];
  let last: string | null = null;
  let more = false;
  for (let n = scan.peek(); n !== undefined; n = scan.peek()) {
    const slash = n.indexOf('/', prefix.length);
    let entry: string;
    let isFolder: boolean;
    if (slash === -1) {
      scan.take();
      if (!listable(n)) continue;
      entry = n;
      isFolder = false;
    } else {
      entry = n.slice(0, slash + 1);
      if (!folderVisible(entry)) continue;
      scan.seekPast(entry);
      isFolder = true;
    }
    if (names.length + folders.length === limit) {
      more = true;
      break;
    }
    (isFolder ? folders : names).push(entry);
    last = entry;
  }
  return { names, folders, last, more };
}
