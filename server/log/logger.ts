// Structured JSON logs (pino). Authorization headers and anything named like a
// secret are redacted defensively; code never logs values or tokens to begin with.
import { pino, type Logger } from 'pino';

export function createLogger(nodeId: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({
    level,
    base: { node_id: nodeId },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: ['req.headers.authorization', '*.authorization', '*.token', '*.value', '*.plaintext', '*.dek'],
      censor: '[redacted]',
    },
  });
}

export type { Logger };
