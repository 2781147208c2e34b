// `coffer snapshot save|restore`: the replicated state image through the admin API.
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { call, callBytes, type ClientOptions } from './client.js';
import { UsageError, type ParsedArgs } from './args.js';
import { emit, wantsJson } from './output.js';

export async function snapshotCommand(args: ParsedArgs, client: ClientOptions): Promise<void> {
  const verb = args.positionals[1];
  const file = args.positionals[2]!;
  switch (verb) {
    case 'save':
      return save(args, client, file);
    case 'restore':
      return restore(args, client, file);
    default:
      throw new UsageError(`unknown snapshot subcommand ${verb}`);
  }
}

async function save(args: ParsedArgs, client: ClientOptions, file: string): Promise<void> {
  if (file === '-' && wantsJson(args)) throw new UsageError("save - writes the image to stdout: no room for --json there");
  const res = await callBytes(client, 'GET', '/v1/admin/snapshot');
  const body = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
  if (file === '-') {
    await pipeline(body, process.stdout, { end: false });
    return;
  }
  // 0600 from its creation (the image holds token digests and wrapped keys), complete before it takes FILE's name.
  const tmp = `${file}.tmp`;
  fs.rmSync(tmp, { force: true });
  let fd: number;
  try {
    fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
  } catch (err) {
    throw new UsageError(`cannot write ${tmp}: ${(err as Error).message}`);
  }
  try {
    fs.fchmodSync(fd, 0o600);
    await pipeline(body, fs.createWriteStream('', { fd, autoClose: false }));
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (err) {
    try {
      fs.closeSync(fd);
    } catch {
      /* already closed */
    }
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  const bytes = fs.statSync(file).size;
  emit(args, { file, bytes }, () => `saved ${bytes} bytes to ${file}`);
}

async function restore(args: ParsedArgs, client: ClientOptions, file: string): Promise<void> {
  let image: Buffer;
  try {
    image = fs.readFileSync(file === '-' ? 0 : file);
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
  }
  if (image.length === 0) throw new UsageError(`${file} is empty`);
  emit(args, await call(client, 'POST', '/v1/admin/snapshot', image));
}
