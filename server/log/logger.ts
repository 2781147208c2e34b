// Structured JSON logs (pino). Authorization headers and anything named like a
// secret are redacted defensively; code never logs values or tokens to begin with.
// Lines go to stdout without ever blocking the event loop (stdout-destination.ts).
import { pino, type Logger } from 'pino';
import { stdoutDestination } from './stdout-destination.js';

export function createLogger(nodeId: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({
    level,
    base: { node_id: nodeId },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: ['req.headers.authorization', '*.authorization', '*.token', '*.value', '*.plaintext', '*.dek'],
      censor: '[redacted]',
    },
  }, stdoutDestination());
}

export type { Logger };
