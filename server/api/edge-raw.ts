// Requests Node's HTTP server refuses before Fastify sees them: whatever its
// parser rejects (an unknown method such as `FOO`, control bytes in the
// target, headers over the 16 KB limit, a malformed request line, a bad or
// doubled Content-Length, a bad chunk, a request not received in time), and
// CONNECT, which Node hands to a 'connect' listener or else drops silently.
// Each is answered like any other request (DESIGN §4): the contract's error
// body, an `x-request-id`, and first one audit record (actor `anonymous`,
// action `http.parse_error`, or `unknown` for CONNECT), durable before the
// response leaves; if it cannot be written, 503 audit_unavailable instead.
// The connection is closed after the answer: its parser cannot go on.
//
// A fault inside the body of a request Fastify is already serving (a bad
// chunk, a body not received in time) belongs to that request: the error is
// handed to its body reader, so the route answers 400 (408) and audits it
// under its own action, once; the connection closes after that answer.
//
// No answer and no record when the client has already gone (ECONNRESET,
// EPIPE, a socket no longer writable): nothing was refused, nobody is left to
// tell. What we answer, we audit; what we audit, we answer if we still can.
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AuditLog } from '../audit/audit-log.js';
import type { Allowlist } from '../../common/ipv4.js';
import { peerOf } from './context.js';
import { errorBody, outcomeFor, type ErrorCode } from './errors.js';

export interface RawRefusalDeps {
  audit: Pick<AuditLog, 'submit'>;
  nodeId: string;
  /** ISO time now. */
  now: () => string;
  /** VAULT_TRUSTED_PROXIES when VAULT_TRUST_PROXY is on, else null (as for routed requests). */
  trustedProxies: Allowlist | null;
  /** Counts the answer in the request metrics. */
  count: (route: string, method: string, status: number) => void;
}

/** Errors that mean the client went away rather than sent something we refuse. */
const GONE = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_DESTROYED', 'ERR_STREAM_PREMATURE_CLOSE']);

/** What the client is told for each llhttp error; anything else is "malformed HTTP request". */
const PARSER_MESSAGES: Record<string, string> = {
  HPE_INVALID_METHOD: 'unknown HTTP method',
  HPE_INVALID_URL: 'malformed request target',
  HPE_INVALID_VERSION: 'unsupported HTTP version',
  HPE_INVALID_HEADER_TOKEN: 'malformed header',
  HPE_INVALID_CONSTANT: 'malformed request line',
  HPE_INVALID_CONTENT_LENGTH: 'bad Content-Length',
  HPE_UNEXPECTED_CONTENT_LENGTH: 'bad Content-Length',
  HPE_INVALID_TRANSFER_ENCODING: 'bad Transfer-Encoding',
  HPE_INVALID_CHUNK_SIZE: 'bad chunk size',
  HPE_INVALID_EOF_STATE: 'request ended early',
  HPE_CR_EXPECTED: 'malformed line ending',
  HPE_LF_EXPECTED: 'malformed line ending',
  HPE_HEADER_OVERFLOW: 'request headers too large',
};

const MAX_TARGET = 300;

/** Status and message for a parser error, also when it reaches a route as a body error (error-handler.ts). */
export function parserRefusal(code: string | undefined): { status: number; message: string } | null {
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return { status: 408, message: 'request not received in time' };
  if (code === undefined || !code.startsWith('HPE_')) return null;
  return { status: code === 'HPE_HEADER_OVERFLOW' ? 431 : 400, message: PARSER_MESSAGES[code] ?? 'malformed HTTP request' };
}

/** How long a connection whose parser failed inside a request body waits for that request's answer. */
const IN_FLIGHT_LIMIT_MS = 30_000;

type InFlight = NodeJS.EventEmitter & { writableFinished?: boolean; req?: IncomingMessage };
const inFlight = (socket: Duplex): InFlight | null => (socket as { _httpMessage?: InFlight | null })._httpMessage ?? null;

export interface RawRefusals {
  /** For Fastify's `clientErrorHandler` (the server's 'clientError' event). */
  clientError: (err: Error & { code?: string }, socket: Duplex) => void;
  /** For the server's 'connect' event. */
  connect: (req: IncomingMessage, socket: Duplex) => void;
}

export function rawRefusals(deps: RawRefusalDeps): RawRefusals {
  // Node may report more than one error for one connection (data after the
  // first parse error, then the socket's own errors): one answer per connection.
  const handled = new WeakSet<object>();

  const refuse = (socket: Duplex, r: { status: number; code: ErrorCode; message: string; action: string; target: string | null; route: string; method: string }): void => {
    const id = randomUUID();
    const peer = peerOf(socket as unknown as { remoteAddress?: string }, deps.trustedProxies);
    // Nothing more is read from a connection whose parser has failed.
    socket.pause();
    const submit = (done: (err: Error | null) => void): void => {
      try {
        deps.audit.submit(
          {
            ts: deps.now(),
            node_id: deps.nodeId,
            request_id: id,
            actor: 'anonymous',
            client_ip: peer.addr,
            peer_ip: peer.addr,
            action: r.action,
            target: r.target,
            version: null,
            outcome: outcomeFor(r.status),
            status: r.status,
          },
          done,
        );
      } catch (err) {
        process.nextTick(done, err instanceof Error ? err : new Error(String(err)));
      }
    };
    submit((auditErr) => {
      const status = auditErr === null ? r.status : 503;
      const body = JSON.stringify(
        auditErr === null ? errorBody(r.code, r.message) : errorBody('audit_unavailable', 'audit log unavailable; request not completed'),
      );
      deps.count(r.route, r.method, status);
      afterInFlight(socket, () => answer(socket, id, status, body));
    });
  };

  return {
    clientError(err, socket) {
      if (handled.has(socket)) return;
      handled.add(socket);
      if (GONE.has(err.code ?? '') || socket.destroyed || !socket.writable) {
        socket.destroy();
        return;
      }
      const { status, message } = parserRefusal(err.code) ?? { status: 400, message: 'malformed HTTP request' };
      const current = inFlight(socket);
      const req = current?.req;
      if (current !== null && current.writableFinished !== true && req !== undefined && !req.complete) {
        // Inside the body of a request being served: that request fails (its body reader gets the
        // error, so the route answers it and audits it); then the connection closes.
        socket.pause();
        const limit = setTimeout(() => socket.destroy(), IN_FLIGHT_LIMIT_MS);
        limit.unref();
        socket.once('close', () => clearTimeout(limit));
        (err as { statusCode?: number }).statusCode = status;
        if (req.listenerCount('error') > 0) req.emit('error', err);
        afterInFlight(socket, () => closeGently(socket));
        return;
      }
      refuse(socket, { status, code: 'bad_request', message, action: 'http.parse_error', target: null, route: 'unparsed', method: 'unknown' });
    },
    connect(req, socket) {
      if (handled.has(socket)) return;
      handled.add(socket);
      if (socket.destroyed || !socket.writable) {
        socket.destroy();
        return;
      }
      // As for any method no route serves (PROPFIND, TRACE, …): 404, named by its target.
      const target = (req.url ?? '').slice(0, MAX_TARGET);
      refuse(socket, { status: 404, code: 'not_found', message: 'no such route', action: 'unknown', target, route: 'unmatched', method: 'CONNECT' });
    },
  };
}

/**
 * Runs `fn` once the response already on this connection (an earlier
 * keep-alive or pipelined request) has been sent, so ours never lands inside it.
 */
function afterInFlight(socket: Duplex, fn: () => void): void {
  const current = inFlight(socket);
  if (current === null || current.writableFinished === true || socket.destroyed) {
    fn();
    return;
  }
  let called = false;
  const next = (): void => {
    if (called) return;
    called = true;
    current.removeListener('finish', next);
    current.removeListener('close', next);
    // The next pipelined response may take its place; wait for that one too.
    setImmediate(() => afterInFlight(socket, fn));
  };
  current.once('finish', next);
  current.once('close', next);
}

/** Writes the whole response and closes. */
function answer(socket: Duplex, id: string, status: number, body: string): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const head =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
    `x-request-id: ${id}\r\n` +
    'content-type: application/json; charset=utf-8\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    'connection: close\r\n\r\n';
  closeGently(socket, head + body);
}

/**
 * Ends the connection after `last` and waits for the peer to close its side,
 * reading and dropping whatever it still sends: closing with unread bytes
 * would make the kernel send a reset, which can discard the answer before
 * the peer reads it. A peer that never closes is cut off after a while.
 */
function closeGently(socket: Duplex, last?: string): void {
  if (socket.destroyed) return;
  const timer = setTimeout(() => socket.destroy(), 5_000);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.once('end', () => socket.destroy());
  if (last === undefined) socket.end();
  else socket.end(last);
  socket.resume();
}
