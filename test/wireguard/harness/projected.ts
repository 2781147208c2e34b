// Writes a folder the way the kubelet projects a Secret or ConfigMap volume:
// the files live in a timestamped folder, `..data` is a symlink to it, and
// each visible name is a symlink through `..data`. An update writes a new
// folder and swaps `..data` atomically (rename of a new symlink), so readers
// never see a half-written file and inotify on the visible names sees nothing.
import fs from 'node:fs';
import path from 'node:path';

let seq = 0;

export function writeProjected(dir: string, files: Record<string, string>, mode = 0o644): void {
  fs.mkdirSync(dir, { recursive: true });
  const stamp = `..${new Date().toISOString().replace(/[-:.]/g, '_')}_${process.pid}_${++seq}`;
  const target = path.join(dir, stamp);
  fs.mkdirSync(target);
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(target, name), text, { mode });
  const tmp = path.join(dir, '..data_tmp');
  fs.rmSync(tmp, { force: true });
  fs.symlinkSync(stamp, tmp);
  let old: string | null = null;
  try {
    old = fs.readlinkSync(path.join(dir, '..data'));
  } catch {
    // first write
  }
  fs.renameSync(tmp, path.join(dir, '..data'));
  // Visible names: symlinks through ..data; names no longer projected disappear.
  for (const name of fs.readdirSync(dir)) {
    if (name.startsWith('..')) continue;
    if (!(name in files)) fs.rmSync(path.join(dir, name), { force: true });
  }
  for (const name of Object.keys(files)) {
    const link = path.join(dir, name);
    let present = true;
    try {
      fs.lstatSync(link);
    } catch {
      present = false;
    }
    if (!present) fs.symlinkSync(path.join('..data', name), link);
  }
  if (old && old !== stamp) fs.rmSync(path.join(dir, old), { recursive: true, force: true });
}
