// Small files that must survive a crash whole: written beside their final
// name, fsynced, renamed over it, and the folder fsynced so the new name is
// on disk too. After a crash the file is the old one or the new one, never a
// mix, and never missing when the write returned.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** Makes a rename, a new name or a removal in `dir` durable. */
export function fsyncFolder(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Replaces `file` with `data`, durably and atomically. The temporary copy is
 * 0600 from its first byte (created exclusively under a unique name, and
 * fchmod'ed whatever the umask), so a secret written this way is never
 * readable by others, even for a moment; a failed write leaves no copy behind.
 */
export function writeFileDurably(file: string, data: string | Uint8Array): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    fs.fchmodSync(fd, 0o600);
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fsyncFolder(dir);
}
