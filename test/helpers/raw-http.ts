// Raw HTTP over a TCP socket: sends exactly the bytes given (malformed
// request lines, unknown methods, control bytes, oversized headers), so tests
// reach what Node's own HTTP parser refuses. Reads one response.
import net from 'node:net';

export interface RawResponse {
  /** 0 when nothing (or no status line) came back. */
  status: number;
  /** Lower-cased header names; the last value wins. */
  headers: Record<string, string>;
  text: string;
  /** Every byte received (all responses, when more than one came). */
  raw: Buffer;
  /** The parsed JSON body, or null when it is not JSON. */
  body: any;
  /** Whether the server closed the connection. */
  closed: boolean;
}

export interface RawOptions {
  localAddress?: string;
  /** Give up waiting after this long (default 5000 ms) and return what arrived. */
  timeoutMs?: number;
  /** Half-close our side after sending (default false). */
  end?: boolean;
  /** Read until the server closes (or the timeout), not just the first response. */
  untilClose?: boolean;
  /** Reset the connection (TCP RST) right after sending, without waiting for an answer. */
  reset?: boolean;
}

/** Sends `bytes` to the host:port of `base` and resolves with the first response (or what arrived before close/timeout). */
export function rawRequest(base: string, bytes: string | Buffer, opts: RawOptions = {}): Promise<RawResponse> {
  const url = new URL(base);
  return new Promise((resolve) => {
    const socket = net.connect({ host: url.hostname, port: Number(url.port), localAddress: opts.localAddress });
    let buf = Buffer.alloc(0);
    let settled = false;
    let closed = false;
    const finish = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(parse(buf, closed));
    };
    const timer = setTimeout(finish, opts.timeoutMs ?? 5000);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!opts.untilClose && complete(buf)) finish();
    });
    socket.on('close', () => {
      closed = true;
      finish();
    });
    socket.on('error', () => {
      closed = true;
      finish();
    });
    socket.on('connect', () => {
      socket.write(bytes, () => {
        // A moment first, so the server has read the bytes and sees a reset rather than an early end.
        if (opts.reset) {
          setTimeout(() => {
            socket.resetAndDestroy();
            closed = true;
            finish();
          }, 50);
        }
      });
      if (opts.end) socket.end();
    });
  });
}

function headEnd(buf: Buffer): number {
  return buf.indexOf('\r\n\r\n');
}

function complete(buf: Buffer): boolean {
  const end = headEnd(buf);
  if (end < 0) return false;
  const head = buf.subarray(0, end).toString('latin1');
  const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (m) return buf.length >= end + 4 + Number(m[1]);
  // Chunked: the terminating chunk.
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) return buf.subarray(end + 4).includes('0\r\n\r\n');
  return false;
}

function parse(buf: Buffer, closed: boolean): RawResponse {
  const end = headEnd(buf);
  const head = (end < 0 ? buf : buf.subarray(0, end)).toString('latin1');
  const lines = head.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  let text = end < 0 ? '' : buf.subarray(end + 4).toString('utf8');
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) text = dechunk(text);
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  return { status: m ? Number(m[1]) : 0, headers, text, raw: buf, body, closed };
}

function dechunk(text: string): string {
  let out = '';
  let rest = text;
  for (;;) {
    const nl = rest.indexOf('\r\n');
    if (nl < 0) break;
    const size = parseInt(rest.slice(0, nl), 16);
    if (!Number.isFinite(size) || size === 0) break;
    out += rest.slice(nl + 2, nl + 2 + size);
    rest = rest.slice(nl + 2 + size + 2);
  }
  return out;
}
